"""Load a base VAE for training and the command line (ComfyUI passes its own loaded VAE instead).

Accepted: a diffusers ``AutoencoderKL`` folder (``config.json`` + safetensors weights), or one
``.safetensors`` file holding an SD-family VAE in the original (LDM) key layout — a VAE file such
as ``vae-ft-mse-840000-ema-pruned.safetensors`` or a whole SD checkpoint (its
``first_stage_model.`` part is used) — or in diffusers' key layout. Single files get the SD VAE
architecture (128/256/512/512, 4 latent channels). Everything stays local (no downloads).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

SD_VAE_CONFIG = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
}


def load_base_vae(path: str | os.PathLike, dtype: torch.dtype = torch.float32):
    """A diffusers ``AutoencoderKL`` in eval mode from ``path`` (see the module docstring)."""
    from diffusers import AutoencoderKL

    path = Path(path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"vae: folder {path} has no config.json (expected a diffusers AutoencoderKL folder)")
        try:
            vae = AutoencoderKL.from_pretrained(str(path), local_files_only=True, torch_dtype=dtype)
        except (OSError, ValueError) as exc:
            raise ValueError(f"vae: cannot load the diffusers AutoencoderKL in {path}: {exc}") from exc
        return vae.eval()
    if not path.is_file():
        raise ValueError(f"vae: {path} does not exist")
    if path.suffix.lower() != ".safetensors":
        raise ValueError(f"vae: {path.name}: only .safetensors files (or a diffusers folder) are accepted")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        sd = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"vae: {path.name} is not a readable safetensors file: {exc}") from exc
    return vae_from_state_dict(sd, path.name).to(dtype).eval()


def vae_from_state_dict(sd: dict, name: str = "vae", config: dict | None = None):
    """A float32 diffusers ``AutoencoderKL`` from a state dict in the LDM layout (a VAE file, or a whole SD
    checkpoint: its ``first_stage_model.`` part is used) or in diffusers' layout. ``config``: the
    ``AutoencoderKL`` config (default: the SD VAE architecture). ``name`` names the source in errors."""
    from diffusers import AutoencoderKL

    config = dict(SD_VAE_CONFIG if config is None else config)
    vae = AutoencoderKL.from_config(config)
    if any(k.startswith("decoder.up_blocks.") for k in sd):
        converted = sd
    else:
        from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

        converted = convert_ldm_vae_checkpoint(sd, config)
    if not converted:
        raise ValueError(f"vae: {name} holds no SD VAE weights (no encoder/decoder keys found)")
    missing, unexpected = vae.load_state_dict(converted, strict=False)
    if missing:
        raise ValueError(
            f"vae: {name} does not fit the SD VAE architecture: {len(missing)} missing tensors, "
            f"e.g. {missing[:3]}"
        )
    return vae.eval()
