"""Settings of an SGIM run (one set of defaults for the ComfyUI node, the command line and the engine)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

#: seeds are unsigned 64-bit integers, as ComfyUI's seed widgets
SEED_LIMIT = 2**64

PLAN_OPTIONS = ("halve", "fit")
RUN_FRI_OPTIONS = ("auto", "always", "never")
PAD_MODES = ("replicate", "reflect")
FLAT_FILL_OPTIONS = ("auto", "off")


@dataclass(frozen=True)
class SGIMConfig:
    """Settings of an SGIM run. Invalid values raise ``ValueError`` naming the field.

    Attributes:
        steps: sampling steps of the SGI pass (strength 1.0).
        fri_steps: sampling steps actually run by the FRI pass; with ``fri_strength`` 0.5
            the default 25 walks the second half of a 50-step schedule (thesis setting).
        fri_strength: fraction of the noise schedule the FRI pass runs, in (0, 1] (ComfyUI's
            ``denoise``: the pass runs the last ``fri_steps`` of ``int(fri_steps / fri_strength)``).
        sgi_max_side: longest side of the page (or panel) in the SGI pass; larger pages are
            shrunk.
        plan: ``"halve"`` (halve until within ``sgi_max_side``; thesis) or ``"fit"``
            (scale once to exactly ``sgi_max_side``).
        run_fri: ``"auto"`` (FRI only when SGI had to shrink the page), ``"always"``,
            ``"never"``.
        grow_mask: pixels to dilate the mask by (opt-in: pixels within this distance of the
            user's mask may change too). 0 keeps the user's mask exactly.
        feather: pixels over which the result blends into the original, inside the mask
            only (0 = hard edge).
        context_margin: pixels of context around each mask region in its crop, in the pixels
            the model sees (the shrunk page in the SGI pass, the page in the FRI pass).
        min_crop_side: crops are widened to at least this side (clamped to the page), so the
            model sees enough context for small regions (512 suits SD1.5); in the pixels of
            each pass, like ``context_margin``.
        limit_to_panel: work panel by panel (panels are found from the page's white
            gutters): each panel holding mask is shrunk on its own for SGI and crops stay
            inside it, so context never comes from a neighbour. Mask in the gutter is
            worked on with the page.
        mask_threshold: mask values >= this are repainted (near-binary values snap).
        pad_mode: how crops are padded to latent multiples: ``"replicate"`` or ``"reflect"``.
        fri_tile_side: crops with a side above this run their FRI pass in overlapping tiles of
            at most this side (the structure is already set by SGI), so a page-sized region
            does not need a page-sized model call. 0 never tiles.
        fri_tile_overlap: pixels of overlap between FRI tiles; each pixel is taken from the
            tile whose centre part holds it, never from a tile's edge.
        structure_pass: False runs only the full-resolution pass (``fri_strength``,
            ``fri_steps``) on crops around the mask, starting from the image as it is: a
            low-strength pass that redraws in the page's style (harmonising pasted elements,
            refining a pre-filled page). ``run_fri`` is then ignored.
        prefill_strength: strength of the structure pass when the run is given a pre-filled
            page (``inpaint(..., prefill=...)``, e.g. a LaMa fill): it starts from the
            pre-filled content, noised to this fraction of the schedule, instead of pure noise.
        flat_fill: ``"auto"``: a mask region whose surrounding ring is flat paper white or solid
            black (text in a speech bubble) is filled with exactly that value and never sent to
            the model (``mdim_core.inpaint.flatfill``); ``"off"``: every region goes to the model.
    """

    steps: int = 50
    fri_steps: int = 25
    fri_strength: float = 0.5
    sgi_max_side: int = 1024
    plan: Literal["halve", "fit"] = "halve"
    run_fri: Literal["auto", "always", "never"] = "auto"
    grow_mask: int = 0
    feather: int = 0
    context_margin: int = 64
    min_crop_side: int = 512
    limit_to_panel: bool = False
    mask_threshold: float = 0.5
    pad_mode: Literal["replicate", "reflect"] = "replicate"
    fri_tile_side: int = 2048
    fri_tile_overlap: int = 128
    structure_pass: bool = True
    prefill_strength: float = 0.75
    flat_fill: Literal["auto", "off"] = "auto"

    def __post_init__(self) -> None:
        for name, lo in (
            ("steps", 1), ("fri_steps", 1), ("sgi_max_side", 8), ("grow_mask", 0), ("feather", 0),
            ("context_margin", 0), ("min_crop_side", 0), ("fri_tile_side", 0), ("fri_tile_overlap", 0),
        ):  # fmt: skip
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < lo:
                raise ValueError(f"{name}: expected an integer >= {lo}, got {v!r}")
        if self.fri_tile_side and not 64 <= self.fri_tile_side:
            raise ValueError(f"fri_tile_side: expected 0 (no tiles) or an integer >= 64, got {self.fri_tile_side!r}")
        if self.fri_tile_side and self.fri_tile_overlap * 2 >= self.fri_tile_side:
            raise ValueError(
                f"fri_tile_overlap: expected less than half of fri_tile_side ({self.fri_tile_side}), "
                f"got {self.fri_tile_overlap!r}"
            )
        for name in ("fri_strength", "mask_threshold", "prefill_strength"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < float(v) <= 1.0:
                raise ValueError(f"{name}: expected a number in (0, 1], got {v!r}")
        for name, allowed in (
            ("plan", PLAN_OPTIONS), ("run_fri", RUN_FRI_OPTIONS), ("pad_mode", PAD_MODES), ("flat_fill", FLAT_FILL_OPTIONS),
        ):  # fmt: skip
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}: expected one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        for name in ("limit_to_panel", "structure_pass"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: expected True or False, got {getattr(self, name)!r}")


def check_seed(seed) -> int:
    """``seed`` as an int in ``[0, 2**64)``, else ``ValueError`` naming it."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or not 0 <= int(seed) < SEED_LIMIT:
        raise ValueError(f"seed: expected an integer in [0, 2**64), got {seed!r}")
    return int(seed)
