"""The models of a training run: loading the base, checking it is SD1.x, 4 -> 9 channels, writing the result.

Bases (everything stays local; nothing is downloaded):

- a diffusers folder (``unet``, ``vae``, ``text_encoder``, ``tokenizer``, optionally ``scheduler``);
- a single-file checkpoint in the original LDM layout (``.safetensors``, or a pickled ``.ckpt`` read without
  running code from it: plain tensors only), as ComfyUI keeps them in
  ``models/checkpoints`` (see :mod:`.ldm_layout`). A single file holds no tokenizer: it is taken from
  ``tokenizer`` when given, else from ComfyUI's ``comfy/sd1_tokenizer`` when the pack sits in a ComfyUI's
  ``custom_nodes``, else from the Hugging Face cache (``openai/clip-vit-large-patch14``), else an error says
  how to give one. A pickle holding anything besides tensors is refused (loading it could run code).

Either may be a standard (4-channel) or an inpainting (9-channel) SD1.x model. A 4-channel UNet becomes a
9-channel one whose 5 extra input channels (mask, masked-image latent) start at zero, the way
SD-inpainting was made from SD: before training it computes exactly what the base computed.

Anything that is not SD1.x (SDXL, SD 2.x, SD3/Flux, upscalers, depth or InstructPix2Pix UNets, ...) is
refused with the reason.

Results: :func:`save_diffusers` writes a diffusers folder that ``python -m mdim_core inpaint --model``
reads; :func:`save_single_file` writes the single-file checkpoint ComfyUI's Load Checkpoint reads, with the
``v_pred``/``ztsnr`` marker keys ComfyUI's own CheckpointSave writes, and metadata that lets the pack read it
back exactly (:func:`load_single_file`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from ..weight_files import WEIGHT_EXTENSIONS, read_safetensors, read_weights
from . import ldm_layout
from .state import atomic_save_safetensors

log = logging.getLogger("MDIM")

#: Metadata kind of the single files written here.
SINGLE_FILE_KIND = "mdim-checkpoint"
FORMAT_VERSION = "1"
HF_CLIP_L = "openai/clip-vit-large-patch14"


@dataclass
class Components:
    """The modules of an SD1.x model and where they came from.

    ``base_channels``: the input channels of the base UNet (4 = converted to inpainting here, 9 = already one).
    """

    unet: torch.nn.Module
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    source: str = ""
    base_channels: int = 9


def _refuse(name: str, why: str) -> ValueError:
    return ValueError(f"--model: {name} is not a Stable Diffusion 1.x model: {why}. Training needs an SD1.x base "
                      f"(SD 1.5 or an SD1.x fine-tune, standard or inpainting)")


# --------------------------------------------------------------------------------------------- checks


def check_unet_config(config, name: str = "the base") -> None:
    """Refuse UNet configs that are not SD1.x, saying what they are."""
    get = config.get if isinstance(config, dict) else (lambda k, d=None: getattr(config, k, d))
    if get("addition_embed_type"):
        raise _refuse(name, "its UNet takes added time/text embeddings (SDXL-style)")
    if get("class_embed_type") or get("num_class_embeds"):
        raise _refuse(name, "its UNet takes class embeddings (an upscaler or unCLIP model)")
    context = get("cross_attention_dim")
    if isinstance(context, (list, tuple)):
        raise _refuse(name, "its UNet has several cross-attention widths")
    if get("use_linear_projection") or context == 1024:
        raise _refuse(name, "it is a Stable Diffusion 2.x model (OpenCLIP text encoder, linear attention projections)")
    if context in (1280, 2048):
        raise _refuse(name, f"it is an SDXL model (text width {context})")
    in_ch, out_ch = int(get("in_channels", 0)), int(get("out_channels", 0))
    if in_ch not in (4, 9):
        raise _refuse(name, f"its UNet has {in_ch} input channels (4 = standard, 9 = inpainting; 5 is a depth model, "
                            f"8 InstructPix2Pix, 7 an upscaler)")
    if out_ch != 4:
        raise _refuse(name, f"its UNet outputs {out_ch} channels instead of 4")
    if not isinstance(get("layers_per_block"), int):
        raise _refuse(name, "its UNet has a different number of res blocks per level")


def check_single_file_keys(keys, name: str) -> None:
    keys = list(keys)
    if any(k.startswith("conditioner.embedders.") for k in keys):
        raise _refuse(name, "it is an SDXL checkpoint (two text encoders)")
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        raise _refuse(name, "it is a Stable Diffusion 2.x checkpoint (OpenCLIP text encoder)")
    if any(k.startswith(ldm_layout.UNET_PREFIX + p) for k in keys for p in ("joint_blocks.", "double_blocks.")):
        raise _refuse(name, "it is a transformer (SD3 or Flux) checkpoint, not a UNet")
    if any(k.startswith(ldm_layout.UNET_PREFIX + "label_emb.") for k in keys):
        raise _refuse(name, "its UNet takes class/size embeddings (SDXL-style or unCLIP)")
    if ldm_layout.UNET_PREFIX + "input_blocks.0.0.weight" not in keys:
        raise _refuse(name, "it holds no SD UNet (model.diffusion_model.input_blocks...)")
    missing = [p for p in (ldm_layout.CLIP_PREFIX, ldm_layout.VAE_PREFIX) if not any(k.startswith(p) for k in keys)]
    if missing:
        raise ValueError(
            f"--model: {name} holds only part of a checkpoint (no {' / '.join(missing)} tensors); a whole SD1.x "
            f"checkpoint with its UNet, CLIP text encoder and VAE is needed"
        )


def _check_parts(unet_config, text_hidden: int, latent_channels: int, name: str) -> None:
    check_unet_config(unet_config, name)
    context = unet_config["cross_attention_dim"] if isinstance(unet_config, dict) else unet_config.cross_attention_dim
    if int(text_hidden) != int(context):
        raise _refuse(name, f"its text encoder is {text_hidden} wide but its UNet expects {context}")
    if int(latent_channels) != 4:
        raise _refuse(name, f"its VAE has {latent_channels} latent channels instead of 4 (an SD3/Flux-style VAE)")


# --------------------------------------------------------------------------------------------- loading


def load_base(path: str | os.PathLike, *, tokenizer: str | os.PathLike | None = None) -> Components:
    """Load an SD1.x base (diffusers folder or single file) as float32 modules with a 9-channel UNet."""
    path = Path(path)
    if path.is_dir():
        comps = load_diffusers_folder(path)
    elif path.is_file():
        if path.suffix.lower() not in WEIGHT_EXTENSIONS:
            raise ValueError(f"--model: {path.name}: expected a single-file checkpoint ({', '.join(WEIGHT_EXTENSIONS)}) "
                             f"or a diffusers folder")
        comps = load_single_file(path, tokenizer=tokenizer)
    else:
        raise ValueError(f"--model: {str(path)!r} does not exist (expected a diffusers folder or a .safetensors file)")
    comps.base_channels = int(comps.unet.config.in_channels)
    comps.unet = to_inpainting(comps.unet)
    # some tokenizer folders (ComfyUI's sd1_tokenizer) allow more tokens than CLIP has positions (77)
    positions = int(comps.text_encoder.config.max_position_embeddings)
    if not 0 < int(comps.tokenizer.model_max_length) <= positions:
        comps.tokenizer.model_max_length = positions
    return comps


def load_diffusers_folder(path: Path) -> Components:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from ..inpaint.diffusers_host import check_model_dir

    name = path.name
    if (path / "text_encoder_2").exists() or (path / "tokenizer_2").exists():
        raise _refuse(name, "it has two text encoders (SDXL)")
    if (path / "transformer").is_dir():
        raise _refuse(name, "it is a transformer (SD3 or Flux) model, not a UNet")
    index = path / "model_index.json"
    if index.is_file():
        try:
            cls = str(json.loads(index.read_text()).get("_class_name", ""))
        except (OSError, ValueError):
            cls = ""
        if "XL" in cls or "StableDiffusion3" in cls or "Flux" in cls:
            raise _refuse(name, f"model_index.json says it is a {cls}")
    try:
        check_model_dir(path)
    except ValueError as exc:
        raise ValueError(str(exc).replace("model:", "--model:", 1)) from None
    try:
        unet_config = UNet2DConditionModel.load_config(path / "unet")
        text_config = CLIPTextConfig.from_pretrained(path / "text_encoder")
        vae_config = AutoencoderKL.load_config(path / "vae")
    except (OSError, ValueError) as exc:
        raise ValueError(f"--model: cannot read the configs in {path}: {exc}") from exc
    if unet_config.get("_class_name", "UNet2DConditionModel") != "UNet2DConditionModel":
        raise _refuse(name, f"its unet is a {unet_config.get('_class_name')}")
    _check_parts(unet_config, text_config.hidden_size, vae_config.get("latent_channels", 4), name)
    kw = {"use_safetensors": True, "local_files_only": True, "torch_dtype": torch.float32}
    try:
        unet = UNet2DConditionModel.from_pretrained(path / "unet", **kw)
        vae = AutoencoderKL.from_pretrained(path / "vae", **kw)
        text_encoder = CLIPTextModel.from_pretrained(path / "text_encoder", **kw)
        tok = CLIPTokenizer.from_pretrained(path / "tokenizer", local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ValueError(f"--model: cannot load the model in {path} (safetensors weights expected): {exc}") from exc
    return Components(unet, vae, text_encoder, tok, source=str(path))


def find_tokenizer(explicit: str | os.PathLike | None = None):
    """A CLIP tokenizer for a single-file base (see the module docstring for where it is looked for)."""
    from transformers import CLIPTokenizer

    if explicit is not None:
        folder = Path(explicit)
        if not (((folder / "vocab.json").is_file() and (folder / "merges.txt").is_file())
                or (folder / "tokenizer.json").is_file()):
            raise ValueError(f"--tokenizer: {str(folder)!r} is not a CLIP tokenizer folder (expected vocab.json and "
                             f"merges.txt, or tokenizer.json)")
        return CLIPTokenizer.from_pretrained(folder, local_files_only=True)
    here = Path(__file__).resolve()
    for parent in here.parents:  # <ComfyUI>/custom_nodes/<pack>/mdim_core/training/models.py
        candidate = parent / "comfy" / "sd1_tokenizer"
        if (candidate / "vocab.json").is_file():
            return CLIPTokenizer.from_pretrained(candidate, local_files_only=True)
    try:
        return CLIPTokenizer.from_pretrained(HF_CLIP_L, local_files_only=True)
    except (OSError, ValueError):
        pass
    raise ValueError(
        "--tokenizer: a single-file checkpoint holds no tokenizer, and none was found (no ComfyUI around the pack, "
        f"no {HF_CLIP_L} in the Hugging Face cache). Pass --tokenizer DIR: ComfyUI's comfy/sd1_tokenizer folder, "
        "or the tokenizer folder of any diffusers SD1.x model"
    )


def read_single_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a single-file checkpoint. Pickled files (``.ckpt`` and the like) are read
    without running code from them (:func:`~mdim_core.weight_files.read_weights`); their usual
    ``{"state_dict": ...}`` wrapper is taken off."""
    if path.suffix.lower() not in (".safetensors", ".sft"):
        try:
            tensors = read_weights(path)
        except ValueError as exc:
            raise ValueError(f"--model: {exc}") from None
        wrapped = [k for k in tensors if k.startswith("state_dict.")]
        if wrapped:
            tensors = {k[len("state_dict."):]: tensors[k] for k in wrapped}
        return tensors, {}
    return read_safetensors(path, "--model: ")


def load_single_file(path: str | os.PathLike, *, tokenizer=None) -> Components:
    """Components of an SD1.x single-file checkpoint (our own files are read back with their exact configs)."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from ..symvae.base import vae_from_state_dict

    path = Path(path)
    sd, meta = read_single_file(path)
    check_single_file_keys(sd.keys(), path.name)
    ours = meta.get("mdim.kind") == SINGLE_FILE_KIND
    if ours:
        unet_config = json.loads(meta["mdim.unet_config"])
        text_config = json.loads(meta["mdim.text_encoder_config"])
        vae_config = json.loads(meta["mdim.vae_config"])
    else:
        try:
            unet_config = ldm_layout.unet_config_from_ldm(sd)
        except (KeyError, ValueError) as exc:
            raise _refuse(path.name, f"its UNet does not have the SD1.x layout ({exc})") from None
        text_config = ldm_layout.clip_config_from_ldm(sd)
        vae_config = None
    latent = int(sd[ldm_layout.VAE_PREFIX + "quant_conv.weight"].shape[0]) // 2 if (
        ldm_layout.VAE_PREFIX + "quant_conv.weight") in sd else 4
    _check_parts(unet_config, text_config["hidden_size"], latent, path.name)
    try:
        unet = UNet2DConditionModel.from_config(unet_config)
    except (ValueError, RuntimeError) as exc:
        raise _refuse(path.name, f"its UNet cannot be built with SD1.x's settings ({exc})") from None
    _load_strict(unet, ldm_layout.unet_from_ldm(sd, unet.config), "UNet", path.name)
    text_encoder = CLIPTextModel(CLIPTextConfig.from_dict(text_config))
    _load_strict(text_encoder, ldm_layout.clip_from_ldm(sd, text_encoder.state_dict().keys()), "text encoder",
                 path.name)
    vae = vae_from_state_dict({k: v for k, v in sd.items() if k.startswith(ldm_layout.VAE_PREFIX)}, path.name, vae_config)
    tok = find_tokenizer(tokenizer)
    for m in (unet, text_encoder, vae):
        m.float().eval()
    return Components(unet, vae, text_encoder, tok, source=str(path))


def _load_strict(module: torch.nn.Module, state: dict, part: str, name: str) -> None:
    own = module.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("position_ids")]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise _refuse(name, f"its {part} does not fit the SD1.x layout ({len(missing)} missing tensors, e.g. "
                            f"{missing[:2]}; {len(unexpected)} unexpected, e.g. {unexpected[:2]})")
    bad = [k for k in state if tuple(state[k].shape) != tuple(own[k].shape)]
    if bad:
        raise _refuse(name, f"its {part} has tensors of other shapes, e.g. {bad[0]}: "
                            f"{tuple(state[bad[0]].shape)} instead of {tuple(own[bad[0]].shape)}")
    module.load_state_dict(state, strict=False)


# --------------------------------------------------------------------------------------------- 4 -> 9 channels


def to_inpainting(unet, latent_channels: int | None = None):
    """A 9-channel copy of a 4-channel UNet whose 5 extra input channels have zero weights (an inpainting UNet is
    returned as it is). The copy computes exactly what the base computed, whatever the extra channels hold.

    ``latent_channels`` (default: the UNet's output channels, 4 for SD) generalises 4 -> 9 to c -> 2c + 1
    (noisy latent, mask, masked-image latent).
    """
    from diffusers import UNet2DConditionModel

    c = int(latent_channels or unet.config.out_channels)
    in_ch = int(unet.config.in_channels)
    if in_ch == 2 * c + 1:
        return unet
    if in_ch != c:
        raise ValueError(f"unet: expected {c} or {2 * c + 1} input channels, got {in_ch}")
    param = next(unet.parameters())
    config = dict(unet.config)
    config["in_channels"] = 2 * c + 1
    new = UNet2DConditionModel.from_config(config).to(device=param.device, dtype=param.dtype)
    state = dict(unet.state_dict())
    w = state["conv_in.weight"]
    state["conv_in.weight"] = torch.cat([w, w.new_zeros((w.shape[0], c + 1, *w.shape[2:]))], dim=1)
    new.load_state_dict(state)
    return new.train(unet.training)


# --------------------------------------------------------------------------------------------- writing

SAVE_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def _cpu_state(module: torch.nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
            for k, v in module.state_dict().items()}


def _config_dict(config) -> dict:
    """A model config as plain JSON data (tuples as lists; private keys such as ``_name_or_path`` dropped)."""
    return json.loads(json.dumps({k: v for k, v in dict(config).items() if not k.startswith("_")}, default=str))


def single_file_tensors(comps: Components, scheduler_config: dict, dtype: torch.dtype = torch.float16,
                        title: str = "MDIM", record: dict | None = None) -> tuple[dict, dict]:
    """The tensors and metadata of the single-file checkpoint of ``comps`` (see :func:`save_single_file`)."""
    unet = comps.unet
    tensors = {}
    tensors.update(ldm_layout.unet_to_ldm(_cpu_state(unet, dtype), unet.config))
    tensors.update(ldm_layout.clip_to_ldm(_cpu_state(comps.text_encoder, dtype)))
    tensors.update(ldm_layout.vae_to_ldm(_cpu_state(comps.vae, dtype), comps.vae.config))
    v_pred = scheduler_config.get("prediction_type") == "v_prediction"
    zsnr = bool(scheduler_config.get("rescale_betas_zero_snr"))
    if v_pred:  # the markers ComfyUI's CheckpointSave writes for a v-prediction (zero-SNR) model
        tensors["v_pred"] = torch.tensor([])
        if zsnr:
            tensors["ztsnr"] = torch.tensor([])
    inpaint = int(unet.config.in_channels) == 9
    meta = {
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": "stable-diffusion-v1-inpainting" if inpaint else "stable-diffusion-v1",
        "modelspec.title": title,
        "modelspec.predict_key": "v" if v_pred else "epsilon",
        "mdim.kind": SINGLE_FILE_KIND,
        "mdim.format_version": FORMAT_VERSION,
        "mdim.unet_config": json.dumps(_config_dict(unet.config)),
        "mdim.vae_config": json.dumps(_config_dict(comps.vae.config)),
        "mdim.text_encoder_config": json.dumps(comps.text_encoder.config.to_dict(), default=str),
        "mdim.scheduler_config": json.dumps(scheduler_config),
        "mdim.train": json.dumps(record or {}, default=str),
    }
    return tensors, meta


def save_single_file(comps: Components, path: str | os.PathLike, scheduler_config: dict,
                     dtype: torch.dtype = torch.float16, record: dict | None = None) -> Path:
    """Write the single-file checkpoint (LDM layout, ``v_pred``/``ztsnr`` markers, metadata) atomically."""
    path = Path(path)
    tensors, meta = single_file_tensors(comps, scheduler_config, dtype, title=path.stem, record=record)
    atomic_save_safetensors(tensors, path, meta)
    return path


def save_diffusers(comps: Components, folder: str | os.PathLike, scheduler_config: dict,
                   dtype: torch.dtype = torch.float16) -> Path:
    """Write a diffusers folder (unet, vae, text_encoder, tokenizer, scheduler, model_index.json).

    Written next to ``folder`` first and moved in place when complete: an interruption or a full disk leaves
    the previous folder (or none), never a partial one.
    """
    import diffusers

    folder = Path(folder)
    part = folder.with_name(f".{folder.name}.part")
    old = folder.with_name(f".{folder.name}.old")
    for leftover in (part, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    try:
        for sub, module, weights in (("unet", comps.unet, "diffusion_pytorch_model.safetensors"),
                                     ("vae", comps.vae, "diffusion_pytorch_model.safetensors")):
            (part / sub).mkdir(parents=True)
            module.save_config(part / sub)
            atomic_save_safetensors(_cpu_state(module, dtype), part / sub / weights, {"format": "pt"})
        (part / "text_encoder").mkdir(parents=True)
        comps.text_encoder.config.save_pretrained(part / "text_encoder")
        text_state = {k: v for k, v in _cpu_state(comps.text_encoder, dtype).items() if not k.endswith("position_ids")}
        atomic_save_safetensors(text_state, part / "text_encoder" / "model.safetensors", {"format": "pt"})
        comps.tokenizer.save_pretrained(part / "tokenizer")
        (part / "scheduler").mkdir(parents=True)
        config = dict(scheduler_config, _diffusers_version=diffusers.__version__)
        (part / "scheduler" / "scheduler_config.json").write_text(json.dumps(config, indent=2))
        index = {
            "_class_name": "StableDiffusionInpaintPipeline" if int(comps.unet.config.in_channels) == 9
            else "StableDiffusionPipeline",
            "_diffusers_version": diffusers.__version__,
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "scheduler": ["diffusers", scheduler_config.get("_class_name", "DDIMScheduler")],
            "safety_checker": [None, None],
            "feature_extractor": [None, None],
            "requires_safety_checker": False,
        }
        (part / "model_index.json").write_text(json.dumps(index, indent=2))
        if folder.exists():
            os.replace(folder, old)
        os.replace(part, folder)
    except BaseException:
        shutil.rmtree(part, ignore_errors=True)
        if old.exists() and not folder.exists():
            os.replace(old, folder)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return folder
