"""Paste & harmonise (mdim_core.inpaint.harmonize): paste geometry, the pass mask, the pass through the
SGIM engine's refine-only mode with an exact test host (no weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sgim_hosts import OracleHost

from mdim_core.imaging import masks
from mdim_core.inpaint import harmonize as hz
from mdim_core.inpaint.config import SGIMConfig

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _fg(h, w, seed=1, levels=(0.0, 0.5, 1.0)):
    """An RGBA foreground whose alpha takes the given levels."""
    rgb = _rand(1, h, w, 3, seed=seed)
    pick = torch.randint(0, len(levels), (1, h, w, 1), generator=torch.Generator().manual_seed(seed + 1))
    a = torch.tensor(levels)[pick]
    return torch.cat([rgb, a], -1)


class SeeingHost(OracleHost):
    """The oracle host that also keeps the pixel image of every pass."""

    def __init__(self, truth):
        super().__init__(truth)
        self.images = []

    def denoise(self, latent, *, image, mask, strength, steps, seed, info):
        self.images.append(image.clone())
        return super().denoise(latent, image=image, mask=mask, strength=strength, steps=steps, seed=seed, info=info)


# --- paste ---------------------------------------------------------------------------------------


def test_paste_at_scale_one_is_plain_alpha_compositing():
    page = _rand(1, 40, 50, 3)
    fg = _fg(12, 20)
    res = hz.paste(page, fg, x=7, y=5)
    rgb, a = fg[..., :3], fg[..., 3:]
    want = page.clone()
    want[:, 5:17, 7:27] = torch.where(a > 0, (page[:, 5:17, 7:27] * (1 - a) + rgb * a).clamp(0, 1), page[:, 5:17, 7:27])
    assert torch.equal(res.image, want)
    assert res.box == (5, 7, 17, 27) and res.size == (12, 20)
    assert torch.equal(res.coverage[:, 5:17, 7:27], a[..., 0]) and float(res.coverage.sum()) == float(a.sum())


def test_paste_clips_at_the_page_edges_and_refuses_a_foreground_off_the_page():
    page = _rand(1, 30, 30, 3)
    fg = torch.cat([_rand(1, 10, 10, 3, seed=2), torch.ones(1, 10, 10, 1)], -1)
    res = hz.paste(page, fg, x=-4, y=25)
    assert res.box == (25, 0, 30, 6)
    assert torch.equal(res.image[:, 25:30, 0:6], fg[:, 0:5, 4:10, :3])
    assert torch.equal(res.image[:, :25], page[:, :25]) and torch.equal(res.image[:, :, 6:], page[:, :, 6:])
    with pytest.raises(ValueError, match="lies outside"):
        hz.paste(page, fg, x=30, y=0)
    with pytest.raises(ValueError, match="lies outside"):
        hz.paste(page, fg, x=-10, y=-10)


def test_shrinking_is_antialiased_and_premultiplied():
    """A 1-px checkerboard of opaque black and transparent white, shrunk 2x: 50 % coverage of black
    everywhere (area averaging, not nearest-neighbour), and no white from the transparent pixels."""
    yy, xx = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    checker = ((yy + xx) % 2 == 0).float()
    fg = torch.stack([1 - checker] * 3 + [checker], -1)[None]  # black where opaque, white where transparent
    page = torch.full((1, 20, 20, 3), 0.8)
    res = hz.paste(page, fg, x=2, y=2, scale=0.5)
    assert res.size == (8, 8)
    assert torch.allclose(res.coverage[:, 2:10, 2:10], torch.tensor(0.5))
    assert torch.allclose(res.image[:, 2:10, 2:10], torch.tensor(0.4))  # 0.8 * (1 - 0.5) + black * 0.5


def test_enlarging_keeps_colour_within_coverage():
    fg = torch.zeros(1, 4, 4, 4)
    fg[..., 3] = 0.0
    fg[:, 1:3, 1:3] = torch.tensor([1.0, 1.0, 1.0, 1.0])  # an opaque white square on transparent black
    page = torch.zeros(1, 32, 32, 3)
    res = hz.paste(page, fg, x=0, y=0, scale=7.5)
    assert res.size == (30, 30)
    cov = res.coverage[0, :30, :30]
    out = res.image[0, :30, :30, 0]
    assert bool((out <= cov + 1e-6).all())  # white never exceeds its coverage: no halo around the square
    assert float(out.max()) == pytest.approx(1.0, abs=1e-6)


def test_mask_input_wins_over_alpha_and_grey_pages_get_grey():
    page = _rand(2, 24, 24, 1)
    fg = torch.cat([torch.tensor([1.0, 0.0, 0.0]).expand(1, 6, 6, 3), torch.zeros(1, 6, 6, 1)], -1)
    cover = torch.zeros(6, 6)
    cover[2:4] = 1.0
    res = hz.paste(page, fg, x=3, y=3, alpha=cover)
    assert res.image.shape == page.shape  # one channel stays one channel, the batch is served by one foreground
    assert torch.allclose(res.image[:, 5:7, 3:9, 0], torch.tensor(1 / 3))  # red -> grey (channel mean)
    assert torch.equal(res.image[:, 3:5], page[:, 3:5])  # alpha channel 0 there; the mask says so too
    rgba_page = torch.cat([_rand(1, 24, 24, 3), torch.ones(1, 24, 24, 1)], -1)
    assert hz.paste(rgba_page, fg, x=0, y=0, alpha=cover).image.shape[-1] == 3


def test_opaque_without_alpha_and_bad_inputs():
    page = _rand(1, 16, 16, 3)
    fg = _rand(1, 4, 4, 3, seed=5)
    res = hz.paste(page, fg, x=1, y=1)
    assert torch.equal(res.image[:, 1:5, 1:5], fg)
    with pytest.raises(ValueError, match="scale"):
        hz.paste(page, fg, x=0, y=0, scale=0)
    with pytest.raises(ValueError, match="scale"):
        hz.paste(page, fg, x=0, y=0, scale=40.0)  # 160 px on a 16 px page
    with pytest.raises(ValueError, match="x"):
        hz.paste(page, fg, x=1.5, y=0)
    with pytest.raises(ValueError, match="foreground: batch"):
        hz.paste(page, fg.repeat(3, 1, 1, 1), x=0, y=0)
    bad = torch.cat([fg, torch.full((1, 4, 4, 1), float("nan"))], -1)
    with pytest.raises(ValueError, match="alpha"):
        hz.paste(page, bad, x=0, y=0)
    with pytest.raises(ValueError, match="alpha values"):
        hz.paste(page, torch.cat([fg, torch.full((1, 4, 4, 1), 2.0)], -1), x=0, y=0)


@st.composite
def placements(draw):
    h, w = draw(st.integers(8, 90)), draw(st.integers(8, 90))
    fh, fw = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    scale = draw(st.sampled_from([0.25, 0.5, 1.0, 1.5, 2.3]))
    sh, sw = hz.scaled_size((fh, fw), scale)
    x = draw(st.integers(-sw + 1, w - 1))
    y = draw(st.integers(-sh + 1, h - 1))
    return h, w, fh, fw, scale, x, y, draw(st.integers(0, 6)), draw(st.integers(0, 10**6))


@SETTINGS
@given(placements())
def test_any_placement_changes_only_the_pass_mask(case):
    h, w, fh, fw, scale, x, y, ring, seed = case
    page = _rand(1, h, w, 3, seed=seed)
    fg = _fg(fh, fw, seed=seed + 7)
    res = hz.paste(page, fg, x=x, y=y, scale=scale)
    mask = hz.pass_mask(res.coverage, ring)
    changed = (res.image != page).any(-1)
    assert bool((mask[changed] == 1).all())  # every pasted pixel is repainted by the pass
    sy, sx = hz.scaled_size((fh, fw), scale)
    rect = torch.zeros(1, h, w)
    rect[:, max(0, y) : max(0, y + sy), max(0, x) : max(0, x + sx)] = 1
    assert bool((mask <= masks.grow(rect, ring)).all())  # and nothing beyond the ring around the foreground
    host = OracleHost(torch.rand(1, h, w, 3, generator=torch.Generator().manual_seed(seed + 1)))
    out = hz.harmonize(host, page, fg, x=x, y=y, scale=scale, ring=ring, seed=seed % 1000,
                       config=SGIMConfig(context_margin=8, min_crop_side=0))
    keep = out.mask[0] == 0
    assert torch.equal(out.image[0][keep], page[0][keep])  # outside the ring: bit for bit
    assert torch.equal(out.mask, mask)


# --- the harmonising pass ---------------------------------------------------------------------------


def test_harmonize_runs_one_low_strength_pass_from_the_pasted_page():
    h, w = 120, 160
    page = _rand(1, h, w, 3, seed=3)
    truth = _rand(1, h, w, 3, seed=4)  # "the page's style": what the oracle host draws
    fg = torch.cat([torch.zeros(1, 20, 30, 3), torch.ones(1, 20, 30, 1)], -1)
    host = SeeingHost(truth)
    res = hz.harmonize(host, page, fg, x=60, y=40, ring=4, feather=0, strength=0.3, steps=6, seed=9,
                       config=SGIMConfig(context_margin=16, min_crop_side=0))
    inside = res.mask[0] > 0
    assert int(inside.sum()) == int(masks.grow(res.pasted.coverage > 0, 4).sum())
    assert torch.equal(res.image[0][inside], truth[0][inside])  # the pass's drawing inside the ring
    assert torch.equal(res.image[0][~inside], page[0][~inside])  # the page outside it
    (call,) = host.passes()
    assert (call.info.name, call.strength, call.steps, call.seed) == ("fri", 0.3, 6, 9)
    y0, x0, y1, x1 = call.info.box
    assert (y0, x0, y1, x1) == (20, 40, 80, 110)  # pasted box (40..60, 60..90) + ring 4 + margin 16
    seen = host.images[0][0, : y1 - y0, : x1 - x0]
    assert torch.equal(seen, res.pasted.image[0, y0:y1, x0:x1])  # the pass starts from the pasted page
    assert res.passes == 1


def test_feather_blends_inside_the_ring_only():
    h, w = 80, 80
    page = torch.full((1, h, w, 3), 0.9)
    truth = torch.full((1, h, w, 3), 0.1)
    fg = torch.cat([torch.zeros(1, 10, 10, 3), torch.ones(1, 10, 10, 1)], -1)
    res = hz.harmonize(OracleHost(truth), page, fg, x=35, y=35, ring=8,
                       config=SGIMConfig(context_margin=8, min_crop_side=0))
    row = res.image[0, 40, :, 0]
    assert torch.equal(row[:27], torch.full((27,), 0.9))  # outside the ring (starts at x = 35 - 8)
    assert torch.allclose(row[35:45], torch.tensor(0.1))  # the pasted area itself: fully the pass's
    inner = row[27:35]
    assert bool((inner[1:] <= inner[:-1]).all()) and 0.1 < float(inner[0]) < 0.9  # a ramp over the ring


def test_harmonize_is_deterministic_and_leaves_inputs_alone():
    page = _rand(1, 64, 64, 3, seed=1)
    fg = _fg(16, 16, seed=2)
    before = (page.clone(), fg.clone())
    runs = [hz.harmonize(OracleHost(_rand(1, 64, 64, 3, seed=5)), page, fg, x=10, y=20, seed=4).image for _ in range(2)]
    assert torch.equal(runs[0], runs[1])
    assert torch.equal(page, before[0]) and torch.equal(fg, before[1])


def test_harmonize_bad_settings():
    page = _rand(1, 32, 32, 3)
    fg = _fg(8, 8)
    host = OracleHost(page)
    for kwargs, name in (({"strength": 0.0}, "strength"), ({"strength": 1.5}, "strength"), ({"steps": 0}, "steps"),
                         ({"ring": -1}, "ring"), ({"feather": -2}, "feather")):
        with pytest.raises(ValueError, match=name):
            hz.harmonize(host, page, fg, x=0, y=0, **kwargs)
    assert host.calls == []


def test_grey_page_batch_with_a_shared_foreground():
    page = _rand(2, 48, 40, 1, seed=8)
    truth = _rand(2, 48, 40, 1, seed=9)
    fg = _fg(10, 12, seed=3)
    res = hz.harmonize(OracleHost(truth), page, fg, x=5, y=6, ring=3, feather=0,
                       config=SGIMConfig(context_margin=8, min_crop_side=0))
    assert res.image.shape == page.shape
    inside = res.mask > 0
    assert torch.equal(res.image[..., 0][inside], truth[..., 0][inside])
    assert torch.equal(res.image[..., 0][~inside], page[..., 0][~inside])
    assert np.isclose(float(res.mask[0].sum()), float(res.mask[1].sum()))
