"""What the UNet learns: the noise schedule, the noisy input, the target and the loss.

MDIM trains with Stable Diffusion's betas rescaled to zero terminal SNR (Lin et al. 2023) and
v-prediction; the loss is the mean squared error between the UNet's output and v:

    x_t = sqrt(a_t) * x_0 + sqrt(1 - a_t) * eps          a_t = alpha_bar_t
    v   = sqrt(a_t) * eps - sqrt(1 - a_t) * x_0

At the last timestep a_T = 0, so x_T is pure noise and v = -x_0: the model learns to draw from
nothing, which is what lets it make pure white paper and solid black. For comparisons the same
objective can run Stable Diffusion's own schedule with epsilon-prediction (target = eps); epsilon
with zero SNR is refused, as everywhere in the pack (:func:`mdim_core.sampling.schedule.check_parameterization`).

The schedule math is :mod:`mdim_core.sampling.schedule`'s (``scaled_linear_betas``, ``zero_snr_betas``,
``alphas_cumprod_from_betas``), in float32 as diffusers computes it, so training and sampling agree.
"""

from __future__ import annotations

import torch

from ..sampling import schedule

#: What the saved scheduler config says, keyed by (prediction, zero_snr): the spacing used to sample.
TIMESTEP_SPACING = {True: "trailing", False: "leading"}


class NoiseObjective:
    """The diffusion training objective of one run.

    Args:
        prediction: ``"v_prediction"`` (MDIM) or ``"epsilon"`` (Stable Diffusion).
        zero_snr: rescale the betas to zero terminal SNR (MDIM) or keep SD's schedule.
        num_train_timesteps: T (1000 for SD).
    """

    def __init__(self, prediction: str = "v_prediction", zero_snr: bool = True, num_train_timesteps: int = 1000):
        schedule.check_parameterization(prediction, zero_snr=zero_snr)
        self.prediction = prediction
        self.zero_snr = bool(zero_snr)
        self.num_train_timesteps = int(num_train_timesteps)
        betas = schedule.scaled_linear_betas(self.num_train_timesteps)
        if self.zero_snr:
            betas = schedule.zero_snr_betas(betas)
        #: float32 ``[T]``; ``alphas_cumprod[-1] == 0`` exactly with zero SNR.
        self.alphas_cumprod = schedule.alphas_cumprod_from_betas(betas).float()

    def sample_timesteps(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` timesteps drawn uniformly from 0..T-1 (int64, on the generator's device)."""
        return torch.randint(0, self.num_train_timesteps, (n,), generator=generator, dtype=torch.int64)

    def _coefficients(self, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.alphas_cumprod.to(like.device)[t.to(like.device)]
        shape = (-1,) + (1,) * (like.ndim - 1)
        return (a**0.5).reshape(shape).to(like.dtype), ((1.0 - a) ** 0.5).reshape(shape).to(like.dtype)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps (diffusers' ``add_noise``)."""
        s, n = self._coefficients(t, x0)
        return s * x0 + n * noise

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the UNet must output: v = sqrt(a_t) eps - sqrt(1 - a_t) x_0, or eps."""
        if self.prediction == "epsilon":
            return noise
        s, n = self._coefficients(t, x0)
        return s * noise - n * x0

    @staticmethod
    def loss(prediction: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Mean squared error, in float32. ``weight`` ``[B, 1, h, w]`` (0/1) leaves cells out of the mean
        (the paper-white padding of pages smaller than a crop); None or all ones is the plain MSE."""
        err = (prediction.float() - target.float()) ** 2
        if weight is None:
            return err.mean()
        w = weight.to(err).expand_as(err)
        return (err * w).sum() / w.sum().clamp_min(1.0)

    def scheduler_config(self) -> dict:
        """The diffusers scheduler config of a model trained with this objective (``scheduler_config.json``).

        With zero SNR it says ``rescale_betas_zero_snr``, ``v_prediction`` and ``trailing`` timesteps, so
        ``python -m mdim_core inpaint`` (and any diffusers pipeline) samples the model as it was trained.
        """
        return {
            "_class_name": "DDIMScheduler",
            "num_train_timesteps": self.num_train_timesteps,
            "beta_start": schedule.SD_BETA_START,
            "beta_end": schedule.SD_BETA_END,
            "beta_schedule": "scaled_linear",
            "prediction_type": self.prediction,
            "rescale_betas_zero_snr": self.zero_snr,
            "timestep_spacing": TIMESTEP_SPACING[self.zero_snr],
            "clip_sample": False,
            "set_alpha_to_one": self.zero_snr,  # zero SNR: the last DDIM step lands on x_0 exactly
            "steps_offset": 0 if self.zero_snr else 1,
        }
