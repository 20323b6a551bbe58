"""Peak memory and time of the SGIM hosts' VAE encode + decode on a large crop, tiled versus untiled.

    python benchmarks/sgim_tiled_vae_memory.py [--size 2048x1536] [--width-div 4]

The VAE has Stable Diffusion's layout (4 levels, 2 res blocks per level, 8x downscale, 512-px tiles)
with its channel widths divided by ``--width-div`` so the run fits a laptop's CPU; activation memory
scales with the widths, so the tiled/untiled *ratio* is what carries over to the real VAE. Each
configuration runs in its own process and reports that process' peak resident memory above the
memory it had before the VAE call (Linux ``ru_maxrss``), side by side in one run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _child(size: tuple[int, int], width_div: int, tiled: bool) -> dict:
    import resource

    import torch
    from diffusers import AutoencoderKL

    sys.path.insert(0, str(REPO))
    from mdim_core.inpaint.diffusers_host import DiffusersHost, make_scheduler

    torch.set_num_threads(2)
    torch.manual_seed(0)
    widths = tuple(max(8, c // width_div) for c in (128, 256, 512, 512))
    vae = AutoencoderKL(
        block_out_channels=widths,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=512,
    ).eval()
    unet_stub = type("U", (), {"config": type("C", (), {"in_channels": 4})(), "device": torch.device("cpu"),
                               "dtype": torch.float32})()  # fmt: skip
    host = DiffusersHost(unet_stub, vae, make_scheduler(None), torch.zeros(1, 1, 8),
                         tiled_vae_megapixels=0.001 if tiled else 0.0)  # fmt: skip
    image = torch.rand(1, size[0], size[1], 3)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with torch.no_grad():
        out = host.decode(host.encode(image))
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert out.shape == image.shape
    return {"tiled": tiled, "peak_mib": (peak - base) / 1024.0, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="2048x1536", help="crop HxW in pixels (default: %(default)s)")
    parser.add_argument("--width-div", type=int, default=4, help="divide SD's VAE widths by this (default: %(default)s)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    h, w = (int(v) for v in args.size.lower().split("x"))
    if args.child is not None:
        print(json.dumps(_child((h, w), args.width_div, args.child == "tiled")))
        return 0
    rows = []
    for mode in ("untiled", "tiled"):
        cmd = [sys.executable, __file__, "--size", args.size, "--width-div", str(args.width_div), "--child", mode]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    untiled, tiled = rows
    print(f"VAE encode + decode of a {w}x{h} crop (SD layout, widths / {args.width_div}), CPU")
    print("| mode | peak memory above baseline (MiB) | time (s) |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {'tiled (512 px)' if r['tiled'] else 'untiled'} | {r['peak_mib']:.0f} | {r['seconds']:.1f} |")
    print(f"tiled / untiled: memory {tiled['peak_mib'] / untiled['peak_mib']:.2f}x, "
          f"time {tiled['seconds'] / untiled['seconds']:.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
