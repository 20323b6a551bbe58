"""Exact test hosts for the SGIM engine (``mdim_core.inpaint.host.SGIMHost``), no weights needed.

``OracleHost`` knows the ground-truth page. Its VAE is a lossless 8x8 space-to-depth
(``encode``) / depth-to-space (``decode``) permutation, and its denoiser returns the
ground truth inside the mask (every latent cell the pass mask touches) and the given
latent elsewhere. Driven by a correct engine, the output therefore equals the ground truth
inside the mask and the input outside it, bit for bit.

Every call is recorded (``host.calls``) so tests can check what the host saw: sizes,
strengths, steps, seeds, pass order, progress.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from mdim_core.inpaint.host import PassInfo


@dataclass
class Call:
    kind: str  # "encode" | "decode" | "denoise"
    shape: tuple[int, ...]  # pixel shape [B, H, W, C] for encode/decode(out), latent shape for denoise
    info: PassInfo | None = None
    strength: float | None = None
    steps: int | None = None
    seed: int | None = None
    mask_sum: float | None = None


@dataclass
class OracleHost:
    """An exact host: lossless VAE and a denoiser that knows the answer.

    Args:
        truth: ground truth ``[B, H, W, C]`` (C = 1 or 3) in 0..1, the page the engine's
            input batch should turn into; C = 1 is repeated to RGB like the engine does.
        latent_scale: side of the space-to-depth cell.
        cancel_at: raise ``KeyboardInterrupt`` from ``progress`` when ``done`` reaches it.
    """

    truth: torch.Tensor
    latent_scale: int = 8
    cancel_at: int | None = None
    calls: list[Call] = field(default_factory=list)
    progress_log: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        truth = self.truth.float()
        if truth.shape[-1] == 1:
            truth = truth.expand(*truth.shape[:-1], 3)
        self.truth = truth.clone()

    # --- VAE: a permutation, exact in both directions ---
    def _to_latent(self, image: torch.Tensor) -> torch.Tensor:
        return F.pixel_unshuffle(image.permute(0, 3, 1, 2), self.latent_scale)

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        s = self.latent_scale
        assert image.dtype == torch.float32 and image.ndim == 4 and image.shape[-1] == 3, image.shape
        assert image.shape[1] % s == 0 and image.shape[2] % s == 0, f"not padded to /{s}: {tuple(image.shape)}"
        assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
        self.calls.append(Call("encode", tuple(image.shape)))
        return self._to_latent(image)

    def decode(self, latent, *, source=None, mask=None):
        out = F.pixel_shuffle(latent, self.latent_scale).permute(0, 2, 3, 1).contiguous()
        if source is not None:
            assert source.shape == out.shape, (source.shape, out.shape)
        if mask is not None:
            assert mask.shape == out.shape[:3], (mask.shape, out.shape)
        self.calls.append(Call("decode", tuple(out.shape)))
        return out

    # --- denoiser: the ground truth inside the mask ---
    def truth_for(self, info: PassInfo) -> torch.Tensor:
        """The ground truth of this pass: crop, resize to the pass size, pad like the engine."""
        y0, x0, y1, x1 = info.box
        crop = self.truth[list(info.batch_indices), y0:y1, x0:x1]
        if info.size != (y1 - y0, x1 - x0):
            crop = F.interpolate(crop.permute(0, 3, 1, 2), size=info.size, mode="area").permute(0, 2, 3, 1)
        ph, pw = info.padded_size[0] - info.size[0], info.padded_size[1] - info.size[1]
        if ph or pw:
            crop = F.pad(crop.permute(0, 3, 1, 2), (0, pw, 0, ph), mode="replicate").permute(0, 2, 3, 1)
        return crop

    def denoise(self, latent, *, image, mask, strength, steps, seed, info):
        s = self.latent_scale
        assert image.shape[:3] == mask.shape, (image.shape, mask.shape)
        assert latent.shape[-2:] == (image.shape[1] // s, image.shape[2] // s)
        assert set(torch.unique(mask).tolist()) <= {0.0, 1.0}, "pass mask must be binary"
        assert tuple(image.shape[1:3]) == info.padded_size
        assert 0.0 < strength <= 1.0 and steps >= 1 and 0 <= seed < 2**64
        self.calls.append(
            Call("denoise", tuple(latent.shape), info, strength, steps, seed, float(mask.sum()))
        )
        for i in range(steps):
            self.progress(info.steps_before + i + 1, info.total_steps)
        cell = F.max_pool2d(mask[:, None], s) > 0  # [B, 1, h, w]: latent cells the mask touches
        return torch.where(cell, self._to_latent(self.truth_for(info)), latent)

    def progress(self, done, total, preview=None):
        self.progress_log.append((done, total))
        if self.cancel_at is not None and done >= self.cancel_at:
            raise KeyboardInterrupt("cancelled by the test host")

    # --- helpers for tests ---
    def passes(self, name: str | None = None) -> list[Call]:
        return [c for c in self.calls if c.kind == "denoise" and (name is None or c.info.name == name)]


class IdentityHost(OracleHost):
    """Same exact VAE, but the denoiser changes nothing: the engine must return its input."""

    def __init__(self, latent_scale: int = 8):
        super().__init__(truth=torch.zeros(1, 1, 1, 3), latent_scale=latent_scale)

    def denoise(self, latent, *, image, mask, strength, steps, seed, info):
        self.calls.append(Call("denoise", tuple(latent.shape), info, strength, steps, seed, float(mask.sum())))
        for i in range(steps):
            self.progress(info.steps_before + i + 1, info.total_steps)
        return latent
