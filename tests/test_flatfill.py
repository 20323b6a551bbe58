"""Flat fill: regions inside flat paper or ink are filled with exactly the ring's value; the rest is left."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mdim_core.inpaint.flatfill import FlatRegion, flat_fill, ring_value
from mdim_core.synth import generate_page


def _page(h=60, w=80, c=3, paper=1.0):
    return torch.full((1, h, w, c), paper, dtype=torch.float32)


def test_white_bubble_text_is_filled_exactly_and_outside_is_untouched():
    image = _page()
    image[0, 10:20, 10:30] = 0.0  # "text" on paper
    image[0, 40:55, 50:70] = torch.rand(15, 20, 3, generator=torch.Generator().manual_seed(0))  # art
    mask = torch.zeros(1, 60, 80, dtype=torch.bool)
    mask[0, 8:22, 8:32] = True  # covers the text with a margin
    mask[0, 44:50, 55:64] = True  # inside the art: its ring is not flat
    before = image.clone()
    res = flat_fill(image, mask)
    assert torch.equal(image, before)  # input untouched
    assert res.regions == [FlatRegion(0, (8, 8, 22, 32), (1.0, 1.0, 1.0), 14 * 24)]
    assert torch.equal(res.image[0, 8:22, 8:32], torch.ones(14, 24, 3))
    out = res.image
    assert torch.equal(out[~mask], image[~mask])  # outside the mask: bit-exact
    assert torch.equal(out[0, 44:50, 55:64], image[0, 44:50, 55:64])  # left for a model
    assert res.remaining.dtype == torch.bool and torch.equal(res.remaining[0, 44:50, 55:64], torch.ones(6, 9, dtype=torch.bool))
    assert int(res.remaining.sum()) == 6 * 9
    assert "1 region(s)" in res.summary()


def test_solid_black_and_noisy_paper_with_a_touching_outline():
    g = torch.Generator().manual_seed(1)
    image = (0.93 + 0.04 * torch.rand(1, 64, 64, 1, generator=g))  # noisy paper 0.93..0.97
    image[0, :, 40:] = 0.02 * torch.rand(64, 24, 1, generator=g)  # noisy black
    image[0, 10:14, 8:20] = 0.0
    image[0, 30, 8:30] = 0.0  # a line touching the ring of region 1 on a few pixels
    mask = torch.zeros(1, 64, 64, dtype=torch.bool)
    mask[0, 9:15, 7:21] = True
    mask[0, 20:28, 46:58] = True  # inside black
    res = flat_fill(image, mask)
    assert len(res.regions) == 2
    white, black = sorted(res.regions, key=lambda r: -r.value[0])
    ring_white = image[0, 6:18, 4:24][~mask[0, 6:18, 4:24]]
    assert white.value[0] in set(ring_white[:, 0].tolist())  # a value of the ring itself
    assert 0.93 <= white.value[0] <= 0.97 and black.value[0] <= 0.02
    assert torch.all(res.image[0, 9:15, 7:21] == white.value[0])
    assert not res.remaining.any()


def test_screentone_and_mid_grey_rings_are_not_flat():
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    tone = (((yy % 4) < 2) & ((xx % 4) < 2)).float()[None, ..., None]  # dots
    mask = torch.zeros(1, 64, 64, dtype=torch.bool)
    mask[0, 20:30, 20:30] = True
    assert flat_fill(tone, mask).regions == []
    grey = torch.full((1, 64, 64, 3), 0.5)
    res = flat_fill(grey, mask)
    assert res.regions == [] and res.image is grey
    assert flat_fill(grey, mask, levels=1.0).regions[0].value == (0.5, 0.5, 0.5)  # any flat colour


def test_empty_full_and_border_masks():
    image = _page(20, 30)
    image[0, 0:3, 0:5] = 0.0
    empty = torch.zeros(1, 20, 30, dtype=torch.bool)
    res = flat_fill(image, empty)
    assert res.image is image and res.regions == [] and not res.remaining.any()
    full = torch.ones(1, 20, 30, dtype=torch.bool)
    res = flat_fill(image, full)  # no ring at all: left for a model
    assert res.regions == [] and res.remaining.all()
    corner = torch.zeros(1, 20, 30, dtype=torch.bool)
    corner[0, 0:4, 0:6] = True  # touches two borders: the ring is what lies inside the page
    res = flat_fill(image, corner)
    assert res.regions[0].box == (0, 0, 4, 6) and torch.all(res.image[0, :4, :6] == 1.0)


def test_rgba_and_grey_alpha_fill_alpha_like_colour_but_judge_on_colour():
    image = torch.ones(1, 30, 30, 4)
    image[..., 3] = 0.5  # half-transparent paper
    image[0, 10:15, 10:15, :3] = 0.0
    mask = torch.zeros(1, 30, 30, dtype=torch.bool)
    mask[0, 9:16, 9:16] = True
    res = flat_fill(image, mask)
    assert res.regions[0].value == (1.0, 1.0, 1.0, 0.5)
    la = torch.cat([image[..., :1], image[..., 3:]], -1)
    assert flat_fill(la, mask).regions[0].value == (1.0, 0.5)


def test_batch_rows_are_independent_and_dtypes_kept():
    image = torch.ones(2, 24, 24, 3, dtype=torch.float64)
    image[1] = 0.3  # grey page: not flat paper/ink
    image[:, 5:8, 5:8] = 0.0
    mask = torch.zeros(2, 24, 24, dtype=torch.bool)
    mask[:, 4:9, 4:9] = True
    res = flat_fill(image, mask)
    assert [r.batch for r in res.regions] == [0]
    assert res.image.dtype == torch.float64 and torch.equal(res.image[1], image[1])
    half = flat_fill(image.to(torch.bfloat16), mask)
    assert half.image.dtype == torch.bfloat16 and torch.all(half.image[0, 4:9, 4:9] == 1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(image=np.zeros((1, 4, 4, 3))), "image: expected a torch tensor"),
        (dict(image=torch.zeros(4, 4, 3)), r"image: expected \[B, H, W, C\]"),
        (dict(image=torch.zeros(1, 4, 4, 3, dtype=torch.uint8)), "image: expected float"),
        (dict(mask=torch.zeros(1, 4, 4)), "mask: expected dtype torch.bool"),
        (dict(mask=torch.zeros(1, 4, 5, dtype=torch.bool)), r"mask: expected shape \(1, 4, 4\)"),
        (dict(tolerance=2.0), "tolerance"),
        (dict(ring=0), "ring"),
        (dict(outliers=0.6), "outliers"),
        (dict(levels=-1), "levels"),
    ],
)
def test_bad_inputs_name_the_input(kwargs, message):
    args = dict(image=torch.ones(1, 4, 4, 3), mask=torch.zeros(1, 4, 4, dtype=torch.bool))
    args.update(kwargs)
    image, mask = args.pop("image"), args.pop("mask")
    with pytest.raises((ValueError, TypeError), match=message):
        flat_fill(image, mask, **args)


def test_ring_value_robust_statistics():
    ring = np.ones((100, 3), np.float32)
    ring[:2] = 0.0  # 2 % outliers (an outline's edge) are tolerated
    assert ring_value(ring) == (1.0, 1.0, 1.0)
    ring[:5] = 0.0
    assert ring_value(ring) is None
    assert ring_value(np.ones((4, 1), np.float32)) is None  # too few pixels to tell


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(1, 40), w=st.integers(1, 40), c=st.sampled_from([1, 3, 4]),
    paper=st.sampled_from([0.0, 1.0, 0.6]), seed=st.integers(0, 2**16),
)
def test_outside_exact_and_filled_regions_equal_their_ring(h, w, c, paper, seed):
    g = torch.Generator().manual_seed(seed)
    image = torch.full((1, h, w, c), paper)
    noise = torch.rand(1, h, w, c, generator=g) < 0.1
    image[noise] = torch.rand(int(noise.sum()), generator=g)
    mask = torch.rand(1, h, w, generator=g) < 0.2
    res = flat_fill(image, mask)
    assert torch.equal(res.image[~mask], image[~mask])
    filled = mask & ~res.remaining
    assert not (res.remaining & ~mask).any()
    assert sum(r.pixels for r in res.regions) == int(filled.sum())
    for r in res.regions:
        y0, x0, y1, x1 = r.box
        sel = filled[0, y0:y1, x0:x1]
        assert torch.all(res.image[0, y0:y1, x0:x1][sel] == torch.tensor(r.value))
        assert r.value[0] in (0.0, 1.0) or paper == 0.6 or any(abs(r.value[0] - v) < 0.26 for v in (0, 1))


def test_generated_page_bubbles_are_filled_equal_to_truth():
    for seed in (2, 5):
        sp = generate_page(seed, size=(640, 480), dpi=200, masks=False)
        image = torch.from_numpy(sp.page)[None, ..., None].expand(-1, -1, -1, 3)
        mask = torch.from_numpy(sp.removable)[None]
        res = flat_fill(image, mask)
        assert res.regions
        checked = 0
        for r in res.regions:
            y0, x0, y1, x1 = r.box
            if sp.masks["sfx"][y0:y1, x0:x1].any():  # an SFX over the art: its ring may be black, not the truth
                continue
            sel = (mask & ~res.remaining)[0, y0:y1, x0:x1].numpy()
            assert np.array_equal(res.image[0, y0:y1, x0:x1, 0].numpy()[sel], sp.clean[y0:y1, x0:x1][sel])
            checked += 1
        assert checked >= 2
