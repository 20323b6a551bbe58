"""A checkpoint made by ``python -m mdim_core train`` in a real ComfyUI.

The base is the suite's tiny SD1.5 checkpoint (ComfyUI's own classes, 4 channels, standard widths, tiny
depth), given as a single file with ComfyUI's CLIP tokenizer, as a user with ComfyUI would. The trainer
makes it a 9-channel inpainting model, trains two steps and writes the single-file checkpoint. ComfyUI must
then read it as its own: CheckpointLoaderSimple detects an SD1.5 inpainting model, every tensor lands where
the trainer put it (nothing missing, nothing left over), the key layout is the one ComfyUI itself saves,
and the file runs through MDIM Zero-SNR Model and MDIM SGIM Inpaint via /prompt.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from comfy_harness import REPO_ROOT

NAME = "mdim_trained_tiny"
SGIM_SMALL = {"seed": 5, "steps": 2, "fri_steps": 1, "sgi_max_side": 64, "context_margin": 16, "min_crop_side": 0}


@pytest.fixture(scope="module")
def trained(tiny_checkpoints, tmp_path_factory):
    """``(single file, run folder)`` of a 2-step training run on the tiny SD1.5 base, through the command line."""
    from PIL import Image

    comfyui_dir = Path(os.environ["COMFYUI_DIR"]).resolve()
    work = tmp_path_factory.mktemp("mdim_train")
    pages = work / "pages"
    pages.mkdir()
    sys.path.insert(0, str(REPO_ROOT))
    from mdim_core.synth import generate_page

    for i in range(2):
        clean = generate_page(i, size=(128, 96), dpi=36).clean
        Image.fromarray(np.round(clean * 255).astype(np.uint8)).save(pages / f"page{i}.png")
    (pages / "page0.txt").write_text("1girl, speech bubble")
    run = work / "run"
    cmd = [sys.executable, "-m", "mdim_core", "train", "--model", str(tiny_checkpoints["standard"]),
           "--data", str(pages), "-o", str(run), "--tokenizer", str(comfyui_dir / "comfy" / "sd1_tokenizer"),
           "--steps", "2", "--resolution", "64", "--max-side", "128", "--batch-size", "1", "--lr", "1e-4",
           "--validate-every", "0", "--save-every", "1", "--name", NAME, "-q"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, env=env, timeout=1800)
    assert result.returncode == 0, f"training failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    path = run / f"{NAME}.safetensors"
    assert path.is_file() and (run / "model" / "unet").is_dir()
    return path, run


def test_comfyui_reads_the_trained_file_as_its_own(inprocess_comfy, trained, tmp_path, caplog):
    import comfy.sd
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    path, _ = trained
    with caplog.at_level(logging.WARNING):
        model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(str(path))
    problems = [r.getMessage() for r in caplog.records if "missing" in r.getMessage() or "unexpected" in r.getMessage()]
    assert not problems, problems
    assert type(model.model.model_config).__name__ == "SD15"
    assert tuple(model.model.concat_keys) == ("mask", "masked_image")  # detected as an inpainting model
    assert model.model.diffusion_model.input_blocks[0][0].weight.shape[1] == 9
    ours = load_file(str(path))
    assert ours["v_pred"].numel() == 0 and ours["ztsnr"].numel() == 0  # ComfyUI's own marker keys
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata()["modelspec.predict_key"] == "v"

    def same(module_state, prefix, rename=lambda k: k):
        want = {k[len(prefix):]: v for k, v in ours.items() if k.startswith(prefix)}
        got = {rename(k): v for k, v in module_state.items()}
        got = {k: v for k, v in got.items() if k in want or not k.endswith("position_ids")}
        assert sorted(got) == sorted(want)
        return all(torch.equal(got[k].to(want[k].dtype), want[k]) for k in want)

    assert same(model.model.diffusion_model.state_dict(), "model.diffusion_model.")
    assert same(vae.first_stage_model.state_dict(), "first_stage_model.")
    clip_state = {k: v for k, v in clip.cond_stage_model.state_dict().items()
                  if k.startswith("clip_l.transformer.text_model.")}
    assert same(clip_state, "cond_stage_model.transformer.", lambda k: k[len("clip_l.transformer."):])
    # the layout is the one ComfyUI writes itself (its CheckpointSave code path)
    saved = tmp_path / "comfy_saved.safetensors"
    comfy.sd.save_checkpoint(str(saved), model, clip, vae)
    theirs = set(load_file(str(saved)))
    mine = set(ours) - {"v_pred", "ztsnr"}
    assert {k for k in theirs if not k.endswith(("position_ids", "logit_scale"))} == mine


def test_trained_file_runs_through_zero_snr_model_and_sgim(comfy_server, comfy_add_model_file, comfy_run,
                                                           comfy_images, test_images, trained):
    path, _ = trained
    ckpt = comfy_add_model_file("checkpoints", f"{NAME}.safetensors", path)
    info = comfy_server.object_info()["MDIM_SGIMInpaint"]["input"]["required"]
    links = {"model": ["10", 0], "positive": ["5", 0], "negative": ["6", 0], "vae": ["1", 2], "image": ["2", 0],
             "mask": ["4", 0]}
    sgim = {}
    for name, spec in info.items():
        if name in links:
            sgim[name] = links[name]
        elif isinstance(spec[0], list):
            sgim[name] = spec[1].get("default", spec[0][0]) if len(spec) > 1 else spec[0][0]
        else:
            sgim[name] = spec[1]["default"]
    sgim.update({k: v for k, v in SGIM_SMALL.items() if k in info})
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "mdim_example_page.png"}},
        "3": {"class_type": "LoadImage", "inputs": {"image": "mdim_example_mask.png"}},
        "4": {"class_type": "ImageToMask", "inputs": {"image": ["3", 0], "channel": "red"}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "manga, manga style, comic, monochrome", "clip": ["1", 1]}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "color, text", "clip": ["1", 1]}},
        "10": {"class_type": "MDIM_ZeroSNRModel", "inputs": {"model": ["1", 0], "prediction": "v_prediction",
                                                             "cfg_rescale": 0.7, "allow_epsilon_zero_snr": False}},
        "11": {"class_type": "MDIM_SGIMInpaint", "inputs": sgim},
        "12": {"class_type": "SaveImage", "inputs": {"images": ["11", 0], "filename_prefix": "mdim_trained"}},
    }
    out = comfy_images(comfy_run(prompt, timeout=900))[0]
    page = test_images["mdim_example_page.png"]
    mask = test_images["mdim_example_mask.png"][..., 0] > 127
    assert out.shape == page.shape
    assert np.array_equal(out[~mask], page[~mask])  # outside the mask: the page, bit for bit
    assert np.abs(out[mask].astype(int) - page[mask].astype(int)).mean() > 1.0  # the model repainted the mask
