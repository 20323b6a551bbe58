"""``python -m mdim_core lama-fill``: LaMa fills of a folder of pages, then scored by ``eval``."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from mdim_core.__main__ import main
from mdim_core.cli.synth import write_set
from mdim_core.imaging import imageio

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("spandrel") is None, reason="spandrel is not installed"),
]


@pytest.fixture(scope="module")
def lama_file(tmp_path_factory):
    from lama_nets import random_lama, write_lama

    return write_lama(random_lama(0), tmp_path_factory.mktemp("models") / "lama.safetensors")


@pytest.fixture(scope="module")
def synth_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("set")
    write_set(out, 2, seed=3, size=(128, 96), dpi=150)
    return out


def test_fill_a_folder_and_score_it(tmp_path, lama_file, synth_set, capsys):
    out = tmp_path / "lama"
    code = main(["lama-fill", str(synth_set / "page"), "--masks", str(synth_set / "masks" / "wide"), "--model",
                 str(lama_file), "-o", str(out), "--max-side", "64", "--context-margin", "16", "-q"])  # fmt: skip
    assert code == 0
    for name in ("page_00003.png", "page_00004.png"):
        src = imageio.read_page(synth_set / "page" / name)
        got = imageio.read_page(out / name)
        mask = imageio.read_image(synth_set / "masks" / "wide" / name)[..., 0] > 0.5
        assert got.pixels.shape == src.pixels.shape and got.dpi == src.dpi and got.bit_depth == src.bit_depth
        assert np.array_equal(got.pixels[~mask], src.pixels[~mask])
        assert not np.array_equal(got.pixels[mask], src.pixels[mask])
    capsys.readouterr()
    assert main(["eval", str(out), "--truth", str(synth_set / "page"), "--masks", str(synth_set / "masks" / "wide")]) == 0
    table = capsys.readouterr().out
    assert "| **mean** |" in table and "0.0000" in table  # max_abs_out: nothing changed outside the masks


def test_one_page_to_a_file_and_errors(tmp_path, lama_file, synth_set, capsys):
    page = synth_set / "page" / "page_00003.png"
    mask = synth_set / "masks" / "box" / "page_00003.png"
    target = tmp_path / "filled.png"
    assert main(["lama-fill", str(page), "--masks", str(mask), "--model", str(lama_file), "-o", str(target),
                 "--max-side", "64", "-q"]) == 0  # fmt: skip
    assert target.is_file()
    empty = tmp_path / "no_masks"
    empty.mkdir()
    assert main(["lama-fill", str(synth_set / "page"), "--masks", str(empty), "--model", str(lama_file), "-o",
                 str(tmp_path / "x"), "-q"]) == 1  # fmt: skip
    assert "no mask" in capsys.readouterr().err
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"nope")
    assert main(["lama-fill", str(page), "--masks", str(mask), "--model", str(bad), "-o", str(tmp_path / "y"), "-q"]) == 2
    assert "bad.safetensors" in capsys.readouterr().err
