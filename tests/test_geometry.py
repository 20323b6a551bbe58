import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mdim_core.imaging import geometry as geo


def test_expand_box_clamps_and_widens_inside_the_image():
    assert geo.expand_box((10, 10, 20, 30), 5, (100, 100)) == (5, 5, 25, 35)
    assert geo.expand_box((0, 90, 10, 100), 8, (100, 100)) == (0, 82, 18, 100)
    # widening to min_side shifts away from the border instead of leaving the image
    assert geo.expand_box((0, 95, 4, 100), 0, (100, 100), min_side=32) == (0, 68, 32, 100)
    assert geo.expand_box((40, 40, 44, 44), 0, (100, 100), min_side=10) == (37, 37, 47, 47)
    # never larger than the image
    assert geo.expand_box((1, 1, 2, 2), 0, (20, 30), min_side=512) == (0, 0, 20, 30)


def test_merge_boxes_merges_chains_and_keeps_distant_boxes():
    boxes = [(0, 0, 10, 10), (5, 5, 20, 20), (18, 18, 30, 30), (100, 100, 110, 110)]
    assert geo.merge_boxes(boxes) == [(0, 0, 30, 30), (100, 100, 110, 110)]
    # touching edges are not overlapping
    assert geo.merge_boxes([(0, 0, 10, 10), (0, 10, 10, 20)]) == [(0, 0, 10, 10), (0, 10, 10, 20)]
    # a late box that bridges two merged ones
    assert geo.merge_boxes([(0, 0, 5, 5), (0, 10, 5, 15), (0, 3, 5, 12)]) == [(0, 0, 5, 15)]


@pytest.mark.parametrize(
    "size, max_side, expected, halvings",
    [
        ((7016, 4961), 1024, (877, 621), 3),  # A4 at 600 dpi
        ((6000, 600), 1024, (750, 75), 3),  # a long strip
        ((1, 5000), 1024, (1, 625), 3),  # 1xN
        ((1024, 700), 1024, (1024, 700), 0),  # within the limit: unchanged
        ((1025, 3), 1024, (513, 2), 1),  # odd sides round up
    ],
)
def test_halving_plan(size, max_side, expected, halvings):
    assert geo.shrink_plan(size, max_side) == expected
    h, w = size
    for _ in range(halvings):  # the known number of halvings, rounding up
        h, w = (h + 1) // 2, (w + 1) // 2
    assert (h, w) == expected
    assert max(geo.shrink_plan(size, max_side)) <= max_side


def test_fit_plan_scales_to_the_limit():
    assert geo.shrink_plan((7016, 4961), 1024, "fit") == (1024, 724)
    assert geo.shrink_plan((6000, 600), 1024, "fit") == (1024, 102)
    assert geo.shrink_plan((1, 5000), 1024, "fit") == (1, 1024)
    with pytest.raises(ValueError, match="plan"):
        geo.shrink_plan((2000, 10), 1024, "stretch")
    with pytest.raises(ValueError, match="sgi_max_side"):
        geo.shrink_plan((2000, 10), 0)


def test_padding_never_crops_or_stretches():
    img = torch.rand(2, 13, 21, 3)
    for mode in ("replicate", "reflect"):
        p = geo.pad_image(img, 8, mode)
        assert p.shape == (2, 16, 24, 3)
        assert torch.equal(p[:, :13, :21], img)
    rep = geo.pad_image(img, 8, "replicate")
    assert torch.equal(rep[:, 15, :21], img[:, 12]) and torch.equal(rep[:, :13, 23], img[:, :, 20])
    ref = geo.pad_image(img, 8, "reflect")
    assert torch.equal(ref[:, 13, :21], img[:, 11])
    # a 1xN strip cannot be reflected: replicate instead
    strip = torch.rand(1, 1, 10, 1)
    assert torch.equal(geo.pad_image(strip, 8, "reflect")[0, :, :10, 0], strip[0, 0, :, 0].expand(8, 10))
    assert geo.pad_image(img[:, :8, :16], 8) is not None and geo.pad_image(img[:, :8, :16], 8).shape == (2, 8, 16, 3)
    m = geo.pad_mask(torch.ones(1, 13, 21), 8)
    assert m.shape == (1, 16, 24) and int(m.sum()) == 13 * 21
    with pytest.raises(ValueError, match="pad_mode"):
        geo.pad_image(img, 8, "zeros")


def test_halving_screentone_averages_instead_of_aliasing():
    # a 1-pixel checkerboard (the finest screentone): nearest-neighbour would give all 0 or all 1
    y, x = np.mgrid[0:64, 0:64]
    tone = torch.from_numpy(((y + x) % 2).astype(np.float32))[None, ..., None]
    small = geo.resize_image(tone, (32, 32))
    assert torch.allclose(small, torch.full_like(small, 0.5))
    # a non-integer shrink keeps the mean grey too
    assert abs(float(geo.resize_image(tone, (23, 23)).mean()) - 0.5) < 0.02


def test_upscale_is_smooth_and_in_range():
    img = torch.zeros(1, 4, 4, 1)
    img[0, :, 2:] = 1
    up = geo.resize_image(img, (16, 16))
    assert up.shape == (1, 16, 16, 1) and float(up.min()) >= 0 and float(up.max()) <= 1
    assert 0 < float(up[0, 8, 7, 0]) < 1  # a ramp, not a hard nearest-neighbour edge
    const = torch.full((1, 5, 7, 3), 0.3)
    assert torch.allclose(geo.resize_image(const, (13, 3)), torch.full((1, 13, 3, 3), 0.3))


def test_shrink_mask_keeps_any_coverage():
    m = torch.zeros(1, 16, 16)
    m[0, 5, 9] = 1
    s = geo.shrink_mask(m, (4, 4))
    assert s.tolist() == [[[0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]]]


def _two_panel_page():
    page = np.ones((100, 120), dtype=np.float32)
    page[10:90, 10:55] = 0.0  # panel 1 frame
    page[12:88, 12:53] = 0.6  # its art
    page[10:90, 65:110] = 0.0  # panel 2
    page[12:88, 67:108] = 0.95  # a white-ish inside, enclosed by the frame: still the panel
    return page


def test_detect_panels_and_panel_box():
    page = _two_panel_page()
    panels = geo.detect_panels(page)
    assert panels.max() == 2 and panels[0, 0] == 0 and panels[50, 60] == 0
    assert panels[50, 30] != panels[50, 80] and panels[50, 80] > 0
    region = np.zeros_like(page, dtype=bool)
    region[40:45, 70:80] = True
    assert geo.panel_box(panels, region, (40, 70, 45, 80)) == (10, 65, 90, 110)
    gutter = np.zeros_like(region)
    gutter[95:97, 5:20] = True
    assert geo.panel_box(panels, gutter, (95, 5, 97, 20)) is None


def test_detect_panels_sees_the_gutter_behind_a_dark_scan_edge():
    page = _two_panel_page()
    bordered = page.copy()
    for k in (2, 3):  # a scanner shadow: a dark frame around the whole page
        bordered[:k], bordered[-k:], bordered[:, :k], bordered[:, -k:] = 0.1, 0.1, 0.1, 0.1
        panels = geo.detect_panels(bordered)
        assert panels[50, 30] != panels[50, 80] and panels[50, 30] > 0 and panels[50, 80] > 0
        assert panels[50, 60] == 0  # the gutter between the panels
        region = np.zeros_like(page, dtype=bool)
        region[40:45, 70:80] = True
        assert geo.panel_box(panels, region, (40, 70, 45, 80)) == (10, 65, 90, 110)
    # with the band switched off the dark edge hides the gutter: everything is one piece
    assert geo.detect_panels(bordered, edge=1).max() == 1


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 300), st.integers(0, 300)), min_size=1, max_size=20),
    st.integers(0, 400), st.integers(1, 300),
)
def test_widen_spans_on_arrays_equals_one_span_at_a_time(spans, want, limit):
    spans = [(min(a, b) % limit, max(a, b) % limit + 1) for a, b in spans]
    spans = [(lo, max(lo + 1, hi)) for lo, hi in spans]
    lo, hi = np.array([s[0] for s in spans]), np.array([s[1] for s in spans])
    vlo, vhi = geo.widen_spans(lo, hi, want, 0, limit)
    for i, (a, b) in enumerate(spans):
        one = geo.widen_spans(a, b, want, 0, limit)
        assert one == (int(vlo[i]), int(vhi[i]))
        y0, y1 = one
        assert 0 <= y0 <= a and b <= y1 <= max(limit, b)  # holds the span, inside the limit
        assert y1 - y0 == max(b - a, min(want, limit))  # exactly as wide as asked (or the limit)


@pytest.mark.parametrize("size, tile, overlap", [((5000, 1000), 2048, 128), ((7016, 4961), 2048, 128), ((130, 70), 64, 16), ((64, 64), 64, 8)])
def test_tiles_cover_once_with_overlap(size, tile, overlap):
    tiles = geo.tile_boxes(size, tile, overlap)
    count = np.zeros(size, dtype=np.int32)
    for (y0, x0, y1, x1), (cy0, cx0, cy1, cx1) in tiles:
        assert 0 <= y0 <= cy0 < cy1 <= y1 <= size[0] and 0 <= x0 <= cx0 < cx1 <= x1 <= size[1]
        assert y1 - y0 <= tile and x1 - x0 <= tile
        count[cy0:cy1, cx0:cx1] += 1
        # a core keeps at least half the overlap away from every edge shared with a neighbour
        assert cy0 == 0 or cy0 - y0 >= overlap // 2
        assert cy1 == size[0] or y1 - cy1 >= overlap // 2
        assert cx0 == 0 or cx0 - x0 >= overlap // 2
        assert cx1 == size[1] or x1 - cx1 >= overlap // 2
    assert (count == 1).all()
    with pytest.raises(ValueError, match="tile"):
        geo.tile_boxes(size, 64, 64)


@pytest.mark.parametrize("small, size", [((31, 47), (250, 377)), ((88, 113), (700, 900)), ((1, 188), (1, 1500))])
def test_sample_box_is_the_box_of_the_whole_enlargement(small, size):
    image = torch.rand(2, *small, 3, generator=torch.Generator().manual_seed(3))
    whole = geo.resize_image(image, size)
    h, w = size
    for box in ((0, 0, h, w), (h // 3, w // 4, h - 1, w // 2 + 5), (h - 1, w - 1, h, w), (0, w // 2, h // 2 + 1, w)):
        y0, x0, y1, x1 = box
        part = geo.sample_box(image, size, box)
        assert part.shape == (2, y1 - y0, x1 - x0, 3)
        assert torch.allclose(part, whole[:, y0:y1, x0:x1], atol=5e-5)  # same kernel and pixel-centre mapping
    assert torch.equal(geo.sample_box(whole, size, (3, 4, 9, 12)), whole[:, 3:9, 4:12])  # no resize: a slice
