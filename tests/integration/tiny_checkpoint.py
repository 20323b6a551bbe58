"""Build a tiny random-weight SD1.5 checkpoint that ComfyUI loads with CheckpointLoaderSimple.

ComfyUI recognises SD1.5 by a handful of UNet config values (model_channels 320, context_dim 768,
non-linear transformer projections, no ADM input). Everything else (depth, number of levels,
res blocks) is read from the tensors, so a UNet with two levels, one res block per level and
transformer depth 1 is detected as SD1.5. The CLIP-L text encoder and the VAE are full size
(their shapes are fixed by the loader), all in the single-file LDM key layout:

    model.diffusion_model.*                  UNet (4 input channels, or 9 for an inpainting model)
    cond_stage_model.transformer.text_model.* CLIP-L
    first_stage_model.*                      AutoencoderKL

The modules are ComfyUI's own classes, so every key and shape is what the loader expects.
ComfyUI's layers skip weight initialisation, so every tensor is initialised here from one seeded
generator: norms 1/0, biases 0, embeddings N(0, 0.02), other weights N(0, gain/sqrt(fan_in)).
Outputs are finite and deterministic, and the same seed gives a bit-identical file.

Run with the Python of a ComfyUI environment (needs ComfyUI on ``--comfyui-dir``):

    python tests/integration/tiny_checkpoint.py --comfyui-dir $COMFYUI_DIR --out tiny.safetensors [--inpaint | --controlnet]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

# Bump when the layout or the initialisation changes: cached files are keyed by it.
BUILDER_VERSION = "1"

UNET_CONFIG = {
    "image_size": 32,
    "model_channels": 320,  # pinned by ComfyUI's SD1.5 detection
    "out_channels": 4,
    "num_res_blocks": [1, 1],
    "channel_mult": [1, 1],
    "transformer_depth": [1, 1],
    "transformer_depth_output": [1, 1, 1, 1],
    "transformer_depth_middle": 1,
    "context_dim": 768,  # pinned (CLIP-L width)
    "num_heads": 8,
    "num_head_channels": -1,
    "use_linear_in_transformer": False,  # pinned
    "use_spatial_transformer": True,
    "legacy": False,
    "adm_in_channels": None,  # pinned
    "use_checkpoint": False,
}

VAE_DDCONFIG = {
    "double_z": True,
    "z_channels": 4,
    "resolution": 256,
    "in_channels": 3,
    "out_ch": 3,
    "ch": 128,
    "ch_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "attn_resolutions": [],
    "dropout": 0.0,
}


def _init_module(module, generator, gain: float = 1.0) -> None:
    """Initialise every parameter of ``module`` in a fixed order from ``generator``."""
    import torch

    norm_types = (torch.nn.GroupNorm, torch.nn.LayerNorm)
    with torch.no_grad():
        for sub in module.modules():
            for name, param in sub.named_parameters(recurse=False):
                if isinstance(sub, norm_types):
                    param.fill_(1.0 if name == "weight" else 0.0)
                elif name == "bias" or param.ndim < 2:
                    param.zero_()
                elif isinstance(sub, torch.nn.Embedding):
                    param.normal_(0.0, 0.02, generator=generator)
                else:
                    fan_in = param[0].numel()
                    param.normal_(0.0, gain / math.sqrt(fan_in), generator=generator)


init_module = _init_module  # public name


def build_state_dict(in_channels: int = 4, seed: int = 0) -> dict:
    """Return the fp16 state dict of a tiny SD1.5 checkpoint (needs ComfyUI importable)."""
    import comfy.clip_model
    import comfy.ldm.models.autoencoder
    import comfy.ldm.modules.diffusionmodules.openaimodel as openaimodel
    import comfy.ops
    import torch

    ops = comfy.ops.disable_weight_init
    generator = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}

    unet = openaimodel.UNetModel(in_channels=in_channels, operations=ops, dtype=torch.float32, **UNET_CONFIG)
    _init_module(unet, generator)
    # A small final projection keeps the prediction in the range of real models.
    with torch.no_grad():
        unet.out[2].weight.mul_(0.1)
    for key, value in unet.state_dict().items():
        out["model.diffusion_model." + key] = value

    config_path = os.path.join(os.path.dirname(comfy.clip_model.__file__), "sd1_clip_config.json")
    with open(config_path) as f:
        clip_config = json.load(f)
    clip = comfy.clip_model.CLIPTextModel(clip_config, dtype=torch.float32, device="cpu", operations=ops)
    _init_module(clip, generator)
    for key, value in clip.state_dict().items():
        if key.startswith("text_model."):  # SD1.5 files carry no text_projection
            out["cond_stage_model.transformer." + key] = value

    vae = comfy.ldm.models.autoencoder.AutoencoderKL(ddconfig=dict(VAE_DDCONFIG), embed_dim=4)
    _init_module(vae, generator)
    for key, value in vae.state_dict().items():
        out["first_stage_model." + key] = value

    return {k: v.detach().to(torch.float16).contiguous() for k, v in out.items()}


def build_controlnet_state_dict(seed: int = 1) -> dict:
    """fp16 state dict of a tiny SD1.5 ControlNet (``control_model.*`` layout) matching the tiny UNet.

    Its zero convolutions are random rather than zero, so the control really changes the result.
    """
    import comfy.cldm.cldm
    import comfy.ops
    import torch

    generator = torch.Generator().manual_seed(seed)
    config = {k: v for k, v in UNET_CONFIG.items() if k != "out_channels"}
    net = comfy.cldm.cldm.ControlNet(
        in_channels=4,
        hint_channels=3,
        operations=comfy.ops.disable_weight_init,
        dtype=torch.float32,
        **config,
    )
    _init_module(net, generator)
    with torch.no_grad():
        for conv in [*net.zero_convs, net.middle_block_out]:
            conv[0].weight.mul_(0.1)
    return {
        "control_model." + k: v.detach().to(torch.float16).contiguous() for k, v in net.state_dict().items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui-dir", required=True, help="ComfyUI source tree")
    parser.add_argument("--out", required=True, help="output .safetensors path")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--inpaint", action="store_true", help="9-channel inpainting UNet")
    kind.add_argument("--controlnet", action="store_true", help="a ControlNet for the tiny UNet instead")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from comfy_harness import import_comfy_on_cpu

    import_comfy_on_cpu(args.comfyui_dir)
    import torch
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    if args.controlnet:
        state_dict = build_controlnet_state_dict(seed=args.seed + 1)
    else:
        state_dict = build_state_dict(in_channels=9 if args.inpaint else 4, seed=args.seed)
    tmp = f"{args.out}.{os.getpid()}.partial"  # concurrent builders never share a temp file
    save_file(state_dict, tmp, metadata={"mdim_test_builder": BUILDER_VERSION, "seed": str(args.seed)})
    os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
