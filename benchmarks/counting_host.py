"""A model host for benchmarks: real work proportional to latent pixels, and exact counting.

``CountingHost`` implements ``mdim_core.inpaint.host.SGIMHost`` with a small random conv network
(fixed seed) standing in for the UNet: every sampling step costs the same per latent pixel,
like a convolutional denoiser. It counts model-evaluated latent pixels (latent pixels x steps
x batch) and the time spent inside host calls, so benchmarks can split engine time from
model time.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F


class CountingHost:
    latent_scale = 8

    def __init__(self, width: int = 16, channels: int = 4):
        g = torch.Generator().manual_seed(0)
        self.enc = torch.randn(channels, 3, 1, 1, generator=g) * 0.3
        self.w1 = torch.randn(width, channels, 3, 3, generator=g) * 0.1
        self.w2 = torch.randn(channels, width, 3, 3, generator=g) * 0.1
        self.dec = torch.randn(3, channels, 1, 1, generator=g) * 0.3
        self.reset()

    def reset(self) -> None:
        self.latent_pixel_steps = 0  # sum over denoise calls of B * h * w * steps
        self.latent_pixels = 0  # sum over denoise calls of B * h * w (passes, not steps)
        self.host_seconds = 0.0
        self.denoise_calls = 0
        self.sizes: list[tuple[str, tuple[int, int], int]] = []

    def encode(self, image):
        t = time.perf_counter()
        x = F.avg_pool2d(image.permute(0, 3, 1, 2), self.latent_scale)
        out = F.conv2d(x, self.enc)
        self.host_seconds += time.perf_counter() - t
        return out

    def decode(self, latent, *, source=None, mask=None):
        t = time.perf_counter()
        x = torch.sigmoid(F.conv2d(latent, self.dec))
        out = F.interpolate(x, scale_factor=self.latent_scale, mode="nearest").permute(0, 2, 3, 1).contiguous()
        self.host_seconds += time.perf_counter() - t
        return out

    def denoise(self, latent, *, image, mask, strength, steps, seed, info):
        t = time.perf_counter()
        keep = F.max_pool2d(mask[:, None], self.latent_scale) == 0  # known latent cells
        g = torch.Generator().manual_seed(seed % 2**63)
        x = torch.where(keep, latent, torch.randn(latent.shape, generator=g))
        for i in range(steps):
            x = x + 0.1 * F.conv2d(torch.tanh(F.conv2d(x, self.w1, padding=1)), self.w2, padding=1)
            x = torch.where(keep, latent, x)  # the noise mask keeps the known region
            self.progress(info.steps_before + i + 1, info.total_steps)
        b, _, h, w = latent.shape
        self.latent_pixel_steps += b * h * w * steps
        self.latent_pixels += b * h * w
        self.denoise_calls += 1
        self.sizes.append((info.name, info.padded_size, steps))
        self.host_seconds += time.perf_counter() - t
        return x

    def progress(self, done, total, preview=None):
        pass


class FixedCostHost(CountingHost):
    """Same as ``CountingHost`` plus a fixed sleep per step (a stand-in for a GPU model call)."""

    def __init__(self, seconds_per_step: float = 0.02, **kwargs):
        super().__init__(**kwargs)
        self.seconds_per_step = seconds_per_step

    def denoise(self, latent, *, image, mask, strength, steps, seed, info):
        t = time.perf_counter()
        time.sleep(self.seconds_per_step * steps)
        self.host_seconds += time.perf_counter() - t
        return super().denoise(latent, image=image, mask=mask, strength=strength, steps=steps, seed=seed, info=info)
