"""MDIM training models: both base kinds, 4 -> 9 channels, the single-file layout, the diffusers folder, refusals."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tiny_diffusers import build_model_dir, unet_config

from mdim_core.training import ldm_layout
from mdim_core.training.models import (
    load_base,
    load_single_file,
    save_diffusers,
    save_single_file,
    to_inpainting,
)
from mdim_core.training.objective import NoiseObjective

ZSNR = NoiseObjective().scheduler_config()


@pytest.fixture(scope="module")
def base4(tmp_path_factory):
    return build_model_dir(tmp_path_factory.mktemp("base4"), in_channels=4, seed=1)


@pytest.fixture(scope="module")
def base9(tmp_path_factory):
    return build_model_dir(tmp_path_factory.mktemp("base9"), in_channels=9, seed=2)


def _same(a: torch.nn.Module, b: torch.nn.Module, cast=None) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    keys = [k for k in sa if not k.endswith("position_ids")]
    assert sorted(keys) == sorted(k for k in sb if not k.endswith("position_ids"))
    return all(torch.equal(sa[k].to(cast).float() if cast else sa[k], sb[k].float() if cast else sb[k]) for k in keys)


# --- 4 -> 9 channels ---------------------------------------------------------------------------------------


def test_four_channel_unet_becomes_nine_channels_with_the_same_output():
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet4 = UNet2DConditionModel(**unet_config(4)).eval()
    unet9 = to_inpainting(unet4).eval()
    assert unet9.config.in_channels == 9 and unet4.config.in_channels == 4
    w4, w9 = unet4.conv_in.weight, unet9.conv_in.weight
    assert torch.equal(w9[:, :4], w4) and not w9[:, 4:].any() and torch.equal(unet9.conv_in.bias, unet4.conv_in.bias)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 8, 8, generator=g)
    extra = torch.randn(2, 5, 8, 8, generator=g) * 10.0  # whatever the mask and masked image hold
    ctx = torch.randn(2, 16, 16, generator=g)
    t = torch.tensor([10, 900])
    with torch.no_grad():
        before = unet4(x, t, encoder_hidden_states=ctx).sample
        after = unet9(torch.cat([x, extra], dim=1), t, encoder_hidden_states=ctx).sample
    # zero weights add exact zeros; only the convolution's summation blocking may differ (float32)
    torch.testing.assert_close(after, before, rtol=0, atol=1e-6)
    assert to_inpainting(unet9) is unet9  # an inpainting UNet is kept as it is


# --- loading both base kinds ------------------------------------------------------------------------------


def test_loads_diffusers_folders_of_both_kinds(base4, base9):
    from diffusers import UNet2DConditionModel

    c4 = load_base(base4)
    assert c4.base_channels == 4 and c4.unet.config.in_channels == 9
    ref4 = UNet2DConditionModel.from_pretrained(base4 / "unet")
    assert torch.equal(c4.unet.conv_in.weight[:, :4], ref4.conv_in.weight)
    c9 = load_base(base9)
    assert c9.base_channels == 9 and _same(c9.unet, UNet2DConditionModel.from_pretrained(base9 / "unet"))
    assert c4.tokenizer("manga").input_ids == c9.tokenizer("manga").input_ids


def test_single_file_round_trip_keys_markers_and_weights(base4, tmp_path):
    comps = load_base(base4)
    path = save_single_file(comps, tmp_path / "mdim.safetensors", ZSNR, torch.float16, record={"steps": 3})
    with safe_open(str(path), framework="pt") as f:
        keys, meta = list(f.keys()), f.metadata()
        v_pred, ztsnr = f.get_tensor("v_pred"), f.get_tensor("ztsnr")
    prefixes = (ldm_layout.UNET_PREFIX, ldm_layout.CLIP_PREFIX + "text_model.", ldm_layout.VAE_PREFIX)
    assert all(k.startswith(prefixes) for k in keys if k not in ("v_pred", "ztsnr"))
    # the markers ComfyUI's CheckpointSave writes for a zero-SNR v-prediction model: empty tensors
    assert v_pred.numel() == 0 and ztsnr.numel() == 0
    assert ldm_layout.UNET_PREFIX + "input_blocks.0.0.weight" in keys
    assert ldm_layout.VAE_PREFIX + "encoder.mid.attn_1.q.weight" in keys
    assert meta["modelspec.predict_key"] == "v" and meta["modelspec.architecture"] == "stable-diffusion-v1-inpainting"
    assert json.loads(meta["mdim.scheduler_config"])["rescale_betas_zero_snr"] is True
    assert json.loads(meta["mdim.train"]) == {"steps": 3}
    again = load_single_file(path, tokenizer=base4 / "tokenizer")
    for part in ("unet", "vae", "text_encoder"):
        assert _same(getattr(comps, part), getattr(again, part), cast=torch.float16), part
    # an epsilon model has no markers
    eps = NoiseObjective("epsilon", zero_snr=False).scheduler_config()
    path2 = save_single_file(comps, tmp_path / "eps.safetensors", eps, torch.float32)
    with safe_open(str(path2), framework="pt") as f:
        assert "v_pred" not in f.keys() and "ztsnr" not in f.keys()
    back = load_single_file(path2, tokenizer=base4 / "tokenizer")
    assert _same(comps.unet, back.unet)  # float32: bit for bit


def test_single_file_base_of_another_tool_is_read_from_its_tensors(base4, tmp_path):
    """A single file without our metadata (e.g. from ComfyUI): the UNet config comes from the tensors."""
    comps = load_base(base4)
    tensors = load_file(str(save_single_file(comps, tmp_path / "a.safetensors", ZSNR, torch.float32)))
    # as a 4-channel base, written by someone else: no metadata, no markers
    conv = ldm_layout.UNET_PREFIX + "input_blocks.0.0.weight"
    tensors[conv] = tensors[conv][:, :4].contiguous()
    for k in ("v_pred", "ztsnr"):
        tensors.pop(k)
    save_file(tensors, str(tmp_path / "other.safetensors"))
    config = ldm_layout.unet_config_from_ldm(tensors, heads=4, norm_groups=8)
    for key in ("in_channels", "out_channels", "layers_per_block", "block_out_channels", "down_block_types",
                "up_block_types", "cross_attention_dim", "use_linear_projection"):
        want = comps.unet.config[key] if key != "in_channels" else 4
        assert config[key] == (list(want) if isinstance(want, tuple) else want), key
    with pytest.raises(ValueError, match="cannot be built with SD1.x's settings.*groups"):
        load_base(tmp_path / "other.safetensors", tokenizer=base4 / "tokenizer")  # SD1.x's 32 groups don't fit 16 ch


def test_ldm_layout_is_sd15s_and_matches_diffusers_converter():
    """diffusers -> LDM here, LDM -> diffusers by diffusers' own converter: the same tensors come back."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    from mdim_core.symvae.base import SD_VAE_CONFIG

    with torch.device("meta"):  # SD1.5's architecture without its memory
        unet = UNet2DConditionModel(cross_attention_dim=768, attention_head_dim=8)
        vae = AutoencoderKL(**SD_VAE_CONFIG)
    sd = unet.state_dict()
    ldm = ldm_layout.unet_to_ldm(sd, unet.config)
    assert len(ldm) == 686  # SD1.5's UNet
    for key in ("input_blocks.3.0.op.weight", "input_blocks.9.0.op.weight", "output_blocks.2.1.conv.weight",
                "output_blocks.5.2.conv.weight", "output_blocks.8.2.conv.weight", "time_embed.2.weight",
                "middle_block.1.transformer_blocks.0.attn2.to_k.weight", "input_blocks.1.0.emb_layers.1.weight",
                "output_blocks.11.1.proj_out.weight", "out.2.weight", "input_blocks.4.0.skip_connection.weight"):
        assert ldm_layout.UNET_PREFIX + key in ldm, key
    back = ldm_layout.unet_from_ldm(ldm, dict(unet.config))
    assert set(back) == set(sd) and all(back[k] is sd[k] for k in sd)
    assert ldm_layout.unet_config_from_ldm(ldm) == {**ldm_layout.unet_config_from_ldm(ldm), **{
        "block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2, "cross_attention_dim": 768,
        "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
        "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3}}
    vs = vae.state_dict()
    vl = ldm_layout.vae_to_ldm(vs, vae.config)
    assert len(vl) == 248 and vl[ldm_layout.VAE_PREFIX + "encoder.mid.attn_1.q.weight"].shape == (512, 512, 1, 1)
    assert ldm_layout.VAE_PREFIX + "decoder.up.0.block.2.nin_shortcut.weight" not in vl
    assert ldm_layout.VAE_PREFIX + "decoder.up.1.block.0.nin_shortcut.weight" in vl  # 512 -> 256 channels
    vb = convert_ldm_vae_checkpoint(vl, SD_VAE_CONFIG)
    assert set(vb) == set(vs) and all(tuple(vb[k].shape) == tuple(vs[k].shape) for k in vs)


# --- the diffusers folder ----------------------------------------------------------------------------------


def test_diffusers_folder_round_trip_and_inpaint_command_reads_it(base4, tmp_path):
    from mdim_core.__main__ import main
    from mdim_core.imaging.imageio import read_page, write_image

    comps = load_base(base4)
    folder = save_diffusers(comps, tmp_path / "model", ZSNR, torch.float32)
    sched = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    assert sched["prediction_type"] == "v_prediction" and sched["rescale_betas_zero_snr"] is True
    assert sched["timestep_spacing"] == "trailing"
    assert json.loads((folder / "model_index.json").read_text())["_class_name"] == "StableDiffusionInpaintPipeline"
    again = load_base(folder)
    assert again.base_channels == 9 and _same(comps.unet, again.unet) and _same(comps.vae, again.vae)
    assert _same(comps.text_encoder, again.text_encoder)
    save_diffusers(comps, folder, ZSNR, torch.float16)  # replacing a folder leaves no partial one behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    rng = np.random.default_rng(0)
    page = np.where(rng.uniform(0, 1, (40, 56)) > 0.8, 0.0, 1.0).astype(np.float32)
    mask = np.zeros((40, 56), np.float32)
    mask[10:30, 12:40] = 1
    write_image(tmp_path / "page.png", page[..., None])
    write_image(tmp_path / "mask.png", mask[..., None])
    code = main(["inpaint", str(tmp_path / "page.png"), str(tmp_path / "mask.png"), "-o", str(tmp_path / "out.png"),
                 "--model", str(folder), "--steps", "2", "--cfg", "1", "-q"])
    assert code == 0
    out = read_page(tmp_path / "out.png").pixels[..., 0]
    assert np.array_equal(out[mask == 0], page[mask == 0])
    assert not np.array_equal(out[mask == 1], page[mask == 1])


# --- refusals ----------------------------------------------------------------------------------------------


def _edit_unet_config(src, dst, **changes):
    shutil.copytree(src, dst)
    cfg_path = dst / "unet" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.update(changes)
    cfg_path.write_text(json.dumps(cfg))
    return dst


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"use_linear_projection": True}, "Stable Diffusion 2.x"),
        ({"addition_embed_type": "text_time"}, "SDXL"),
        ({"in_channels": 8}, "8 input channels"),
        ({"class_embed_type": "timestep"}, "class embeddings"),
        ({"cross_attention_dim": 24}, "text encoder is 16 wide"),
    ],
)
def test_non_sd1_diffusers_bases_are_refused_with_the_reason(base4, tmp_path, changes, reason):
    folder = _edit_unet_config(base4, tmp_path / "m", **changes)
    with pytest.raises(ValueError, match=reason) as err:
        load_base(folder)
    assert "not a Stable Diffusion 1.x model" in str(err.value)


def test_pickled_single_file_base_is_read_like_its_safetensors_twin(base4, tmp_path):
    """An SD1.x ``.ckpt`` as distributed ({"state_dict": ..., "global_step": ...}) gives the same tensors as
    its .safetensors twin (which the tests above build into models), without running code from the pickle."""
    from mdim_core.training.models import read_single_file

    comps = load_base(base4)
    tensors = load_file(str(save_single_file(comps, tmp_path / "a.safetensors", ZSNR, torch.float32)))
    torch.save({"state_dict": tensors, "global_step": 840000, "epoch": 6}, tmp_path / "plain.ckpt")
    got, meta = read_single_file(tmp_path / "plain.ckpt")
    assert meta == {} and got.keys() == tensors.keys()
    assert all(torch.equal(got[k], tensors[k]) for k in tensors)
    torch.save(tensors, tmp_path / "bare.ckpt")  # no wrapper
    assert read_single_file(tmp_path / "bare.ckpt")[0].keys() == tensors.keys()


class _Callback:
    """An object a pickled checkpoint might carry besides tensors (a training callback)."""


def test_sdxl_folders_and_non_sd1_single_files_are_refused(base4, tmp_path):
    xl = tmp_path / "xl"
    shutil.copytree(base4, xl)
    (xl / "text_encoder_2").mkdir()
    with pytest.raises(ValueError, match="two text encoders"):
        load_base(xl)
    vae = {"first_stage_model.encoder.conv_in.weight": torch.zeros(1)}
    unet = {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3)}
    for name, tensors, reason in (
        ("xl", {"conditioner.embedders.1.model.ln_final.weight": torch.zeros(1), **unet, **vae}, "SDXL"),
        ("sd2", {"cond_stage_model.model.ln_final.weight": torch.zeros(1), **unet, **vae}, "2.x"),
        ("flux", {"model.diffusion_model.double_blocks.0.img_attn.qkv.weight": torch.zeros(1)}, "transformer"),
        ("unet_only", unet, "only part of a checkpoint"),
    ):
        save_file(tensors, str(tmp_path / f"{name}.safetensors"))
        with pytest.raises(ValueError, match=reason):
            load_base(tmp_path / f"{name}.safetensors", tokenizer=base4 / "tokenizer")
    (tmp_path / "old.ckpt").write_bytes(b"pickle")
    with pytest.raises(ValueError, match="--model: old.ckpt: "):
        load_base(tmp_path / "old.ckpt")
    torch.save({"state_dict": {}, "callback": _Callback()}, tmp_path / "code.ckpt")
    with pytest.raises(ValueError, match="code.ckpt: the file holds Python objects besides weights"):
        load_base(tmp_path / "code.ckpt")
    with pytest.raises(ValueError, match="does not exist"):
        load_base(tmp_path / "nothing")


def test_single_file_needs_a_tokenizer_it_can_find(base4, tmp_path):
    comps = load_base(base4)
    path = save_single_file(comps, tmp_path / "m.safetensors", ZSNR, torch.float16)
    with pytest.raises(ValueError, match="--tokenizer.*not a CLIP tokenizer folder"):
        load_single_file(path, tokenizer=tmp_path)


def test_tokenizers_longer_than_clip_are_cut_to_its_positions(base4, tmp_path):
    """ComfyUI's sd1_tokenizer says model_max_length 8192; CLIP has 77 positions (the tiny one 16)."""
    folder = tmp_path / "m"
    shutil.copytree(base4, folder)
    cfg_path = folder / "tokenizer" / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["model_max_length"] = 8192
    cfg_path.write_text(json.dumps(cfg))
    comps = load_base(folder)
    assert comps.tokenizer.model_max_length == comps.text_encoder.config.max_position_embeddings == 16
    saved = save_diffusers(comps, tmp_path / "out", ZSNR, torch.float32)
    assert load_base(saved).tokenizer.model_max_length == 16


def test_four_channel_single_file_base_becomes_nine_channels(base4, tmp_path):
    from mdim_core.training.models import load_diffusers_folder

    plain = load_diffusers_folder(base4)  # as found: 4 channels
    assert plain.unet.config.in_channels == 4
    path = save_single_file(plain, tmp_path / "sd.safetensors", NoiseObjective("epsilon", False).scheduler_config(),
                            torch.float32)
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata()["modelspec.architecture"] == "stable-diffusion-v1"
        assert f.get_tensor(ldm_layout.UNET_PREFIX + "input_blocks.0.0.weight").shape[1] == 4
    comps = load_base(path, tokenizer=base4 / "tokenizer")
    assert comps.base_channels == 4 and comps.unet.config.in_channels == 9
    assert torch.equal(comps.unet.conv_in.weight[:, :4], plain.unet.conv_in.weight)
    assert not comps.unet.conv_in.weight[:, 4:].any()
