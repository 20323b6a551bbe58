"""LaMa (Suvorov et al. 2021) fills on crops around each mask region, at a resolution LaMa knows.

LaMa is a fast feed-forward inpainting network (Fourier convolutions, no sampling). Two things make
it useful on manga pages, and both live here:

* **Loading a user's weights safely** (:func:`load_lama`): big-lama, its anime/manga fine-tunes and
  other files of the same architecture, as ``.safetensors``, as pickled PyTorch state dicts
  (``.pth``/``.ckpt``/``.pt``, read with ``torch.load(weights_only=True)``: no code in the file
  runs), or as TorchScript archives (IOPaint's ``big-lama.pt``), whose tensors are read by a
  restricted reader that never runs the archive's code (:func:`read_weights`). The network itself is
  spandrel's LaMa architecture (an optional dependency; ComfyUI ships it).
* **The crop strategy** (:func:`fill`, as IOPaint's "crop" strategy): every mask region is
  filled on a crop around it with ``context_margin`` pixels of context, and a crop whose long side
  exceeds ``max_side`` (the training resolution, ~512 px) is shrunk to it (antialiased) and the fill
  enlarged back. The page itself is never squashed to 256 or 512 px. Crops are padded to
  multiples of 8, and the result is pasted inside the mask only: pixels outside it come back bit
  for bit. Neighbouring regions share a crop when their union still fits ``max_side``; otherwise
  their crops run one after the other, each filling only its own regions and seeing what the
  earlier ones filled.

Precision: float32 or bfloat16 (autocast, with the Fourier transforms kept in float32). float16 is
refused: LaMa's Fourier units overflow in half precision and give black fills on large inputs
(manga-image-translator#498). Grayscale pages are run as RGB; a page whose channels are all equal
(a grey page loaded as RGB) gets a grey fill, never a colour tint.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..imaging import checks, geometry, masks
from ..imaging.compositing import composite, paste_into
from ..weight_files import read_weights

log = logging.getLogger("MDIM")

Box = tuple[int, int, int, int]  # (y0, x0, y1, x1), end-exclusive
ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

PRECISIONS = ("fp32", "bf16")
#: Key every LaMa generator state dict holds (after its prefix); finds the prefix of the generator.
_PROBE = "model.1.bn_l.running_mean"


def lama_state_dict(weights: dict[str, torch.Tensor], name: str = "weights") -> dict[str, torch.Tensor]:
    """The LaMa generator's weights under spandrel's names (``model.model.<i>...``).

    Accepts the layouts LaMa files come in: spandrel's own (``model.model.``), LaMa training
    checkpoints and IOPaint's TorchScript ``big-lama.pt`` (``generator.model.``, with the
    discriminator and losses left out), a bare generator (``model.``, e.g. manga fine-tunes that keep
    it under ``gen_state_dict``), each optionally inside a wrapper dict (``state_dict``, ...) or
    behind a ``module.`` prefix. Raises ``ValueError`` when no LaMa generator is found.
    """
    keys = list(weights)
    # the generator's prefix: "", "model.", "generator.", "state_dict.generator.", "gen_state_dict.", ...
    probes = sorted((k for k in keys if k == _PROBE or k.endswith("." + _PROBE)), key=lambda k: (len(k), k))
    if not probes:
        raise ValueError(
            f"{name}: no LaMa generator in this file (no '{_PROBE}' weight among {len(weights)} tensors); "
            "expected big-lama or a LaMa fine-tune"
        )
    prefix = probes[0][: -len(_PROBE)]
    body = prefix + "model."
    out = {"model." + k[len(prefix):]: weights[k] for k in keys if k.startswith(body)}
    dropped = len(weights) - len(out)
    if dropped:
        log.info("[MDIM] %s: %d tensor(s) besides the LaMa generator left out (discriminator, losses, ...)", name, dropped)
    return out


# --- the model -----------------------------------------------------------------------------------


def _fourier_input_fp32(module, args):
    x = args[0]
    if isinstance(x, torch.Tensor) and x.is_floating_point() and x.dtype != torch.float32:
        return (x.float(), *args[1:])
    return None


class LamaModel:
    """A loaded LaMa network and how to run it.

    ``module(image [B, 3, H, W], mask [B, 1, H, W]) -> [B, 3, H, W]`` is spandrel's LaMa (inputs in
    0..1, mask 1 = fill, ``H``/``W`` multiples of 8). Calling the :class:`LamaModel` runs it on the
    device of its weights in ``precision`` and returns float32 on the CPU, clamped to 0..1.
    """

    def __init__(self, module: torch.nn.Module, name: str = "LaMa"):
        weights_dtype = {p.dtype for p in module.parameters()}
        if weights_dtype != {torch.float32}:
            raise ValueError(
                f"{name}: weights in {', '.join(sorted(str(d) for d in weights_dtype)) or 'no dtype'}; LaMa keeps "
                "float32 weights (precision='bf16' computes in bfloat16; float16 gives black fills on large inputs)"
            )
        self.module = module.eval()
        self.module.requires_grad_(False)
        self.name = name
        self._hooks = [
            m.register_forward_pre_hook(_fourier_input_fp32)
            for m in self.module.modules()
            if type(m).__name__ == "FourierUnit"
        ]

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    def __call__(self, image: torch.Tensor, mask: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
        precision = check_precision(precision)
        device = self.device
        x = image.to(device, torch.float32)
        m = mask.to(device, torch.float32)
        with torch.inference_mode():
            if precision == "bf16":  # the Fourier units' transforms stay float32 (see _fourier_input_fp32)
                with torch.autocast(device.type, dtype=torch.bfloat16):
                    out = self.module(x, m)
            else:
                out = self.module(x, m)
        return out.detach().to("cpu", torch.float32).clamp(0.0, 1.0)


def check_precision(precision: str) -> str:
    p = str(precision).lower()
    if p in ("fp16", "float16", "half"):
        raise ValueError(
            "precision: float16 is not supported for LaMa: its Fourier units overflow in half precision and give "
            "black fills on large inputs; use 'fp32' or 'bf16'"
        )
    if p not in PRECISIONS:
        raise ValueError(f"precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    return p


def build_lama(weights: dict[str, torch.Tensor], name: str = "LaMa") -> torch.nn.Module:
    """spandrel's LaMa network holding ``weights`` (any LaMa layout, see :func:`lama_state_dict`).

    Raises ``ImportError`` without spandrel and ``ValueError`` when spandrel does not recognise
    the weights as LaMa (naming the architecture it does recognise, if any).
    """
    try:
        import spandrel
    except ImportError as exc:
        raise ImportError("LaMa needs the 'spandrel' package (pip install spandrel; ComfyUI ships it)") from exc
    sd = {k: v.float() if v.is_floating_point() else v for k, v in lama_state_dict(weights, name).items()}
    try:
        desc = spandrel.ModelLoader().load_from_state_dict(sd)
    except spandrel.UnsupportedModelError:
        raise ValueError(f"{name}: spandrel does not recognise these weights as a model it knows") from None
    except (RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0][:300]
        raise ValueError(
            f"{name}: the weights do not fit spandrel's LaMa (big-lama layout: 18 residual blocks): {first}"
        ) from None
    arch = getattr(getattr(desc, "architecture", None), "id", "?")
    if arch != "LaMa":
        raise ValueError(f"{name}: this is a {arch} model, not LaMa")
    return desc.model.float().eval()


def load_lama(path: str | os.PathLike, name: str | None = None) -> LamaModel:
    """Load LaMa weights from a file (see :func:`read_weights`) into spandrel's LaMa network, on the CPU."""
    path = Path(path)
    name = name or path.name
    module = build_lama(read_weights(path), name)
    log.info("[MDIM] LaMa loaded from %s (%.1f M parameters)", name, sum(p.numel() for p in module.parameters()) / 1e6)
    return LamaModel(module, name=name)


# --- the crop strategy -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LamaConfig:
    """Settings of a LaMa fill. Invalid values raise ``ValueError`` naming the field.

    Attributes:
        max_side: a crop whose long side exceeds this is shrunk to it for the model (antialiased)
            and its fill enlarged back; near LaMa's training resolution (512 for big-lama and the
            manga fine-tunes). 0 never shrinks (the model then sees the crop's full resolution).
        context_margin: pixels of context around each mask region in its crop.
        grow_mask: pixels to dilate the mask by (opt-in; 0 keeps the mask exactly).
        mask_threshold: mask values >= this are filled (near-binary values snap).
        precision: ``"fp32"`` or ``"bf16"`` (float16 is refused).
        pad_mode: how crops are padded to multiples of 8: ``"reflect"`` or ``"replicate"``.
    """

    max_side: int = 512
    context_margin: int = 128
    grow_mask: int = 0
    mask_threshold: float = 0.5
    precision: str = "fp32"
    pad_mode: str = "reflect"

    def __post_init__(self) -> None:
        for name, lo in (("max_side", 0), ("context_margin", 0), ("grow_mask", 0)):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < lo:
                raise ValueError(f"{name}: expected an integer >= {lo}, got {v!r}")
        if self.max_side and self.max_side < 16:
            raise ValueError(f"max_side: expected 0 (never shrink) or at least 16, got {self.max_side!r}")
        if not isinstance(self.mask_threshold, (int, float)) or not 0.0 < float(self.mask_threshold) <= 1.0:
            raise ValueError(f"mask_threshold: expected a number in (0, 1], got {self.mask_threshold!r}")
        check_precision(self.precision)
        if self.pad_mode not in ("reflect", "replicate"):
            raise ValueError(f"pad_mode: expected 'reflect' or 'replicate', got {self.pad_mode!r}")


#: The model needs at least this side (three stride-2 downsamplings and a 7x7 reflection pad).
MIN_SIDE = 16
MULTIPLE = 8


@dataclass(frozen=True)
class LamaCrop:
    """One model call of a fill.

    ``box``: the crop in page pixels (``y0, x0, y1, x1``); ``regions``: indices of the mask regions
    it fills (into :attr:`LamaPlan.regions`); ``size``: ``(h, w)`` the model sees before padding
    (the box's size, or the box shrunk to ``max_side``); ``padded``: the padded size actually run.
    """

    index: int
    box: Box
    regions: tuple[int, ...]
    size: tuple[int, int]
    padded: tuple[int, int]

    @property
    def shrunk(self) -> bool:
        return self.size != geometry.box_size(self.box)


def model_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """``(h, w)`` the model sees for a crop of ``size``: unchanged, or shrunk so the long side is ``max_side``."""
    h, w = size
    if not max_side or max(h, w) <= max_side:
        return h, w
    s = max_side / max(h, w)
    return max(1, min(max_side, round(h * s))), max(1, min(max_side, round(w * s)))


def padded_model_size(size: tuple[int, int]) -> tuple[int, int]:
    multiple = MULTIPLE if min(size) >= MIN_SIDE else MIN_SIDE
    return geometry.padded_size(size, multiple)


class LamaPlan:
    """The crops of one mask and which crop fills each mask pixel.

    ``regions``: the boxes of the mask's 8-connected regions (found on an 8x coarser grid, see
    ``masks.region_labels``); ``crops`` in run order. :meth:`owners` maps the pixels of a box to
    the index of the crop that fills them (-1 outside the mask).
    """

    def __init__(self, size, crops, regions, labels, origin, lut, cell):
        self.size = size
        self.crops: list[LamaCrop] = crops
        self.regions: list[Box] = regions
        self._labels, self._origin, self._lut, self._cell = labels, origin, lut, cell

    def owners(self, box: Box) -> np.ndarray:
        """Index of the crop that fills each pixel of ``box`` (int32 ``[h, w]``; -1 where there is no mask)."""
        y0, x0, y1, x1 = box
        out = np.full((y1 - y0, x1 - x0), -1, dtype=np.int32)
        if not self.regions:
            return out
        (oy, ox), c = self._origin, self._cell
        hc, wc = self._labels.shape
        py0, px0, py1, px1 = max(y0, oy), max(x0, ox), min(y1, oy + hc * c), min(x1, ox + wc * c)
        if py0 >= py1 or px0 >= px1:
            return out
        cy0, cx0 = (py0 - oy) // c, (px0 - ox) // c
        cy1, cx1 = -(-(py1 - oy) // c), -(-(px1 - ox) // c)
        block = np.repeat(np.repeat(self._lut[self._labels[cy0:cy1, cx0:cx1]], c, axis=0), c, axis=1)
        sy, sx = py0 - oy - cy0 * c, px0 - ox - cx0 * c
        out[py0 - y0 : py1 - y0, px0 - x0 : px1 - x0] = block[sy : sy + py1 - py0, sx : sx + px1 - px0]
        return out


def _group(boxes: list[Box], max_side: int) -> list[tuple[Box, list[int]]]:
    """Merge overlapping context boxes while the merged crop needs no more shrinking than its parts:
    its long side stays within ``max_side``, or it is one of the two boxes (one holds the other)."""
    groups: list[tuple[Box, list[int]]] = [(b, [i]) for i, b in enumerate(boxes)]
    changed = True
    while changed and len(groups) > 1:
        changed = False
        arr = np.array([g[0] for g in groups], dtype=np.int64)
        alive = np.ones(len(groups), dtype=bool)
        merged: list[tuple[Box, list[int]]] = []
        for i in range(len(groups)):
            if not alive[i]:
                continue
            box, members = groups[i]
            alive[i] = False
            while True:
                b = np.array(box)
                hit = alive & (arr[:, 0] < b[2]) & (b[0] < arr[:, 2]) & (arr[:, 1] < b[3]) & (b[1] < arr[:, 3])
                ok = False
                for j in np.flatnonzero(hit):
                    union = geometry.union_box(box, tuple(int(v) for v in arr[j]))
                    if union == box or union == tuple(int(v) for v in arr[j]) or (
                        not max_side or max(geometry.box_size(union)) <= max_side
                    ):
                        box, members = union, members + groups[j][1]
                        alive[j] = False
                        ok = changed = True
                        break
                if not ok:
                    break
            merged.append((box, members))
        groups = merged
    return sorted((box, sorted(m)) for box, m in groups)


def plan(mask2d: torch.Tensor | np.ndarray, config: LamaConfig) -> LamaPlan:
    """The crops for a binary ``[H, W]`` mask: a context box per region (``context_margin`` around the
    region, clamped to the page), overlapping boxes merged when the merge needs no extra shrinking
    (see :func:`_group`), sorted by ``(y0, x0)``; each crop's model size follows ``max_side``."""
    size = tuple(int(v) for v in mask2d.shape)
    cell = 8
    labels, origin, comps = masks.region_labels(mask2d, cell=cell)
    if not comps:
        return LamaPlan(size, [], [], labels, origin, np.full(1, -1, np.int32), cell)
    boxes = [geometry.expand_box(c, config.context_margin, size) for c in comps]
    grouped = _group(boxes, config.max_side)
    lut = np.full(len(comps) + 1, -1, dtype=np.int32)
    crops = []
    for j, (box, members) in enumerate(grouped):
        lut[np.asarray(members) + 1] = j
        msize = model_size(geometry.box_size(box), config.max_side)
        crops.append(LamaCrop(j, box, tuple(members), msize, padded_model_size(msize)))
    return LamaPlan(size, crops, list(comps), labels, origin, lut, cell)


@dataclass
class LamaResult:
    """The outcome of :func:`fill`: ``image`` ``[B, H, W, C]`` (C = 1 or 3, like the input; RGBA loses its
    alpha) and, per batch image, the plan that ran (``plans[b]``; None for an empty mask)."""

    image: torch.Tensor
    plans: list[LamaPlan | None]

    @property
    def model_calls(self) -> int:
        return sum(len(p.crops) for p in self.plans if p is not None)


def _is_gray(page: torch.Tensor) -> bool:
    """Whether an ``[H, W, C]`` page is grey: one channel, or all channels equal."""
    return page.shape[-1] == 1 or (torch.equal(page[..., 0], page[..., 1]) and torch.equal(page[..., 0], page[..., 2]))


def fill(
    model: ModelFn,
    image,
    mask,
    config: LamaConfig | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> LamaResult:
    """Fill ``image`` ``[B, H, W, C]`` (C = 1, 3 or 4; float 0..1) inside ``mask`` with LaMa, crop by crop.

    ``model``: a :class:`LamaModel` (or any callable ``(image [n, 3, h, w], mask [n, 1, h, w]) ->
    [n, 3, h, w]`` in 0..1; ``h``, ``w`` multiples of 8). ``mask``: ``[H, W]``, ``[B, H, W]`` or ``[B, H, W, 1]``,
    1 = fill; batch 1 is shared; another size is resized (logged). ``progress(done, total)`` is called
    before the first crop and after each one (``total`` = crops of the whole batch); an exception it
    raises (cancel) propagates. Pixels outside the (cleaned, optionally grown) mask come back bit for
    bit; an empty mask returns the input without calling the model. Inputs are never modified.
    """
    config = config or LamaConfig()
    image = checks.image_batch(image, "image")
    device = image.device
    base = image.detach().cpu()
    batch, height, width, channels = base.shape
    m = masks.clean(mask, batch=batch, size=(height, width), threshold=config.mask_threshold,
                    grow_pixels=config.grow_mask, dtype=torch.bool)
    plans: list[LamaPlan | None] = []
    shared: list[tuple[torch.Tensor, LamaPlan]] = []
    for b in range(batch):
        if not bool(m[b].any()):
            plans.append(None)
            continue
        for known, p in shared:
            if torch.equal(known, m[b]):
                plans.append(p)
                break
        else:
            p = plan(m[b], config)
            shared.append((m[b], p))
            plans.append(p)
    total = sum(len(p.crops) for p in plans if p is not None)
    if total == 0:
        log.info("[MDIM] LaMa: the mask is empty, the image is returned unchanged")
        return LamaResult(image=image, plans=plans)
    log.info("[MDIM] LaMa: %d crop(s) over %d image(s); model sizes %s", total, batch,
             ", ".join(f"{c.size[1]}x{c.size[0]}" for c in next(p for p in plans if p).crops[:6]))
    out = base.clone()
    done = 0
    if progress is not None:
        progress(0, total)
    for b, p in enumerate(plans):
        if p is None:
            continue
        gray = _is_gray(base[b])
        for crop in p.crops:
            y0, x0, y1, x1 = crop.box
            owner = torch.from_numpy(p.owners(crop.box))
            inside = m[b, y0:y1, x0:x1]
            own = (inside & (owner == crop.index))[None]
            active = (inside & (owner >= crop.index))[None]  # earlier crops' fills are context now
            current = out[b : b + 1, y0:y1, x0:x1]
            rgb = current.float().clamp(0.0, 1.0)
            rgb = rgb.expand(-1, -1, -1, 3) if rgb.shape[-1] == 1 else rgb
            new = _run_crop(model, rgb, active, crop, config)
            if gray or channels == 1:
                new = new.mean(dim=-1, keepdim=True).expand(-1, -1, -1, 3)
            new = new[..., :1] if channels == 1 else new
            paste_into(out, composite(current, new, own), crop.box, [b])
            done += 1
            if progress is not None:
                progress(done, total)
    return LamaResult(image=out.to(device), plans=plans)


def _run_crop(model: ModelFn, rgb: torch.Tensor, active: torch.Tensor, crop: LamaCrop, config: LamaConfig) -> torch.Tensor:
    """One model call: shrink (when needed), pad, run, unpad, enlarge back. ``[1, h, w, 3]`` float32."""
    h, w = rgb.shape[1:3]
    hs, ws = crop.size
    if crop.shrunk:
        small = geometry.resize_image(rgb, (hs, ws))
        small_mask = geometry.shrink_mask(active.float(), (hs, ws))
    else:
        small, small_mask = rgb, active.float()
    multiple = MULTIPLE if min(hs, ws) >= MIN_SIDE else MIN_SIDE
    img_p = geometry.pad_image(small, multiple, config.pad_mode)
    mask_p = geometry.pad_mask(small_mask, multiple)
    x = img_p.permute(0, 3, 1, 2).contiguous()
    mk = mask_p[:, None].contiguous()
    if isinstance(model, LamaModel):
        y = model(x, mk, config.precision)
    else:
        y = model(x, mk)
    if not isinstance(y, torch.Tensor) or tuple(y.shape) != (1, 3, *img_p.shape[1:3]):
        got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise RuntimeError(f"LaMa returned {got}, expected {(1, 3, *img_p.shape[1:3])}")
    y = y.detach().to("cpu", torch.float32)
    if not bool(torch.isfinite(y).all()):
        raise RuntimeError(f"LaMa returned NaN or infinite pixels on the crop at {crop.box}")
    out = y[:, :, :hs, :ws].permute(0, 2, 3, 1).clamp(0.0, 1.0)
    if crop.shrunk:
        out = geometry.resize_image(out, (h, w))
    return out.contiguous()
