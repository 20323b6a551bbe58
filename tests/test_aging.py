"""Aging simulator: determinism, strip independence, each effect measurable, input validation."""

import numpy as np
import pytest

import mdim_core.synth.aging as aging
from mdim_core.restore.levels import prepare_ground_truth, to_grayscale
from mdim_core.synth.aging import AgingParams, age_page, age_page_with_params, rotate_like, sample_params

OFF = dict(tint=0.0, bleed=0.0, blur=0.0, light=0.0, vignette=0.0, stains=0, grain=0.0, rotation=0.0,
           jpeg_quality=0, ink_rgb=(0.0, 0.0, 0.0))


def _page(h=160, w=120):
    page = np.ones((h, w), np.float32)
    page[20:60, 10:70] = 0.0
    page[90:110, :] = 0.5
    return page


def test_deterministic_per_seed_and_seeds_differ():
    page = _page()
    a = age_page(page, 11)
    b = age_page(page, 11)
    c = age_page(page, 12)
    assert a.shape == (160, 120, 3) and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert np.abs(a - c).max() > 0.01
    assert 0.0 <= a.min() and a.max() <= 1.0


def test_input_not_modified_and_uint8_output():
    page = _page()
    before = page.copy()
    out = age_page(page, 3, as_uint8=True)
    assert out.dtype == np.uint8 and out.shape == (160, 120, 3)
    assert np.array_equal(page, before)


def test_result_independent_of_strip_height(monkeypatch):
    page = _page(300, 90)
    ref = age_page(page, 5, jpeg_quality=0, stains=3, grain=0.03, blur=1.0, bleed=0.1)
    monkeypatch.setattr(aging, "_STRIP", 37)
    assert np.array_equal(age_page(page, 5, jpeg_quality=0, stains=3, grain=0.03, blur=1.0, bleed=0.1), ref)


def test_all_effects_off_is_identity():
    page = _page()
    out = age_page(page, 0, **OFF)
    # uint8 quantisation only.
    assert np.abs(out - page[..., None]).max() <= 0.5 / 255 + 1e-6


def test_tint_makes_paper_yellow_and_ink_colour_is_used():
    page = _page()
    params = dict(OFF, tint=1.0, paper_rgb=(0.95, 0.9, 0.7), ink_rgb=(0.2, 0.15, 0.1))
    out = age_page(page, 0, **params)
    assert np.allclose(out[150, 100], (0.95, 0.9, 0.7), atol=1 / 255)
    assert np.allclose(out[40, 40], (0.2, 0.15, 0.1), atol=1 / 255)
    # Mid grey lies halfway between ink and paper.
    assert np.allclose(out[100, 60], (0.575, 0.525, 0.4), atol=1 / 255)


def test_grain_has_requested_strength():
    page = np.ones((256, 256), np.float32) * 0.5
    out = age_page(page, 1, **dict(OFF, grain=0.03))
    std = out[..., 0].std()
    assert 0.022 < std < 0.038  # blurred noise renormalised to ~0.03 (minus uint8 rounding)


def test_light_vignette_stains_bleed_blur_each_change_the_page():
    page = _page()
    base = age_page(page, 4, **OFF)
    for name, value in [("light", 0.2), ("vignette", 0.25), ("stains", 3), ("bleed", 0.15), ("blur", 1.0),
                        ("jpeg_quality", 40)]:
        out = age_page(page, 4, **dict(OFF, **{name: value}))
        assert np.abs(out - base).max() > 2 / 255, name
    # Vignette darkens corners, not the centre.
    vig = age_page(np.ones((101, 101), np.float32), 4, **dict(OFF, vignette=0.25))
    assert vig[0, 0, 0] < 0.8 and vig[50, 50, 0] > 0.99
    # Bleed-through of a given back page is mirrored and faint.
    back = np.ones((200, 200), np.float32)
    back[:, :60] = 0.0  # a left stripe on the back shows on the right of the front (offset <= 20 px)
    out = age_page(np.ones((200, 200), np.float32), 2, back_page=back, **dict(OFF, bleed=0.1, bleed_blur=0.0))
    gray = to_grayscale(out)
    assert gray[50:150, 165:180].mean() == pytest.approx(0.9, abs=0.01)
    assert gray[50:150, :40].min() == pytest.approx(1.0, abs=1 / 255)
    assert gray.min() > 0.85


def test_rotation_only_when_asked_and_rotate_like_matches():
    page = _page()
    _, p = age_page_with_params(page, 9)
    assert p.rotation == 0.0
    _, p = age_page_with_params(page, 9, rotation=True)
    assert p.rotation != 0.0 and abs(p.rotation) <= 1.0
    out, p = age_page_with_params(page, 9, **dict(OFF, rotation=5.0))
    clean = rotate_like(page, p)
    assert np.abs(to_grayscale(out) - clean).mean() < 0.01
    assert np.abs(to_grayscale(out) - page).mean() > 0.02


def test_sample_params_ranges_and_overrides():
    for seed in range(20):
        p = sample_params(seed)
        assert 0.3 <= p.tint <= 1.0 and 0 <= p.stains <= 4 and p.rotation == 0.0
        assert p.jpeg_quality == 0 or 40 <= p.jpeg_quality <= 95
    assert sample_params(0, grain=0.0).grain == 0.0
    with pytest.raises(ValueError, match="unknown aging parameter"):
        sample_params(0, sepia=1.0)


def test_bad_inputs():
    with pytest.raises(ValueError, match="tint"):
        AgingParams(tint=2.0)
    with pytest.raises(ValueError, match="page"):
        age_page(np.zeros((4, 4, 2), np.float32), 0)
    with pytest.raises(ValueError, match="back_page"):
        age_page(_page(), 0, back_page=np.ones((5, 5), np.float32))
    with pytest.raises(ValueError, match="dpi"):
        age_page(_page(), 0, dpi=0)


def test_ground_truth_preparation_recovers_a_clean_looking_page():
    page = _page()
    out = age_page(page, 21, **dict(OFF, tint=0.8, ink_rgb=(0.15, 0.12, 0.1), grain=0.01))
    gt = prepare_ground_truth(out)
    assert gt[150, 100] == 1.0 and gt[40, 40] == 0.0


@pytest.mark.slow
def test_a4_at_600_dpi_is_rendered_in_strips_with_little_memory():
    import tracemalloc

    page = np.ones((7016, 4961), np.float32)
    page[1000:3000, 500:4000] = 0.0
    tracemalloc.start()
    try:
        out = age_page(page, 1, dpi=600, as_uint8=True, jpeg_quality=70, stains=3)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.shape == (7016, 4961, 3) and out.dtype == np.uint8
    # The uint8 result (104 MB) and one JPEG round trip copy; strips add only a few tens of MB.
    assert peak < 2 * out.nbytes + 150e6, peak / 1e6
    assert out[2000, 2000].max() < 100 and out[6000, 2000].min() > 100


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (17, 600), (600, 17)])
def test_tiny_and_narrow_pages(shape):
    # Narrower than the bleed-through offset, smaller than the light grid: still a valid scan.
    for seed in range(6):
        page = np.random.default_rng(seed).random(shape).astype(np.float32)
        out = age_page(page, seed, rotation=True)
        assert out.shape == (*shape, 3) and np.isfinite(out).all()
        assert 0.0 <= out.min() and out.max() <= 1.0
