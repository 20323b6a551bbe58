"""The ComfyUI host of the SGIM engine: ``mdim_core.inpaint.host.SGIMHost`` over the graph's MODEL and VAE.

It encodes/decodes with the graph's VAE (tiled when a crop is large, retried tiled when memory runs
out), samples with ``comfy.sample`` on the graph's MODEL with a noise mask (the pass is core
KSampler with the same ``steps`` and ``denoise``; a connected SAMPLER or SIGMAS is used instead),
builds the masked-image conditioning of 9-channel inpainting checkpoints at each pass's resolution,
cuts page-level conditioning to each pass's crop (``mdim_core.inpaint.conditioning``), shows one
progress bar (with previews) over every pass, and stops when the user cancels. Inputs are never
modified: the MODEL is only sampled, conditionings and ControlNets are copied before anything changes.
"""

from __future__ import annotations

import contextlib
import logging
import math

import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
import node_helpers
import torch

from ..mdim_core.inpaint.conditioning import crop_page_conditioning
from ..mdim_core.inpaint.host import grey_fill, latent_cell_mask
from ..mdim_core.sampling import schedule

log = logging.getLogger("MDIM")

# Tile sizes of ComfyUI's own tiled VAE nodes (pixels for encode, latent cells for decode).
ENCODE_TILE, ENCODE_OVERLAP = 512, 64
DECODE_TILE, DECODE_OVERLAP = 64, 16


def expect_model(model, name: str = "model") -> None:
    """Refuse what is not a MODEL (another object passed through a reroute or switch of any type)."""
    if not callable(getattr(model, "get_model_object", None)) or not hasattr(model, "model"):
        raise TypeError(f"{name}: expected a MODEL (e.g. from Load Checkpoint), got {type(model).__name__}")


def expect_vae(vae, name: str = "vae") -> None:
    """Refuse what is not a VAE (a MODEL or CLIP passed through a reroute or switch of any type)."""
    if not (callable(getattr(vae, "encode", None)) and callable(getattr(vae, "decode", None))
            and hasattr(vae, "first_stage_model")):
        raise TypeError(f"{name}: expected a VAE (e.g. from Load Checkpoint or Load VAE), got {type(vae).__name__}")


def check_sampling_inputs(node: str, *, model, vae, cfg, sampler_name, scheduler, sampler=None, sigmas=None,
                          symvae=None) -> None:
    """The sampling inputs every node driving a ComfyHost takes, checked up front with errors naming the input."""
    expect_model(model)
    expect_vae(vae)
    if sampler_name not in comfy.samplers.KSampler.SAMPLERS:
        raise ValueError(f"sampler_name: expected one of {', '.join(comfy.samplers.KSampler.SAMPLERS)}, got {sampler_name!r}")
    if scheduler not in comfy.samplers.KSampler.SCHEDULERS:
        raise ValueError(f"scheduler: expected one of {', '.join(comfy.samplers.KSampler.SCHEDULERS)}, got {scheduler!r}")
    if isinstance(cfg, bool) or not isinstance(cfg, (int, float)) or not math.isfinite(cfg) or cfg < 0:
        raise ValueError(f"cfg: expected a finite number >= 0, got {cfg!r}")
    if sampler is not None and not callable(getattr(sampler, "sample", None)):
        raise ValueError(f"sampler: expected a SAMPLER (e.g. KSamplerSelect), got {type(sampler).__name__}")
    if sigmas is not None:
        if not isinstance(sigmas, torch.Tensor) or sigmas.ndim != 1 or sigmas.numel() < 2:
            raise ValueError("sigmas: expected SIGMAS (a 1-D list of at least 2 values, e.g. from MDIM Trailing "
                             f"Sigmas), got {getattr(sigmas, 'shape', type(sigmas).__name__)}")
        s = sigmas.detach().float()
        if not bool(torch.isfinite(s).all()) or bool((s < 0).any()) or not bool((s[1:] <= s[:-1]).all()):
            raise ValueError("sigmas: expected finite, non-negative, descending values (a sampling schedule)")
    if symvae is not None:
        if not callable(getattr(symvae, "decode", None)):
            raise ValueError(f"symvae: expected the output of MDIM Symmetric VAE Loader, got {type(symvae).__name__}")
        if getattr(symvae, "vae", vae) is not vae:
            log.warning("[MDIM] %s: the Symmetric VAE was loaded on a different VAE than the one connected to 'vae'; "
                        "connect the same VAE to both so latents decode correctly", node)


def is_inpaint_model(model) -> bool:
    """True for 9-channel inpainting checkpoints (they read ``concat_latent_image``/``concat_mask``).

    ComfyUI marks them with the concat keys ``("mask", "masked_image")`` (``BaseModel.set_inpaint``).
    """
    return "masked_image" in tuple(getattr(model.model, "concat_keys", ()))


@contextlib.contextmanager
def _tile_bars_silenced():
    """ComfyUI's tiled VAE opens progress bars of its own, without a node id: shown on the running
    node, they would make the run's one bar jump to tile counts. Bars opened inside this block report
    nowhere; bars opened before it (the run's own) keep reporting. The global hook is put back after."""
    hook = comfy.utils.PROGRESS_BAR_HOOK
    comfy.utils.set_progress_bar_global_hook(None)
    try:
        yield
    finally:
        comfy.utils.set_progress_bar_global_hook(hook)


class ComfyHost:
    """``mdim_core.inpaint.host.SGIMHost`` backed by the graph's MODEL, VAE and conditionings.

    Args:
        model: a ComfyUI ``ModelPatcher`` (sampled as is; LoRAs, zero-SNR and other patches apply).
        vae: a ComfyUI ``VAE``.
        positive, negative: CONDITIONING lists laid out on the whole page. Each pass gets copies
            whose ControlNet hints (every ControlNet of a chain, at any hint resolution), areas
            (Conditioning Set Area, also as percentages) and masks (Conditioning Set Mask) are cut
            to the part of the page that pass samples, shrunk and padded like its image; entries
            whose area/mask misses the pass are left out. Other keys pass through unchanged.
        cfg, sampler_name, scheduler: as in KSampler.
        tiled_vae_megapixels: crops with more megapixels than this are encoded/decoded in tiles
            (0: only when the VAE's own memory estimate exceeds the free memory). Untiled calls that
            run out of memory are retried tiled.
        symvae: optional Symmetric VAE (``decode(latent, source=, mask=)``) used to decode.
        sampler: optional SAMPLER (e.g. MDIM RePaint Sampler, a KSamplerSelect, another pack's) used in
            every pass instead of ``sampler_name``.
        sigmas: optional SIGMAS (e.g. MDIM Trailing Sigmas) for the structure pass; the other passes
            sample their last ``steps`` steps. Without it, ``scheduler`` gives each pass's sigmas.
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
        sampler=None,
        sigmas=None,
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
        self.sampler = sampler
        self.sigmas = None if sigmas is None else sigmas.detach().float().cpu()
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
        with _tile_bars_silenced():
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
        with _tile_bars_silenced():
            return self.vae.decode_tiled(latent, tile_x=DECODE_TILE, tile_y=DECODE_TILE, overlap=DECODE_OVERLAP)

    # --- sampling --------------------------------------------------------------------------
    def pass_conds(self, image: torch.Tensor, mask: torch.Tensor, cells: torch.Tensor, info=None):
        """Positive/negative for one pass.

        ControlNet hints, areas and masks are cut to the pass's part of the page
        (``crop_page_conditioning``); 9-channel models get copies with the masked-image conditioning.
        """
        memo: dict = {}  # a ControlNet shared by positive and negative is copied once
        positive = crop_page_conditioning(self.positive, info, self.latent_scale, memo)
        negative = crop_page_conditioning(self.negative, info, self.latent_scale, memo)
        if not self.inpaint_model:
            return positive, negative
        values = {"concat_latent_image": self.encode(grey_fill(image, mask)), "concat_mask": cells}
        return (
            node_helpers.conditioning_set_values(positive, values),
            node_helpers.conditioning_set_values(negative, values),
        )

    def pass_sigmas(self, steps: int, strength: float, info) -> torch.Tensor | None:
        """The sigmas of one pass when they are not KSampler's own (a SAMPLER or SIGMAS is connected), else None.

        With ``sigmas`` connected, the structure pass samples exactly them and every other pass their last
        ``steps`` steps; otherwise the scheduler's sigmas by KSampler's rule (the last ``steps`` of
        ``int(steps / strength)``, ``schedule.ksampler_schedule``).
        """
        if self.sigmas is not None:
            sigmas = self.sigmas
            if info is not None and info.name != "sgi" and steps < len(sigmas) - 1:
                sigmas = sigmas[-(steps + 1) :]
            return sigmas
        if self.sampler is None:
            return None
        total, first = schedule.ksampler_schedule(steps, strength)
        model_sampling = self.model.get_model_object("model_sampling")
        return comfy.samplers.calculate_sigmas(model_sampling, self.scheduler, total)[first:].cpu()

    def denoise(self, latent, *, image, mask, strength, steps, seed, info):
        comfy.model_management.throw_exception_if_processing_interrupted()
        cells = latent_cell_mask(mask, self.latent_scale)
        positive, negative = self.pass_conds(image, mask, cells, info)
        latent = comfy.sample.fix_empty_latent_channels(self.model, latent)
        sigmas = self.pass_sigmas(steps, strength, info)
        pass_steps = steps if sigmas is None else len(sigmas) - 1
        # latent_preview.prepare_callback would open a progress bar per pass; this uses its previewer
        # with the run's single bar, whose position counts the steps of every pass before this one.
        previewer = self._get_previewer()
        calls = self._model_calls(pass_steps)

        def callback(step, x0, x, total_steps):
            preview = previewer.decode_latent_to_preview_image("JPEG", x0) if previewer is not None else None
            # a resampling sampler calls back more often than it has steps: its share of the pass, in steps
            done = min(steps, (step + 1) * steps // calls) if calls != steps else min(step + 1, steps)
            self._report(info.steps_before + done, info.total_steps, preview)

        with torch.random.fork_rng(devices=[]):  # prepare_noise reseeds torch's global generator
            noise = comfy.sample.prepare_noise(latent, seed)
            if sigmas is None:  # KSampler itself: the pass is bit for bit core KSampler(steps, denoise=strength)
                return comfy.sample.sample(
                    self.model, noise, steps, self.cfg, self.sampler_name, self.scheduler, positive, negative,
                    latent, denoise=strength, noise_mask=cells, callback=callback,
                    disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed,
                )  # fmt: skip
            sampler = self.sampler if self.sampler is not None else comfy.samplers.sampler_object(self.sampler_name)
            return comfy.sample.sample_custom(
                self.model, noise, self.cfg, sampler, sigmas, positive, negative, latent, noise_mask=cells,
                callback=callback, disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=seed,
            )  # fmt: skip

    def _model_calls(self, steps: int) -> int:
        """Callbacks the connected sampler makes for ``steps`` steps (more than ``steps`` when it resamples)."""
        count = getattr(self.sampler, "mdim_callbacks", None)
        return max(1, int(count(steps))) if callable(count) else steps

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
