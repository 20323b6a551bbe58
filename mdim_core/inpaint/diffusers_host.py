"""The SGIM host protocol (``mdim_core.inpaint.host.SGIMHost``) driven by diffusers models and schedulers.

Used by ``python -m mdim_core inpaint`` and by the tests (with tiny models built from configs).
A model is a local diffusers-format folder with the sub-folders ``unet`` (``UNet2DConditionModel``,
4 input channels, or 9 for an inpainting checkpoint), ``vae`` (``AutoencoderKL``),
``text_encoder`` (``CLIPTextModel``), ``tokenizer`` (``CLIPTokenizer``) and, optionally,
``scheduler`` (its config decides the scheduler class, the beta schedule and the prediction type).

Sampling per pass (the same steps as diffusers' inpaint pipeline, with two differences noted):

- ``strength`` -> start: ComfyUI's KSampler rule (``schedule.ksampler_schedule``): the schedule has
  ``int(steps / strength)`` steps and the pass runs its last ``steps`` timesteps, read from
  ``scheduler.timesteps`` (25 steps at strength 0.5: the last 25 of 50 trailing steps, from t = 499);
- the latent starts as ``scheduler.add_noise(x0, noise, t_start)`` (pure noise at strength 1,
  exactly what diffusers does, also for a zero-SNR schedule where alpha_bar_T = 0);
- classifier-free guidance, with optional CFG rescale (Lin et al. 2023) through
  ``mdim_core.sampling.schedule.rescale_cfg`` (diffusers' ``rescale_noise_cfg``);
- after every step the known region is replaced by the original noised to the next timestep
  (RePaint-style; diffusers does this for 4-channel UNets only, here 9-channel UNets get it too,
  as in ComfyUI, so both hosts keep the known region the same way); the last step puts the
  original latent back exactly;
- 9-channel UNets also get the masked-image conditioning (mask + latent of the page with the
  hole filled grey) built at each pass's own resolution.

Zero terminal SNR: with ``zero_snr=True`` the scheduler is configured with
``rescale_betas_zero_snr=True, timestep_spacing="trailing"`` (DDIM keeps alpha_bar_T = 0 exactly);
an epsilon-prediction model with zero SNR is refused (``schedule.check_parameterization``).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path

import torch

from ..optional import require
from ..sampling import schedule
from .host import PassInfo, grey_fill, latent_cell_mask

log = logging.getLogger("MDIM")

SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer")
SCHEDULER_CHOICES = ("auto", "ddim", "euler", "dpmpp_2m")
_SCHEDULER_CLASSES = {"ddim": "DDIMScheduler", "euler": "EulerDiscreteScheduler", "dpmpp_2m": "DPMSolverMultistepScheduler"}
# Stable Diffusion 1.x training schedule: the fallback when a model folder has no scheduler config.
SD_SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}


def make_scheduler(
    config: dict | None = None,
    *,
    kind: str = "auto",
    prediction: str | None = None,
    zero_snr: bool | None = None,
    allow_epsilon_zero_snr: bool = False,
):
    """A diffusers scheduler from a scheduler config (``scheduler_config.json`` contents or None).

    Args:
        config: the model's scheduler config; None means Stable Diffusion 1.x's.
        kind: ``"auto"`` (the config's class, DDIM when it has none), ``"ddim"``, ``"euler"``,
            ``"dpmpp_2m"``.
        prediction: ``"v_prediction"`` or ``"epsilon"`` to override the config's prediction type.
        zero_snr: True forces zero terminal SNR with trailing timesteps, False turns it off,
            None keeps what the config says (``rescale_betas_zero_snr``).
        allow_epsilon_zero_snr: accept epsilon-prediction with zero SNR (refused otherwise).
    """
    diffusers = require("diffusers", "SGIM with a local diffusers model")

    if kind not in SCHEDULER_CHOICES:
        raise ValueError(f"scheduler: expected one of {', '.join(SCHEDULER_CHOICES)}, got {kind!r}")
    config = dict(SD_SCHEDULER_CONFIG if config is None else config)
    class_name = _SCHEDULER_CLASSES.get(kind) or config.get("_class_name") or "DDIMScheduler"
    if class_name not in _SCHEDULER_CLASSES.values():
        log.info("[MDIM] scheduler %s of the model is not supported here, using DDIMScheduler", class_name)
        class_name = "DDIMScheduler"
    if prediction is not None:
        schedule.check_prediction(prediction)
        config["prediction_type"] = prediction
    prediction = config.get("prediction_type", "epsilon")
    if prediction not in schedule.PREDICTION_TYPES:
        raise ValueError(f"scheduler config: prediction_type {prediction!r} is not supported (expected one of {schedule.PREDICTION_TYPES})")
    if zero_snr is None:
        zero_snr = bool(config.get("rescale_betas_zero_snr", False))
    schedule.check_parameterization(prediction, zero_snr=zero_snr, allow_epsilon_zero_snr=allow_epsilon_zero_snr)
    config["rescale_betas_zero_snr"] = zero_snr
    if zero_snr:
        config["timestep_spacing"] = "trailing"
        if class_name == "DDIMScheduler":
            config["set_alpha_to_one"] = True  # the last step lands on x0 exactly
    config.pop("_class_name", None)
    config.pop("_diffusers_version", None)
    return getattr(diffusers, class_name).from_config(config)


class DiffusersHost:
    """``SGIMHost`` over diffusers modules.

    Args:
        unet: ``UNet2DConditionModel`` (4 or 9 input channels).
        vae: ``AutoencoderKL``.
        scheduler: a diffusers scheduler (see :func:`make_scheduler`); the host keeps its own copy.
        prompt_embeds, negative_embeds: text encoder outputs ``[1, n, d]`` (see :func:`encode_prompt`).
        cfg: guidance scale (<= 1 runs the positive prompt only).
        cfg_rescale: CFG rescale phi in [0, 1] (0.7 for zero-SNR models, 0 disables).
        tiled_vae_megapixels: images above this many megapixels are encoded/decoded in tiles
            (diffusers' ``tiled_encode``/``tiled_decode``); 0 never tiles by size.
        symvae: optional ``mdim_core.symvae.SymmetricVAE`` on ``vae`` used to decode.
        on_progress: called as ``on_progress(done, total)``; may raise to cancel.
    """

    def __init__(
        self,
        unet,
        vae,
        scheduler,
        prompt_embeds: torch.Tensor,
        negative_embeds: torch.Tensor | None = None,
        *,
        cfg: float = 7.0,
        cfg_rescale: float = 0.0,
        tiled_vae_megapixels: float = 4.0,
        symvae=None,
        on_progress: Callable[[int, int], None] | None = None,
    ):
        schedule.check_phi(cfg_rescale)
        if not math.isfinite(cfg) or cfg < 0:
            raise ValueError(f"cfg: expected a finite number >= 0, got {cfg!r}")
        in_channels = int(unet.config.in_channels)
        latent_channels = int(vae.config.latent_channels)
        if in_channels not in (latent_channels, 2 * latent_channels + 1):
            raise ValueError(
                f"unet: has {in_channels} input channels; expected {latent_channels} (standard) or "
                f"{2 * latent_channels + 1} (inpainting) for a VAE with {latent_channels} latent channels"
            )
        self.unet = unet
        self.vae = vae
        self.scheduler = scheduler.__class__.from_config(scheduler.config)
        self.inpaint_model = in_channels != latent_channels
        self.latent_scale = 2 ** (len(vae.config.block_out_channels) - 1)
        self.scaling = float(getattr(vae.config, "scaling_factor", 0.18215) or 1.0)
        self.shift = float(getattr(vae.config, "shift_factor", None) or 0.0)
        self.prompt_embeds = prompt_embeds
        self.negative_embeds = negative_embeds if negative_embeds is not None else torch.zeros_like(prompt_embeds)
        self.cfg = float(cfg)
        self.cfg_rescale = float(cfg_rescale)
        self.tiled_vae_megapixels = float(tiled_vae_megapixels)
        self.symvae = symvae
        self.on_progress = on_progress
        self.model_calls = 0  # UNet forward calls (each CFG pair counts once)

    # --- properties -------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @property
    def prediction_type(self) -> str:
        return self.scheduler.config.prediction_type

    # --- VAE ----------------------------------------------------------------------------------
    def _tiled(self, pixels: int) -> bool:
        return self.tiled_vae_megapixels > 0 and pixels > self.tiled_vae_megapixels * 1e6

    @torch.no_grad()
    def encode(self, image: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = image.shape
        x = image.movedim(-1, 1).to(self.vae.device, self.vae.dtype) * 2.0 - 1.0
        if self._tiled(h * w):
            dist = self.vae.tiled_encode(x).latent_dist
        else:
            dist = self.vae.encode(x).latent_dist
        return ((dist.mode() - self.shift) * self.scaling).float()

    @torch.no_grad()
    def decode(self, latent: torch.Tensor, *, source=None, mask=None) -> torch.Tensor:
        z = latent.to(self.vae.device, self.vae.dtype) / self.scaling + self.shift
        if self.symvae is not None:
            return self.symvae.decode(z, source=source, mask=mask).float().cpu()
        s = self.latent_scale
        if self._tiled(z.shape[-2] * z.shape[-1] * s * s):
            y = self.vae.tiled_decode(z).sample
        else:
            y = self.vae.decode(z).sample
        return ((y.float() + 1.0) / 2.0).clamp(0.0, 1.0).movedim(1, -1).cpu()

    # --- sampling -----------------------------------------------------------------------------
    def timesteps_for(self, steps: int, strength: float) -> torch.Tensor:
        """Set the schedule for a pass and return the timesteps it runs (the last ``steps``)."""
        full, first = schedule.ksampler_schedule(steps, strength)
        sched = self.scheduler
        sched.set_timesteps(full, device=self.device)
        start = first * sched.order
        if hasattr(sched, "set_begin_index"):
            sched.set_begin_index(start)
        return sched.timesteps[start:]

    def _model_output(self, x: torch.Tensor, t: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
        inp = self.scheduler.scale_model_input(x, t)
        if extra is not None:
            inp = torch.cat([inp, extra], dim=1)
        inp = inp.to(self.dtype)
        b = x.shape[0]
        guided = self.cfg > 1.0
        if guided:
            inp = torch.cat([inp, inp])
            ctx = torch.cat([self.negative_embeds.expand(b, -1, -1), self.prompt_embeds.expand(b, -1, -1)])
        else:
            ctx = self.prompt_embeds.expand(b, -1, -1)
        out = self.unet(inp, t, encoder_hidden_states=ctx.to(self.device, self.dtype), return_dict=False)[0].float()
        self.model_calls += 1
        if not guided:
            return out
        uncond, cond = out.chunk(2)
        guided_out = uncond + self.cfg * (cond - uncond)
        return schedule.rescale_cfg(guided_out, cond, self.cfg_rescale) if self.cfg_rescale > 0 else guided_out

    @torch.no_grad()
    def denoise(
        self,
        latent: torch.Tensor,
        *,
        image: torch.Tensor,
        mask: torch.Tensor,
        strength: float,
        steps: int,
        seed: int,
        info: PassInfo | None = None,
    ) -> torch.Tensor:
        device = self.device
        x0 = latent.to(device, torch.float32)
        keep = 1.0 - latent_cell_mask(mask, self.latent_scale).to(device)  # 1 = known cell
        extra = None
        if self.inpaint_model:
            masked = self.encode(grey_fill(image, mask)).to(device)
            extra = torch.cat([1.0 - keep, masked], dim=1).to(self.dtype)
        generator = torch.Generator("cpu").manual_seed(int(seed) % 2**64)
        noise = torch.randn(x0.shape, generator=generator, dtype=torch.float32).to(device)
        timesteps = self.timesteps_for(steps, strength)
        sched = self.scheduler
        start_known = sched.add_noise(x0, noise, timesteps[:1])
        # Like diffusers: pure noise at strength 1, the noised original below it.
        x = noise * sched.init_noise_sigma if strength > 0.9999 else start_known
        x = keep * start_known + (1.0 - keep) * x
        before = info.steps_before if info is not None else 0
        total = info.total_steps if info is not None else steps
        for i, t in enumerate(timesteps):
            out = self._model_output(x, t, extra)
            x = sched.step(out, t, x, return_dict=False)[0].float()
            if i + 1 < len(timesteps):
                known = sched.add_noise(x0, noise, timesteps[i + 1 : i + 2])
            else:
                known = x0
            x = keep * known + (1.0 - keep) * x
            self.progress(before + i + 1, total)
        return x

    def progress(self, done: int, total: int, preview: torch.Tensor | None = None) -> None:
        if self.on_progress is not None:
            self.on_progress(done, total)


# --- loading ----------------------------------------------------------------------------------


def encode_prompt(tokenizer, text_encoder, prompt: str) -> torch.Tensor:
    """CLIP text embeddings ``[1, max_length, d]`` of ``prompt`` (padded to the tokenizer's length)."""
    if not isinstance(prompt, str):
        raise ValueError(f"prompt: expected a string, got {type(prompt).__name__}")
    ids = tokenizer(
        prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    with torch.no_grad():
        return text_encoder(ids.to(text_encoder.device))[0]


def check_model_dir(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"model: {str(path)!r} is not a folder; expected a diffusers-format model folder")
    missing = [s for s in SUBFOLDERS if not (path / s).is_dir()]
    if missing:
        raise ValueError(
            f"model: {str(path)!r} lacks the sub-folder(s) {', '.join(missing)}; expected a diffusers-format "
            f"model folder with {', '.join(SUBFOLDERS)} (and optionally scheduler)"
        )
    return path


def load_host(
    model_dir: str | Path,
    *,
    prompt: str = "",
    negative: str = "",
    cfg: float = 7.0,
    cfg_rescale: float | None = None,
    scheduler: str = "auto",
    prediction: str | None = None,
    zero_snr: bool | None = None,
    allow_epsilon_zero_snr: bool = False,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    tiled_vae_megapixels: float = 4.0,
    symvae_adapters: str | Path | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> DiffusersHost:
    """A :class:`DiffusersHost` for a local diffusers-format model folder (safetensors weights only).

    ``cfg_rescale`` None means 0.7 for a zero-SNR schedule and 0 otherwise.
    """
    diffusers = require("diffusers", "SGIM with a local diffusers model")
    transformers = require("transformers", "SGIM with a local diffusers model")
    AutoencoderKL, UNet2DConditionModel = diffusers.AutoencoderKL, diffusers.UNet2DConditionModel
    CLIPTextModel, CLIPTokenizer = transformers.CLIPTextModel, transformers.CLIPTokenizer

    root = check_model_dir(model_dir)
    sched_file = root / "scheduler" / "scheduler_config.json"
    sched_config = json.loads(sched_file.read_text()) if sched_file.is_file() else None
    sched = make_scheduler(
        sched_config, kind=scheduler, prediction=prediction, zero_snr=zero_snr,
        allow_epsilon_zero_snr=allow_epsilon_zero_snr,
    )  # fmt: skip
    zsnr = bool(sched.config.get("rescale_betas_zero_snr", False))
    phi = (0.7 if zsnr else 0.0) if cfg_rescale is None else float(cfg_rescale)
    kw = {"use_safetensors": True, "torch_dtype": dtype}
    unet = UNet2DConditionModel.from_pretrained(root / "unet", **kw).to(device).eval()
    vae = AutoencoderKL.from_pretrained(root / "vae", **kw).to(device).eval()
    text_encoder = CLIPTextModel.from_pretrained(root / "text_encoder", **kw).to(device).eval()
    tokenizer = CLIPTokenizer.from_pretrained(root / "tokenizer")
    pos = encode_prompt(tokenizer, text_encoder, prompt)
    neg = encode_prompt(tokenizer, text_encoder, negative)
    del text_encoder
    sym = None
    if symvae_adapters is not None:
        from ..symvae import SymmetricVAE, load_adapters

        sym = SymmetricVAE(vae)
        load_adapters(sym, symvae_adapters)
    log.info(
        "[MDIM] model %s: %s, %d-channel UNet, %s, zero SNR %s, CFG rescale %.2f",
        root.name, type(sched).__name__, unet.config.in_channels, sched.config.prediction_type, zsnr, phi,
    )  # fmt: skip
    return DiffusersHost(
        unet, vae, sched, pos, neg, cfg=cfg, cfg_rescale=phi, tiled_vae_megapixels=tiled_vae_megapixels,
        symvae=sym, on_progress=on_progress,
    )  # fmt: skip
