"""``python -m mdim_core inpaint`` end to end on tiny diffusers models."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mdim_core.__main__ import main

REPO = Path(__file__).resolve().parents[1]
FAST = ["--steps", "4", "--fri-steps", "2", "--sgi-max-side", "32", "--min-crop-side", "0", "--context-margin", "8"]


@pytest.fixture(scope="module")
def model_dir(inpaint_model_dir):
    return inpaint_model_dir


@pytest.fixture()
def page_and_mask(tmp_path):
    rng = np.random.default_rng(0)
    page = (rng.random((101, 87)) * 255).astype(np.uint8)  # odd size, grayscale
    page[::7] = 255
    mask = np.zeros((101, 87), np.uint8)
    mask[30:62, 20:55] = 255
    mask[75:90, 60:80] = 250  # near-white (JPEG-like) counts as repaint
    page_path, mask_path = tmp_path / "page.png", tmp_path / "mask.png"
    Image.fromarray(page).save(page_path, dpi=(600, 600))
    Image.fromarray(mask).convert("RGB").save(mask_path)
    return page_path, mask_path, page, mask > 127


def test_cli_end_to_end_keeps_outside_exact_and_is_deterministic(model_dir, page_and_mask, tmp_path, capsys):
    page_path, mask_path, page, hole = page_and_mask
    out1, out2, out3 = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    preview = tmp_path / "sgi.png"
    args = ["inpaint", str(page_path), str(mask_path), "--model", str(model_dir), *FAST]
    assert main([*args, "-o", str(out1), "--seed", "3", "--sgi-preview", str(preview)]) == 0
    err = capsys.readouterr().err
    assert "SGIM" in err and "step" in err  # the progress bar
    assert main([*args, "-o", str(out2), "--seed", "3", "-q"]) == 0
    assert main([*args, "-o", str(out3), "--seed", "4", "-q"]) == 0
    a, b, c = (np.array(Image.open(p)) for p in (out1, out2, out3))
    assert a.shape == page.shape and a.dtype == np.uint8  # grayscale in, grayscale out
    assert np.array_equal(a[~hole], page[~hole])  # outside the mask: the input bytes
    assert np.abs(a[hole].astype(int) - page[hole]).mean() > 2  # inside: redrawn
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    with Image.open(out1) as im:
        assert tuple(round(v) for v in im.info["dpi"]) == (600, 600)
    assert np.array_equal(np.array(Image.open(preview))[~hole], page[~hole])


def test_cli_bad_inputs_exit_2_with_a_message(model_dir, page_and_mask, tmp_path, capsys):
    page_path, mask_path, *_ = page_and_mask
    out = tmp_path / "x.png"
    assert main(["inpaint", str(page_path), str(mask_path), "-o", str(out), "--model", str(tmp_path / "none")]) == 2
    assert "model" in capsys.readouterr().err
    assert main(["inpaint", str(tmp_path / "missing.png"), str(mask_path), "-o", str(out), "--model", str(model_dir)]) == 2
    assert "missing.png" in capsys.readouterr().err
    bad = ["inpaint", str(page_path), str(mask_path), "-o", str(out), "--model", str(model_dir), "--fri-strength", "1.5"]
    assert main(bad) == 2
    assert "fri_strength" in capsys.readouterr().err
    eps = ["--prediction", "epsilon", "--zero-snr", "on"]
    assert main(["inpaint", str(page_path), str(mask_path), "-o", str(out), "--model", str(model_dir), *eps]) == 2
    assert "epsilon" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_python_dash_m_runs(model_dir, page_and_mask, tmp_path):
    page_path, mask_path, page, hole = page_and_mask
    out = tmp_path / "out.png"
    cmd = [sys.executable, "-m", "mdim_core", "inpaint", str(page_path), str(mask_path), "-o", str(out),
           "--model", str(model_dir), *FAST, "--run-fri", "never"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    found = re.search(r"(\d+) crop\(s\), (\d+) pass\(es\)", proc.stdout)
    # --run-fri never: one structure pass on the shrunk page (26 x 22) holds both regions, pasted as two crops
    assert found and (found.group(1), found.group(2)) == ("2", "1")
    assert np.array_equal(np.array(Image.open(out))[~hole], page[~hole])


@pytest.mark.parametrize("kind", ["gray16", "rgb8"])
def test_cli_keeps_bit_depth_and_colour_outside_the_mask(kind, model_dir, tmp_path):
    rng = np.random.default_rng(1)
    if kind == "gray16":
        page = (rng.random((72, 64)) * 65535).astype(np.uint16)
        Image.fromarray(page).save(tmp_path / "page.png")
    else:
        page = (rng.random((72, 64, 3)) * 255).astype(np.uint8)
        Image.fromarray(page).save(tmp_path / "page.png")
    mask = np.zeros((72, 64), np.uint8)
    mask[20:40, 16:40] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "out.png"
    args = ["inpaint", str(tmp_path / "page.png"), str(tmp_path / "mask.png"), "-o", str(out), "--model", str(model_dir)]
    assert main([*args, *FAST, "-q"]) == 0
    result = np.array(Image.open(out))
    assert result.dtype == page.dtype and result.shape == page.shape
    hole = mask > 0
    assert np.array_equal(result[~hole], page[~hole])
    assert not np.array_equal(result[hole], page[hole])


def test_cli_prefill_and_flat_fill(model_dir, tmp_path):
    """A white page with text: flat fill takes it with no model pass (--flat-fill auto); off sends it to the
    model; a --prefill page must have the page's size."""
    page = np.full((64, 96), 255, np.uint8)
    page[20:30, 20:60] = 0  # lettering on white paper
    mask = np.zeros((64, 96), np.uint8)
    mask[18:32, 18:62] = 255
    page_path, mask_path = tmp_path / "page.png", tmp_path / "mask.png"
    Image.fromarray(page).save(page_path)
    Image.fromarray(mask).save(mask_path)
    args = ["inpaint", str(page_path), str(mask_path), "--model", str(model_dir), *FAST, "-q"]
    assert main([*args, "-o", str(tmp_path / "auto.png")]) == 0
    auto = np.array(Image.open(tmp_path / "auto.png"))
    assert (auto == 255).all()  # the text became paper, exactly
    assert main([*args, "-o", str(tmp_path / "off.png"), "--flat-fill", "off"]) == 0
    off = np.array(Image.open(tmp_path / "off.png"))
    assert np.array_equal(off[mask == 0], page[mask == 0]) and not (off == 255).all()  # the tiny model drew there
    fill = tmp_path / "fill.png"
    Image.fromarray(np.full((64, 96), 128, np.uint8)).save(fill)
    assert main([*args, "-o", str(tmp_path / "pre.png"), "--flat-fill", "off", "--prefill", str(fill)]) == 0
    pre = np.array(Image.open(tmp_path / "pre.png"))
    assert np.array_equal(pre[mask == 0], page[mask == 0]) and not np.array_equal(pre, off)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(fill)
    assert main([*args, "-o", str(tmp_path / "bad.png"), "--prefill", str(fill)]) == 2
