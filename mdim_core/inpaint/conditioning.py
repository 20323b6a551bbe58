"""Page-level conditioning for one SGIM pass: ControlNet hints, areas and masks cut to the pass's crop.

A CONDITIONING (ComfyUI's list of ``[embedding, {options}]`` entries) is laid out on the whole page:
a ControlNet's hint covers the page, Conditioning (Set Area) and (Set Mask) give areas and masks in
page coordinates. Each SGIM pass samples only a crop of the page (shrunk for the structure pass,
padded at the bottom/right). :func:`crop_page_conditioning` gives a pass copies whose hints, areas and
masks cover exactly that pass's pixels, as if ComfyUI had sampled the whole page. The caller's lists,
dicts, tensors and ControlNet objects are never modified.

Nothing here imports ComfyUI: it reads the documented keys of a conditioning entry (``control``,
``area``, ``mask``) and the attributes of ComfyUI's ControlNet objects (``cond_hint_original``,
``previous_controlnet``, ``extra_concat_orig``, ``upscale_algorithm``, ``copy()``), so it is tested in CI
with small stand-ins and in a real host by the integration suite. ``info`` is the engine's
:class:`mdim_core.inpaint.host.PassInfo`.
"""

from __future__ import annotations

import logging
import math

import torch

log = logging.getLogger("MDIM")


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


def _is_whole_batch(info) -> bool:
    """The pass samples every page of the run whole (no crop, no padding): page-level inputs apply as they are."""
    page = tuple(info.page_size)
    rows = tuple(info.batch_indices)
    every_page = rows == tuple(range(getattr(info, "batch", None) or len(rows)))
    return every_page and tuple(info.box) == (0, 0, *page) and tuple(info.size) == page and tuple(info.padded_size) == page


def batch_rows(t: torch.Tensor, info, name: str) -> torch.Tensor:
    """Rows of a per-page batch ``t`` (a hint or mask) for the pages in this pass; a single row serves all.

    ``t`` must hold one row (shared by every page) or one per page of the run (``info.batch``);
    anything else is an error naming ``name`` and both sizes: which hint belongs to which page
    cannot be guessed.
    """
    rows = tuple(info.batch_indices)
    pages = getattr(info, "batch", None)
    if t.shape[0] == 1:
        return t
    if pages is not None and t.shape[0] != pages or pages is None and rows and max(rows) >= t.shape[0]:
        raise ValueError(
            f"{name}: a batch of {t.shape[0]} for {pages if pages is not None else max(rows) + 1} page(s); "
            f"expected 1 (shared by every page) or one per page"
        )
    if rows == tuple(range(t.shape[0])):
        return t
    return t[list(rows)]


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
        new.cond_hint_original = crop_page_tensor(batch_rows(hint, info, "ControlNet hint"), info, size, linear=not nearest)
    extra = getattr(control, "extra_concat_orig", None)
    if isinstance(extra, list):
        new.extra_concat_orig = [
            crop_page_tensor(batch_rows(c, info, "ControlNet extra image"), info, size, linear=not nearest)
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
    if info is None or getattr(info, "page_size", None) is None or _is_whole_batch(info):
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
                batch_rows(page_mask, info, "conditioning mask"), info, latent_size, step=scale, linear=True, centre_crop=False
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
