"""Scan Cleanup and the ``restore`` command at every page size: 1 px to ~10 000 px per side, primes,
odd sides, strips, the A and B paper series at 72..1200 dpi; gray, RGB, RGBA; 8 and 16 bit.

Each size gives a page of the same size in 0..1 (paper white, ink black where that is known) or a
clear error naming the input; a page too large for the memory free is refused before the work.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image
from size_strategies import make_page, page_size, paper_sizes

from mdim_core.__main__ import main
from mdim_core.cli import batch
from mdim_core.imaging import checks, imageio
from mdim_core.restore import cleanup

SWEEP = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _auto_cell(size):
    return max(4, round(max(size) / 440))  # CleanupSettings.cell = 0


def _check(out, size):
    assert out.shape == size and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0


def _lines(size, paper=0.9, ink=0.1, period=13):
    page = np.full(size, paper, np.float32)
    page[::period] = ink
    return page


def test_every_paper_size_along_each_side():
    """Every side of every A/B paper size at 72..1200 dpi through the size-dependent steps, with the
    cell and sharpening radius the whole page gets: a strip of that side, two pixels wide."""
    cases = set()
    for h, w in paper_sizes():
        radius = max(0.5, max(h, w) / 2480)  # its block factor ceil(radius / 1.5) is what depends on size
        cases |= {(n, _auto_cell((h, w)), math.ceil(radius / 1.5) * 1.5) for n in (h, w)}
    assert (4961, 11, 3.0) in cases and len(cases) > 300
    for length, cell, radius in sorted(cases):
        for size in ((length, 2), (2, length)):
            out = cleanup.clean_page(_lines(size, period=7), cell=cell, sharpen_radius=radius, adaptive_sharpen=False)
            assert out.shape == size, (size, cell)
            assert out.min() >= 0.0 and out.max() <= 1.0, (size, cell)


@SWEEP
@given(
    size=page_size(max_area=60_000),
    channels=st.sampled_from([1, 3, 4]),
    uint8=st.booleans(),
    flat=st.booleans(),
    options=st.fixed_dictionaries({
        "gray": st.sampled_from(cleanup.GRAY_METHODS),
        "levels": st.sampled_from(cleanup.LEVELS_MODES),
        "deskew": st.booleans(),
        "despeckle": st.sampled_from([0, 8]),
        "bleed_through": st.sampled_from([0.0, 0.4]),
        "sharpen": st.sampled_from([0.0, 3.0]),
    }),
)
@example(size=(519, 366), channels=1, uint8=False, flat=True,  # a blank page the background division left at
         options={"gray": "auto", "levels": "thesis", "deskew": False,  # 1.0 - 1e-7 .. 1.0: it came out black
                  "despeckle": 0, "bleed_through": 0.0, "sharpen": 0.0})
def test_clean_page_any_size_format_and_options(size, channels, uint8, flat, options):
    page = np.full((*size, channels), 0.9, np.float32) if flat else make_page(size, channels, seed=sum(size))
    if uint8:
        page = np.round(page * 255).astype(np.uint8)
    before = page.copy()
    out = cleanup.clean_page(page, **options)
    _check(out, size)
    np.testing.assert_array_equal(page, before)  # the input is never written
    if flat and options["levels"] != "off":
        assert out.min() == 1.0  # a blank sheet is white paper at any size


@settings(max_examples=2, deadline=None)
@given(st.sampled_from([s for s in paper_sizes() if 2_000_000 < s[0] * s[1] <= 12_000_000]))
@pytest.mark.slow
def test_whole_paper_pages(size):
    out = cleanup.clean_page(_lines(size))
    _check(out, size)
    assert out[::13].max() < 0.05 and out[6::13].min() > 0.95


def test_bad_pages_name_the_input():
    with pytest.raises(ValueError, match=r"^scan\.tif: expected float \(0\.\.1\) or uint8 \(0\.\.255\) pixels, got dtype uint16"):
        cleanup.clean_page(np.zeros((8, 8), np.uint16), name="scan.tif")
    with pytest.raises(ValueError, match=r"^scan\.png: empty page"):
        cleanup.clean_page(np.zeros((0, 8, 3), np.uint8), name="scan.png")
    with pytest.raises(TypeError, match=r"^image: expected a numpy array"):
        cleanup.clean_page([[0.5]])


# --------------------------------------------------------------------------- memory


def test_page_too_large_for_memory_is_refused_before_the_work(monkeypatch):
    page = _lines((300, 200))
    monkeypatch.setattr(checks, "available_memory", lambda: 100_000)
    monkeypatch.setattr(cleanup, "to_gray", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(MemoryError, match=r"^cleanup of p7\.png \(200x300 px\) needs about 703\.1 KiB of memory but only 97\.7 KiB is free"):
        cleanup.clean_page(page, name="p7.png")
    need = cleanup.memory_bytes((300, 200), cleanup.CleanupSettings())
    assert need == 300 * 200 * 12 and cleanup.memory_bytes((300, 200), cleanup.CleanupSettings(deskew=True)) > need


def test_read_page_refuses_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((60, 40), np.uint16)).save(path)
    assert imageio.decode_bytes("I;16", 40, 60) == 40 * 60 * (2 + 3 + 8)
    assert imageio.decode_bytes("RGB", 40, 60, keep_uint8=True) == 40 * 60 * (3 + 3 + 3)
    monkeypatch.setattr(checks, "available_memory", lambda: 1000)
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("decoded"))
    with pytest.raises(MemoryError, match=r"^reading '.*big\.png' \(40x60 px\) needs about 30\.5 KiB of memory but only 1\.0 KiB is free"):
        imageio.read_page(path)


def test_restore_command_skips_a_page_too_large_for_memory_and_goes_on(tmp_path, monkeypatch, capsys):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray((_lines((64, 48)) * 255).astype(np.uint8)).save(src / "a.png")
    Image.fromarray((_lines((640, 480)) * 255).astype(np.uint8)).save(src / "b.png")
    monkeypatch.setattr(checks, "available_memory", lambda: 1_000_000)  # a.png fits, b.png does not
    code = main(["restore", str(src), "-o", str(tmp_path / "out"), "-q"])
    err = capsys.readouterr().err
    assert code == 1 and (tmp_path / "out" / "a.png").is_file() and not (tmp_path / "out" / "b.png").exists()
    assert "failed: b.png: reading" in err and "(480x640 px) needs about" in err and "is free" in err


# --------------------------------------------------------------------------- the restore command


FILES = {  # file kind -> bit depth of the cleaned page written back ("same" format)
    "gray8.png": 8, "gray16.png": 16, "gray16.tif": 16, "gray32.tif": 16, "float.tif": 16, "bilevel.png": 8,
    "gray_alpha.png": 8, "palette.png": 8, "rgb8.png": 8, "rgba8.png": 8, "rgb8.jpg": 8, "cmyk.jpg": 8,
    "cmyk.tif": 8, "rgb8.webp": 8,
}


def _write(path, kind, size):
    page = make_page(size, 3, seed=size[0])
    rgb = np.round(page * 255).astype(np.uint8)
    gray = rgb[..., 0]
    im = {
        "gray8": lambda: Image.fromarray(gray),
        "gray16": lambda: Image.fromarray(np.round(page[..., 0] * 65535).astype(np.uint16)),
        "gray32": lambda: Image.fromarray(np.round(page[..., 0] * 65535).astype(np.int32)),  # mode I
        "float": lambda: Image.fromarray(page[..., 0]),  # mode F, 0..1
        "bilevel": lambda: Image.fromarray(gray).convert("1"),
        "gray_alpha": lambda: Image.fromarray(gray).convert("LA"),
        "palette": lambda: Image.fromarray(rgb).convert("P"),
        "rgb8": lambda: Image.fromarray(rgb),
        "rgba8": lambda: Image.fromarray(rgb).convert("RGBA"),
        "cmyk": lambda: Image.fromarray(rgb).convert("CMYK"),
    }[kind.split(".")[0]]()
    im.save(path)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=page_size(max_area=40_000), kind=st.sampled_from(sorted(FILES)))
def test_restore_command_any_size_and_file_kind(tmp_path_factory, size, kind):
    tmp = tmp_path_factory.mktemp("restore")
    src = tmp / f"page.{kind.split('.')[1]}"
    _write(src, kind, size)
    report = batch.run_batch(src, tmp / "out", progress=False)
    assert report.failed == [] and report.exit_code == 0
    out = imageio.read_page(tmp / "out" / src.name)
    assert out.pixels.shape[:2] == size and out.bit_depth == FILES[kind]


@pytest.mark.slow
@pytest.mark.parametrize("size", [(4961, 3508)])
def test_restore_command_at_the_size_that_failed(tmp_path, size):
    """A3 at 300 dpi. 4961 px = 451 cells of 11 px: at half resolution (2481 px) the background grid
    was asked for 451.09 cells and Pillow refused the box ('box can't exceed original image size')."""
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray((_lines(size) * 255).astype(np.uint8)).save(src / "a3_300dpi.png", dpi=(300, 300))
    report = batch.run_batch(src, tmp_path / "out", progress=False)
    assert report.failed == [] and report.done == ["a3_300dpi.png"]
    out = imageio.read_page(tmp_path / "out" / "a3_300dpi.png")
    assert out.pixels.shape[:2] == size and out.dpi == (300, 300)
    assert out.pixels[::13].max() == 0.0 and out.pixels[6::13].min() == 1.0  # ink black, paper white, to the edge
