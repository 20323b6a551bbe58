"""Small SD-shaped KL autoencoders built in code, for tests and benchmarks (no weights to download).

Same architecture as the SD VAE (diffusers ``AutoencoderKL``: 4 levels, 8x downscale, 4 latent
channels, mid-block attention), reduced widths.
"""

from __future__ import annotations

import torch


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


class _Identity(torch.nn.Module):
    def forward(self, x, *args, **kwargs):
        return x


def build_local_autoencoder_kl(widths: tuple[int, ...] = (8, 8, 8, 8), *, seed: int = 0):
    """:func:`build_autoencoder_kl` with its GroupNorms and attention replaced by identities: a plain
    stack of convolutions, so every output pixel depends only on a bounded neighbourhood (about 60 px).
    A tiled decode then equals the whole decode away from the tiles' edges, which makes tiling and
    blending testable (a normal VAE's GroupNorm statistics differ per tile)."""
    vae = build_autoencoder_kl(widths, groups=4, seed=seed)
    for module in list(vae.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.GroupNorm) or type(child).__name__ == "Attention":
                setattr(module, name, _Identity())
    return vae
