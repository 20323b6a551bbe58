"""MDIM LaMa Loader/Fill and MDIM Paste & Harmonize inside a real ComfyUI.

LaMa runs spandrel's network with random weights (written in the file layouts users have); the
harmonising pass runs the tiny random-weight checkpoint. So these tests check what must hold whatever
the weights: the files load through folder_paths and the host's model management, pixels outside the
mask (the ring) come back bit for bit, the node equals the core function, the same seed gives the same
image, progress and Cancel work, inputs are untouched, and the shipped workflows run through /prompt.
"""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.integration


def run(node, **inputs):
    """Execute a node as the host does: under torch.inference_mode(); returns the output tuple."""
    import torch

    with torch.inference_mode():
        return node.execute(**inputs).args


@pytest.fixture(scope="module")
def core(inprocess_comfy):
    import importlib

    return {
        "lama": importlib.import_module("mdim_pack_under_test.mdim_core.inpaint.lama"),
        "harmonize": importlib.import_module("mdim_pack_under_test.mdim_core.inpaint.harmonize"),
        "lama_nodes": importlib.import_module("mdim_pack_under_test.nodes.lama_nodes"),
        "masks": importlib.import_module("mdim_pack_under_test.mdim_core.imaging.masks"),
    }


@pytest.fixture(scope="module")
def page(test_images):
    """The test page as IMAGE [1, H, W, 3] and its text mask as MASK [1, H, W]."""
    import torch

    image = torch.from_numpy(test_images["mdim_example_page.png"].astype(np.float32) / 255.0)[None]
    mask = torch.from_numpy((test_images["mdim_example_mask.png"][..., 0] > 127).astype(np.float32))[None]
    return image, mask


@pytest.fixture(scope="module")
def sfx(test_images):
    """The translated SFX as Load Image gives it: IMAGE [1, h, w, 3] and MASK = 1 - alpha."""
    import torch

    rgba = test_images["mdim_example_sfx_translated.png"].astype(np.float32) / 255.0
    return torch.from_numpy(rgba[..., :3])[None], torch.from_numpy(1.0 - rgba[..., 3])[None]


@pytest.fixture(scope="module")
def lama_dirs(inprocess_comfy, tmp_path_factory, tiny_checkpoints):
    """models/inpaint and models/mdim pointed at temporary folders holding LaMa files of several layouts."""
    import folder_paths
    from lama_nets import random_lama, write_lama

    inpaint = tmp_path_factory.mktemp("inpaint")
    mdim = tmp_path_factory.mktemp("mdim")
    net = random_lama(0)
    write_lama(net, inpaint / "best.ckpt", "lama-ckpt")
    (mdim / "lama_random.safetensors").symlink_to(tiny_checkpoints["lama"])  # float16 weights
    (inpaint / "not_lama.safetensors").write_bytes(b"not a safetensors file")
    saved = {name: folder_paths.folder_names_and_paths[name] for name in ("inpaint", "mdim")}
    folder_paths.folder_names_and_paths["inpaint"] = ([str(inpaint)], saved["inpaint"][1])
    folder_paths.folder_names_and_paths["mdim"] = ([str(mdim)], saved["mdim"][1])
    for name in saved:
        folder_paths.filename_list_cache.pop(name, None)
    yield {"inpaint": inpaint, "mdim": mdim, "net": net}
    for name, value in saved.items():
        folder_paths.folder_names_and_paths[name] = value
        folder_paths.filename_list_cache.pop(name, None)


@pytest.fixture(scope="module")
def lama_handle(inprocess_comfy, lama_dirs):
    return run(inprocess_comfy.nodes["MDIM_LamaLoader"], model_name="best.ckpt")[0]


# --- MDIM LaMa Loader / Fill --------------------------------------------------------------------------


def test_loader_lists_both_folders_and_loads_each_layout(inprocess_comfy, lama_dirs, core):
    import comfy.model_patcher
    import torch

    loader = inprocess_comfy.nodes["MDIM_LamaLoader"]
    options = loader.define_schema().inputs[0].options
    assert {"best.ckpt", "lama_random.safetensors"} <= set(options)
    want = lama_dirs["net"].state_dict()
    ckpt = run(loader, model_name="best.ckpt")[0]
    assert isinstance(ckpt.patcher, comfy.model_patcher.ModelPatcher) and ckpt.patcher.model is ckpt.model.module
    assert all(torch.equal(ckpt.model.module.state_dict()[k], v) for k, v in want.items())
    half = run(loader, model_name="lama_random.safetensors")[0]  # float16 file: float32 network
    got = half.model.module.state_dict()
    assert all(torch.equal(got[k], v.half().to(v.dtype)) for k, v in want.items())
    assert {p.dtype for p in half.model.module.parameters()} == {torch.float32}
    with pytest.raises(ValueError, match="model_name"):
        run(loader, model_name="missing.pt")
    with pytest.raises(ValueError, match="not_lama.safetensors"):
        run(loader, model_name="not_lama.safetensors")


def _fill(inprocess_comfy, handle, image, mask, **overrides):
    inputs = {"lama": handle, "image": image, "mask": mask, "max_side": 64, "context_margin": 16, "grow_mask": 0,
              "precision": "fp32"}
    inputs.update(overrides)
    return run(inprocess_comfy.nodes["MDIM_LamaFill"], **inputs)[0]


def test_fill_node_equals_the_core_fill_and_keeps_pixels_outside(inprocess_comfy, lama_handle, page, core):
    import comfy.model_management as mm
    import torch

    image, mask = page
    before = (image.clone(), mask.clone())
    out = _fill(inprocess_comfy, lama_handle, image, mask)
    assert out.shape == image.shape
    keep = (mask == 0)[..., None].expand_as(image)
    assert torch.equal(out[keep], image[keep])
    assert not torch.equal(out[~keep], image[~keep])
    config = core["lama"].LamaConfig(max_side=64, context_margin=16)
    assert torch.equal(out, core["lama"].fill(lama_handle.model, image, mask, config).image)
    assert torch.equal(_fill(inprocess_comfy, lama_handle, image, mask), out)  # deterministic
    assert torch.equal(image, before[0]) and torch.equal(mask, before[1])
    assert any(m.model is lama_handle.patcher for m in mm.current_loaded_models)  # the host's model management


def test_fill_reports_progress_per_crop_and_cancels(inprocess_comfy, lama_handle, page, core, progress_spy):
    import comfy.model_management as mm

    image, mask = page
    plan = core["lama"].plan(mask[0] > 0.5, core["lama"].LamaConfig(max_side=64, context_margin=16))
    _fill(inprocess_comfy, lama_handle, image, mask)
    n = len(plan.crops)
    assert [(v, t) for v, t, _ in progress_spy.reported] == [(i, n) for i in range(n + 1)]
    assert progress_spy.shown[-1][:2] == (n, n)
    mm.interrupt_current_processing(True)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            _fill(inprocess_comfy, lama_handle, image, mask)
        assert not mm.processing_interrupted()  # consumed, as by the host's own nodes
    finally:
        mm.interrupt_current_processing(False)


def test_fill_inputs_are_checked(inprocess_comfy, lama_handle, page):
    image, mask = page
    with pytest.raises(ValueError, match="lama"):
        _fill(inprocess_comfy, "not a model", image, mask)
    with pytest.raises(ValueError, match="float16"):
        _fill(inprocess_comfy, lama_handle, image, mask, precision="fp16")
    with pytest.raises(ValueError, match="mask"):
        _fill(inprocess_comfy, lama_handle, image.repeat(2, 1, 1, 1), mask.repeat(3, 1, 1))
    schema = inprocess_comfy.nodes["MDIM_LamaFill"].define_schema()
    precision = next(i for i in schema.inputs if i.id == "precision")
    assert "fp16" not in precision.options


def test_without_spandrel_only_the_lama_nodes_are_disabled(inprocess_comfy, monkeypatch, caplog):
    import importlib

    nodes_pkg = importlib.import_module("mdim_pack_under_test.nodes")
    monkeypatch.setitem(sys.modules, "spandrel", None)  # import spandrel raises ImportError
    monkeypatch.delitem(sys.modules, "mdim_pack_under_test.nodes.lama_nodes", raising=False)
    with caplog.at_level(logging.WARNING, logger="MDIM"):
        classes = nodes_pkg.load_node_classes()
    ids = {cls.define_schema().node_id for cls in classes}
    assert "MDIM_LamaFill" not in ids and "MDIM_LamaLoader" not in ids
    assert {"MDIM_SGIMInpaint", "MDIM_PasteHarmonize"} <= ids
    assert "lama_nodes are disabled" in caplog.text


# --- MDIM Paste & Harmonize ---------------------------------------------------------------------------


def _harmonize_inputs(checkpoint, page, sfx, **overrides):
    model, clip, vae = checkpoint
    positive = clip.encode_from_tokens_scheduled(clip.tokenize("manga, monochrome, sound effect"))
    negative = clip.encode_from_tokens_scheduled(clip.tokenize("color"))
    inputs = {
        "model": model, "positive": positive, "negative": negative, "vae": vae, "page": page[0],
        "foreground": sfx[0], "foreground_mask": sfx[1], "mask_is": "transparency", "x": 40, "y": 100,
        "scale": 1.0, "strength": 0.3, "steps": 2, "ring": 6, "seed": 3, "cfg": 7.0, "sampler_name": "euler",
        "scheduler": "simple", "context_margin": 16, "min_crop_side": 0, "tiled_vae_megapixels": 4.0,
    }  # fmt: skip
    inputs.update(overrides)
    return inputs


def test_paste_harmonize_changes_only_the_ring_and_equals_the_core_paste(
    inprocess_comfy, inprocess_checkpoint, page, sfx, core
):
    import torch

    node = inprocess_comfy.nodes["MDIM_PasteHarmonize"]
    inputs = _harmonize_inputs(inprocess_checkpoint, page, sfx)
    before = [t.clone() for t in (page[0], sfx[0], sfx[1])]
    image, mask, pasted = run(node, **inputs)
    hz = core["harmonize"]
    want = hz.paste(page[0], sfx[0], x=40, y=100, alpha=1.0 - sfx[1])
    assert torch.equal(pasted, want.image)
    assert torch.equal(mask, hz.pass_mask(want.coverage, 6))
    keep = (mask == 0)[..., None].expand_as(image)
    assert torch.equal(image[keep], page[0][keep])  # outside the ring: the page, bit for bit
    assert not torch.equal(image[~keep], pasted[~keep])  # the pass redrew the pasted area
    assert torch.equal(run(node, **inputs)[0], image)  # the same seed gives the same page
    for t, b in zip((page[0], sfx[0], sfx[1]), before):
        assert torch.equal(t, b)
    # the same shape given as coverage (1 = foreground) gives the same page
    same = run(node, **_harmonize_inputs(inprocess_checkpoint, page, sfx, foreground_mask=1.0 - sfx[1],
                                         mask_is="coverage"))[0]  # fmt: skip
    assert torch.equal(same, image)


def test_paste_harmonize_progress_cancel_and_errors(inprocess_comfy, inprocess_checkpoint, page, sfx, progress_spy):
    import comfy.model_management as mm

    node = inprocess_comfy.nodes["MDIM_PasteHarmonize"]
    inputs = _harmonize_inputs(inprocess_checkpoint, page, sfx, steps=3)
    run(node, **inputs)
    calls = [(v, t) for v, t, _ in progress_spy.reported]
    values = [v for v, _ in calls if v > 0]
    # every step, in order (newer hosts may report the last value twice)
    assert {t for _, t in calls} == {3} and [v for i, v in enumerate(values) if i == 0 or v != values[i - 1]] == [1, 2, 3]
    assert progress_spy.shown[-1][:2] == (3, 3)
    mm.interrupt_current_processing(True)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            run(node, **inputs)
    finally:
        mm.interrupt_current_processing(False)
    for bad, match in (({"strength": 0.0}, "strength"), ({"x": 5000}, "outside"), ({"sampler_name": "nope"}, "sampler_name"),
                       ({"mask_is": "alpha"}, "mask_is"), ({"symvae": "x"}, "symvae")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            run(node, **_harmonize_inputs(inprocess_checkpoint, page, sfx, **bad))


def test_paste_harmonize_decodes_with_the_symmetric_vae(inprocess_comfy, inprocess_checkpoint, page, sfx):
    import torch

    symvae_nodes = __import__("mdim_pack_under_test.nodes.symvae_nodes", fromlist=["x"])
    _, _, vae = inprocess_checkpoint
    handle = run(inprocess_comfy.nodes["MDIM_SymVAELoader"], vae=vae, adapter_name=symvae_nodes.NO_ADAPTERS,
                 allow_other_vae_weights=False)[0]  # fmt: skip
    node = inprocess_comfy.nodes["MDIM_PasteHarmonize"]
    plain, mask, _ = run(node, **_harmonize_inputs(inprocess_checkpoint, page, sfx))
    sym, _, _ = run(node, **_harmonize_inputs(inprocess_checkpoint, page, sfx, symvae=handle))
    keep = (mask == 0)[..., None].expand_as(plain)
    assert torch.equal(sym[keep], page[0][keep])
    assert (sym - plain).abs().max() < 2e-2  # untrained adapters decode like the base VAE


# --- through the server ------------------------------------------------------------------------------


def test_lama_prefill_workflow(comfy_server, workflow_prompt, comfy_run, comfy_images, test_images):
    prompt = workflow_prompt("mdim_lama_prefill_sgim.json", steps=2, fri_steps=1, sgi_max_side=64,
                             min_crop_side=0, max_side=64)  # fmt: skip
    outputs = comfy_run(prompt, timeout=900)
    saved = {k: comfy_images({k: v}) for k, v in outputs.items()}
    result, fill = saved["20"][0], saved["21"][0]
    page = test_images["mdim_example_page.png"]
    hole = test_images["mdim_example_mask.png"][..., 0] > 127
    for image in (result, fill):
        assert image.shape == page.shape and np.array_equal(image[~hole], page[~hole])
    assert not np.array_equal(fill[hole], page[hole]) and not np.array_equal(result[hole], fill[hole])


def test_sfx_translate_workflow(comfy_server, workflow_prompt, comfy_run, comfy_images, test_images):
    prompt = workflow_prompt("mdim_sfx_translate_harmonize.json", steps=2, fri_steps=1, sgi_max_side=64,
                             min_crop_side=0)  # fmt: skip
    outputs = comfy_run(prompt, timeout=900)
    saved = {k: comfy_images({k: v}) for k, v in outputs.items()}
    final, removed, pasted = saved["20"][0], saved["21"][0], saved["22"][0]
    page = test_images["mdim_example_page.png"]
    hole = test_images["mdim_example_mask.png"][..., 0] > 127
    assert np.array_equal(removed[~hole], page[~hole])
    alpha = test_images["mdim_example_sfx_translated.png"][..., 3] > 0
    covered = np.zeros(page.shape[:2], bool)
    covered[100 : 100 + alpha.shape[0], 40 : 40 + alpha.shape[1]] = alpha[: page.shape[0] - 100, : page.shape[1] - 40]
    assert np.array_equal(pasted[~covered], removed[~covered])  # the paste touched only the foreground
    ys, xs = np.nonzero(covered)
    far = np.ones(page.shape[:2], bool)
    far[max(0, ys.min() - 8) : ys.max() + 9, max(0, xs.min() - 8) : xs.max() + 9] = False
    assert np.array_equal(final[far], removed[far])  # beyond the ring: the SFX-free page, bit for bit
    assert not np.array_equal(final[covered], pasted[covered])


def test_loader_lists_the_servers_inpaint_folder(comfy_server):
    info = comfy_server.object_info()["MDIM_LamaLoader"]
    spec = info["input"]["required"]["model_name"]
    options = spec[0] if isinstance(spec[0], list) else spec[1]["options"]
    assert "big-lama.safetensors" in options  # linked into models/inpaint by the test server
