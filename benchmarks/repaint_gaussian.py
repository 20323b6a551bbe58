"""How much RePaint's resampling makes a fill agree with its surroundings, on models with an exact answer.

No image model exists here, so the data are Gaussian, where the exact denoiser
``E[x0 | x] = C (C + sigma^2 I)^-1 x`` and the exact conditional distribution of the unknown part given the
known part are known in closed form. Two problems, each sampled many times in one batch:

- ``pairs``: (a, b) with correlation 0.95; a is known, b is drawn. Score: the regression slope of b on a
  (right answer 0.95) and the residual variance of b around 0.95 a, relative to the right 1 - 0.95^2.
- ``seam``: a 1-D signal of 32 values with correlation 0.9^|i - j| (an AR(1) "scanline"); the first 16 are
  known, the last 16 drawn. Score: the mean squared jump across the seam, E[(x16 - x15)^2], relative to
  the right 2 (1 - 0.9) -- a fill that ignores its surroundings leaves a step at the seam.

Every setting runs in the same process on the same data and noise, with SD1.x's sigma table (KSampler's
"simple" spacing, sigma_max 14.6) and with the zero-terminal-SNR table (trailing, sigma_max 4518.8).

    python benchmarks/repaint_gaussian.py [--steps 30 --out benchmarks/results/repaint_gaussian.md]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from mdim_core.sampling import repaint  # noqa: E402
from mdim_core.sampling import schedule as S  # noqa: E402

SETTINGS = [
    (1, 1),
    (10, 2),
    (10, 5),
    (10, 10),
    (5, 5),
    (5, 10),
    (3, 10),
    (2, 10),
]  # (jump_length, jump_n_sample)


def gaussian(cov: torch.Tensor):
    """Exact denoiser of N(0, cov) over the last dimension."""
    evals, evecs = torch.linalg.eigh(cov)

    def denoise(x, sigma):
        gain = evals / (evals + float(sigma) ** 2)
        return (((x.double() @ evecs) * gain) @ evecs.T).to(x.dtype)

    return denoise


def problem(name: str, n: int, seed: int = 0):
    if name == "pairs":
        rho = 0.95
        cov = torch.tensor([[1.0, rho], [rho, 1.0]], dtype=torch.float64)
        mask = torch.tensor([0.0, 1.0])
    else:
        rho = 0.9
        idx = torch.arange(32, dtype=torch.float64)
        cov = rho ** (idx[:, None] - idx[None, :]).abs()
        mask = (torch.arange(32) >= 16).float()
    g = torch.Generator().manual_seed(seed)
    x0 = (
        torch.randn(n, cov.shape[0], generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    ).float()
    noise = torch.randn(n, cov.shape[0], generator=g)
    return x0, noise, mask, gaussian(cov), rho


def score(name: str, out: torch.Tensor, rho: float) -> tuple[float, ...]:
    out = out.double()
    if name == "pairs":
        a, b = out[:, 0], out[:, 1]
        return float((a * b).mean() / (a * a).mean()), float((b - rho * a).var() / (1 - rho**2))
    jump = ((out[:, 16] - out[:, 15]) ** 2).mean()
    return (float(jump / (2 * (1 - rho))),)


def sd15_sigmas(steps: int) -> torch.Tensor:
    table = S.sigmas_from_alphas_cumprod(
        S.alphas_cumprod_from_betas(S.scaled_linear_betas(dtype=torch.float64))
    )
    return S.trailing_sigmas(table.float(), steps)  # = KSampler's "simple" spacing for these step counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--out", help="also write the table as markdown here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    schedules = {
        "SD1.x (sigma_max 14.6)": sd15_sigmas(args.steps),
        "zero SNR (sigma_max 4518.8)": S.trailing_sigmas(S.zero_snr_sigmas(), args.steps),
    }
    lines = [
        f"# RePaint resampling on exact Gaussian models ({args.steps} steps, {args.samples} samples per row)",
        "",
        "`pairs`: slope of b on a (right: 0.950) and residual variance / right (1.00). "
        "`seam`: mean squared jump across the seam / right (1.00 = no visible seam).",
        "",
    ]
    for sched_name, sigmas in schedules.items():
        lines += [f"## {sched_name}", "", "| step | j | r | model calls | pairs slope | pairs resid. | seam jump |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for step in ("ddpm", "euler"):
            for j, r in SETTINGS:
                row = [step, str(j), str(r), str(repaint.model_calls(args.steps, j, r))]
                cells = {}
                for name in ("pairs", "seam"):
                    x0, noise, mask, denoise, rho = problem(name, args.samples)
                    out = repaint.sample(denoise, noise * sigmas[0] + x0, sigmas, latent=x0, noise=noise, mask=mask,
                                         jump_length=j, jump_n_sample=r, step=step, seed=1)  # fmt: skip
                    cells[name] = score(name, out, rho)
                row += [f"{cells['pairs'][0]:.3f}", f"{cells['pairs'][1]:.2f}", f"{cells['seam'][0]:.2f}"]
                lines.append("| " + " | ".join(row) + " |")
                print(lines[-1], flush=True)
        lines.append("")
    text = "\n".join(lines)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
