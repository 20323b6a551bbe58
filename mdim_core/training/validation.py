"""The validation pass of a training run: inpaint a few fixed held-out pages through the SGIM engine.

Every case is a page, a mask and the truth (what a perfect result looks like):

- generated pages (:func:`synthetic_cases`, the default): the pack's generator draws pages with their exact
  truth; ``text`` removes the bubble and free text (truth: the page without it), ``box`` fills large
  rectangles of the clean page (truth: the clean page);
- ``--val-data`` pages (:func:`folder_cases`): pages as the training data is (text already removed), so the
  page itself is the truth; the masks are drawn by the training mask sampler (bubbles and boxes) at the
  structure-pass scale and enlarged to the page.

The pass runs :func:`mdim_core.inpaint.sgim.inpaint` with :class:`mdim_core.inpaint.diffusers_host.DiffusersHost`
on the model being trained, saves each result as a picture and returns the metrics of
:mod:`mdim_core.evaluation.metrics`: PSNR inside the mask and paper whiteness inside the mask (the share of
the truth's white paper in the mask that stays white: in the ``text`` case, the filled bubbles).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..evaluation import metrics
from ..imaging.geometry import shrink_plan
from .data import PROMPT_PREFIX
from .masks import MaskSampler

log = logging.getLogger("MDIM")

#: The negative prompt of the ``inpaint`` command, so validation looks like what users will get.
DEFAULT_NEGATIVE = "color, blurry, lowres, jpeg artifacts, watermark, text"
VAL_SEED = 9_100_000


@dataclass
class ValCase:
    """``image`` float32 ``[H, W]`` 0..1 given to the model; ``mask`` bool ``[H, W]``; ``truth`` float32 ``[H, W]``."""

    name: str
    kind: str
    image: np.ndarray
    mask: np.ndarray
    truth: np.ndarray


def synthetic_cases(n_pages: int = 2, max_side: int = 1024, seed: int = VAL_SEED) -> list[ValCase]:
    """Generated held-out pages at twice the structure-pass size (so SGIM runs both passes), two cases each."""
    from ..synth import generate_page

    side = 2 * int(max_side)
    size = (side, max(64, round(side / math.sqrt(2.0))))
    dpi = float(min(1200.0, max(36.0, side / (210.0 / 25.4))))
    cases = []
    for i in range(int(n_pages)):
        page = generate_page(seed + i, size=size, dpi=dpi)
        text = page.masks["text"]
        if text.any():  # truth: the page with its text (and whatever else the mask covers) removed
            cases.append(ValCase(f"page{i}_text", "text", page.page, text, np.where(text, page.clean, page.page)))
        cases.append(ValCase(f"page{i}_box", "box", page.clean, page.masks["box"], page.clean))
    return cases


def folder_cases(folder, n_pages: int = 4, max_side: int = 1024, seed: int = VAL_SEED) -> list[ValCase]:
    """Cases from held-out page files (the page is the truth); the first ``n_pages`` pages in sorted order."""
    from ..restore.levels import to_grayscale
    from .data import PageSet

    found = PageSet.from_folder(folder, max_side=1 << 30, name="--val-data").pages[: int(n_pages)]
    sampler = MaskSampler(page_side=max_side, full_mask_prob=0.0, kinds=("bubble", "box"))
    cases = []
    for i, page in enumerate(found):
        gray = to_grayscale(page.pixels.astype(np.float32) / 255.0)
        h, w = gray.shape
        small = shrink_plan((h, w), int(max_side), "halve")
        for kind in ("bubble", "box"):
            rng = np.random.default_rng([seed, i, 0 if kind == "bubble" else 1])
            mask = None
            for _ in range(8):
                m, got = sampler.sample(rng, small)
                if got == kind:
                    mask = m
                    break
            if mask is None:
                continue
            fy, fx = -(-h // small[0]), -(-w // small[1])
            big = np.repeat(np.repeat(mask, fy, axis=0), fx, axis=1)[:h, :w]
            cases.append(ValCase(f"{Path(page.name).stem}_{kind}", kind, gray, big, gray))
    if not cases:
        raise ValueError(f"--val-data: no validation case could be made from the pages in {folder}")
    return cases


class Validator:
    """Runs the validation cases on a model; see the module docstring.

    Args:
        cases: the held-out cases.
        sgim_config: the SGIM settings (structure-pass size, steps ...).
        prompt, negative, cfg: as the ``inpaint`` command uses them.
        seed: the sampling seed (the same every time, so pictures are comparable across steps).
    """

    def __init__(self, cases: list[ValCase], sgim_config=None, *, prompt: str = PROMPT_PREFIX,
                 negative: str = DEFAULT_NEGATIVE, cfg: float = 7.0, seed: int = 0):
        from ..inpaint.sgim import SGIMConfig

        if not cases:
            raise ValueError("validation: no cases")
        self.cases = cases
        self.config = sgim_config or SGIMConfig()
        self.prompt, self.negative, self.cfg, self.seed = prompt, negative, float(cfg), int(seed)
        self._embeds = None

    def host(self, comps, scheduler_config: dict):
        """A :class:`DiffusersHost` on the current weights of ``comps`` (prompts encoded once)."""
        from ..inpaint.diffusers_host import DiffusersHost, encode_prompt, make_scheduler

        if self._embeds is None:
            self._embeds = tuple(encode_prompt(comps.tokenizer, comps.text_encoder, p).float().cpu()
                                 for p in (self.prompt, self.negative))
        sched = make_scheduler(scheduler_config)
        zsnr = bool(scheduler_config.get("rescale_betas_zero_snr"))
        pos, neg = (e.to(next(comps.unet.parameters()).device) for e in self._embeds)
        return DiffusersHost(comps.unet, comps.vae, sched, pos, neg, cfg=self.cfg, cfg_rescale=0.7 if zsnr else 0.0)

    def run(self, host, out_dir: str | Path | None = None, step: int = 0) -> list[dict]:
        """Inpaint every case with ``host``; write ``out_dir/step-NNNNNN/<case>.png``; return one metrics row per case."""
        from ..imaging.imageio import write_image
        from ..inpaint.sgim import inpaint

        folder = Path(out_dir) / f"step-{int(step):06d}" if out_dir is not None else None
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for case in self.cases:
            t0 = time.perf_counter()
            image = torch.from_numpy(np.repeat(case.image[..., None], 3, axis=-1).astype(np.float32))[None]
            mask = torch.from_numpy(case.mask.astype(np.float32))[None]
            out = inpaint(host, image, mask, seed=self.seed, config=self.config).image[0].numpy().mean(axis=-1)
            rows.append({
                "step": int(step),
                "case": case.name,
                "kind": case.kind,
                "psnr_in": metrics.psnr(out, case.truth, case.mask, region="in"),
                "paper_white": metrics.paper_whiteness(out, case.truth, case.mask),
                "seconds": round(time.perf_counter() - t0, 2),
            })
            if folder is not None:
                write_image(folder / f"{case.name}.png", out[..., None])
        return rows

    def write_inputs(self, out_dir: str | Path) -> None:
        """The pages, masks and truths of the cases, once, under ``out_dir/inputs``."""
        from ..imaging.imageio import write_image

        folder = Path(out_dir) / "inputs"
        folder.mkdir(parents=True, exist_ok=True)
        for case in self.cases:
            write_image(folder / f"{case.name}_page.png", case.image[..., None])
            write_image(folder / f"{case.name}_mask.png", case.mask.astype(np.float32)[..., None])
            write_image(folder / f"{case.name}_truth.png", case.truth[..., None])


def summarize(rows: list[dict]) -> dict[str, float]:
    """Mean PSNR in the mask and mean paper whiteness over the rows (``nan`` values left out)."""
    out = {}
    for key in ("psnr_in", "paper_white"):
        vals = [r[key] for r in rows if isinstance(r.get(key), float) and math.isfinite(r[key])]
        out[key] = float(np.mean(vals)) if vals else float("nan")
    return out
