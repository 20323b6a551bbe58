"""The ``inpaint`` and ``eval`` commands at every page size and file kind (tiny diffusers models):
the output has the page's size, bit depth and (gray or colour) channels and its bytes outside the
mask; the scores are the known ones; bad input is a clear error naming the file."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from size_strategies import MASK_KINDS, make_mask, make_page, page_size

from mdim_core.__main__ import main
from mdim_core.imaging import checks

FAST = ["--steps", "2", "--fri-steps", "1", "--sgi-max-side", "64", "--min-crop-side", "0", "--context-margin", "8", "-q"]
FIXTURES = [HealthCheck.function_scoped_fixture]
PAGES = {  # file -> (Pillow mode, channels written, numpy dtype read back)
    "gray8.png": ("L", 1, np.uint8),
    "gray16.png": ("I;16", 1, np.uint16),
    "gray16.tif": ("I;16", 1, np.uint16),
    "rgb8.png": ("RGB", 3, np.uint8),
    "rgba8.png": ("RGBA", 4, np.uint8),
    "rgb8.tif": ("RGB", 3, np.uint8),
}


def _save_page(path, kind, size, seed=0) -> np.ndarray:
    mode, channels, dtype = PAGES[kind]
    page = make_page(size, channels, seed=seed)
    top = 65535 if dtype == np.uint16 else 255
    arr = np.round(page * top).astype(dtype)
    arr = arr[..., 0] if channels == 1 else arr
    Image.fromarray(arr, None if mode == "I;16" else mode).save(path)
    return arr


def _save_mask(path, mask, mode):
    arr = mask.astype(np.uint8) * 255
    if mode == "RGBA":  # a mask painted in an editor: white strokes, opaque
        arr = np.stack([arr, arr, arr, np.full_like(arr, 255)], axis=-1)
    elif mode == "RGB":
        arr = np.stack([arr] * 3, axis=-1)
    Image.fromarray(arr).save(path)


@settings(max_examples=8, deadline=None, suppress_health_check=FIXTURES)
@given(size=page_size(max_side=1500, max_area=6_000), kind=st.sampled_from(sorted(PAGES)),
       mask_kind=st.sampled_from(MASK_KINDS), mask_mode=st.sampled_from(["L", "RGB", "RGBA"]))
def test_inpaint_command_any_size_and_file_kind(inpaint_model_dir, tmp_path_factory, size, kind, mask_kind, mask_mode):
    tmp = tmp_path_factory.mktemp("inpaint")
    page_path = tmp / f"page.{kind.split('.')[1]}"
    page = _save_page(page_path, kind, size, seed=size[0])
    hole = make_mask(mask_kind, size, seed=size[1])
    _save_mask(tmp / "mask.png", hole, mask_mode)
    out = tmp / f"out.{kind.split('.')[1]}"
    assert main(["inpaint", str(page_path), str(tmp / "mask.png"), "-o", str(out), "--model", str(inpaint_model_dir), *FAST]) == 0
    result = np.asarray(Image.open(out))
    expect = page[..., :3] if kind.startswith("rgba") else page  # RGBA pages come out RGB
    assert result.shape == expect.shape and result.dtype == expect.dtype
    assert np.array_equal(result[~hole], expect[~hole])  # outside the mask: the page's own samples


@settings(max_examples=15, deadline=None, suppress_health_check=FIXTURES)
@given(size=page_size(max_side=4000, max_area=30_000), kind=st.sampled_from(sorted(PAGES)),
       mask_kind=st.sampled_from(MASK_KINDS))
def test_eval_command_any_size(tmp_path_factory, size, kind, mask_kind):
    tmp = tmp_path_factory.mktemp("eval")
    for name in ("out", "truth", "masks"):
        (tmp / name).mkdir()
    ext = kind.split(".")[1]
    truth = _save_page(tmp / "truth" / f"p.{ext}", kind, size, seed=1)
    hole = make_mask(mask_kind, size, seed=2)
    _save_mask(tmp / "masks" / "p.png", hole, "L")
    out = truth.copy()
    out[hole] = 0  # different inside the mask only
    Image.fromarray(out).save(tmp / "out" / f"p.{ext}")
    report = tmp / "r.json"
    assert main(["eval", str(tmp / "out"), "--truth", str(tmp / "truth"), "--masks", str(tmp / "masks"),
                 "--json", str(report)]) == 0
    row = json.loads(report.read_text())["images"][f"p.{ext}"]
    assert row["max_abs_out"] in (0.0, None) and row["psnr_out"] in ("inf", None)  # None: nothing outside
    if hole.any() and (truth[hole] != 0).any():
        assert row["psnr_in"] is not None and row["psnr_in"] != "inf"
    if not hole.any():
        assert row["psnr"] == "inf"


def test_eval_names_the_files_it_cannot_score(tmp_path, capsys):
    for name in ("out", "truth"):
        (tmp_path / name).mkdir()
    Image.fromarray(np.zeros((5, 7), np.uint8)).save(tmp_path / "out" / "p.png")
    Image.fromarray(np.zeros((7, 5), np.uint8)).save(tmp_path / "truth" / "p.png")
    assert main(["eval", str(tmp_path / "out"), "--truth", str(tmp_path / "truth")]) == 1
    assert "p.png: output is 7x5 px but its truth p.png is 5x7 px" in capsys.readouterr().err


def test_inpaint_and_eval_refuse_a_page_too_large_for_memory(inpaint_model_dir, tmp_path, monkeypatch, capsys):
    _save_page(tmp_path / "page.png", "rgb8.png", (120, 90))
    _save_mask(tmp_path / "mask.png", make_mask("border", (120, 90)), "L")
    for folder in ("outputs", "truth"):
        (tmp_path / folder).mkdir()
        _save_page(tmp_path / folder / "page.png", "rgb8.png", (120, 90))
    monkeypatch.setattr(checks, "available_memory", lambda: 450_000)  # the file reads, the work does not fit
    args = ["inpaint", str(tmp_path / "page.png"), str(tmp_path / "mask.png"), "-o", str(tmp_path / "o.png"),
            "--model", str(inpaint_model_dir), *FAST]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "error: inpainting" in err and "page.png (90x120 px) needs about" in err and "KiB is free" in err
    assert not (tmp_path / "o.png").exists()
    assert main(["eval", str(tmp_path / "outputs"), "--truth", str(tmp_path / "truth")]) == 1
    err = capsys.readouterr().err
    assert "scoring page.png (90x120 px) needs about" in err
