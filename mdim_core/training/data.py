"""Training data: page folders with tags, prompts, pages at the structure-pass scale, training crops.

- A data folder is searched recursively for page images (PNG, JPEG, TIFF, WebP; hidden files and
  folders are ignored). A page may have a same-stem ``.txt`` file of comma-separated tags
  (``page_001.png`` + ``page_001.txt``), as kohya-ss sd-scripts and other trainers use.
- Each page is brought to the scale the SGIM structure pass sees: halved (antialiased area averaging)
  until its longest side is at most ``max_side`` (:func:`mdim_core.imaging.geometry.shrink_plan`), and
  kept in memory as 8-bit pixels. Grey pages stay one channel and are replicated to RGB in the crops.
- A page that cannot be read is skipped with a warning naming it; a folder with no readable page is an
  error naming the folder.
- Crops are ``resolution`` px squares at a random place; a page smaller than a crop is padded with paper
  white, and the padding is left out of the loss (``valid``).
- The prompt is the thesis' prefix plus the page's tags in a random order (drawn per crop).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..imaging import imageio
from ..imaging.geometry import resize_image, shrink_plan
from .masks import MaskSampler

log = logging.getLogger("MDIM")

#: The MDIM thesis' prompt prefix (its tags come first, in this order, in every prompt).
PROMPT_PREFIX = "manga, manga style, comic, monochrome"


def split_tags(text: str) -> list[str]:
    """Comma-separated tags -> list (stripped, empty ones dropped, first occurrence kept)."""
    seen, out = set(), []
    for raw in text.replace("\n", ",").split(","):
        tag = raw.strip()
        if tag and tag not in seen:
            seen.add(tag)
            out.append(tag)
    return out


def read_tags(page: str | os.PathLike) -> list[str]:
    """The tags of ``page`` from its same-stem ``.txt`` file ([] when there is none or it cannot be read)."""
    path = Path(page).with_suffix(".txt")
    if not path.is_file():
        return []
    try:
        return split_tags(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("[MDIM] tags of %s ignored: %s cannot be read (%s)", Path(page).name, path.name, exc)
        return []


def build_prompt(tags, rng: np.random.Generator | None = None, prefix: str = PROMPT_PREFIX) -> str:
    """``prefix + ", " + tags`` with the tags in a random order drawn from ``rng`` (kept in order without one).

    Tags already in the prefix are not repeated; with no tags the prompt is the prefix alone.
    """
    fixed = set(split_tags(prefix))
    rest = [t for t in split_tags(", ".join(tags)) if t not in fixed]
    if rng is not None and len(rest) > 1:
        rest = [rest[i] for i in rng.permutation(len(rest))]
    return ", ".join([prefix, *rest]) if rest else prefix


def structure_scale(pixels: np.ndarray, max_side: int) -> np.ndarray:
    """A page ``[H, W, C]`` float 0..1 halved until its longest side is <= ``max_side``, as 8-bit ``[h, w, C]``."""
    h, w = pixels.shape[:2]
    size = shrink_plan((h, w), int(max_side), "halve")
    if size != (h, w):
        pixels = resize_image(torch.from_numpy(np.ascontiguousarray(pixels, np.float32))[None], size)[0].numpy()
    return np.clip(np.asarray(pixels, np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)


@dataclass
class TrainPage:
    """A training page at structure scale: ``pixels`` uint8 ``[h, w, 1 or 3]``, its ``tags`` and ``name``."""

    pixels: np.ndarray
    tags: tuple[str, ...] = ()
    name: str = ""


@dataclass
class PageSet:
    """The training pages of a run, at structure scale, in a fixed (sorted) order."""

    pages: list[TrainPage]
    max_side: int = 1024
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.pages)

    @property
    def tagged(self) -> int:
        return sum(1 for p in self.pages if p.tags)

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, max_side: int = 1024, *, name: str = "--data",
                    progress: bool = False) -> PageSet:
        """Read every page under ``folder`` (recursively). Unreadable pages are skipped with a warning."""
        from ..cli.batch import find_pages

        root = Path(folder)
        if not root.is_dir():
            raise ValueError(f"{name}: {str(root)!r} is not a folder (expected a folder of page images)")
        try:
            files = find_pages(root, recursive=True)
        except OSError as exc:
            raise ValueError(f"{name}: the folder {str(root)!r} cannot be read ({exc})") from None
        if not files:
            raise ValueError(
                f"{name}: no page images (PNG, JPEG, TIFF, WebP) in the folder {str(root)!r} or its sub-folders"
            )
        pages, skipped = [], []
        it = files
        if progress:
            from tqdm import tqdm

            it = tqdm(files, desc="reading pages", unit="page", dynamic_ncols=True)
        for f in it:
            rel = str(f.relative_to(root))
            try:
                pixels = imageio.read_page(f).pixels
                if min(pixels.shape[:2]) < 8:
                    raise ValueError(f"page file {str(f)!r} is smaller than 8x8 px")
            except ValueError as exc:
                log.warning("[MDIM] skipping %s: %s", rel, exc)
                skipped.append((rel, str(exc)))
                continue
            pages.append(TrainPage(structure_scale(pixels, max_side), tuple(read_tags(f)), rel))
        if not pages:
            raise ValueError(
                f"{name}: none of the {len(files)} image(s) in the folder {str(root)!r} could be read "
                f"(first problem: {skipped[0][1]})"
            )
        return cls(pages, int(max_side), skipped)

    @classmethod
    def from_images(cls, images, max_side: int = 1024, tags=None, names=None) -> PageSet:
        """Pages given as arrays (``[H, W]`` or ``[H, W, C]`` float 0..1), e.g. generated pages."""
        pages = []
        for i, img in enumerate(images):
            arr = np.asarray(img, np.float32)
            if arr.ndim == 2:
                arr = arr[..., None]
            if arr.ndim != 3 or arr.shape[2] not in (1, 3) or min(arr.shape[:2]) < 8:
                raise ValueError(f"images[{i}]: expected [H, W] or [H, W, 1|3] of at least 8x8 px, got {arr.shape}")
            pages.append(TrainPage(structure_scale(arr, max_side), tuple(tags[i]) if tags else (),
                                   names[i] if names else f"page-{i}"))
        if not pages:
            raise ValueError("images: no training pages")
        return cls(pages, int(max_side))


@dataclass
class Batch:
    """Training crops: ``images`` float32 ``[B, R, R, 3]`` 0..1, ``masks`` ``[B, R, R]`` (1 = repaint),
    ``valid`` ``[B, R, R]`` (0 = paper padding outside the page), the ``prompts`` and mask ``kinds``."""

    images: torch.Tensor
    masks: torch.Tensor
    valid: torch.Tensor
    prompts: list[str]
    kinds: list[str]


class CropSampler:
    """Random training crops with their masks and prompts; a batch depends only on the generator given."""

    def __init__(self, pages: PageSet, masks: MaskSampler, resolution: int = 512, caption_dropout: float = 0.0,
                 prefix: str = PROMPT_PREFIX):
        if not len(pages):
            raise ValueError("pages: no training pages")
        if not 0.0 <= caption_dropout <= 1.0:
            raise ValueError(f"caption_dropout: expected a probability in [0, 1], got {caption_dropout!r}")
        self.pages, self.masks, self.resolution = pages, masks, int(resolution)
        self.caption_dropout, self.prefix = float(caption_dropout), prefix

    def crop_box(self, rng: np.random.Generator, size: tuple[int, int]) -> tuple[int, int]:
        """Top-left corner of a crop in a page of ``size`` (0 on a side shorter than the crop)."""
        r = self.resolution
        return int(rng.integers(max(1, size[0] - r + 1))), int(rng.integers(max(1, size[1] - r + 1)))

    def sample(self, rng: np.random.Generator, n: int) -> Batch:
        r = self.resolution
        images = np.ones((n, r, r, 3), np.float32)
        valid = np.zeros((n, r, r), np.float32)
        masks = np.zeros((n, r, r), np.float32)
        prompts, kinds = [], []
        for i in range(n):
            page = self.pages.pages[int(rng.integers(len(self.pages)))]
            h, w = page.pixels.shape[:2]
            y, x = self.crop_box(rng, (h, w))
            crop = page.pixels[y : y + r, x : x + r].astype(np.float32) * np.float32(1.0 / 255.0)
            ch, cw = crop.shape[:2]
            images[i, :ch, :cw] = crop  # a grey page broadcasts to RGB; paper white elsewhere
            valid[i, :ch, :cw] = 1.0
            mask, kind = self.masks.sample(rng, (r, r))
            masks[i] = mask
            kinds.append(kind)
            drop = self.caption_dropout > 0 and rng.uniform() < self.caption_dropout
            prompts.append("" if drop else build_prompt(page.tags, rng, self.prefix))
        return Batch(torch.from_numpy(images), torch.from_numpy(masks), torch.from_numpy(valid), prompts, kinds)
