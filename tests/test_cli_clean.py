"""``python -m mdim_core clean`` and ``mask``: folders and CBZ archives, flat fill equal to the truth,
resume, bad pages, full disk, PSD layers read back, SGIM on what flat fill leaves (tiny model)."""

from __future__ import annotations

import errno
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from mdim_core.__main__ import main
from mdim_core.cli import clean
from mdim_core.imaging import imageio
from mdim_core.synth import generate_page
from mdim_core.textmask import detect_text


@pytest.fixture(scope="module")
def synth():
    return {s: generate_page(s, size=(1240, 874), dpi=300, truth=True) for s in (0, 3)}


@pytest.fixture()
def volume_dir(tmp_path, synth):
    src = tmp_path / "raw"
    src.mkdir()
    for s, sp in synth.items():
        Image.fromarray((sp.page * 255 + 0.5).astype(np.uint8)).save(src / f"p{s}.png", dpi=(300, 300))
    with zipfile.ZipFile(src / "vol2.cbz", "w") as z:
        z.write(src / "p0.png", "ch1/001.png")
        z.writestr("ch1/notes.txt", "not a page")
    (src / "broken.png").write_bytes((src / "p0.png").read_bytes()[:500])
    return src


def test_clean_folder_and_cbz_flat_fill_equals_truth(volume_dir, tmp_path, synth, capsys):
    out = tmp_path / "out"
    code = main(["clean", str(volume_dir), "-o", str(out), "--save-masks", "-q"])
    assert code == 1  # one broken page
    text = capsys.readouterr()
    assert "broken.png" in text.err and "stay as they are (no --model given)" in text.out
    assert (out / "p0.png").is_file() and (out / "vol2" / "ch1" / "001.png").is_file()
    assert imageio.read_page(out / "p0.png").dpi == (300, 300)
    sp = synth[0]
    page = imageio.read_image(out / "p0.png")[..., 0]
    mask = imageio.read_image(out / "masks" / "p0.png")[..., 0] > 0.5
    assert np.array_equal(mask, detect_text(imageio.read_page(volume_dir / "p0.png", keep_uint8=True).pixels).mask)
    src = imageio.read_image(volume_dir / "p0.png")[..., 0]
    assert np.array_equal(page[~mask], src[~mask])  # outside the mask: the page itself
    report = json.loads((out / clean.REPORT).read_text())
    left = np.zeros_like(mask)
    for y0, x0, y1, x1 in report["pages"]["p0.png"].get("regions_left", []):
        left[y0:y1, x0:x1] = True
    filled = mask & ~left
    assert filled.sum() > 0.8 * mask.sum()
    bubbles = filled & sp.truth["bubble"]
    assert np.abs(page - sp.clean)[bubbles].max() <= 0.5 / 255  # flat-filled bubbles equal the text-free truth
    assert np.array_equal(imageio.read_image(out / "vol2" / "ch1" / "001.png"), imageio.read_image(out / "p0.png"))
    assert report["failed"] == {"broken.png": report["failed"]["broken.png"]}


def test_clean_resumes_and_redoes_changed_pages(volume_dir, tmp_path):
    out = tmp_path / "out"
    main(["clean", str(volume_dir), "-o", str(out), "-q"])
    stamp = (out / "p3.png").stat().st_mtime_ns
    jobs = clean.jobs_for([str(volume_dir)], out, False)
    assert [j.rel for j in jobs] == ["broken.png", "p0.png", "p3.png", "vol2/ch1/001.png"]
    assert jobs[3].member == "ch1/001.png" and jobs[3].target == out / "vol2" / "ch1" / "001.png"
    assert main(["clean", str(volume_dir), "-o", str(out), "-q"]) == 1
    assert (out / "p3.png").stat().st_mtime_ns == stamp  # untouched on the re-run
    manifest = json.loads((out / clean.MANIFEST).read_text())
    assert set(manifest["pages"]) == {"p0.png", "p3.png", "vol2/ch1/001.png"}
    assert main(["clean", str(volume_dir), "-o", str(out), "-q", "--grow", "5"]) == 1  # new settings: all redone
    assert (out / "p3.png").stat().st_mtime_ns != stamp


def test_clean_full_disk_stops_with_exit_3_and_keeps_pages(volume_dir, tmp_path, monkeypatch):
    out = tmp_path / "out"
    real_save = Image.Image.save
    calls = {"n": 0}

    def save(self, fp, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)
    assert main(["clean", str(volume_dir), "-o", str(out), "-q"]) == 3
    monkeypatch.setattr(Image.Image, "save", real_save)
    assert not [p for p in out.rglob("*.part")]
    assert main(["clean", str(volume_dir), "-o", str(out), "-q"]) == 1  # resumed: only the broken page fails


def test_psd_layers_read_back(volume_dir, tmp_path):
    psd_tools = pytest.importorskip("psd_tools")
    out = tmp_path / "out"
    main(["clean", str(volume_dir / "p3.png"), "-o", str(out), "--psd", "--save-masks", "-q"])
    psd = psd_tools.PSDImage.open(out / "psd" / "p3.psd")
    layers = {layer.name: layer for layer in psd}
    assert list(layers) == ["original", "cleaned", "mask"]
    assert not layers["mask"].visible and layers["cleaned"].visible
    original = np.asarray(layers["original"].topil().convert("L"))
    cleaned = np.asarray(layers["cleaned"].topil().convert("L"))
    mask = np.asarray(layers["mask"].topil().convert("L")) > 127
    assert np.array_equal(original, np.asarray(Image.open(volume_dir / "p3.png").convert("L")))
    assert np.array_equal(cleaned, np.asarray(Image.open(out / "p3.png").convert("L")))
    assert np.array_equal(mask, imageio.read_image(out / "masks" / "p3.png")[..., 0] > 0.5)


def test_psd_without_psd_tools_fails_clearly(volume_dir, tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "psd_tools", None)
    assert main(["clean", str(volume_dir / "p3.png"), "-o", str(tmp_path / "o"), "--psd", "-q"]) == 2
    assert "--psd needs psd-tools" in capsys.readouterr().err


def test_mask_command_writes_white_text_at_page_size(volume_dir, tmp_path, synth):
    out = tmp_path / "masks"
    assert main(["mask", str(volume_dir / "p0.png"), str(volume_dir / "vol2.cbz"), "-o", str(out), "-q"]) == 0
    m = imageio.read_page(out / "p0.png")
    assert m.pixels.shape[:2] == (1240, 874)
    white = m.pixels[..., 0] > 0.5
    assert set(np.unique(m.pixels)) <= {0.0, 1.0}
    t = synth[0].truth["bubble_text"] & ~synth[0].truth["sfx"]
    assert (white & t).sum() >= 0.95 * t.sum()
    assert (out / "vol2" / "ch1" / "001.png").is_file()
    sfx = tmp_path / "sfx"
    assert main(["mask", str(volume_dir / "p0.png"), "-o", str(sfx), "--kinds", "text,sfx", "-q"]) == 0
    assert (imageio.read_image(sfx / "p0.png")[..., 0] > 0.5).sum() > white.sum()


def test_bad_arguments_exit_2(volume_dir, tmp_path, capsys):
    assert main(["mask", str(tmp_path / "none"), "-o", str(tmp_path / "o")]) == 2
    assert main(["mask", str(volume_dir), "-o", str(tmp_path / "o"), "--kinds", "words"]) == 2
    assert main(["clean", str(volume_dir), "-o", str(tmp_path / "o"), "--model", str(tmp_path / "nomodel")]) == 2
    assert main(["clean", str(volume_dir), "-o", str(volume_dir)]) == 2  # would overwrite inputs
    err = capsys.readouterr().err
    assert "--kinds" in err and "--model" in err and "overwrite an input" in err
    bad = tmp_path / "bad.cbz"
    bad.write_bytes(b"not a zip")
    assert main(["mask", str(bad), "-o", str(tmp_path / "o2")]) == 2


@pytest.mark.slow
def test_clean_with_a_tiny_model_repaints_what_flat_fill_leaves(tmp_path, synth):
    from tiny_diffusers import build_model_dir

    model = build_model_dir(tmp_path / "model")
    sp = synth[3]
    src = tmp_path / "in"
    src.mkdir()
    crop = sp.page[:256, :256]
    Image.fromarray((crop * 255 + 0.5).astype(np.uint8)).save(src / "c.png")
    out = tmp_path / "out"
    assert main(["clean", str(src), "-o", str(out), "--model", str(model), "--steps", "2", "--save-masks", "-q",
                 "--grow", "2"]) == 0
    report = json.loads((out / clean.REPORT).read_text())["pages"]["c.png"]
    assert report["left"] == 0
    page = imageio.read_image(out / "c.png")[..., 0]
    mask = imageio.read_image(out / "masks" / "c.png")[..., 0] > 0.5
    src_px = imageio.read_image(src / "c.png")[..., 0]
    assert np.array_equal(page[~mask], src_px[~mask])


def test_the_bundled_raw_page_of_the_demo(tmp_path):
    """`python3 dev.py demo`'s main job: the bundled page's text is found and the bubbles come out pure paper,
    every pixel outside the mask untouched, and what flat fill cannot do is reported for a model."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    raw = repo / "samples" / "raw_page.png"
    assert main(["clean", str(raw), "-o", str(tmp_path), "--save-masks", "-q"]) == 0
    before = np.asarray(Image.open(raw).convert("L"))
    after = np.asarray(Image.open(tmp_path / "raw_page.png").convert("L"))
    mask = np.asarray(Image.open(tmp_path / "masks" / "raw_page.png").convert("L")) > 127
    assert after.shape == before.shape and mask.shape == before.shape
    assert np.array_equal(after[~mask], before[~mask])  # outside the mask: bit for bit
    report = json.loads((tmp_path / "clean_report.json").read_text())["pages"]["raw_page.png"]
    assert report["flat"] >= 2 and report["left"] == len(report["regions_left"])
    changed = (after != before) & mask
    assert changed.sum() > 2000 and (after[changed] == 255).mean() > 0.99  # the lettering became paper
