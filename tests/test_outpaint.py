"""Outpainting pad: original pixels bit-exact, the mask is exactly the new area, fills, aspect and target sizes."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mdim_core.inpaint import outpaint as O

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def page(b=1, h=12, w=9, c=3, seed=0, dtype=torch.float32):
    return torch.rand(b, h, w, c, generator=torch.Generator().manual_seed(seed)).to(dtype)


def source_index(i: int, pad: int, n: int, mode: str) -> int:
    """Which original row/column a padded row/column ``i`` shows: clamped (edge) or mirrored about the border
    so that the border pixel repeats (mirror), written from the definitions rather than numpy's pad."""
    k = i - pad
    if mode == "edge":
        return min(max(k, 0), n - 1)
    period = 2 * n
    k %= period
    return k if k < n else period - 1 - k


sides = st.integers(0, 20)


@SETTINGS
@given(
    st.integers(1, 3), st.integers(1, 24), st.integers(1, 24), st.sampled_from([1, 3]),
    sides, sides, sides, sides, st.sampled_from(O.FILL_MODES), st.integers(0, 6),
)  # fmt: skip
def test_original_exact_and_mask_is_the_new_area(b, h, w, c, top, bottom, left, right, fill, feather):
    image = page(b, h, w, c, seed=h * 31 + w)
    padding = O.plan_padding((h, w), top=top, bottom=bottom, left=left, right=right)
    assert padding == O.Padding(top, bottom, left, right)
    out, mask = O.outpaint_pad(image, padding, fill, feather)
    big_h, big_w = h + top + bottom, w + left + right
    assert out.shape == (b, big_h, big_w, c) and out.dtype == image.dtype
    assert mask.shape == (b, big_h, big_w) and mask.dtype == torch.float32
    inner = (slice(None), slice(top, top + h), slice(left, left + w))
    assert torch.equal(out[inner], image)  # bit for bit
    assert torch.all(mask[inner] == 0)
    new = torch.ones(big_h, big_w, dtype=torch.bool)
    new[top : top + h, left : left + w] = False
    if feather == 0:
        assert torch.equal(mask[0].bool(), new)
    else:
        assert torch.all((mask[:, new] > 0) & (mask[:, new] <= 1))
        # the ramp: distance d from the original gives d / (feather + 1), capped at 1
        ys, xs = torch.nonzero(new, as_tuple=True)
        for y, x in list(zip(ys.tolist(), xs.tolist()))[:50]:
            dy = max(top - y, y - (top + h - 1), 0)
            dx = max(left - x, x - (left + w - 1), 0)
            expected = min(1.0, math.hypot(dy, dx) / (feather + 1))
            assert abs(float(mask[0, y, x]) - expected) < 1e-5
    arr, src = out.numpy(), image.numpy()
    if fill in ("edge", "mirror"):
        for y in range(big_h):
            for x in range(big_w):
                sy, sx = source_index(y, top, h, fill), source_index(x, left, w, fill)
                assert np.array_equal(arr[:, y, x], src[:, sy, sx])
    elif fill in ("white", "grey"):
        assert np.all(arr[:, new.numpy()] == (1.0 if fill == "white" else 0.5))
    else:
        colour = O.paper_colour(image).numpy()
        assert np.array_equal(
            arr[:, new.numpy()], np.broadcast_to(colour[:, None, :], arr[:, new.numpy()].shape)
        )


def test_paper_fill_is_the_pages_paper_not_its_ink():
    # a yellowed scan: paper (0.95, 0.90, 0.75) with 30 % black ink and some mid-grey screentone
    g = torch.Generator().manual_seed(0)
    image = torch.empty(1, 100, 80, 3)
    image[:] = torch.tensor([0.95, 0.90, 0.75])
    ink = torch.rand(1, 100, 80, generator=g) < 0.3
    tone = torch.rand(1, 100, 80, generator=g) < 0.2
    image[tone] = torch.tensor([0.5, 0.48, 0.4])
    image[ink] = 0.0
    out, _ = O.outpaint_pad(image, O.Padding(right=10), "paper")
    assert torch.equal(out[0, :, 80:], torch.tensor([0.95, 0.90, 0.75]).expand(100, 10, 3))
    white = torch.ones(1, 16, 16, 1)
    white[:, 4:8, 4:8] = 0
    assert torch.equal(O.pad_image(white, O.Padding(left=3), "paper")[:, :, :3], torch.ones(1, 16, 3, 1))


def test_large_pages_sample_the_paper_on_a_grid():
    image = torch.full((1, 2100, 1500, 1), 0.9)
    image[:, ::7] = 0.0
    assert float(O.paper_colour(image)) == pytest.approx(0.9)


@SETTINGS
@given(
    st.integers(1, 60), st.integers(1, 60), sides, sides,
    st.sampled_from([k for k in O.ASPECTS if k != "off"]), st.sampled_from(O.ANCHORS),
)  # fmt: skip
def test_aspect_grows_one_side_only_and_anchors_the_image(h, w, top, left, aspect, anchor):
    ratio = O.ASPECTS[aspect]
    p = O.plan_padding((h, w), top=top, left=left, aspect=aspect, anchor=anchor)
    big_h, big_w = p.size((h, w))
    h1, w1 = h + top, w + left
    assert big_h >= h1 and big_w >= w1 and (big_h == h1 or big_w == w1)
    assert abs(big_w - big_h * ratio) <= max(0.5 * ratio, 0.5) + 1e-9 or (big_h, big_w) == (h1, w1)
    assert abs(big_w / big_h - ratio) <= abs(w1 / h1 - ratio) + 1e-12  # never further from the aspect
    extra_h, extra_w = big_h - h1, big_w - w1
    assert p.top - top + p.bottom == extra_h and p.left - left + p.right == extra_w
    above, before = p.top - top, p.left - left
    if anchor.startswith("top"):
        assert above == 0
    elif anchor.startswith("bottom"):
        assert above == extra_h
    else:
        assert above == extra_h // 2
    if anchor.endswith("left"):
        assert before == 0
    elif anchor.endswith("right"):
        assert before == extra_w
    else:
        assert before == extra_w // 2


def test_manga_page_aspect_and_target_size():
    # a 1000 x 1000 panel onto a manga page shape: 1000 wide, 1414 high, the panel at the top
    p = O.plan_padding((1000, 1000), aspect="1:√2 (manga page)", anchor="top")
    assert p == O.Padding(0, 414, 0, 0)
    # A4 at 300 dpi from a page cut at the bottom: pad the bottom 100 px, then center horizontally
    p = O.plan_padding((3400, 2400), bottom=100, target_height=3508, target_width=2480)
    assert p == O.Padding(4, 104, 40, 40)
    assert O.plan_padding((10, 10), target_width=15, anchor="right") == O.Padding(0, 0, 5, 0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(top=-1), "top: expected an integer >= 0"),
        (dict(left=2.5), "left"),
        (dict(right=True), "right"),
        (dict(target_width=5), "target_width: the image with its side padding is already 10 px"),
        (dict(aspect="1:1", target_height=20), "either an aspect or target"),
        (dict(aspect="golden"), "aspect: expected one of"),
        (dict(aspect=0.0), "aspect: expected width / height"),
        (dict(anchor="middle"), "anchor"),
        (dict(bottom=40000), "at most 32768"),
    ],
)
def test_bad_plans_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        O.plan_padding((10, 10), **kwargs)


def test_bad_images_and_fills():
    with pytest.raises(TypeError, match="image"):
        O.pad_image([[0.0]], O.Padding(1))
    assert O.pad_image(np.zeros((1, 4, 4, 3), np.float32), O.Padding(1), "white").shape == (1, *O.Padding(1).size((4, 4)), 3)
    with pytest.raises(ValueError, match="C = 1, 3 or 4"):
        O.pad_image(torch.zeros(1, 4, 4, 2), O.Padding(1))
    nan = torch.zeros(1, 4, 4, 3)
    nan[0, 1, 1, 0] = float("nan")
    with pytest.raises(ValueError, match="image: contains 1 NaN"):
        O.outpaint_pad(nan, O.Padding(1))
    with pytest.raises(ValueError, match="float"):
        O.pad_image(torch.zeros(1, 4, 4, 3, dtype=torch.uint8), O.Padding(1))
    with pytest.raises(ValueError, match="fill"):
        O.pad_image(torch.zeros(1, 4, 4, 3), O.Padding(1), "noise")
    with pytest.raises(ValueError, match="feather"):
        O.new_area_mask((4, 4), O.Padding(1), feather=-1)


def test_rgba_drops_alpha_nothing_to_pad_and_inputs_untouched(caplog):
    image = page(c=4)
    before = image.clone()
    with caplog.at_level(logging.INFO, logger="MDIM"):
        out, mask = O.outpaint_pad(image, O.Padding(2, 0, 0, 1), "edge")
    assert out.shape == (1, 14, 10, 3) and torch.equal(out[:, 2:, :9], image[..., :3])
    assert "alpha" in caplog.text
    same, empty = O.outpaint_pad(page(), O.Padding(), "paper")
    assert torch.equal(same, page()) and not empty.any()
    assert torch.equal(image, before)


def test_half_precision_pixels_stay_exact():
    image = page(dtype=torch.float16)
    for fill in O.FILL_MODES:
        out = O.pad_image(image, O.Padding(1, 2, 3, 4), fill)
        assert out.dtype == torch.float16 and torch.equal(out[:, 1:13, 3:12], image)


def test_a_canvas_larger_than_free_memory_is_refused_before_allocating(monkeypatch):
    """32768x32768 px (the largest plan allowed) needs ~34 GiB for the image and mask and their copies: with
    less free, a MemoryError says the size and what to check, and nothing that large is allocated."""
    from mdim_core.imaging import checks

    monkeypatch.setattr(checks, "available_memory", lambda: 8 * 2**30)
    image = torch.rand(1, 23, 37, 3)
    padding = O.plan_padding((23, 37), target_height=32768, target_width=32768)
    with pytest.raises(MemoryError, match=r"32768x32768 px canvas.*target size.*needs about 3\d\.\d GiB.*8\.0 GiB"):
        O.outpaint_pad(image, padding)
    small = O.plan_padding((23, 37), right=40)
    padded, mask = O.outpaint_pad(image, small, feather=4)
    assert padded.shape == (1, 23, 77, 3) and torch.equal(padded[:, :, :37], image)
