"""MDIM SGIM Inpaint: two-pass manga inpainting (SGI on the shrunk page, FRI at full resolution on crops).

The engine (``mdim_core.inpaint.sgim``) plans the crops, shrinks, pads, pastes and composites; this
module is the ComfyUI host of ``mdim_core.inpaint.host.SGIMHost``: it encodes/decodes with the graph's
VAE (tiled when a crop is large), samples with ``comfy.sample`` on the graph's MODEL with a
noise mask, builds the masked-image conditioning of 9-channel inpainting checkpoints at each
pass's resolution, shows one progress bar (with previews) over every pass, and stops when the
user cancels. Page-level conditioning (ControlNet hints, Conditioning Set Area/Mask) is cut to
each pass's crop. Inputs are never modified: the MODEL is not cloned or patched (it is only
sampled), conditionings and ControlNets are copied before anything is changed, tensors are never
edited in place.
"""

from __future__ import annotations

import contextlib
import logging
import math

import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
import node_helpers
import torch
import torch.nn.functional as F
from comfy_api.latest import io

from ..mdim_core.inpaint import sgim

log = logging.getLogger("MDIM")

PLAN_OPTIONS = ["halve", "fit"]
RUN_FRI_OPTIONS = ["auto", "always", "never"]
SymVAE = io.Custom("MDIM_SYMVAE")

# Tile sizes of ComfyUI's own tiled VAE nodes (pixels for encode, latent cells for decode).
ENCODE_TILE, ENCODE_OVERLAP = 512, 64
DECODE_TILE, DECODE_OVERLAP = 64, 16


def is_inpaint_model(model) -> bool:
    """True for 9-channel inpainting checkpoints (they read ``concat_latent_image``/``concat_mask``).

    ComfyUI marks them with the concat keys ``("mask", "masked_image")`` (``BaseModel.set_inpaint``).
    """
    return "masked_image" in tuple(getattr(model.model, "concat_keys", ()))


def latent_cell_mask(mask: torch.Tensor, scale: int) -> torch.Tensor:
    """``[B, H, W]`` 0/1 pixel mask -> ``[B, 1, H/scale, W/scale]``: 1 on every latent cell the mask touches.

    The sampler's noise mask then frees whole cells, so every masked pixel is repainted; the engine's
    pixel-space composite keeps the pixels outside the mask exact.
    """
    return F.max_pool2d(mask[:, None].float(), scale)


def grey_fill(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The masked-image input of 9-channel inpainting models: 0.5 inside the mask (as core InpaintModelConditioning)."""
    keep = (1.0 - mask.round())[..., None]
    return (image - 0.5) * keep + 0.5


# --- page-level conditioning -> one pass ---------------------------------------------------
# ControlNet hints, areas and masks of a CONDITIONING are laid out on the whole page; each SGIM
# pass samples a crop of it (shrunk for the structure pass, padded at the bottom/right). These
# helpers give each pass copies whose hints/areas/masks cover exactly that pass's pixels.


def _axis_sources(
    n_out: int,
    step: int,
    box: tuple[float, float],
    size: int,
    page_len: int,
    src: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the centres of ``n_out`` output cells (``step`` pass pixels each) fall in a source axis.

    Pass pixel ``q`` (content ``0 <= q < size``; padding beyond it repeats the last content pixel)
    shows page pixels ``box[0] + q * (box[1] - box[0]) / size``; the source (a hint or mask axis)
    spans the page proportionally with its window ``src = (offset, length)``. ``box`` may be
    fractional (the exact extent of a crop of a shrunk page). Returns the source pixel under each
    centre (as nearest-exact resizing picks it; float64 is exact here for whole-pixel boxes) and
    the centre as a float coordinate in source pixel-centre units (for linear interpolation).
    """
    start, stop = box
    offset, length = src
    c2 = torch.clamp((2 * torch.arange(n_out, dtype=torch.int64) + 1) * step, max=2 * size - 1)  # 2 * centre
    num = (2 * start * size + c2.double() * (stop - start)) * length
    den = 2 * size * page_len
    nearest = offset + torch.clamp(torch.floor(num / den).to(torch.int64), 0, length - 1)
    centre = offset + num / den - 0.5
    return nearest, centre


def _take_linear(t: torch.Tensor, dim: int, centre: torch.Tensor, lo_bound: int, hi_bound: int) -> torch.Tensor:
    """Linear interpolation of ``t`` along ``dim`` at ``centre`` (edges clamped to [lo_bound, hi_bound])."""
    lo = torch.floor(centre)
    frac = (centre - lo).to(torch.float32)
    lo = lo.to(torch.int64)
    i0 = torch.clamp(lo, lo_bound, hi_bound)
    i1 = torch.clamp(lo + 1, lo_bound, hi_bound)
    shape = [1] * t.ndim
    shape[dim] = -1
    frac = frac.view(shape).to(t.device)
    a = t.index_select(dim, i0.to(t.device)).float()
    b = t.index_select(dim, i1.to(t.device)).float()
    return (a * (1 - frac) + b * frac).to(t.dtype)


def _page_window(src_h: int, src_w: int, page_h: int, page_w: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The part of a source that covers the page when their aspect ratios differ.

    ComfyUI centre-crops a hint to the sampled image's aspect ratio (``common_upscale(..., "center")``);
    the same window, taken against the page, keeps crops consistent with a whole-page pass.
    """
    old, new = src_w / src_h, page_w / page_h
    y = x = 0
    if old > new:
        x = round((src_w - src_w * (new / old)) / 2)
    elif old < new:
        y = round((src_h - src_h * (old / new)) / 2)
    return (y, src_h - 2 * y), (x, src_w - 2 * x)


def crop_page_tensor(
    t: torch.Tensor,
    info,
    out_size: tuple[int, int],
    step: int = 1,
    linear: bool = False,
    centre_crop: bool = True,
) -> torch.Tensor:
    """The part of a page-aligned tensor ``[..., h, w]`` (any resolution) that one pass sees.

    Returns ``[..., out_size[0], out_size[1]]``: cell ``(i, j)`` (``step`` pass pixels wide) takes
    the source at the page point under its centre (padding repeats the last row/column of the
    pass content, as the engine pads the image). ``linear``: interpolate linearly instead of
    taking the source pixel under the centre. ``centre_crop``: a source of another aspect ratio
    covers the page with its centre part, as ControlNet hints do; else it is stretched over the
    page, as ComfyUI resizes cond masks.
    """
    page_h, page_w = info.page_size
    (y0, x0, y1, x1), (h, w) = _extent(info), info.size
    if centre_crop:
        win_y, win_x = _page_window(t.shape[-2], t.shape[-1], page_h, page_w)
    else:
        win_y, win_x = (0, t.shape[-2]), (0, t.shape[-1])
    ny, cy = _axis_sources(out_size[0], step, (y0, y1), h, page_h, win_y)
    nx, cx = _axis_sources(out_size[1], step, (x0, x1), w, page_w, win_x)
    if not linear:
        return t.index_select(-2, ny.to(t.device)).index_select(-1, nx.to(t.device))
    t = _take_linear(t, t.ndim - 2, cy, win_y[0], win_y[0] + win_y[1] - 1)
    return _take_linear(t, t.ndim - 1, cx, win_x[0], win_x[0] + win_x[1] - 1)


def _extent(info) -> tuple:
    """The page area the pass shows: exact (fractional) for a crop of a shrunk page, else ``box``."""
    extent = getattr(info, "extent", None)
    return tuple(extent) if extent is not None else tuple(info.box)


def _is_whole_page(info) -> bool:
    page = tuple(info.page_size)
    return tuple(info.box) == (0, 0, *page) and tuple(info.size) == page and tuple(info.padded_size) == page


def _batch_rows(t: torch.Tensor, info) -> torch.Tensor:
    """Rows of a per-page batch (hint/mask) for the pages in this pass; a single row serves all."""
    rows = tuple(info.batch_indices)
    if rows and t.shape[0] > 1 and rows != tuple(range(t.shape[0])) and max(rows) < t.shape[0]:
        return t[list(rows)]
    return t


def crop_control(control, info, memo: dict):
    """A copy of a ControlNet chain whose hints (and extra concat images) cover this pass's pixels.

    The hint becomes the page hint's part under the pass at the pass's padded pixel size, so the
    ControlNet's own resize to ``latent * compression`` keeps hint and pass pixels aligned. The
    caller's objects are not touched (``memo`` maps ``id(original) -> copy`` so a control shared by
    positive and negative, or by two chains, is copied once).
    """
    if control is None:
        return None
    if id(control) in memo:
        return memo[id(control)]
    prev = getattr(control, "previous_controlnet", None)
    new_prev = crop_control(prev, info, memo)
    hint = getattr(control, "cond_hint_original", None)
    has_hint = isinstance(hint, torch.Tensor) and hint.ndim == 4
    if not callable(getattr(control, "copy", None)) or (not has_hint and new_prev is prev):
        memo[id(control)] = control
        return control
    new = control.copy()
    new.previous_controlnet = new_prev
    for cache in ("cond_hint", "control_input", "extra_concat"):  # per-size caches start empty
        if hasattr(new, cache):
            setattr(new, cache, None)
    nearest = str(getattr(control, "upscale_algorithm", "nearest-exact")).startswith("nearest")
    size = tuple(info.padded_size)
    if has_hint:
        new.cond_hint_original = crop_page_tensor(_batch_rows(hint, info), info, size, linear=not nearest)
    extra = getattr(control, "extra_concat_orig", None)
    if isinstance(extra, list):
        new.extra_concat_orig = [
            crop_page_tensor(_batch_rows(c, info), info, size, linear=not nearest)
            if isinstance(c, torch.Tensor) and c.ndim == 4 and c.shape[-1] * c.shape[-2] > 1
            else c
            for c in extra
        ]
    memo[id(control)] = new
    return new


def _area_interval(p0: float, p1: float, box: tuple[float, float], size: int, padded: int, scale: int):
    """Page pixel interval [p0, p1) -> (offset, length) in pass latent cells, or None if outside."""
    start, stop = box
    if p1 <= start or p0 >= stop:
        return None
    factor = size / (stop - start)
    cells = padded // scale
    # the cells at least half inside the area
    first = 0 if p0 <= start else math.ceil((p0 - start) * factor / scale - 0.5)
    end = cells if p1 >= stop else math.floor((p1 - start) * factor / scale + 0.5)
    end = min(end, cells)
    if end <= first:
        return None
    return first, end - first


def crop_area(area, info, scale: int):
    """A cond ``area`` on the page -> ``(h, w, y, x)`` in this pass's latent cells; None if outside.

    ``area`` is ``(h, w, y, x)`` in page latent cells (Conditioning Set Area) or
    ``("percentage", h, w, y, x)`` as fractions of the page; other layouts are returned unchanged.
    """
    page_h, page_w = info.page_size
    if len(area) == 5 and area[0] == "percentage":
        h, w, y, x = (float(v) for v in area[1:])
        ys, xs = (y * page_h, (y + h) * page_h), (x * page_w, (x + w) * page_w)
    elif len(area) == 4 and not isinstance(area[0], str):
        h, w, y, x = (int(v) for v in area)
        ys, xs = (y * scale, (y + h) * scale), (x * scale, (x + w) * scale)
    else:
        return area
    (y0, x0, y1, x1), (sh, sw), (ph, pw) = _extent(info), info.size, info.padded_size
    ay = _area_interval(*ys, (y0, y1), sh, ph, scale)
    ax = _area_interval(*xs, (x0, x1), sw, pw, scale)
    if ay is None or ax is None:
        return None
    return (ay[1], ax[1], ay[0], ax[0])


def crop_page_conditioning(conditioning, info, scale: int, memo: dict | None = None):
    """Copies of a CONDITIONING's entries with ControlNet hints, areas and masks for one pass.

    Entries whose area or mask lies wholly outside the pass are dropped when others remain;
    when none would remain, the first is kept with strength 0 (what ComfyUI does on the page
    where no area applies: that entry adds nothing). Entries without page-level keys are
    passed through as they are; the caller's lists, dicts, tensors and controls are not modified.
    """
    if info is None or getattr(info, "page_size", None) is None or _is_whole_page(info):
        return conditioning
    memo = {} if memo is None else memo
    latent_size = (info.padded_size[0] // scale, info.padded_size[1] // scale)
    kept, outside = [], []
    for entry in conditioning:
        values = entry[1]
        changed, out = {}, False
        if values.get("control") is not None:
            control = crop_control(values["control"], info, memo)
            if control is not values["control"]:
                changed["control"] = control
        if values.get("area") is not None:
            area = crop_area(values["area"], info, scale)
            if area is None:
                out = True
                area = (*latent_size, 0, 0)
            if area is not values["area"]:
                changed["area"] = area
        mask = values.get("mask")
        if isinstance(mask, torch.Tensor) and mask.ndim in (2, 3):
            page_mask = mask if mask.ndim == 3 else mask[None]
            crop = crop_page_tensor(
                _batch_rows(page_mask, info), info, latent_size, step=scale, linear=True, centre_crop=False
            )
            out = out or not bool(crop.any())
            changed["mask"] = crop
        new = [entry[0], {**values, **changed}, *entry[2:]] if changed else entry
        (outside if out else kept).append(new)
    if kept:
        return kept
    if not outside:
        return conditioning
    first = outside[0]
    log.warning(
        "[MDIM] SGIM: no entry of a conditioning covers the crop at %s (y0, x0, y1, x1) with its area/mask, so "
        "that pass gets no prompt there; combine area/mask conditionings with a whole-page one (Conditioning Combine)",
        info.box,
    )
    return [[first[0], {**first[1], "strength": 0.0}, *first[2:]]]


@contextlib.contextmanager
def _tile_bars_silenced():
    """ComfyUI's tiled VAE opens progress bars of its own, without a node id: shown on the running
    node, they would make the run's one bar jump to tile counts. Bars opened inside this block report
    nowhere; bars opened before it (the run's own) keep reporting. The global hook is put back after."""
    hook = comfy.utils.PROGRESS_BAR_HOOK
    comfy.utils.set_progress_bar_global_hook(None)
    try:
        yield
    finally:
        comfy.utils.set_progress_bar_global_hook(hook)


class ComfyHost:
    """``mdim_core.inpaint.host.SGIMHost`` backed by the graph's MODEL, VAE and conditionings.

    Args:
        model: a ComfyUI ``ModelPatcher`` (sampled as is; LoRAs, zero-SNR and other patches apply).
        vae: a ComfyUI ``VAE``.
        positive, negative: CONDITIONING lists laid out on the whole page. Each pass gets copies
            whose ControlNet hints (every ControlNet of a chain, at any hint resolution), areas
            (Conditioning Set Area, also as percentages) and masks (Conditioning Set Mask) are cut
            to the part of the page that pass samples, shrunk and padded like its image; entries
            whose area/mask misses the pass are left out. Other keys pass through unchanged.
        cfg, sampler_name, scheduler: as in KSampler.
        tiled_vae_megapixels: crops with more megapixels than this are encoded/decoded in tiles
            (0: only when the VAE's own memory estimate exceeds the free memory). Untiled calls that
            run out of memory are retried tiled.
        symvae: optional Symmetric VAE (``decode(latent, source=, mask=)``) used to decode.
        node_id: the node whose progress bar is shown.
    """

    def __init__(
        self,
        model,
        vae,
        positive,
        negative,
        *,
        cfg: float,
        sampler_name: str,
        scheduler: str,
        tiled_vae_megapixels: float = 4.0,
        symvae=None,
        node_id: str | None = None,
    ):
        self.model = model
        self.vae = vae
        self.positive = positive
        self.negative = negative
        self.cfg = float(cfg)
        self.sampler_name = sampler_name
        self.scheduler = scheduler
        self.tiled_vae_megapixels = float(tiled_vae_megapixels)
        self.symvae = symvae
        self.node_id = node_id
        scale = vae.spacial_compression_encode()
        if not isinstance(scale, int) or scale < 1:
            raise ValueError(f"vae: expected an image VAE with a fixed downscale factor (8 for SD), got {scale!r}")
        self.latent_scale = scale
        self.inpaint_model = is_inpaint_model(model)
        self._pbar = None
        self._previewer = None
        self._previewer_ready = False
        self.tiled_calls = 0  # how many VAE calls ran tiled (reported in the log)

    # --- VAE -------------------------------------------------------------------------------
    def _needs_tiles(self, pixels: int, estimate: float) -> bool:
        if self.tiled_vae_megapixels > 0 and pixels > self.tiled_vae_megapixels * 1e6:
            return True
        try:
            free = comfy.model_management.get_free_memory(self.vae.device)
        except Exception:  # pragma: no cover - exotic devices
            return False
        return estimate > free

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = image.shape
        estimate = self.vae.memory_used_encode((b, 3, h, w), self.vae.vae_dtype)
        if not self._needs_tiles(h * w, estimate):
            try:
                return self.vae.encode(image)
            except comfy.model_management.OOM_EXCEPTION:
                log.warning("[MDIM] SGIM: VAE encode of %dx%d ran out of memory, retrying tiled", w, h)
                comfy.model_management.soft_empty_cache()
        self.tiled_calls += 1
        with _tile_bars_silenced():
            return self.vae.encode_tiled(image, tile_x=ENCODE_TILE, tile_y=ENCODE_TILE, overlap=ENCODE_OVERLAP)

    def decode(self, latent: torch.Tensor, *, source=None, mask=None) -> torch.Tensor:
        if self.symvae is not None:  # MDIM_SYMVAE handle: loads its VAE itself, tiles large images itself
            return self.symvae.decode(latent, source=source, mask=mask)
        b, _, h, w = latent.shape
        s = self.latent_scale
        estimate = self.vae.memory_used_decode(tuple(latent.shape), self.vae.vae_dtype)
        if not self._needs_tiles(h * w * s * s, estimate):
            try:
                return self.vae.decode(latent)
            except comfy.model_management.OOM_EXCEPTION:
                log.warning("[MDIM] SGIM: VAE decode of %dx%d ran out of memory, retrying tiled", w * s, h * s)
                comfy.model_management.soft_empty_cache()
        self.tiled_calls += 1
        with _tile_bars_silenced():
            return self.vae.decode_tiled(latent, tile_x=DECODE_TILE, tile_y=DECODE_TILE, overlap=DECODE_OVERLAP)

    # --- sampling --------------------------------------------------------------------------
    def pass_conds(self, image: torch.Tensor, mask: torch.Tensor, cells: torch.Tensor, info=None):
        """Positive/negative for one pass.

        ControlNet hints, areas and masks are cut to the pass's part of the page
        (``crop_page_conditioning``); 9-channel models get copies with the masked-image conditioning.
        """
        memo: dict = {}  # a ControlNet shared by positive and negative is copied once
        positive = crop_page_conditioning(self.positive, info, self.latent_scale, memo)
        negative = crop_page_conditioning(self.negative, info, self.latent_scale, memo)
        if not self.inpaint_model:
            return positive, negative
        values = {"concat_latent_image": self.encode(grey_fill(image, mask)), "concat_mask": cells}
        return (
            node_helpers.conditioning_set_values(positive, values),
            node_helpers.conditioning_set_values(negative, values),
        )

    def denoise(self, latent, *, image, mask, strength, steps, seed, info):
        comfy.model_management.throw_exception_if_processing_interrupted()
        cells = latent_cell_mask(mask, self.latent_scale)
        positive, negative = self.pass_conds(image, mask, cells, info)
        latent = comfy.sample.fix_empty_latent_channels(self.model, latent)
        # The schedule of round(steps / strength) steps, of which the last `steps` run.
        full = max(steps, round(steps / strength)) if strength < 1.0 else steps
        start = full - steps if full > steps else None
        # latent_preview.prepare_callback would open a progress bar per pass; this uses its previewer
        # with the run's single bar, whose position counts the steps of every pass before this one.
        previewer = self._get_previewer()

        def callback(step, x0, x, total_steps):
            preview = previewer.decode_latent_to_preview_image("JPEG", x0) if previewer is not None else None
            self._report(info.steps_before + step + 1, info.total_steps, preview)

        with torch.random.fork_rng(devices=[]):  # prepare_noise reseeds torch's global generator
            noise = comfy.sample.prepare_noise(latent, seed)
            return comfy.sample.sample(
                self.model,
                noise,
                full,
                self.cfg,
                self.sampler_name,
                self.scheduler,
                positive,
                negative,
                latent,
                denoise=1.0,
                start_step=start,
                noise_mask=cells,
                callback=callback,
                disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED,
                seed=seed,
            )

    # --- progress and cancel ---------------------------------------------------------------
    def _get_previewer(self):
        if not self._previewer_ready:
            self._previewer_ready = True
            try:
                self._previewer = latent_preview.get_previewer(
                    self.model.load_device, self.model.model.latent_format
                )
            except Exception as exc:  # previews are a nicety; never fail a run for them
                log.info("[MDIM] SGIM: no latent previews (%s)", exc)
        return self._previewer

    def _report(self, done: int, total: int, preview=None) -> None:
        comfy.model_management.throw_exception_if_processing_interrupted()
        if self._pbar is None:
            self._pbar = comfy.utils.ProgressBar(total, node_id=self.node_id)
        self._pbar.update_absolute(done, total, preview)

    def progress(self, done: int, total: int, preview: torch.Tensor | None = None) -> None:
        image = None
        if preview is not None:
            from PIL import Image

            arr = (preview.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
            image = ("JPEG", Image.fromarray(arr), latent_preview.MAX_PREVIEW_RESOLUTION)
        self._report(done, total, image)


class MDIMSGIMInpaint(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        d = sgim.SGIMConfig()  # one set of defaults for the node, the command line and the engine
        return io.Schema(
            node_id="MDIM_SGIMInpaint",
            display_name="MDIM SGIM Inpaint",
            category="MDIM/inpaint",
            description=(
                "Removes what the mask covers (text, SFX) from a manga page and redraws what was under it, at "
                "scan resolution. Each mask region is cropped with context; a first pass inpaints the crop "
                "shrunk to at most 'sgi_max_side' (structure), a second pass refines it at full resolution "
                "(FRI). Pixels outside the mask are returned unchanged, bit for bit. Works with standard and "
                "9-channel inpainting checkpoints; LoRAs, ControlNets and other conditioning pass through."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The diffusion model (Load Checkpoint, optionally through MDIM Zero-SNR Model or LoRA loaders)."),
                io.Conditioning.Input("positive", tooltip="Positive prompt (CLIP Text Encode), e.g. 'manga, manga style, comic, monochrome'. Apply ControlNet, Conditioning (Set Area) and (Set Mask) outputs work too: give hints, areas and masks for the whole page; each pass gets the part under its crop."),
                io.Conditioning.Input("negative", tooltip="Negative prompt (CLIP Text Encode). ControlNet hints, areas and masks on it follow each crop as on positive."),
                io.Vae.Input("vae", tooltip="The VAE of the checkpoint (Load Checkpoint's VAE output)."),
                io.Image.Input("image", tooltip="The page(s) to inpaint, any size; grayscale, RGB or RGBA (alpha is dropped)."),
                io.Mask.Input("mask", tooltip="What to remove and redraw (white/1 = repaint). A Load Image MASK output or Image To Mask; a different size is resized, one mask serves a whole batch."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True, tooltip="Random seed; the same seed gives the same result. The k-th crop that runs uses seed + k."),
                io.Int.Input("steps", default=d.steps, min=1, max=1000, tooltip="Sampling steps of the structure pass (SGI, full denoise)."),
                io.Float.Input("cfg", default=7.0, min=0.0, max=100.0, step=0.1, round=0.01, tooltip="Classifier-free guidance scale, as in KSampler."),
                io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS, default="euler", tooltip="Sampler, as in KSampler (euler, dpmpp_2m or ddim suit zero-SNR models; heun does not)."),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, default="simple", tooltip="Scheduler, as in KSampler. 'simple' starts at the terminal timestep like trailing spacing, which zero-SNR models need."),
                io.Int.Input("sgi_max_side", default=d.sgi_max_side, min=64, max=8192, step=8, tooltip="Longest side of the page (or panel) in the structure pass: a larger page is shrunk (by halving, or by 'plan') to at most this, so the model sees it at the scale it knows; 1024 for SD1.5-sized models."),
                io.Combo.Input("plan", options=PLAN_OPTIONS, default=d.plan, tooltip="How the page is shrunk for the structure pass: 'halve' (halve until within sgi_max_side, as in MDIM) or 'fit' (scale once to exactly sgi_max_side)."),
                io.Float.Input("fri_strength", default=d.fri_strength, min=0.01, max=1.0, step=0.01, tooltip="Denoise of the full-resolution refinement pass (FRI). 0.5 keeps the structure of the first pass and redraws detail such as screentone."),
                io.Int.Input("fri_steps", default=d.fri_steps, min=1, max=1000, tooltip="Steps the refinement pass actually runs (the last fri_steps of a schedule of fri_steps / fri_strength steps)."),
                io.Combo.Input("run_fri", options=RUN_FRI_OPTIONS, default=d.run_fri, tooltip="'auto': refine at full resolution only when the structure pass had to shrink the page; 'always'; 'never' (structure pass only, upscaled)."),
                io.Int.Input("grow_mask", default=d.grow_mask, min=0, max=256, tooltip="Grow the mask by this many pixels (opt-in: pixels that close to the mask may change too). 0 keeps your mask exactly."),
                io.Int.Input("feather", default=d.feather, min=0, max=256, tooltip="Blend the result into the page over this many pixels, inside the mask only (0 = hard edge)."),
                io.Int.Input("context_margin", default=d.context_margin, min=0, max=4096, tooltip="Pixels around each mask region that the model sees as context, in the pixels of each pass: the shrunk page in the structure pass, the page in the refinement pass."),
                io.Int.Input("min_crop_side", default=d.min_crop_side, min=0, max=8192, step=8, tooltip="Crops are widened to at least this side (within the page or panel, in the pixels of each pass) so small regions still get enough context; 512 suits SD1.5."),
                io.Boolean.Input("limit_to_panel", default=d.limit_to_panel, tooltip="Work panel by panel (panels are found from the white gutters): each panel holding mask is shrunk on its own for the structure pass and crops stay inside it, so context never comes from the neighbouring panel."),
                io.Float.Input("tiled_vae_megapixels", default=4.0, min=0.0, max=1000.0, step=0.5, tooltip="Encode/decode crops larger than this many megapixels in tiles to save memory (0: only when the VAE's memory estimate exceeds free memory). Out-of-memory errors always retry tiled."),
                SymVAE.Input("symvae", optional=True, tooltip="Optional MDIM Symmetric VAE (from MDIM Symmetric VAE Loader): decodes with the page's own encoder features, keeping screentone crisp."),
            ],
            outputs=[
                io.Image.Output("image", tooltip="The page with the masked area redrawn; every pixel outside the mask equals the input."),
                io.Image.Output("sgi_preview", tooltip="The page with the (upscaled) structure pass pasted into the mask, before refinement: for checking what the first pass drew."),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(
        cls,
        model,
        positive,
        negative,
        vae,
        image,
        mask,
        seed,
        steps,
        cfg,
        sampler_name,
        scheduler,
        sgi_max_side,
        plan,
        fri_strength,
        fri_steps,
        run_fri,
        grow_mask,
        feather,
        context_margin,
        min_crop_side,
        limit_to_panel,
        tiled_vae_megapixels,
        symvae=None,
    ) -> io.NodeOutput:
        if sampler_name not in comfy.samplers.KSampler.SAMPLERS:
            raise ValueError(f"sampler_name: expected one of {', '.join(comfy.samplers.KSampler.SAMPLERS)}, got {sampler_name!r}")
        if scheduler not in comfy.samplers.KSampler.SCHEDULERS:
            raise ValueError(f"scheduler: expected one of {', '.join(comfy.samplers.KSampler.SCHEDULERS)}, got {scheduler!r}")
        if not isinstance(cfg, (int, float)) or not math.isfinite(cfg) or cfg < 0:
            raise ValueError(f"cfg: expected a finite number >= 0, got {cfg!r}")
        if not isinstance(tiled_vae_megapixels, (int, float)) or tiled_vae_megapixels < 0:
            raise ValueError(f"tiled_vae_megapixels: expected a number >= 0, got {tiled_vae_megapixels!r}")
        if symvae is not None:
            if not callable(getattr(symvae, "decode", None)):
                raise ValueError(f"symvae: expected the output of MDIM Symmetric VAE Loader, got {type(symvae).__name__}")
            if getattr(symvae, "vae", vae) is not vae:
                log.warning(
                    "[MDIM] SGIM: the Symmetric VAE was loaded on a different VAE than the one connected to 'vae'; "
                    "connect the same VAE to both so latents decode correctly"
                )
        config = sgim.SGIMConfig(
            steps=steps,
            fri_steps=fri_steps,
            fri_strength=fri_strength,
            sgi_max_side=sgi_max_side,
            plan=plan,
            run_fri=run_fri,
            grow_mask=grow_mask,
            feather=feather,
            context_margin=context_margin,
            min_crop_side=min_crop_side,
            limit_to_panel=bool(limit_to_panel),
        )
        hidden = getattr(cls, "hidden", None)
        host = ComfyHost(
            model,
            vae,
            positive,
            negative,
            cfg=cfg,
            sampler_name=sampler_name,
            scheduler=scheduler,
            tiled_vae_megapixels=tiled_vae_megapixels,
            symvae=symvae,
            node_id=getattr(hidden, "unique_id", None) if hidden is not None else None,
        )
        result = sgim.inpaint(host, image, mask, seed=seed, config=config)
        if host.tiled_calls:
            log.info("[MDIM] SGIM: %d VAE call(s) ran tiled", host.tiled_calls)
        return io.NodeOutput(result.image, result.sgi_preview)


NODES = [MDIMSGIMInpaint]
