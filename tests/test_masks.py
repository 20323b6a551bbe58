import logging

import numpy as np
import pytest
import torch

from mdim_core.imaging import masks


def test_normalize_accepts_hw_bhw_bhw1_and_numpy():
    m = torch.zeros(5, 7)
    m[1:3, 2:4] = 1
    for given in (m, m[None], m[None, ..., None], m.numpy(), m.numpy().astype(bool)):
        out = masks.normalize_mask(given, batch=1, size=(5, 7))
        assert out.shape == (1, 5, 7) and out.dtype == (torch.bool if given.dtype == bool else torch.float32)
        assert torch.equal(out[0].float(), m)


def test_batch_one_broadcasts_and_other_mismatch_is_an_error():
    m = torch.rand(1, 4, 4)
    out = masks.normalize_mask(m, batch=3, size=(4, 4))
    assert out.shape == (3, 4, 4) and all(torch.equal(out[b], m[0]) for b in range(3))
    with pytest.raises(ValueError, match=r"mask: batch of 2 masks for 3 images; expected 1 \(shared\) or 3"):
        masks.normalize_mask(torch.rand(2, 4, 4), batch=3, size=(4, 4))


def test_size_mismatch_is_resized_and_logged(caplog):
    m = torch.zeros(1, 10, 20)
    m[:, :, 10:] = 1
    with caplog.at_level(logging.INFO, logger="MDIM"):
        out = masks.normalize_mask(m, batch=1, size=(5, 10))
    assert out.shape == (1, 5, 10)
    assert torch.equal(out[0, :, 5:], torch.ones(5, 5)) and torch.equal(out[0, :, :5], torch.zeros(5, 5))
    assert "[MDIM] mask: resized from 20x10 to the image size 10x5" in caplog.text


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.full((4, 4), float("nan")), "NaN"),
        (torch.full((4, 4), 255.0), r"0\.\.1"),
        (torch.zeros(1, 2, 4, 4), r"\[H, W\], \[B, H, W\] or \[B, H, W, 1\]"),
        ("not a mask", "torch tensor or numpy array"),
    ],
)
def test_bad_masks_name_the_input(bad, message):
    with pytest.raises((ValueError, TypeError), match=message) as err:
        masks.normalize_mask(bad, batch=1, size=(4, 4))
    assert "mask" in str(err.value)


def test_integer_masks_must_be_0_1():
    with pytest.raises(ValueError, match=r"mask: values must lie in 0\.\.1 \(1 = repaint\), got range 255\.\.255"):
        masks.normalize_mask(np.full((4, 4), 255, dtype=np.uint8), batch=1, size=(4, 4))
    bool_small = torch.zeros(1, 4, 4, dtype=torch.bool)
    bool_small[0, :2] = True
    out = masks.clean(bool_small, batch=1, size=(8, 8))
    assert out.dtype == torch.float32 and torch.equal(out[0, :4], torch.ones(4, 8))


def test_binarize_snaps_jpeg_values():
    m = torch.tensor([[0.0, 0.02, 0.49, 0.5, 0.98, 1.0]])
    assert masks.binarize(m).tolist() == [[0, 0, 0, 1, 1, 1]]
    assert masks.binarize(m, threshold=0.99).tolist() == [[0, 0, 0, 0, 0, 1]]
    with pytest.raises(ValueError, match="threshold"):
        masks.binarize(m, threshold=0)


def test_grow_is_a_disk_and_never_edits_the_input():
    m = torch.zeros(1, 21, 21)
    m[0, 10, 10] = 1
    before = m.clone()
    g = masks.grow(m, 2)
    assert torch.equal(m, before)
    assert int(g.sum()) == 13  # integer points with x^2 + y^2 <= 4
    assert g[0, 10, 12] == 1 and g[0, 12, 10] == 1 and g[0, 12, 12] == 0
    # a mask at the border grows without wrapping
    e = torch.zeros(1, 8, 8)
    e[0, 0, 0] = 1
    assert int(masks.grow(e, 1).sum()) == 3  # radius-1 disk is a plus sign
    # negative erodes
    sq = torch.zeros(1, 9, 9)
    sq[0, 2:7, 2:7] = 1
    assert torch.equal(masks.grow(sq, -1)[0].nonzero().min(0).values, torch.tensor([3, 3]))
    assert int(masks.grow(sq, -1).sum()) == 9


def test_feather_stays_inside_the_mask():
    m = torch.zeros(1, 20, 20)
    m[0, 5:15, 5:15] = 1
    w = masks.feather(m, 3)
    assert torch.equal(w[m == 0], torch.zeros(int((m == 0).sum())))
    assert w[0, 5, 10] == pytest.approx(1 / 4)  # edge pixel: distance 1
    assert w[0, 6, 10] == pytest.approx(2 / 4)
    assert w[0, 9, 10] == 1.0 and w[0, 10, 10] == 1.0
    assert torch.equal(masks.feather(m, 0), m)
    full = torch.ones(1, 4, 4)
    assert torch.equal(masks.feather(full, 5), full)


def test_regions_are_8_connected_boxes():
    m = np.zeros((30, 40), dtype=bool)
    m[2:5, 3:6] = True
    m[5, 6] = True  # touches diagonally: same region
    m[20:25, 30:38] = True
    assert masks.regions(torch.from_numpy(m.astype(np.float32))) == [(2, 3, 6, 7), (20, 30, 25, 38)]
    assert masks.regions(np.zeros((3, 3))) == []


def test_clean_chain():
    m = torch.zeros(6, 6)
    m[3, 3] = 0.97
    out = masks.clean(m, batch=2, size=(6, 6), grow_pixels=1)
    assert out.shape == (2, 6, 6) and int(out[0].sum()) == 5


def test_coarse_regions_keep_exact_boxes():
    rng = np.random.default_rng(0)
    m = np.zeros((300, 400), dtype=bool)
    for _ in range(12):
        y, x = rng.integers(0, 280), rng.integers(0, 380)
        m[y : y + rng.integers(1, 20), x : x + rng.integers(1, 20)] = True
    fine = masks.regions(m)
    coarse = masks.regions(m, cell=8)
    # every fine region lies in exactly one coarse box, and each coarse box is the union of its fine ones
    for box in coarse:
        inside = [f for f in fine if f[0] >= box[0] and f[1] >= box[1] and f[2] <= box[2] and f[3] <= box[3]]
        assert inside
        union = (min(f[0] for f in inside), min(f[1] for f in inside), max(f[2] for f in inside), max(f[3] for f in inside))
        assert union == box
    assert sum(1 for f in fine for b in coarse if f[0] >= b[0] and f[1] >= b[1] and f[2] <= b[2] and f[3] <= b[3]) == len(fine)
    # blobs 3 px apart in different cells merge on the coarse grid, far ones do not
    two = np.zeros((64, 64), dtype=bool)
    two[10, 6] = two[10, 9] = two[50, 50] = True
    assert masks.regions(two) == [(10, 6, 11, 7), (10, 9, 11, 10), (50, 50, 51, 51)]
    assert masks.regions(two, cell=8) == [(10, 6, 11, 10), (50, 50, 51, 51)]


def test_bool_masks_through_the_chain():
    m = torch.zeros(8, 8)
    m[4, 4] = 0.99
    b = masks.clean(m, batch=2, size=(8, 8), grow_pixels=1, dtype=torch.bool)
    assert b.dtype == torch.bool and int(b[1].sum()) == 5
    w = masks.feather(b, 1)
    assert w.dtype == torch.float32 and float(w[0, 4, 4]) == pytest.approx(2**0.5 / 2) and float(w[0, 3, 4]) == 0.5
