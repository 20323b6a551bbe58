import logging

import numpy as np
import pytest
import torch
from sgim_hosts import IdentityHost, OracleHost

from mdim_core.imaging import geometry, masks
from mdim_core.inpaint import plan, sgim
from mdim_core.inpaint.host import SGIMHost, check_host

SMALL = dict(steps=3, fri_steps=2)


def _page(b, h, w, c=3, seed=0):
    return torch.rand(b, h, w, c, generator=torch.Generator().manual_seed(seed))


def _crop_boxes(mask2d, config):
    """The full-resolution crop boxes the planner gives a binary [H, W] mask, frame after frame."""
    return [c.box for f in plan.plan(tuple(mask2d.shape), mask2d[None], config) for c in f.crops]


def _damage(truth, mask):
    """The input: the truth with 'text' (black) inside the mask."""
    m = mask if mask.ndim == 3 else mask[None]
    return torch.where(m[..., None] > 0, torch.zeros_like(truth), truth)


def test_oracle_hosts_implement_the_protocol():
    host = OracleHost(_page(1, 8, 8))
    assert isinstance(host, SGIMHost) and check_host(host) is host
    x = _page(2, 16, 24)
    assert torch.equal(host.decode(host.encode(x)), x)  # lossless test VAE
    with pytest.raises(TypeError, match="lacks method"):
        check_host(object())


@pytest.mark.parametrize("max_side, pad_mode", [(256, "replicate"), (1024, "replicate"), (256, "reflect")])
def test_oracle_exact_at_odd_size_multi_region_batch(max_side, pad_mode):
    h, w = 1419, 1001
    truth = _page(2, h, w)
    mask = torch.zeros(h, w)
    mask[100:180, 50:300] = 1  # a bubble's text
    mask[1200:1400, 700:990] = 1  # a distant one
    mask[650:660, 100:105] = 1  # a speck
    image = _damage(truth, mask)
    host = OracleHost(truth)
    cfg = sgim.SGIMConfig(sgi_max_side=max_side, context_margin=64, min_crop_side=256, pad_mode=pad_mode, **SMALL)
    res = sgim.inpaint(host, image, mask, seed=7, config=cfg)
    assert torch.equal(res.image, truth)  # ground truth inside, input outside (input == truth there)
    assert torch.equal(res.image[:, mask == 0], image[:, mask == 0])
    (frame,) = res.frames
    small = (178, 126) if max_side == 256 else (710, 501)  # halved until <= max_side
    assert frame.shrunk and frame.run_fri and frame.sgi_size == small
    # SGI sees the shrunk page; at 256 px the page is its one crop, at 1024 px the regions get crops
    # (the speck joins the bubble above it: at 256 px min side their shared crop is the cheaper one)
    assert len(frame.sgi) == (1 if max_side == 256 else 2)
    assert all(max(j.size) <= max_side for j in frame.sgi)
    assert len(frame.crops) == 3  # three distant regions -> three crops at full size, not one page-size crop
    assert all(j.size[0] * j.size[1] <= 400 * 400 for j in frame.crops)
    n = len(frame.sgi)
    assert [c.seed for c in host.passes("sgi")] == list(range(7, 7 + n))
    assert [c.seed for c in host.passes("fri")] == list(range(7 + n, 10 + n))
    # the host only ever sees crop-sized images (padded to /8), never the page
    crops = {(-(-j.size[0] // 8) * 8, -(-j.size[1] // 8) * 8) for j in res.jobs}
    assert {c.shape[1:3] for c in host.calls if c.kind == "encode"} <= crops
    assert all(c.shape[0] == 2 for c in host.calls)  # the shared mask keeps the batch together
    assert res.sgi_preview.shape == truth.shape
    assert torch.equal(res.sgi_preview[:, mask == 0], image[:, mask == 0])


def test_host_sees_crop_sized_inputs_and_the_right_passes():
    h, w = 700, 900
    truth = _page(1, h, w)
    mask = torch.zeros(h, w)
    mask[300:330, 400:437] = 1
    cfg = sgim.SGIMConfig(sgi_max_side=200, context_margin=40, min_crop_side=300, fri_strength=0.35, steps=4, fri_steps=3)
    host = OracleHost(truth)
    res = sgim.inpaint(host, _damage(truth, mask), mask, seed=11, config=cfg)
    assert torch.equal(res.image, truth)
    (frame,) = res.frames
    assert frame.sgi_size == (88, 113)  # the page, halved three times
    (small,), (job,) = frame.sgi, frame.crops
    assert small.box == (0, 0, 88, 113) and small.page_box == (0, 0, 700, 900)  # min side 300: the whole small page
    assert job.box == (165, 269, 465, 569) and job.size == (300, 300)
    kinds = [(c.kind, c.shape) for c in host.calls]
    assert kinds == [
        ("encode", (1, 88, 120, 3)),  # SGI: the shrunk page, padded to /8
        ("denoise", (1, 192, 11, 15)),
        ("decode", (1, 88, 120, 3)),
        ("encode", (1, 304, 304, 3)),  # FRI: full crop size, padded to /8
        ("denoise", (1, 192, 38, 38)),
        ("decode", (1, 304, 304, 3)),
    ]
    sgi, fri = host.passes()
    assert (sgi.info.name, sgi.strength, sgi.steps, sgi.seed) == ("sgi", 1.0, 4, 11)
    assert (fri.info.name, fri.strength, fri.steps, fri.seed) == ("fri", 0.35, 3, 12)
    assert sgi.info.size == (88, 113) and sgi.info.padded_size == (88, 120) and sgi.info.box == (0, 0, 700, 900)
    assert sgi.info.page_size == fri.info.page_size == (700, 900)
    assert sgi.info.extent is None and fri.info.extent is None  # the whole small page: whole page pixels
    assert fri.info.size == (300, 300) and fri.info.box == job.box
    assert max(sgi.info.padded_size) <= 200
    assert fri.mask_sum == 30 * 37  # the user's mask, not more
    assert (sgi.info.index, fri.info.index, fri.info.count, fri.info.steps_before, fri.info.total_steps) == (0, 1, 2, 4, 7)
    done = [d for d, _ in host.progress_log]
    assert done == sorted(done) and host.progress_log[0] == (0, 7) and host.progress_log[-1] == (7, 7)


@pytest.mark.parametrize("run_fri, shrink, passes", [
    ("auto", False, ["sgi"]), ("auto", True, ["sgi", "fri"]),
    ("always", False, ["sgi", "fri"]), ("never", True, ["sgi"]),
])
def test_run_fri_modes(run_fri, shrink, passes):
    truth = _page(1, 64, 80)
    mask = torch.zeros(64, 80)
    mask[20:30, 30:50] = 1
    cfg = sgim.SGIMConfig(sgi_max_side=40 if shrink else 1024, run_fri=run_fri, **SMALL)
    host = OracleHost(truth)
    res = sgim.inpaint(host, _damage(truth, mask), mask, config=cfg)
    assert [c.info.name for c in host.passes()] == passes
    if not shrink:  # the SGI pass ran at full size: the preview is the SGI result itself
        assert torch.equal(res.sgi_preview, truth)
    else:  # the upscaled SGI result: near the truth inside the mask, the input outside
        inside = mask == 1
        assert torch.equal(res.sgi_preview[:, ~inside], truth[:, ~inside])
        assert 0 < float((res.sgi_preview[:, inside] - truth[:, inside]).abs().mean()) < 0.25
    if passes[-1] == "fri" or not shrink:
        assert torch.equal(res.image, truth)
    else:  # SGI only, upscaled: close to the truth, not exact; outside still exact
        assert torch.equal(res.image[:, mask == 0], truth[:, mask == 0])
        assert not torch.equal(res.image, truth)


def test_no_shrink_identity_host_returns_the_input():
    image = _page(1, 37, 53)
    mask = torch.zeros(37, 53)
    mask[5:9, 6:30] = 1
    res = sgim.inpaint(IdentityHost(), image, mask, config=sgim.SGIMConfig(**SMALL))
    assert torch.equal(res.image, image)


def test_empty_mask_makes_no_host_call():
    image = _page(2, 30, 40)
    host = OracleHost(image)
    res = sgim.inpaint(host, image, torch.zeros(30, 40), config=sgim.SGIMConfig(**SMALL))
    assert res.image is image and host.calls == [] and res.jobs == [] and res.passes == 0
    # a mask that only has values below the threshold is empty too
    res = sgim.inpaint(host, image, torch.full((30, 40), 0.2), config=sgim.SGIMConfig(**SMALL))
    assert torch.equal(res.image, image) and host.calls == []


def test_full_mask_uses_the_whole_page():
    truth = _page(1, 90, 130)
    image = torch.zeros_like(truth)
    host = OracleHost(truth)
    res = sgim.inpaint(host, image, torch.ones(90, 130), config=sgim.SGIMConfig(sgi_max_side=64, **SMALL))
    assert torch.equal(res.image, truth)
    (frame,) = res.frames
    assert frame.sgi_size == (23, 33) and frame.run_fri
    assert [j.box for j in frame.sgi] == [(0, 0, 23, 33)] and [j.box for j in frame.crops] == [(0, 0, 90, 130)]


def test_batches_with_per_image_masks_and_shared_masks():
    truth = _page(3, 60, 70)
    masks_ = torch.zeros(3, 60, 70)
    masks_[0, 5:10, 5:10] = 1
    masks_[1, 40:50, 50:60] = 1
    masks_[2, 5:10, 5:10] = 1  # same as image 0: processed together
    host = OracleHost(truth)
    res = sgim.inpaint(host, _damage(truth, masks_), masks_, seed=3, config=sgim.SGIMConfig(**SMALL))
    assert torch.equal(res.image, truth)
    assert sorted(j.rows for j in res.jobs) == [(0, 2), (1,)]
    assert [c.seed for c in host.passes()] == [3, 4]  # one seed per job
    shared = torch.zeros(60, 70)
    shared[20:30, 20:30] = 1
    host = OracleHost(truth)
    res = sgim.inpaint(host, _damage(truth, shared), shared[None], config=sgim.SGIMConfig(**SMALL))
    assert torch.equal(res.image, truth) and [c.shape[0] for c in host.passes()] == [3]


def test_grayscale_in_grayscale_out_and_rgba_drops_alpha(caplog):
    gray = _page(1, 41, 29, c=1)
    mask = torch.zeros(41, 29)
    mask[10:20, 5:15] = 1
    res = sgim.inpaint(OracleHost(gray), _damage(gray, mask), mask, config=sgim.SGIMConfig(**SMALL))
    assert res.image.shape == (1, 41, 29, 1) and torch.equal(res.image, gray)
    rgb = _page(1, 41, 29)
    rgba = torch.cat([_damage(rgb, mask), torch.rand(1, 41, 29, 1)], dim=-1)
    with caplog.at_level(logging.INFO, logger="MDIM"):
        res = sgim.inpaint(OracleHost(rgb), rgba, mask, config=sgim.SGIMConfig(**SMALL))
    assert res.image.shape == (1, 41, 29, 3) and torch.equal(res.image, rgb)
    assert "alpha channel dropped" in caplog.text


def test_strips_one_pixel_high():
    truth = _page(1, 1, 3000)
    mask = torch.zeros(1, 3000)
    mask[0, 1000:1100] = 1
    host = OracleHost(truth)
    res = sgim.inpaint(host, _damage(truth, mask), mask, config=sgim.SGIMConfig(sgi_max_side=256, **SMALL))
    assert torch.equal(res.image, truth)
    (frame,) = res.frames
    assert frame.sgi_size == (1, 188) and [j.size for j in frame.crops] == [(1, 512)]
    assert [c.shape for c in host.calls if c.kind == "encode"] == [(1, 8, 192, 3), (1, 8, 512, 3)]


def test_mask_of_another_size_is_resized_and_logged(caplog):
    truth = _page(1, 64, 64)
    small = torch.zeros(32, 32)
    small[8:16, 8:16] = 1
    big = masks.clean(small, batch=1, size=(64, 64))[0]  # the mask the engine works with
    assert 16 * 16 <= int(big.sum()) < 20 * 20
    image = _damage(truth, big)
    with caplog.at_level(logging.INFO, logger="MDIM"):
        res = sgim.inpaint(OracleHost(truth), image, small, config=sgim.SGIMConfig(**SMALL))
    assert "mask: resized from 32x32" in caplog.text
    (job,) = res.jobs
    assert torch.equal(res.image, truth)  # the text under the resized mask is gone, the rest kept
    assert not torch.equal(image, truth)


@pytest.mark.parametrize(
    "image, mask, message",
    [
        (torch.full((1, 16, 16, 3), float("nan")), torch.ones(16, 16), "image: contains 768 NaN"),
        (torch.rand(16, 16, 3), torch.ones(16, 16), r"image: expected shape \[B, H, W, C\]"),
        (torch.rand(1, 16, 16, 2), torch.ones(16, 16), "C = 1, 3 or 4"),
        (torch.zeros(1, 16, 16, 3, dtype=torch.uint8), torch.ones(16, 16), "image: expected float pixels"),
        (torch.rand(3, 16, 16, 3), torch.ones(2, 16, 16), "mask: batch of 2 masks for 3 images"),
        (torch.rand(1, 16, 16, 3), torch.full((16, 16), float("nan")), "mask: contains NaN"),
    ],
)
def test_bad_input_is_a_clear_error(image, mask, message):
    host = OracleHost(torch.rand(1, 16, 16, 3))
    with pytest.raises(ValueError, match=message):
        sgim.inpaint(host, image, mask, config=sgim.SGIMConfig(**SMALL))
    assert host.calls == []


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"fri_strength": 0.0}, "fri_strength"), ({"fri_strength": 1.5}, "fri_strength"),
        ({"steps": 0}, "steps"), ({"sgi_max_side": 4}, "sgi_max_side"), ({"run_fri": "yes"}, "run_fri"),
        ({"plan": "crop"}, "plan"), ({"grow_mask": -1}, "grow_mask"), ({"feather": 2.5}, "feather"),
        ({"pad_mode": "zeros"}, "pad_mode"), ({"limit_to_panel": 1}, "limit_to_panel"),
        ({"fri_tile_side": 32}, "fri_tile_side"), ({"fri_tile_side": 256, "fri_tile_overlap": 128}, "fri_tile_overlap"),
    ],
)
def test_config_validation_names_the_field(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}: expected"):
        sgim.SGIMConfig(**kwargs)


def test_seed_validation_and_determinism():
    truth = _page(1, 32, 32)
    mask = torch.zeros(32, 32)
    mask[4:8, 4:8] = 1
    with pytest.raises(ValueError, match="seed"):
        sgim.inpaint(OracleHost(truth), truth, mask, seed=-1)
    host = OracleHost(truth)
    sgim.inpaint(host, truth, mask, seed=2**64 - 1, config=sgim.SGIMConfig(**SMALL))
    assert host.passes()[0].seed == 2**64 - 1


def test_cancel_propagates_and_leaves_inputs_untouched():
    truth = _page(1, 64, 64)
    mask = torch.zeros(64, 64)
    mask[10:20, 10:20] = 1
    image = _damage(truth, mask)
    before_image, before_mask = image.clone(), mask.clone()
    host = OracleHost(truth, cancel_at=2)
    with pytest.raises(KeyboardInterrupt):
        sgim.inpaint(host, image, mask, config=sgim.SGIMConfig(**SMALL))
    assert torch.equal(image, before_image) and torch.equal(mask, before_mask)
    assert len(host.passes()) == 1


def test_inputs_are_never_modified_and_dtype_device_kept():
    truth = _page(2, 48, 40).half()
    mask = torch.zeros(1, 48, 40, 1)
    mask[0, 10:20, 10:30] = 0.98  # a JPEG-ish mask
    image = _damage(truth.float(), mask[..., 0]).half()
    keep_i, keep_m = image.clone(), mask.clone()
    res = sgim.inpaint(OracleHost(truth.float()), image, mask, config=sgim.SGIMConfig(**SMALL))
    assert torch.equal(image, keep_i) and torch.equal(mask, keep_m)
    assert res.image.dtype == torch.float16 and torch.equal(res.image, truth)


def test_feather_and_grow_change_only_the_grown_mask():
    truth = _page(1, 64, 64)
    mask = torch.zeros(64, 64)
    mask[20:40, 20:40] = 1
    image = _damage(truth, mask)
    res = sgim.inpaint(OracleHost(truth), image, mask, config=sgim.SGIMConfig(feather=4, **SMALL))
    assert torch.equal(res.image[:, mask == 0], image[:, mask == 0])
    assert torch.equal(res.image[0, 30, 30], truth[0, 30, 30])  # deep inside: the new pixels
    edge = res.image[0, 20, 30]  # edge: a blend of black text and the truth
    assert torch.allclose(edge, truth[0, 20, 30] * 0.2)
    # grow_mask: the text's anti-aliased halo just outside the user's mask gets repainted too
    grown = masks.grow(mask[None], 3)[0]
    halo = _damage(truth, grown)
    res = sgim.inpaint(OracleHost(truth), halo, mask, config=sgim.SGIMConfig(grow_mask=3, **SMALL))
    assert torch.equal(res.image, truth)
    assert torch.equal(res.image[:, grown == 0], halo[:, grown == 0])
    res = sgim.inpaint(OracleHost(truth), halo, mask, config=sgim.SGIMConfig(**SMALL))
    ring = (grown == 1) & (mask == 0)
    assert torch.equal(res.image[:, ring], halo[:, ring]) and float(res.image[:, ring].max()) == 0.0


def test_limit_to_panel_keeps_context_inside_the_panel():
    h, w = 200, 300
    page = torch.ones(1, h, w, 3)
    page[:, 10:190, 10:140] = 0.0
    page[:, 12:188, 12:138] = 0.5
    page[:, 10:190, 160:290] = 0.0
    page[:, 12:188, 162:288] = 0.5
    mask = torch.zeros(h, w)
    mask[90:100, 120:130] = 1
    cfg = sgim.SGIMConfig(context_margin=50, min_crop_side=0, **SMALL)
    free = sgim.inpaint(OracleHost(page), page, mask, config=cfg)
    limited = sgim.inpaint(OracleHost(page), page, mask, config=sgim.SGIMConfig(
        context_margin=50, min_crop_side=0, limit_to_panel=True, **SMALL))
    assert free.jobs[0].page_box == (40, 70, 150, 180)
    assert limited.jobs[0].page_box == (40, 70, 150, 140)
    assert limited.frames[0].box == (10, 10, 190, 140)  # the panel is the frame: SGI sees it alone
    assert torch.equal(limited.image, page)
    # widening to min_crop_side stays inside the panel too
    widened = sgim.inpaint(OracleHost(page), page, mask, config=sgim.SGIMConfig(
        context_margin=10, min_crop_side=160, limit_to_panel=True, **SMALL))
    assert widened.jobs[0].page_box == (15, 10, 175, 140)


def test_host_returning_a_wrong_shape_is_reported():
    class Bad(IdentityHost):
        def decode(self, latent, *, source=None, mask=None):
            return super().decode(latent)[:, :8]

    mask = torch.zeros(32, 32)
    mask[3:5, 3:5] = 1
    with pytest.raises(RuntimeError, match="host.decode returned"):
        sgim.inpaint(Bad(), _page(1, 32, 32), mask, config=sgim.SGIMConfig(**SMALL))


def test_plan_for_large_pages():
    cfg = sgim.SGIMConfig()
    # a full mask on an A4 600-dpi page: SGI on the page at 621x877 after three halvings, FRI at full size in tiles
    full = torch.ones(1, 7016, 4961, dtype=torch.float32)
    (frame,) = plan.plan((7016, 4961), full, cfg)
    assert frame.box == (0, 0, 7016, 4961) and frame.sgi_size == (877, 621) and frame.run_fri
    assert [j.box for j in frame.sgi] == [(0, 0, 877, 621)]
    (page,) = frame.crops
    assert page.box == (0, 0, 7016, 4961) and len(page.tiles) == 4 * 3
    # bubbles on the same page: SGI on the shrunk page (the model sees the page at its scale), FRI on small crops
    m = torch.zeros(1, 7016, 4961)
    m[0, 500:800, 600:900] = 1
    m[0, 5000:5200, 3000:3500] = 1
    (frame,) = plan.plan((7016, 4961), m, cfg)
    assert frame.sgi_size == (877, 621) and frame.run_fri
    assert [j.box for j in frame.crops] == [(394, 494, 906, 1006), (4844, 2936, 5356, 3564)]  # margin 64, >= 512
    assert all(not j.tiles for j in frame.crops)
    # on the shrunk page margin and min side count in the pixels the model sees: one 512 x 714 crop holds
    # both regions (less than two 512 x 512 crops), i.e. 4092 x 5712 page pixels at 1/64 of the cost
    assert [j.box for j in frame.sgi] == [(0, 1, 714, 513)]
    assert [j.page_box for j in frame.sgi] == [(0, 7, 5712, 4099)]
    # ... the exact page area it shows (4961 / 621 page pixels per shrunk pixel across), rounded outward above
    (extent,) = [j.extent for j in frame.sgi]
    assert extent == pytest.approx((0.0, 4961 / 621, 5712.0, 513 * 4961 / 621))
    strip = torch.ones(1, 6000, 600)
    (frame,) = plan.plan((6000, 600), strip, cfg)
    assert frame.sgi_size == (750, 75) and frame.run_fri
    assert plan.plan((1, 5000), torch.ones(1, 1, 5000), cfg)[0].sgi_size == (1, 625)


def test_large_crops_run_fri_in_tiles_exactly():
    h, w = 200, 150
    truth = _page(1, h, w)
    mask = torch.zeros(h, w)
    mask[20:190, 10:140] = 1
    mask[100:110, 60:70] = 0  # a hole in the mask: kept bit-exactly
    cfg = sgim.SGIMConfig(sgi_max_side=64, fri_tile_side=96, fri_tile_overlap=16, min_crop_side=0, **SMALL)
    host = OracleHost(truth)
    res = sgim.inpaint(host, _damage(truth, mask), mask, seed=5, config=cfg)
    assert torch.equal(res.image, truth)
    (frame,) = res.frames
    (job,) = frame.crops
    assert frame.sgi_size == (50, 38) and [j.box for j in frame.sgi] == [(0, 0, 50, 38)]
    assert job.box == (0, 0, 200, 150) and len(job.tiles) == 6 and res.passes == 7
    sgi, *tiles = host.passes()
    assert sgi.info.name == "sgi" and max(sgi.info.padded_size) <= 64
    assert [t.info.tile for t in tiles] == list(range(6)) and {t.info.tiles for t in tiles} == {6}
    assert all(max(t.info.size) <= 96 and t.strength == 0.5 for t in tiles)
    assert len({t.seed for t in tiles}) == 6
    boxes = [t.info.box for t in tiles]
    assert boxes == [t.box for t in job.tiles]  # crop at the page origin: page boxes = crop boxes
    assert host.progress_log[-1] == (3 + 6 * 2, 3 + 6 * 2)


def test_tiles_without_mask_are_skipped():
    truth = _page(1, 200, 200)
    mask = torch.zeros(200, 200)
    mask[:, :20] = 1  # an L: the upper right of its box holds no mask
    mask[180:, :] = 1
    cfg = sgim.SGIMConfig(sgi_max_side=64, fri_tile_side=80, fri_tile_overlap=8, min_crop_side=0, context_margin=0, **SMALL)
    host = OracleHost(truth)
    res = sgim.inpaint(host, _damage(truth, mask), mask, config=cfg)
    assert torch.equal(res.image, truth)
    (job,) = res.frames[0].crops
    assert job.box == (0, 0, 200, 200)
    assert len(job.tiles) == 5 and len(host.passes("fri")) == 5  # 3x3 tiles, 4 without mask


def test_images_with_an_empty_mask_in_a_batch_are_left_alone():
    truth = _page(2, 48, 48)
    masks_ = torch.zeros(2, 48, 48)
    masks_[0, 10:20, 10:20] = 1
    image = _damage(truth, masks_)
    host = OracleHost(truth)
    res = sgim.inpaint(host, image, masks_, config=sgim.SGIMConfig(**SMALL))
    assert torch.equal(res.image, truth) and torch.equal(res.image[1], image[1])
    assert [j.rows for j in res.jobs] == [(0,)] and all(c.shape[0] == 1 for c in host.calls)


class _SeeingHost(OracleHost):
    """The oracle, also keeping the pixels each pass was given (unpadded crop, RGB)."""

    def __init__(self, truth):
        super().__init__(truth)
        self.images = []

    def denoise(self, latent, *, image, mask, strength, steps, seed, info):
        self.images.append(image[:, : info.size[0], : info.size[1]].clone())
        return super().denoise(latent, image=image, mask=mask, strength=strength, steps=steps, seed=seed, info=info)


def test_overlapping_regions_with_a_costly_union_keep_separate_crops_and_stay_exact():
    h, w = 400, 400
    truth = _page(2, h, w)
    mask = torch.zeros(h, w)
    mask[40:140, 40:140] = 1  # a bubble ...
    mask[160:390, 160:390] = 1  # ... and a large one diagonally below it: their crops overlap at a corner
    image = _damage(truth, mask)
    cfg = sgim.SGIMConfig(context_margin=30, min_crop_side=0, **SMALL)
    boxes = _crop_boxes(mask > 0, cfg)
    assert boxes == [(10, 10, 170, 170), (130, 130, 400, 400)]  # overlapping, not merged
    assert 160 * 160 + 270 * 270 < 0.65 * 390 * 390  # the merged crop would cover a lot more page
    host = _SeeingHost(truth)
    res = sgim.inpaint(host, image, mask, seed=3, config=cfg)
    assert torch.equal(res.image, truth)  # the truth inside the mask, the input outside, bit for bit
    assert torch.equal(res.image[:, mask == 0], image[:, mask == 0])
    assert all(j.owners.shared(j.box, j.region) for j in res.jobs)
    first, second = host.passes("sgi")
    assert [p.info.box for p in (first, second)] == boxes and [p.seed for p in (first, second)] == [3, 4]
    # the first crop also repaints the corner of the second region it holds (not pasted: not its own) ...
    assert first.mask_sum == 2 * (100 * 100 + 10 * 10)
    # ... the second crop sees the first one's result as known context and repaints only its own region
    assert second.mask_sum == 2 * 230 * 230
    assert torch.equal(host.images[1][:, :10, :10], truth[:, 130:140, 130:140])  # A's pixels, already repainted
    assert float(host.images[0][:, 150:160, 150:160].max()) == 0.0  # B's text, still there for the first crop
    assert torch.equal(res.sgi_preview[:, mask > 0], truth[:, mask > 0])  # no shrink: SGI is the result
    assert torch.equal(res.sgi_preview[:, mask == 0], image[:, mask == 0])
    # feathering blends only inside each crop's own region: nothing outside the mask changes
    feathered = sgim.inpaint(OracleHost(truth), image, mask, config=sgim.SGIMConfig(
        context_margin=30, min_crop_side=0, feather=4, **SMALL))
    assert torch.equal(feathered.image[:, mask == 0], image[:, mask == 0])
    assert torch.equal(feathered.image[:, 90, 90], truth[:, 90, 90])
    assert torch.equal(feathered.image[:, 270, 270], truth[:, 270, 270])


def test_neighbours_share_a_crop_when_it_covers_less_page():
    h, w = 300, 1200
    mask = torch.zeros(h, w)
    mask[50:250, 50:90] = 1  # two text columns side by side
    mask[50:250, 110:150] = 1
    mask[120:170, 400:450] = 1  # two specks far apart, each too small for min_crop_side ...
    mask[120:170, 1000:1050] = 1
    cfg = sgim.SGIMConfig(context_margin=20, min_crop_side=0, **SMALL)
    assert _crop_boxes(mask > 0, cfg)[:1] == [(30, 30, 270, 170)]  # one crop: less than 2 x (240 x 80)
    wide = sgim.SGIMConfig(context_margin=64, min_crop_side=256, **SMALL)
    boxes = _crop_boxes(mask > 0, wide)
    # ... 600 px apart: one crop over both would cover more page than two 256 x 256 crops: kept apart
    assert boxes == [(0, 0, 300, 256), (17, 297, 273, 553), (17, 897, 273, 1153)]
    close = mask.clone()
    close[:, 1000:1050] = 0
    close[120:170, 600:650] = 1
    # 150 px apart: one 256 x 378 crop covers less than two 256 x 256 crops
    assert _crop_boxes(close > 0, wide) == [(0, 0, 300, 256), (17, 336, 273, 714)]
    truth = _page(1, h, w)
    res = sgim.inpaint(OracleHost(truth), _damage(truth, close), close, config=wide)
    assert torch.equal(res.image, truth)


def test_region_owners_give_every_mask_pixel_to_exactly_one_crop():
    g = torch.Generator().manual_seed(4)
    h, w = 517, 389
    mask = torch.zeros(h, w, dtype=torch.bool)
    for _ in range(14):
        y, x = (int(v) for v in torch.randint(0, 470, (2,), generator=g))
        x = x % 350
        sh, sw = (int(v) for v in torch.randint(3, 45, (2,), generator=g))
        mask[y : y + sh, x : x + sw] = True
    labels, origin, boxes = masks.region_labels(mask, cell=8)
    assert sorted(boxes) == masks.regions(mask, cell=8)
    cfg = sgim.SGIMConfig(context_margin=16, min_crop_side=64, **SMALL)
    (frame,) = plan.plan((h, w), mask[None], cfg)
    jobs = frame.crops
    owners = jobs[0].owners
    count = torch.zeros(h, w, dtype=torch.int64)
    for job in jobs:
        y0, x0, y1, x1 = job.box
        own = torch.from_numpy(owners.crop(job.box) == job.region) & mask[y0:y1, x0:x1]
        count[y0:y1, x0:x1] += own.long()
        if not owners.shared(job.box, job.region):  # the fast check may say "shared" too often, never too rarely
            assert set(np.unique(owners.crop(job.box)).tolist()) <= {-1, job.region}
    assert torch.equal(count, mask.long())  # every mask pixel repainted by exactly one crop, nothing else
    page = torch.from_numpy(owners.crop((0, 0, h, w)))
    assert bool((page[mask] >= 0).all()) and page.shape == (h, w)
    for box in ((10, 20, 300, 389), (3, 7, 517, 100), (250, 250, 517, 389)):  # any box: a slice of the page map
        assert torch.equal(torch.from_numpy(owners.crop(box)), page[box[0] : box[2], box[1] : box[3]])
    assert set(page.unique().tolist()) == set(range(-1, len(jobs)))
    truth = _page(1, h, w)
    res = sgim.inpaint(OracleHost(truth), _damage(truth, mask.float()), mask, config=cfg)
    assert torch.equal(res.image, truth)


def test_grouping_never_costs_more_than_merging_every_overlap():
    # dust: many specks whose widened crops overlap in chains. Grouping pairs by area gets stuck with
    # crops that overlap a lot; merging every overlap is cheaper there, and that plan is kept
    h, w = 640, 896
    cfg = sgim.SGIMConfig(context_margin=16, min_crop_side=128, **SMALL)

    def dust(n):
        g = torch.Generator().manual_seed(1)
        m = torch.zeros(h, w, dtype=torch.bool)
        for y, x in torch.randint(0, 630, (n, 2), generator=g).tolist():
            m[y : y + 4, x % 890 : x % 890 + 4] = True
        _, _, comps = masks.region_labels(m, cell=8)
        items = [geometry.expand_box(c, 16, (h, w)) for c in comps]
        merged, apart = plan._merge_overlapping(items, (h, w), cfg), plan._group_regions(items, (h, w), cfg)
        chosen = _crop_boxes(m, cfg)
        return m, merged, apart, chosen

    m, merged, apart, chosen = dust(160)
    assert plan._plan_cost(apart) > plan._plan_cost(merged)  # grouping alone would be worse ...
    assert chosen == [b for b, _ in merged] and len(chosen) == 1  # ... so the overlap-merging plan runs
    truth = _page(1, h, w)
    res = sgim.inpaint(OracleHost(truth), _damage(truth, m.float()), m, config=cfg)
    assert torch.equal(res.image, truth)
    m, merged, apart, chosen = dust(40)  # fewer specks: separate crops cost less than one chain-merged crop
    assert plan._plan_cost(apart) < 0.6 * plan._plan_cost(merged)
    assert chosen == [b for b, _ in apart] and len(chosen) > 1
    res = sgim.inpaint(OracleHost(truth), _damage(truth, m.float()), m, config=cfg)
    assert torch.equal(res.image, truth)
    # the diagonal pair: grouping apart is cheaper, and chosen
    diag = torch.zeros(400, 400, dtype=torch.bool)
    diag[40:140, 40:140] = True
    diag[160:390, 160:390] = True
    apart_cfg = sgim.SGIMConfig(context_margin=30, min_crop_side=0, **SMALL)
    assert _crop_boxes(diag, apart_cfg) == [(10, 10, 170, 170), (130, 130, 400, 400)]
    assert plan.crop_cost((160, 160)) + plan.crop_cost((270, 270)) < plan.crop_cost((390, 390))


def _panels_page():
    """A 260 x 400 page: white gutters, panel A on the left, B and C stacked on the right (black frames)."""
    g = torch.Generator().manual_seed(9)
    page = torch.ones(1, 260, 400, 3)
    for y0, x0, y1, x1 in ((10, 10, 250, 150), (10, 170, 130, 390), (150, 170, 250, 390)):
        page[:, y0:y1, x0:x1] = 0.0
        page[:, y0 + 2 : y1 - 2, x0 + 2 : x1 - 2] = 0.8 * torch.rand(1, y1 - y0 - 4, x1 - x0 - 4, 3, generator=g)
    return page


def test_limit_to_panel_shrinks_each_panel_on_its_own_and_stays_exact():
    truth = _panels_page()
    mask = torch.zeros(260, 400)
    mask[50:80, 40:100] = 1  # in panel A
    mask[40:70, 250:330] = 1  # in panel B
    mask[120:160, 300:320] = 1  # across the gutter between B and C
    mask[253:257, 100:300] = 1  # in the bottom gutter
    cfg = sgim.SGIMConfig(sgi_max_side=64, context_margin=8, min_crop_side=0, limit_to_panel=True, flat_fill="off",
                          **SMALL)  # text in the white gutter would be filled flat; frames are what is tested
    host = OracleHost(truth)
    res = sgim.inpaint(host, _damage(truth, mask), mask, seed=1, config=cfg)
    assert torch.equal(res.image, truth)
    boxes = [f.box for f in res.frames]
    # panels are found on the page as given: the text across the gutter joins B and C into one panel,
    # which holds both of its regions; the text in the bottom gutter is no panel and stays with the page
    assert boxes == [(0, 0, 260, 400), (10, 10, 250, 150), (10, 170, 250, 390)]
    assert [int(f.mask.sum()) for f in res.frames] == [4 * 200, 30 * 60, 30 * 80 + 40 * 20]
    for f in res.frames:
        assert f.sgi_size == geometry.shrink_plan(f.size, 64) and f.run_fri  # each frame its own scale
    assert [f.sgi_size for f in res.frames] == [(33, 50), (60, 35), (60, 55)]
    # a clean page: B and C are two panels, the region across the gutter gets the box of both
    frames = plan.plan((260, 400), mask[None] > 0, cfg, page_gray=truth.mean(-1))
    assert [f.box for f in frames] == [(0, 0, 260, 400), (10, 10, 250, 150), (10, 170, 130, 390), (10, 170, 250, 390)]
    owned = torch.zeros(260, 400)
    for f in res.frames:  # frames may overlap, their masks do not
        y0, x0, y1, x1 = f.box
        owned[y0:y1, x0:x1] += f.mask.float()
    assert torch.equal(owned, mask)
    by_frame = {}
    for p in host.passes():
        by_frame.setdefault(p.info.name, []).append(p.info.box)
    for name, page_boxes in by_frame.items():  # every pass stays inside its frame
        for box, job in zip(page_boxes, [j for f in res.frames for j in (f.sgi if name == "sgi" else f.crops)]):
            frame = next(f for f in res.frames if job in (f.sgi + f.crops))
            assert geometry.union_box(frame.box, box) == frame.box


def test_preview_in_strips_equals_one_piece_and_fri_starts_from_it(monkeypatch):
    truth = _page(1, 90, 130)
    mask = torch.zeros(90, 130)
    mask[20:70, 30:100] = 1
    image = _damage(truth, mask)
    cfg = sgim.SGIMConfig(sgi_max_side=64, **SMALL)
    host = _SeeingHost(truth)
    whole = sgim.inpaint(host, image, mask, config=cfg).sgi_preview
    monkeypatch.setattr(sgim, "PREVIEW_STRIP", 7)
    assert torch.equal(sgim.inpaint(OracleHost(truth), image, mask, config=cfg).sgi_preview, whole)
    sgi, fri = host.passes()
    assert sgi.info.size == (23, 33) and fri.info.size == (90, 130)
    inside = mask > 0
    # FRI's input is the page with the upscaled structure inside the mask: the preview
    assert torch.equal(host.images[1][0][inside], whole[0][inside])
    assert torch.equal(host.images[1][0][~inside], image[0][~inside])


def _framed(h, w, panels, seed):
    g = torch.Generator().manual_seed(seed)
    page = torch.ones(1, h, w, 3)
    for y0, x0, y1, x1 in panels:
        page[:, y0:y1, x0:x1] = 0.0
        page[:, y0 + 2 : y1 - 2, x0 + 2 : x1 - 2] = 0.8 * torch.rand(1, y1 - y0 - 4, x1 - x0 - 4, 3, generator=g)
    return page


def test_pages_sharing_a_mask_keep_their_own_panels():
    a = _framed(240, 320, [(8, 8, 112, 152), (8, 168, 112, 312), (128, 8, 232, 312)], 1)
    b = _framed(240, 320, [(8, 8, 232, 100), (8, 116, 232, 312)], 2)
    c = _framed(240, 320, [(8, 8, 112, 152), (8, 168, 112, 312), (128, 8, 232, 312)], 3)  # a's layout
    truth = torch.cat([a, b, c])
    mask = torch.zeros(240, 320)
    mask[30:60, 120:140] = 1  # one mask for the batch
    cfg = sgim.SGIMConfig(sgi_max_side=128, limit_to_panel=True, min_crop_side=0, context_margin=8, **SMALL)
    frames = plan.plan((240, 320), (mask > 0).expand(3, -1, -1), cfg, page_gray=truth.mean(-1))
    # pages 0 and 2 share a layout and are worked on together; page 1's panel is its own
    assert [(f.rows, f.box) for f in frames] == [((0, 2), (8, 8, 112, 152)), ((1,), (8, 116, 232, 312))]
    res = sgim.inpaint(OracleHost(truth), _damage(truth, mask), mask, config=cfg)
    assert torch.equal(res.image, truth)


def test_limit_to_panel_says_when_it_finds_no_panel(caplog):
    truth = _page(1, 64, 80) * 0.5  # no white anywhere: no gutter, no panels
    mask = torch.zeros(64, 80)
    mask[20:30, 30:50] = 1
    cfg = sgim.SGIMConfig(limit_to_panel=True, **SMALL)
    with caplog.at_level(logging.INFO, logger="MDIM"):
        res = sgim.inpaint(OracleHost(truth), _damage(truth, mask), mask, config=cfg)
    assert torch.equal(res.image, truth) and [f.box for f in res.frames] == [(0, 0, 64, 80)]
    assert "limit_to_panel found no panel under the mask" in caplog.text


def test_refine_only_runs_one_full_resolution_pass_from_the_image_as_it_is():
    h, w = 300, 420
    truth = _page(1, h, w)
    mask = torch.zeros(h, w)
    mask[100:160, 200:290] = 1
    image = _damage(truth, mask)
    # a page larger than sgi_max_side: with the structure pass off it is never shrunk
    cfg = sgim.SGIMConfig(structure_pass=False, sgi_max_side=64, fri_strength=0.3, fri_steps=4, run_fri="never",
                          context_margin=16, min_crop_side=0, steps=9)
    host = _SeeingHost(truth)
    res = sgim.inpaint(host, image, mask, seed=21, config=cfg)
    assert torch.equal(res.image, truth) and torch.equal(res.image[:, mask == 0], image[:, mask == 0])
    (frame,) = res.frames
    assert not frame.shrunk and frame.sgi == () and frame.run_fri
    (fri,) = host.passes()
    assert (fri.info.name, fri.strength, fri.steps, fri.seed) == ("fri", 0.3, 4, 21)
    assert fri.info.box == (84, 184, 176, 306) and fri.info.size == (92, 122)
    # the pass starts from the page itself, the text still there (no structure pasted in)
    assert torch.equal(host.images[0], image[:, 84:176, 184:306])
    assert host.progress_log[0] == (0, 4) and host.progress_log[-1] == (4, 4)
    assert torch.equal(res.sgi_preview, image)  # no structure pass: nothing to preview but the input


@pytest.mark.parametrize("shrink", [False, True])
def test_prefill_starts_the_structure_pass_from_the_fill(shrink):
    h, w = 120, 160
    truth = _page(1, h, w)
    mask = torch.zeros(h, w)
    mask[40:80, 50:110] = 1
    image = _damage(truth, mask)
    fill = torch.full((1, h, w, 3), 0.25)  # e.g. what LaMa drew; only its pixels inside the mask count
    cfg = sgim.SGIMConfig(sgi_max_side=64 if shrink else 1024, prefill_strength=0.6, min_crop_side=0, **SMALL)
    host = _SeeingHost(truth)
    res = sgim.inpaint(host, image, mask, seed=1, config=cfg, prefill=fill)
    assert torch.equal(res.image, truth) and torch.equal(res.image[:, mask == 0], image[:, mask == 0])
    sgi = host.passes("sgi")[0]
    assert sgi.strength == 0.6 and [p.strength for p in host.passes("fri")] == ([0.5] if shrink else [])
    seen, (y0, x0) = host.images[0], sgi.info.box[:2]
    if not shrink:  # the fill inside the mask, the page outside it
        m = mask[y0 : y0 + seen.shape[1], x0 : x0 + seen.shape[2]] > 0
        assert bool((seen[0][m] == 0.25).all()) and torch.equal(seen[0][~m], image[0, y0:, x0:][: m.shape[0], : m.shape[1]][~m])
    else:  # shrunk 4x: small pixels wholly inside the mask are averages of the fill alone
        assert res.frames[0].sgi_size == (30, 40)
        sy, sx = res.frames[0].sgi[0].box[:2]
        assert bool((seen[0, 10 - sy : 20 - sy, 13 - sx : 27 - sx] == 0.25).all())
    no_fill = _SeeingHost(truth)
    sgim.inpaint(no_fill, image, mask, seed=1, config=cfg)
    assert no_fill.passes("sgi")[0].strength == 1.0  # without a fill: from pure noise
    with pytest.raises(ValueError, match="prefill: expected pages of 160x120"):
        sgim.inpaint(host, image, mask, config=cfg, prefill=torch.zeros(1, 10, 10, 3))


def _bubble_page():
    """A 200 x 300 page: white paper, a dark hatched panel on the right; text in the white part and on the hatching."""
    truth = torch.ones(1, 200, 300, 3)
    yy, xx = torch.meshgrid(torch.arange(200), torch.arange(140), indexing="ij")
    truth[0, :, 160:] = ((((yy + xx) % 7) < 3).float() * 0.7 + 0.1)[..., None]
    mask = torch.zeros(200, 300)
    mask[40:70, 30:110] = 1  # text on white paper: flat ring
    mask[120:150, 200:260] = 1  # text over the hatching: needs the model
    return truth, mask


@pytest.mark.parametrize("channels", [3, 1])
def test_flat_fill_takes_bubbles_and_the_model_does_the_rest(channels, caplog):
    truth, mask = _bubble_page()
    truth = truth[..., :channels]
    image = _damage(truth, mask)
    cfg = sgim.SGIMConfig(min_crop_side=0, context_margin=16, **SMALL)
    host = OracleHost(truth)
    with caplog.at_level(logging.INFO, logger="MDIM"):
        res = sgim.inpaint(host, image, mask, seed=2, config=cfg)
    assert torch.equal(res.image, truth)  # the bubble exactly white, the hatching from the model
    assert torch.equal(res.image[:, mask == 0], image[:, mask == 0])
    (region,) = res.flat_regions
    assert region.batch == 0 and region.box == (40, 30, 70, 110) and region.pixels == 30 * 80
    assert all(v == 1.0 for v in region.value)
    # only the hatched region reached the model
    assert [p.info.box for p in host.passes()] == [(104, 184, 166, 276)]
    assert "1 region(s), 2400 px filled" in caplog.text and "box (40, 30, 70, 110)" in caplog.text
    # the preview outlines the shortcut just outside the region; the output has no outline
    preview = res.sgi_preview
    assert preview.shape == truth.shape
    edge = preview[0, 38, 40:100]
    assert (edge[..., 1] == 0.85).all() if channels == 3 else (edge == 0.5).any()
    assert torch.equal(res.image[0, 38], truth[0, 38])
    off = OracleHost(truth)
    res_off = sgim.inpaint(off, image, mask, seed=2, config=sgim.SGIMConfig(flat_fill="off", min_crop_side=0,
                                                                           context_margin=16, **SMALL))
    assert res_off.flat_regions == [] and len(off.passes()) == 2 and torch.equal(res_off.image, truth)


def test_a_page_whose_mask_is_all_flat_makes_no_model_call():
    truth, mask = _bubble_page()
    mask[120:150, 200:260] = 0
    image = _damage(truth, mask)
    host = OracleHost(truth)
    res = sgim.inpaint(host, image, mask, config=sgim.SGIMConfig(**SMALL))
    assert host.calls == [] and res.frames == [] and len(res.flat_regions) == 1
    assert torch.equal(res.image, truth) and not torch.equal(image, truth)
    assert torch.equal(res.sgi_preview[0, 50, 30:110], truth[0, 50, 30:110])  # inside: the fill itself
