"""Symmetric VAE nodes inside a real ComfyUI (in-process, CPU), on ComfyUI's own VAE class.

Needs COMFYUI_DIR (skipped otherwise). The VAE is an SD-architecture KL autoencoder with random
weights, built in diffusers and loaded through ``comfy.sd.VAE`` (which converts it to ComfyUI's
LDM module layout), so parity is checked against both libraries.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
if not COMFYUI_DIR:
    pytest.skip("COMFYUI_DIR is not set: real-host tests skipped", allow_module_level=True)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from comfy_harness import import_comfy_on_cpu, load_pack_in_process  # noqa: E402

import_comfy_on_cpu(COMFYUI_DIR)

import comfy.ldm.models.autoencoder  # noqa: E402
import comfy.ldm.modules.diffusionmodules.openaimodel as openaimodel  # noqa: E402
import comfy.ops  # noqa: E402
import comfy.sample  # noqa: E402
import comfy.sd  # noqa: E402
import folder_paths  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


pack = load_pack_in_process()
from mdim_pack_under_test.mdim_core.symvae import SymmetricVAE, save_adapters  # noqa: E402
from mdim_pack_under_test.nodes import symvae_nodes as sn  # noqa: E402
from tiny_models import build_autoencoder_kl  # noqa: E402


@pytest.fixture(scope="module")
def vaes():
    """(diffusers AutoencoderKL, comfy VAE) with the same random SD-architecture weights."""
    diff = build_autoencoder_kl((64, 128, 128, 128), layers_per_block=2, groups=32, seed=0)
    sd = {k: v.clone() for k, v in diff.state_dict().items()}
    ddconfig = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 64,
                "ch_mult": [1, 2, 2, 2], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
    vae = comfy.sd.VAE(sd=sd, config={"params": {"ddconfig": ddconfig, "embed_dim": 4}})
    assert isinstance(vae.first_stage_model, comfy.ldm.models.autoencoder.AutoencoderKL)
    return diff, vae


@pytest.fixture()
def models_dir(tmp_path):
    d = tmp_path / "mdim"
    d.mkdir()
    paths, exts = folder_paths.folder_names_and_paths["mdim"]
    folder_paths.folder_names_and_paths["mdim"] = ([str(d)], exts)
    folder_paths.filename_list_cache.pop("mdim", None)
    yield d
    folder_paths.folder_names_and_paths["mdim"] = (paths, exts)
    folder_paths.filename_list_cache.pop("mdim", None)


def _page(h=64, w=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    dots = ((torch.sin(xx * 1.1) * torch.sin(yy * 1.1)) > 0.2).float()
    img = 0.7 * dots + 0.3 * torch.rand(h, w, generator=g)
    return img[None, :, :, None].expand(1, h, w, 3).contiguous()


def _run(node, **kw):
    return node.execute(**kw).args[0]


def _randomise(sym, seed=1, scale=0.5):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for a in sym.adapters:
            a.conv_out.weight.copy_(torch.randn(a.conv_out.weight.shape, generator=g) * scale)


def test_comfy_vae_is_ldm_layout_and_zero_init_parity(vaes):
    diff, vae = vaes
    img = _page()
    with torch.inference_mode():
        handle = _run(sn.MDIMSymVAELoader, vae=vae, adapter_name=sn.NO_ADAPTERS, allow_other_vae_weights=False)
        assert handle.sym.layout.name == "ldm"
        assert handle.sym.base is vae.first_stage_model  # the host's module, not a copy
        latent = vae.encode(img)
        ref = vae.decode(latent)
        mask = torch.zeros(1, 64, 64)
        mask[:, 16:40, 20:44] = 1
        for out in (handle.decode(latent, source=img), handle.decode(latent, source=img, mask=mask)):
            assert (out - ref).abs().max().item() <= 1e-5
        # and ComfyUI's decode equals diffusers' decode of the same weights
        d = ((diff.decode(latent).sample + 1) / 2).clamp(0, 1).movedim(1, -1)
        assert (d - ref).abs().max().item() <= 1e-4
    assert all(k.startswith("adapters.") for k in handle.sym.state_dict())


def test_nodes_encode_ksampler_copy_decode(vaes, models_dir, caplog):
    _, vae = vaes
    sym = SymmetricVAE(vae.first_stage_model)
    _randomise(sym)
    save_adapters(sym, models_dir / "page.safetensors")
    img = _page(61, 45)  # not a multiple of 8
    mask = torch.zeros(1, 61, 45)
    mask[:, 10:30, 12:30] = 1
    with torch.inference_mode():
        handle = _run(sn.MDIMSymVAELoader, vae=vae, adapter_name="page.safetensors", allow_other_vae_weights=False)
        latent = _run(sn.MDIMSymVAEEncode, symvae=handle, image=img, mask=mask, set_noise_mask=True)
        assert latent["samples"].shape == (1, 4, 8, 6)
        assert latent["mdim_source"].shape == (1, 64, 48, 3)
        assert latent["noise_mask"].shape == (1, 1, 64, 48)
        # what core KSampler does with a LATENT: a shallow copy with new samples
        sampled = latent.copy()
        sampled["samples"] = latent["samples"] + 0.3 * torch.randn(latent["samples"].shape, generator=torch.Generator().manual_seed(3))
        out = _run(sn.MDIMSymVAEDecode, symvae=handle, samples=sampled, fill="base", paste_outside_mask=True, tile_size=1024)
        assert out.shape == (1, 61, 45, 3)
        outside = mask[0] == 0
        assert torch.equal(out[0][outside], img[0][outside])  # untouched pixels, bit for bit
        plain = vae.decode(sampled["samples"])[:, :61, :45]
        assert (out - plain)[0][~outside].abs().max().item() > 1e-3  # trained adapters act in the hole
        # the removed content does not come back: another hole content, same decode
        other = img.clone()
        other[:, 10:30, 12:30] = 0.0
        latent2 = _run(sn.MDIMSymVAEEncode, symvae=handle, image=other, mask=mask, set_noise_mask=True)
        sampled2 = latent2.copy()
        sampled2["samples"] = sampled["samples"]
        out2 = _run(sn.MDIMSymVAEDecode, symvae=handle, samples=sampled2, fill="base", paste_outside_mask=True, tile_size=1024)
        assert torch.equal(out2, out)
        # a LATENT without a source decodes like VAE Decode, with a log line
        with caplog.at_level(logging.INFO, logger="MDIM"):
            bare = _run(sn.MDIMSymVAEDecode, symvae=handle, samples={"samples": sampled["samples"]}, fill="base", paste_outside_mask=True, tile_size=1024)
        assert torch.equal(bare, vae.decode(sampled["samples"]))
        assert "carries no source" in caplog.text


def test_real_sampler_between_encode_and_decode(vaes):
    """Core KSampler's path (comfy.sample with the LATENT's noise mask, then latent.copy())."""
    from tiny_checkpoint import UNET_CONFIG, init_module

    _, vae = vaes
    unet = openaimodel.UNetModel(in_channels=4, operations=comfy.ops.disable_weight_init, dtype=torch.float32,
                                 **UNET_CONFIG)
    init_module(unet, torch.Generator().manual_seed(0))
    model = comfy.sd.load_diffusion_model_state_dict(unet.state_dict())
    img = _page(64, 64)
    mask = torch.zeros(1, 64, 64)
    mask[:, 16:48, 16:48] = 1
    cond = [[torch.zeros(1, 77, 768), {}]]
    with torch.inference_mode():
        handle = _run(sn.MDIMSymVAELoader, vae=vae, adapter_name=sn.NO_ADAPTERS, allow_other_vae_weights=False)
        latent = _run(sn.MDIMSymVAEEncode, symvae=handle, image=img, mask=mask, set_noise_mask=True)
        noise = comfy.sample.prepare_noise(latent["samples"], 3)
        samples = comfy.sample.sample(model, noise, 3, 5.0, "euler", "simple", cond, cond, latent["samples"],
                                      noise_mask=latent["noise_mask"], disable_pbar=True, seed=3)
        sampled = latent.copy()  # what common_ksampler returns
        sampled["samples"] = samples
        assert {"mdim_source", "mdim_mask", "mdim_size"} <= set(sampled)
        out = _run(sn.MDIMSymVAEDecode, symvae=handle, samples=sampled, fill="base", paste_outside_mask=True,
                   tile_size=1024)
    outside = mask[0] == 0
    assert torch.equal(out[0][outside], img[0][outside])
    assert (out[0][~outside] - img[0][~outside]).abs().max() > 1e-2  # the sampler repainted the hole
    assert torch.equal(latent["samples"], _run(sn.MDIMSymVAEEncode, symvae=handle, image=img, mask=mask,
                                                set_noise_mask=True)["samples"])  # deterministic, input kept


def test_decode_size_mismatch_and_bad_files(vaes, models_dir):
    _, vae = vaes
    (models_dir / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    with torch.inference_mode():
        handle = _run(sn.MDIMSymVAELoader, vae=vae, adapter_name=sn.NO_ADAPTERS, allow_other_vae_weights=False)
        latent = _run(sn.MDIMSymVAEEncode, symvae=handle, image=_page(), set_noise_mask=True)
        resized = latent.copy()
        resized["samples"] = torch.nn.functional.interpolate(latent["samples"], scale_factor=2)
        with pytest.raises(ValueError, match="latent was resized or cropped"):
            _run(sn.MDIMSymVAEDecode, symvae=handle, samples=resized, fill="base", paste_outside_mask=True, tile_size=1024)
        with pytest.raises(ValueError, match="adapter file"):
            _run(sn.MDIMSymVAELoader, vae=vae, adapter_name="broken.safetensors", allow_other_vae_weights=False)
        with pytest.raises(ValueError, match="not in models/mdim"):
            _run(sn.MDIMSymVAELoader, vae=vae, adapter_name="missing.safetensors", allow_other_vae_weights=False)
    other = SymmetricVAE(build_autoencoder_kl((64, 128, 128, 128), layers_per_block=2, groups=32, seed=5))
    save_adapters(other, models_dir / "other.safetensors")
    with torch.inference_mode(), pytest.raises(ValueError, match="other VAE weights"):
        _run(sn.MDIMSymVAELoader, vae=vae, adapter_name="other.safetensors", allow_other_vae_weights=False)


@pytest.mark.parametrize("shape", [(1, 13), (13, 1), (3, 5)])
def test_strips_and_tiny_images_encode_decode_restore(vaes, shape):
    """Any size from 1 px: padded to multiples of 8 inside, the same size out, outside the mask exact."""
    _, vae = vaes
    img = _page(*shape, seed=sum(shape))
    mask = torch.zeros(1, *shape)
    mask[:, shape[0] // 2 :, shape[1] // 2 :] = 1  # touches the bottom-right border
    with torch.inference_mode():
        handle = _run(sn.MDIMSymVAELoader, vae=vae, adapter_name=sn.NO_ADAPTERS, allow_other_vae_weights=False)
        latent = _run(sn.MDIMSymVAEEncode, symvae=handle, image=img, mask=mask, set_noise_mask=True)
        assert latent["mdim_source"].shape[1:3] == (8 * -(-shape[0] // 8), 8 * -(-shape[1] // 8))
        assert latent["mdim_mask"][0, -1, -1] == 1  # the mask continues into the padding
        out = _run(sn.MDIMSymVAEDecode, symvae=handle, samples=latent, fill="base", paste_outside_mask=True,
                   tile_size=1024)
        assert out.shape == (1, *shape, 3)
        assert torch.equal(out[0][mask[0] == 0], img[0][mask[0] == 0])
        restored = _run(sn.MDIMSymVAERestore, symvae=handle, image=img[..., :1], tile_size=1024, grayscale=True)
        assert restored.shape == (1, *shape, 3)


def test_latent_batch_must_match_its_masks(vaes):
    _, vae = vaes
    img = _page(32, 32).expand(2, -1, -1, -1)
    with torch.inference_mode():
        handle = _run(sn.MDIMSymVAELoader, vae=vae, adapter_name=sn.NO_ADAPTERS, allow_other_vae_weights=False)
        latent = _run(sn.MDIMSymVAEEncode, symvae=handle, image=img, mask=torch.ones(2, 32, 32), set_noise_mask=True)
        three = latent.copy()
        three["samples"] = torch.cat([latent["samples"], latent["samples"][:1]])
        three["mdim_source"] = torch.cat([latent["mdim_source"], latent["mdim_source"][:1]])
        with pytest.raises(ValueError, match=r"^samples: the LATENT has 3 latents but carries 2 masks"):
            _run(sn.MDIMSymVAEDecode, symvae=handle, samples=three, fill="base", paste_outside_mask=True,
                 tile_size=1024)


def test_tuned_decoder_file_from_diffusers_runs_on_comfy(vaes, models_dir):
    diff, vae = vaes
    sym = SymmetricVAE(diff)
    _randomise(sym, scale=0.2)
    sym.enable_decoder_tuning()
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for p in sym.tuned.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    save_adapters(sym, models_dir / "tuned.safetensors")
    img = _page()
    with torch.inference_mode():
        ref = sym.decode(sym.encode(img), source=img)
        handle = _run(sn.MDIMSymVAELoader, vae=vae, adapter_name="tuned.safetensors", allow_other_vae_weights=False)
        assert handle.sym.tuned is not None
        out = handle.decode(vae.encode(img), source=img)
        assert (out - ref).abs().max().item() <= 1e-4
        plain = SymmetricVAE(diff)
        assert (out - plain.decode(plain.encode(img), source=img)).abs().max().item() > 1e-3


def test_restore_node_any_size_and_tiled(vaes):
    _, vae = vaes
    with torch.inference_mode():
        handle = _run(sn.MDIMSymVAELoader, vae=vae, adapter_name=sn.NO_ADAPTERS, allow_other_vae_weights=False)
        img = _page(70, 50)
        out = _run(sn.MDIMSymVAERestore, symvae=handle, image=img, tile_size=0, grayscale=False)
        assert out.shape == (1, 70, 50, 3)
        padded = torch.nn.functional.pad(img.movedim(-1, 1), (0, 6, 0, 2), mode="replicate").movedim(1, -1)
        ref = vae.decode(vae.encode(padded))[:, :70, :50]
        assert (out - ref).abs().max().item() <= 1e-5
        tiled = _run(sn.MDIMSymVAERestore, symvae=handle, image=_page(96, 96), tile_size=64, grayscale=True)
        assert tiled.shape == (1, 96, 96, 3) and torch.equal(tiled[..., 0], tiled[..., 1])


def test_schema_tooltips_and_folder():
    assert "mdim" in folder_paths.folder_names_and_paths
    assert ".safetensors" in folder_paths.folder_names_and_paths["mdim"][1]
    for node in sn.NODES:
        schema = node.define_schema()
        assert schema.node_id.startswith("MDIM_") and schema.category.startswith("MDIM/")
        for item in list(schema.inputs) + list(schema.outputs):
            assert item.tooltip, (schema.node_id, getattr(item, "id", item))


@pytest.mark.slow
def test_cli_base_loader_reads_an_ldm_format_sd_vae_file(tmp_path):
    """An SD VAE saved in ComfyUI's (original LDM) key layout loads for training with the same weights."""
    from mdim_pack_under_test.mdim_core.symvae.base import load_base_vae
    from safetensors.torch import save_file
    from tiny_checkpoint import VAE_DDCONFIG, init_module

    model = comfy.ldm.models.autoencoder.AutoencoderKL(ddconfig=dict(VAE_DDCONFIG), embed_dim=4)
    init_module(model, torch.Generator().manual_seed(1))
    sd = {f"first_stage_model.{k}": v.contiguous() for k, v in model.state_dict().items()}  # as in a checkpoint
    path = tmp_path / "sd_vae.safetensors"
    save_file(sd, str(path))
    del sd
    diff = load_base_vae(path)
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a = model.decode(z)
        b = diff.decode(z).sample
    assert (a - b).abs().max().item() <= 1e-4


def test_encode_nan_names_the_image_input(vaes):
    _, vae = vaes
    img = _page().clone()
    img[0, 5, 6, 0] = float("nan")
    with torch.inference_mode():
        handle = _run(sn.MDIMSymVAELoader, vae=vae, adapter_name=sn.NO_ADAPTERS, allow_other_vae_weights=False)
        with pytest.raises(ValueError, match=r"^image: contains 1 NaN or infinite value\(s\); expected finite values in 0\.\.1"):
            _run(sn.MDIMSymVAEEncode, symvae=handle, image=img, set_noise_mask=True)
        with pytest.raises(ValueError, match=r"^image: .*expected finite values in 0\.\.1"):
            _run(sn.MDIMSymVAERestore, symvae=handle, image=img * float("inf"), tile_size=0, grayscale=True)


def _jpeg_mask(h, w, quality=75):
    """A rectangle mask saved and loaded as a JPEG (what LoadImage gives for a .jpg mask)."""
    import io as _io

    import numpy as np
    from PIL import Image, ImageDraw

    m = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(m)
    draw.ellipse((7, 9, 39, 45), fill=255)  # a speech balloon and a stroke of SFX
    draw.line((40, 50, 56, 28), fill=255, width=5)
    buf = _io.BytesIO()
    m.save(buf, format="JPEG", quality=quality)
    loaded = np.asarray(Image.open(_io.BytesIO(buf.getvalue())).convert("L"), dtype=np.float32) / 255.0
    return torch.from_numpy(loaded)[None]


def test_jpeg_mask_is_cleaned_like_sgim_and_pasted_exactly(vaes, models_dir):
    _, vae = vaes
    sym = SymmetricVAE(vae.first_stage_model)
    _randomise(sym, seed=5)
    save_adapters(sym, models_dir / "page.safetensors")
    img = _page(61, 58, seed=2)
    mask = _jpeg_mask(61, 58)
    # the JPEG really has the in-between values the cleanup must handle
    assert bool(((mask > 0.05) & (mask < 0.15)).any()) and bool(((mask >= 0.5) & (mask < 0.95)).any())
    hole = pack.mdim_core.imaging.masks.clean(mask, batch=1, size=(61, 58))[0] > 0  # MDIM SGIM Inpaint's cleanup
    with torch.inference_mode():
        handle = _run(sn.MDIMSymVAELoader, vae=vae, adapter_name="page.safetensors", allow_other_vae_weights=False)
        latent = _run(sn.MDIMSymVAEEncode, symvae=handle, image=img, mask=mask, set_noise_mask=True)
        assert torch.equal(latent["mdim_mask"][0, :61, :58] > 0, hole)
        assert set(latent["mdim_mask"].unique().tolist()) <= {0.0, 1.0}
        sampled = latent.copy()
        sampled["samples"] = latent["samples"] + 0.3 * torch.randn(
            latent["samples"].shape, generator=torch.Generator().manual_seed(4))
        kw = dict(symvae=handle, samples=sampled, fill="base", tile_size=1024)
        out = _run(sn.MDIMSymVAEDecode, paste_outside_mask=True, **kw)
        raw = _run(sn.MDIMSymVAEDecode, paste_outside_mask=False, **kw)
    assert torch.equal(out[0][~hole], img[0][~hole])  # mask values 0.05..0.5 included: untouched
    assert torch.equal(out[0][hole], raw[0][hole])  # mask values 0.5..0.95 included: fully replaced
    assert (raw[0][hole] - img[0][hole]).abs().max().item() > 1e-2  # the replacement is a real change


def test_tiled_runs_report_progress_and_cancel(vaes, progress_spy):
    import comfy.model_management as mm

    _, vae = vaes
    calls = progress_spy.reported
    try:
        with torch.inference_mode():
            handle = _run(sn.MDIMSymVAELoader, vae=vae, adapter_name=sn.NO_ADAPTERS, allow_other_vae_weights=False)
            img = _page(128, 96)
            _run(sn.MDIMSymVAERestore, symvae=handle, image=img, tile_size=64, grayscale=True)
            assert [c[:2] for c in calls] == [(i, 6) for i in range(1, 7)]  # 2 x 3 tiles of 64 px
            assert progress_spy.shown[-1][:2] == (6, 6)  # the user sees the bar full
            latent = _run(sn.MDIMSymVAEEncode, symvae=handle, image=img, set_noise_mask=False)
            calls.clear()
            _run(sn.MDIMSymVAEDecode, symvae=handle, samples=latent, fill="base", paste_outside_mask=True, tile_size=64)
            assert [c[:2] for c in calls] == [(i, 6) for i in range(1, 7)]
            # Cancel in the UI sets the host's interrupt flag: the run stops after the current tile
            calls.clear()
            copy = img.clone()
            mm.interrupt_current_processing(True)
            with pytest.raises(mm.InterruptProcessingException):
                _run(sn.MDIMSymVAERestore, symvae=handle, image=img, tile_size=64, grayscale=True)
            assert len(calls) <= 1 and torch.equal(img, copy)  # no tile after the cancel
            assert not mm.processing_interrupted()  # the host's flag is consumed, as by its own nodes
            # Cancel pressed while tile 2 is reported: tile 3 never starts
            progress_spy.on_report = lambda value: value == 2 and mm.interrupt_current_processing(True)
            with pytest.raises(mm.InterruptProcessingException):
                _run(sn.MDIMSymVAERestore, symvae=handle, image=img, tile_size=64, grayscale=True)
            assert [c[0] for c in calls] == [1, 2]
    finally:
        mm.interrupt_current_processing(False)
        progress_spy.on_report = None
