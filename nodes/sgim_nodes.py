"""MDIM SGIM Inpaint: two-pass manga inpainting (structure pass on the shrunk page, refinement at full resolution).

The node declares its inputs and hands them to the engine (``mdim_core.inpaint.sgim``) with the ComfyUI
host (``sgim_host.ComfyHost``); everything else lives there.
"""

from __future__ import annotations

import dataclasses
import logging

import comfy.samplers
from comfy_api.latest import io

from ..mdim_core.inpaint import sgim
from ..mdim_core.inpaint.config import FLAT_FILL_OPTIONS, PLAN_OPTIONS, RUN_FRI_OPTIONS
from .host_compat import ADVANCED
from .sgim_host import ComfyHost, check_sampling_inputs

log = logging.getLogger("MDIM")

SymVAE = io.Custom("MDIM_SYMVAE")
CONFIG_FIELDS = {f.name for f in dataclasses.fields(sgim.SGIMConfig)}


class MDIMSGIMInpaint(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        d = sgim.SGIMConfig()  # one set of defaults for the node, the command line and the engine
        return io.Schema(
            node_id="MDIM_SGIMInpaint",
            display_name="MDIM SGIM Inpaint",
            category="MDIM/inpaint",
            description=(
                "Removes what the mask covers (text, SFX) from a manga page and redraws what was under it, at "
                "scan resolution. Regions inside flat white paper or solid black are filled with it directly; for "
                "the rest, a first pass inpaints the page shrunk to at most 'sgi_max_side' (structure), a "
                "second pass refines crops around the mask at full resolution. Pixels outside the mask are "
                "returned unchanged, bit for bit. Works with standard and 9-channel inpainting checkpoints; "
                "LoRAs, ControlNets and other conditioning pass through."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The diffusion model (Load Checkpoint, optionally through MDIM Zero-SNR Model or LoRA loaders)."),
                io.Conditioning.Input("positive", tooltip="Positive prompt (CLIP Text Encode), e.g. 'manga, manga style, comic, monochrome'. Apply ControlNet, Conditioning (Set Area) and (Set Mask) outputs work too: give hints, areas and masks for the whole page; each pass gets the part under its crop."),
                io.Conditioning.Input("negative", tooltip="Negative prompt (CLIP Text Encode). ControlNet hints, areas and masks on it follow each crop as on positive."),
                io.Vae.Input("vae", tooltip="The VAE of the checkpoint (Load Checkpoint's VAE output)."),
                io.Image.Input("image", tooltip="The page(s) to inpaint, any size; grayscale, RGB or RGBA (alpha is dropped)."),
                io.Mask.Input("mask", tooltip="What to remove and redraw (white/1 = repaint): MDIM Text Mask, a Load Image MASK output or Image To Mask. A different size is resized; one mask serves a whole batch."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True, tooltip="Random seed; the same seed gives the same result. The k-th crop that runs uses seed + k."),
                io.Int.Input("steps", default=d.steps, min=1, max=1000, tooltip="Sampling steps of the structure pass (full denoise)."),
                io.Float.Input("cfg", default=7.0, min=0.0, max=100.0, step=0.1, round=0.01, tooltip="Classifier-free guidance scale, as in KSampler."),
                io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS, default="euler", tooltip="Sampler, as in KSampler (euler, dpmpp_2m or ddim suit zero-SNR models; heun does not). Not used when a 'sampler' is connected."),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, default="simple", tooltip="Scheduler, as in KSampler. 'simple' starts at the terminal timestep like trailing spacing, which zero-SNR models need. Not used when 'sigmas' is connected."),
                io.Int.Input("sgi_max_side", default=d.sgi_max_side, min=64, max=8192, step=8, tooltip="Longest side of the page (or panel) in the structure pass: a larger page is shrunk (by halving, or by 'plan') to at most this, so the model sees it at the scale it knows; 1024 for SD1.5-sized models."),
                io.Combo.Input("plan", options=list(PLAN_OPTIONS), default=d.plan, tooltip="How the page is shrunk for the structure pass: 'halve' (halve until within sgi_max_side, as in MDIM) or 'fit' (scale once to exactly sgi_max_side).", **ADVANCED),
                io.Float.Input("fri_strength", default=d.fri_strength, min=0.01, max=1.0, step=0.01, tooltip="Denoise of the full-resolution refinement pass, as KSampler's denoise: it runs the last fri_steps steps of a schedule of int(fri_steps / fri_strength) steps. 0.5 keeps the structure of the first pass and redraws detail such as screentone. (diffusers' 'strength' counts the other way: 50 steps at strength 0.5 run 25.)"),
                io.Int.Input("fri_steps", default=d.fri_steps, min=1, max=1000, tooltip="Steps the refinement pass actually runs, as KSampler's steps with fri_strength as denoise."),
                io.Combo.Input("run_fri", options=list(RUN_FRI_OPTIONS), default=d.run_fri, tooltip="'auto': refine at full resolution only when the structure pass had to shrink the page; 'always'; 'never' (structure pass only, upscaled).", **ADVANCED),
                io.Int.Input("grow_mask", default=d.grow_mask, min=0, max=256, tooltip="Grow the mask by this many pixels (opt-in: pixels that close to the mask may change too). 0 keeps your mask exactly."),
                io.Int.Input("feather", default=d.feather, min=0, max=256, tooltip="Blend the result into the page over this many pixels, inside the mask only (0 = hard edge)."),
                io.Int.Input("context_margin", default=d.context_margin, min=0, max=4096, tooltip="Pixels around each mask region that the model sees as context, in the pixels of each pass: the shrunk page in the structure pass, the page in the refinement pass.", **ADVANCED),
                io.Int.Input("min_crop_side", default=d.min_crop_side, min=0, max=8192, step=8, tooltip="Crops are widened to at least this side (within the page or panel, in the pixels of each pass) so small regions still get enough context; 512 suits SD1.5.", **ADVANCED),
                io.Boolean.Input("limit_to_panel", default=d.limit_to_panel, tooltip="Work panel by panel (panels are found from the white gutters): each panel holding mask is shrunk on its own for the structure pass and crops stay inside it, so context never comes from the neighbouring panel."),
                io.Float.Input("tiled_vae_megapixels", default=4.0, min=0.0, max=1000.0, step=0.5, tooltip="Encode/decode crops larger than this many megapixels in tiles to save memory (0: only when the VAE's memory estimate exceeds free memory). Out-of-memory errors always retry tiled.", **ADVANCED),
                SymVAE.Input("symvae", optional=True, tooltip="Optional MDIM Symmetric VAE (from MDIM Symmetric VAE Loader): decodes with the page's own encoder features, keeping screentone crisp."),
                io.Sampler.Input("sampler", optional=True, tooltip="Optional SAMPLER used in both passes instead of sampler_name: MDIM RePaint Sampler, KSamplerSelect, or another pack's sampler."),
                io.Sigmas.Input("sigmas", optional=True, tooltip="Optional SIGMAS for the structure pass instead of steps and scheduler (e.g. MDIM Trailing Sigmas); the refinement pass samples their last fri_steps steps (fri_strength is then not used)."),
                io.Image.Input("prefill", optional=True, tooltip="Optional pre-filled page (e.g. MDIM LaMa Fill): the structure pass starts from its content inside the mask at prefill_strength instead of pure noise."),
                io.Float.Input("prefill_strength", default=d.prefill_strength, min=0.01, max=1.0, step=0.01, optional=True, tooltip="Denoise of the structure pass when 'prefill' is connected (as KSampler's denoise); not used without it.", **ADVANCED),
                io.Combo.Input("flat_fill", options=list(FLAT_FILL_OPTIONS), default=d.flat_fill, optional=True, tooltip="'auto': a mask region surrounded by flat paper white or solid black (text in a speech bubble) is filled with exactly that value and never sent to the model: no grey tint in white bubbles, fewer passes. The log lists these regions and sgi_preview outlines them. 'off': every region goes to the model."),
            ],
            outputs=[
                io.Image.Output("image", tooltip="The page with the masked area redrawn; every pixel outside the mask equals the input."),
                io.Image.Output("sgi_preview", tooltip="The page with the (upscaled) structure pass pasted into the mask, before refinement: for checking what the first pass drew. Regions filled flat are outlined (green on RGB pages, dashed grey on grayscale ones)."),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(
        cls, model, positive, negative, vae, image, mask, seed, steps, cfg, sampler_name, scheduler,
        tiled_vae_megapixels=4.0, symvae=None, sampler=None, sigmas=None, prefill=None, **settings,
    ) -> io.NodeOutput:  # fmt: skip
        check_sampling_inputs("SGIM", model=model, vae=vae, cfg=cfg, sampler_name=sampler_name, scheduler=scheduler,
                              sampler=sampler, sigmas=sigmas, symvae=symvae)
        if not isinstance(tiled_vae_megapixels, (int, float)) or tiled_vae_megapixels < 0:
            raise ValueError(f"tiled_vae_megapixels: expected a number >= 0, got {tiled_vae_megapixels!r}")
        unknown = set(settings) - CONFIG_FIELDS
        if unknown:
            raise ValueError(f"unknown input(s) {', '.join(sorted(unknown))}: this MDIM SGIM Inpaint does not know them")
        if "limit_to_panel" in settings:
            settings["limit_to_panel"] = bool(settings["limit_to_panel"])
        config = sgim.SGIMConfig(steps=steps, **settings)
        hidden = getattr(cls, "hidden", None)
        host = ComfyHost(
            model, vae, positive, negative, cfg=cfg, sampler_name=sampler_name, scheduler=scheduler,
            tiled_vae_megapixels=tiled_vae_megapixels, symvae=symvae, sampler=sampler, sigmas=sigmas,
            node_id=getattr(hidden, "unique_id", None) if hidden is not None else None,
        )  # fmt: skip
        result = sgim.inpaint(host, image, mask, seed=seed, config=config, prefill=prefill)
        if host.tiled_calls:
            log.info("[MDIM] SGIM: %d VAE call(s) ran tiled", host.tiled_calls)
        return io.NodeOutput(result.image, result.sgi_preview)


NODES = [MDIMSGIMInpaint]
