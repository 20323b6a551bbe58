"""MDIM SGIM Inpaint inside a real ComfyUI: in-process node runs and the shipped SGIM workflows via /prompt.

The tiny random-weight checkpoints make noise, so these tests check what must hold whatever the
weights: pixels outside the mask come back bit for bit, the same seed gives the same image, the host
objects are untouched, progress covers every step of both passes, cancel stops the run, and the
ControlNet and 9-channel conditioning really reach the sampler.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

SMALL = {  # forces the two-pass path on the 164x132 test page: crop -> SGI at <= 64 px -> FRI
    "steps": 2,
    "fri_steps": 1,
    "sgi_max_side": 64,
    "context_margin": 16,
    "min_crop_side": 0,
    "flat_fill": "off",  # the page's text sits in flat white paper: 'auto' fills it without the model
}


def run(node, inputs):
    """Execute a node as the host does: under torch.inference_mode(); returns the output tuple."""
    import torch

    with torch.inference_mode():
        return node.execute(**inputs).args


def _inputs(model, clip, vae, image, mask, **overrides):
    tokens = clip.tokenize("manga, manga style, comic, monochrome")
    positive = clip.encode_from_tokens_scheduled(tokens)
    negative = clip.encode_from_tokens_scheduled(clip.tokenize("color"))
    inputs = {
        "model": model, "positive": positive, "negative": negative, "vae": vae, "image": image, "mask": mask,
        "seed": 5, "steps": 30, "cfg": 7.0, "sampler_name": "euler", "scheduler": "simple", "sgi_max_side": 1024,
        "plan": "halve", "fri_strength": 0.5, "fri_steps": 15, "run_fri": "auto", "grow_mask": 0, "feather": 0,
        "context_margin": 128, "min_crop_side": 512, "limit_to_panel": False, "tiled_vae_megapixels": 4.0,
    }  # fmt: skip
    inputs.update(SMALL)
    inputs.update(overrides)
    return inputs


@pytest.fixture(scope="module")
def page(test_images):
    """The test page as IMAGE [1, H, W, 3] and its text mask as MASK [1, H, W]."""
    import torch

    image = torch.from_numpy(test_images["mdim_example_page.png"].astype(np.float32) / 255.0)[None]
    mask = torch.from_numpy((test_images["mdim_example_mask.png"][..., 0] > 127).astype(np.float32))[None]
    assert 0 < float(mask.mean()) < 0.6
    return image, mask


@pytest.fixture(scope="module")
def sgim_node(inprocess_comfy):
    return inprocess_comfy.nodes["MDIM_SGIMInpaint"]


@pytest.fixture(params=["standard", "inpainting"])
def checkpoint(request, inprocess_checkpoint, inprocess_inpaint_checkpoint):
    return inprocess_checkpoint if request.param == "standard" else inprocess_inpaint_checkpoint


def _cond_snapshot(conds):
    return [(c[0].clone(), sorted(c[1].keys())) for c in conds]


def test_outside_mask_exact_and_deterministic(sgim_node, checkpoint, page):
    import torch

    model, clip, vae = checkpoint
    image, mask = page
    inputs = _inputs(model, clip, vae, image, mask)
    pos_before, neg_before = _cond_snapshot(inputs["positive"]), _cond_snapshot(inputs["negative"])
    image_before, mask_before = image.clone(), mask.clone()
    out, preview = run(sgim_node, inputs)
    again, _ = run(sgim_node, inputs)
    other, _ = run(sgim_node, dict(inputs, seed=6))
    assert out.shape == image.shape and preview.shape == image.shape
    outside = (mask == 0)[..., None].expand_as(image)
    assert torch.equal(out[outside], image[outside])
    assert torch.equal(preview[outside], image[outside])
    assert (out - image)[~outside].abs().mean() > 0.01  # the text area was redrawn
    assert torch.equal(out, again) and not torch.equal(out, other)
    # nothing the node was given changed (9-channel conds get copies with the concat keys)
    assert torch.equal(image, image_before) and torch.equal(mask, mask_before)
    for before, conds in ((pos_before, inputs["positive"]), (neg_before, inputs["negative"])):
        assert [k for _, k in before] == [sorted(c[1].keys()) for c in conds]
        assert all(torch.equal(t, c[0]) for (t, _), c in zip(before, conds))


def test_batch_of_pages_with_one_shared_mask(sgim_node, checkpoint, page):
    import torch

    model, clip, vae = checkpoint
    image, mask = page
    batch = torch.cat([image, 1.0 - image])
    out, _ = run(sgim_node, _inputs(model, clip, vae, batch, mask))
    assert out.shape == batch.shape
    outside = (mask == 0)[..., None].expand_as(image)
    for b in range(2):
        assert torch.equal(out[b : b + 1][outside], batch[b : b + 1][outside])
    assert not torch.equal(out[0], out[1])


def test_nine_channel_conds_are_built_per_pass(sgim_node, inprocess_inpaint_checkpoint, page, inprocess_comfy):
    """The inpainting model receives concat_latent_image/concat_mask at each pass's own latent size."""
    import comfy.sample

    sgim_nodes = __import__("mdim_pack_under_test.nodes.sgim_host", fromlist=["x"])
    model, clip, vae = inprocess_inpaint_checkpoint
    assert sgim_nodes.is_inpaint_model(model)
    image, mask = page
    seen = []
    real = comfy.sample.sample

    def spy(model_, noise, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, **kw):
        extra = positive[0][1]
        seen.append((tuple(latent_image.shape), tuple(extra["concat_latent_image"].shape), tuple(extra["concat_mask"].shape), tuple(kw["noise_mask"].shape)))
        return real(model_, noise, steps, cfg, sampler_name, scheduler, positive, negative, latent_image, **kw)

    comfy.sample.sample = spy
    try:
        run(sgim_node, _inputs(model, clip, vae, image, mask))
    finally:
        comfy.sample.sample = real
    assert len(seen) == 2  # SGI then FRI
    for latent_shape, concat_shape, concat_mask_shape, noise_mask_shape in seen:
        assert concat_shape == latent_shape
        assert concat_mask_shape == noise_mask_shape == (latent_shape[0], 1, *latent_shape[2:])
    assert seen[0][0][2:] != seen[1][0][2:]  # the two passes run at different sizes


@pytest.mark.parametrize("strength,steps", [(1.0, 3), (0.5, 2), (0.45, 25), (0.5, 25), (0.6, 25), (0.7, 25), (0.99, 25)])
def test_host_pass_equals_core_inpainting_with_ksampler(inprocess_comfy, checkpoint, strength, steps):
    """One host pass is bit-identical to core SetLatentNoiseMask/InpaintModelConditioning + KSampler with the
    same steps and denoise (mask on whole 8-px cells, where the host's cell mask and core's resized mask agree):
    at 25 steps and denoise 0.45, 0.6, 0.7 KSampler runs the tail of a 55-, 41-, 35-step schedule."""
    import importlib
    from pathlib import Path

    import torch

    comfy_nodes = importlib.import_module("nodes")
    assert Path(comfy_nodes.__file__).resolve().parent == Path(inprocess_comfy.comfy_dir).resolve()
    sgim_nodes = __import__("mdim_pack_under_test.nodes.sgim_host", fromlist=["x"])
    PassInfo = __import__("mdim_pack_under_test.mdim_core.inpaint.host", fromlist=["x"]).PassInfo
    model, clip, vae = checkpoint
    pos = clip.encode_from_tokens_scheduled(clip.tokenize("manga"))
    neg = clip.encode_from_tokens_scheduled(clip.tokenize("color"))
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(1, 64, 64)
    mask[:, 16:40, 8:48] = 1.0
    info = PassInfo("sgi", 0, 1, 0, steps, 0, 1, (0,), (0, 0, 64, 64), (64, 64), (64, 64))
    host = sgim_nodes.ComfyHost(model, vae, pos, neg, cfg=7.0, sampler_name="euler", scheduler="simple")
    total, first = __import__("mdim_pack_under_test.mdim_core.sampling.schedule", fromlist=["x"]).ksampler_schedule(
        steps, strength)
    sigmas = host.pass_sigmas(steps, strength, info)  # None: the host samples with KSampler's own rule
    custom = sgim_nodes.ComfyHost(model, vae, pos, neg, cfg=7.0, sampler_name="euler", scheduler="simple",
                                  sampler=__import__("comfy.samplers", fromlist=["x"]).sampler_object("euler"))
    custom_sigmas = custom.pass_sigmas(steps, strength, info)  # a connected SAMPLER gets KSampler's sigmas too
    assert sigmas is None and len(custom_sigmas) == steps + 1 and total - first == steps
    with torch.inference_mode():
        latent = vae.encode(image)
        ours = host.denoise(latent, image=image, mask=mask, strength=strength, steps=steps, seed=3, info=info)
        if sgim_nodes.is_inpaint_model(model):
            pos, neg, start = comfy_nodes.InpaintModelConditioning().encode(pos, neg, image, vae, mask, True)
        else:
            start = comfy_nodes.SetLatentNoiseMask().set_mask({"samples": latent}, mask)[0]
        ref = comfy_nodes.common_ksampler(model, 3, steps, 7.0, "euler", "simple", pos, neg, start, denoise=strength)
        with_sampler = custom.denoise(latent, image=image, mask=mask, strength=strength, steps=steps, seed=3, info=info)
        ksampler = __import__("comfy.samplers", fromlist=["x"]).KSampler(
            model, steps=steps, device=model.load_device, sampler="euler", scheduler="simple", denoise=strength)
    assert torch.equal(ours, ref[0]["samples"])
    assert torch.equal(custom_sigmas, ksampler.sigmas.cpu())  # the same sigmas as core KSampler(steps, denoise)
    assert torch.equal(with_sampler, ours)  # and the same latent through SamplerCustom's path


def test_input_model_gives_identical_ksampler_results_before_and_after(sgim_node, inprocess_checkpoint, page):
    import comfy.sample
    import torch

    model, clip, vae = inprocess_checkpoint
    cond = clip.encode_from_tokens_scheduled(clip.tokenize("manga"))
    latent = {"samples": torch.zeros(1, 4, 8, 8)}

    def ksample():  # what core KSampler runs
        noise = comfy.sample.prepare_noise(latent["samples"], 42)
        return comfy.sample.sample(model, noise, 3, 7.0, "euler", "simple", cond, cond, latent["samples"], seed=42)

    before = ksample()
    options_before = copy.copy(model.model_options)
    run(sgim_node, _inputs(model, clip, vae, *page))
    assert torch.equal(ksample(), before)
    assert model.model_options.keys() == options_before.keys()


def test_lora_reaches_both_passes(sgim_node, inprocess_checkpoint, page):
    """A LoRA loaded on the MODEL changes both the structure pass and the refinement pass."""
    import comfy.lora
    import comfy.sample
    import comfy.sd
    import torch

    model, clip, vae = inprocess_checkpoint
    keys = comfy.lora.model_lora_keys_unet(model.model, {})
    lora_key, weight_key = next((k, v) for k, v in keys.items() if k.startswith("lora_unet_") and v.endswith("attn2.to_k.weight"))
    out_f, in_f = model.model.state_dict()[weight_key].shape
    g = torch.Generator().manual_seed(0)
    lora = {f"{lora_key}.lora_up.weight": torch.randn(out_f, 4, generator=g),
            f"{lora_key}.lora_down.weight": torch.randn(4, in_f, generator=g)}  # fmt: skip
    lora_model, _ = comfy.sd.load_lora_for_models(model, clip, lora, 1.0, 0.0)
    image, mask = page
    seen = []
    real = comfy.sample.sample

    def spy(model_, *args, **kw):
        seen.append(model_)
        return real(model_, *args, **kw)

    comfy.sample.sample = spy
    try:
        plain, plain_sgi = run(sgim_node, _inputs(model, clip, vae, image, mask))
        with_lora, lora_sgi = run(sgim_node, _inputs(lora_model, clip, vae, image, mask))
    finally:
        comfy.sample.sample = real
    assert seen == [model, model, lora_model, lora_model]  # SGI and FRI of each run
    hole = mask.bool()[..., None].expand_as(image)
    assert not torch.equal(lora_sgi[hole], plain_sgi[hole]) and not torch.equal(with_lora[hole], plain[hole])
    assert torch.equal(with_lora[~hole], image[~hole])


@pytest.mark.parametrize("tiled", [False, True])
def test_progress_covers_every_step_with_one_total(sgim_node, inprocess_checkpoint, page, tiled, progress_spy):
    import comfy.utils
    import latent_preview

    sgim = __import__("mdim_pack_under_test.mdim_core.inpaint.sgim", fromlist=["x"])
    model, clip, vae = inprocess_checkpoint
    image, mask = page
    # tiled: every VAE call is tiled; ComfyUI's tile bars must not show on the run's bar
    inputs = _inputs(model, clip, vae, image, mask, steps=3, fri_steps=2, tiled_vae_megapixels=1e-6 if tiled else 4.0)
    config = sgim.SGIMConfig(steps=3, fri_steps=2, sgi_max_side=64, context_margin=16, min_crop_side=0)
    frames = sgim.plan(tuple(image.shape[1:3]), mask > 0.5, config)
    expected = sum(3 * len(f.sgi) + 2 * sum(j.passes for j in f.crops) * f.run_fri for f in frames)
    assert all(f.run_fri for f in frames)
    old_method = latent_preview.args.preview_method
    latent_preview.set_preview_method("latent2rgb")
    try:
        run(sgim_node, inputs)
        assert comfy.utils.PROGRESS_BAR_HOOK is progress_spy.hook  # put back after every tiled VAE call
    finally:
        latent_preview.args.preview_method = old_method
    for calls in (progress_spy.reported, progress_spy.shown):  # previews are never throttled: the UI sees each step
        assert {t for _, t, _ in calls} == {expected}
        values = [v for v, _, _ in calls]
        assert values == sorted(values) and values[0] == 0 and values[-1] == expected
        assert set(range(1, expected + 1)) <= set(values)  # every step of every pass was reported
        assert any(p is not None and p[0] == "JPEG" for _, _, p in calls)  # latent previews


def test_cancel_before_and_during_sampling(sgim_node, inprocess_checkpoint, page, progress_spy):
    """Cancel stops the run between sampling steps, whatever the host shows of the progress (newer hosts
    throttle what reaches the UI; without previews only the first and last update may be shown)."""
    import comfy.model_management as mm

    model, clip, vae = inprocess_checkpoint
    inputs = _inputs(model, clip, vae, *page, steps=4, fri_steps=2)
    mm.interrupt_current_processing(True)
    with pytest.raises(mm.InterruptProcessingException):
        run(sgim_node, inputs)
    assert not mm.processing_interrupted()  # the flag was consumed
    assert progress_spy.reported == []  # nothing was sampled

    def cancel_at_step_two(value):
        if value == 2:  # the second sampling step of the first pass
            mm.interrupt_current_processing(True)

    progress_spy.on_report = cancel_at_step_two
    try:
        with pytest.raises(mm.InterruptProcessingException):
            run(sgim_node, inputs)
    finally:
        mm.interrupt_current_processing(False)
    values = [v for v, _, _ in progress_spy.reported]
    assert max(values) == 2 and values[-1] == 2  # stopped inside the first pass, before the next step was reported
    assert progress_spy.reported[-1][1] > 4  # the run had more steps to go


def test_bad_inputs_are_reported(sgim_node, inprocess_checkpoint, page):
    import torch

    model, clip, vae = inprocess_checkpoint
    image, mask = page
    with pytest.raises(ValueError, match="fri_strength"):
        run(sgim_node, _inputs(model, clip, vae, image, mask, fri_strength=0.0))
    with pytest.raises(ValueError, match="mask"):
        run(sgim_node, _inputs(model, clip, vae, image.repeat(2, 1, 1, 1), mask.repeat(3, 1, 1)))
    with pytest.raises(ValueError, match="symvae"):
        run(sgim_node, _inputs(model, clip, vae, image, mask, symvae="not a vae"))
    empty = torch.zeros_like(mask)
    out, preview = run(sgim_node, _inputs(model, clip, vae, image, empty))
    assert torch.equal(out, image) and torch.equal(preview, image)


def test_tiled_vae_gives_the_same_outside_and_a_close_inside(sgim_node, inprocess_checkpoint, page):
    import torch

    model, clip, vae = inprocess_checkpoint
    image, mask = page
    plain, _ = run(sgim_node, _inputs(model, clip, vae, image, mask, tiled_vae_megapixels=0.0))
    tiled, _ = run(sgim_node, _inputs(model, clip, vae, image, mask, tiled_vae_megapixels=0.001))
    outside = (mask == 0)[..., None].expand_as(image)
    assert torch.equal(tiled[outside], image[outside])
    assert not torch.equal(tiled, plain)  # the tiled path really ran


class _OOMVae:
    """Delegates to a real VAE, but its untiled encode/decode run out of memory."""

    def __init__(self, vae, error):
        self._vae, self._error = vae, error

    def __getattr__(self, name):
        return getattr(self._vae, name)

    def encode(self, image):
        raise self._error("simulated out of memory (encode)")

    def decode(self, latent):
        raise self._error("simulated out of memory (decode)")


def test_out_of_memory_and_memory_estimate_fall_back_to_tiles(inprocess_checkpoint, page, monkeypatch):
    import comfy.model_management as mm
    import torch

    sgim_nodes = __import__("mdim_pack_under_test.nodes.sgim_host", fromlist=["x"])
    model, clip, vae = inprocess_checkpoint
    cond = clip.encode_from_tokens_scheduled(clip.tokenize("manga"))
    image = page[0][:, :64, :64].contiguous()

    def host(v, **kw):
        return sgim_nodes.ComfyHost(model, v, cond, cond, cfg=7.0, sampler_name="euler", scheduler="simple", **kw)

    with torch.inference_mode():
        oom = host(_OOMVae(vae, mm.OOM_EXCEPTION), tiled_vae_megapixels=0.0)
        latent = oom.encode(image)
        decoded = oom.decode(latent)
        assert oom.tiled_calls == 2 and latent.shape == (1, 4, 8, 8) and decoded.shape == (1, 64, 64, 3)
        plain = host(vae, tiled_vae_megapixels=0.0)
        plain.encode(image)
        assert plain.tiled_calls == 0
        monkeypatch.setattr(mm, "get_free_memory", lambda *a, **k: 1)  # the VAE's estimate no longer fits
        plain.encode(image)
        assert plain.tiled_calls == 1


def test_symmetric_vae_input(sgim_node, inprocess_comfy, inprocess_checkpoint, page):
    import torch

    model, clip, vae = inprocess_checkpoint
    image, mask = page
    symvae_nodes = __import__("mdim_pack_under_test.nodes.symvae_nodes", fromlist=["x"])
    loader = inprocess_comfy.nodes["MDIM_SymVAELoader"]
    handle = loader.execute(vae=vae, adapter_name=symvae_nodes.NO_ADAPTERS, allow_other_vae_weights=False).args[0]
    plain, _ = run(sgim_node, _inputs(model, clip, vae, image, mask))
    sym, _ = run(sgim_node, _inputs(model, clip, vae, image, mask, symvae=handle))
    outside = (mask == 0)[..., None].expand_as(image)
    assert torch.equal(sym[outside], image[outside])
    # untrained (zero-initialised) adapters decode like the base VAE
    assert (sym - plain).abs().max() < 2e-2


# --------------------------------------------------------------------------- shipped workflows


def _sgim_overrides():
    return dict(SMALL)


def _saved(outputs, comfy_images):
    images = comfy_images(outputs)
    assert len(images) == 2  # SaveImage (result) and PreviewImage (SGI)
    return images


@pytest.mark.parametrize("checkpoint_role", ["standard", "inpainting"])
def test_text_removal_workflow_runs(checkpoint_role, comfy_server, workflow_prompt, comfy_run, comfy_images, test_images):
    ckpt = comfy_server.checkpoints[checkpoint_role]
    prompt = workflow_prompt("mdim_sgim_text_removal.json", ckpt_name=ckpt, **_sgim_overrides())
    result, preview = _saved(comfy_run(prompt, timeout=900), comfy_images)
    page = test_images["mdim_example_page.png"]
    hole = test_images["mdim_example_mask.png"][..., 0] > 127
    assert result.shape == page.shape
    assert np.array_equal(result[~hole], page[~hole])
    assert np.array_equal(preview[~hole], page[~hole])
    assert np.abs(result[hole].astype(int) - page[hole]).mean() > 2


def test_text_removal_workflow_fills_text_on_flat_paper_without_the_model(
    comfy_server, workflow_prompt, comfy_run, comfy_images, test_images
):
    """The shipped default flat_fill 'auto': the test page's text rows sit on flat white paper, so every region
    is filled with exactly paper white and no model pass runs (the log says so); outside the mask nothing moves."""
    overrides = {k: v for k, v in _sgim_overrides().items() if k != "flat_fill"}
    prompt = workflow_prompt("mdim_sgim_text_removal.json", seed=77, **overrides)
    assert prompt["10"]["inputs"]["flat_fill"] == "auto"
    before = comfy_server.log_text().count("filled with paper white, no model pass")
    result, preview = _saved(comfy_run(prompt, timeout=900), comfy_images)
    page = test_images["mdim_example_page.png"]
    hole = test_images["mdim_example_mask.png"][..., 0] > 127
    assert np.array_equal(result[~hole], page[~hole])
    assert (result[hole] == 255).all() and (page[hole] < 255).any()  # the text is gone, the paper exactly white
    assert preview.shape == page.shape
    assert comfy_server.log_text().count("filled with paper white, no model pass") > before


def test_zero_snr_and_controlnet_workflows(comfy_server, workflow_prompt, comfy_run, comfy_images, test_images):
    # the server links the workflow's ControlNet name to the tiny random-weight ControlNet
    page = test_images["mdim_example_page.png"]
    hole = test_images["mdim_example_mask.png"][..., 0] > 127
    zsnr, _ = _saved(comfy_run(workflow_prompt("mdim_sgim_zero_snr.json", **_sgim_overrides()), timeout=900), comfy_images)
    cn, _ = _saved(comfy_run(workflow_prompt("mdim_sgim_controlnet.json", **_sgim_overrides()), timeout=900), comfy_images)
    off = workflow_prompt("mdim_sgim_controlnet.json", strength=0.0, **_sgim_overrides())
    cn_off, _ = _saved(comfy_run(off, timeout=900), comfy_images)
    for image in (zsnr, cn, cn_off):
        assert np.array_equal(image[~hole], page[~hole])
    assert np.array_equal(cn_off, zsnr)  # strength 0: the ControlNet graph equals the plain zero-SNR one
    assert not np.array_equal(cn[hole], zsnr[hole])  # the ControlNet reached the sampler
