"""Build a tiny random-weight SD1.5 ControlNet that ComfyUI's ControlNetLoader loads.

It mirrors the tiny UNet of ``tiny_checkpoint.py`` (same detection-pinned config: two levels,
one res block each), with a 3-channel hint encoder, saved in the original ``control_model.*``
key layout. Every weight, the zero convolutions included, is initialised from one seeded
generator, so the control signal is non-zero and actually changes what the UNet predicts.

    python tests/integration/tiny_controlnet.py --comfyui-dir $COMFYUI_DIR --out tiny_cn.safetensors
"""

from __future__ import annotations

import argparse
import os
import sys

BUILDER_VERSION = "1"


def build_state_dict(seed: int = 0) -> dict:
    """fp16 state dict of the tiny ControlNet (needs ComfyUI importable)."""
    import comfy.cldm.cldm
    import comfy.ops
    import torch
    from tiny_checkpoint import UNET_CONFIG, init_module

    config = {k: v for k, v in UNET_CONFIG.items() if k not in ("out_channels", "transformer_depth_output")}
    net = comfy.cldm.cldm.ControlNet(
        hint_channels=3, in_channels=4, operations=comfy.ops.disable_weight_init, dtype=torch.float32, **config
    )
    init_module(net, torch.Generator().manual_seed(seed))
    return {"control_model." + k: v.detach().to(torch.float16).contiguous() for k, v in net.state_dict().items()}


def write(path: str | os.PathLike, seed: int = 0) -> None:
    from safetensors.torch import save_file

    tmp = f"{os.fspath(path)}.{os.getpid()}.partial"
    save_file(build_state_dict(seed), tmp, metadata={"mdim_test_builder": BUILDER_VERSION, "seed": str(seed)})
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui-dir", required=True, help="ComfyUI source tree")
    parser.add_argument("--out", required=True, help="output .safetensors path")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from comfy_harness import import_comfy_on_cpu

    import_comfy_on_cpu(args.comfyui_dir)
    import torch

    torch.set_num_threads(1)
    write(args.out, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
