"""Fidelity metrics of restored or inpainted manga pages against ground truth.

Pages are compared in grayscale float 0..1 (RGB is converted with BT.601 luma, ``uint8`` scaled
by 1/255). Masks are ``[H, W]`` (bool, or float where > 0.5 counts), True = the repainted region.
Every metric is computed in row strips, so full 600-dpi pages fit in memory.

* :func:`psnr` and :func:`ssim`, over the whole image, inside or outside a mask. SSIM follows
  Wang et al. 2004 as commonly implemented: gaussian window sigma 1.5 (truncated at 3.5 sigma,
  an 11-px window), K1 = 0.01, K2 = 0.03, data range 1, population covariances, reflected edges;
  the whole-image mean excludes the 5-px border (as scikit-image does).
* :func:`max_abs_outside`: the largest change outside the mask (0 = untouched pixels kept).
* :func:`paper_whiteness`: share of the truth's white paper (>= 250/255) that stays >= 250/255.
* :func:`invented_ink`: of the mask's regions whose truth is empty paper, how many the output draws ink into.
* :func:`tone_fidelity`: in screentone tiles, the local halftone period (FFT peak) and the mean
  tone (gaussian low-pass at the dot period) of the output against the truth.
* :func:`seam_score`: gradient energy in a thin band along the mask border against the truth.
* :func:`evaluate_pair` computes them all at once.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from ..restore.levels import _gray_view

__all__ = [
    "psnr",
    "ssim",
    "ssim_map",
    "max_abs_outside",
    "paper_whiteness",
    "invented_ink",
    "tone_fidelity",
    "local_period",
    "seam_score",
    "evaluate_pair",
    "METRIC_NAMES",
]

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
_SSIM_PAD = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)  # 5: half the 11-px window
_STRIP = 512
#: Floor added to both gradient energies of the seam ratio (a 1 % grey step per pixel), so flat
#: paper in the truth does not make the ratio explode.
SEAM_EPS = 1e-4
WHITE = 250.0 / 255.0

#: Keys of :func:`evaluate_pair`'s result, in table order.
METRIC_NAMES = (
    "psnr", "psnr_in", "psnr_out", "ssim", "ssim_in", "ssim_out", "max_abs_out", "paper_white",
    "tone_err", "period_err", "period_match", "seam_err", "seam_ratio",
)


def _pair(output, truth):
    a = _gray_view(output, "output")
    b = _gray_view(truth, "truth")
    if a.shape != b.shape:
        raise ValueError(f"output and truth must have the same size, got {a.shape} and {b.shape}")
    return a, b


def _pair_region(output, truth, mask, region: str):
    """(output, truth, mask, index of ``region``: 0 all, 1 in, 2 out) for the region metrics."""
    a, b = _pair(output, truth)
    m = _mask(mask, a.shape)
    idx = {"all": 0, "in": 1, "out": 2}.get(region)
    if idx is None:
        raise ValueError(f"region must be 'all', 'in' or 'out', got {region!r}")
    if idx and m is None:
        raise ValueError("mask is required for region 'in' or 'out'")
    return a, b, m, idx


def _mask(mask, shape, name="mask"):
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[0] == 1:
        m = m[0]
    if m.ndim == 3 and m.shape[2] in (1, 3, 4):
        m = m[..., 0]
    if m.shape != shape:
        raise ValueError(f"{name} must be [H, W] = {shape} like the images, got {m.shape}")
    if m.dtype == bool:
        return m
    if m.dtype == np.uint8:
        return m > 127
    return m > 0.5


def _strips(h):
    for y0 in range(0, h, _STRIP):
        yield y0, min(h, y0 + _STRIP)


# ---------------------------------------------------------------------------------------------
# PSNR


def _sq_err_sums(a, b, m):
    """(sum of squared errors, count) over all / inside / outside."""
    tot = [0.0, 0.0, 0.0]
    cnt = [0, 0, 0]
    for y0, y1 in _strips(a.shape[0]):
        d = a[y0:y1].astype(np.float64) - b[y0:y1]
        d *= d
        tot[0] += float(d.sum())
        cnt[0] += d.size
        if m is not None:
            mm = m[y0:y1]
            s_in = float(d[mm].sum())
            n_in = int(mm.sum())
            tot[1] += s_in
            cnt[1] += n_in
            tot[2] += float(d[~mm].sum())  # summed apart: no cancellation error
            cnt[2] += d.size - n_in
    return tot, cnt


def _psnr_from(sse, n):
    if n == 0:
        return float("nan")
    mse = sse / n
    return float("inf") if mse == 0 else float(10.0 * math.log10(1.0 / mse))


def psnr(output, truth, mask=None, region: str = "all") -> float:
    """PSNR in dB (data range 1) over ``region`` = ``"all"``, ``"in"`` (mask) or ``"out"``.

    Identical images give ``inf``; an empty region gives ``nan``.
    """
    a, b, m, idx = _pair_region(output, truth, mask, region)
    tot, cnt = _sq_err_sums(a, b, m)
    return _psnr_from(tot[idx], cnt[idx])


# ---------------------------------------------------------------------------------------------
# SSIM


def _ssim_rows(a, b, y0, y1):
    """SSIM map rows y0..y1, computed on a strip with a halo (exact: reflection only at real edges)."""
    h = a.shape[0]
    halo = _SSIM_PAD + 1
    s0, s1 = max(0, y0 - halo), min(h, y1 + halo)
    x = a[s0:s1].astype(np.float64)
    y = b[s0:s1].astype(np.float64)
    f = lambda z: ndimage.gaussian_filter(z, SSIM_SIGMA, truncate=SSIM_TRUNCATE, mode="reflect")  # noqa: E731
    # Rows within the halo see the strip's artificial ends; they are cropped away below, so the
    # result equals the whole-image computation (reflection happens only at the real edges).
    ux, uy = f(x), f(y)
    uxx, uyy, uxy = f(x * x), f(y * y), f(x * y)
    vx = uxx - ux * ux
    vy = uyy - uy * uy
    vxy = uxy - ux * uy
    c1, c2 = (SSIM_K1) ** 2, (SSIM_K2) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s[y0 - s0 : y1 - s0]


def ssim_map(output, truth) -> np.ndarray:
    """Per-pixel SSIM map (float32 ``[H, W]``)."""
    a, b = _pair(output, truth)
    out = np.empty(a.shape, np.float32)
    for y0, y1 in _strips(a.shape[0]):
        out[y0:y1] = _ssim_rows(a, b, y0, y1)
    return out


def _ssim_all(a, b, m):
    """Mean SSIM over (all without the border, inside mask, outside mask)."""
    h, w = a.shape
    p = _SSIM_PAD
    tot = [0.0, 0.0, 0.0]
    cnt = [0, 0, 0]
    for y0, y1 in _strips(h):
        s = _ssim_rows(a, b, y0, y1)
        r0, r1 = max(y0, p), min(y1, h - p)
        if r1 > r0 and w > 2 * p:
            core = s[r0 - y0 : r1 - y0, p : w - p]
            tot[0] += float(core.sum())
            cnt[0] += core.size
        if m is not None:
            mm = m[y0:y1]
            tot[1] += float(s[mm].sum())
            cnt[1] += int(mm.sum())
            tot[2] += float(s[~mm].sum())
            cnt[2] += int((~mm).sum())
    return [t / c if c else float("nan") for t, c in zip(tot, cnt)]


def ssim(output, truth, mask=None, region: str = "all") -> float:
    """Mean SSIM over ``region`` = ``"all"`` (without the 5-px border), ``"in"`` or ``"out"``."""
    a, b, m, idx = _pair_region(output, truth, mask, region)
    if min(a.shape) < 2 * _SSIM_PAD + 1:
        raise ValueError(f"images must be at least {2 * _SSIM_PAD + 1} px on each side for SSIM, got {a.shape}")
    return float(_ssim_all(a, b, m)[idx])


# ---------------------------------------------------------------------------------------------
# untouched pixels, paper


def max_abs_outside(output, truth, mask) -> float:
    """Largest ``|output - truth|`` outside the mask (0.0 when nothing outside changed)."""
    a, b = _pair(output, truth)
    m = _mask(mask, a.shape)
    if m is None:
        raise ValueError("mask is required for max_abs_outside")
    best = 0.0
    for y0, y1 in _strips(a.shape[0]):
        d = np.abs(a[y0:y1].astype(np.float64) - b[y0:y1])[~m[y0:y1]]
        if d.size:
            best = max(best, float(d.max()))
    return best


def paper_whiteness(output, truth, mask=None, threshold: float = WHITE) -> float:
    """Share of the truth's white pixels (>= ``threshold``) that stay >= ``threshold`` in the output,
    inside the mask when one is given. ``nan`` when the truth has no white there."""
    a, b = _pair(output, truth)
    m = _mask(mask, a.shape)
    eps = 1e-6
    white = kept = 0
    for y0, y1 in _strips(a.shape[0]):
        tw = b[y0:y1] >= threshold - eps
        if m is not None:
            tw &= m[y0:y1]
        white += int(tw.sum())
        kept += int((tw & (a[y0:y1] >= threshold - eps)).sum())
    return kept / white if white else float("nan")


def invented_ink(output, truth, mask, *, paper: float = WHITE, ink: float = 0.5, min_share: float = 0.01,
                 min_pixels: int = 4) -> tuple[int, int]:
    """Fills that invent ink where the truth is empty paper (the "heads and totems" a model draws into bubbles).

    The mask's 8-connected regions whose truth is empty paper (>= 99 % of the region >= ``paper``) are counted;
    a region's fill invents ink when more than ``min_share`` of it, and at least ``min_pixels`` px, is darker
    than ``ink`` in the output. Returns ``(regions with invented ink, empty-paper regions)``.
    """
    a, b = _pair(output, truth)
    m = _mask(mask, a.shape)
    if m is None:
        raise ValueError("mask is required for invented_ink")
    labels, n = ndimage.label(m, structure=np.ones((3, 3), bool))
    if n == 0:
        return 0, 0
    idx = np.arange(1, n + 1)
    size = ndimage.sum_labels(np.ones_like(a, np.float32), labels, idx)
    white = ndimage.sum_labels((b >= paper - 1e-6).astype(np.float32), labels, idx)
    dark = ndimage.sum_labels((a < ink).astype(np.float32), labels, idx)
    empty = white >= 0.99 * size
    inked = empty & (dark > min_share * size) & (dark >= min_pixels)
    return int(inked.sum()), int(empty.sum())


# ---------------------------------------------------------------------------------------------
# screentone


def local_period(tile: np.ndarray, min_period: float = 2.0, max_period: float = 24.0) -> tuple[float, float]:
    """Dominant halftone period (px) of a tile from its FFT peak, and the peak's share of the
    tile's non-DC power (how periodic the tile is: ~0 for flat or random content).

    The spectrum of the Hann-windowed tile is zero-padded 4x and the peak refined by parabolic
    interpolation. Returns ``(nan, 0.0)`` for a flat tile.
    """
    t = np.asarray(tile, np.float64)
    n0, n1 = t.shape
    t = t - t.mean()
    win = np.outer(np.hanning(n0), np.hanning(n1))
    t = t * win
    power = np.abs(np.fft.rfft2(t)) ** 2
    total = power.sum() - power[0, 0]
    if total <= 1e-12:
        return float("nan"), 0.0
    pad = 4
    big = np.abs(np.fft.rfft2(t, s=(n0 * pad, n1 * pad))) ** 2
    fy = np.fft.fftfreq(n0 * pad)[:, None]
    fx = np.fft.rfftfreq(n1 * pad)[None, :]
    fr = np.sqrt(fy * fy + fx * fx)
    band = (fr >= 1.0 / max_period) & (fr <= 1.0 / min_period)
    big = np.where(band, big, 0.0)
    iy, ix = np.unravel_index(int(np.argmax(big)), big.shape)
    if big[iy, ix] <= 0:
        return float("nan"), 0.0
    # 4x zero padding: the peak frequency is found to 1/(4n) (about 2 % of a 5-px period in 64 px).
    f_y = float(np.fft.fftfreq(n0 * pad)[iy])
    f_x = float(np.fft.rfftfreq(n1 * pad)[ix])
    f = math.hypot(f_y, f_x)
    # Peak share on the unpadded spectrum: the 3x3 neighbourhood of the peak bin.
    py = int(round(f_y * n0)) % n0
    px = int(round(f_x * n1))
    ys = [(py + k) % n0 for k in (-1, 0, 1)]
    xs = [x for x in (px - 1, px, px + 1) if 0 <= x < power.shape[1]]
    share = float(power[np.ix_(ys, xs)].sum() / total)
    return (1.0 / f if f > 0 else float("nan")), share


def _tiles(h, w, tile):
    for y0 in range(0, h - tile + 1, tile):
        for x0 in range(0, w - tile + 1, tile):
            yield y0, x0


def tone_fidelity(
    output,
    truth,
    mask=None,
    screentone=None,
    tile: int = 64,
    min_share: float = 0.05,
    period_tolerance: float = 0.1,
) -> dict[str, float]:
    """Screentone fidelity in ``tile`` x ``tile`` tiles.

    Tone tiles are those the ``screentone`` map covers by >= 90 % (or, without one, those where
    the truth has a clear FFT peak: peak share >= ``min_share``); with a ``mask`` only tone tiles at
    least half inside it count. Per tile, the period of output and truth come from
    :func:`local_period`; the mean tone is a gaussian low-pass (sigma = the truth's period).

    Returns ``tone_err`` (mean absolute difference of the low-passed tone over the counted tiles),
    ``period_err`` (median relative period error; a tile without a peak in the output counts as 1),
    ``period_match`` (share of tiles whose output period is within ``period_tolerance``) and
    ``tone_tiles`` (how many tiles counted). Values are ``nan`` when no tile counts.
    """
    a, b = _pair(output, truth)
    m = _mask(mask, a.shape)
    st = _mask(screentone, a.shape, "screentone")
    h, w = a.shape
    if tile < 16:
        raise ValueError(f"tile must be >= 16 px, got {tile}")
    tone_errs, period_errs, matches = [], [], []
    for y0, x0 in _tiles(h, w, tile):
        sl = (slice(y0, y0 + tile), slice(x0, x0 + tile))
        if m is not None and m[sl].mean() < 0.5:
            continue
        if st is not None and st[sl].mean() < 0.9:
            continue
        tb = b[sl]
        p_t, share_t = local_period(tb)
        if not (share_t >= min_share and np.isfinite(p_t)):
            continue
        ta = a[sl]
        p_o, share_o = local_period(ta)
        # Low-pass both at the truth's dot period on the tile plus a margin (then crop the margin).
        mg = int(math.ceil(3 * p_t))
        big = (slice(max(0, y0 - mg), min(h, y0 + tile + mg)), slice(max(0, x0 - mg), min(w, x0 + tile + mg)))
        inner = (slice(y0 - big[0].start, y0 - big[0].start + tile), slice(x0 - big[1].start, x0 + tile - big[1].start))
        lo_a = ndimage.gaussian_filter(a[big].astype(np.float64), p_t, mode="reflect")[inner]
        lo_b = ndimage.gaussian_filter(b[big].astype(np.float64), p_t, mode="reflect")[inner]
        tone_errs.append(float(np.abs(lo_a - lo_b).mean()))
        if share_o >= min_share / 2 and np.isfinite(p_o):
            rel = abs(p_o - p_t) / p_t
        else:
            rel = 1.0
        period_errs.append(min(rel, 1.0))
        matches.append(rel <= period_tolerance)
    if not tone_errs:
        nan = float("nan")
        return dict(tone_err=nan, period_err=nan, period_match=nan, tone_tiles=0)
    return dict(tone_err=float(np.mean(tone_errs)), period_err=float(np.median(period_errs)),
                period_match=float(np.mean(matches)), tone_tiles=len(tone_errs))


# ---------------------------------------------------------------------------------------------
# seams


def _grad2(img):
    """Squared gradient magnitude with forward differences (last row/column: 0)."""
    gx = np.zeros(img.shape, np.float64)
    gy = np.zeros(img.shape, np.float64)
    gx[:, :-1] = np.diff(img, axis=1)
    gy[:-1, :] = np.diff(img, axis=0)
    return gx, gy


def seam_score(output, truth, mask, band: int = 3) -> dict[str, float]:
    """Gradient energy in a band of ``band`` px on both sides of the mask border.

    ``seam_err``: mean squared gradient of ``output - truth`` in the band (0 = no seam at all);
    ``seam_ratio``: gradient energy of the output over that of the truth in the band, each plus
    :data:`SEAM_EPS` (1 = the border is as busy as in the truth; > 1 a visible seam). ``nan`` for an empty or full mask.
    """
    a, b = _pair(output, truth)
    m = _mask(mask, a.shape)
    if m is None:
        raise ValueError("mask is required for seam_score")
    if band < 1:
        raise ValueError(f"band must be >= 1 px, got {band}")
    nan = float("nan")
    if not m.any() or m.all():
        return dict(seam_err=nan, seam_ratio=nan)
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    y0, y1 = max(0, rows[0] - band - 1), min(a.shape[0], rows[-1] + band + 2)
    x0, x1 = max(0, cols[0] - band - 1), min(a.shape[1], cols[-1] + band + 2)
    mm = m[y0:y1, x0:x1]
    ring = ndimage.binary_dilation(mm, iterations=band) & ~ndimage.binary_erosion(mm, iterations=band, border_value=1)
    sa = a[y0:y1, x0:x1].astype(np.float64)
    sb = b[y0:y1, x0:x1].astype(np.float64)
    ex, ey = _grad2(sa - sb)
    err = float((ex * ex + ey * ey)[ring].mean())
    ax, ay = _grad2(sa)
    bx, by = _grad2(sb)
    ea = float((ax * ax + ay * ay)[ring].mean())
    eb = float((bx * bx + by * by)[ring].mean())
    return dict(seam_err=err, seam_ratio=(ea + SEAM_EPS) / (eb + SEAM_EPS))


# ---------------------------------------------------------------------------------------------


def evaluate_pair(output, truth, mask=None, screentone=None, tile: int = 64) -> dict[str, float]:
    """Every metric of ``output`` against ``truth`` (see :data:`METRIC_NAMES`).

    Without a mask the inside/outside and seam metrics are ``nan``.
    """
    a, b = _pair(output, truth)
    m = _mask(mask, a.shape)
    tot, cnt = _sq_err_sums(a, b, m)
    res = dict(psnr=_psnr_from(tot[0], cnt[0]))
    res["psnr_in"] = _psnr_from(tot[1], cnt[1]) if m is not None else float("nan")
    res["psnr_out"] = _psnr_from(tot[2], cnt[2]) if m is not None else float("nan")
    if min(a.shape) >= 2 * _SSIM_PAD + 1:
        s_all, s_in, s_out = _ssim_all(a, b, m)
    else:
        s_all = s_in = s_out = float("nan")
    res["ssim"] = s_all
    res["ssim_in"] = s_in if m is not None else float("nan")
    res["ssim_out"] = s_out if m is not None else float("nan")
    res["max_abs_out"] = max_abs_outside(a, b, m) if m is not None else float("nan")
    res["paper_white"] = paper_whiteness(a, b, m)
    tf = tone_fidelity(a, b, m, screentone, tile=tile)
    res["tone_err"], res["period_err"], res["period_match"] = tf["tone_err"], tf["period_err"], tf["period_match"]
    if m is not None:
        res.update(seam_score(a, b, m))
    else:
        res["seam_err"] = res["seam_ratio"] = float("nan")
    return res
