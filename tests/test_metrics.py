"""Fidelity metrics on cases whose answer is known."""

import math

import numpy as np
import pytest
from scipy import ndimage

import mdim_core.evaluation.metrics as metrics
from mdim_core.evaluation.metrics import (
    METRIC_NAMES,
    evaluate_pair,
    local_period,
    max_abs_outside,
    paper_whiteness,
    psnr,
    seam_score,
    ssim,
    ssim_map,
    tone_fidelity,
)
from mdim_core.synth.raster import DotTone, row_chunks


def _screen(h, w, period=5.0, coverage=0.3, angle=45.0, shift=(0.0, 0.0)):
    out = np.empty((h, w), np.float32)
    tone = DotTone(period, math.radians(angle), coverage)
    for r0, r1, ys, xs in row_chunks((0, h, 0, w)):
        out[r0:r1] = tone.values(ys + np.float32(shift[0]), xs + np.float32(shift[1]))
    return out


@pytest.fixture(scope="module")
def page():
    # White paper with a dot-screen panel and some ink.
    img = np.ones((256, 256), np.float32)
    img[64:192, 64:192] = _screen(128, 128)
    img[20:30, 10:240] = 0.0
    return img


def test_identical_images(page):
    mask = np.zeros(page.shape, bool)
    mask[70:180, 64:160] = True
    r = evaluate_pair(page, page, mask)
    assert set(r) == set(METRIC_NAMES)
    assert r["psnr"] == math.inf and r["psnr_in"] == math.inf and r["psnr_out"] == math.inf
    assert r["ssim"] == pytest.approx(1.0) and r["ssim_in"] == pytest.approx(1.0)
    assert r["max_abs_out"] == 0.0 and r["paper_white"] == 1.0
    assert r["tone_err"] == pytest.approx(0.0, abs=1e-9) and r["period_err"] == 0.0 and r["period_match"] == 1.0
    assert r["seam_err"] == 0.0 and r["seam_ratio"] == pytest.approx(1.0)


def test_known_offset_gives_known_psnr_and_ssim():
    rng = np.random.default_rng(0)
    a = rng.uniform(0.2, 0.8, (64, 64)).astype(np.float32)
    assert psnr(a + np.float32(0.1), a) == pytest.approx(20.0, abs=1e-4)
    assert psnr(a + np.float32(0.01), a) == pytest.approx(40.0, abs=1e-3)
    # Constant images: SSIM = (2 c1 c2 + C1) / (c1^2 + c2^2 + C1) (the structure term is 1).
    c1, c2 = 0.6, 0.4
    k = (0.01) ** 2
    expected = (2 * c1 * c2 + k) / (c1 * c1 + c2 * c2 + k)
    assert ssim(np.full((32, 32), c1), np.full((32, 32), c2)) == pytest.approx(expected, rel=1e-6)


def test_one_pixel_change_outside_the_mask(page):
    mask = np.zeros(page.shape, bool)
    mask[100:150, 80:160] = True
    out = page.copy()
    out[5, 5] = 1.0 - 0.25  # paper pixel changed by 0.25 outside the mask
    r = evaluate_pair(out, page, mask)
    assert r["max_abs_out"] == pytest.approx(0.25)
    assert r["psnr_in"] == math.inf
    n_out = (~mask).sum()
    assert r["psnr_out"] == pytest.approx(10 * math.log10(n_out / 0.25**2), abs=1e-6)
    assert r["paper_white"] == 1.0  # only pixels inside the mask count for whiteness
    assert paper_whiteness(out, page) == pytest.approx(1 - 1 / (page >= 250 / 255).sum())
    assert max_abs_outside(out, page, ~mask) == 0.0


def test_shifted_screentone_keeps_period_and_tone_but_not_pixels():
    truth = _screen(256, 256)
    shifted = _screen(256, 256, shift=(1.7, 2.3))
    r = tone_fidelity(shifted, truth)
    assert r["tone_tiles"] == 16
    assert r["tone_err"] < 0.01
    assert r["period_match"] == 1.0 and r["period_err"] < 0.03
    assert psnr(shifted, truth) < 15  # the pixels differ a lot


def test_flattened_screentone_keeps_tone_but_loses_period():
    truth = _screen(256, 256, coverage=0.4)
    flat = np.full_like(truth, truth.mean())
    r = tone_fidelity(flat, truth)
    assert r["tone_err"] < 0.01
    assert r["period_match"] == 0.0 and r["period_err"] == 1.0
    # A screen of another ruling: same tone, wrong period.
    coarse = _screen(256, 256, period=8.0, coverage=0.4)
    r = tone_fidelity(coarse, truth)
    assert r["period_match"] == 0.0 and r["period_err"] == pytest.approx(0.6, abs=0.05)
    # A lighter screen at the right period: the tone error is the coverage difference.
    light = _screen(256, 256, coverage=0.2)
    r = tone_fidelity(light, truth)
    assert r["period_match"] == 1.0 and r["tone_err"] == pytest.approx(0.2, abs=0.01)


def test_tone_fidelity_uses_screentone_map_and_mask(page):
    st = np.zeros(page.shape, bool)
    st[64:192, 64:192] = True
    r = tone_fidelity(page, page, screentone=st)
    assert r["tone_tiles"] == 4  # 64-px tiles fully inside the screened square
    mask = np.zeros(page.shape, bool)
    mask[64:128, 64:128] = True
    assert tone_fidelity(page, page, mask=mask)["tone_tiles"] == 1
    assert math.isnan(tone_fidelity(np.ones((128, 128)), np.ones((128, 128)))["tone_err"])


@pytest.mark.parametrize("period", [3.53, 5.0, 6.0, 12.0])
def test_local_period_known_answer(period):
    p, share = local_period(_screen(64, 64, period=period))
    assert p == pytest.approx(period, rel=0.03) and share > 0.2
    _, share = local_period(np.random.default_rng(1).random((64, 64)))
    assert share < 0.05
    assert math.isnan(local_period(np.full((64, 64), 0.5))[0])


def test_seam_score_known_step():
    truth = np.ones((60, 60), np.float32)
    mask = np.zeros((60, 60), bool)
    mask[20:40, 20:40] = True
    out = truth.copy()
    out[mask] = 0.9
    band = 3
    ring = ndimage.binary_dilation(mask, iterations=band) & ~ndimage.binary_erosion(mask, iterations=band, border_value=1)
    r = seam_score(out, truth, mask, band=band)
    # 80 border differences of 0.1 (20 on each side of the square), all inside the band.
    assert r["seam_err"] == pytest.approx(80 * 0.01 / ring.sum(), rel=1e-6)
    assert r["seam_ratio"] == pytest.approx((r["seam_err"] + metrics.SEAM_EPS) / metrics.SEAM_EPS, rel=1e-9)
    same = seam_score(truth, truth, mask)
    assert same["seam_err"] == 0.0 and same["seam_ratio"] == pytest.approx(1.0)
    assert math.isnan(seam_score(truth, truth, np.zeros((60, 60), bool))["seam_err"])


def test_strips_are_exact(monkeypatch):
    rng = np.random.default_rng(3)
    a = rng.random((100, 70)).astype(np.float32)
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1).astype(np.float32)
    mask = rng.random(a.shape) > 0.7
    ref_map = ssim_map(a, b)
    ref = evaluate_pair(a, b, mask)
    monkeypatch.setattr(metrics, "_STRIP", 17)
    assert np.allclose(ssim_map(a, b), ref_map, atol=1e-6)
    r = evaluate_pair(a, b, mask)
    for k in ("psnr", "psnr_in", "psnr_out", "ssim", "ssim_in", "ssim_out", "max_abs_out"):
        assert r[k] == pytest.approx(ref[k], rel=1e-9), k


def test_ssim_and_psnr_parity_with_scikit_image():
    skm = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(5)
    a = rng.random((90, 120))
    b = np.clip(a + rng.normal(0, 0.15, a.shape), 0, 1)
    ref = skm.structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                    data_range=1.0)
    assert ssim(a, b) == pytest.approx(ref, abs=1e-6)
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    ref32 = skm.structural_similarity(a32.astype(np.float64), b32.astype(np.float64), gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False, data_range=1.0)
    assert ssim(a32, b32) == pytest.approx(ref32, abs=1e-12)
    # Inputs are compared at float32 precision.
    assert psnr(a, b) == pytest.approx(skm.peak_signal_noise_ratio(b, a, data_range=1.0), abs=1e-6)


def test_inputs_rgb_uint8_and_errors():
    g = np.full((32, 32), 0.5, np.float32)
    rgb = np.repeat(g[..., None], 3, axis=2)
    assert psnr(rgb, g) > 100
    u8 = np.full((32, 32), 128, np.uint8)
    assert psnr(u8, np.full((32, 32), 128 / 255, np.float32)) > 100
    with pytest.raises(ValueError, match="same size"):
        psnr(g, np.zeros((31, 32), np.float32))
    with pytest.raises(ValueError, match="mask"):
        psnr(g, g, mask=np.zeros((5, 5), bool), region="in")
    with pytest.raises(ValueError, match="mask is required"):
        psnr(g, g, region="out")
    with pytest.raises(ValueError, match="region"):
        ssim(g, g, region="edge")
    r = evaluate_pair(g, g)
    assert math.isnan(r["psnr_in"]) and math.isnan(r["seam_err"]) and r["psnr"] == math.inf


def test_eval_command_prints_table_and_json(tmp_path, capsys):
    import json

    from mdim_core.__main__ import main
    from mdim_core.imaging.imageio import write_image

    truth = _screen(128, 128)
    out = truth.copy()
    out[40:60, 40:60] = 1.0
    mask = np.zeros(truth.shape, np.float32)
    mask[40:60, 40:60] = 1.0
    for d in ("out", "truth", "masks"):
        (tmp_path / d).mkdir()
    write_image(tmp_path / "out" / "p1.png", out)
    write_image(tmp_path / "truth" / "p1.png", truth)
    write_image(tmp_path / "masks" / "p1_mask.png", mask)
    code = main(["eval", str(tmp_path / "out"), "--truth", str(tmp_path / "truth"), "--masks",
                 str(tmp_path / "masks"), "--json", str(tmp_path / "r.json")])
    assert code == 0
    text = capsys.readouterr().out
    assert "| p1.png |" in text and "**mean**" in text and "psnr_in" in text
    data = json.loads((tmp_path / "r.json").read_text())
    q_out = np.round(out * 255) / 255
    q_truth = np.round(truth * 255) / 255
    assert data["images"]["p1.png"]["psnr"] == pytest.approx(psnr(q_out, q_truth), abs=1e-6)
    assert data["images"]["p1.png"]["psnr_out"] == "inf" and data["images"]["p1.png"]["max_abs_out"] == 0.0
    # A missing truth is an error naming the file.
    write_image(tmp_path / "out" / "p2.png", out)
    assert main(["eval", str(tmp_path / "out"), "--truth", str(tmp_path / "truth")]) == 1
    assert "p2" in capsys.readouterr().err
