"""MDIM SGIM Inpaint: two-pass manga inpainting (SGI at a shrunk size, FRI at full resolution).

The engine (``mdim_core.sgim``) plans the regions, shrinks, pads, pastes and composites; this
module is the ComfyUI host of ``mdim_core.host.SGIMHost``: it encodes/decodes with the graph's
VAE (tiled when a crop is large), samples with ``comfy.sample`` on the graph's MODEL with a
noise mask, builds the masked-image conditioning of 9-channel inpainting checkpoints at each
pass's resolution, shows one progress bar (with previews) over every pass, and stops when the
user cancels. Inputs are never modified: the MODEL is not cloned or patched (it is only
sampled), conditionings are copied before a key is added, tensors are never edited in place.
"""

from __future__ import annotations

import logging
import math

import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
import node_helpers
import torch
import torch.nn.functional as F
from comfy_api.latest import io

from ..mdim_core import sgim

log = logging.getLogger("MDIM")

PLAN_OPTIONS = ["halve", "fit"]
RUN_FRI_OPTIONS = ["auto", "always", "never"]
SymVAE = io.Custom("MDIM_SYMVAE")

# Tile sizes of ComfyUI's own tiled VAE nodes (pixels for encode, latent cells for decode).
ENCODE_TILE, ENCODE_OVERLAP = 512, 64
DECODE_TILE, DECODE_OVERLAP = 64, 16


def is_inpaint_model(model) -> bool:
    """True for 9-channel inpainting checkpoints (they read ``concat_latent_image``/``concat_mask``).

    ComfyUI marks them with the concat keys ``("mask", "masked_image")`` (``BaseModel.set_inpaint``).
    """
    return "masked_image" in tuple(getattr(model.model, "concat_keys", ()))


def latent_cell_mask(mask: torch.Tensor, scale: int) -> torch.Tensor:
    """``[B, H, W]`` 0/1 pixel mask -> ``[B, 1, H/scale, W/scale]``: 1 on every latent cell the mask touches.

    The sampler's noise mask then frees whole cells, so every masked pixel is repainted; the engine's
    pixel-space composite keeps the pixels outside the mask exact.
    """
    return F.max_pool2d(mask[:, None].float(), scale)


def grey_fill(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The masked-image input of 9-channel inpainting models: 0.5 inside the mask (as core InpaintModelConditioning)."""
    keep = (1.0 - mask.round())[..., None]
    return (image - 0.5) * keep + 0.5


class ComfyHost:
    """``mdim_core.host.SGIMHost`` backed by the graph's MODEL, VAE and conditionings.

    Args:
        model: a ComfyUI ``ModelPatcher`` (sampled as is; LoRAs, zero-SNR and other patches apply).
        vae: a ComfyUI ``VAE``.
        positive, negative: CONDITIONING lists, passed through (ControlNet hints, area and other
            keys keep working; ComfyUI resizes ControlNet hints to each pass's latent size).
        cfg, sampler_name, scheduler: as in KSampler.
        tiled_vae_megapixels: crops with more megapixels than this are encoded/decoded in tiles
            (0: only when the VAE's own memory estimate exceeds the free memory). Untiled calls that
            run out of memory are retried tiled.
        symvae: optional Symmetric VAE (``decode(latent, source=, mask=)``) used to decode.
        node_id: the node whose progress bar is shown.
    """

    def __init__(
        self,
        model,
        vae,
        positive,
        negative,
        *,
        cfg: float,
        sampler_name: str,
        scheduler: str,
        tiled_vae_megapixels: float = 4.0,
        symvae=None,
        node_id: str | None = None,
    ):
        self.model = model
        self.vae = vae
        self.positive = positive
        self.negative = negative
        self.cfg = float(cfg)
        self.sampler_name = sampler_name
        self.scheduler = scheduler
        self.tiled_vae_megapixels = float(tiled_vae_megapixels)
        self.symvae = symvae
        self.node_id = node_id
        scale = vae.spacial_compression_encode()
        if not isinstance(scale, int) or scale < 1:
            raise ValueError(f"vae: expected an image VAE with a fixed downscale factor (8 for SD), got {scale!r}")
        self.latent_scale = scale
        self.inpaint_model = is_inpaint_model(model)
        self._pbar = None
        self._previewer = None
        self._previewer_ready = False
        self.tiled_calls = 0  # how many VAE calls ran tiled (reported in the log)

    # --- VAE -------------------------------------------------------------------------------
    def _needs_tiles(self, pixels: int, estimate: float) -> bool:
        if self.tiled_vae_megapixels > 0 and pixels > self.tiled_vae_megapixels * 1e6:
            return True
        try:
            free = comfy.model_management.get_free_memory(self.vae.device)
        except Exception:  # pragma: no cover - exotic devices
            return False
        return estimate > free

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = image.shape
        estimate = self.vae.memory_used_encode((b, 3, h, w), self.vae.vae_dtype)
        if not self._needs_tiles(h * w, estimate):
            try:
                return self.vae.encode(image)
            except comfy.model_management.OOM_EXCEPTION:
                log.warning("[MDIM] SGIM: VAE encode of %dx%d ran out of memory, retrying tiled", w, h)
                comfy.model_management.soft_empty_cache()
        self.tiled_calls += 1
        return self.vae.encode_tiled(image, tile_x=ENCODE_TILE, tile_y=ENCODE_TILE, overlap=ENCODE_OVERLAP)

    def decode(self, latent: torch.Tensor, *, source=None, mask=None) -> torch.Tensor:
        if self.symvae is not None:  # MDIM_SYMVAE handle: loads its VAE itself, tiles large images itself
            return self.symvae.decode(latent, source=source, mask=mask)
        b, _, h, w = latent.shape
        s = self.latent_scale
        estimate = self.vae.memory_used_decode(tuple(latent.shape), self.vae.vae_dtype)
        if not self._needs_tiles(h * w * s * s, estimate):
            try:
                return self.vae.decode(latent)
            except comfy.model_management.OOM_EXCEPTION:
                log.warning("[MDIM] SGIM: VAE decode of %dx%d ran out of memory, retrying tiled", w * s, h * s)
                comfy.model_management.soft_empty_cache()
        self.tiled_calls += 1
        return self.vae.decode_tiled(latent, tile_x=DECODE_TILE, tile_y=DECODE_TILE, overlap=DECODE_OVERLAP)

    # --- sampling --------------------------------------------------------------------------
    def pass_conds(self, image: torch.Tensor, mask: torch.Tensor, cells: torch.Tensor):
        """Positive/negative for one pass: copies with the masked-image conditioning for 9-channel models."""
        if not self.inpaint_model:
            return self.positive, self.negative
        values = {"concat_latent_image": self.encode(grey_fill(image, mask)), "concat_mask": cells}
        return (
            node_helpers.conditioning_set_values(self.positive, values),
            node_helpers.conditioning_set_values(self.negative, values),
        )

    def denoise(self, latent, *, image, mask, strength, steps, seed, info):
        comfy.model_management.throw_exception_if_processing_interrupted()
        cells = latent_cell_mask(mask, self.latent_scale)
        positive, negative = self.pass_conds(image, mask, cells)
        latent = comfy.sample.fix_empty_latent_channels(self.model, latent)
        # The schedule of round(steps / strength) steps, of which the last `steps` run.
        full = max(steps, round(steps / strength)) if strength < 1.0 else steps
        start = full - steps if full > steps else None
        # latent_preview.prepare_callback would open a progress bar per pass; this uses its previewer
        # with the run's single bar, whose position counts the steps of every pass before this one.
        previewer = self._get_previewer()

        def callback(step, x0, x, total_steps):
            preview = previewer.decode_latent_to_preview_image("JPEG", x0) if previewer is not None else None
            self._report(info.steps_before + step + 1, info.total_steps, preview)

        with torch.random.fork_rng(devices=[]):  # prepare_noise reseeds torch's global generator
            noise = comfy.sample.prepare_noise(latent, seed)
            return comfy.sample.sample(
                self.model,
                noise,
                full,
                self.cfg,
                self.sampler_name,
                self.scheduler,
                positive,
                negative,
                latent,
                denoise=1.0,
                start_step=start,
                noise_mask=cells,
                callback=callback,
                disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED,
                seed=seed,
            )

    # --- progress and cancel ---------------------------------------------------------------
    def _get_previewer(self):
        if not self._previewer_ready:
            self._previewer_ready = True
            try:
                self._previewer = latent_preview.get_previewer(
                    self.model.load_device, self.model.model.latent_format
                )
            except Exception as exc:  # previews are a nicety; never fail a run for them
                log.info("[MDIM] SGIM: no latent previews (%s)", exc)
        return self._previewer

    def _report(self, done: int, total: int, preview=None) -> None:
        comfy.model_management.throw_exception_if_processing_interrupted()
        if self._pbar is None:
            self._pbar = comfy.utils.ProgressBar(total, node_id=self.node_id)
        self._pbar.update_absolute(done, total, preview)

    def progress(self, done: int, total: int, preview: torch.Tensor | None = None) -> None:
        image = None
        if preview is not None:
            from PIL import Image

            arr = (preview.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
            image = ("JPEG", Image.fromarray(arr), latent_preview.MAX_PREVIEW_RESOLUTION)
        self._report(done, total, image)


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
                "scan resolution. Each mask region is cropped with context; a first pass inpaints the crop "
                "shrunk to at most 'sgi_max_side' (structure), a second pass refines it at full resolution "
                "(FRI). Pixels outside the mask are returned unchanged, bit for bit. Works with standard and "
                "9-channel inpainting checkpoints; LoRAs, ControlNets and other conditioning pass through."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The diffusion model (Load Checkpoint, optionally through MDIM Zero-SNR Model or LoRA loaders)."),
                io.Conditioning.Input("positive", tooltip="Positive prompt (CLIP Text Encode), e.g. 'manga, manga style, comic, monochrome'. ControlNet Apply outputs work too."),
                io.Conditioning.Input("negative", tooltip="Negative prompt (CLIP Text Encode)."),
                io.Vae.Input("vae", tooltip="The VAE of the checkpoint (Load Checkpoint's VAE output)."),
                io.Image.Input("image", tooltip="The page(s) to inpaint, any size; grayscale, RGB or RGBA (alpha is dropped)."),
                io.Mask.Input("mask", tooltip="What to remove and redraw (white/1 = repaint). A Load Image MASK output or Image To Mask; a different size is resized, one mask serves a whole batch."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True, tooltip="Random seed; the same seed gives the same result. Region k uses seed + k."),
                io.Int.Input("steps", default=d.steps, min=1, max=1000, tooltip="Sampling steps of the structure pass (SGI, full denoise)."),
                io.Float.Input("cfg", default=7.0, min=0.0, max=100.0, step=0.1, round=0.01, tooltip="Classifier-free guidance scale, as in KSampler."),
                io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS, default="euler", tooltip="Sampler, as in KSampler (euler, dpmpp_2m or ddim suit zero-SNR models; heun does not)."),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, default="simple", tooltip="Scheduler, as in KSampler. 'simple' starts at the terminal timestep like trailing spacing, which zero-SNR models need."),
                io.Int.Input("sgi_max_side", default=d.sgi_max_side, min=64, max=8192, step=8, tooltip="Longest side of the structure pass. Larger crops are shrunk (by halving, or by 'plan') to at most this; 1024 for SD1.5-sized models."),
                io.Combo.Input("plan", options=PLAN_OPTIONS, default=d.plan, tooltip="How crops are shrunk for the structure pass: 'halve' (halve until within sgi_max_side, as in MDIM) or 'fit' (scale once to exactly sgi_max_side)."),
                io.Float.Input("fri_strength", default=d.fri_strength, min=0.01, max=1.0, step=0.01, tooltip="Denoise of the full-resolution refinement pass (FRI). 0.5 keeps the structure of the first pass and redraws detail such as screentone."),
                io.Int.Input("fri_steps", default=d.fri_steps, min=1, max=1000, tooltip="Steps the refinement pass actually runs (the last fri_steps of a schedule of fri_steps / fri_strength steps)."),
                io.Combo.Input("run_fri", options=RUN_FRI_OPTIONS, default=d.run_fri, tooltip="'auto': refine only when the structure pass had to shrink the crop; 'always'; 'never' (structure pass only)."),
                io.Int.Input("grow_mask", default=d.grow_mask, min=0, max=256, tooltip="Grow the mask by this many pixels (opt-in: pixels that close to the mask may change too). 0 keeps your mask exactly."),
                io.Int.Input("feather", default=d.feather, min=0, max=256, tooltip="Blend the result into the page over this many pixels, inside the mask only (0 = hard edge)."),
                io.Int.Input("context_margin", default=d.context_margin, min=0, max=4096, tooltip="Pixels of page around each mask region that the model sees as context."),
                io.Int.Input("min_crop_side", default=d.min_crop_side, min=0, max=8192, step=8, tooltip="Crops are widened to at least this side (within the page) so small regions still get enough context; 512 suits SD1.5."),
                io.Boolean.Input("limit_to_panel", default=d.limit_to_panel, tooltip="Keep each crop inside the manga panel that holds its mask region (panels are found from the white gutters), so context never comes from the neighbouring panel."),
                io.Float.Input("tiled_vae_megapixels", default=4.0, min=0.0, max=1000.0, step=0.5, tooltip="Encode/decode crops larger than this many megapixels in tiles to save memory (0: only when the VAE's memory estimate exceeds free memory). Out-of-memory errors always retry tiled."),
                SymVAE.Input("symvae", optional=True, tooltip="Optional MDIM Symmetric VAE (from MDIM Symmetric VAE Loader): decodes with the page's own encoder features, keeping screentone crisp."),
            ],
            outputs=[
                io.Image.Output("image", tooltip="The page with the masked area redrawn; every pixel outside the mask equals the input."),
                io.Image.Output("sgi_preview", tooltip="The page with the (upscaled) structure pass pasted into the mask, before refinement: for checking what the first pass drew."),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(
        cls,
        model,
        positive,
        negative,
        vae,
        image,
        mask,
        seed,
        steps,
        cfg,
        sampler_name,
        scheduler,
        sgi_max_side,
        plan,
        fri_strength,
        fri_steps,
        run_fri,
        grow_mask,
        feather,
        context_margin,
        min_crop_side,
        limit_to_panel,
        tiled_vae_megapixels,
        symvae=None,
    ) -> io.NodeOutput:
        if sampler_name not in comfy.samplers.KSampler.SAMPLERS:
            raise ValueError(f"sampler_name: expected one of {', '.join(comfy.samplers.KSampler.SAMPLERS)}, got {sampler_name!r}")
        if scheduler not in comfy.samplers.KSampler.SCHEDULERS:
            raise ValueError(f"scheduler: expected one of {', '.join(comfy.samplers.KSampler.SCHEDULERS)}, got {scheduler!r}")
        if not isinstance(cfg, (int, float)) or not math.isfinite(cfg) or cfg < 0:
            raise ValueError(f"cfg: expected a finite number >= 0, got {cfg!r}")
        if not isinstance(tiled_vae_megapixels, (int, float)) or tiled_vae_megapixels < 0:
            raise ValueError(f"tiled_vae_megapixels: expected a number >= 0, got {tiled_vae_megapixels!r}")
        if symvae is not None:
            if not callable(getattr(symvae, "decode", None)):
                raise ValueError(f"symvae: expected the output of MDIM Symmetric VAE Loader, got {type(symvae).__name__}")
            if getattr(symvae, "vae", vae) is not vae:
                log.warning(
                    "[MDIM] SGIM: the Symmetric VAE was loaded on a different VAE than the one connected to 'vae'; "
                    "connect the same VAE to both so latents decode correctly"
                )
        config = sgim.SGIMConfig(
            steps=steps,
            fri_steps=fri_steps,
            fri_strength=fri_strength,
            sgi_max_side=sgi_max_side,
            plan=plan,
            run_fri=run_fri,
            grow_mask=grow_mask,
            feather=feather,
            context_margin=context_margin,
            min_crop_side=min_crop_side,
            limit_to_panel=bool(limit_to_panel),
        )
        hidden = getattr(cls, "hidden", None)
        host = ComfyHost(
            model,
            vae,
            positive,
            negative,
            cfg=cfg,
            sampler_name=sampler_name,
            scheduler=scheduler,
            tiled_vae_megapixels=tiled_vae_megapixels,
            symvae=symvae,
            node_id=getattr(hidden, "unique_id", None) if hidden is not None else None,
        )
        result = sgim.inpaint(host, image, mask, seed=seed, config=config)
        if host.tiled_calls:
            log.info("[MDIM] SGIM: %d VAE call(s) ran tiled", host.tiled_calls)
        return io.NodeOutput(result.image, result.sgi_preview)


NODES = [MDIMSGIMInpaint]
