"""LaMa fills (mdim_core.inpaint.lama): safe loading, the crop strategy, exactness outside the mask.

The crop strategy is checked with exact stand-in models (a constant fill, an inversion that shows any
misalignment of crop, pad and paste); loading and running with spandrel's LaMa network, randomly
initialised in code and written in each file layout users have (no weights are downloaded).
"""

from __future__ import annotations

import importlib.util
import io
import pickle
import zipfile

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lama_nets import random_lama, traced, write_lama
from safetensors.torch import save_file

from mdim_core.imaging import geometry, masks
from mdim_core.inpaint import lama
from mdim_core.weight_files import read_weights

needs_spandrel = pytest.mark.skipif(importlib.util.find_spec("spandrel") is None, reason="spandrel is not installed")

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- stand-in models ----------------------------------------------------------------------------


class Recorder:
    """Records every call; ``fn(image, mask)`` gives the output (default: a constant 0.25)."""

    def __init__(self, fn=None):
        self.fn = fn or (lambda x, m: torch.full_like(x, 0.25))
        self.calls: list[tuple[tuple[int, ...], torch.Tensor, torch.Tensor]] = []

    def __call__(self, x, m):
        assert x.dtype == torch.float32 and x.ndim == 4 and x.shape[1] == 3
        assert m.shape == (x.shape[0], 1, *x.shape[2:])
        assert x.shape[2] % 8 == 0 and x.shape[3] % 8 == 0 and min(x.shape[2:]) >= 16
        assert set(torch.unique(m).tolist()) <= {0.0, 1.0}
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
        self.calls.append((tuple(x.shape), x.clone(), m.clone()))
        return self.fn(x, m)


def invert(x, m):
    return 1.0 - x


def page_and_mask(h, w, boxes, seed=0, channels=3):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(1, h, w, channels, generator=g)
    mask = torch.zeros(1, h, w)
    for y0, x0, y1, x1 in boxes:
        mask[:, y0:y1, x0:x1] = 1.0
    return image, mask


def outside_equal(out, image, mask):
    keep = ~mask.bool()
    return torch.equal(out[keep], image[keep])


# --- the crop strategy --------------------------------------------------------------------------


def test_empty_mask_returns_the_input_without_a_model_call():
    image, mask = page_and_mask(40, 50, [])
    model = Recorder()
    result = lama.fill(model, image, mask)
    assert result.image is image and model.calls == [] and result.model_calls == 0


def test_fill_is_aligned_pixel_for_pixel_and_exact_outside():
    """An inverting stand-in: inside the mask the output is 1 - input exactly (crop, pad and paste aligned)."""
    image, mask = page_and_mask(97, 131, [(10, 12, 30, 40), (60, 90, 97, 131)], seed=1)
    result = lama.fill(Recorder(invert), image, mask, lama.LamaConfig(context_margin=20))
    inside = mask.bool()
    assert torch.equal(result.image[inside], 1.0 - image[inside])
    assert outside_equal(result.image, image, mask)


def test_inputs_are_not_modified():
    image, mask = page_and_mask(64, 64, [(5, 5, 20, 30)])
    before_i, before_m = image.clone(), mask.clone()
    lama.fill(Recorder(invert), image, mask)
    assert torch.equal(image, before_i) and torch.equal(mask, before_m)


def test_large_crop_is_shrunk_to_max_side_and_the_fill_enlarged_back():
    image, mask = page_and_mask(300, 200, [(40, 30, 260, 170)], seed=2)
    model = Recorder()
    result = lama.fill(model, image, mask, lama.LamaConfig(max_side=64, context_margin=10))
    (shape, _, _), = model.calls
    assert max(shape[2:]) == 64  # the crop's long side is max_side (its aspect kept): not the page squashed
    crop = result.plans[0].crops[0]
    assert crop.box == (30, 20, 270, 180) and crop.size == (64, 43) and crop.padded == (64, 48)
    inside = mask.bool()
    assert torch.allclose(result.image[inside], torch.tensor(0.25), atol=1e-6)  # enlarged constant stays constant
    assert outside_equal(result.image, image, mask)


def test_small_crops_keep_full_resolution_on_a_large_page():
    """A 4000 px page with two small regions: each crop is region + margin, at full resolution."""
    image = torch.ones(1, 4000, 3000, 1)
    mask = torch.zeros(1, 4000, 3000)
    mask[:, 100:140, 200:260] = 1
    mask[:, 3500:3530, 2500:2700] = 1
    model = Recorder()
    result = lama.fill(model, image, mask, lama.LamaConfig(context_margin=64))
    sizes = sorted(shape[2:] for shape, _, _ in model.calls)
    assert sizes == [(160, 328), (168, 192)]  # (30+128, 200+128) padded to /8; (40+128, 60+128)
    assert not any(c.shrunk for c in result.plans[0].crops)


def test_neighbours_share_a_crop_only_while_it_fits_max_side():
    size = (200, 600)
    mask = torch.zeros(size, dtype=torch.bool)
    mask[90:110, 100:120] = True  # two regions 60 px apart: their context boxes overlap
    mask[90:110, 180:200] = True
    mask[90:110, 480:500] = True  # far away: its own crop
    config = lama.LamaConfig(max_side=512, context_margin=40)
    p = lama.plan(mask, config)
    assert [c.box for c in p.crops] == [(50, 60, 150, 240), (50, 440, 150, 540)]
    # with a small max_side the first two stay separate, overlapping crops (merging would shrink them)
    p = lama.plan(mask, lama.LamaConfig(max_side=128, context_margin=40))
    assert [c.box for c in p.crops] == [(50, 60, 150, 160), (50, 140, 150, 240), (50, 440, 150, 540)]


def test_overlapping_crops_fill_their_own_regions_and_see_earlier_fills():
    """Separate overlapping crops: each call's hole holds its own regions and the later crops' ones;
    the earlier crops' fills are context (not holes) by then."""
    image, mask = page_and_mask(200, 600, [(90, 100, 110, 120), (90, 180, 110, 200)], seed=3)
    model = Recorder(invert)
    result = lama.fill(model, image, mask, lama.LamaConfig(max_side=128, context_margin=40))
    first, second = (m[0, 0] for _, _, m in model.calls)
    # crop 0 = (50, 60, 150, 160): own region at x 100..120 -> local 40..60; the second region (x 180..)
    # starts at local 120 and is beyond this crop's box except for nothing (box ends at x 160)
    assert first[40:60, 40:60].all() and int(first.sum()) == 400
    # crop 1 = (50, 140, 150, 240): the first region (x 100..120) lies outside it; its own at local 40..60
    assert second[40:60, 40:60].all() and int(second.sum()) == 400
    assert torch.equal(result.image[mask.bool()], 1.0 - image[mask.bool()])


def test_later_regions_are_holes_for_an_earlier_crop_that_sees_them():
    image, mask = page_and_mask(120, 400, [(50, 100, 70, 120), (50, 150, 70, 170)], seed=4)
    model = Recorder(invert)
    lama.fill(model, image, mask, lama.LamaConfig(max_side=128, context_margin=40))
    first = model.calls[0][2][0, 0]
    # crop 0 = (10, 60, 110, 160) holds its region (local x 40..60) and the start of region 1 (x 150..160)
    assert first[40:60, 40:60].all() and first[40:60, 90:100].all()
    second = model.calls[1][2][0, 0]
    # crop 1 = (10, 110, 110, 210): region 0 (x 100..120, filled by now) is context -> not a hole
    assert not second[:, :10].any() and second[40:60, 40:60].all()


@st.composite
def layouts(draw):
    h = draw(st.integers(8, 160))
    w = draw(st.integers(8, 160))
    kind = draw(st.sampled_from(["empty", "full", "border", "specks", "random"]))
    m = np.zeros((h, w), bool)
    if kind == "full":
        m[:] = True
    elif kind == "border":
        side = draw(st.sampled_from(["top", "left", "bottom", "right", "corner"]))
        t = draw(st.integers(1, max(1, min(h, w) // 3)))
        if side in ("top", "corner"):
            m[:t] = True
        if side in ("left", "corner"):
            m[:, :t] = True
        if side == "bottom":
            m[-t:] = True
        if side == "right":
            m[:, -t:] = True
    elif kind == "specks":
        n = draw(st.integers(1, 40))
        ys = draw(st.lists(st.integers(0, h - 1), min_size=n, max_size=n))
        xs = draw(st.lists(st.integers(0, w - 1), min_size=n, max_size=n))
        m[ys, xs] = True
    elif kind == "random":
        seed = draw(st.integers(0, 2**16))
        m = np.random.default_rng(seed).random((h, w)) < draw(st.sampled_from([0.01, 0.1, 0.5]))
    return m, draw(st.sampled_from([0, 16, 48, 64])), draw(st.sampled_from([0, 8, 30]))


@SETTINGS
@given(layouts())
def test_any_layout_fills_the_mask_and_keeps_the_rest(case):
    m, max_side, margin = case
    h, w = m.shape
    g = torch.Generator().manual_seed(h * 1000 + w)
    image = torch.rand(1, h, w, 3, generator=g)
    mask = torch.from_numpy(m.astype(np.float32))[None]
    model = Recorder(invert)
    config = lama.LamaConfig(max_side=max_side, context_margin=margin)
    result = lama.fill(model, image, mask, config)
    out = result.image
    assert out.shape == image.shape
    assert outside_equal(out, image, mask)
    p = result.plans[0]
    if not m.any():
        assert p is None and model.calls == []
        return
    owners = np.where(m, p.owners((0, 0, h, w)), -1)  # the crop that fills each mask pixel
    assert (owners[m] >= 0).all()  # every mask pixel is filled by exactly one crop
    for crop in p.crops:
        y0, x0, y1, x1 = crop.box
        assert (owners[y0:y1, x0:x1] == crop.index).sum() == (owners == crop.index).sum()  # inside its box
        # never larger than needed: the union of its regions' context boxes
        need = [geometry.expand_box(p.regions[r], margin, (h, w)) for r in crop.regions]
        union = need[0]
        for b in need[1:]:
            union = geometry.union_box(union, b)
        assert crop.box == union
        assert crop.size == lama.model_size(geometry.box_size(crop.box), max_side)
        if max_side:
            assert max(crop.size) <= max_side
    for (shape, _, _), crop in zip(model.calls, p.crops):
        assert shape[2:] == crop.padded
    unshrunk = torch.zeros(h, w, dtype=torch.bool)
    for crop in p.crops:
        if not crop.shrunk:
            y0, x0, y1, x1 = crop.box
            unshrunk[y0:y1, x0:x1] |= torch.from_numpy(owners[y0:y1, x0:x1] == crop.index)
    assert torch.equal(out[0][unshrunk], 1.0 - image[0][unshrunk])


@SETTINGS
@given(st.integers(16, 120), st.integers(16, 120), st.integers(0, 3))
def test_batches_and_shared_masks(h, w, seed):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(3, h, w, 3, generator=g)
    mask = (torch.rand(1, h, w, generator=g) > 0.9).float()
    model = Recorder(invert)
    result = lama.fill(model, image, mask)
    assert result.plans[0] is result.plans[1] is result.plans[2]  # planned once for a shared mask
    for b in range(3):
        assert outside_equal(result.image[b : b + 1], image[b : b + 1], mask)
    one = lama.fill(Recorder(invert), image[1:2], mask).image
    assert torch.equal(one, result.image[1:2])


def test_grayscale_and_rgba_pages():
    gray, mask = page_and_mask(40, 48, [(10, 10, 30, 30)], channels=1)
    colour = lambda x, m: torch.stack([x[:, 0] * 0.5, x[:, 1], 1 - x[:, 2]], 1)  # noqa: E731 - tinted fills
    out = lama.fill(Recorder(colour), gray, mask).image
    assert out.shape == gray.shape  # one channel in, one out
    rgb_gray = gray.expand(-1, -1, -1, 3).clone()
    out = lama.fill(Recorder(colour), rgb_gray, mask).image
    assert torch.equal(out[..., 0], out[..., 1]) and torch.equal(out[..., 1], out[..., 2])  # a grey page stays grey
    rgba = torch.cat([rgb_gray, torch.ones_like(gray)], -1)
    out = lama.fill(Recorder(invert), rgba, mask).image
    assert out.shape[-1] == 3 and outside_equal(out, rgb_gray, mask)


def test_progress_counts_crops_and_cancel_stops_without_touching_inputs():
    image, mask = page_and_mask(100, 400, [(40, 20, 60, 40), (40, 200, 60, 220), (40, 360, 60, 380)])
    seen = []
    lama.fill(Recorder(), image, mask, lama.LamaConfig(context_margin=16), progress=lambda d, t: seen.append((d, t)))
    assert seen == [(0, 3), (1, 3), (2, 3), (3, 3)]

    def cancel(done, total):
        if done == 1:
            raise KeyboardInterrupt

    model = Recorder()
    before = image.clone()
    with pytest.raises(KeyboardInterrupt):
        lama.fill(model, image, mask, lama.LamaConfig(context_margin=16), progress=cancel)
    assert len(model.calls) == 1 and torch.equal(image, before)


def test_mask_cleanup_and_bad_inputs():
    image, mask = page_and_mask(32, 32, [(8, 8, 16, 16)])
    soft = mask * 0.98  # a JPEG-like mask snaps
    out = lama.fill(Recorder(invert), image, soft).image
    assert torch.equal(out[mask.bool()], 1.0 - image[mask.bool()])
    grown = lama.fill(Recorder(invert), image, mask, lama.LamaConfig(grow_mask=2)).image
    g = masks.grow(mask, 2).bool()
    assert torch.equal(grown[g], 1.0 - image[g]) and outside_equal(grown, image, g.float())
    with pytest.raises(ValueError, match="image"):
        lama.fill(Recorder(), image.clone().index_fill_(1, torch.tensor([0]), float("nan")), mask)
    with pytest.raises(ValueError, match="mask"):
        lama.fill(Recorder(), image, torch.zeros(2, 32, 32))
    with pytest.raises(ValueError, match="max_side"):
        lama.LamaConfig(max_side=8)
    with pytest.raises(ValueError, match="context_margin"):
        lama.LamaConfig(context_margin=-1)
    with pytest.raises(RuntimeError, match="LaMa returned"):
        lama.fill(lambda x, m: x[:, :, :8], image, mask)
    with pytest.raises(RuntimeError, match="NaN"):
        lama.fill(lambda x, m: x * float("nan"), image, mask)


def test_fp16_is_refused():
    with pytest.raises(ValueError, match="float16"):
        lama.LamaConfig(precision="fp16")
    with pytest.raises(ValueError, match="float16"):
        lama.check_precision("float16")
    with pytest.raises(ValueError, match="float16"):
        lama.LamaModel(torch.nn.Conv2d(4, 3, 1).half())
    with pytest.raises(ValueError, match="precision"):
        lama.LamaConfig(precision="int8")


# --- reading weight files -----------------------------------------------------------------------


class _Touch:
    """A pickle that, if it were ever unpickled without restrictions, would create ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_pickles_with_code_are_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    torch.save({"model.1.bn_l.running_mean": torch.zeros(2), "payload": _Touch(marker)}, path)
    with pytest.raises(ValueError, match="besides weights"):
        read_weights(path)
    assert not marker.exists()


def test_torchscript_archive_with_code_objects_is_refused(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("evil/constants.pkl", pickle.dumps(()))
        z.writestr("evil/data.pkl", pickle.dumps(_Touch(marker), protocol=2))
        z.writestr("evil/version", "3\n")
    with pytest.raises(ValueError, match="would run code"):
        read_weights(path)
    assert not marker.exists()
    # a module object called with arguments (nothing TorchScript writes): refused, not a crash
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("odd/constants.pkl", pickle.dumps(()))
        z.writestr("odd/data.pkl", b"\x80\x02c__torch__.m\nM\n(K\x01tR.")
    with pytest.raises(ValueError, match="would run code"):
        read_weights(path)


class _Small(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.out = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 1, bias=False))

    def forward(self, x, m):
        return self.out(self.bn(self.conv(torch.cat([x, m], 1))))


def test_torchscript_weights_equal_torch_jit_load(tmp_path):
    """The restricted reader returns what torch.jit.load(...).state_dict() does, without running the archive."""
    net = _Small()
    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        for t in list(net.parameters()) + [net.bn.running_mean, net.bn.running_var]:
            t.copy_(torch.rand(t.shape, generator=g))
    reference = traced(net, tmp_path / "small.pt", size=16)
    got = read_weights(tmp_path / "small.pt")
    assert sorted(got) == sorted(reference)
    for k, v in reference.items():
        assert got[k].dtype == v.dtype and torch.equal(got[k], v), k


def test_unknown_files_and_extensions(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        read_weights(tmp_path / "missing.safetensors")
    (tmp_path / "x.onnx").write_bytes(b"\0")
    with pytest.raises(ValueError, match="expected one of"):
        read_weights(tmp_path / "x.onnx")
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="safetensors"):
        read_weights(tmp_path / "bad.safetensors")
    save_file({"up.weight": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="no LaMa generator"):
        lama.lama_state_dict(read_weights(tmp_path / "other.safetensors"), "other.safetensors")


def test_state_dict_layouts_map_to_spandrel_names():
    t = torch.zeros(1)
    names = ["model.1.bn_l.running_mean", "model.5.conv.weight"]
    want = {"model." + n for n in names}
    for prefix, extra in (("model.", {}), ("generator.", {"discriminator.model.0.weight": t}),
                          ("", {}), ("state_dict.generator.", {"state_dict.loss.x": t}),
                          ("gen_state_dict.", {"dis_state_dict.model.1.weight": t})):
        weights = {prefix + n: t for n in names} | extra
        assert set(lama.lama_state_dict(weights)) == want, prefix


# --- spandrel's LaMa network ------------------------------------------------------------------------




@pytest.fixture(scope="module")
def net():
    return random_lama(0)


@needs_spandrel
@pytest.mark.slow
@pytest.mark.parametrize("layout,name", [("safetensors", "lama.safetensors"), ("lama-ckpt", "best.ckpt"),
                                         ("gen-state-dict", "lama_large_512px.pth")])
def test_load_lama_from_each_layout_gives_the_same_network(net, tmp_path, layout, name):
    path = write_lama(net, tmp_path / name, layout)
    loaded = lama.load_lama(path)
    want = net.state_dict()
    got = loaded.module.state_dict()
    assert sorted(got) == sorted(want)
    assert all(torch.equal(got[k], want[k]) for k in want)
    x = torch.rand(1, 3, 32, 40, generator=torch.Generator().manual_seed(1))
    m = torch.zeros(1, 1, 32, 40)
    m[..., 8:20, 10:30] = 1
    with torch.inference_mode():
        assert torch.equal(loaded(x, m), net(x, m).clamp(0, 1))


@needs_spandrel
@pytest.mark.slow
def test_load_lama_from_a_torchscript_file(net, tmp_path):
    """IOPaint's big-lama.pt is a traced network: read without running it, same weights as torch.jit.load."""
    reference = traced(net, tmp_path / "big-lama.pt", size=32)
    loaded = lama.load_lama(tmp_path / "big-lama.pt")
    got = loaded.module.state_dict()
    for k, v in reference.items():
        assert torch.equal(got[k], v), k


@needs_spandrel
@pytest.mark.slow
def test_real_network_fill_is_deterministic_and_exact_outside(net):
    model = lama.LamaModel(random_lama(0))
    image, mask = page_and_mask(70, 90, [(10, 10, 30, 50), (50, 60, 70, 90)], seed=5)
    a = lama.fill(model, image, mask, lama.LamaConfig(max_side=32, context_margin=8)).image
    b = lama.fill(model, image, mask, lama.LamaConfig(max_side=32, context_margin=8)).image
    assert torch.equal(a, b)
    assert outside_equal(a, image, mask)
    assert not torch.equal(a[mask.bool()], image[mask.bool()])
    assert float(a.min()) >= 0 and float(a.max()) <= 1


@needs_spandrel
@pytest.mark.slow
def test_bf16_runs_with_fourier_transforms_in_fp32_and_stays_close(net):
    model = lama.LamaModel(random_lama(0))
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    m = torch.ones(1, 1, 16, 16)
    full = model(x, m, "fp32")
    half = model(x, m, "bf16")
    assert half.dtype == torch.float32 and torch.isfinite(half).all()
    assert (half - full).abs().max() < 0.05


@needs_spandrel
def test_incomplete_lama_weights_are_refused(tmp_path):
    # a LaMa probe key alone does not make a LaMa network: spandrel rejects the incomplete weights
    save_file({"model.model.1.bn_l.running_mean": torch.zeros(3)}, tmp_path / "partial.safetensors")
    with pytest.raises(ValueError, match="partial.safetensors"):
        lama.load_lama(tmp_path / "partial.safetensors")


def test_weights_of_a_truncated_zip_are_refused(tmp_path):
    buf = io.BytesIO()
    torch.save({"model.model.1.bn_l.running_mean": torch.zeros(3)}, buf)
    (tmp_path / "cut.pth").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ValueError, match="cut.pth"):
        read_weights(tmp_path / "cut.pth")
