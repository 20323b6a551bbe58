"""Cost of the Symmetric VAE at SD scale, side by side (random weights: cost needs no training).

Cases, each decoding one latent in a fresh subprocess (so peak memory is that case's alone):

* ``base``       SD VAE (diffusers AutoencoderKL, SD1.x config): ``decode(z)``
* ``base_walk``  the same VAE decoded by MDIM's own module walk (``SymmetricVAE.decode(z)``, no
                 source): same output, shows what the walk itself costs or saves
* ``symvae``     Symmetric VAE on that same VAE: ``decode(z, source=image)`` — recomputes the
                 encoder taps from the source image at decode time, adds the adapters
* ``symvae_mask`` the same with a mask (``fill="base"``: one more plain decode for the hole fill)
* ``asym``       diffusers ``AsymmetricAutoencoderKL`` with the published x1.5 decoder
                 (up widths 192/384/768/768, 3 layers per block): ``decode(z, image=, mask=)``

Peak memory is the child's peak RSS during the decode (``VmHWM`` after resetting it through
``/proc/self/clear_refs`` once the model is built, so construction does not count): weights +
activations. "extra" is a case's peak minus the base case's peak. Time is one decode, one thread.

    python benchmarks/symvae_cost.py                 # 512 and 1024 px
    python benchmarks/symvae_cost.py --sizes 512 2048
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = ("base", "base_walk", "symvae", "symvae_mask", "asym")
RESULTS = ROOT / "benchmarks" / "results" / "symvae_cost.md"

SD_VAE = dict(
    in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[128, 256, 512, 512], layers_per_block=2,
    latent_channels=4, norm_num_groups=32, sample_size=512,
)
ASYM_X15 = dict(
    in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
    down_block_out_channels=[128, 256, 512, 512], layers_per_down_block=2,
    up_block_types=["UpDecoderBlock2D"] * 4, up_block_out_channels=[192, 384, 768, 768], layers_per_up_block=3,
    latent_channels=4, norm_num_groups=32, sample_size=256,
)


def _status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1]) / 1024.0  # kB
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) to the current RSS (Linux ``clear_refs`` 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _rss_peak_mb() -> float:
    hwm = _status_mb("VmHWM")
    if hwm is not None:
        return hwm
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def child(case: str, size: int) -> dict:
    import torch

    sys.path.insert(0, str(ROOT))
    torch.set_num_threads(1)
    torch.manual_seed(0)
    from diffusers import AsymmetricAutoencoderKL, AutoencoderKL

    from mdim_core.symvae import SymmetricVAE

    g = torch.Generator().manual_seed(0)
    z = torch.randn(1, 4, size // 8, size // 8, generator=g)
    image = torch.rand(1, size, size, 3, generator=g)
    mask = torch.zeros(1, size, size)
    mask[:, size // 4 : size // 2, size // 4 : size // 2] = 1
    with torch.no_grad():
        if case == "asym":
            model = AsymmetricAutoencoderKL(**ASYM_X15).eval()
            params = sum(p.numel() for p in model.parameters())
            extra_params = sum(p.numel() for p in model.decoder.parameters()) - _sd_decoder_params()
            img = image.movedim(-1, 1) * 2 - 1
            m = mask[:, None]

            def run():
                return model.decode(z, image=img, mask=m).sample
        else:
            vae = AutoencoderKL(**SD_VAE).eval()
            params = sum(p.numel() for p in vae.parameters())
            sym = SymmetricVAE(vae).eval()
            extra_params = sum(p.numel() for p in sym.parameters()) if case.startswith("symvae") else 0

            if case == "base":
                def run():
                    return vae.decode(z).sample
            elif case == "base_walk":
                def run():
                    return sym.decode(z, tile=0)
            elif case == "symvae":
                def run():
                    return sym.decode(z, source=image, tile=0)
            else:
                def run():
                    return sym.decode(z, source=image, mask=mask, tile=0)
        import gc

        gc.collect()
        reset = _reset_peak()
        before = _status_mb("VmRSS") or 0.0
        t0 = time.perf_counter()
        run()
        seconds = time.perf_counter() - t0
    return {"case": case, "size": size, "params": params, "extra_params": extra_params, "seconds": seconds,
            "rss_before_mb": before, "rss_peak_mb": _rss_peak_mb(), "peak_reset": reset}


def _sd_decoder_params() -> int:
    from diffusers import AutoencoderKL

    return sum(p.numel() for p in AutoencoderKL(**SD_VAE).decoder.parameters())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--child", nargs=2, metavar=("CASE", "SIZE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]))))
        return 0
    rows = []
    for size in args.sizes:
        for case in CASES:
            proc = subprocess.run([sys.executable, __file__, "--child", case, str(size)], capture_output=True,
                                  text=True, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
            if proc.returncode != 0:
                print(proc.stderr[-2000:], file=sys.stderr)
                return 1
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"  {case:12s} {size:5d}px  {row['seconds']:7.1f} s  peak {row['rss_peak_mb']:8.0f} MB", flush=True)
    lines = [
        "# Symmetric VAE cost at SD scale (benchmarks/symvae_cost.py)",
        "",
        "Random weights, CPU, one thread, one decode. Peak = process peak RSS during the decode (weights + "
        "activations); extra = peak minus the base VAE's peak at the same size (base_walk: the same VAE decoded "
        "by MDIM's own module walk, which frees intermediates earlier). Asymmetric = diffusers "
        "AsymmetricAutoencoderKL with the published x1.5 decoder. Times on a shared CPU are noisy; memory is the "
        "robust measure.",
        "",
        "| size | decoder | params | extra params | decode s | time ratio | peak MB | extra MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ratios = []
    for size in args.sizes:
        sub = {r["case"]: r for r in rows if r["size"] == size}
        base = sub["base"]
        for case in CASES:
            r = sub[case]
            extra = r["rss_peak_mb"] - base["rss_peak_mb"]
            lines.append(
                f"| {size} | {case} | {r['params'] / 1e6:.1f} M | {r['extra_params'] / 1e6:.2f} M | {r['seconds']:.1f} | "
                f"{r['seconds'] / base['seconds']:.2f} | {r['rss_peak_mb']:.0f} | {extra:+.0f} |"
            )
        walk = sub["base_walk"]["rss_peak_mb"]
        sym_extra = sub["symvae"]["rss_peak_mb"] - base["rss_peak_mb"]
        mask_extra = sub["symvae_mask"]["rss_peak_mb"] - base["rss_peak_mb"]
        asym_extra = sub["asym"]["rss_peak_mb"] - base["rss_peak_mb"]
        ratios.append((size, sym_extra, mask_extra, asym_extra, sub["symvae"]["rss_peak_mb"] - walk,
                       sub["symvae_mask"]["rss_peak_mb"] - walk))
    lines.append("")
    for size, s, sm, a, sw, smw in ratios:
        for label, v, vw in (("Symmetric VAE", s, sw), ("Symmetric VAE with mask", sm, smw)):
            verdict = "meets" if a > 0 and v <= a / 4 else "MISSES"
            lines.append(f"- {size} px: {label} extra {v:+.0f} MB (over MDIM's own plain walk: {vw:+.0f} MB) vs "
                         f"Asymmetric VAE extra {a:+.0f} MB: ratio {v / a if a else float('nan'):.2f}, "
                         f"target <= 0.25 {verdict}")
    text = "\n".join(lines)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
