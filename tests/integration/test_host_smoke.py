"""The harness itself against a real ComfyUI: pack loading, tiny checkpoints, core-only prompts.

These prove the test host works before (and independently of) any MDIM node: the tiny checkpoints
are detected as SD1.5 (standard and inpainting), and core graphs run through /prompt.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from comfy_harness import PACK_DIR_NAME, REPO_ROOT, PromptError, import_failures, tracebacks
from workflow_validation import declared_node_ids


def test_pack_loads_without_import_failure(comfy_server):
    log = comfy_server.startup_log()
    assert import_failures(log) == [], "\n".join(import_failures(log))
    loaded = [line for line in log.splitlines() if line.rstrip().endswith(f"custom_nodes/{PACK_DIR_NAME}")]
    assert loaded, f"the pack is not in the host's custom node import list:\n{comfy_server.log_tail()}"
    # tracebacks of the host's own extras (e.g. audio nodes without torchaudio) are not the pack's
    ours = [t for t in tracebacks(log) if PACK_DIR_NAME in t or "mdim" in t.lower() or str(REPO_ROOT) in t]
    assert not ours, "\n\n".join(ours)


def test_inprocess_comfy_runs_on_cpu_without_reading_pytests_argv(inprocess_comfy):
    import comfy.cli_args
    import comfy.model_management
    import comfy.options

    assert comfy.options.args_parsing is False
    defaults = comfy.cli_args.parser.parse_args([])
    args = comfy.cli_args.args
    assert args.cpu is True
    # the command-line options come from ComfyUI's defaults, not from pytest's argv
    for name in ("listen", "port", "base_directory", "output_directory", "verbose", "preview_method"):
        assert getattr(args, name) == getattr(defaults, name), name
    assert comfy.model_management.get_torch_device().type == "cpu"
    assert set(inprocess_comfy.nodes) == set(declared_node_ids())
    import folder_paths

    assert Path(folder_paths.get_output_directory()).is_relative_to(inprocess_comfy.scratch)
    assert Path(folder_paths.get_temp_directory()).is_relative_to(inprocess_comfy.scratch)


def test_inprocess_run_executes_like_the_host(inprocess_comfy):
    import torch
    from comfy_api.latest import io

    class Probe(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(node_id="Probe", inputs=[io.Int.Input("x")], outputs=[io.Boolean.Output()])

        @classmethod
        def execute(cls, x):
            return io.NodeOutput(torch.is_inference_mode_enabled() and x == 3)

    assert inprocess_comfy.run(Probe, x=3) == (True,)
    assert torch.is_inference_mode_enabled() is False


def test_tiny_checkpoints_are_detected_as_sd15(
    inprocess_comfy, inprocess_checkpoint, inprocess_inpaint_checkpoint
):
    import comfy.model_base
    import comfy.supported_models

    for (model, clip, vae), inpaint in ((inprocess_checkpoint, False), (inprocess_inpaint_checkpoint, True)):
        config = model.model.model_config
        assert type(config) is comfy.supported_models.SD15
        assert config.inpaint_model() is inpaint
        assert config.unet_config["in_channels"] == (9 if inpaint else 4)
        assert model.model.model_type == comfy.model_base.ModelType.EPS
        assert clip is not None and vae is not None
        assert vae.latent_channels == 4 and vae.downscale_ratio == 8


def test_tiny_controlnet_loads_without_missing_keys(inprocess_comfy, tiny_checkpoints, caplog):
    import comfy.cldm.cldm
    import comfy.controlnet

    with caplog.at_level("WARNING"):
        control = comfy.controlnet.load_controlnet(str(tiny_checkpoints["controlnet"]))
    assert isinstance(control.control_model, comfy.cldm.cldm.ControlNet)
    assert "missing controlnet keys" not in caplog.text


def _txt2img_prompt(ckpt: str, width: int, height: int, seed: int, prefix: str) -> dict:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "manga page, screentone", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "color", "clip": ["1", 1]}},
        "4": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": width, "height": height, "batch_size": 1},
        },
        "5": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "seed": seed,
                "steps": 2,
                "cfg": 5.0,
                "sampler_name": "euler",
                "scheduler": "simple",
                "positive": ["2", 0],
                "negative": ["3", 0],
                "latent_image": ["4", 0],
                "denoise": 1.0,
            },
        },
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": prefix}},
    }


def test_core_txt2img_runs_on_the_tiny_checkpoint(comfy_server, comfy_run, comfy_images):
    ckpt = comfy_server.checkpoints["standard"]
    outputs = comfy_run(_txt2img_prompt(ckpt, 64, 48, seed=3, prefix="smoke/a"), timeout=240)
    (image,) = comfy_images(outputs)
    assert image.shape == (48, 64, 3) and image.dtype == np.uint8
    assert image.std() > 1.0  # random weights give a non-constant image
    # a different seed changes the sampled image (the graph really samples)
    (other,) = comfy_images(comfy_run(_txt2img_prompt(ckpt, 64, 48, seed=4, prefix="smoke/b"), timeout=240))
    assert other.shape == image.shape
    assert np.abs(other.astype(int) - image.astype(int)).max() > 0


def test_core_inpainting_runs_on_the_9_channel_checkpoint(comfy_server, comfy_run, comfy_images, test_images):
    ckpt = comfy_server.checkpoints["inpainting"]
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "blank speech bubble", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "text", "clip": ["1", 1]}},
        "4": {"class_type": "LoadImage", "inputs": {"image": "mdim_example_page.png"}},
        "5": {"class_type": "LoadImage", "inputs": {"image": "mdim_example_mask.png"}},
        "6": {
            "class_type": "InpaintModelConditioning",
            "inputs": {
                "positive": ["2", 0],
                "negative": ["3", 0],
                "vae": ["1", 2],
                "pixels": ["4", 0],
                "mask": ["5", 1],
                "noise_mask": True,
            },
        },
        "7": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "seed": 1,
                "steps": 2,
                "cfg": 4.0,
                "sampler_name": "euler",
                "scheduler": "simple",
                "positive": ["6", 0],
                "negative": ["6", 1],
                "latent_image": ["6", 2],
                "denoise": 1.0,
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["1", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "smoke/inpaint"}},
        "10": {"class_type": "MaskToImage", "inputs": {"mask": ["5", 1]}},
        "11": {"class_type": "SaveImage", "inputs": {"images": ["10", 0], "filename_prefix": "smoke/mask"}},
    }
    outputs = comfy_run(prompt, timeout=300)
    images = {node: comfy_images({node: outputs[node]})[0] for node in ("9", "11")}
    height, width = test_images["mdim_example_page.png"].shape[:2]
    # InpaintModelConditioning crops to multiples of 8, as core VAEEncode does
    assert images["9"].shape == (height // 8 * 8, width // 8 * 8, 3)
    # the mask file reads as 1 inside the hole through LoadImage's MASK output
    expected_mask = (test_images["mdim_example_mask.png"][..., 3] == 0).astype(np.uint8) * 255
    np.testing.assert_array_equal(images["11"][..., 0], expected_mask)


def test_prompt_errors_surface_with_the_servers_message(comfy_server, comfy_run):
    prompt = _txt2img_prompt(comfy_server.checkpoints["standard"], 64, 48, seed=0, prefix="smoke/bad")
    prompt["5"]["inputs"]["sampler_name"] = "no_such_sampler"
    with pytest.raises(PromptError, match="sampler_name"):
        comfy_run(prompt, timeout=60)


def test_server_lists_every_node_the_pack_declares(comfy_server):
    info = comfy_server.object_info()
    declared = declared_node_ids()
    missing = sorted(node_id for node_id in declared if node_id not in info)
    assert not missing, (
        f"declared in nodes/*.py but not served by the host: {missing}\n{comfy_server.log_tail()}"
    )
    for node_id in declared:
        node = info[node_id]
        assert node["category"].startswith("MDIM/"), node_id
        assert node["python_module"].startswith("custom_nodes."), node_id


# --------------------------------------------------------------------------- what differs between hosts


def test_the_extension_works_whether_or_not_the_host_calls_on_load(inprocess_comfy):
    """ComfyUI 0.14+ awaits ``ComfyExtension.on_load()`` before ``get_node_list()``; 0.8.0 never calls it."""
    import asyncio

    async def node_ids(call_on_load: int) -> list[str]:
        extension = await inprocess_comfy.pack.comfy_entrypoint()
        for _ in range(call_on_load):
            await extension.on_load()
        return [cls.define_schema().node_id for cls in await extension.get_node_list()]

    without = asyncio.run(node_ids(0))
    assert sorted(without) == sorted(declared_node_ids())
    assert asyncio.run(node_ids(1)) == without and asyncio.run(node_ids(2)) == without


def test_advanced_inputs_are_marked_only_where_the_host_knows_the_flag(comfy_server, inprocess_comfy):
    """Inputs declared with ``host_compat.ADVANCED`` carry ``advanced: true`` on hosts whose inputs take the
    keyword (ComfyUI 0.10+, e.g. 0.28.0: hidden until the user expands the node); 0.8.0 serves them plain."""
    import importlib
    import inspect

    from comfy_api.latest import io

    compat = importlib.import_module("mdim_pack_under_test.nodes.host_compat")
    supported = "advanced" in inspect.signature(io.Int.Input.__init__).parameters
    assert bool(compat.ADVANCED) == supported == (comfy_server.version() >= (0, 10, 0))
    info = comfy_server.object_info()
    marked = {
        (node_id, name)
        for node_id in declared_node_ids()
        for section in info[node_id]["input"].values()
        for name, spec in section.items()
        if isinstance(spec, list) and len(spec) > 1 and isinstance(spec[1], dict) and spec[1].get("advanced")
    }
    if supported:
        assert ("MDIM_SGIMInpaint", "plan") in marked and ("MDIM_SGIMInpaint", "tiled_vae_megapixels") in marked
        assert ("MDIM_SGIMInpaint", "steps") not in marked  # the everyday inputs stay in view
    else:
        assert marked == set()


def test_a_graph_with_a_cycle_is_refused_clearly_and_the_server_goes_on(comfy_server, comfy_run, comfy_images):
    """Two MDIM nodes feeding each other: refused before anything runs, never a crash or a hang; the next
    prompt runs. ComfyUI 0.20 and later name the cycle and the nodes in it; 0.8.0 refuses the graph with a
    bare "Prompt outputs failed validation" (the host's own message: nothing of ours runs)."""
    cleanup = {"gray": "auto", "remove_background": True, "levels": "thesis", "black_point": 90.0,
               "white_point": 190.0, "sharpen": 3.0, "dpi": 0.0, "bleed_through": 0.0, "despeckle": 0,
               "deskew": False}  # fmt: skip
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "mdim_example_page.png"}},
        "2": {"class_type": "ImageBlend", "inputs": {"image1": ["1", 0], "image2": ["3", 0], "blend_factor": 0.5,
                                                      "blend_mode": "normal"}},
        "3": {"class_type": "MDIM_ScanCleanup", "inputs": {"image": ["4", 0], **cleanup}},
        "4": {"class_type": "MDIM_ScanCleanup", "inputs": {"image": ["2", 0], **cleanup}},
        "5": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}},
    }  # fmt: skip
    with pytest.raises(PromptError) as err:
        comfy_run(prompt, timeout=120)
    assert comfy_server.process.poll() is None
    assert "failed validation" in str(err.value).lower() or "cycle" in str(err.value).lower(), str(err.value)[:2000]
    if comfy_server.version() >= (0, 20, 0):
        assert "cycle" in str(err.value).lower(), str(err.value)[:2000]
        assert err.value.node_errors, "expected a validation error"
        assert {"3", "4", "2"} <= set(err.value.node_errors), err.value.node_errors
    prompt = {"1": prompt["1"], "3": {"class_type": "MDIM_ScanCleanup", "inputs": {"image": ["1", 0], **cleanup}},
              "5": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}}}  # fmt: skip
    (image,) = comfy_images(comfy_run(prompt, timeout=120))
    assert image.shape[:2] == (164, 132)
