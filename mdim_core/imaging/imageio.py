"""Reading and writing page image files (PNG, JPEG, TIFF, WebP).

Pages come in as float32 numpy arrays ``[H, W, C]`` in 0..1, with ``C`` = 1 (grayscale) or
3 (RGB). Whatever the file holds is brought to that convention here and nowhere else:

- 8- and 16-bit samples (16-bit grayscale keeps its full precision; Pillow decodes 16-bit
  RGB files at 8 bits per channel);
- grayscale, RGB, palette, bilevel; alpha is dropped (with one log line);
- CMYK (JPEG or TIFF) is converted to RGB through its embedded ICC profile when there is one,
  else with the standard formula; Adobe's inverted CMYK JPEGs are decoded by Pillow;
- the EXIF orientation is applied, so the page is upright;
- the resolution (DPI) is returned so that it can be written back.

Bad files raise ``ValueError`` naming the file and what is wrong (missing, empty, not an
image, truncated, zero-size, too large). Writes are atomic: the page is written to a temporary
file in the destination folder and moved over the destination with ``os.replace`` only once
it is complete, so an interrupted run or a full disk never leaves a half-written page.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from . import checks

log = logging.getLogger("MDIM")

#: File extensions read when a folder is given, and the Pillow format written for each.
FORMATS: dict[str, str] = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
}

#: Largest page read, in pixels (about 1200 dpi A3). Larger files are refused with a clear message.
MAX_PIXELS = 300_000_000


@dataclass
class Page:
    """A page read from a file.

    ``pixels``: float32 numpy ``[H, W, C]`` in 0..1, ``C`` = 1 (grayscale) or 3 (RGB).
    ``dpi``: ``(x, y)`` dots per inch from the file's metadata, or ``None`` when it has none.
    ``bit_depth``: 8 or 16, the precision of the file's samples.
    ``format``: the Pillow format name of the file (``"PNG"``, ``"JPEG"``, ...).
    """

    pixels: np.ndarray
    dpi: tuple[float, float] | None
    bit_depth: int
    format: str

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def is_page_file(path: str | os.PathLike) -> bool:
    """True when ``path`` has one of the extensions of :data:`FORMATS` (case-insensitive)."""
    return Path(path).suffix.lower() in FORMATS


def _clean_dpi(value) -> tuple[float, float] | None:
    """Pillow's ``info["dpi"]`` -> a plausible ``(x, y)`` or None (missing or unit-less 1x1)."""
    if not value:
        return None
    try:
        x, y = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if not (x > 1.0 and y > 1.0 and np.isfinite(x) and np.isfinite(y)):
        return None
    # PNG stores dots per metre: 300 dpi comes back as 299.9994. Snap to 0.01.
    return (round(x, 2), round(y, 2))


def _cmyk_to_rgb(im: Image.Image, name: str) -> Image.Image:
    profile = im.info.get("icc_profile")
    if profile:
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            dst = ImageCms.createProfile("sRGB")
            return ImageCms.profileToProfile(im, src, dst, outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError) as exc:
            log.warning("[MDIM] %s: its CMYK colour profile could not be used (%s); "
                        "converting with the standard formula", name, exc)
    return im.convert("RGB")


def _to_array(im: Image.Image, name: str, keep_uint8: bool = False) -> tuple[np.ndarray, int]:
    """A decoded Pillow image -> (float32 [H, W, C] in 0..1, bit depth); 8-bit data stays uint8
    (0..255) with ``keep_uint8``."""
    mode = im.mode
    if mode in ("LA", "RGBA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in im.info):
        log.info("[MDIM] %s: alpha channel dropped", name)
    if mode == "P":
        im = im.convert("RGB")
        mode = "RGB"
    elif mode == "PA":
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode == "CMYK":
        im = _cmyk_to_rgb(im, name)
        mode = "RGB"
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        arr = np.asarray(im).astype(np.float32) * np.float32(1.0 / 65535.0)
        return arr[..., None], 16
    if mode == "I":  # 32-bit integer samples: 16-bit data in practice
        raw = np.asarray(im)
        scale = 65535.0 if raw.max(initial=0) > 255 else 255.0
        arr = np.clip(raw.astype(np.float32) / np.float32(scale), 0.0, 1.0)
        return arr[..., None], 16 if scale > 255 else 8
    if mode == "F":
        raw = np.asarray(im).astype(np.float32)
        top = float(np.nanmax(raw)) if raw.size else 0.0
        scale = 1.0 if top <= 1.0 else (255.0 if top <= 255.0 else 65535.0)
        arr = np.clip(np.nan_to_num(raw / np.float32(scale)), 0.0, 1.0)
        return arr[..., None], 16
    if mode in ("1", "L", "LA", "La"):
        arr = np.asarray(im.convert("L") if mode != "L" else im)[..., None]
    else:
        if mode != "RGB":  # RGBA, RGBa, YCbCr, LAB, HSV, ...
            im = im.convert("RGB")
        arr = np.asarray(im)
    if keep_uint8:
        return arr, 8  # Pillow's buffer, read-only: pages are never written to
    return arr.astype(np.float32) * np.float32(1.0 / 255.0), 8


def decode_bytes(mode: str, width: int, height: int, keep_uint8: bool = False) -> int:
    """Memory :func:`read_page` needs for a ``width`` x ``height`` file of Pillow ``mode``: the decoded
    samples, one colour conversion (palette, CMYK, alpha), and the pixels it returns (float32, made
    from a temporary of the same size; uint8 with ``keep_uint8`` for 8-bit files)."""
    px = width * height
    sample = 2 if mode.startswith("I;16") else (4 if mode in ("I", "F") else 1)
    try:
        bands = Image.getmodebands(mode)
    except (KeyError, ValueError):  # a mode this Pillow does not name: assume four bands
        bands = 4
    out_channels = 1 if mode in ("1", "L", "LA", "La", "I", "F") or mode.startswith("I;16") else 3
    out = out_channels * (1 if keep_uint8 and sample == 1 else 8)
    return px * (bands * sample + 3 + out)


def read_page(path: str | os.PathLike, max_pixels: int = MAX_PIXELS, keep_uint8: bool = False) -> Page:
    """Read one page file. See the module docstring for what is accepted.

    ``keep_uint8``: 8-bit files give ``uint8`` pixels (0..255) instead of float32, a quarter of the
    memory for large pages (16-bit and float files are float32 either way).

    Raises ``ValueError`` naming ``path`` when it is missing, empty, not an image, truncated,
    has a zero width or height, or has more than ``max_pixels`` pixels, and ``MemoryError`` (with
    the size and the memory free) before decoding a page that would not fit in memory.
    """
    path = Path(path)
    name = str(path)
    if not path.is_file():
        raise ValueError(f"page file {name!r} does not exist or is not a file")
    if path.stat().st_size == 0:
        raise ValueError(f"page file {name!r} is empty (0 bytes): expected a PNG, JPEG, TIFF or WebP image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise ValueError(f"page file {name!r} is too large to read: {exc}") from None
    except UnidentifiedImageError:
        raise ValueError(
            f"page file {name!r} is not a readable image: expected a PNG, JPEG, TIFF or WebP file"
        ) from None
    except OSError as exc:
        raise ValueError(f"page file {name!r} could not be opened: {exc}") from None
    with im:
        width, height = im.size
        if width <= 0 or height <= 0:
            raise ValueError(f"page file {name!r} has a zero-size image ({width}x{height} px)")
        if width * height > max_pixels:
            raise ValueError(
                f"page file {name!r} has {width}x{height} = {width * height} px, more than the "
                f"{max_pixels} px accepted (max_pixels)"
            )
        checks.require_memory(decode_bytes(im.mode, width, height, keep_uint8), f"reading {name!r} ({width}x{height} px)")
        fmt = im.format or path.suffix.lstrip(".").upper()
        dpi = _clean_dpi(im.info.get("dpi"))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im.load()
                turned = im.getexif().get(0x0112, 1) not in (0, 1)  # EXIF orientation
                upright = ImageOps.exif_transpose(im) if turned else im
        except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data
            raise ValueError(f"page file {name!r} is truncated or corrupt: {exc}") from None
        pixels, bit_depth = _to_array(upright, name, keep_uint8)
    return Page(pixels=np.ascontiguousarray(pixels), dpi=dpi, bit_depth=bit_depth, format=fmt)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """The pixels of a page file: float32 ``[H, W, C]`` in 0..1 (see :func:`read_page`)."""
    return read_page(path).pixels


def _to_pil(image: np.ndarray, bit_depth: int, fmt: str) -> Image.Image:
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise ValueError(f"image: expected [H, W], [H, W, 1] or [H, W, 3], got shape {tuple(arr.shape)}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"image: zero-size image ({arr.shape[1]}x{arr.shape[0]} px) cannot be written")
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth: expected 8 or 16, got {bit_depth!r}")
    if bit_depth == 16 and (arr.ndim == 3 or fmt not in ("PNG", "TIFF")):
        bit_depth = 8  # Pillow writes 16 bits only for grayscale PNG/TIFF
    if arr.dtype == np.uint8 and bit_depth == 8:
        q = arr
    elif arr.dtype == np.uint16 and bit_depth == 16:
        q = arr
    elif np.issubdtype(arr.dtype, np.floating):
        top = 255.0 if bit_depth == 8 else 65535.0
        q = np.empty(arr.shape, np.float32)
        np.multiply(arr, np.float32(top), out=q, casting="unsafe")
        np.add(q, np.float32(0.5), out=q)
        np.clip(q, 0.0, top, out=q)
        q = q.astype(np.uint8 if bit_depth == 8 else np.uint16)
    else:
        raise ValueError(
            f"image: expected float values in 0..1 (or uint8 for 8 bits, uint16 for 16 bits), "
            f"got dtype {arr.dtype} for bit_depth {bit_depth}"
        )
    if q.ndim == 2 and q.dtype == np.uint16:
        return Image.fromarray(q.astype("<u2", copy=False))
    return Image.fromarray(q)


def _save_options(fmt: str, dpi, quality: int) -> dict:
    opts: dict = {}
    if dpi is not None and fmt in ("PNG", "JPEG", "TIFF"):
        opts["dpi"] = (float(dpi[0]), float(dpi[1]))
    if fmt == "PNG":
        opts["compress_level"] = 3  # large pages: much faster than the default 6, nearly as small
    elif fmt == "JPEG":
        opts.update(quality=int(quality), subsampling=0)
    elif fmt == "TIFF":
        opts["compression"] = "tiff_adobe_deflate"
    elif fmt == "WEBP":
        opts.update(lossless=True, quality=int(quality), method=1)
    return opts


def write_image(
    path: str | os.PathLike,
    image: np.ndarray,
    dpi: tuple[float, float] | None = None,
    bit_depth: int = 8,
    quality: int = 95,
    format: str | None = None,
) -> Path:
    """Write ``image`` (float ``[H, W]``/``[H, W, 1]``/``[H, W, 3]`` in 0..1) to ``path`` atomically.

    The format follows the extension (``.png``, ``.jpg``/``.jpeg``, ``.tif``/``.tiff``, ``.webp``)
    unless ``format`` names one. ``dpi`` is written into PNG, JPEG and TIFF files. ``bit_depth``
    16 is kept for grayscale PNG and TIFF, else 8 bits are written. The data goes to a temporary
    file next to ``path`` and replaces ``path`` only when complete; on any error the temporary
    file is removed and the error re-raised, and an existing ``path`` is left untouched.
    """
    path = Path(path)
    fmt = (format or FORMATS.get(path.suffix.lower(), "")).upper()
    if fmt == "JPG":
        fmt = "JPEG"
    if fmt not in set(FORMATS.values()):
        raise ValueError(
            f"path: cannot tell the image format of {str(path)!r}; expected one of "
            f"{', '.join(sorted(FORMATS))} (or pass format=)"
        )
    pil = _to_pil(image, bit_depth, fmt)
    options = _save_options(fmt, dpi, quality)
    return _atomic_write(path, lambda fh: pil.save(fh, format=fmt, **options))


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder + ``os.replace``)."""
    return _atomic_write(path, lambda fh: fh.write(data))


def _current_umask() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()


def _atomic_write(path: str | os.PathLike, write) -> Path:
    """Call ``write(file)`` on a temporary file next to ``path``, then move it over ``path``.

    On any error (a full disk, an interruption) the temporary file is removed and the error
    re-raised: ``path`` is either its old self or the complete new file, never a partial one.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600 files; pages get the usual permissions
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path
