"""Zero-terminal-SNR noise schedule math (Lin et al. 2023, arXiv 2305.08891), used by MDIM to train and sample.

Stable Diffusion's schedule ends at SNR 0.0047 (sqrt(alpha_bar_T) = 0.068): the model never learns to start
from pure noise, so it cannot make the pure white and pure black that manga pages are made of. The fix:

1. rescale the betas so that sqrt(alpha_bar) ends at exactly 0 and keeps its first value
   (:func:`zero_snr_betas`, what diffusers' ``rescale_zero_terminal_snr`` computes);
2. predict v, since epsilon-prediction is undefined at SNR 0 (:func:`check_parameterization`);
3. pick "trailing" timesteps, which start at the terminal step t = T-1 (:func:`trailing_timesteps`);
4. rescale classifier-free guidance with phi ~ 0.7 (:func:`rescale_cfg`, what diffusers' ``rescale_noise_cfg`` computes).

The same schedule is expressed two ways:

- diffusers' discrete space (``alphas_cumprod`` with alpha_bar_T = 0), used by the diffusers host;
- ComfyUI's sigma space, sigma = sqrt((1 - alpha_bar) / alpha_bar), where sigma_T would be infinite, so the
  terminal alpha_bar is clamped to :data:`COMFY_TERMINAL_ALPHA_BAR` (sigma_max ~ 4518.76 for SD1.x), exactly as
  ComfyUI's ``ModelSamplingDiscrete(zsnr=True)`` does.

Everything here is plain torch; nothing imports ComfyUI or diffusers (the nodes load with ComfyUI's own
requirements).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch

# Stable Diffusion 1.x / 2.x training schedule ("scaled_linear" in diffusers, "linear" in ComfyUI/LDM).
SD_NUM_TRAIN_TIMESTEPS = 1000
SD_BETA_START = 0.00085
SD_BETA_END = 0.012

# ComfyUI clamps the terminal alpha_bar of a zero-SNR schedule to this value (sigma_T ~ 4518.76),
# because its samplers work in sigma space where alpha_bar_T = 0 means an infinite sigma.
COMFY_TERMINAL_ALPHA_BAR = 4.8973451890853435e-08

PREDICTION_TYPES = ("v_prediction", "epsilon")

ZERO_SNR_NEEDS_V = (
    "A zero-terminal-SNR schedule starts from pure noise (alpha_bar_T = 0). An epsilon-prediction model cannot "
    "denoise there: at SNR 0 the noisy input *is* the noise, so predicting epsilon says nothing about the image "
    "(x0 = (x - sqrt(1-a)*eps)/sqrt(a) divides by zero). Zero SNR needs a v-prediction model such as an MDIM "
    "checkpoint. Choose prediction 'v_prediction' if your checkpoint was trained with v-prediction"
)


def scaled_linear_betas(
    num_train_timesteps: int = SD_NUM_TRAIN_TIMESTEPS,
    beta_start: float = SD_BETA_START,
    beta_end: float = SD_BETA_END,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Stable Diffusion's beta schedule: linear in sqrt(beta). Returns ``[num_train_timesteps]``.

    Computed in float64 and cast, so float32 matches diffusers and float64 matches ComfyUI's LDM code.
    """
    _check_int("num_train_timesteps", num_train_timesteps, 2)
    if not 0.0 < beta_start < beta_end < 1.0:
        raise ValueError(
            f"beta_start and beta_end must satisfy 0 < beta_start < beta_end < 1, got {beta_start}, {beta_end}"
        )
    if dtype == torch.float32:  # diffusers computes the schedule in float32
        return torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float32) ** 2
    return (torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float64) ** 2).to(
        dtype
    )


def zero_snr_betas(betas: torch.Tensor) -> torch.Tensor:
    """Rescale a discrete beta schedule to zero terminal SNR (Lin et al. 2023, Algorithm 1).

    sqrt(alpha_bar) is shifted so that its last value is 0 and scaled so that its first value is unchanged.
    The same arithmetic as diffusers' ``rescale_zero_terminal_snr``; the result's alpha_bar_T is exactly 0.
    """
    betas = _check_betas(betas)
    sqrt_ab = torch.cumprod(1.0 - betas, dim=0).sqrt()
    first, last = sqrt_ab[0].clone(), sqrt_ab[-1].clone()
    sqrt_ab = (sqrt_ab - last) * (first / (first - last))  # last value 0, first value unchanged
    ab = sqrt_ab**2
    alphas = torch.cat([ab[:1], ab[1:] / ab[:-1]])
    return 1.0 - alphas


def alphas_cumprod_from_betas(betas: torch.Tensor) -> torch.Tensor:
    """alpha_bar_t = prod_{s <= t} (1 - beta_s)."""
    return torch.cumprod(1.0 - _check_betas(betas), dim=0)


def zero_snr_alphas_cumprod(
    num_train_timesteps: int = SD_NUM_TRAIN_TIMESTEPS,
    beta_start: float = SD_BETA_START,
    beta_end: float = SD_BETA_END,
) -> torch.Tensor:
    """alpha_bar of the zero-SNR SD schedule in diffusers' float32 arithmetic (alpha_bar_T == 0)."""
    return alphas_cumprod_from_betas(
        zero_snr_betas(scaled_linear_betas(num_train_timesteps, beta_start, beta_end))
    )


def sigmas_from_alphas_cumprod(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """ComfyUI/k-diffusion sigma of each discrete timestep: sqrt((1 - alpha_bar) / alpha_bar)."""
    if alphas_cumprod.ndim != 1:
        raise ValueError(f"alphas_cumprod must be 1-D, got shape {tuple(alphas_cumprod.shape)}")
    return ((1.0 - alphas_cumprod) / alphas_cumprod) ** 0.5


def zero_snr_sigmas(
    num_train_timesteps: int = SD_NUM_TRAIN_TIMESTEPS,
    beta_start: float = SD_BETA_START,
    beta_end: float = SD_BETA_END,
    terminal_alpha_bar: float = COMFY_TERMINAL_ALPHA_BAR,
) -> torch.Tensor:
    """The zero-SNR schedule in ComfyUI's sigma space, ascending (index = timestep), float32.

    Follows ComfyUI's ``ModelSamplingDiscrete(zsnr=True)``: float64 arithmetic, rescale in sqrt(alpha_bar),
    then the terminal alpha_bar clamped to ``terminal_alpha_bar`` so that sigma_T is finite.
    """
    if not 0.0 < terminal_alpha_bar < 1.0:
        raise ValueError(f"terminal_alpha_bar must be in (0, 1), got {terminal_alpha_bar}")
    betas = scaled_linear_betas(num_train_timesteps, beta_start, beta_end, dtype=torch.float64)
    alphas_bar = alphas_cumprod_from_betas(zero_snr_betas(betas))
    alphas_bar[-1] = terminal_alpha_bar
    return sigmas_from_alphas_cumprod(alphas_bar).float()


def trailing_timesteps(num_steps: int, num_train_timesteps: int = SD_NUM_TRAIN_TIMESTEPS) -> torch.Tensor:
    """Descending "trailing" timesteps (Lin et al. 2023, Table 2): T-1, T-1-T/N, ... (int64, length N).

    For T = 1000 and N = 10: 999, 899, ..., 99. Same as diffusers' ``timestep_spacing="trailing"``.
    """
    _check_int("steps", num_steps, 1)
    _check_int("num_train_timesteps", num_train_timesteps, 2)
    if num_steps > num_train_timesteps:
        raise ValueError(
            f"steps must be at most num_train_timesteps ({num_train_timesteps}), got {num_steps}"
        )
    num_steps, num_train_timesteps = int(num_steps), int(num_train_timesteps)
    ratio = num_train_timesteps / num_steps
    steps = torch.round(torch.arange(num_train_timesteps, 0, -ratio, dtype=torch.float64)).to(torch.int64) - 1
    return steps[:num_steps]


def ksampler_schedule(steps: int, denoise: float) -> tuple[int, int]:
    """``(schedule_steps, first)``: the step rule of ComfyUI's ``KSampler(steps, denoise)``.

    The pass runs ``steps`` steps: the last ``steps`` of a schedule of ``int(steps / denoise)``
    steps, i.e. from index ``first`` on; a denoise above 0.9999 counts as 1 (the whole schedule).
    Every MDIM host and MDIM Trailing Sigmas follow it, so one pass equals a KSampler with the same
    ``steps`` and ``denoise``. diffusers' img2img ``strength`` counts the other way round: its
    ``num_inference_steps`` is the whole schedule, of which ``int(num_inference_steps * strength)``
    run; ``KSampler(25, 0.5)`` is diffusers' ``(50, 0.5)``, but e.g. ``KSampler(25, 0.7)`` runs the
    tail of 35 steps where no whole ``num_inference_steps`` runs exactly 25 steps from the same start.
    """
    _check_int("steps", steps, 1)
    check_denoise(denoise)
    if denoise > 0.9999:
        return int(steps), 0
    total = int(steps / denoise)
    return total, total - int(steps)


def trailing_sigmas(
    model_sigmas: torch.Tensor | Sequence[float], steps: int, denoise: float = 1.0
) -> torch.Tensor:
    """Sigmas for k-diffusion samplers with trailing spacing, from a model's per-timestep sigma table.

    ``model_sigmas`` is ascending and indexed by timestep (ComfyUI's ``model_sampling.sigmas``). Returns a
    descending float32 tensor of ``steps + 1`` values ending in 0. With ``denoise`` < 1 they are the tail of
    a longer trailing schedule, as ComfyUI's KSampler and BasicScheduler do (:func:`ksampler_schedule`):
    25 steps at 0.5 are the last 25 of 50 and start at t = 499. The first sigma of a full schedule is the
    terminal sigma of the table (t = T-1), which is what zero SNR requires.
    """
    table = torch.as_tensor(model_sigmas, dtype=torch.float32).flatten()
    if table.numel() < 2:
        raise ValueError(
            f"model_sigmas must hold one sigma per training timestep, got {table.numel()} values"
        )
    if not bool(torch.all(table[1:] >= table[:-1])):
        raise ValueError(
            "model_sigmas must be ascending (index = timestep), as ComfyUI's model_sampling.sigmas is"
        )
    total, first = ksampler_schedule(steps, denoise)
    if total > table.numel():
        raise ValueError(
            f"steps: {steps} steps at denoise {denoise} need a schedule of {total} steps, more than the "
            f"model's {table.numel()} timesteps; lower steps or raise denoise"
        )
    timesteps = trailing_timesteps(total, table.numel())[first:]
    return torch.cat([table[timesteps], table.new_zeros(1)])


def rescale_cfg(cfg_output: torch.Tensor, cond_output: torch.Tensor, phi: float = 0.7) -> torch.Tensor:
    """CFG rescale (Lin et al. 2023, Sec. 3.4): phi * x_cfg * std(x_pos) / std(x_cfg) + (1 - phi) * x_cfg.

    ``cfg_output`` is the guided model output and ``cond_output`` the positive (text) one, both ``[B, ...]``;
    std is taken per sample over all other dims, as diffusers' ``rescale_noise_cfg`` does; phi = 0 returns
    ``cfg_output`` unchanged.
    """
    check_phi(phi)
    if cfg_output.shape != cond_output.shape:
        raise ValueError(
            f"cfg_output and cond_output must have the same shape, got {tuple(cfg_output.shape)} and "
            f"{tuple(cond_output.shape)}"
        )
    if phi == 0.0:
        return cfg_output
    dims = list(range(1, cfg_output.ndim))
    rescaled = cfg_output * (cond_output.std(dim=dims, keepdim=True) / cfg_output.std(dim=dims, keepdim=True))
    return phi * rescaled + (1.0 - phi) * cfg_output


# --- conversions between the sigma-space denoised image and model outputs (sigma_data = 1) ---------------


def v_from_denoised(x: torch.Tensor, denoised: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The v-prediction output that yields ``denoised`` from the sigma-space input ``x = x0 + sigma * eps``."""
    sigma = _bcast(sigma, x)
    return (x / (sigma**2 + 1.0) - denoised) * (sigma**2 + 1.0) ** 0.5 / sigma


def denoised_from_v(x: torch.Tensor, v: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x0 = x / (sigma^2 + 1) - v * sigma / sqrt(sigma^2 + 1)  (ComfyUI's V_PREDICTION with sigma_data = 1)."""
    sigma = _bcast(sigma, x)
    return x / (sigma**2 + 1.0) - v * sigma / (sigma**2 + 1.0) ** 0.5


def eps_from_denoised(x: torch.Tensor, denoised: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """eps = (x - x0) / sigma."""
    return (x - denoised) / _bcast(sigma, x)


def denoised_from_eps(x: torch.Tensor, eps: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x0 = x - sigma * eps."""
    return x - eps * _bcast(sigma, x)


def rescale_cfg_denoised(
    x: torch.Tensor,
    sigma: torch.Tensor,
    cfg_denoised: torch.Tensor,
    cond_denoised: torch.Tensor,
    phi: float,
    prediction: str = "v_prediction",
) -> torch.Tensor:
    """CFG rescale applied to denoised (x0) predictions in sigma space, in the model's own output space.

    The rescale is defined on the model output (v for v-prediction, as diffusers applies it to ``noise_pred``),
    so the x0 predictions are converted to that output, rescaled, and converted back.
    """
    check_phi(phi)
    check_prediction(prediction)
    if phi == 0.0:
        return cfg_denoised
    if prediction == "v_prediction":
        out_cfg = v_from_denoised(x, cfg_denoised, sigma)
        out_pos = v_from_denoised(x, cond_denoised, sigma)
        return denoised_from_v(x, rescale_cfg(out_cfg, out_pos, phi), sigma)
    out_cfg = eps_from_denoised(x, cfg_denoised, sigma)
    out_pos = eps_from_denoised(x, cond_denoised, sigma)
    return denoised_from_eps(x, rescale_cfg(out_cfg, out_pos, phi), sigma)


# --- validation ---------------------------------------------------------------------------------------------


def check_parameterization(
    prediction: str, zero_snr: bool = True, allow_epsilon_zero_snr: bool = False
) -> None:
    """Refuse epsilon-prediction with a zero-SNR schedule unless the user explicitly opted in."""
    check_prediction(prediction)
    if zero_snr and prediction == "epsilon" and not allow_epsilon_zero_snr:
        raise ValueError(
            f"prediction 'epsilon' with a zero-terminal-SNR schedule is refused. {ZERO_SNR_NEEDS_V}."
        )


def check_prediction(prediction: str) -> None:
    if prediction not in PREDICTION_TYPES:
        raise ValueError(f"prediction must be one of {PREDICTION_TYPES}, got {prediction!r}")


def check_phi(phi: float) -> None:
    if not isinstance(phi, (int, float)) or not 0.0 <= float(phi) <= 1.0 or math.isnan(phi):
        raise ValueError(f"cfg_rescale (phi) must be in [0, 1] (0 disables the rescale), got {phi!r}")


def check_denoise(denoise: float) -> None:
    if not isinstance(denoise, (int, float)) or math.isnan(denoise) or not 0.0 < float(denoise) <= 1.0:
        raise ValueError(f"denoise must be in (0, 1] (1 = from pure noise), got {denoise!r}")


def check_strength(strength: float) -> None:
    if not isinstance(strength, (int, float)) or math.isnan(strength) or not 0.0 < float(strength) <= 1.0:
        raise ValueError(f"strength must be in (0, 1] (1 = from pure noise), got {strength!r}")


def _check_int(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_betas(betas: torch.Tensor) -> torch.Tensor:
    betas = torch.as_tensor(betas)
    if betas.ndim != 1 or betas.numel() < 2:
        raise ValueError(f"betas must be a 1-D schedule of at least 2 values, got shape {tuple(betas.shape)}")
    if not bool(torch.all((betas > 0) & (betas <= 1))):  # beta_T = 1 exactly in a zero-SNR schedule
        raise ValueError("betas must lie in (0, 1]")
    return betas


def _bcast(sigma: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    sigma = torch.as_tensor(sigma, dtype=like.dtype, device=like.device)
    if sigma.ndim == 0 or sigma.numel() == 1:
        return sigma.reshape(())
    return sigma.reshape(sigma.shape[:1] + (1,) * (like.ndim - 1))
