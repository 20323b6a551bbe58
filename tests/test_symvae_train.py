"""Symmetric VAE training: crops, loss, a short run that learns, exact resume, the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import build_autoencoder_kl

from mdim_core.__main__ import main
from mdim_core.restore.levels import prepare_ground_truth
from mdim_core.symvae import SymmetricVAE, load_adapters
from mdim_core.symvae.train import CropSampler, TrainConfig, restoration_loss, train


def _pages(n=2, h=96, w=80):
    pages = []
    for s in range(n):
        rng = np.random.default_rng(s)
        yy, xx = np.mgrid[0:h, 0:w]
        dots = (np.sin(xx * 1.2 + s) * np.sin(yy * 1.2) > 0.1).astype(np.float32)
        page = np.ones((h, w), np.float32)
        page[: h // 2] = 1.0 - 0.8 * dots[: h // 2]
        page[h // 2 :, : w // 3] = 0.0
        page += rng.normal(0, 0.01, page.shape).astype(np.float32)
        pages.append(np.clip(page, 0, 1))
    return pages


def test_crop_sampler_is_deterministic_and_uses_thesis_targets():
    cfg = TrainConfig(crop=32, clean_fraction=0.0, mask_fraction=1.0)
    pages = _pages()
    s = CropSampler(pages, cfg)
    a = s.sample(np.random.default_rng(1), 3)
    b = s.sample(np.random.default_rng(1), 3)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    inp, tgt, hole = a
    assert inp.shape == (3, 32, 32, 3) and tgt.shape == (3, 32, 32) and hole.shape == (3, 32, 32)
    assert hole.sum(dim=(1, 2)).min() > 0
    prepared = prepare_ground_truth(pages[0])
    flat = [prepared[y : y + 32, x : x + 32] for y in range(0, 65) for x in range(0, 49)]
    assert any(np.array_equal(tgt[0].numpy(), f) for f in flat) or any(
        np.array_equal(tgt[0].numpy(), prepare_ground_truth(pages[1])[y : y + 32, x : x + 32])
        for y in range(0, 65)
        for x in range(0, 49)
    )
    # aged inputs are not the target (yellowed: blue channel below red on paper)
    assert float((inp[..., 0] - inp[..., 2]).mean()) > 0.01
    clean = CropSampler(pages, TrainConfig(crop=32, clean_fraction=1.0, mask_fraction=0.0))
    inp, tgt, hole = clean.sample(np.random.default_rng(2), 2)
    assert torch.equal(inp[..., 0], tgt) and hole.sum() == 0
    # pages smaller than the crop are padded with paper
    small = CropSampler([np.zeros((20, 20), np.float32)], TrainConfig(crop=32, clean_fraction=1.0, mask_fraction=0))
    inp, _, _ = small.sample(np.random.default_rng(0), 1)
    assert inp.shape == (1, 32, 32, 3) and float(inp.max()) == 1.0


def test_loss_zero_on_target_and_rewards_sharp_dots():
    g = torch.Generator().manual_seed(0)
    tgt = (torch.rand(1, 32, 32, generator=g) > 0.5).float()
    out = (tgt * 2 - 1)[:, None].expand(-1, 3, -1, -1)
    total, parts = restoration_loss(out, tgt, 0.5, 0.05)
    assert float(total) < 1e-6
    blurred = torch.nn.functional.avg_pool2d(tgt[:, None], 3, 1, 1)[:, 0]
    flat = torch.full_like(tgt, float(tgt.mean()))
    _, pb = restoration_loss((blurred * 2 - 1)[:, None].expand(-1, 3, -1, -1), tgt, 0.5, 0.05)
    _, pf = restoration_loss((flat * 2 - 1)[:, None].expand(-1, 3, -1, -1), tgt, 0.5, 0.05)
    assert pf["edge"] > pb["edge"] > 0 and pf["freq"] > pb["freq"] > 0


@pytest.mark.slow
def test_short_run_learns_and_resumes_exactly(tmp_path):
    vae = build_autoencoder_kl(seed=0)
    cfg = TrainConfig(steps=6, batch=2, crop=32, lr=3e-3, save_every=3, seed=4)
    a = SymmetricVAE(vae)
    summary = train(a, _pages(), cfg, tmp_path / "a.safetensors", progress=False)
    assert summary["steps"] == 6 and summary["final_loss"] > 0
    assert any(float(p.conv_out.weight.detach().abs().sum()) > 0 for p in a.adapters)  # adapters moved off zero
    # the same run in two halves gives the same weights
    b = SymmetricVAE(vae)
    train(b, _pages(), TrainConfig(**{**cfg.__dict__, "steps": 3}), tmp_path / "b.safetensors", progress=False)
    b2 = SymmetricVAE(vae)
    s2 = train(b2, _pages(), cfg, tmp_path / "b.safetensors", progress=False)
    assert s2["resumed_at"] == 3
    for (k, va), (_, vb) in zip(a.state_dict().items(), b2.state_dict().items()):
        assert torch.allclose(va, vb, atol=1e-6), k
    fresh = SymmetricVAE(vae)
    load_adapters(fresh, tmp_path / "a.safetensors")
    assert all(torch.equal(x, y) for x, y in zip(fresh.state_dict().values(), a.state_dict().values()))


@pytest.mark.slow
def test_training_lowers_the_loss(tmp_path):
    vae = build_autoencoder_kl(seed=0)
    sym = SymmetricVAE(vae)
    cfg = TrainConfig(steps=40, batch=2, crop=32, lr=3e-3, clean_fraction=1.0, mask_fraction=0.0, seed=1)
    from mdim_core.symvae.train import train_step

    sampler = CropSampler(_pages(), cfg)
    fixed = sampler.sample(np.random.default_rng(99), 4)
    with torch.no_grad():
        before = float(train_step(sym, fixed, cfg, "cpu")[0])
    train(sym, _pages(), cfg, tmp_path / "s.safetensors", progress=False)
    with torch.no_grad():
        after = float(train_step(sym, fixed, cfg, "cpu")[0])
    assert after < 0.9 * before


@pytest.mark.slow
def test_cli_train_and_restore(tmp_path, capsys):
    from PIL import Image

    from mdim_core.symvae.restore import restore_page

    data = tmp_path / "pages"
    data.mkdir()
    for i, p in enumerate(_pages(2)):
        Image.fromarray((p * 255).astype(np.uint8)).save(data / f"p{i}.png")
    vae_dir = tmp_path / "vae"
    build_autoencoder_kl(seed=0).save_pretrained(vae_dir)
    out = tmp_path / "adapters.safetensors"
    rc = main(["train-symvae", "--data", str(data), "--out", str(out), "--vae", str(vae_dir), "--steps", "2",
               "--batch", "1", "--crop", "32", "--device", "cpu", "-q"])
    assert rc == 0 and out.is_file()
    # the restore command with --no-cleanup gives the Symmetric VAE restore of the scan as it is
    rc = main(["restore", str(data / "p0.png"), "-o", str(tmp_path / "clean"), "--vae", str(vae_dir),
               "--adapters", str(out), "--device", "cpu", "--tile", "0", "--no-cleanup", "-q"])
    assert rc == 0
    restored = np.asarray(Image.open(tmp_path / "clean" / "p0.png"), dtype=np.float32) / 255
    sym = SymmetricVAE(build_autoencoder_kl(seed=0))
    load_adapters(sym, out)
    expect = restore_page(sym.eval(), np.asarray(Image.open(data / "p0.png")), tile=0)
    assert restored.shape == (96, 80) and np.abs(restored - expect).max() <= 0.5 / 255 + 1e-5
    capsys.readouterr()
    # errors go to stderr with exit status 2
    assert main(["train-symvae", "--data", str(tmp_path / "none"), "--out", str(out), "--vae", str(vae_dir)]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["train-symvae", "--data", str(data), "--out", str(out), "--vae", str(vae_dir), "--device", "tpu9"]) == 2
    assert "device: 'tpu9'" in capsys.readouterr().err
    assert main(["restore", str(data), "-o", str(tmp_path / "x"), "--no-cleanup"]) == 2
    assert "needs the Symmetric VAE restore" in capsys.readouterr().err


def test_crop_sampler_with_pre_aged_pages_crops_them_in_place():
    pages = _pages(1)
    aged = [[np.stack([pages[0] * 0.5, pages[0] * 0.6, pages[0] * 0.7], axis=-1).astype(np.float32)]]
    keep = [list(a) for a in aged]
    cfg = TrainConfig(crop=32, clean_fraction=0.0, mask_fraction=0.0)
    inp, tgt, _ = CropSampler(pages, cfg, aged).sample(np.random.default_rng(3), 4)
    prepared = prepare_ground_truth(pages[0])
    for i in range(4):
        # the aged crop's red channel is half the clean page at the same place; the target is prepared
        hits = [
            (y, x)
            for y in range(0, 65)
            for x in range(0, 49)
            if np.array_equal(aged[0][0][y : y + 32, x : x + 32], inp[i].numpy())
        ]
        assert hits
        y, x = hits[0]
        assert np.array_equal(tgt[i].numpy(), prepared[y : y + 32, x : x + 32])
    assert all(a is b for a, b in zip(aged[0], keep[0]))  # the caller's list is not edited
    with pytest.raises(ValueError, match="aged"):
        CropSampler(pages, cfg, [[]])


@pytest.mark.slow
def test_train_decoder_tunes_a_copy_and_leaves_the_base_alone(tmp_path):
    vae = build_autoencoder_kl(seed=0)
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    sym = SymmetricVAE(vae)
    cfg = TrainConfig(steps=3, batch=1, crop=32, lr=1e-2, save_every=10, train_decoder=True)
    train(sym, _pages(1), cfg, tmp_path / "d.safetensors", progress=False)
    assert sym.tuned is not None
    moved = [
        float((t.detach() - o).abs().max())
        for t, o in zip(sym.tuned["conv_out"].parameters(), vae.decoder.conv_out.parameters())
    ]
    assert max(moved) > 0  # the copy learned
    assert all(torch.equal(v, vae.state_dict()[k]) for k, v in before.items())  # the base did not
    fresh = SymmetricVAE(vae)
    load_adapters(fresh, tmp_path / "d.safetensors")
    assert fresh.tuned is not None
    # resuming with the same settings continues from the checkpoint
    again = SymmetricVAE(vae)
    s = train(again, _pages(1), TrainConfig(**{**cfg.__dict__, "steps": 4}), tmp_path / "d.safetensors",
              progress=False)
    assert s["resumed_at"] == 3
