"""The Symmetric VAE: an SD-family VAE whose decoder also sees the encoder's features.

Python API (this is what the ComfyUI nodes and the SGIM engine call)::

    from mdim_core.symvae import SymmetricVAE, load_adapters

    sym = SymmetricVAE(base_vae)                 # base: diffusers AutoencoderKL or ComfyUI
                                                 # VAE.first_stage_model; never copied
    load_adapters(sym, "page_adapters.safetensors")   # optional: trained adapters
    latent = sym.encode(image)                   # image [B,H,W,C] 0..1 -> raw latent [B,4,H/8,W/8]
    out = sym.decode(latent, source=image, mask=mask)   # -> image [B,H,W,3] 0..1
    clean = sym.restore(old_scan)                # old scan [B,H,W,C] -> clean page [B,H,W,3]

``decode(latent, source=None, mask=None, fill="base", ...)``
    ``latent`` is the raw latent the base VAE's decoder takes (ComfyUI's LATENT
    ``samples``; in diffusers *before* multiplying by ``scaling_factor``). ``source`` is
    the image the skip features come from, exactly 8x the latent's size (for inpainting: the
    original page; for a plain round trip: the encoded image). ``mask`` ([B,H,W] or [H,W],
    1 = repaint; values >= 0.5 count as hole) marks the hole whose content must not come back: the hole is filled before
    the encoder taps are computed (``fill="base"``: with the base VAE's decode of
    ``latent``, i.e. the current inpainting result; ``"white"``: with paper white), and the
    skip features are switched off inside the hole, dilated by ``gate_dilation`` pixels and
    by one cell at every level. The decoded hole then depends only on ``latent``, never on
    the removed pixels. Without ``source`` the result is the base VAE's decode. Large
    images are decoded in overlapping tiles (``tile`` pixels, ``overlap`` pixels), each
    tile computing its own taps, so full-resolution skip features of a whole page never
    exist at once. Returns float32 on the latent's device, clamped to 0..1.

With zero-initialised adapters (no trained file loaded) every output equals the base VAE's.
The SGIM engine uses ``decode(latent, source=page_crop, mask=mask_crop)`` as its decoder.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..imaging import checks, geometry, masks
from .layout import VAELayout, detect_layout

log = logging.getLogger("MDIM")

FILL_MODES = ("base", "white")

#: Images with more pixels than this are decoded in tiles unless told otherwise.
DEFAULT_TILE = 1024
DEFAULT_OVERLAP = 128
DEFAULT_GATE_DILATION = 8

#: ``progress(done, total)``: called after every tile of a decode/restore; may raise to cancel.
Progress = Callable[[int, int], None]


class Adapter(torch.nn.Module):
    """conv3x3 -> SiLU -> conv1x1, the last one zero-initialised (so it adds exactly 0)."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int, generator: torch.Generator | None = None):
        super().__init__()
        self.conv_in = torch.nn.Conv2d(in_channels, hidden, 3, padding=1)
        self.act = torch.nn.SiLU()
        self.conv_out = torch.nn.Conv2d(hidden, out_channels, 1)
        # torch's default initialisation, drawn from a seeded generator (never the global RNG)
        torch.nn.init.kaiming_uniform_(self.conv_in.weight, a=math.sqrt(5), generator=generator)
        bound = 1.0 / math.sqrt(in_channels * 9)
        torch.nn.init.uniform_(self.conv_in.bias, -bound, bound, generator=generator)
        torch.nn.init.zeros_(self.conv_out.weight)
        torch.nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.act(self.conv_in(x)))


def default_hidden(tap_channels: list[int]) -> list[int]:
    """Adapter widths: half the tap width, at most 64 (small next to the decoder)."""
    return [max(8, min(64, c // 2)) for c in tap_channels]


class SymmetricVAE(torch.nn.Module):
    """Skip-connected decoding on top of a base VAE that stays where it is (see module doc).

    Only the adapters (and, after :meth:`enable_decoder_tuning`, a copy of the decoder's
    full-resolution part) are parameters of this module; the base VAE is referenced, never
    registered, copied or modified.
    """

    def __init__(self, base: torch.nn.Module, hidden: list[int] | None = None, seed: int = 0):
        super().__init__()
        layout = detect_layout(base)
        object.__setattr__(self, "_layout", layout)  # not a sub-module: no copy, no state_dict entry
        taps, widths = layout.tap_channels(), layout.decoder_channels()
        hidden = list(hidden) if hidden is not None else default_hidden(taps)
        if len(hidden) != len(taps):
            raise ValueError(f"hidden: expected {len(taps)} widths (one per level), got {len(hidden)}")
        self.hidden = hidden
        g = torch.Generator().manual_seed(seed)
        self.adapters = torch.nn.ModuleList(Adapter(c, w, h, g) for c, w, h in zip(taps, widths, hidden))
        self.tuned: torch.nn.ModuleDict | None = None

    # --- optional fine-tuned copy of the decoder's full-resolution part ------------------------
    def enable_decoder_tuning(self) -> torch.nn.ModuleDict:
        """Give this Symmetric VAE its own copy of the decoder's full-resolution blocks, output norm
        and output conv (trainable; the base VAE's modules stay untouched and shared).

        Skip-connected decodes then use the copy; plain decodes still use the base VAE.
        """
        if self.tuned is None:
            mods = self._layout.level0_modules()
            tuned = torch.nn.ModuleDict(
                {
                    "blocks": torch.nn.ModuleList(copy.deepcopy(b) for b in mods["blocks"]),
                    "norm_out": copy.deepcopy(mods["norm_out"]),
                    "conv_out": copy.deepcopy(mods["conv_out"]),
                }
            )
            p = self.adapters[0].conv_in.weight
            self.tuned = tuned.to(device=p.device, dtype=p.dtype).requires_grad_(True)
        return self.tuned

    def _tuned(self) -> dict | None:
        if self.tuned is None:
            return None
        return {"blocks": list(self.tuned["blocks"]), "norm_out": self.tuned["norm_out"], "conv_out": self.tuned["conv_out"]}

    def export_state(self) -> dict[str, torch.Tensor]:
        """Adapter tensors, plus the tuned decoder part under layout-neutral (LDM) names."""
        out = {k: v for k, v in self.state_dict().items() if k.startswith("adapters.")}
        if self.tuned is not None:
            for j, block in enumerate(self.tuned["blocks"]):
                renames = _shortcut_renames(block)
                for name, t in block.state_dict().items():
                    head, _, rest = name.partition(".")
                    out[f"decoder.level0.{j}.{renames.get(head, head)}.{rest}"] = t
            for part in ("norm_out", "conv_out"):
                for name, t in self.tuned[part].state_dict().items():
                    out[f"decoder.{part}.{name}"] = t
        return out

    def import_state(self, tensors: dict[str, torch.Tensor]) -> None:
        """Load what :meth:`export_state` wrote (enables decoder tuning when the tensors hold it)."""
        if any(k.startswith("decoder.") for k in tensors):
            self.enable_decoder_tuning()
        else:
            self.tuned = None  # adapters only: skip decodes use the base decoder again
        local = {}
        for k, t in tensors.items():
            if k.startswith("decoder.level0."):
                _, _, j, head, rest = k.split(".", 4)
                blocks = self.tuned["blocks"]
                back = {v: k2 for k2, v in _shortcut_renames(blocks[int(j)]).items()} if int(j) < len(blocks) else {}
                local[f"tuned.blocks.{j}.{back.get(head, head)}.{rest}"] = t
            elif k.startswith("decoder."):
                local["tuned." + k[len("decoder.") :]] = t
            else:
                local[k] = t
        p = self.adapters[0].conv_in.weight
        self.load_state_dict({k: t.to(device=p.device, dtype=p.dtype) for k, t in local.items()})

    # --- description ------------------------------------------------------------------------
    @property
    def layout(self) -> VAELayout:
        return self._layout

    @property
    def base(self) -> torch.nn.Module:
        return self._layout.vae

    @property
    def downscale(self) -> int:
        return self._layout.downscale

    def tap_layout(self) -> list[dict]:
        """Per level: scale, encoder tap channels, decoder channels, adapter width."""
        return [
            {"level": i, "scale": 2**i, "tap_channels": c, "decoder_channels": w, "hidden": h}
            for i, (c, w, h) in enumerate(
                zip(self._layout.tap_channels(), self._layout.decoder_channels(), self.hidden)
            )
        ]

    def _sync(self) -> tuple[torch.device, torch.dtype]:
        device, dtype = self._layout.device, self._layout.dtype
        p = self.adapters[0].conv_in.weight
        if p.device != device or p.dtype != dtype:
            self.to(device=device, dtype=dtype)  # adapters (and a tuned decoder part) only
        return device, dtype

    # --- building blocks (tensors in model space: [B,3,H,W] in -1..1) ------------------------
    def gates(self, mask: torch.Tensor, dilation: int = DEFAULT_GATE_DILATION) -> list[torch.Tensor]:
        """Per level: 1 where skips pass, 0 inside the dilated, downsampled hole. mask [B,1,H,W]."""
        hole = (mask >= 0.5).to(mask.dtype)
        if dilation > 0:
            hole = F.max_pool2d(hole, 2 * dilation + 1, stride=1, padding=dilation)
        out = []
        for level in range(self._layout.num_levels):
            s = 2**level
            g = F.max_pool2d(hole, s, stride=s) if s > 1 else hole
            g = F.max_pool2d(g, 3, stride=1, padding=1)  # the adapter's own 3x3 reach
            out.append(1.0 - g)
        return out

    def skip_decode(
        self,
        z: torch.Tensor,
        x: torch.Tensor | None,
        gates: list[torch.Tensor] | None = None,
        taps: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Decode ``z`` with skips from the (already filled) source ``x``; model space.

        ``taps`` may be given instead of ``x`` (e.g. computed without gradients when training).
        Differentiable: training calls this directly.
        """
        if x is None and taps is None:
            return self._layout.decode(z)
        taps = list(taps) if taps is not None else self._layout.taps(x)

        def inject(level: int, h: torch.Tensor) -> torch.Tensor:
            tap = taps[level]
            taps[level] = None  # free as soon as used
            if tap.shape[-2:] != h.shape[-2:]:
                raise ValueError(
                    f"source: its level-{level} features are {tuple(tap.shape[-2:])} but the decoder's "
                    f"are {tuple(h.shape[-2:])}; the source must be exactly {self.downscale}x the latent size"
                )
            a = self.adapters[level](tap)
            del tap
            if torch.is_grad_enabled():
                return h + (a * gates[level] if gates is not None else a)
            # inference: h is the decoder's own fresh intermediate; add in place to save memory
            if gates is not None:
                a.mul_(gates[level])
            return h.add_(a)

        return self._layout.decode(z, inject, tuned=self._tuned())

    # --- public API (images [B,H,W,C] in 0..1) -----------------------------------------------
    @torch.no_grad()
    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """Raw latent of ``image`` ([B,H,W,C] 0..1, H and W multiples of 8) under the base VAE."""
        image = checks.image_batch(image, "image", rgb=True, single=True)
        self._check_multiple(image, "image")
        device, dtype = self._sync()
        x = image.movedim(-1, 1).to(device=device, dtype=dtype) * 2.0 - 1.0
        return self._layout.encode_mean(x)

    def _check_multiple(self, image: torch.Tensor, name: str) -> None:
        f = self.downscale
        if image.shape[1] % f or image.shape[2] % f:
            raise ValueError(
                f"{name}: size {tuple(image.shape[1:3])} must be a multiple of {f} (pad the page first)"
            )

    @torch.no_grad()
    def decode(
        self,
        latent: torch.Tensor,
        source: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        *,
        fill: str = "base",
        gate_dilation: int = DEFAULT_GATE_DILATION,
        tile: int | None = None,
        overlap: int = DEFAULT_OVERLAP,
        progress: Progress | None = None,
    ) -> torch.Tensor:
        """Decode ``latent`` with skip features of ``source`` (see the module docstring).

        ``progress(done, total)`` is called after every tile (once, ``(1, 1)``, when not tiled);
        it may raise (e.g. to cancel), which stops the run before the next tile.
        """
        if not isinstance(latent, torch.Tensor) or latent.ndim != 4:
            raise ValueError(f"latent: expected a tensor [B,C,h,w], got {getattr(latent, 'shape', type(latent))}")
        if latent.shape[1] != self._layout.latent_channels:
            raise ValueError(
                f"latent: has {latent.shape[1]} channels, this VAE expects {self._layout.latent_channels}"
            )
        if fill not in FILL_MODES:
            raise ValueError(f"fill: expected one of {FILL_MODES}, got {fill!r}")
        if gate_dilation < 0:
            raise ValueError(f"gate_dilation: expected >= 0 pixels, got {gate_dilation}")
        b, _, h, w = latent.shape
        f = self.downscale
        H, W = h * f, w * f
        if source is not None:
            source = checks.image_batch(source, "source", rgb=True, single=True)
            if tuple(source.shape[1:3]) != (H, W):
                raise ValueError(
                    f"source: size {tuple(source.shape[1:3])} does not match the latent, which decodes to "
                    f"{(H, W)} (the source must be exactly {f}x the latent size)"
                )
            if source.shape[0] not in (1, b):
                raise ValueError(f"source: batch {source.shape[0]} does not match the latent batch {b}")
            source = source.expand(b, -1, -1, -1)
            if mask is not None:
                mask = masks.normalize_mask(mask, batch=b, size=(H, W), name="mask", resize=False)
        elif mask is not None:
            raise ValueError("mask: given without a source image; the mask gates the source's features")
        device, dtype = self._sync()
        out_device = latent.device
        tile = self._tile_size(H, W, tile)
        if tile is None or (H <= tile and W <= tile):
            out = self._decode_one(latent, source, mask, fill, gate_dilation, device, dtype)
            if progress is not None:
                progress(1, 1)
        else:

            def run(y0, y1, x0, x1):
                box = (slice(None), slice(y0 * f, y1 * f), slice(x0 * f, x1 * f))
                src = None if source is None else source[box]
                msk = None if mask is None else mask[box]
                return self._decode_one(latent[:, :, y0:y1, x0:x1], src, msk, fill, gate_dilation, device, dtype)

            out = self._tiled(b, h, w, tile, overlap, run, progress)
        return out.to(out_device)

    def _tile_size(self, H: int, W: int, tile: int | None) -> int | None:
        if tile is None:
            return DEFAULT_TILE if H * W > DEFAULT_TILE * DEFAULT_TILE else None
        if tile <= 0:
            return None
        if tile % self.downscale or tile < 4 * self.downscale:
            raise ValueError(f"tile: expected a multiple of {self.downscale} of at least {4 * self.downscale}, got {tile}")
        return tile

    def _decode_one(self, latent, source, mask, fill, gate_dilation, device, dtype) -> torch.Tensor:
        z = latent.to(device=device, dtype=dtype)
        if source is None:
            y = self._layout.decode(z)
        else:
            x = source.movedim(-1, 1).to(device=device, dtype=dtype) * 2.0 - 1.0
            gates = None
            if mask is not None:
                m = mask[:, None].to(device=device, dtype=dtype)
                hole = m >= 0.5
                if bool(hole.any()):
                    filler = self._layout.decode(z).clamp(-1, 1) if fill == "base" else torch.ones_like(x)
                    x = torch.where(hole, filler, x)
                    gates = self.gates(m, gate_dilation)
            y = self.skip_decode(z, x, gates)
        return ((y.float() + 1.0) / 2.0).clamp(0.0, 1.0).movedim(1, -1)

    def _tiled(self, batch: int, h: int, w: int, tile: int, overlap: int, run, progress: Progress | None = None):
        """Run ``run(y0, y1, x0, x1)`` (a box of latent cells -> its image ``[batch, 8 dy, 8 dx, 3]``)
        over overlapping tiles of ``tile`` px covering ``h`` x ``w`` latent cells, and blend them:
        linear ramps across each overlap, divided by their sum, so every pixel's weights add up to 1
        and a tile's pixels that no neighbour covers are its own exactly."""
        f = self.downscale
        lt, lo = tile // f, max(0, min(overlap // f, tile // f // 2))
        out = torch.zeros(batch, h * f, w * f, 3)
        weight = torch.zeros(1, h * f, w * f, 1)
        ys, xs = geometry.tile_spans(h, lt, lo), geometry.tile_spans(w, lt, lo)
        total, done = len(ys) * len(xs), 0
        for y0, y1, _, _ in ys:
            for x0, x1, _, _ in xs:
                part = run(y0, y1, x0, x1)
                ramp = _ramp((y1 - y0) * f, (x1 - x0) * f, lo * f, y0 > 0, y1 < h, x0 > 0, x1 < w)
                out[:, y0 * f : y1 * f, x0 * f : x1 * f] += part.cpu() * ramp
                weight[:, y0 * f : y1 * f, x0 * f : x1 * f] += ramp
                done += 1
                if progress is not None:
                    progress(done, total)
        return out / weight

    @torch.no_grad()
    def restore(
        self,
        image: torch.Tensor,
        *,
        tile: int | None = None,
        overlap: int = DEFAULT_OVERLAP,
        progress: Progress | None = None,
    ) -> torch.Tensor:
        """Old scan -> clean page: encode and decode with the scan's own skip features.

        Any size (1x1 up): the page is padded (edge replicate) to a multiple of 8 and cropped back.
        Large pages run in overlapping tiles. Returns [B,H,W,3] float32 in 0..1.
        ``progress(done, total)`` is called after every tile (see :meth:`decode`).
        """
        image = checks.image_batch(image, "image", rgb=True, single=True)
        b, H, W, _ = image.shape
        f = self.downscale
        x = geometry.pad_image(image, f)  # edge replicate

        def run(y0, y1, x0, x1):
            part = x[:, y0 * f : y1 * f, x0 * f : x1 * f]
            return self.decode(self.encode(part), source=part, tile=0)

        tile = self._tile_size(x.shape[1], x.shape[2], tile)
        if tile is None or (x.shape[1] <= tile and x.shape[2] <= tile):
            out = self.decode(self.encode(x), source=x, tile=0, progress=progress)
        else:
            out = self._tiled(b, x.shape[1] // f, x.shape[2] // f, tile, overlap, run, progress)
        return out[:, :H, :W].to(image.device)


def _shortcut_renames(block: torch.nn.Module) -> dict[str, str]:
    """Attribute name of a residual block's shortcut conv -> its neutral (LDM) name.

    LDM names a 1x1 shortcut ``nin_shortcut`` and a 3x3 one ``conv_shortcut``; diffusers calls
    either ``conv_shortcut``. Files use the LDM names, so they load into both layouts.
    """
    for attr in ("nin_shortcut", "conv_shortcut"):
        conv = getattr(block, attr, None)
        if isinstance(conv, torch.nn.Module) and hasattr(conv, "kernel_size"):
            k = conv.kernel_size[0] if isinstance(conv.kernel_size, tuple) else conv.kernel_size
            return {attr: "nin_shortcut" if k == 1 else "conv_shortcut"}
    return {}


def _ramp(th: int, tw: int, band: int, top: bool, bottom: bool, left: bool, right: bool) -> torch.Tensor:
    """Blend weights [1,th,tw,1]: linear ramps over ``band`` pixels on sides that overlap a neighbour."""

    def axis(n: int, lo: bool, hi: bool) -> torch.Tensor:
        r = torch.ones(n)
        if band > 0:
            t = (torch.arange(band, dtype=torch.float32) + 0.5) / band
            if lo:
                r[:band] = torch.minimum(r[:band], t)
            if hi:
                r[n - band :] = torch.minimum(r[n - band :], t.flip(0))
        return r

    return (axis(th, top, bottom)[:, None] * axis(tw, left, right)[None, :])[None, :, :, None]
