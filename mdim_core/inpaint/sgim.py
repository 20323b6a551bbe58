"""SGIM: two-pass inpainting of full pages (structure-guided pass, then full-resolution refinement).

One implementation for every host (ComfyUI, diffusers, test hosts); the host supplies the
model through ``mdim_core.inpaint.host.SGIMHost``. For each page (or, with ``limit_to_panel``, each
manga panel holding part of the mask: the thesis works panel by panel):

1. SGI: shrink the page by halving until its longest side is <= ``sgi_max_side``
   (antialiased area averaging), so the model sees the page at the scale it knows, not a
   zoomed-in piece of a scan. Inpaint it from pure noise inside the mask (or, given a pre-filled
   page, from that fill at ``prefill_strength``), on crops around the mask regions, padded to
   multiples of the latent scale;
2. FRI: at full resolution, on crops around the mask regions: paste the SGI result (bicubic
   upscale) into the crop inside the mask, encode, denoise again inside the mask with
   ``fri_strength`` and ``fri_steps``, decode. Large crops run in overlapping tiles. Skipped by
   default when step 1 did not need to shrink: then the SGI pass already ran at full resolution;
3. composite in pixel space: the new pixels inside the mask (optionally feathered inside the
   mask), the input outside it, bit for bit.

Before step 1, with ``flat_fill="auto"`` (the default), every mask region inside flat paper white or
solid black (text in a speech bubble) is filled with exactly that value and never reaches the model
(:mod:`.flatfill`): no grey tint in white bubbles, and fewer passes.

Which crops each pass runs on is planned by :mod:`.plan`. With ``structure_pass=False`` only
step 2 runs, from the image as it is (a low-strength pass in the page's style). The host's noise
mask keeps the known region during both passes; the engine never grey-fills.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..imaging import checks, geometry, masks
from ..imaging.compositing import composite, paste_into
from ..imaging.geometry import offset_box
from .config import SEED_LIMIT, SGIMConfig, check_seed
from .flatfill import FlatRegion, flat_fill
from .host import PassInfo, check_host
from .plan import Crop, Frame, FRITile, plan

log = logging.getLogger("MDIM")

#: rows of the page built at a time for the SGI preview
PREVIEW_STRIP = 1024

__all__ = ["SGIMConfig", "SGIMResult", "inpaint", "plan"]


class SGIMResult:
    """The outcome of :func:`inpaint`.

    Attributes:
        image: the composited result, ``[B, H, W, C]`` like the input (RGBA -> RGB).
        sgi_preview: the page with the (upscaled) SGI results pasted inside the mask: what the
            structure pass drew, before refinement. Built on first access (a page-sized copy).
            Regions that took the flat-fill shortcut are outlined in it (green on RGB pages, a
            dashed grey line on grayscale ones).
        frames: the plan that ran (empty when the mask was empty or all of it was flat-filled).
        jobs: every crop whose passes ran, in run order.
        flat_regions: the mask regions filled flat, without the model (``FlatRegion``: batch row,
            box, value, pixels).
    """

    def __init__(self, image: torch.Tensor, frames: list[Frame], base: torch.Tensor | None = None,
                 parts: list | None = None, device: torch.device | None = None,
                 flat_regions: list[FlatRegion] | None = None):
        self.image = image
        self.frames = frames
        self.flat_regions = list(flat_regions or [])
        self.jobs = [c for f in frames for c in f.jobs]
        self._base = base
        self._parts = parts or []
        self._device = device
        self._preview: torch.Tensor | None = None if base is not None else image

    @property
    def sgi_preview(self) -> torch.Tensor:
        if self._preview is None:
            page = self._base.clone()
            for region in self.flat_regions:  # filled flat: that is the result there
                y0, x0, y1, x1 = region.box
                page[region.batch, y0:y1, x0:x1] = self.image[region.batch, y0:y1, x0:x1].to(page)
            for rows, frame, small, mask_f in self._parts:
                for y0 in range(0, frame.size[0], PREVIEW_STRIP):  # strips: no page-sized float copy
                    y1 = min(frame.size[0], y0 + PREVIEW_STRIP)
                    box = (y0, 0, y1, frame.size[1])
                    up = geometry.sample_box(small, frame.size, box)
                    page_box = offset_box(box, frame.box[:2])
                    y, x, yy, xx = page_box
                    current = page[rows, y:yy, x:xx]
                    paste_into(page, composite(current, _to_channels(up, current.shape[-1]), mask_f[:, y0:y1]),
                               page_box, rows)
            _outline(page, self.flat_regions)
            self._preview = page.to(self._device)
            self._base, self._parts = None, []
        return self._preview

    @property
    def passes(self) -> int:
        return sum(f.passes for f in self.frames)


def _outline(page: torch.Tensor, regions: list[FlatRegion], width: int = 2) -> None:
    """Draw a box around each region into ``page`` (the preview's own copy): green on RGB pages, a dashed
    grey line on grayscale ones (every other 4 px), just outside the region where there is room."""
    h, w, c = page.shape[1:]
    colour = torch.tensor([0.0, 0.85, 0.0] if c == 3 else [0.5], dtype=page.dtype)
    for r in regions:
        y0, x0, y1, x1 = r.box
        y0, x0, y1, x1 = max(0, y0 - width), max(0, x0 - width), min(h, y1 + width), min(w, x1 + width)
        edge = torch.zeros(y1 - y0, x1 - x0, dtype=torch.bool)
        edge[:width], edge[-width:], edge[:, :width], edge[:, -width:] = True, True, True, True
        if c == 1:
            ys, xs = torch.meshgrid(torch.arange(y1 - y0), torch.arange(x1 - x0), indexing="ij")
            edge &= ((ys + xs) // 4) % 2 == 0
        view = page[r.batch, y0:y1, x0:x1]
        view[edge] = colour


def _to_channels(rgb: torch.Tensor, channels: int) -> torch.Tensor:
    """RGB result back to the input's channel count (grayscale: mean, exact when R = G = B)."""
    if channels == 3:
        return rgb
    r = rgb[..., :1]
    same = (rgb[..., 1:2] == r) & (rgb[..., 2:3] == r)
    return torch.where(same, r, rgb.mean(dim=-1, keepdim=True))


def _rgb(pixels: torch.Tensor) -> torch.Tensor:
    return pixels.expand(-1, -1, -1, 3) if pixels.shape[-1] == 1 else pixels


class _Runner:
    """Runs passes on the host: pads, encodes, denoises, decodes, unpads; counts passes and steps."""

    def __init__(self, host, config: SGIMConfig, frames: list[Frame], page_size: tuple[int, int], sgi_strength: float,
                 batch: int):
        self.host = host
        self.batch = batch
        self.config = config
        self.page_size = page_size
        self.sgi_strength = sgi_strength
        self.count = sum(f.passes for f in frames)
        self.total = sum(
            config.steps * len(f.sgi) + (config.fri_steps * sum(c.passes for c in f.crops) if f.run_fri else 0)
            for f in frames
        )
        self.index = 0
        self.done = 0

    def run_pass(
        self, job: Crop, image: torch.Tensor, mask: torch.Tensor, tile: FRITile | None = None, tile_index: int = 0
    ) -> torch.Tensor:
        """One pass on ``image`` ``[b, h, w, 3]`` (a crop, or a tile of one); returns ``[b, h, w, 3]`` float32 in 0..1."""
        host, cfg, name = self.host, self.config, job.name
        h, w = image.shape[1:3]
        img_p = geometry.pad_image(image, host.latent_scale, cfg.pad_mode).contiguous()
        mask_p = geometry.pad_mask(mask, host.latent_scale).contiguous()
        steps = cfg.steps if name == "sgi" else cfg.fri_steps
        strength = self.sgi_strength if name == "sgi" else float(cfg.fri_strength)
        info = PassInfo(
            name=name,
            index=self.index,
            count=self.count,
            steps_before=self.done,
            total_steps=self.total,
            region=job.region,
            regions=job.regions,
            batch_indices=job.rows,
            box=job.page_box if tile is None else offset_box(tile.box, job.page_box[:2]),
            size=(h, w),
            padded_size=tuple(img_p.shape[1:3]),
            tile=tile_index,
            tiles=len(job.tiles) or 1,
            page_size=self.page_size,
            extent=job.extent if tile is None else None,
            batch=self.batch,
        )
        seed = (job.seed + (tile_index << 32)) % SEED_LIMIT
        latent = host.encode(img_p)
        latent = host.denoise(latent, image=img_p, mask=mask_p, strength=strength, steps=steps, seed=seed, info=info)
        out = host.decode(latent, source=img_p, mask=mask_p)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(img_p.shape):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise RuntimeError(f"host.decode returned {got}, expected {tuple(img_p.shape)} for the {name} pass")
        out = out.detach().to("cpu", torch.float32)[:, :h, :w]
        if not all(np.isfinite(float(v)) for v in torch.aminmax(out)):
            raise RuntimeError(f"host returned NaN or infinite pixels in the {name} pass (region {job.region})")
        self.index += 1
        self.done += steps
        host.progress(self.done, self.total)
        return out.clamp(0.0, 1.0)

    def fri(self, job: Crop, guided: torch.Tensor, mask_f: torch.Tensor) -> torch.Tensor:
        """The FRI pass on a crop: whole, or tile by tile (each tile sees the earlier tiles' results)."""
        if not job.tiles:
            return self.run_pass(job, guided, mask_f)
        work = guided.clone()
        for t, tile in enumerate(job.tiles):
            y0, x0, y1, x1 = tile.box
            res = self.run_pass(job, work[:, y0:y1, x0:x1], mask_f[:, y0:y1, x0:x1], tile, t)
            cy0, cx0, cy1, cx1 = tile.core
            inner = res[:, cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
            work[:, cy0:cy1, cx0:cx1] = composite(work[:, cy0:cy1, cx0:cx1], inner, mask_f[:, cy0:cy1, cx0:cx1])
        return work

    def frame(self, frame: Frame, out: torch.Tensor) -> tuple | None:
        """SGI on the (shrunk) frame, then the full-resolution crops; writes into ``out`` (the engine's
        own copy) inside the frame's mask only. Returns the preview part of this frame (None when it
        has no structure pass)."""
        rows = list(frame.rows)
        fy0, fx0, fy1, fx1 = frame.box
        channels = out.shape[-1]
        mask = frame.mask[None].expand(len(rows), -1, -1)
        small = None
        if frame.sgi:
            # the page as earlier (overlapping) frames left it; a view when the rows are consecutive
            consecutive = rows == list(range(rows[0], rows[-1] + 1))
            region = out[rows[0] : rows[-1] + 1, fy0:fy1, fx0:fx1] if consecutive else out[rows, fy0:fy1, fx0:fx1]
            if frame.shrunk:  # area averaging of the frame as it is: no page-sized float copy for float input
                small = _rgb(geometry.resize_image(region, frame.sgi_size).clamp(0.0, 1.0)).clone()
                small_mask = frame.sgi_mask[None].expand(len(rows), -1, -1)
            else:
                small = _rgb(region.float().clamp(0.0, 1.0)).clone()
                small_mask = mask
            for job in frame.sgi:  # each crop repaints its own regions of the structure image
                y0, x0, y1, x1 = job.box
                current = small[:, y0:y1, x0:x1]
                own, active = job.masks(small_mask[:, y0:y1, x0:x1])
                new = self.run_pass(job, current, active.float())
                small[:, y0:y1, x0:x1] = composite(current, new, own)
        for job in frame.crops:  # full resolution: the structure pasted into the mask, refined when FRI runs
            y0, x0, y1, x1 = job.box
            local = (y0 - fy0, x0 - fx0, y1 - fy0, x1 - fx0)
            current = out[rows, y0:y1, x0:x1]
            own, active = job.masks(mask[:, local[0] : local[2], local[1] : local[3]])
            crop = _rgb(current.float().clamp(0.0, 1.0))
            guided = crop if small is None else composite(crop, geometry.sample_box(small, frame.size, local), active)
            new = self.fri(job, guided, active.float()) if frame.run_fri else guided
            weight = masks.feather(own, self.config.feather) if self.config.feather else None
            paste_into(out, composite(current, _to_channels(new, channels), own, weight), job.box, rows)
        return (rows, frame, small, mask) if small is not None else None


def inpaint(
    host, image, mask, *, seed: int = 0, config: SGIMConfig | None = None, prefill=None
) -> SGIMResult:
    """Inpaint ``image`` ``[B, H, W, C]`` (C = 1, 3 or 4; float 0..1) inside ``mask`` with SGIM.

    ``mask``: ``[H, W]``, ``[B, H, W]`` or ``[B, H, W, 1]``, 1 = repaint; batch 1 is shared by
    all images; another size is resized (logged). ``prefill``: optional pre-filled pages like
    ``image`` (batch 1 serves all), e.g. a LaMa fill: the structure pass then starts from its content
    inside the mask at ``config.prefill_strength`` instead of pure noise. Returns an ``SGIMResult``
    whose ``image`` has the input's batch, size, dtype and device and C = 1 or 3 (RGBA loses its
    alpha). Outside the (cleaned, optionally grown) mask it equals the input bit for bit. An empty
    mask returns the input without any host call. Exceptions raised by the host (e.g. cancellation
    from ``host.progress``) propagate; inputs are never modified.
    """
    host = check_host(host)
    config = config or SGIMConfig()
    seed = check_seed(seed)
    image = checks.image_batch(image, "image")
    device = image.device
    base = image.detach().cpu()  # the pixels kept outside the mask (input dtype)
    batch, height, width, channels = base.shape
    if prefill is not None:
        prefill = checks.image_batch(prefill, "prefill")
        if prefill.shape[0] not in (1, batch) or tuple(prefill.shape[1:3]) != (height, width):
            raise ValueError(
                f"prefill: expected pages of {width}x{height} like image (batch 1 or {batch}), "
                f"got {tuple(prefill.shape[:3])} as [B, H, W]"
            )
    m = masks.clean(
        mask,
        batch=batch,
        size=(height, width),
        threshold=config.mask_threshold,
        grow_pixels=config.grow_mask,
        dtype=torch.bool,
    )
    if not m.numpy().any():
        log.info("[MDIM] SGIM: the mask is empty, the image is returned unchanged")
        return SGIMResult(image=image, frames=[])
    out, flat_regions = base, []
    if config.flat_fill == "auto":
        filled = flat_fill(base, m)
        if filled.regions:
            out, m, flat_regions = filled.image.detach().cpu(), filled.remaining, filled.regions
            log.info("[MDIM] SGIM: %s", filled.summary())
            for r in flat_regions[:20]:
                log.info("[MDIM] SGIM: page %d, box %s (y0, x0, y1, x1): %d px filled with %s, no model pass",
                         r.batch, r.box, r.pixels, "paper white" if min(r.value) > 0.5 else "solid black")
            if len(flat_regions) > 20:
                log.info("[MDIM] SGIM: ... and %d more flat-filled region(s)", len(flat_regions) - 20)
        if not m.numpy().any():  # every region was flat: no model pass at all
            return SGIMResult(image=out.to(device), frames=[], base=base, device=device, flat_regions=flat_regions)

    gray = base.float().mean(dim=-1) if config.limit_to_panel else None
    frames = plan((height, width), m, config, seed=seed, page_gray=gray)
    sgi_strength = config.prefill_strength if prefill is not None else 1.0
    runner = _Runner(host, config, frames, (height, width), sgi_strength, batch)
    log.info(
        "[MDIM] SGIM: %d pass(es), %d steps; %s",
        runner.count,
        runner.total,
        "; ".join(
            f"{f.size[1]}x{f.size[0]} -> {f.sgi_size[1]}x{f.sgi_size[0]}: {len(f.sgi)} structure crop(s), "
            f"{len(f.crops)} {'refined' if f.run_fri else 'pasted'} crop(s)"
            for f in frames[:4]
        )
        + (" ..." if len(frames) > 4 else ""),
    )

    out = out.clone() if out is base else out  # the engine's own copy (flat fill already made one)
    if prefill is not None:  # the working copy starts from the fill inside the mask
        fill = _to_channels(_rgb(prefill.detach().cpu().float().clamp(0.0, 1.0)), channels)
        out = composite(out, fill.expand(batch, -1, -1, -1), m)
    host.progress(0, runner.total)
    parts = [p for p in (runner.frame(frame, out) for frame in frames) if p is not None]
    return SGIMResult(image=out.to(device), frames=frames, base=base, parts=parts, device=device,
                      flat_regions=flat_regions)
