"""The host protocol: what the SGIM engine (``mdim_core.inpaint.sgim``) asks of a model host.

The engine owns everything that is not a model call: mask cleanup, region planning,
cropping, padding, resampling, compositing. A host owns the model: its VAE, its
denoiser, its sampler/scheduler/CFG/conditioning, devices and dtypes, tiling, and its
progress display. Three hosts implement this protocol: the ComfyUI host
(``nodes/sgim_host.py``), the diffusers host (``mdim_core.inpaint.diffusers_host``, used by the
command line), and exact test hosts (``tests/sgim_hosts.py``). The helpers at the end of this
module are what every host of a latent-diffusion model needs (the noise mask on latent cells, the
masked-image input of 9-channel inpainting models).

Conventions of every call (the engine guarantees them, hosts may rely on them):

- Pixel images are ``torch.float32`` CPU tensors ``[B, H, W, 3]`` in 0..1 (RGB; the
  engine converts grayscale to RGB before and back after). ``H`` and ``W`` are
  multiples of ``host.latent_scale``: the engine pads (edge-replicate), the host never
  crops, stretches or pads.
- Masks are ``torch.float32`` CPU tensors ``[B, H, W]`` with exactly the values 0.0 and
  1.0, at the same ``H, W`` as the pixel image of that pass; 1 = repaint. Padding added
  by the engine is always 0 (known).
- Latents are whatever the host's ``encode`` returns (any device/dtype/scaling). The
  engine never looks inside them; it hands them back to the same host's ``denoise`` and
  ``decode``. They must have shape ``[B, c, H / latent_scale, W / latent_scale]``.
- Nothing is edited in place: a host must not modify the tensors it is given.
- The engine always passes the real pixels (never a grey fill): the known region is kept
  by the host's noise mask during sampling, and the engine composites the final result in
  pixel space, so pixels outside the mask come back bit-exactly whatever the host does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import torch
import torch.nn.functional as F

PassName = Literal["sgi", "fri"]


@dataclass(frozen=True)
class PassInfo:
    """Where one denoising pass sits in the run; handed to ``SGIMHost.denoise``.

    Attributes:
        name: ``"sgi"`` (structure pass on a crop of the shrunk page, strength 1.0, or the
            only pass when no shrink is needed) or ``"fri"`` (full-resolution refinement).
        index: 0-based index of this pass among all passes of the run.
        count: number of passes the engine runs in total (all crops, frames, batch groups
            and both kinds), known before the first pass starts.
        steps_before: sampling steps of all passes that ran before this one.
        total_steps: sampling steps of all passes of the run. A host that shows one
            progress bar reports ``steps_before + step + 1`` out of ``total_steps``.
        region: 0-based index of the crop this pass works on, among the crops of this
            pass kind in its frame (the page, or a panel).
        regions: number of those crops.
        batch_indices: which images of the engine's input batch are in this pass
            (the latent batch dimension follows this order).
        box: ``(y0, x0, y1, x1)`` of the crop in page pixels (end-exclusive); for an SGI
            crop of a shrunk page, the page pixels it shows.
        size: ``(h, w)`` of the pass content in pixels before padding: the crop size for
            FRI, the crop of the shrunk page for SGI (smaller than ``box`` then).
        padded_size: ``(H, W)`` of the pixel image actually given to the host (``size``
            padded at the bottom and right to multiples of ``latent_scale``).
        tile: 0-based index of this FRI tile when a large crop's FRI runs in tiles
            (``box`` is then the tile's box in the page), else 0.
        tiles: number of FRI tiles of this crop (1 when untiled).
        page_size: ``(H, W)`` of the whole page in pixels. ``box`` relative to it says which
            part of page-sized inputs (a ControlNet hint, an area) belongs to this pass.
        extent: the exact page area the pass content shows, ``(y0, x0, y1, x1)`` in fractional
            page pixels, when it is not whole pixels (an SGI crop of a shrunk page: ``box`` is
            this area rounded outward); else None and ``box`` is exact. Pass pixel ``q`` shows
            the page from ``y0 + q * (y1 - y0) / size[0]`` on (likewise for x).
        batch: number of pages in the engine's input batch (``batch_indices`` index it); page-level
            inputs of a host (hints, masks) hold 1 page (shared) or this many.
    """

    name: PassName
    index: int
    count: int
    steps_before: int
    total_steps: int
    region: int
    regions: int
    batch_indices: tuple[int, ...]
    box: tuple[int, int, int, int]
    size: tuple[int, int]
    padded_size: tuple[int, int]
    tile: int = 0
    tiles: int = 1
    page_size: tuple[int, int] | None = None
    extent: tuple[float, float, float, float] | None = None
    batch: int | None = None


@runtime_checkable
class SGIMHost(Protocol):
    """A model host driven by the SGIM engine. See the module docstring for conventions."""

    #: Pixels per latent pixel along each side (8 for SD1.x/SDXL VAEs). The engine pads
    #: every pass image to multiples of it.
    latent_scale: int

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """Encode pixels to latents.

        Args:
            image: ``[B, H, W, 3]`` float32 in 0..1, ``H`` and ``W`` multiples of
                ``latent_scale``.

        Returns:
            ``[B, c, H / latent_scale, W / latent_scale]`` latents in the host's own
            scaling (the same one ``denoise`` and ``decode`` expect). A host may tile.
        """
        ...

    def decode(
        self,
        latent: torch.Tensor,
        *,
        source: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Decode latents to pixels.

        Args:
            latent: ``[B, c, h, w]`` as returned by ``denoise``.
            source: the pixel image of this pass (``[B, h * s, w * s, 3]``, the same image
                that was encoded for the pass), or None. A decoder that uses encoder
                features (the Symmetric VAE) takes its skips from it; others ignore it.
            mask: the pass mask ``[B, h * s, w * s]`` (1 = repaint) or None: a skip-using
                decoder must gate its skips off inside it (and fill the hole in ``source``
                before computing them) so removed content cannot leak back.

        Returns:
            ``[B, h * s, w * s, 3]`` float in 0..1 (any device; the engine moves it to
            CPU float32), with ``s = latent_scale``.
        """
        ...

    def denoise(
        self,
        latent: torch.Tensor,
        *,
        image: torch.Tensor,
        mask: torch.Tensor,
        strength: float,
        steps: int,
        seed: int,
        info: PassInfo,
    ) -> torch.Tensor:
        """Inpaint ``latent`` inside ``mask`` and return the new latent (same shape).

        Args:
            latent: ``encode(image)``.
            image: this pass's pixel input ``[B, H, W, 3]`` (real pixels everywhere; for
                FRI the upscaled SGI result is already pasted inside the mask). A 9-channel
                inpainting model builds its masked-image conditioning from it at this
                pass's resolution.
            mask: ``[B, H, W]`` pixel-space mask of this pass, 0/1, 1 = repaint. The host
                reduces it to latent size itself and keeps the known region with it at
                every step (noise mask), in both passes.
            strength: fraction of the noise schedule to run, in (0, 1]. 1.0 starts from
                pure noise (SGI); 0.5 starts half way (FRI), like ComfyUI's ``denoise``
                and diffusers' img2img ``strength``.
            steps: sampling steps actually run in this pass. With ``strength < 1`` the
                schedule is the one of ``int(steps / strength)`` steps, of which the last
                ``steps`` run: ComfyUI's ``KSampler(steps, denoise)`` rule, one helper for every
                host (``mdim_core.sampling.schedule.ksampler_schedule``).
            seed: integer in ``[0, 2**64)``; the noise of the whole batch is drawn from it
                with a host-local generator (never global RNG state), so the pass is
                deterministic for a given seed.
            info: where this pass sits in the run (progress, region geometry).

        Per-step progress and cancellation: the host calls ``self.progress(...)`` after
        each sampling step (optionally with a preview) and lets any exception it raises
        propagate; the engine does not catch it.
        """
        ...

    def progress(self, done: int, total: int, preview: torch.Tensor | None = None) -> None:
        """Progress and cancellation hook.

        The engine calls it before the first pass (``done = 0``), between passes and after
        the last one (``done = total``); ``denoise`` calls it after each step. ``done`` and
        ``total`` count sampling steps over the whole run (see ``PassInfo``). ``preview``
        is an optional image ``[H, W, 3]`` in 0..1. To cancel, raise (ComfyUI raises its
        interrupt exception here); the engine lets the exception propagate and leaves its
        inputs untouched.
        """
        ...


def check_host(host: object) -> SGIMHost:
    """Return ``host`` if it implements ``SGIMHost``, else raise ``TypeError`` naming what is missing."""
    missing = [name for name in ("encode", "decode", "denoise", "progress") if not callable(getattr(host, name, None))]
    scale = getattr(host, "latent_scale", None)
    if missing:
        raise TypeError(f"host: {type(host).__name__} lacks method(s) {', '.join(missing)} of mdim_core.inpaint.host.SGIMHost")
    if not isinstance(scale, int) or isinstance(scale, bool) or scale < 1:
        raise TypeError(f"host.latent_scale: expected a positive int (8 for SD VAEs), got {scale!r}")
    return host  # type: ignore[return-value]


def latent_cell_mask(mask: torch.Tensor, scale: int) -> torch.Tensor:
    """``[B, H, W]`` 0/1 pixel mask -> ``[B, 1, H/scale, W/scale]``: 1 on every latent cell the mask touches.

    The sampler's noise mask then frees whole cells, so every masked pixel is repainted; the engine's
    pixel-space composite keeps the pixels outside the mask exact.
    """
    return F.max_pool2d(mask[:, None].float(), scale)


def grey_fill(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The masked-image input of 9-channel inpainting models: 0.5 inside the mask, as ComfyUI's
    InpaintModelConditioning and diffusers' inpaint pipeline build it (``[B,H,W,3]`` and ``[B,H,W]``)."""
    keep = (1.0 - mask.round())[..., None]
    return (image - 0.5) * keep + 0.5
