"""Classical scan cleanup: grayscale, background, sharpening, levels, deskew, bleed-through, specks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from mdim_core.evaluation import metrics
from mdim_core.restore import cleanup, levels
from mdim_core.synth import aging, generate_page


def _dots(h=96, w=96, period=6, radius=1.6, angle=45.0):
    """A clean dot screen: 0 in the dots, 1 on paper (anti-aliased)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = np.deg2rad(angle)
    u = (xx * np.cos(a) + yy * np.sin(a)) / period
    v = (-xx * np.sin(a) + yy * np.cos(a)) / period
    d = np.hypot(u - np.round(u), v - np.round(v)) * period
    return np.clip(d - radius + 0.5, 0.0, 1.0).astype(np.float32)


@pytest.fixture(scope="module")
def aged_pages():
    """Four small generated 300-dpi pages, their aged scans and thesis targets."""
    out = []
    for seed in range(4):
        sp = generate_page(seed, size=(1000, 720), dpi=300, masks=False)
        aged = aging.age_page(sp.page, seed=100 + seed, dpi=300)
        out.append((sp, aged, levels.prepare_ground_truth(sp.page)))
    return out


def test_to_gray_methods_known_answers_and_no_mutation():
    rgb = np.zeros((2, 3, 3), np.float32)
    rgb[0, 0] = (1.0, 0.0, 0.0)
    rgb[0, 1] = (0.0, 1.0, 0.0)
    rgb[0, 2] = (0.0, 0.0, 1.0)
    rgb[1] = (0.2, 0.4, 0.6)
    before = rgb.copy()
    np.testing.assert_allclose(cleanup.to_gray(rgb, "luma")[0], levels.LUMA_WEIGHTS, atol=1e-6)
    np.testing.assert_allclose(cleanup.to_gray(rgb, "red")[1], 0.2, atol=1e-6)
    np.testing.assert_allclose(cleanup.to_gray(rgb, "max")[1], 0.6, atol=1e-6)
    np.testing.assert_allclose(cleanup.to_gray(rgb, "mean")[1], 0.4, atol=1e-6)
    np.testing.assert_array_equal(rgb, before)
    gray = np.full((4, 5), 0.3, np.float32)
    out = cleanup.to_gray(gray, "auto")
    assert out.shape == (4, 5) and not np.shares_memory(out, gray)
    np.testing.assert_array_equal(out, gray)


def test_auto_gray_weights_avoid_the_yellowed_blue_channel():
    rng = np.random.default_rng(0)
    page = np.ones((200, 200), np.float32)
    page[50:150, 90:110] = 0.0  # a thick ink bar
    paper = np.array([0.95, 0.9, 0.6], np.float32)  # yellow paper: blue is darkest
    ink = np.array([0.1, 0.1, 0.1], np.float32)
    rgb = ink + page[..., None] * (paper - ink)
    stain = rng.normal(0, 0.04, (200, 200)).astype(np.float32)
    rgb[..., 2] += stain  # stain texture lives in the blue channel
    rgb = np.clip(rgb + rng.normal(0, 0.005, rgb.shape).astype(np.float32), 0, 1)
    w = cleanup.channel_weights(rgb)
    assert w.shape == (3,) and abs(w.sum() - 1) < 1e-5
    assert w[2] < 0.1 < w[0]
    # ink/paper contrast over paper noise is better than BT.601 luma's
    def cnr(g):
        return (g[page > 0.5].mean() - g[page < 0.5].mean()) / g[:40].std()

    assert cnr(cleanup.to_gray(rgb, "auto")) > 1.5 * cnr(cleanup.to_gray(rgb, "luma"))


def test_background_follows_light_and_bridges_black_and_screentone():
    h, w = 600, 420
    page = np.ones((h, w), np.float32)
    page[60:260, 40:380] = _dots(200, 340, period=6, radius=2.0)  # a screentone panel
    page[330:520, 60:220] = 0.0  # a black area
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    light = 0.9 - 0.25 * (xx / w) - 0.15 * (yy / h)  # uneven light, 0.5..0.9
    scan = page * light
    bg = cleanup.estimate_background(scan)
    assert bg.shape == (h, w)
    rel = bg / light
    assert np.abs(rel - 1).max() < 0.06  # everywhere, screentone and black area included
    flat = cleanup.divide_background(scan, bg)
    assert np.abs(flat[page == 1] - 1).mean() < 0.02  # paper is white again
    # the screentone keeps its mean tone (not divided by itself)
    assert abs(flat[60:260, 40:380].mean() - page[60:260, 40:380].mean()) < 0.05
    assert flat[330:520, 60:220].max() < 0.02  # black stays black
    # the half-resolution division gives the same page to well under a grey level
    low, cell = cleanup.estimate_background_lowres(scan)
    fast = cleanup.divide_background_lowres(scan, low, cell)
    assert np.abs(fast - flat).max() < 2 / 255


def test_thesis_levels_equal_the_levels_module():
    rng = np.random.default_rng(1)
    g = rng.uniform(0.12, 0.93, (64, 80)).astype(np.float32)
    np.testing.assert_allclose(cleanup.apply_levels(g, "thesis"), levels.prepare_ground_truth(g), atol=2e-6)
    np.testing.assert_allclose(cleanup.apply_levels(g, "thesis", 60, 200),
                               levels.prepare_ground_truth(g, 60, 200), atol=2e-6)
    np.testing.assert_allclose(cleanup.apply_levels(g, "points", 50, 150), levels.level_map(g, 50, 150), atol=1e-7)
    np.testing.assert_array_equal(cleanup.apply_levels(g, "off"), g)
    flat = np.full((5, 5), 0.5, np.float32)
    np.testing.assert_array_equal(cleanup.apply_levels(flat, "thesis"), levels.prepare_ground_truth(flat))


def test_sharpen_restores_blurred_dot_contrast():
    dots = _dots(120, 120, period=6, radius=1.5)
    blurred = ndimage.gaussian_filter(dots, 1.0)
    sharp = cleanup.sharpen(blurred, 2.0, 1.0)
    assert np.abs(sharp - dots).mean() < 0.7 * np.abs(blurred - dots).mean()
    assert np.array_equal(cleanup.sharpen(blurred, 0.0), blurred)
    # paper stays paper
    np.testing.assert_array_equal(cleanup.sharpen(np.ones((50, 50), np.float32)), 1.0)


def test_clean_page_beats_auto_levels_on_aged_pages(aged_pages):
    ours_psnr, base_psnr = [], []
    for _, aged, truth in aged_pages:
        ours = cleanup.clean_page(aged, dpi=300)
        base = levels.prepare_ground_truth(aged)
        assert ours.dtype == np.float32 and ours.shape == truth.shape
        ours_psnr.append(metrics.psnr(ours, truth))
        base_psnr.append(metrics.psnr(base, truth))
        # paper is white again on every page (yellowing, light and stains divided out)
        assert metrics.paper_whiteness(ours, truth) > max(0.95, metrics.paper_whiteness(base, truth))
    assert np.mean(ours_psnr) > np.mean(base_psnr) + 0.5


def test_screentone_survives_cleanup(aged_pages):
    sp, aged, truth = aged_pages[0]
    ours = cleanup.clean_page(aged, dpi=300)
    tone = metrics.tone_fidelity(ours, truth, screentone=sp.screentone)
    unsharpened = metrics.tone_fidelity(cleanup.clean_page(aged, dpi=300, sharpen=0), truth, screentone=sp.screentone)
    assert tone["tone_tiles"] > 5
    assert tone["period_match"] >= 0.95  # the dot period is still there: nothing merged the dots
    # undoing the scanner's blur keeps the tone that blur + levels would wash out
    assert tone["tone_err"] < 0.5 * unsharpened["tone_err"]


def test_blur_is_measured_on_edges_and_sets_the_sharpening():
    page = np.ones((240, 240), np.float32)
    page[60:180, 60:180] = 0.0
    page[100:140, 100:140] = 1.0
    page[:, 200:203] = 0.0
    hard = cleanup.estimate_blur(page)
    assert hard < 0.8  # hard edges
    sigmas = np.array([1.0, 1.5, 2.5])
    measured = [cleanup.estimate_blur(ndimage.gaussian_filter(page, s)) for s in sigmas]
    np.testing.assert_allclose(measured, np.sqrt(sigmas**2 + hard**2), rtol=0.05)  # blurs add in quadrature
    amounts = [cleanup.blur_amount(ndimage.gaussian_filter(page, s), 3.0, 1.0) for s in (0.0, 0.5, 1.0)]
    assert amounts[0] < amounts[1] <= amounts[2] == 3.0  # blurrier scans get more sharpening
    flat = np.full((50, 50), 0.7, np.float32)
    assert cleanup.estimate_blur(flat) == 0.0


def test_clean_page_does_not_mutate_and_accepts_uint8(aged_pages):
    _, aged, _ = aged_pages[1]
    before = aged.copy()
    a = cleanup.clean_page(aged)
    np.testing.assert_array_equal(aged, before)
    u8 = np.clip(aged * 255 + 0.5, 0, 255).astype(np.uint8)
    b = cleanup.clean_page(u8)
    assert np.abs(a - b).mean() < 0.01


def test_despeckle_removes_isolated_specks_keeps_dots_and_lines():
    page = np.ones((300, 300), np.float32)
    page[20:140, 20:140] = _dots(120, 120, period=6, radius=1.6)  # tiny dots, each a few px
    page[200:203, 20:280] = 0.0  # a thin line
    specks = [(160, 250), (250, 60), (270, 250)]
    for y, x in specks:
        page[y : y + 2, x : x + 2] = 0.0
    out = cleanup.despeckle(page, max_area=16)
    for y, x in specks:
        assert out[y : y + 2, x : x + 2].min() == 1.0
    np.testing.assert_array_equal(out[20:140, 20:140], page[20:140, 20:140])  # every dot kept
    np.testing.assert_array_equal(out[200:203], page[200:203])
    np.testing.assert_array_equal(cleanup.despeckle(page, max_area=0), page)


def test_bleed_through_fades_faint_marks_only():
    page = np.ones((240, 240), np.float32)
    page[30:90, 30:90] = _dots(60, 60, period=6, radius=1.6)
    page[150:152, 20:220] = 0.0  # a line
    faint = page.copy()
    blob = ndimage.gaussian_filter((np.hypot(*np.mgrid[-40:40, -40:40]) < 25).astype(np.float32), 3)
    faint[110:190, 130:210] -= 0.12 * blob[:, :]  # faint bleed-through, away from ink
    faint[110:190, 130:210][:, :] = np.clip(faint[110:190, 130:210], 0, 1)
    faint[150:152, 20:220] = 0.0
    out = cleanup.suppress_bleed_through(faint, 0.5)
    assert out[115:140, 150:190].min() > 0.99  # the faint mark is gone (away from the line)
    assert out[165:185, 150:190].min() > 0.99
    np.testing.assert_array_equal(out[30:90, 30:90], faint[30:90, 30:90])  # screentone untouched
    np.testing.assert_array_equal(out[150:152], faint[150:152])  # the line untouched


def test_deskew_finds_and_undoes_a_small_rotation():
    sp = generate_page(5, size=(700, 500), dpi=150, masks=False)
    turned = cleanup.rotate_page(sp.page, 1.5)
    angle = cleanup.estimate_skew(turned)
    assert abs(angle - (-1.5)) < 0.1
    straight, applied = cleanup.deskew(turned)
    assert applied == pytest.approx(angle)
    inner = (slice(60, -60), slice(60, -60))
    assert np.abs(straight - sp.page)[inner].mean() < 0.5 * np.abs(turned - sp.page)[inner].mean()
    assert cleanup.estimate_skew(sp.page) == pytest.approx(0.0, abs=0.1)


def test_options_chain_and_long_strip():
    strip = np.ones((16, 10_000, 3), np.float32)
    strip[:, ::50] = 0.1
    out = cleanup.clean_page(strip, despeckle=8, bleed_through=0.3, deskew=True)
    assert out.shape == (16, 10_000)
    assert out[:, ::50].max() < 0.05 and out[:, 25::50].min() > 0.95


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((0, 10, 3), np.float32), "empty"),
        (np.zeros((10, 10, 2), np.float32), "shape"),
        (np.zeros((10, 10), np.int32), "dtype"),
    ],
)
def test_bad_pages_raise_clear_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        cleanup.clean_page(bad)


def test_bad_settings_raise_clear_errors():
    with pytest.raises(ValueError, match="gray"):
        cleanup.CleanupSettings(gray="blue")
    with pytest.raises(ValueError, match="black_point"):
        cleanup.CleanupSettings(black_point=200, white_point=100)
    with pytest.raises(ValueError, match="levels"):
        cleanup.CleanupSettings(levels="auto")
    with pytest.raises(ValueError, match="bleed_through"):
        cleanup.CleanupSettings(bleed_through=2)
    with pytest.raises(TypeError):
        cleanup.clean_page(np.ones((8, 8), np.float32), cleanup.CleanupSettings(), gray="luma")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_pixels_are_rejected_up_front_naming_the_input(value):
    page = np.full((32, 24, 3), 0.8, np.float32)
    page[5, 7, 1] = value
    before = page.copy()
    with pytest.raises(ValueError, match=r"^scan\.png: contains 1 NaN or infinite value\(s\); expected finite values in 0\.\.1"):
        cleanup.clean_page(page, name="scan.png")
    with pytest.raises(ValueError, match=r"^image: contains 1 NaN or infinite value\(s\); expected finite values in 0\.\.1"):
        cleanup.clean_page(page, levels="points")
    np.testing.assert_array_equal(page, before)
