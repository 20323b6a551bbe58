"""Levels and the thesis' ground-truth preparation, on known answers."""

import numpy as np
import pytest
from PIL import Image, ImageOps

from mdim_core.restore.levels import auto_contrast, level_map, prepare_ground_truth, to_grayscale


def test_grayscale_matches_pil_luma():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(17, 23, 3), dtype=np.uint8)
    ours = to_grayscale(rgb)
    pil = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float32) / 255.0
    assert ours.dtype == np.float32 and ours.shape == (17, 23)
    # PIL rounds to uint8: agree within half a grey level.
    assert np.abs(ours - pil).max() <= 0.5 / 255 + 1e-6


def test_grayscale_drops_alpha_and_accepts_gray():
    rgba = np.zeros((4, 5, 4), np.float32)
    rgba[..., :3] = 0.5
    rgba[..., 3] = 0.0
    assert np.allclose(to_grayscale(rgba), 0.5, atol=1e-6)
    g = np.full((3, 3), 0.25, np.float32)
    out = to_grayscale(g)
    assert np.array_equal(out, g) and not np.shares_memory(out, g)


def test_auto_contrast_darkest_to_0_brightest_to_1():
    g = np.linspace(0.2, 0.7, 51, dtype=np.float32).reshape(3, 17)
    out = auto_contrast(g)
    assert out.min() == 0.0 and out.max() == pytest.approx(1.0, abs=1e-6)
    # Linear: the middle value maps to the middle.
    assert out.ravel()[25] == pytest.approx(0.5, abs=1e-5)
    assert g.min() == pytest.approx(0.2)  # input untouched


def test_auto_contrast_matches_pil_autocontrast():
    rng = np.random.default_rng(1)
    u8 = rng.integers(40, 200, size=(32, 32), dtype=np.uint8)
    pil = np.asarray(ImageOps.autocontrast(Image.fromarray(u8)), dtype=np.float32) / 255.0
    ours = auto_contrast(u8)
    assert np.abs(ours - pil).max() <= 1.0 / 255 + 1e-6


def test_auto_contrast_clip_ignores_outliers_and_flat_page_is_kept():
    g = np.full((10, 10), 0.5, np.float32)
    g[0, 0] = 0.0
    g[9, 9] = 1.0
    g[5, :] = np.linspace(0.4, 0.6, 10)
    out = auto_contrast(g, clip=0.02)
    assert out[5, 0] == 0.0 and out[5, 9] == pytest.approx(1.0)
    flat = np.full((4, 4), 0.3, np.float32)
    assert np.array_equal(auto_contrast(flat), flat)
    with pytest.raises(ValueError, match="clip"):
        auto_contrast(g, clip=0.6)


def test_level_map_known_values():
    values = np.array([[0, 90, 140, 190, 255]], np.float32) / 255.0
    out = level_map(values)  # defaults 90..190
    assert np.allclose(out, [[0.0, 0.0, 0.5, 1.0, 1.0]], atol=1e-6)
    out2 = level_map(values, lo=0, hi=255)
    assert np.allclose(out2, values, atol=1e-6)
    with pytest.raises(ValueError, match="lo and hi"):
        level_map(values, lo=200, hi=100)


def test_prepare_ground_truth_pipeline():
    # A yellowed scan: paper (235, 225, 190), ink (60, 50, 40), and a mid grey.
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, :] = (235, 225, 190)
    rgb[1, 0] = (60, 50, 40)
    rgb[1, 1:] = (150, 140, 120)
    gt = prepare_ground_truth(rgb)
    gray = to_grayscale(rgb)
    ac = (gray - gray.min()) / (gray.max() - gray.min())
    expected = np.clip((ac * 255 - 90) / 100, 0, 1)
    assert np.allclose(gt, expected, atol=1e-5)
    assert gt[0, 0] == 1.0 and gt[1, 0] == 0.0
    with pytest.raises(ValueError, match="lo and hi"):
        prepare_ground_truth(rgb, lo=100, hi=100)


def test_bad_inputs_name_the_input():
    with pytest.raises(ValueError, match="image"):
        to_grayscale(np.zeros((4, 4, 2), np.float32))
    with pytest.raises(ValueError, match="dtype"):
        to_grayscale(np.zeros((4, 4), np.int32))
    with pytest.raises(TypeError, match="numpy"):
        to_grayscale([[0.0]])


def test_float_rounding_is_not_contrast():
    """A blank page 1 ulp from flat (what dividing out its background leaves) stays blank."""
    blank = np.full((6, 5), 1.0, np.float32)
    blank[::2] = np.nextafter(np.float32(1.0), np.float32(0.0))
    np.testing.assert_array_equal(auto_contrast(blank), blank)
    assert prepare_ground_truth(blank).min() == 1.0
    faint = np.full((6, 5), 0.9, np.float32)
    faint[0, 0] = 0.88  # a real (if faint) mark is still stretched
    assert auto_contrast(faint)[0, 0] == 0.0 and auto_contrast(faint)[1, 1] == 1.0
