"""Procedural manga pages: determinism, exact ground truth, masks, tones with known coverage."""

import math
import tracemalloc

import numpy as np
import pytest

from mdim_core.synth import generate_page, page_size
from mdim_core.synth.maskgen import box_mask, small_mask, wide_mask
from mdim_core.synth.raster import DotTone, FocusLines, Layer, LineTone, draw_stroke, row_chunks


@pytest.fixture(scope="module")
def small_pages():
    return [generate_page(seed, size=(640, 480), dpi=200) for seed in range(4)]


def _tone_image(tone, h=240, w=240):
    out = np.empty((h, w), np.float32)
    for r0, r1, ys, xs in row_chunks((0, h, 0, w)):
        out[r0:r1] = tone.values(ys, xs)
    return out


def test_deterministic_and_seeds_differ():
    a = generate_page(7, size=(512, 384), dpi=150)
    b = generate_page(7, size=(512, 384), dpi=150)
    c = generate_page(8, size=(512, 384), dpi=150)
    assert np.array_equal(a.page, b.page) and np.array_equal(a.clean, b.clean)
    for k in a.masks:
        assert np.array_equal(a.masks[k], b.masks[k])
    assert a.panels == b.panels and np.array_equal(a.screentone, b.screentone)
    assert np.abs(a.page - c.page).mean() > 0.05


def test_page_format_and_exact_ground_truth(small_pages):
    for sp in small_pages:
        assert sp.page.dtype == np.float32 and sp.page.shape == (640, 480)
        assert sp.clean.dtype == np.float32 and sp.clean.shape == (640, 480)
        assert 0.0 <= sp.page.min() and sp.page.max() <= 1.0
        outside = ~sp.removable
        # The clean page is the exact result of a perfect removal.
        assert np.array_equal(sp.page[outside], sp.clean[outside])
        # Pure white paper and pure black ink exist.
        assert (sp.clean == 1.0).mean() > 0.1 and (sp.clean == 0.0).mean() > 0.005
    # Some page carries text and SFX, and they are really removed in the clean page.
    assert any(sp.masks["text"].any() for sp in small_pages) and any(sp.masks["sfx"].any() for sp in small_pages)
    for sp in small_pages:
        for k in ("text", "sfx"):
            if sp.masks[k].any():
                assert np.abs(sp.page - sp.clean)[sp.masks[k]].max() > 0.9


def test_bubble_text_lies_on_white_bubbles(small_pages):
    checked = 0
    yy, xx = np.mgrid[0:640, 0:480] + 0.5
    for sp in small_pages:
        for cx, cy, a, b in sp.metadata["bubble_ellipses"]:
            inside = ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2 < 0.8
            text = sp.masks["text"] & inside & ~sp.masks["sfx"]
            if text.sum() < 50:
                continue
            assert sp.clean[text].mean() > 0.95  # the bubble is white under its text
            assert sp.page[text].mean() < sp.clean[text].mean() - 0.1
            checked += 1
    assert checked > 0


def test_free_text_over_artwork_has_a_white_halo():
    found = 0
    for seed in range(8):
        sp = generate_page(seed, size=(800, 600), dpi=300, masks=False)
        if not sp.metadata["free_text"]:
            continue
        found += 1
        text = sp.masks["text"]
        # The halo paints paper white over artwork that was darker in the clean page.
        assert ((sp.page == 1.0) & (sp.clean < 0.5) & text).sum() > 20
    assert found > 0


def test_panels_have_black_borders_and_white_gutters(small_pages):
    for sp in small_pages:
        assert len(sp.panels) >= 2
        for x0, y0, x1, y1 in sp.panels:
            assert 0 <= x0 < x1 <= 480 and 0 <= y0 < y1 <= 640
        # The page margin stays white except where bubbles or SFX reach out.
        top = sp.clean[:8]
        assert (top == 1.0).mean() > 0.6
        # Borders: the left edge column of each panel is black where no bubble covers it.
        x0, y0, x1, y1 = sp.panels[-1]
        col = sp.clean[y0:y1, x0]
        assert (col == 0.0).mean() > 0.5


def test_masks_coverage_ranges():
    rng = np.random.default_rng(0)
    for _ in range(5):
        for maker in (wide_mask, box_mask):
            m = maker(rng, (300, 200))
            assert m.dtype == bool and m.shape == (300, 200)
            assert 0.1 <= m.mean() <= 0.5  # target 10-40 %, the last stroke or box may overshoot a little
        s = small_mask(rng, (300, 200), 1.0)
        assert 0 < s.mean() < 0.1
    with pytest.raises(ValueError, match="shape"):
        box_mask(rng, (4, 4))


def test_masks_of_a_page_and_screentone_map(small_pages):
    for sp in small_pages:
        assert set(sp.masks) == {"text", "sfx", "wide", "box", "small"}
        assert 0.1 <= sp.masks["wide"].mean() <= 0.5 and 0.1 <= sp.masks["box"].mean() <= 0.5
        assert sp.screentone.dtype == bool
    # A flat dot screen laid as a panel background: the tone map covers it and its mean grey is
    # 1 - coverage.
    checked = 0
    for seed in range(6):
        sp = generate_page(seed, size=(640, 480), dpi=200, masks=False)
        for scene in sp.metadata["scenes"]:
            if scene["background"] != "dots":
                continue
            x0, y0, x1, y1 = scene["box"]
            tone = next(t for t in sp.tones if t["box"] == [x0, y0, x1, y1] and t["kind"] == "dots")
            region = sp.screentone[y0:y1, x0:x1]
            assert region.mean() > 0.3
            # Median of 16x16 block means over blocks fully inside the tone region: the background.
            bh, bw = (y1 - y0) // 16, (x1 - x0) // 16
            blocks = sp.clean[y0 : y0 + bh * 16, x0 : x0 + bw * 16].reshape(bh, 16, bw, 16).mean((1, 3))
            full = region[: bh * 16, : bw * 16].reshape(bh, 16, bw, 16).all((1, 3))
            assert np.median(blocks[full]) == pytest.approx(1 - tone["coverage"], abs=0.03)
            checked += 1
    assert checked > 0
    assert not any(generate_page(0, size=(512, 384), dpi=150, masks=False).masks[k].any() for k in ("wide", "box"))


@pytest.mark.parametrize("coverage", [0.1, 0.3, 0.5, 0.7])
@pytest.mark.parametrize("lpi", [50, 85])
def test_dot_tone_mean_and_period(coverage, lpi):
    period = 300 / lpi
    img = _tone_image(DotTone(period, math.radians(45), coverage))
    assert img.mean() == pytest.approx(1 - coverage, abs=0.01)
    # The strongest non-DC frequency is the screen ruling: |f| = 1 / period.
    spec = np.abs(np.fft.fft2(img - img.mean()))
    fy, fx = np.unravel_index(np.argmax(spec), spec.shape)
    f = np.fft.fftfreq(240)
    assert math.hypot(f[fy], f[fx]) == pytest.approx(1 / period, rel=0.06)


def test_dot_gradient_and_line_tones():
    g = DotTone(5.0, math.radians(45), 0.1, 0.6, origin=(0, 0), direction=(1.0, 0.0), length=240)
    img = _tone_image(g)
    left, right = img[:, :40].mean(), img[:, -40:].mean()
    assert left == pytest.approx(1 - 0.142, abs=0.02) and right == pytest.approx(1 - 0.558, abs=0.02)
    lines = _tone_image(LineTone(6.0, math.radians(30), 0.4))
    assert lines.mean() == pytest.approx(0.6, abs=0.02)
    hatch = _tone_image(LineTone(8.0, 0.3, 0.2, cross=True))
    assert hatch.mean() == pytest.approx(0.8 * 0.8, abs=0.03)
    n = 40
    fl = FocusLines(120, 120, starts=np.full(n, 30.0), widths=np.full(n, 4.0), jitter=np.zeros(n), radius=200)
    img = _tone_image(fl)
    assert img[118:122, 118:122].min() == 1.0 and img.min() == 0.0


def test_stroke_is_antialiased_with_exact_area():
    canvas = np.ones((60, 120), np.float32)
    draw_stroke(Layer(canvas, (0, 60, 0, 120)), np.array([[20.0, 30.0], [100.0, 30.0]]), 5.0, 0.0)
    ink = (1 - canvas).sum()
    assert ink == pytest.approx(80 * 10 + math.pi * 25, rel=0.01)
    assert ((canvas > 0) & (canvas < 1)).any()  # grey edge pixels


def test_size_presets_and_bad_inputs():
    assert page_size("A5", 300) == (2480, 1748)
    assert page_size("A4", 600) == (7016, 4961)
    assert page_size((100, 80), 300) == (100, 80)
    with pytest.raises(ValueError, match="size"):
        page_size("Letter", 300)
    with pytest.raises(ValueError, match="dpi"):
        generate_page(0, dpi=5)
    with pytest.raises(ValueError, match="size"):
        generate_page(0, size=(10, 10))
    with pytest.raises(TypeError, match="seed"):
        generate_page("x")


def test_a5_at_300_dpi():
    sp = generate_page(1)
    assert sp.page.shape == (2480, 1748) and sp.dpi == 300.0
    assert np.array_equal(sp.page[~sp.removable], sp.clean[~sp.removable])


@pytest.mark.slow
def test_a4_at_600_dpi_is_memory_frugal():
    tracemalloc.start()
    try:
        sp = generate_page(3, size="A4", dpi=600, masks=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sp.page.shape == (7016, 4961)
    n = 7016 * 4961
    # Result: two float32 pages + six bool maps = 14 bytes/px; rendering adds little on top.
    assert peak < n * 14 + 400e6, peak / 1e6


def test_synth_command_writes_a_pairable_set(tmp_path):
    from mdim_core.__main__ import main
    from mdim_core.imaging.imageio import read_image
    from mdim_core.restore.levels import prepare_ground_truth

    code = main(["synth", str(tmp_path), "--count", "2", "--seed", "5", "--size", "200x150", "--dpi", "100", "--aged"])
    assert code == 0
    name = "page_00005.png"
    sp = generate_page(5, size=(200, 150), dpi=100)
    page = read_image(tmp_path / "page" / name)[..., 0]
    clean = read_image(tmp_path / "clean" / name)[..., 0]
    assert np.abs(page - sp.page).max() <= 0.5 / 255 + 1e-6
    assert np.abs(clean - sp.clean).max() <= 0.5 / 255 + 1e-6
    for kind in ("text", "sfx", "wide", "box", "small"):
        m = read_image(tmp_path / "masks" / kind / name)[..., 0] > 0.5
        assert np.array_equal(m, sp.masks[kind]), kind
    aged = read_image(tmp_path / "aged" / name)
    assert aged.shape == (200, 150, 3)
    target = read_image(tmp_path / "aged_truth" / name)[..., 0]
    assert np.abs(target - prepare_ground_truth(sp.page)).max() <= 0.5 / 255 + 1e-6
    assert (tmp_path / "meta" / "page_00006.json").is_file()
    assert main(["synth", str(tmp_path), "--count", "0"]) == 1


@pytest.mark.parametrize("text, free_text, halo", [("latin", "auto", True), ("cjk", "tone", True), ("latin", "tone", False)])
def test_text_options_keep_exact_truth(text, free_text, halo):
    sp = generate_page(4, size=(900, 640), dpi=250, text=text, free_text=free_text, halo=halo, truth=True)
    t = sp.truth
    assert np.array_equal(sp.page[~sp.removable], sp.clean[~sp.removable])
    assert t["bubble"].any() and t["bubble_text"].any()
    assert sp.clean[t["bubble"]].min() == 1.0  # bubble interiors are pure paper in the clean page
    assert not (t["bubble_text"] & ~sp.masks["text"]).any()
    assert np.array_equal(t["bubble_text_mask"] | t["free_text_mask"], sp.masks["text"])
    changed = sp.page != sp.clean
    assert not (changed & ~(t["bubble_text"] | t["free_text"] | t["sfx"])).any()  # every change has its kind
    if free_text == "tone":
        assert sp.metadata["free_text"] > 0
        tone_panels = [sc["box"] for sc in sp.metadata["scenes"] if sc["background"] in ("dots", "gradient", "lines")]
        for ys, xs in [np.nonzero(t["free_text"])]:
            assert any(x0 <= xs.mean() < x1 and y0 <= ys.mean() < y1 for x0, y0, x1, y1 in tone_panels)
        halo_px = t["free_text"] & (sp.page == 1.0) & (sp.clean < 1.0)
        assert halo_px.any() == halo  # a white halo over the tone, or none


def test_latin_text_is_horizontal_lines_of_letters():
    cjk = generate_page(4, size=(900, 640), dpi=250, truth=True)
    latin = generate_page(4, size=(900, 640), dpi=250, text="latin", truth=True)
    assert np.array_equal(latin.clean, cjk.clean)  # the same artwork, only the lettering differs
    assert not np.array_equal(latin.page, cjk.page)
    # rows of letters: the ink of a Latin bubble leaves empty rows between lines
    rows = latin.truth["bubble_text"].any(axis=1)
    assert (np.diff(rows.astype(int)) == 1).sum() >= 3
    with pytest.raises(ValueError, match="text must be one of"):
        generate_page(0, size=(200, 150), text="greek")
    with pytest.raises(ValueError, match="free_text must be one of"):
        generate_page(0, size=(200, 150), free_text="everywhere")
    assert generate_page(0, size=(200, 150)).truth == {}
