"""Tiny diffusers-format models for tests: a UNet, a VAE, a CLIP text encoder and tokenizer, saved
with ``save_pretrained`` into a folder laid out like a real Stable Diffusion model.

Everything is built from small configs with seeded random weights (no download). The tokenizer's
vocabulary is the 26 letters (alone and word-final) plus CLIP's two special tokens, with no merges.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F

PROMPT_DIM = 16
TOKENS = 16


def unet_config(in_channels: int = 4) -> dict:
    return {
        "sample_size": 8,
        "in_channels": in_channels,
        "out_channels": 4,
        "layers_per_block": 1,
        "block_out_channels": (16, 32),
        "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
        "cross_attention_dim": PROMPT_DIM,
        "attention_head_dim": 4,
        "norm_num_groups": 8,
    }


VAE_CONFIG = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "block_out_channels": (8, 8, 16, 16),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 1,
    "norm_num_groups": 4,
    "sample_size": 64,
    "scaling_factor": 0.18215,
}


def write_tokenizer(folder: Path) -> None:
    from transformers import CLIPTokenizer

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = {}
    for tok in ["<|startoftext|>", "<|endoftext|>", *letters, *(f"{c}</w>" for c in letters), "!", "!</w>"]:
        vocab[tok] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=TOKENS)
    tok.save_pretrained(folder)


def text_encoder_config():
    """The tiny CLIP text encoder's config (width PROMPT_DIM, one layer, TOKENS positions)."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=56,
        hidden_size=PROMPT_DIM,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=TOKENS,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )


def build_text_encoder(folder: str | Path, seed: int = 0):
    """``(CLIPTextModel, CLIPTokenizer)``: the tiny text encoder (seeded) and tokenizer (written into ``folder``)."""
    from transformers import CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    text = CLIPTextModel(text_encoder_config()).eval()
    write_tokenizer(Path(folder))
    return text, CLIPTokenizer.from_pretrained(Path(folder))


def scheduler_config(prediction: str = "v_prediction", zero_snr: bool = True) -> dict:
    return {
        "_class_name": "DDIMScheduler",
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "prediction_type": prediction,
        "rescale_betas_zero_snr": zero_snr,
        "timestep_spacing": "trailing" if zero_snr else "leading",
        "clip_sample": False,
        "set_alpha_to_one": False,
        "steps_offset": 1,
    }


def build_model_dir(
    folder: str | Path,
    *,
    in_channels: int = 4,
    prediction: str = "v_prediction",
    zero_snr: bool = True,
    seed: int = 0,
) -> Path:
    """Write a tiny model folder (unet, vae, text_encoder, tokenizer, scheduler) and return its path."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    folder = Path(folder)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**unet_config(in_channels))
    with torch.no_grad():  # keep predictions in a realistic range
        unet.conv_out.weight.mul_(0.1)
    unet.save_pretrained(folder / "unet", safe_serialization=True)
    AutoencoderKL(**VAE_CONFIG).save_pretrained(folder / "vae", safe_serialization=True)
    text = CLIPTextModel(text_encoder_config())
    text.save_pretrained(folder / "text_encoder", safe_serialization=True)
    write_tokenizer(folder / "tokenizer")
    (folder / "scheduler").mkdir(parents=True, exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler_config(prediction, zero_snr)))
    return folder


class _Exact:
    def __init__(self, z):
        self.z = z

    def mode(self):
        return self.z

    def sample(self, generator=None):
        return self.z


class AnchoredModule(torch.nn.Module):
    """A stand-in model whose ``device`` and ``dtype`` (as diffusers models report them) follow one
    parameter, ``anchor``, so ``.to(...)`` moves them."""

    def __init__(self, trainable: bool = True):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1), requires_grad=trainable)

    @property
    def device(self):
        return self.anchor.device

    @property
    def dtype(self):
        return self.anchor.dtype


class SpaceToDepthCodec(AnchoredModule):
    """An exact "VAE" for small models: the grey page in ``factor`` x ``factor`` blocks (``factor``² channels at
    1/``factor`` size), the same both ways and without weights: a model's result is never blurred by a VAE.

    It speaks the part of diffusers' ``AutoencoderKL`` interface the trainer and :class:`DiffusersHost` use
    (``config``, ``encode(x).latent_dist``, ``decode(z).sample``, ``device``, ``dtype``).
    """

    def __init__(self, factor: int = 4):
        super().__init__(trainable=False)
        self.factor = factor
        levels = int(math.log2(factor)) + 1
        self.config = SimpleNamespace(latent_channels=factor * factor, block_out_channels=(1,) * levels,
                                      scaling_factor=1.0, shift_factor=None)

    def encode(self, x: torch.Tensor):
        grey = x.float().mean(dim=1, keepdim=True)  # [-1, 1]
        return SimpleNamespace(latent_dist=_Exact(F.pixel_unshuffle(grey, self.factor)))

    def decode(self, z: torch.Tensor):
        y = F.pixel_shuffle(z.float(), self.factor).clamp(-1.0, 1.0)
        return SimpleNamespace(sample=y.expand(-1, 3, -1, -1))
