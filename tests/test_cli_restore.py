"""``python -m mdim_core restore``: a page or a folder, names and DPI kept, resumable, bad pages
skipped, atomic outputs, a non-writable folder and a full disk handled."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mdim_core.__main__ import main
from mdim_core.cli import batch
from mdim_core.imaging import imageio
from mdim_core.restore import cleanup
from mdim_core.synth import aging, generate_page

REPO = Path(__file__).resolve().parents[1]


def _aged(seed: int, size=(320, 240)) -> np.ndarray:
    page = generate_page(seed, size=size, dpi=150, masks=False).page
    return aging.age_page(page, seed=seed, dpi=150, as_uint8=True)


@pytest.fixture()
def volume(tmp_path):
    """A small volume: PNG, JPEG, 16-bit TIFF, RGBA WebP pages, one broken file, one non-page file."""
    src = tmp_path / "scans"
    src.mkdir()
    Image.fromarray(_aged(1)).save(src / "p001.png", dpi=(300, 300))
    Image.fromarray(_aged(2)).save(src / "p002.jpg", quality=90, dpi=(400, 400))
    g16 = (_aged(3).mean(axis=-1) * 257).astype(np.uint16)
    Image.fromarray(g16).save(src / "p003.tif", dpi=(600, 600))
    rgba = np.concatenate([_aged(4), np.full((320, 240, 1), 255, np.uint8)], axis=-1)
    Image.fromarray(rgba, "RGBA").save(src / "p004.webp", lossless=True)
    good = (src / "p001.png").read_bytes()
    (src / "p005.png").write_bytes(good[: len(good) // 3])  # truncated
    (src / "notes.txt").write_text("not a page")
    return src


def test_folder_restored_names_dpi_depth_kept(volume, tmp_path):
    out = tmp_path / "out"
    report = batch.run_batch(volume, out, progress=False)
    assert sorted(report.done) == ["p001.png", "p002.jpg", "p003.tif", "p004.webp"]
    assert [name for name, _ in report.failed] == ["p005.png"]
    assert "truncated" in report.failed[0][1]
    assert report.exit_code == 1
    assert sorted(p.name for p in out.iterdir()) == [".mdim_restore.json", "p001.png", "p002.jpg", "p003.tif", "p004.webp"]
    assert imageio.read_page(out / "p001.png").dpi == (300, 300)
    assert imageio.read_page(out / "p002.jpg").dpi == (400, 400)
    p3 = imageio.read_page(out / "p003.tif")
    assert p3.dpi == (600, 600) and p3.bit_depth == 16
    # each output is exactly the cleanup of its page (with the page's dpi)
    src = imageio.read_page(volume / "p001.png")
    expect = cleanup.clean_page(src.pixels, dpi=300)
    got = imageio.read_page(out / "p001.png").pixels[..., 0]
    assert np.abs(got - expect).max() <= 0.5 / 255 + 1e-6


def test_rerun_skips_finished_pages_and_redoes_changed_ones(volume, tmp_path):
    out = tmp_path / "out"
    batch.run_batch(volume, out, progress=False)
    stamp = (out / "p001.png").stat().st_mtime_ns
    again = batch.run_batch(volume, out, progress=False)
    assert again.done == [] and len(again.skipped) == 4
    assert [n for n, _ in again.failed] == ["p005.png"]  # the broken page is retried, still broken
    assert (out / "p001.png").stat().st_mtime_ns == stamp  # untouched
    # a changed source page is redone; so is every page when the settings change
    Image.fromarray(_aged(9)).save(volume / "p001.png", dpi=(300, 300))
    third = batch.run_batch(volume, out, progress=False)
    assert third.done == ["p001.png"]
    fourth = batch.run_batch(volume, out, cleanup.CleanupSettings(sharpen=0), progress=False)
    assert len(fourth.done) == 4
    # a page whose output went missing is redone
    (out / "p002.jpg").unlink()
    fifth = batch.run_batch(volume, out, cleanup.CleanupSettings(sharpen=0), progress=False)
    assert fifth.done == ["p002.jpg"]
    manifest = json.loads((out / batch.MANIFEST).read_text())
    assert set(manifest["pages"]) == {"p001.png", "p002.jpg", "p003.tif", "p004.webp"}


def test_workers_give_the_same_pages(volume, tmp_path):
    one = tmp_path / "one"
    two = tmp_path / "two"
    batch.run_batch(volume, one, progress=False)
    report = batch.run_batch(volume, two, workers=2, progress=False)
    assert sorted(report.done) == ["p001.png", "p002.jpg", "p003.tif", "p004.webp"]
    for name in report.done:
        assert (one / name).read_bytes() == (two / name).read_bytes()


def test_full_disk_mid_run_keeps_written_pages_and_leaves_no_partial_file(volume, tmp_path, monkeypatch):
    out = tmp_path / "out"
    real_save = Image.Image.save
    calls = {"n": 0}

    def save(self, fp, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # the third page: the disk fills up while it is written
            fp.write(b"\x89PNG partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)
    report = batch.run_batch(volume, out, progress=False)
    assert report.aborted and "free some space" in report.aborted
    assert report.exit_code == 3
    written = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert written == report.done and len(written) == 2
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]  # no half-written file
    for name in written:  # complete, readable pages
        assert imageio.read_page(out / name).pixels.size > 0
    monkeypatch.setattr(Image.Image, "save", real_save)
    resumed = batch.run_batch(volume, out, progress=False)
    assert sorted(resumed.skipped) == written  # nothing already written is redone or lost
    assert len(resumed.done) == 2


def test_not_writable_output_folder(volume, tmp_path):
    if os.geteuid() == 0:  # root writes anywhere: use a path under a file instead
        blocker = tmp_path / "file"
        blocker.write_text("x")
        target = blocker / "out"
    else:
        target = tmp_path / "ro"
        target.mkdir()
        target.chmod(0o500)
    with pytest.raises(ValueError, match="output folder"):
        batch.run_batch(volume, target, progress=False)


def test_refuses_to_overwrite_inputs_and_name_clashes(volume, tmp_path):
    with pytest.raises(ValueError, match="overwrite an input"):
        batch.run_batch(volume, volume, progress=False)
    Image.fromarray(_aged(5)).save(volume / "p002.png")
    with pytest.raises(ValueError, match="both be written"):
        batch.run_batch(volume, tmp_path / "o", fmt="png", progress=False)
    with pytest.raises(ValueError, match="does not exist"):
        batch.run_batch(tmp_path / "missing", tmp_path / "o", progress=False)


def test_cli_single_page_and_format(volume, tmp_path, capsys):
    out = tmp_path / "o"
    code = main(["restore", str(volume / "p002.jpg"), "-o", str(out), "--format", "png", "-q", "--deskew",
                 "--despeckle", "8", "--bleed-through", "0.3"])
    assert code == 0
    assert (out / "p002.png").is_file() and imageio.read_page(out / "p002.png").dpi == (400, 400)
    assert "1 page(s) restored" in capsys.readouterr().out
    code = main(["restore", str(volume), "-o", str(tmp_path / "o2"), "-q"])
    err = capsys.readouterr().err
    assert code == 1 and "p005.png" in err
    code = main(["restore", str(volume), "-o", str(tmp_path / "o3"), "--black-point", "200", "--white-point", "100"])
    assert code == 2 and "black_point" in capsys.readouterr().err


def test_readme_main_job_from_a_fresh_checkout(tmp_path):
    """The README's first command, as a user runs it: bundled example, no weights."""
    example = REPO / "samples" / "old_scan.png"
    assert example.is_file() and example.stat().st_size < 1_100_000
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-m", "mdim_core", "restore", "samples/old_scan.png", "-o", str(tmp_path / "out")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    page = imageio.read_page(tmp_path / "out" / "old_scan.png")
    src = imageio.read_page(example)
    assert page.pixels.shape[:2] == src.pixels.shape[:2] and page.dpi == src.dpi
    assert (page.pixels > 0.98).mean() > 0.5  # the yellowed paper is white now


def test_symmetric_vae_step_chains_after_cleanup(tmp_path):
    torch = pytest.importorskip("torch")
    from tiny_models import build_autoencoder_kl

    from mdim_core.symvae.model import SymmetricVAE
    from mdim_core.symvae.restore import restore_page
    from mdim_core.symvae.weights import load_adapters, save_adapters

    vae_dir = tmp_path / "vae"
    build_autoencoder_kl(seed=0).save_pretrained(vae_dir)
    sym = SymmetricVAE(build_autoencoder_kl(seed=0))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in sym.adapters.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    adapters = tmp_path / "adapters.safetensors"
    save_adapters(sym, adapters)
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(_aged(6, size=(96, 80))).save(src / "page.png", dpi=(300, 300))
    steps = batch.ModelSteps(vae=str(vae_dir), adapters=str(adapters), device="cpu", tile=0)
    report = batch.run_batch(src, tmp_path / "out", steps=steps, progress=False)
    assert report.done == ["page.png"], report.failed
    got = imageio.read_page(tmp_path / "out" / "page.png").pixels[..., 0]
    # the same chain by hand: cleanup, then the Symmetric VAE restore with the loaded adapters
    loaded = SymmetricVAE(build_autoencoder_kl(seed=0))
    load_adapters(loaded, adapters)
    page = imageio.read_page(src / "page.png")
    expect = restore_page(loaded.eval(), cleanup.clean_page(page.pixels, dpi=300), tile=0)
    assert np.abs(got - np.clip(expect, 0, 1)).max() <= 0.5 / 255 + 1e-5
    only_cleanup = cleanup.clean_page(page.pixels, dpi=300)
    assert np.abs(got - only_cleanup).mean() > 0.01  # the model step did run
    with pytest.raises(ValueError, match="adapters"):
        batch.ModelSteps(vae=str(vae_dir))
    with pytest.raises(ValueError, match="masks"):
        batch.ModelSteps(model=str(vae_dir))


def test_sgim_text_removal_step_chains_after_cleanup(tmp_path):
    pytest.importorskip("torch")
    from tiny_diffusers import build_model_dir

    model = build_model_dir(tmp_path / "tiny", in_channels=9)
    src, masks = tmp_path / "in", tmp_path / "masks"
    src.mkdir()
    masks.mkdir()
    Image.fromarray(_aged(7, size=(96, 80))).save(src / "a.png")
    Image.fromarray(_aged(8, size=(96, 80))).save(src / "b.png")  # no mask: text removal skipped
    hole = np.zeros((96, 80), bool)
    hole[30:60, 20:50] = True
    Image.fromarray((hole * 255).astype(np.uint8)).save(masks / "a.png")
    steps = batch.ModelSteps(model=str(model), masks=str(masks), device="cpu", steps=3, seed=1,
                             sgim_options=(("fri_steps", 2), ("sgi_max_side", 32), ("min_crop_side", 0),
                                           ("context_margin", 8)))
    report = batch.run_batch(src, tmp_path / "out", steps=steps, progress=False)
    assert sorted(report.done) == ["a.png", "b.png"], report.failed
    plain = tmp_path / "plain"
    batch.run_batch(src, plain, progress=False)
    a = np.asarray(Image.open(tmp_path / "out" / "a.png"))
    a0 = np.asarray(Image.open(plain / "a.png"))
    assert np.array_equal(a[~hole], a0[~hole])  # outside the mask: the cleaned page, bit for bit
    assert np.abs(a[hole].astype(int) - a0[hole]).mean() > 2  # inside: redrawn
    assert (tmp_path / "out" / "b.png").read_bytes() == (plain / "b.png").read_bytes()


def test_sgim_step_refines_over_the_second_half_of_its_schedule(tmp_path):
    def config(**kw):
        return batch._sgim_config(batch.ModelSteps(model=str(tmp_path), masks=str(tmp_path), steps=30, **kw))

    assert (config().steps, config().fri_steps, config().fri_strength) == (30, 15, 0.5)  # thesis: 50 + 25
    assert config(sgim_options=(("fri_strength", 0.3),)).fri_steps == 9
    assert config(sgim_options=(("fri_steps", 4),)).fri_steps == 4  # an explicit setting wins
