"""Text masks on generated pages against their exact truth; refinement of boxes and scribbles;
the ONNX detector's pre- and post-processing through a tiny ONNX graph of the same signature."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from tiny_detector import tiny_detector

from mdim_core.restore import cleanup
from mdim_core.synth import aging, generate_page
from mdim_core.textmask import TextMaskSettings, detect_text, find_text, preview, refine_mask
from mdim_core.textmask.auto import MASK_COLOUR
from mdim_core.textmask.common import grow_crop, otsu, work_factor, work_gray
from mdim_core.textmask.detector import (
    CLASSES,
    Detection,
    TextDetector,
    boxes_mask,
    postprocess,
    preprocess,
)

REPO = Path(__file__).resolve().parents[1]


def _scores(sp, mask):
    t = sp.truth
    text = t["bubble_text"] & ~t["sfx"]
    allowed = t["bubble"] | sp.masks["text"] | sp.masks["sfx"]
    recall = (mask & text).sum() / max(1, text.sum())
    precision = (mask & allowed).sum() / max(1, mask.sum())
    return recall, precision


@pytest.fixture(scope="module")
def pages():
    return [generate_page(seed, size=(1240, 874), dpi=300, truth=True) for seed in (0, 3)]


def test_bubble_text_found_without_eating_outlines(pages):
    for sp in pages:
        res = detect_text(sp.page)
        recall, precision = _scores(sp, res.mask)
        assert recall >= 0.93 and precision >= 0.9, (sp.seed, recall, precision)
        assert res.counts()["bubble"] >= 3 and res.bubbles
        # the outlines of the bubbles found stay out of the mask (ink of the clean page that no text covers)
        outline = (sp.clean < 0.5) & ~sp.removable & ndimage.binary_dilation(sp.truth["bubble"], iterations=3)
        assert (res.mask & outline).sum() <= 0.002 * outline.sum()


def test_latin_vertical_and_free_text_with_halo():
    sp = generate_page(5, size="A5", dpi=300, text="latin", free_text="tone", truth=True)
    res = detect_text(sp.page)
    recall, precision = _scores(sp, res.mask)
    assert recall >= 0.95 and precision >= 0.8
    free = sp.truth["free_text"]
    assert (res.mask & free).sum() >= 0.8 * free.sum()  # glyphs with their white halo
    assert res.counts()["free"] >= 1
    only_bubbles = detect_text(sp.page, free_text=False)
    assert (only_bubbles.mask & free).sum() < 0.1 * free.sum()
    assert not detect_text(sp.page, bubbles=False, free_text=False).mask.any()


def test_sfx_is_off_by_default_and_best_effort_on():
    sp = generate_page(0, size="A5", dpi=300, truth=True)
    off = detect_text(sp.page)
    on = detect_text(sp.page, sfx=True)
    sfx = sp.truth["sfx"]
    assert (on.mask & sfx).sum() > (off.mask & sfx).sum()  # best effort: the benchmark has the numbers
    assert on.counts()["sfx"] >= 1 and off.counts()["sfx"] == 0


def test_after_scan_cleanup_of_an_aged_page():
    sp = generate_page(0, size=(1240, 874), dpi=300, truth=True)
    aged = aging.age_page(sp.page, seed=0, dpi=300, as_uint8=True, rotation=False)
    cleaned = cleanup.clean_page(aged, dpi=300)
    recall, precision = _scores(sp, detect_text(cleaned).mask)
    assert recall >= 0.9 and precision >= 0.8


def test_grow_min_size_and_inputs():
    sp = generate_page(0, size=(1240, 874), dpi=300, truth=True)
    small = detect_text(sp.page, grow=0).mask
    big = detect_text(sp.page, grow=6).mask
    assert small.sum() < big.sum() and not (small & ~big).any()
    none = detect_text(sp.page, min_size=2000).mask
    assert not none.any()
    u8 = (sp.page * 255 + 0.5).astype(np.uint8)
    rgb = np.repeat(sp.page[..., None], 3, axis=2)
    assert np.array_equal(detect_text(u8).mask, detect_text(sp.page).mask)
    assert np.array_equal(detect_text(rgb).mask, detect_text(sp.page).mask)
    with pytest.raises(ValueError, match="grow"):
        TextMaskSettings(grow=-1)
    with pytest.raises(TypeError, match="image"):
        detect_text([[0.0]])
    with pytest.raises(ValueError, match="image"):
        detect_text(np.zeros((4, 4)))


def test_working_scale_keeps_every_ink_pixel():
    rng = np.random.default_rng(0)
    page = np.ones((103, 77), np.float32)
    page[rng.random(page.shape) < 0.01] = 0.0
    f = 3
    assert work_factor((7016, 4961)) == 2 and work_factor((2480, 1748)) == 1
    g = work_gray(page[..., None], f)
    assert g.shape == (35, 26)
    blocks = np.ones((105, 78), bool)
    blocks[:103, :77] = page > 0.5
    expect = blocks.reshape(35, 3, 26, 3).all(axis=(1, 3))  # a block is paper only if all its pixels are
    assert np.array_equal(g == 255, expect)
    assert otsu(np.array([0] * 50 + [255] * 50, np.uint8)) == pytest.approx(0.5)


def _page_with_bubble():
    page = np.ones((200, 260), np.float32)
    yy, xx = np.mgrid[0:200, 0:260]
    ring = np.abs(((yy - 100) / 80.0) ** 2 + ((xx - 130) / 110.0) ** 2 - 1) < 0.04
    page[ring] = 0.0  # the outline
    text = np.zeros_like(page, bool)
    for row in (75, 100, 125):
        for col in range(70, 190, 22):
            text[row - 8 : row + 8, col : col + 3] = True  # strokes of glyphs
            text[row - 1 : row + 2, col - 5 : col + 8] = True
    page[text] = 0.0
    page[20:40, 5:30] = 0.0  # art outside
    return page, text, ring


def test_refinement_of_a_box_a_scribble_and_a_mask_drawn_too_large():
    page, text, ring = _page_with_bubble()
    box = np.zeros_like(text)
    box[10:190, 10:250] = True  # a bubble box reaching over the outline
    res = refine_mask(page, box, grow=2)
    assert res.mask[text].all()
    assert not (res.mask & ring).any()  # the outline is not eaten
    assert not res.mask[20:40, 5:30].any()  # nor the art outside
    assert np.array_equal(res.mask, grow_crop(text, 2))  # the text pixels grown by a 2-px disk, nothing else
    scribble = np.zeros_like(text)
    scribble[99:102, 66:190] = True  # a stroke through each line of text
    scribble[74:77, 66:190] = True
    scribble[124:127, 66:190] = True
    assert refine_mask(page, scribble, grow=2).mask[text].mean() > 0.95
    everything = np.ones_like(text)
    big = refine_mask(page, everything, grow=2).mask
    assert big[text].all() and not (big & ring).any()
    assert not refine_mask(page, np.zeros_like(text)).mask.any()
    flat = np.ones_like(page)
    assert not refine_mask(flat, box).mask.any()  # no contrast: nothing to find
    inverse = refine_mask(1.0 - page, box, grow=0).mask  # white text on black
    assert inverse[text].all()
    with pytest.raises(ValueError, match="rough_mask"):
        refine_mask(page, np.zeros((5, 5), bool))


def test_find_text_refines_a_rough_mask_instead_of_detecting():
    page, text, ring = _page_with_bubble()
    rough = np.zeros_like(text)
    rough[90:110, 60:200] = True
    only_middle = find_text(page, rough=rough).mask
    assert only_middle[95:105].any() and not only_middle[60:85].any()
    rgb = preview(page, only_middle, flat=None, boxes=[(10, 10, 190, 250)])
    assert rgb.shape == (200, 260, 3) and rgb[100, 70, 0] > rgb[100, 70, 1]  # red over the mask
    assert np.allclose(rgb[10, 130], [0.1, 0.45, 1.0])  # the blue frame


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_preview_takes_any_page_size_and_tints_only_the_masks(h, w, seed):
    """Flat Fill previews pages of any size (a 1-px strip too): mask pixels red, flat pixels green, the rest as is."""
    rng = np.random.default_rng(seed)
    page = rng.random((h, w, 1), dtype=np.float32)
    mask, flat = rng.random((h, w)) < 0.3, rng.random((h, w)) < 0.3
    flat &= ~mask
    rgb = preview(page, mask, flat=flat)
    assert rgb.shape == (h, w, 3)
    plain = ~(mask | flat)
    assert np.array_equal(rgb[plain], np.repeat(page[plain], 3, axis=1))
    assert np.allclose(rgb[mask], 0.5 * np.repeat(page[mask], 3, axis=1) + 0.5 * np.asarray(MASK_COLOUR, np.float32))


# --------------------------------------------------------------------------- the ONNX detector


def test_preprocess_stretches_rgb_to_640_and_gives_width_height():
    page = np.zeros((300, 200, 3), np.uint8)
    page[..., 0] = 255  # red
    images, sizes = preprocess(page)
    assert images.shape == (1, 3, 640, 640) and images.dtype == np.float32
    assert np.allclose(images[0, 0], 1.0) and np.allclose(images[0, 1:], 0.0)
    assert sizes.tolist() == [[200, 300]] and sizes.dtype == np.int64
    grey = preprocess(np.full((50, 80), 0.5, np.float32))[0]
    assert np.allclose(grey, 128 / 255)


def test_postprocess_clips_sorts_and_filters():
    labels = np.array([[1, 0, 2, 7]])
    boxes = np.array([[[10.2, 5.0, 50.7, 30.0], [-5, -5, 20, 20], [90, 10, 300, 40], [0, 0, 5, 5]]])
    scores = np.array([[0.5, 0.9, 0.2, 0.99]])
    dets = postprocess(labels, boxes, scores, (60, 100), threshold=0.3)
    assert dets == [Detection("bubble", (0, 0, 20, 20), 0.9), Detection("text_bubble", (5, 10, 30, 51), 0.5)]
    assert len(postprocess(labels, boxes, scores, (60, 100), threshold=0.1)) == 3
    m = boxes_mask(dets, (60, 100), classes=("text_bubble",), margin=0)
    assert m.sum() == 25 * 41 and m[5:30, 10:51].all()
    with pytest.raises(ValueError, match="disagree"):
        postprocess(labels[:, :2], boxes, scores, (60, 100))


def test_tiny_onnx_detector_end_to_end(tmp_path):
    pytest.importorskip("onnxruntime")
    page, text, ring = _page_with_bubble()
    h, w = page.shape
    # a text_bubble box around the text, a bubble box, a text_free box on empty paper
    norm = np.array([[60 / w, 60 / h, 200 / w, 140 / h], [20 / w, 20 / h, 240 / w, 180 / h], [0.0, 0.9, 0.2, 0.99]])
    path = tiny_detector(tmp_path / "tiny.onnx", norm, np.array([1, 0, 2]))
    det = TextDetector(path, threshold=0.0)
    found = det.detect(page)
    images, _ = preprocess(page)
    assert found[0].score == pytest.approx(float(images.mean()), abs=1e-5)
    boxes = {d.label: d.box for d in found}
    assert boxes["text_bubble"] == (60, 60, 140, 200) and boxes["bubble"] == (20, 20, 180, 240)
    res = find_text(page, TextMaskSettings(bubbles=True, free_text=False), detector=det)
    assert res.mask[text].all() and not (res.mask & ring).any()
    assert any(b.kind == "detector" for b in res.blocks)
    high = TextDetector(path, threshold=0.999)
    assert high.detect(page) == []
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a readable ONNX model"):
        TextDetector(bad)
    with pytest.raises(ValueError, match="does not exist"):
        TextDetector(tmp_path / "missing.onnx")
    assert CLASSES == ("bubble", "text_bubble", "text_free")


def test_without_onnxruntime_only_the_loader_is_disabled(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(ImportError, match="onnxruntime"):
        TextDetector(REPO / "missing.onnx")
    spec = importlib.util.spec_from_file_location("detector_nodes_probe", REPO / "nodes" / "detector_nodes.py")
    module = importlib.util.module_from_spec(spec)
    with pytest.raises(ImportError, match="onnxruntime"):
        spec.loader.exec_module(module)  # raises before it touches ComfyUI: the pack skips only this module
    page, text, _ = _page_with_bubble()
    assert detect_text(page).mask.shape == page.shape  # the classical detector needs nothing more
