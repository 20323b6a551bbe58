"""The single-file layout of Stable Diffusion 1.x checkpoints (the original LDM key names), both ways.

A single-file checkpoint (what ComfyUI keeps in ``models/checkpoints`` and reads with Load Checkpoint) holds

    model.diffusion_model.*                   the UNet, in the LDM "openaimodel" names
    cond_stage_model.transformer.text_model.* the CLIP text encoder, in Hugging Face's names
    first_stage_model.*                       the VAE, in the LDM autoencoder names

and optionally marker keys: ``v_pred`` (a v-prediction model) and ``ztsnr`` (a zero-terminal-SNR model),
empty tensors, as ComfyUI's CheckpointSave writes them.

diffusers -> LDM is written here (:func:`unet_to_ldm`, :func:`vae_to_ldm`, :func:`clip_to_ldm`) for UNets
of any depth (levels, res blocks per level, attention per level), so a small model converts as well as
SD1.5. LDM -> diffusers uses diffusers' own converters; what they cannot read from the tensors (the
diffusers UNet config) is inferred here (:func:`unet_config_from_ldm`), or read from the metadata our own
files carry.
"""

from __future__ import annotations

import re

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."
MARKER_KEYS = ("v_pred", "ztsnr")

_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_VAE_RESNET = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2", "conv_shortcut": "nin_shortcut"}
_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _rename_resnet(rest: str, table: dict[str, str]) -> str:
    head, _, tail = rest.partition(".")
    if head not in table:
        raise KeyError(rest)
    return f"{table[head]}.{tail}"


# --------------------------------------------------------------------------------------------- UNet


def _cfg(config, name, default=None):
    return config.get(name, default) if isinstance(config, dict) else getattr(config, name, default)


def unet_to_ldm(state_dict: dict[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    """A diffusers ``UNet2DConditionModel`` state dict -> ``model.diffusion_model.*`` LDM keys.

    ``config``: the UNet's config (dict or ``unet.config``); only ``layers_per_block`` and
    ``up_block_types`` are read. Raises ``KeyError`` naming a key that has no LDM name.
    """
    n = int(_cfg(config, "layers_per_block"))
    if not isinstance(_cfg(config, "layers_per_block"), int):
        raise ValueError("unet config: layers_per_block must be one number for an SD1.x layout")
    up_attention = ["CrossAttn" in t for t in _cfg(config, "up_block_types")]
    out = {}
    for key, value in state_dict.items():
        out[UNET_PREFIX + _unet_key(key, n, up_attention)] = value
    return out


def _unet_key(key: str, n: int, up_attention: list[bool]) -> str:
    fixed = {
        "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2",
        "conv_in": "input_blocks.0.0",
        "conv_norm_out": "out.0",
        "conv_out": "out.2",
    }
    for old, new in fixed.items():
        if key.startswith(old + "."):
            return new + key[len(old) :]
    m = re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key)
    if m:
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        block = 1 + i * (n + 1) + j
        if kind == "resnets":
            return f"input_blocks.{block}.0.{_rename_resnet(rest, _RESNET)}"
        return f"input_blocks.{block}.1.{rest}"
    m = re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key)
    if m:
        return f"input_blocks.{1 + int(m[1]) * (n + 1) + n}.0.op.{m[2]}"
    m = re.fullmatch(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)", key)
    if m:
        kind, j, rest = m[1], int(m[2]), m[3]
        if kind == "resnets":
            return f"middle_block.{2 * j}.{_rename_resnet(rest, _RESNET)}"
        return f"middle_block.1.{rest}"
    m = re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key)
    if m:
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        block = i * (n + 1) + j
        if kind == "resnets":
            return f"output_blocks.{block}.0.{_rename_resnet(rest, _RESNET)}"
        return f"output_blocks.{block}.1.{rest}"
    m = re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key)
    if m:
        i = int(m[1])
        return f"output_blocks.{i * (n + 1) + n}.{2 if up_attention[i] else 1}.conv.{m[2]}"
    raise KeyError(f"UNet key {key!r} has no place in the SD1.x single-file layout")


def _block_ids(keys, prefix: str) -> list[int]:
    return sorted({int(k[len(prefix) :].split(".")[0]) for k in keys if k.startswith(prefix)})


def unet_config_from_ldm(state_dict: dict[str, torch.Tensor], *, heads: int = 8, norm_groups: int = 32) -> dict:
    """The diffusers ``UNet2DConditionModel`` config of an SD1.x-style LDM UNet, read from its tensors.

    Levels, res blocks per level, channel widths, attention per level, transformer depth, in/out channels
    and the text width come from the tensors; the number of attention heads and of GroupNorm groups cannot
    be read from them and are SD1.x's (8 and 32) unless given.
    """
    p = UNET_PREFIX
    keys = [k for k in state_dict if k.startswith(p)]
    conv_in = state_dict[p + "input_blocks.0.0.weight"]
    inputs = _block_ids(keys, p + "input_blocks.")
    outputs = _block_ids(keys, p + "output_blocks.")
    downs = [i for i in inputs if p + f"input_blocks.{i}.0.op.weight" in state_dict]
    levels = len(downs) + 1
    n = (len(inputs) - 1 - len(downs)) // levels
    if n < 1 or len(inputs) != 1 + levels * (n + 1) - 1 or len(outputs) != levels * (n + 1):
        raise ValueError(
            f"the UNet's blocks do not form an SD1.x layout ({len(inputs)} input blocks, {len(outputs)} output "
            f"blocks, {len(downs)} downsamplers)"
        )
    widths, down_types, depth = [], [], []
    context = None
    linear = False
    for level in range(levels):
        first = 1 + level * (n + 1)
        widths.append(int(state_dict[p + f"input_blocks.{first}.0.out_layers.3.weight"].shape[0]))
        attn = p + f"input_blocks.{first}.1."
        has_attn = p + f"input_blocks.{first}.1.proj_in.weight" in state_dict
        down_types.append("CrossAttnDownBlock2D" if has_attn else "DownBlock2D")
        if has_attn:
            depth.append(len({k[len(attn) :].split(".")[1] for k in keys if k.startswith(attn + "transformer_blocks.")}))
            context = int(state_dict[attn + "transformer_blocks.0.attn2.to_k.weight"].shape[1])
            linear = state_dict[attn + "proj_in.weight"].ndim == 2
        else:
            depth.append(1)
    up_types = []
    for i in range(levels):
        has_attn = p + f"output_blocks.{i * (n + 1)}.1.proj_in.weight" in state_dict
        up_types.append("CrossAttnUpBlock2D" if has_attn else "UpBlock2D")
    if context is None:
        raise ValueError("the UNet has no cross-attention: it is not a text-conditioned SD1.x UNet")
    return {
        "sample_size": 64,
        "in_channels": int(conv_in.shape[1]),
        "out_channels": int(state_dict[p + "out.2.weight"].shape[0]),
        "layers_per_block": n,
        "block_out_channels": widths,
        "down_block_types": down_types,
        "up_block_types": up_types,
        "mid_block_type": "UNetMidBlock2DCrossAttn",
        "cross_attention_dim": context,
        "attention_head_dim": heads,
        "use_linear_projection": linear,
        "transformer_layers_per_block": depth[0] if len(set(depth)) == 1 else depth,
        "norm_num_groups": norm_groups,
    }


def unet_from_ldm(state_dict: dict[str, torch.Tensor], config: dict) -> dict[str, torch.Tensor]:
    """``model.diffusion_model.*`` -> diffusers UNet keys (diffusers' own converter)."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    return convert_ldm_unet_checkpoint(state_dict, config)


# --------------------------------------------------------------------------------------------- VAE


def vae_to_ldm(state_dict: dict[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    """A diffusers ``AutoencoderKL`` state dict -> ``first_stage_model.*`` LDM keys.

    The mid-block attention's linear q/k/v/out weights become the LDM's 1x1 convolutions.
    """
    levels = len(_cfg(config, "block_out_channels"))
    out = {}
    for key, value in state_dict.items():
        new, conv = _vae_key(key, levels)
        if conv and value.ndim == 2:
            value = value[:, :, None, None]
        out[VAE_PREFIX + new] = value
    return out


def _vae_key(key: str, levels: int) -> tuple[str, bool]:
    part, _, rest = key.partition(".")
    if part in ("quant_conv", "post_quant_conv"):
        return key, False
    if part not in ("encoder", "decoder"):
        raise KeyError(f"VAE key {key!r} has no place in the SD1.x single-file layout")
    fixed = {"conv_in": "conv_in", "conv_out": "conv_out", "conv_norm_out": "norm_out"}
    head, _, tail = rest.partition(".")
    if head in fixed:
        return f"{part}.{fixed[head]}.{tail}", False
    m = re.fullmatch(r"(down|up)_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", rest)
    if m:
        level = int(m[2]) if m[1] == "down" else levels - 1 - int(m[2])
        return f"{part}.{m[1]}.{level}.block.{m[3]}.{_rename_resnet(m[4], _VAE_RESNET)}", False
    m = re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", rest)
    if m:
        return f"{part}.down.{m[1]}.downsample.conv.{m[2]}", False
    m = re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", rest)
    if m:
        return f"{part}.up.{levels - 1 - int(m[1])}.upsample.conv.{m[2]}", False
    m = re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", rest)
    if m:
        return f"{part}.mid.block_{int(m[1]) + 1}.{_rename_resnet(m[2], _VAE_RESNET)}", False
    m = re.fullmatch(r"mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(.+)", rest)
    if m:
        return f"{part}.mid.attn_1.{_VAE_ATTN[m[1]]}.{m[2]}", m[1] != "group_norm"
    raise KeyError(f"VAE key {key!r} has no place in the SD1.x single-file layout")


# --------------------------------------------------------------------------------------------- CLIP


def clip_to_ldm(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A Hugging Face ``CLIPTextModel`` state dict -> ``cond_stage_model.transformer.text_model.*``.

    transformers 4 names the keys ``text_model.*``, transformers 5 without the prefix; both are accepted.
    """
    out = {}
    for key, value in state_dict.items():
        if key.endswith("position_ids"):
            continue
        if not key.startswith("text_model."):
            key = "text_model." + key
        if key.split(".")[1] not in ("embeddings", "encoder", "final_layer_norm"):
            raise KeyError(f"text encoder key {key!r} is not a CLIPTextModel key")
        out[CLIP_PREFIX + key] = value
    return out


def clip_config_from_ldm(state_dict: dict[str, torch.Tensor]) -> dict:
    """The ``CLIPTextConfig`` of the CLIP text encoder in a single file (CLIP ViT-L/14's for SD1.x)."""
    p = CLIP_PREFIX + "text_model."
    tokens = state_dict[p + "embeddings.token_embedding.weight"]
    positions = state_dict[p + "embeddings.position_embedding.weight"]
    layers = _block_ids(state_dict, p + "encoder.layers.")
    hidden = int(tokens.shape[1])
    return {
        "vocab_size": int(tokens.shape[0]),
        "hidden_size": hidden,
        "intermediate_size": int(state_dict[p + "encoder.layers.0.mlp.fc1.weight"].shape[0]),
        "num_hidden_layers": len(layers),
        "num_attention_heads": max(1, hidden // 64),
        "max_position_embeddings": int(positions.shape[0]),
        "hidden_act": "quick_gelu",
        "projection_dim": hidden,
        "bos_token_id": 49406 if tokens.shape[0] == 49408 else 0,
        "eos_token_id": 49407 if tokens.shape[0] == 49408 else 1,
        "pad_token_id": 49407 if tokens.shape[0] == 49408 else 1,
    }


def clip_from_ldm(state_dict: dict[str, torch.Tensor], module_keys=None) -> dict[str, torch.Tensor]:
    """``cond_stage_model.transformer.*`` -> the key names of the ``CLIPTextModel`` whose keys are ``module_keys``
    (``text_model.*`` in transformers 4, no prefix in transformers 5), via diffusers' converter."""
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint

    out = {}
    for key, value in convert_ldm_clip_checkpoint(state_dict).items():
        if key.endswith("position_ids"):
            continue
        if key.startswith("text_model."):
            key = key[len("text_model.") :]
        out[key] = value
    if module_keys is not None and any(k.startswith("text_model.") for k in module_keys):
        out = {"text_model." + k: v for k, v in out.items()}
    return out
