"""Small SD-shaped KL autoencoders built in code (tests, benchmarks, smoke runs of training).

Same architecture as the SD VAE (diffusers ``AutoencoderKL``: 4 levels, 8x downscale, 4 latent
channels, mid-block attention), reduced widths.
"""

from __future__ import annotations

import torch

SD_WIDTHS = (128, 256, 512, 512)


def build_autoencoder_kl(
    widths: tuple[int, ...] = (32, 32, 64, 64),
    *,
    latent_channels: int = 4,
    layers_per_block: int = 1,
    groups: int = 8,
    seed: int = 0,
):
    """A diffusers ``AutoencoderKL`` with ``len(widths)`` levels, seeded random weights."""
    from diffusers import AutoencoderKL

    n = len(widths)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * n,
            up_block_types=("UpDecoderBlock2D",) * n,
            block_out_channels=tuple(widths),
            layers_per_block=layers_per_block,
            latent_channels=latent_channels,
            norm_num_groups=groups,
            sample_size=256,
        )
    return vae.eval()


def autoencoder_kl_config(vae) -> dict:
    """The constructor arguments of a diffusers ``AutoencoderKL`` (to save next to its weights)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(vae.config).items() if not k.startswith("_")}
