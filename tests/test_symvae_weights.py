"""Adapter files: round trip, metadata, and clear errors for files that do not fit."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tiny_models import build_autoencoder_kl

from mdim_core.symvae import SymmetricVAE, load_adapters, save_adapters
from mdim_core.symvae.weights import FORMAT_VERSION, metadata_for


@pytest.fixture(scope="module")
def vae():
    return build_autoencoder_kl(seed=0)


def _trained(vae, seed=1) -> SymmetricVAE:
    sym = SymmetricVAE(vae)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in sym.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return sym


def _img():
    g = torch.Generator().manual_seed(0)
    return torch.rand(1, 32, 32, 3, generator=g)


def test_round_trip_and_metadata(vae, tmp_path):
    sym = _trained(vae)
    path = save_adapters(sym, tmp_path / "a.safetensors", train={"steps": 3})
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        keys = set(f.keys())
    assert keys == set(sym.state_dict())
    assert meta["mdim.kind"] == "symvae-adapters"
    assert meta["mdim.format_version"] == str(FORMAT_VERSION)
    assert meta["mdim.base_family"] == "kl-f8-z4"
    levels = json.loads(meta["mdim.tap_layout"])
    assert [lv["tap_channels"] for lv in levels] == [32, 32, 64, 64]
    assert json.loads(meta["mdim.train"]) == {"steps": 3}
    fresh = SymmetricVAE(vae)
    load_adapters(fresh, path)
    img = _img()
    z = sym.encode(img)
    assert torch.equal(fresh.decode(z, source=img), sym.decode(z, source=img))
    # only adapters are stored: the file is small next to the VAE
    assert path.stat().st_size < sum(p.numel() for p in vae.parameters()) * 4


def test_other_hidden_width_is_rebuilt_from_metadata(vae, tmp_path):
    sym = SymmetricVAE(vae, hidden=[8, 8, 16, 16])
    path = save_adapters(sym, tmp_path / "h.safetensors")
    other = SymmetricVAE(vae)
    load_adapters(other, path)
    assert other.hidden == [8, 8, 16, 16]


def test_wrong_vae_family_is_explained(vae, tmp_path):
    path = save_adapters(_trained(vae), tmp_path / "a.safetensors")
    wider = SymmetricVAE(build_autoencoder_kl((32, 64, 64, 64), seed=0))
    with pytest.raises(ValueError, match=r"level 1: tap_channels 32 in the file, 64 in the loaded VAE"):
        load_adapters(wider, path)
    three = SymmetricVAE(build_autoencoder_kl((32, 32, 64), seed=0))
    with pytest.raises(ValueError, match=r"made for a kl-f8-z4 VAE, the loaded VAE is kl-f4-z4"):
        load_adapters(three, path)


def test_same_shapes_other_weights_refused_unless_allowed(vae, tmp_path):
    path = save_adapters(_trained(vae), tmp_path / "a.safetensors")
    other = SymmetricVAE(build_autoencoder_kl(seed=7))
    with pytest.raises(ValueError, match="trained on other VAE weights"):
        load_adapters(other, path)
    load_adapters(other, path, check_weights=False)
    # an fp16 copy of the same VAE still fits
    half = build_autoencoder_kl(seed=0).half().float()
    load_adapters(SymmetricVAE(half), path)


def test_truncated_and_foreign_files(vae, tmp_path):
    path = save_adapters(_trained(vae), tmp_path / "a.safetensors")
    data = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupted"):
        load_adapters(SymmetricVAE(vae), cut)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="truncated or corrupted"):
        load_adapters(SymmetricVAE(vae), junk)
    foreign = tmp_path / "lora.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(ValueError, match="not a Symmetric VAE adapter file"):
        load_adapters(SymmetricVAE(vae), foreign)
    with pytest.raises(ValueError, match="does not exist"):
        load_adapters(SymmetricVAE(vae), tmp_path / "missing.safetensors")


def test_future_version_missing_tensor_and_nan(vae, tmp_path):
    sym = _trained(vae)
    tensors = {k: v.contiguous() for k, v in sym.state_dict().items()}
    meta = metadata_for(sym)
    future = tmp_path / "future.safetensors"
    save_file(tensors, str(future), metadata={**meta, "mdim.format_version": str(FORMAT_VERSION + 1)})
    with pytest.raises(ValueError, match="format version"):
        load_adapters(SymmetricVAE(vae), future)
    part = dict(tensors)
    part.pop("adapters.0.conv_out.weight")
    missing = tmp_path / "missing.safetensors"
    save_file(part, str(missing), metadata=meta)
    with pytest.raises(ValueError, match="missing tensors"):
        load_adapters(SymmetricVAE(vae), missing)
    bad = dict(tensors)
    bad["adapters.0.conv_out.bias"] = torch.full_like(bad["adapters.0.conv_out.bias"], float("nan"))
    nan = tmp_path / "nan.safetensors"
    save_file(bad, str(nan), metadata=meta)
    with pytest.raises(ValueError, match="NaN"):
        load_adapters(SymmetricVAE(vae), nan)
    # a failed load leaves the model untouched (still decodes like the base)
    fresh = SymmetricVAE(vae)
    with pytest.raises(ValueError):
        load_adapters(fresh, nan)
    assert all(a.conv_out.weight.abs().sum() == 0 for a in fresh.adapters)


def test_tuned_decoder_part_starts_as_base_and_crosses_layouts(tmp_path):
    from test_symvae import LDMView

    vae = build_autoencoder_kl((16, 32, 64, 64), seed=0)  # level 0 narrows 32 -> 16: has a shortcut conv

    img = _img()
    sym = SymmetricVAE(vae)
    sym.enable_decoder_tuning()
    z = sym.encode(img)
    base = SymmetricVAE(vae).decode(z, source=img)
    assert (sym.decode(z, source=img) - base).abs().max().item() <= 1e-6  # an untouched copy decodes the same
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in sym.tuned.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    tuned = sym.decode(z, source=img)
    assert (tuned - base).abs().max().item() > 1e-3
    assert all(torch.equal(v, vae.state_dict()[k]) for k, v in before.items())  # base VAE untouched
    assert torch.equal(sym.decode(z), SymmetricVAE(vae).decode(z))  # plain decodes still use the base
    path = save_adapters(sym, tmp_path / "tuned.safetensors")
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata()["mdim.decoder"] == "level0"
        assert "decoder.level0.0.nin_shortcut.weight" in f.keys()  # neutral (LDM) names
        assert "decoder.level0.0.conv1.weight" in f.keys() and "decoder.norm_out.weight" in f.keys()
    ldm = SymmetricVAE(LDMView(vae))
    load_adapters(ldm, path)
    assert (ldm.decode(z, source=img) - tuned).abs().max().item() <= 1e-6
    # a plain adapter file switches tuning off again
    plain = save_adapters(SymmetricVAE(vae), tmp_path / "plain.safetensors")
    load_adapters(ldm, plain)
    assert ldm.tuned is None
    assert (ldm.decode(z, source=img) - base).abs().max().item() <= 1e-6
