"""The SGIM engine (with the exact oracle hosts), its planner and the geometry under it at every
page size: 1 px to ~10 000 px per side, strips, the A and B paper series; gray, RGB and RGBA;
empty, full, speckled and border-touching masks.

With the oracle host a correct engine returns the ground truth inside the mask and the input
outside it, bit for bit, at the input's size; the planner covers every mask pixel with exactly
one crop that stays inside the page.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sgim_hosts import IdentityHost, OracleHost
from size_strategies import MASK_KINDS, make_mask, page_size, paper_sizes, side

from mdim_core.imaging import geometry
from mdim_core.inpaint import plan, sgim

SWEEP = settings(max_examples=30, deadline=None)

configs = st.fixed_dictionaries({
    "steps": st.just(2),
    "fri_steps": st.just(1),
    "sgi_max_side": st.sampled_from([8, 64, 256, 1024]),
    "plan": st.sampled_from(["halve", "fit"]),
    "run_fri": st.sampled_from(["auto", "always"]),
    "context_margin": st.sampled_from([0, 16, 64]),
    "min_crop_side": st.sampled_from([0, 64, 512]),
    "grow_mask": st.sampled_from([0, 0, 3]),
    "fri_tile_side": st.sampled_from([0, 64, 2048]),
    "fri_tile_overlap": st.just(16),
    "pad_mode": st.sampled_from(["replicate", "reflect"]),
    "limit_to_panel": st.booleans(),
})


def _pages(size, channels, batch, seed):
    g = torch.Generator().manual_seed(seed)
    truth = torch.rand(batch, *size, channels, generator=g)
    if channels == 4:
        truth[..., 3] = 1.0
    return truth


@SWEEP
@given(size=page_size(max_side=10_000, max_area=40_000), channels=st.sampled_from([1, 3, 4]),
       batch=st.sampled_from([1, 2]), kind=st.sampled_from(MASK_KINDS), config=configs)
def test_engine_exact_outside_and_truth_inside_at_any_size(size, channels, batch, kind, config):
    truth = _pages(size, channels, batch, seed=size[0] * 7 + size[1])
    mask = torch.from_numpy(make_mask(kind, size, seed=size[1]))
    image = torch.where(mask[None, ..., None], torch.zeros_like(truth), truth)  # 'text' inside the mask
    before = image.clone()
    want = truth[..., :3] if channels == 4 else truth  # RGBA loses its alpha
    res = sgim.inpaint(OracleHost(want), image, mask.float(), seed=3, config=sgim.SGIMConfig(**config))
    assert res.image.shape == want.shape and res.image.dtype == torch.float32
    assert torch.equal(image, before)  # the input is never written
    hole = mask[None].expand(batch, -1, -1)
    if kind == "empty":
        assert not res.frames and not res.jobs  # nothing to do, no host call
    # outside the (grown) mask the input, bit for bit; inside the ground truth (input == truth outside)
    assert torch.equal(res.image[~hole], want[~hole])
    assert torch.equal(res.image, want)


@pytest.mark.slow
@settings(max_examples=3, deadline=None)
@given(size=st.sampled_from([(1, 10_000), (10_000, 1), (1, 9_973)]
                            + [s for s in paper_sizes() if 1_000_000 < s[0] * s[1] <= 4_000_000]),
       kind=st.sampled_from(["full", "border"]))
def test_engine_on_large_pages_and_long_strips(size, kind):
    truth = _pages(size, 1, 1, seed=5)
    mask = torch.from_numpy(make_mask(kind, size))
    image = torch.where(mask[None, ..., None], torch.zeros_like(truth), truth)
    res = sgim.inpaint(OracleHost(truth), image, mask, seed=1, config=sgim.SGIMConfig(steps=2, fri_steps=1))
    assert torch.equal(res.image, truth)


@settings(max_examples=10, deadline=None)
@given(size=page_size(max_side=3000, max_area=20_000), kind=st.sampled_from(MASK_KINDS))
def test_identity_host_gives_the_input_back_at_any_size(size, kind):
    image = _pages(size, 3, 1, seed=sum(size))
    mask = torch.from_numpy(make_mask(kind, size, seed=size[0]))
    cfg = sgim.SGIMConfig(steps=2, fri_steps=1, sgi_max_side=max(8, *size), run_fri="always", fri_tile_side=64,
                          fri_tile_overlap=16)
    res = sgim.inpaint(IdentityHost(), image, mask, config=cfg)  # not shrunk: nothing upscaled is pasted
    assert torch.equal(res.image, image)  # the exact VAE round trip, padding and pasting change nothing


def _covers_every_mask_pixel_once(frames, m):
    """Each mask pixel is owned by exactly one full-resolution crop of exactly one frame."""
    owned = torch.zeros(m.shape, dtype=torch.int32)
    for frame in frames:
        y0, x0, y1, x1 = frame.box
        assert 0 <= y0 < y1 <= m.shape[0] and 0 <= x0 < x1 <= m.shape[1]
        small = frame.sgi_size
        assert 1 <= small[0] <= frame.size[0] and 1 <= small[1] <= frame.size[1]
        for job in frame.sgi:
            assert 0 <= job.box[0] < job.box[2] <= small[0] and 0 <= job.box[1] < job.box[3] <= small[1]
        for crop in frame.crops:
            cy0, cx0, cy1, cx1 = crop.box
            assert y0 <= cy0 < cy1 <= y1 and x0 <= cx0 < cx1 <= x1
            local = frame.mask[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0][None]
            own, active = crop.masks(local)
            assert bool((own <= active).all())
            owned[cy0:cy1, cx0:cx1] += own[0].int()
            for tile in crop.tiles:  # FRI tiles: inside the crop, cores inside the tiles
                ty0, tx0, ty1, tx1 = tile.box
                assert 0 <= ty0 <= tile.core[0] < tile.core[2] <= ty1 <= cy1 - cy0
                assert 0 <= tx0 <= tile.core[1] < tile.core[3] <= tx1 <= cx1 - cx0
    assert torch.equal(owned > 0, m) and int(owned.max()) <= 1


@settings(max_examples=40, deadline=None)
@given(size=page_size(max_side=10_000, max_area=1_000_000), kind=st.sampled_from(MASK_KINDS), config=configs)
def test_planner_covers_every_mask_pixel_once_inside_the_page(size, kind, config):
    m = torch.from_numpy(make_mask(kind, size, seed=size[0]))
    cfg = sgim.SGIMConfig(**{**config, "limit_to_panel": False, "grow_mask": 0})
    frames = plan.plan(size, m[None], cfg, seed=11)
    if kind == "empty":
        assert frames == [] or all(not f.crops for f in frames)
        return
    _covers_every_mask_pixel_once(frames, m)
    for frame in frames:
        if cfg.plan == "halve" or not frame.shrunk:
            assert max(frame.sgi_size) <= max(cfg.sgi_max_side, 1) or not frame.shrunk


@settings(max_examples=60, deadline=None)
@given(h=side(), w=side(), max_side=st.integers(1, 4096), mode=st.sampled_from(["halve", "fit"]))
def test_shrink_plan_any_size(h, w, max_side, mode):
    small = geometry.shrink_plan((h, w), max_side, mode)
    assert 1 <= small[0] <= h and 1 <= small[1] <= w
    assert max(small) <= max_side or max(h, w) <= max_side
    if max(h, w) <= max_side:
        assert small == (h, w)


@settings(max_examples=60, deadline=None)
@given(length=side(), tile=st.integers(1, 4096), overlap=st.integers(0, 512))
def test_tile_spans_cover_any_length_once(length, tile, overlap):
    if overlap >= tile:
        with pytest.raises(ValueError, match="tile"):
            geometry.tile_spans(length, tile, overlap)
        return
    spans = geometry.tile_spans(length, tile, overlap)
    assert spans[0][0] == 0 == spans[0][2] and spans[-1][1] == length == spans[-1][3]
    for (s, e, cs, ce), nxt in zip(spans, spans[1:] + [None]):
        assert 0 <= s <= cs < ce <= e <= length and e - s <= tile
        if nxt is not None:
            assert nxt[2] == ce  # cores partition [0, length)
            assert e - nxt[0] >= overlap  # neighbours overlap by at least `overlap`


@settings(max_examples=30, deadline=None)
@given(size=page_size(max_side=10_000, max_area=200_000), multiple=st.sampled_from([1, 8, 64]),
       mode=st.sampled_from(["replicate", "reflect"]))
def test_padding_any_size_keeps_the_page_and_reaches_the_multiple(size, multiple, mode):
    image = torch.rand(1, *size, 3, generator=torch.Generator().manual_seed(size[0]))
    padded = geometry.pad_image(image, multiple, mode)
    assert padded.shape[1] % multiple == 0 and padded.shape[2] % multiple == 0
    assert padded.shape[1] - size[0] < multiple and padded.shape[2] - size[1] < multiple
    assert torch.equal(padded[:, : size[0], : size[1]], image)
    mask = torch.rand(1, *size) > 0.5
    for mask_mode in ("zero", "replicate"):
        pm = geometry.pad_mask(mask.float(), multiple, mask_mode)
        assert pm.shape == padded.shape[:3] and torch.equal(pm[:, : size[0], : size[1]], mask.float())
    assert geometry.pad_mask(mask.float(), multiple)[:, size[0] :].sum() == 0


@settings(max_examples=20, deadline=None)
@given(small=page_size(max_side=300, max_area=5_000), scale=st.integers(1, 9))
def test_sample_box_equals_the_whole_enlargement_at_any_size(small, scale):
    image = torch.rand(1, *small, 3, generator=torch.Generator().manual_seed(small[1]))
    size = (small[0] * scale + scale // 2, small[1] * scale + 1)
    whole = geometry.resize_image(image, size)
    for box in ((0, 0, *size), (size[0] // 2, size[1] // 3, size[0], size[1]), (size[0] - 1, 0, size[0], 1)):
        part = geometry.sample_box(image, size, box)
        assert part.shape == (1, box[2] - box[0], box[3] - box[1], 3)
        assert torch.allclose(part, whole[:, box[0] : box[2], box[1] : box[3]], atol=5e-5)


def test_engine_errors_name_the_input():
    host = OracleHost(torch.rand(1, 8, 8, 3))
    with pytest.raises(ValueError, match=r"^image: empty image batch"):
        sgim.inpaint(host, torch.rand(1, 0, 8, 3), torch.ones(8, 8))
    with pytest.raises(ValueError, match=r"^mask: batch of 3 masks for 1 images"):
        sgim.inpaint(host, torch.rand(1, 8, 8, 3), torch.ones(3, 8, 8))
    with pytest.raises(ValueError, match=r"^mask: contains NaN"):
        sgim.inpaint(host, torch.rand(1, 8, 8, 3), torch.full((8, 8), float("nan")))
    with pytest.raises(ValueError, match=r"^image: expected float pixels"):
        sgim.inpaint(host, torch.zeros(1, 8, 8, 3, dtype=torch.uint8), torch.ones(8, 8))
