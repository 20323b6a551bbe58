"""MDIM RePaint Sampler inside a real ComfyUI: SamplerCustom / SamplerCustomAdvanced with a noise mask.

The tiny random-weight checkpoint makes noise, so these tests check what holds whatever the weights:
the known latent region is kept, a run without resampling is ComfyUI's own euler, the progress total
counts every model call of the resampling, cancel stops the run, and masks per step (Differential
Diffusion) and zero-SNR sigma lists reach the loop.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

CELL = 8


def run(node, **inputs):
    """Execute a V3 node as the host does (under inference mode); its outputs."""
    import torch

    with torch.inference_mode():
        return node.execute(**inputs).args


@pytest.fixture(scope="module")
def core(inprocess_comfy):
    import importlib

    return importlib.import_module("comfy_extras.nodes_custom_sampler")


@pytest.fixture(scope="module")
def repaint_node(inprocess_comfy):
    return inprocess_comfy.nodes["MDIM_RePaintSampler"]


@pytest.fixture(scope="module")
def scene(inprocess_checkpoint):
    """(model, positive, negative, LATENT dict with a cell-aligned noise mask, latent mask [1, 1, h, w])."""
    import torch

    model, clip, vae = inprocess_checkpoint
    positive = clip.encode_from_tokens_scheduled(clip.tokenize("manga, monochrome"))
    negative = clip.encode_from_tokens_scheduled(clip.tokenize("color"))
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 64, 80, 3, generator=g)
    with torch.inference_mode():
        samples = vae.encode(image).clone()
    mask = torch.zeros(1, 1, 64, 80)
    mask[..., 16:40, 24:64] = 1.0  # whole 8-px cells: the latent mask is exactly 0/1
    latent = {"samples": samples, "noise_mask": mask}
    cells = mask[..., ::CELL, ::CELL].expand_as(samples).bool()
    return model, positive, negative, latent, cells


def sampler_custom(core, model, positive, negative, sampler, sigmas, latent, seed=3, cfg=5.0):
    out, denoised = run(
        core.SamplerCustom, model=model, add_noise=True, noise_seed=seed, cfg=cfg, positive=positive,
        negative=negative, sampler=sampler, sigmas=sigmas, latent_image=latent,
    )  # fmt: skip
    return out["samples"], denoised["samples"]


def sigmas_for(core, model, steps, scheduler="simple", denoise=1.0):
    return run(core.BasicScheduler, model=model, scheduler=scheduler, steps=steps, denoise=denoise)[0]


def roundtrip(model, samples):
    """What survives the host's latent scaling in and out (the known region ends exactly here)."""
    return model.model.process_latent_out(model.model.process_latent_in(samples))


def test_node_gives_a_sampler_and_checks_its_inputs(repaint_node, inprocess_comfy):
    import comfy.samplers

    (sampler,) = run(repaint_node, jump_length=10, jump_n_sample=10, step="ddpm")
    assert isinstance(sampler, comfy.samplers.KSAMPLER)
    assert (
        sampler.model_calls(30) == 210 and sampler.model_calls(1) == 1 and sampler.mdim_callbacks(30) == 210
    )
    with pytest.raises(ValueError, match="jump_length"):
        run(repaint_node, jump_length=0, jump_n_sample=10, step="ddpm")
    with pytest.raises(ValueError, match="step"):
        run(repaint_node, jump_length=10, jump_n_sample=10, step="heun")


@pytest.mark.parametrize("scheduler,denoise", [("simple", 1.0), ("normal", 0.6)])
def test_without_resampling_it_is_comfyuis_euler(core, repaint_node, scene, scheduler, denoise):
    """jump_n_sample 1 + euler: bit for bit ComfyUI's euler wherever the mask is 1; in the known region
    ComfyUI's euler lands on the original only within float noise, RePaint exactly (through the latent scaling)."""
    import torch

    model, positive, negative, latent, cells = scene
    sigmas = sigmas_for(core, model, 6, scheduler, denoise)
    (ours_sampler,) = run(repaint_node, jump_length=10, jump_n_sample=1, step="euler")
    (euler,) = run(core.KSamplerSelect, sampler_name="euler")
    ours, _ = sampler_custom(core, model, positive, negative, ours_sampler, sigmas, latent)
    ref, _ = sampler_custom(core, model, positive, negative, euler, sigmas, latent)
    assert torch.equal(ours[cells], ref[cells])
    original = roundtrip(model, latent["samples"])
    assert torch.equal(ours[~cells], original[~cells])
    assert torch.allclose(ref[~cells], original[~cells], atol=1e-4)
    assert not torch.equal(ours[cells], latent["samples"][cells])  # the hole was drawn


def test_resampling_keeps_the_known_region_and_is_seeded(core, repaint_node, scene):
    import torch

    model, positive, negative, latent, cells = scene
    sigmas = sigmas_for(core, model, 8)
    (sampler,) = run(repaint_node, jump_length=3, jump_n_sample=3, step="ddpm")
    before = latent["samples"].clone()
    out, denoised = sampler_custom(core, model, positive, negative, sampler, sigmas, latent)
    again, _ = sampler_custom(core, model, positive, negative, sampler, sigmas, latent)
    other, _ = sampler_custom(core, model, positive, negative, sampler, sigmas, latent, seed=4)
    (plain,) = run(repaint_node, jump_length=3, jump_n_sample=1, step="ddpm")
    unresampled, _ = sampler_custom(core, model, positive, negative, plain, sigmas, latent)
    original = roundtrip(model, latent["samples"])
    assert torch.equal(out[~cells], original[~cells])
    assert torch.equal(denoised[~cells], original[~cells])  # previews/denoised_output show the original there
    assert torch.equal(out, again) and not torch.equal(out[cells], other[cells])
    assert not torch.equal(out[cells], unresampled[cells])  # the resampling really ran
    assert torch.isfinite(out).all()
    assert torch.equal(latent["samples"], before)


def test_sampler_custom_advanced_and_nine_channel_conditioning(
    core, repaint_node, inprocess_inpaint_checkpoint
):
    """RePaint with CFGGuider + SamplerCustomAdvanced on a 9-channel inpainting checkpoint
    (InpaintModelConditioning gives the masked-image conds and the noise mask)."""
    import importlib

    import torch

    comfy_nodes = importlib.import_module("nodes")
    model, clip, vae = inprocess_inpaint_checkpoint
    pos = clip.encode_from_tokens_scheduled(clip.tokenize("manga"))
    neg = clip.encode_from_tokens_scheduled(clip.tokenize("color"))
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(1, 64, 64)
    mask[:, 8:40, 16:48] = 1.0
    with torch.inference_mode():
        pos, neg, latent = comfy_nodes.InpaintModelConditioning().encode(pos, neg, image, vae, mask, True)
    (guider,) = run(core.CFGGuider, model=model, positive=pos, negative=neg, cfg=4.0)
    (noise,) = run(core.RandomNoise, noise_seed=9)
    (sampler,) = run(repaint_node, jump_length=2, jump_n_sample=2, step="euler")
    sigmas = sigmas_for(core, model, 5)
    out, _ = run(core.SamplerCustomAdvanced, noise=noise, guider=guider, sampler=sampler, sigmas=sigmas,
                 latent_image=latent)  # fmt: skip
    cells = mask[:, None, ::CELL, ::CELL].expand_as(out["samples"]).bool()
    original = roundtrip(model, latent["samples"])
    assert torch.equal(out["samples"][~cells], original[~cells])
    assert not torch.equal(out["samples"][cells], original[cells])


def test_progress_total_counts_every_model_call(core, repaint_node, scene, progress_spy):
    """The bar's total is the number of model calls including the resampling, and the bar moves at each.
    (Newer hosts throttle what reaches the UI; the updates are read where the sampler makes them.)"""
    model, positive, negative, latent, _ = scene
    steps, jump, n = 7, 2, 3
    (sampler,) = run(repaint_node, jump_length=jump, jump_n_sample=n, step="ddpm")
    expected = 7 + len(range(0, steps - jump, jump)) * (n - 1) * jump  # 7 + 3 * 2 * 2 = 19
    unet_calls = []
    counted = model.clone()

    def wrapper(apply_model, args):
        unet_calls.append(float(args["timestep"][0]))
        return apply_model(args["input"], args["timestep"], **args["c"])

    counted.set_model_unet_function_wrapper(wrapper)
    sampler_custom(core, counted, positive, negative, sampler, sigmas_for(core, model, steps), latent, cfg=1.0)
    assert expected == 19 and len(unet_calls) == expected  # cfg 1: one UNet call per model call
    assert {t for _, t, _ in progress_spy.reported} == {expected}
    assert [v for v, _, _ in progress_spy.reported] == list(range(1, expected + 1))  # one update per model call
    assert progress_spy.shown[-1][:2] == (expected, expected)  # the user sees the bar full


def test_cancel_before_and_during_sampling(core, repaint_node, scene, progress_spy):
    import comfy.model_management as mm

    model, positive, negative, latent, _ = scene
    (sampler,) = run(repaint_node, jump_length=2, jump_n_sample=4, step="ddpm")
    sigmas = sigmas_for(core, model, 8)
    mm.interrupt_current_processing(True)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            sampler_custom(core, model, positive, negative, sampler, sigmas, latent)
    finally:
        mm.interrupt_current_processing(False)

    assert progress_spy.reported == []

    def cancel_at(value):
        if value == 3:  # the user presses Cancel while the third model call is reported
            mm.interrupt_current_processing(True)

    progress_spy.on_report = cancel_at
    try:
        with pytest.raises(mm.InterruptProcessingException):
            sampler_custom(core, model, positive, negative, sampler, sigmas, latent)
    finally:
        mm.interrupt_current_processing(False)
    assert [v for v, _, _ in progress_spy.reported] == [1, 2, 3]  # stopped before the fourth model call finished


def test_zero_snr_model_with_trailing_sigmas(core, repaint_node, scene, inprocess_comfy):
    """A zero-SNR v-prediction patch and MDIM Trailing Sigmas (sigma_max ~ 4518.8): the jumps climb back
    to the terminal sigma and the run stays finite with the known region kept."""
    import torch

    model, positive, negative, latent, cells = scene
    (patched,) = inprocess_comfy.run("MDIM_ZeroSNRModel", model=model, prediction="v_prediction", cfg_rescale=0.7,
                                     allow_epsilon_zero_snr=False)  # fmt: skip
    (sigmas,) = inprocess_comfy.run("MDIM_TrailingSigmas", model=patched, steps=6, denoise=1.0)
    assert abs(float(sigmas[0]) - 4518.76) < 0.01
    (sampler,) = run(repaint_node, jump_length=2, jump_n_sample=3, step="ddim")
    out, _ = sampler_custom(core, patched, positive, negative, sampler, sigmas, latent)
    assert torch.isfinite(out).all()
    assert torch.equal(out[~cells], roundtrip(model, latent["samples"])[~cells])


def test_mask_per_step_from_the_model_options_is_used(core, repaint_node, scene):
    """A denoise_mask_function (as Differential Diffusion sets) is asked at every model call and at the end."""
    import torch

    model, positive, negative, latent, cells = scene
    asked = []
    patched = model.clone()

    def mask_function(sigma, denoise_mask, extra_options):
        asked.append(float(sigma[0]))
        assert extra_options["model"] is not None and len(extra_options["sigmas"]) == 6
        return denoise_mask

    patched.model_options["denoise_mask_function"] = mask_function
    (sampler,) = run(repaint_node, jump_length=2, jump_n_sample=2, step="euler")
    out, _ = sampler_custom(core, patched, positive, negative, sampler, sigmas_for(core, model, 5), latent)
    assert len(asked) == sampler.model_calls(5) + 1 and asked[-1] == 0.0
    assert torch.equal(out[~cells], roundtrip(model, latent["samples"])[~cells])


def test_without_a_noise_mask_it_samples_everything_and_says_so(core, repaint_node, scene, caplog):
    import torch

    model, positive, negative, latent, _ = scene
    (sampler,) = run(repaint_node, jump_length=2, jump_n_sample=2, step="ddpm")
    with caplog.at_level(logging.WARNING, logger="MDIM"):
        out, _ = sampler_custom(core, model, positive, negative, sampler, sigmas_for(core, model, 4),
                                {"samples": latent["samples"]})  # fmt: skip
    assert "no noise mask" in caplog.text
    assert torch.isfinite(out).all() and not torch.equal(out, roundtrip(model, latent["samples"]))


def test_flow_models_are_refused(core, repaint_node, scene):
    import importlib

    advanced = importlib.import_module("comfy_extras.nodes_model_advanced")
    model, positive, negative, latent, _ = scene
    node = advanced.ModelSamplingSD3
    flow = node.execute(model, 3.0).args[0] if hasattr(node, "execute") else node().patch(model, 3.0)[0]
    (sampler,) = run(repaint_node, jump_length=2, jump_n_sample=2, step="euler")
    with pytest.raises(ValueError, match="x0 \\+ sigma \\* noise"):
        sampler_custom(core, flow, positive, negative, sampler, sigmas_for(core, flow, 4), latent)


def test_shipped_repaint_workflow_keeps_pixels_outside_the_mask(
    workflow_prompt, comfy_run, comfy_images, test_images
):
    """The shipped SamplerCustom graph through /prompt: outside the mask the saved page is the input, bit for bit."""
    prompt = workflow_prompt("mdim_repaint_samplercustom.json", steps=3, jump_length=1, jump_n_sample=2)
    images = comfy_images(comfy_run(prompt, timeout=600))
    page = test_images["mdim_example_page.png"]
    hole = test_images["mdim_example_mask.png"][..., 0] > 127
    assert len(images) == 1 and images[0].shape == page.shape
    assert np.array_equal(images[0][~hole], page[~hole])
    assert not np.array_equal(images[0][hole], page[hole])


# --------------------------------------------------------------------------- inside MDIM SGIM Inpaint


def test_sgim_samples_both_passes_with_repaint(
    repaint_node, inprocess_comfy, inprocess_checkpoint, test_images, progress_spy
):
    """MDIM SGIM Inpaint with the RePaint SAMPLER connected: the structure pass (full denoise) and the
    refinement pass (strength 0.5, a tail of the schedule) both run RePaint with its resampling (every
    model call counted), the bar ends at its total, pixels outside the mask are the page's."""
    import comfy.sample
    import torch

    from mdim_core.sampling import repaint

    model, clip, vae = inprocess_checkpoint
    image = torch.from_numpy(test_images["mdim_example_page.png"].astype(np.float32) / 255.0)[None]
    mask = torch.from_numpy((test_images["mdim_example_mask.png"][..., 0] > 127).astype(np.float32))[None]
    (sampler,) = run(repaint_node, jump_length=2, jump_n_sample=3, step="ddpm")
    counted = model.clone()
    unet_calls = []
    counted.set_model_unet_function_wrapper(
        lambda apply_model, args: (
            unet_calls.append(1) or apply_model(args["input"], args["timestep"], **args["c"])
        )
    )
    passes = []
    real = comfy.sample.sample_custom

    def spy(model_, noise, cfg, sampler_, sigmas, *args, **kwargs):
        before = len(unet_calls)
        out = real(model_, noise, cfg, sampler_, sigmas, *args, **kwargs)
        passes.append(
            (sampler_, sigmas.clone(), len(unet_calls) - before, kwargs.get("noise_mask") is not None)
        )
        return out

    inputs = {
        "model": counted, "positive": clip.encode_from_tokens_scheduled(clip.tokenize("manga")),
        "negative": clip.encode_from_tokens_scheduled(clip.tokenize("color")), "vae": vae, "image": image,
        "mask": mask, "seed": 5, "steps": 6, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple",
        "sgi_max_side": 64, "fri_strength": 0.5, "fri_steps": 4, "context_margin": 16, "min_crop_side": 0,
        "sampler": sampler, "flat_fill": "off",  # the test page's text sits in flat paper: 'auto' skips the model
    }  # fmt: skip
    seen = progress_spy.reported
    comfy.sample.sample_custom = spy
    try:
        out, preview = inprocess_comfy.run("MDIM_SGIMInpaint", **inputs)
        again, _ = inprocess_comfy.run("MDIM_SGIMInpaint", **inputs)
        plain, _ = inprocess_comfy.run(
            "MDIM_SGIMInpaint", **{k: v for k, v in inputs.items() if k != "sampler"}
        )
    finally:
        comfy.sample.sample_custom = real
    ours = passes[
        : len(passes) // 2
    ]  # the first run's passes (the plain run goes through comfy.sample.sample)
    assert len(passes) == 2 * len(ours) and len(ours) >= 2
    sigma_max = float(model.get_model_object("model_sampling").sigma_max)
    structure = [p for p in ours if abs(float(p[1][0]) - sigma_max) < 1e-3 * sigma_max]
    refine = [p for p in ours if float(p[1][0]) < 0.5 * sigma_max]
    assert structure and refine and len(structure) + len(refine) == len(ours)
    for used, sigmas, calls, masked in ours:
        steps = len(sigmas) - 1
        assert used is sampler and masked
        assert calls == repaint.model_calls(steps, 2, 3) > steps  # every pass resampled, every call made
    assert {len(p[1]) - 1 for p in structure} == {6} and {len(p[1]) - 1 for p in refine} == {4}
    outside = (mask == 0)[..., None].expand_as(image)
    assert torch.equal(out[outside], image[outside]) and torch.equal(preview[outside], image[outside])
    assert torch.equal(out, again) and not torch.equal(out[~outside], plain[~outside])
    first_run = seen[: next(i for i, (v, t, _) in enumerate(seen) if v == t) + 1]
    totals = {t for _, t, _ in first_run}
    values = [v for v, _, _ in first_run]
    assert len(totals) == 1 and values == sorted(values) and values[-1] == totals.pop()
    assert len(first_run) >= sum(calls for _, _, calls, _ in ours)  # the bar moves at every model call
