"""MDIM Paste & Harmonize: paste a foreground (typeset translated SFX) on a page and redraw it in the page's style.

The paste and the pass mask live in ``mdim_core.inpaint.harmonize``; the pass is the SGIM engine's
refine-only pass driven through the same ComfyUI host as MDIM SGIM Inpaint (``sgim_host.ComfyHost``:
noise mask, crops, tiled VAE, Symmetric VAE decode, progress with previews, Cancel).
"""

from __future__ import annotations

import logging

import comfy.samplers
import torch
from comfy_api.latest import io

from ..mdim_core.inpaint import harmonize as hz
from ..mdim_core.inpaint.config import SGIMConfig
from .host_compat import ADVANCED
from .sgim_host import ComfyHost, check_sampling_inputs

log = logging.getLogger("MDIM")

SymVAE = io.Custom("MDIM_SYMVAE")
MASK_MEANINGS = ["transparency", "coverage"]


def _coverage(mask, meaning: str):
    """The foreground's coverage (1 = foreground) from a MASK input."""
    if meaning not in MASK_MEANINGS:
        raise ValueError(f"mask_is: expected one of {', '.join(MASK_MEANINGS)}, got {meaning!r}")
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"foreground_mask: expected a MASK, got {type(mask).__name__}")
    return 1.0 - mask.float() if meaning == "transparency" else mask


class MDIMPasteHarmonize(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        d = SGIMConfig()
        return io.Schema(
            node_id="MDIM_PasteHarmonize",
            display_name="MDIM Paste & Harmonize",
            category="MDIM/inpaint",
            description=(
                "Pastes a foreground (e.g. typeset translated SFX with transparency) on the page at a position and "
                "scale, then redraws the pasted area and a thin ring around it with a low-strength diffusion pass, "
                "so its strokes pick up the page's ink, line weight and screentone while the lettering stays where "
                "you put it. Every pixel outside the ring is returned unchanged."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The diffusion model (Load Checkpoint, optionally through MDIM Zero-SNR Model or LoRA loaders)."),
                io.Conditioning.Input("positive", tooltip="Positive prompt (CLIP Text Encode), e.g. 'manga, manga style, comic, monochrome, sound effect'."),
                io.Conditioning.Input("negative", tooltip="Negative prompt (CLIP Text Encode)."),
                io.Vae.Input("vae", tooltip="The VAE of the checkpoint (Load Checkpoint's VAE output)."),
                io.Image.Input("page", tooltip="The page to paste on (e.g. the SFX-free page from MDIM SGIM Inpaint); grayscale, RGB or RGBA (alpha is dropped)."),
                io.Image.Input("foreground", tooltip="What to paste: the typeset SFX, e.g. from Load Image. RGBA images use their alpha; with Load Image, connect its MASK to foreground_mask."),
                io.Mask.Input("foreground_mask", optional=True, tooltip="Optional shape of the foreground: Load Image's MASK output of the same file (see mask_is). Without it an RGBA foreground uses its alpha, an RGB one is pasted as an opaque rectangle."),
                io.Combo.Input("mask_is", options=MASK_MEANINGS, default="transparency", tooltip="'transparency': foreground_mask is 1 where the foreground is transparent, as Load Image gives it; 'coverage': 1 where the foreground is (e.g. from a mask editor)."),
                io.Int.Input("x", default=0, min=-16384, max=16384, tooltip="Page column of the scaled foreground's left edge (px); may be negative or reach beyond the page."),
                io.Int.Input("y", default=0, min=-16384, max=16384, tooltip="Page row of the scaled foreground's top edge (px); may be negative or reach beyond the page."),
                io.Float.Input("scale", default=1.0, min=0.01, max=16.0, step=0.01, tooltip="Size factor of the foreground (antialiased resampling)."),
                io.Float.Input("strength", default=0.3, min=0.01, max=1.0, step=0.01, tooltip="Denoise of the harmonising pass (as KSampler's denoise). ~0.3 keeps the lettering and redraws its texture in the page's style; higher redraws more (the shapes start to change), lower changes less."),
                io.Int.Input("steps", default=10, min=1, max=1000, tooltip="Steps the pass actually runs (the last 'steps' of a schedule of int(steps / strength))."),
                io.Int.Input("ring", default=8, min=0, max=256, tooltip="Pixels around the pasted area that the pass may repaint too, so the edge blends into the page; the result fades in over the outer half of the ring."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True, tooltip="Random seed; the same seed gives the same result."),
                io.Float.Input("cfg", default=7.0, min=0.0, max=100.0, step=0.1, round=0.01, tooltip="Classifier-free guidance scale, as in KSampler."),
                io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS, default="euler", tooltip="Sampler, as in KSampler. Not used when a 'sampler' is connected."),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, default="simple", tooltip="Scheduler, as in KSampler."),
                io.Int.Input("context_margin", default=d.context_margin, min=0, max=4096, tooltip="Pixels of the page around the ring that the model sees as context.", **ADVANCED),
                io.Int.Input("min_crop_side", default=d.min_crop_side, min=0, max=8192, step=8, tooltip="The pass's crop is widened to at least this side (within the page) so the model sees enough of the page's style; 512 suits SD1.5.", **ADVANCED),
                io.Float.Input("tiled_vae_megapixels", default=4.0, min=0.0, max=1000.0, step=0.5, tooltip="Encode/decode crops larger than this many megapixels in tiles (0: only when memory is short).", **ADVANCED),
                SymVAE.Input("symvae", optional=True, tooltip="Optional MDIM Symmetric VAE (from MDIM Symmetric VAE Loader): decodes with the page's own encoder features, keeping screentone crisp."),
                io.Sampler.Input("sampler", optional=True, tooltip="Optional SAMPLER used instead of sampler_name (KSamplerSelect, MDIM RePaint Sampler, another pack's)."),
            ],
            outputs=[
                io.Image.Output("image", tooltip="The page with the foreground pasted and harmonised; every pixel outside the ring equals the page."),
                io.Mask.Output("mask", tooltip="The area the pass repainted: the pasted foreground plus the ring (1 = repainted)."),
                io.Image.Output("pasted", tooltip="The page with the foreground pasted, before the harmonising pass (to compare)."),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(
        cls, model, positive, negative, vae, page, foreground, mask_is, x, y, scale, strength, steps, ring, seed,
        cfg, sampler_name, scheduler, context_margin=64, min_crop_side=512, tiled_vae_megapixels=4.0,
        foreground_mask=None, symvae=None, sampler=None,
    ) -> io.NodeOutput:  # fmt: skip
        check_sampling_inputs("Paste & Harmonize", model=model, vae=vae, cfg=cfg, sampler_name=sampler_name, scheduler=scheduler,
                              sampler=sampler, symvae=symvae)
        if not isinstance(tiled_vae_megapixels, (int, float)) or tiled_vae_megapixels < 0:
            raise ValueError(f"tiled_vae_megapixels: expected a number >= 0, got {tiled_vae_megapixels!r}")
        alpha = _coverage(foreground_mask, mask_is)
        config = SGIMConfig(context_margin=context_margin, min_crop_side=min_crop_side)
        hidden = getattr(cls, "hidden", None)
        host = ComfyHost(
            model, vae, positive, negative, cfg=cfg, sampler_name=sampler_name, scheduler=scheduler,
            tiled_vae_megapixels=tiled_vae_megapixels, symvae=symvae, sampler=sampler,
            node_id=getattr(hidden, "unique_id", None) if hidden is not None else None,
        )  # fmt: skip
        result = hz.harmonize(
            host, page, foreground, x=x, y=y, scale=scale, alpha=alpha, strength=strength, steps=steps,
            ring=ring, seed=seed, config=config,
        )  # fmt: skip
        return io.NodeOutput(result.image, result.mask, result.pasted.image)


NODES = [MDIMPasteHarmonize]
