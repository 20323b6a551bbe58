"""Loading a base VAE for the command line: diffusers folders and single files, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from mdim_core.symvae.base import load_base_vae

FIXTURE_VAE = Path(__file__).parent / "fixtures" / "symvae_tiny" / "base_vae"


def test_diffusers_folder_loads_as_float32():
    vae = load_base_vae(FIXTURE_VAE)
    assert vae.decoder.conv_in.weight.dtype == torch.float32
    assert not vae.training
    z = torch.zeros(1, 4, 4, 4)
    with torch.no_grad():
        assert vae.decode(z).sample.shape == (1, 3, 32, 32)


@pytest.mark.slow  # builds an SD-size VAE for the last case
def test_bad_paths_and_files(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_base_vae(tmp_path / "missing.safetensors")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        load_base_vae(tmp_path / "empty_dir")
    ckpt = tmp_path / "vae.ckpt"
    ckpt.write_bytes(b"not a pickle we would ever load")
    with pytest.raises(ValueError, match="only .safetensors"):
        load_base_vae(ckpt)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 32)
    with pytest.raises(ValueError, match="not a readable safetensors"):
        load_base_vae(junk)
    other = tmp_path / "lora.safetensors"
    save_file({"lora_up.weight": torch.zeros(2, 2)}, str(other))
    with pytest.raises(ValueError, match="no SD VAE weights|does not fit"):
        load_base_vae(other)
