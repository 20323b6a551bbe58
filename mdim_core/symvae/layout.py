"""Walk the modules of an SD-family KL autoencoder in either of its two module layouts.

A Symmetric VAE needs two things a plain ``decode(z)`` cannot give: the encoder's feature
maps at every resolution level (the *taps*), and a decoder run that accepts an addition at
the start of every level. Both are done here by calling the base VAE's own sub-modules in
the order its ``forward`` calls them, so nothing of the base VAE is copied or changed.

Two layouts are supported, recognised by their attribute names (duck typing, no import of
either library is needed):

``diffusers``
    ``diffusers.AutoencoderKL``: ``encoder.down_blocks[i].resnets`` / ``.downsamplers``,
    ``encoder.mid_block``; ``decoder.mid_block``, ``decoder.up_blocks[k].resnets`` /
    ``.upsamplers`` (``up_blocks[0]`` is the lowest resolution), ``decoder.conv_norm_out`` /
    ``conv_act`` / ``conv_out``; optional ``quant_conv`` / ``post_quant_conv``.
``ldm``
    The original latent-diffusion ``AutoencoderKL`` that ComfyUI loads
    (``VAE.first_stage_model``): ``encoder.down[i].block`` / ``.attn`` / ``.downsample``;
    ``decoder.mid.block_1`` / ``attn_1`` / ``block_2``, ``decoder.up[i]`` (``up[0]`` is the
    highest resolution), ``decoder.norm_out`` then SiLU then ``decoder.conv_out``;
    ``quant_conv`` / ``post_quant_conv``.

Resolution level ``l`` is the feature map at ``1 / 2**l`` of the image size: for SD VAEs
level 0 is 128 channels at H, level 1 256 at H/2, level 2 512 at H/4, level 3 512 at H/8.
The tap of level ``l`` is the output of the last block of the encoder's level ``l`` (before
its downsampling); the decoder is entered at the start of its level ``l`` (after the
upsampling from level ``l + 1``, before its blocks).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Inject = Callable[[int, torch.Tensor], torch.Tensor]


def _no_inject(level: int, h: torch.Tensor) -> torch.Tensor:
    return h


class VAELayout:
    """Common interface of the two layouts (see the module docstring)."""

    name = ""

    def __init__(self, vae: torch.nn.Module):
        self.vae = vae

    # --- structure -------------------------------------------------------------------------
    @property
    def encoder(self) -> torch.nn.Module:
        return self.vae.encoder

    @property
    def decoder(self) -> torch.nn.Module:
        return self.vae.decoder

    @property
    def num_levels(self) -> int:
        raise NotImplementedError

    def tap_channels(self) -> list[int]:
        """Channels of the encoder tap of every level, level 0 (full resolution) first."""
        raise NotImplementedError

    def decoder_channels(self) -> list[int]:
        """Channels of the decoder's feature map at the start of every level, level 0 first."""
        raise NotImplementedError

    @property
    def latent_channels(self) -> int:
        post = getattr(self.vae, "post_quant_conv", None)
        if post is not None:
            return int(post.in_channels)
        return int(self.decoder.conv_in.in_channels)

    @property
    def downscale(self) -> int:
        return 2 ** (self.num_levels - 1)

    def fingerprint_tensors(self) -> dict[str, torch.Tensor]:
        """A few base weights whose statistics identify this particular VAE."""
        return {
            "encoder.conv_in": self.encoder.conv_in.weight,
            "decoder.conv_in": self.decoder.conv_in.weight,
            "decoder.conv_out": self.decoder.conv_out.weight,
        }

    @property
    def dtype(self) -> torch.dtype:
        return self.decoder.conv_in.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.decoder.conv_in.weight.device

    # --- running ---------------------------------------------------------------------------
    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encoder features of every level for ``x`` ([B, 3, H, W] in -1..1), level 0 first."""
        raise NotImplementedError

    def decode(self, z: torch.Tensor, inject: Inject = _no_inject, tuned: dict | None = None) -> torch.Tensor:
        """Decode raw latents ``z`` to [B, 3, H, W] in about -1..1, calling ``inject(level, h)``
        at the start of every decoder level and continuing with what it returns.

        ``tuned`` may replace the full-resolution part of the decoder: ``{"blocks": [...],
        "norm_out": module, "conv_out": module}`` (fine-tuned copies, see :meth:`level0_modules`).
        """
        raise NotImplementedError

    def level0_modules(self) -> dict:
        """The decoder's full-resolution part: its level-0 residual blocks, output norm and conv."""
        raise NotImplementedError

    def encode_mean(self, x: torch.Tensor) -> torch.Tensor:
        """The latent the base VAE encodes ``x`` ([B, 3, H, W] in -1..1) to (posterior mode)."""
        raise NotImplementedError


class DiffusersLayout(VAELayout):
    name = "diffusers"

    @property
    def num_levels(self) -> int:
        return len(self.encoder.down_blocks)

    def tap_channels(self) -> list[int]:
        return [int(block.resnets[-1].out_channels) for block in self.encoder.down_blocks]

    def decoder_channels(self) -> list[int]:
        blocks = list(self.decoder.up_blocks)
        # up_blocks[k] works at level n-1-k; its input width is its first resnet's input width.
        return [int(blocks[self.num_levels - 1 - level].resnets[0].in_channels) for level in range(self.num_levels)]

    @staticmethod
    def _run_block(block: torch.nn.Module, h: torch.Tensor) -> torch.Tensor:
        attentions = getattr(block, "attentions", None)
        for j, resnet in enumerate(block.resnets):
            h = resnet(h, temb=None)
            if attentions is not None and len(attentions) > 0:
                h = attentions[j](h)
        return h

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        enc = self.encoder
        h = enc.conv_in(x)
        out = []
        last = len(enc.down_blocks) - 1
        for i, block in enumerate(enc.down_blocks):
            h = self._run_block(block, h)
            out.append(h)
            if i < last and block.downsamplers is not None:
                for down in block.downsamplers:
                    h = down(h)
        return out

    def level0_modules(self) -> dict:
        block = self.decoder.up_blocks[-1]
        if getattr(block, "attentions", None) is not None and len(block.attentions) > 0:
            raise TypeError("vae: its full-resolution decoder level has attention; decoder tuning is not supported")
        return {"blocks": list(block.resnets), "norm_out": self.decoder.conv_norm_out, "conv_out": self.decoder.conv_out}

    def decode(self, z: torch.Tensor, inject: Inject = _no_inject, tuned: dict | None = None) -> torch.Tensor:
        vae, dec = self.vae, self.decoder
        if getattr(vae, "post_quant_conv", None) is not None:
            z = vae.post_quant_conv(z)
        h = dec.conv_in(z)
        h = dec.mid_block(h, None)
        n = len(dec.up_blocks)
        for k, block in enumerate(dec.up_blocks):
            h = inject(n - 1 - k, h)
            if tuned is not None and k == n - 1:
                for resnet in tuned["blocks"]:
                    h = resnet(h, temb=None)
            else:
                h = self._run_block(block, h)
            if block.upsamplers is not None:
                for up in block.upsamplers:
                    h = up(h)
        h = (tuned or {}).get("norm_out", dec.conv_norm_out)(h)
        h = dec.conv_act(h)
        return (tuned or {}).get("conv_out", dec.conv_out)(h)

    def encode_mean(self, x: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(x).latent_dist.mode()


class LDMLayout(VAELayout):
    name = "ldm"

    @property
    def num_levels(self) -> int:
        return len(self.encoder.down)

    def tap_channels(self) -> list[int]:
        return [int(level.block[-1].out_channels) for level in self.encoder.down]

    def decoder_channels(self) -> list[int]:
        return [int(self.decoder.up[level].block[0].in_channels) for level in range(self.num_levels)]

    @staticmethod
    def _run_level(level: torch.nn.Module, h: torch.Tensor) -> torch.Tensor:
        attn = getattr(level, "attn", None)
        for j, block in enumerate(level.block):
            h = block(h, None)
            if attn is not None and len(attn) > 0:
                h = attn[j](h)
        return h

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        enc = self.encoder
        h = enc.conv_in(x)
        out = []
        last = len(enc.down) - 1
        for i, level in enumerate(enc.down):
            h = self._run_level(level, h)
            out.append(h)
            if i < last:
                h = level.downsample(h)
        return out

    def level0_modules(self) -> dict:
        level = self.decoder.up[0]
        if getattr(level, "attn", None) is not None and len(level.attn) > 0:
            raise TypeError("vae: its full-resolution decoder level has attention; decoder tuning is not supported")
        return {"blocks": list(level.block), "norm_out": self.decoder.norm_out, "conv_out": self.decoder.conv_out}

    def decode(self, z: torch.Tensor, inject: Inject = _no_inject, tuned: dict | None = None) -> torch.Tensor:
        vae, dec = self.vae, self.decoder
        if getattr(vae, "post_quant_conv", None) is not None:
            z = vae.post_quant_conv(z)
        h = dec.conv_in(z)
        h = dec.mid.block_1(h, None)
        h = dec.mid.attn_1(h)
        h = dec.mid.block_2(h, None)
        for level in reversed(range(len(dec.up))):
            h = inject(level, h)
            if tuned is not None and level == 0:
                for block in tuned["blocks"]:
                    h = block(h, None)
            else:
                h = self._run_level(dec.up[level], h)
            if level != 0:
                h = dec.up[level].upsample(h)
        h = (tuned or {}).get("norm_out", dec.norm_out)(h)
        h = F.silu(h)
        h = (tuned or {}).get("conv_out", dec.conv_out)(h)
        if getattr(dec, "tanh_out", False):
            h = torch.tanh(h)
        return h

    def encode_mean(self, x: torch.Tensor) -> torch.Tensor:
        z = self.vae.encode(x)
        if isinstance(z, tuple):
            z = z[0]
        return z


def detect_layout(vae: torch.nn.Module) -> VAELayout:
    """Return the layout walker for ``vae`` or raise ``TypeError`` naming what is missing."""
    enc = getattr(vae, "encoder", None)
    dec = getattr(vae, "decoder", None)
    if enc is None or dec is None:
        raise TypeError(
            f"vae: expected an SD-family KL autoencoder with .encoder and .decoder "
            f"(diffusers AutoencoderKL or ComfyUI VAE.first_stage_model), got {type(vae).__name__}"
        )
    if hasattr(enc, "down_blocks") and hasattr(dec, "up_blocks"):
        layout: VAELayout = DiffusersLayout(vae)
    elif hasattr(enc, "down") and hasattr(dec, "up") and hasattr(dec, "mid"):
        if getattr(dec, "carried", False) or getattr(enc, "carried", False):
            raise TypeError("vae: video (3-D) autoencoders are not supported; use an SD-family image VAE")
        layout = LDMLayout(vae)
    else:
        raise TypeError(
            f"vae: unknown module layout ({type(enc).__name__}/{type(dec).__name__}); expected "
            "encoder.down_blocks/decoder.up_blocks (diffusers) or encoder.down/decoder.up (LDM)"
        )
    if len(layout.tap_channels()) != len(layout.decoder_channels()):
        raise TypeError("vae: encoder and decoder have a different number of resolution levels")
    return layout
