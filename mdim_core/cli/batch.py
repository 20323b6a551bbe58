"""Restoring a whole volume: every page of a folder, resumable, in several processes.

:func:`run_batch` takes a page or a folder of pages (PNG, JPEG, TIFF, WebP), cleans each one with
:func:`cleanup.clean_page` and, when models are given, chains the Symmetric VAE restore and SGIM text
removal (:class:`ModelSteps`). Pages keep their names (and sub-folders with ``recursive``), their
DPI and, for 16-bit grayscale PNG/TIFF, their bit depth.

- One bad page (unreadable, truncated, empty, too large for the memory free, ...) is reported and
  skipped; the others go on.
- Every output is written atomically (temporary file + ``os.replace``): a killed run or a full disk
  never leaves a half-written page, and pages already written are never touched again.
- A small manifest (``.mdim_restore.json`` in the output folder) records, for every finished page,
  its source's size and modification time and the settings used. Re-running skips the pages whose
  output exists and whose record matches; a changed source or changed settings redo the page.
- A full disk stops the run at once with a clear message (what is written is kept; free space and
  re-run to resume). An output folder that cannot be written is refused before any work.

The resumable running itself (manifest, skipping, workers, full disk) is :mod:`.volume`'s, shared
with the ``clean`` and ``mask`` commands.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..imaging import checks, imageio
from ..restore import cleanup
from .volume import BatchReport, DiskFullError, Job, check_writable, run_jobs

__all__ = ["BatchReport", "DiskFullError", "ModelSteps", "check_writable", "find_pages", "plan_outputs",
           "process_page", "run_batch", "settings_key"]

log = logging.getLogger("MDIM")

MANIFEST = ".mdim_restore.json"
#: Output formats: "same" keeps each page's own format.
OUTPUT_FORMATS = ("same", "png", "tiff", "jpeg", "webp")
_EXT = {"png": ".png", "tiff": ".tif", "jpeg": ".jpg", "webp": ".webp"}


@dataclass(frozen=True)
class ModelSteps:
    """Optional model steps chained after the classical cleanup (each needs its files).

    - Symmetric VAE restore: ``vae`` (a diffusers AutoencoderKL folder or an SD VAE .safetensors)
      and ``adapters`` (the Symmetric VAE adapter .safetensors). ``cleanup=False`` gives it the scan
      as it is (no classical cleanup first), as MDIM Symmetric VAE Restore does.
    - SGIM text removal: ``model`` (a local diffusers Stable Diffusion folder) and ``masks`` (a
      folder with one mask per page, same file stem, white = remove); pages without a mask skip it.
      With ``adapters`` too, SGIM decodes through the Symmetric VAE.
    """

    vae: str | None = None
    adapters: str | None = None
    tile: int = 512
    model: str | None = None
    masks: str | None = None
    prompt: str = "manga, manga style, comic, monochrome"
    negative: str = "color, blurry, lowres, jpeg artifacts, watermark, text"
    steps: int = 30
    seed: int = 0
    device: str = "auto"
    sgim_options: tuple = ()  # extra SGIMConfig fields as (name, value) pairs, e.g. (("sgi_max_side", 768),)
    cleanup: bool = True  # the classical cleanup runs first

    def __post_init__(self):
        if self.vae and not self.adapters:
            raise ValueError("adapters: the Symmetric VAE restore needs an adapter file with --vae")
        if self.adapters and not (self.vae or self.model):
            raise ValueError("vae: the Symmetric VAE restore needs the base VAE (--vae) its adapters were trained on")
        if not self.cleanup and not (self.vae and self.adapters):
            raise ValueError("no-cleanup: skipping the cleanup needs the Symmetric VAE restore (--vae and --adapters)")
        if bool(self.model) != bool(self.masks):
            raise ValueError("model and masks: SGIM text removal needs both --model and --masks")
        for name in ("vae", "adapters", "model", "masks"):
            value = getattr(self, name)
            if value and not Path(value).exists():
                raise ValueError(f"{name}: {value!r} does not exist")
        if self.any:  # a wrong device is an error of the command, not of every page
            from ..device import resolve_device

            resolve_device(self.device)

    @property
    def restore(self) -> bool:
        return bool(self.vae and self.adapters)

    @property
    def text_removal(self) -> bool:
        return bool(self.model and self.masks)

    @property
    def any(self) -> bool:
        return self.restore or self.text_removal


# ---------------------------------------------------------------------------------------------
# planning


def find_pages(source: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """The page files of ``source``: itself when it is a file, else the page files of the folder
    (sorted; hidden files and our own temporary files ignored; sub-folders with ``recursive``)."""
    src = Path(source)
    if src.is_file():
        return [src]
    if not src.is_dir():
        raise ValueError(f"input: {str(src)!r} does not exist (expected a page file or a folder of pages)")
    found = src.rglob("*") if recursive else src.iterdir()
    pages = [
        p for p in found
        if p.is_file() and imageio.is_page_file(p) and not any(part.startswith(".") for part in p.relative_to(src).parts)
    ]
    return sorted(pages)


def plan_outputs(pages: list[Path], source: Path, out_dir: Path, fmt: str = "same") -> list[tuple[Path, Path]]:
    """(page, output file) pairs: same name (and sub-folder) under ``out_dir``; the extension
    changes only with ``fmt``. Refuses to overwrite an input or to write two pages to one file."""
    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"format: expected one of {OUTPUT_FORMATS}, got {fmt!r}")
    root = source if source.is_dir() else source.parent
    pairs, seen = [], {}
    inputs = {p.resolve() for p in pages}
    for page in pages:
        rel = page.relative_to(root)
        target = out_dir / rel
        if fmt != "same":
            target = target.with_suffix(_EXT[fmt])
        claim_output(target, page, inputs, seen, hint="; use --format")
        pairs.append((page, target))
    return pairs


def claim_output(target: Path, source, inputs: set[Path], seen: dict, hint: str = "") -> None:
    """Record that ``source`` is written to ``target``; refuses a target that is an input page (``inputs``:
    resolved paths) or that another page already claimed (``seen``: resolved target -> source)."""
    key = target.resolve()
    if key in inputs:
        raise ValueError(f"output: {str(target)!r} would overwrite an input page; choose another output folder")
    if key in seen:
        raise ValueError(f"output: {seen[key]} and {source} would both be written to {str(target)!r}{hint}")
    seen[key] = source


def settings_key(settings: cleanup.CleanupSettings, steps: ModelSteps | None, fmt: str) -> str:
    """A short hash of everything that changes an output page."""
    blob = json.dumps({"cleanup": settings.as_dict(), "steps": asdict(steps) if steps else None, "format": fmt},
                      sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# one page


_MODELS: dict = {}  # per process: loaded models, keyed by their ModelSteps


def _load_models(steps: ModelSteps):
    key = steps
    if key in _MODELS:
        return _MODELS[key]
    from ..device import resolve_device

    device = resolve_device(steps.device)
    loaded: dict = {"device": device}
    if steps.restore:
        from ..symvae.base import load_base_vae
        from ..symvae.model import SymmetricVAE
        from ..symvae.weights import load_adapters

        sym = SymmetricVAE(load_base_vae(steps.vae).to(device))
        load_adapters(sym, steps.adapters)
        sym.eval()
        loaded["symvae"] = sym
    if steps.text_removal:
        from ..inpaint import diffusers_host

        loaded["host"] = diffusers_host.load_host(
            steps.model, prompt=steps.prompt, negative=steps.negative, device=device,
            symvae_adapters=steps.adapters if steps.adapters else None,
        )
    _MODELS[key] = loaded
    return loaded


def _find_mask(masks: str, page: Path) -> Path | None:
    for cand in sorted(Path(masks).glob(page.stem + ".*")):
        if imageio.is_page_file(cand):
            return cand
    return None


def _sgim_config(steps: ModelSteps):
    """SGIM settings of a batch run: ``steps`` structure steps and, as in the thesis (50 + 25), a
    refinement that walks the second half of the same schedule (``steps * fri_strength`` steps)."""
    from ..inpaint import sgim

    options = dict(steps.sgim_options)
    strength = options.get("fri_strength", sgim.SGIMConfig.fri_strength)
    options.setdefault("fri_steps", max(1, round(steps.steps * strength)))
    return sgim.SGIMConfig(steps=steps.steps, **options)


def model_memory_bytes(size: tuple[int, int], steps: ModelSteps) -> int:
    """Memory the model steps need for a page of ``size`` (H, W), models aside: the Symmetric VAE
    restore holds a few RGB float32 copies of the page (input, padded input, blended output and its
    weights, about 56 bytes/px), SGIM the page, its working copy and the mask (about 36 bytes/px)."""
    per_px = max(56 if steps.restore else 0, 36 if steps.text_removal else 0)
    return size[0] * size[1] * per_px


def _model_steps(clean, page: Path, steps: ModelSteps):
    """Chain the Symmetric VAE restore and SGIM text removal on a cleaned page [H, W] (or, with
    ``steps.cleanup`` off, on the scan as read, which the restore makes a gray page [H, W])."""
    import numpy as np
    import torch

    h, w = clean.shape[:2]
    checks.require_memory(model_memory_bytes((h, w), steps), f"model steps on {page.name} ({w}x{h} px)")
    models = _load_models(steps)
    if steps.restore:
        from ..symvae.restore import restore_page

        clean = restore_page(models["symvae"], clean, tile=steps.tile, name=page.name)
    if steps.text_removal:
        mask_file = _find_mask(steps.masks, page)
        if mask_file is None:
            log.info("[MDIM] %s: no mask in %s, text removal skipped", page.name, steps.masks)
        else:
            from ..inpaint import sgim

            mask = imageio.read_page(mask_file).pixels.mean(axis=-1)
            image = torch.from_numpy(np.repeat(clean[..., None], 3, axis=-1))[None]
            result = sgim.inpaint(models["host"], image, torch.from_numpy(mask)[None], seed=steps.seed,
                                  config=_sgim_config(steps))
            clean = result.image[0].numpy().mean(axis=-1)
    return clean


def process_page(page: Path, target: Path, settings: cleanup.CleanupSettings,
                 steps: ModelSteps | None = None) -> float:
    """Clean one page file into ``target`` (atomically). Returns the seconds it took.

    Raises ``ValueError`` for a bad page, ``MemoryError`` (before the work) for a page too large for
    the memory free, :class:`DiskFullError` when the disk is full.
    """
    t0 = time.perf_counter()
    src = imageio.read_page(page, keep_uint8=True)  # 8-bit scans stay uint8: 1/4 of the memory
    if src.dpi and not settings.dpi:
        settings = cleanup.CleanupSettings(**{**settings.as_dict(), "dpi": float(src.dpi[0])})
    if steps is not None and not steps.cleanup:
        clean = src.pixels  # the Symmetric VAE restores the scan as it is
    else:
        clean = cleanup.clean_page(src.pixels, settings, name=page.name)
    src.pixels = None  # free the scan before the (large) write
    if steps is not None and steps.any:
        clean = _model_steps(clean, page, steps)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        imageio.write_image(target, clean, dpi=src.dpi, bit_depth=src.bit_depth)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(exc.errno, f"the disk is full while writing {target}") from exc
        raise
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------
# the batch


def run_batch(
    source: str | os.PathLike,
    out_dir: str | os.PathLike,
    settings: cleanup.CleanupSettings | None = None,
    *,
    workers: int = 1,
    fmt: str = "same",
    recursive: bool = False,
    force: bool = False,
    steps: ModelSteps | None = None,
    progress: bool = True,
) -> BatchReport:
    """Restore every page of ``source`` into ``out_dir`` (see the module docstring)."""
    settings = settings or cleanup.CleanupSettings()
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers: expected a whole number >= 1, got {workers!r}")
    source, out_dir = Path(source), Path(out_dir)
    pages = find_pages(source, recursive)
    pairs = plan_outputs(pages, source, out_dir, fmt)
    key = settings_key(settings, steps, fmt)
    root = source if source.is_dir() else source.parent
    jobs = [Job(page.relative_to(root).as_posix(), page, target) for page, target in pairs]
    return run_jobs(jobs, out_dir, key, _restore_job, (settings, steps), manifest_name=MANIFEST, workers=workers,
                    force=force, progress=progress, desc="restore")


def _restore_job(job: Job, settings: cleanup.CleanupSettings, steps: ModelSteps | None) -> float:
    return process_page(job.path, job.target, settings, steps)
