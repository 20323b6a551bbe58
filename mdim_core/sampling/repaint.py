"""RePaint resampling (Lugmayr et al., CVPR 2022) as a sampler over any k-diffusion sigma list.

RePaint inpaints with a diffusion model that was never trained for inpainting. At every step
the known part of the latent is taken from the forward process (the original, noised to the
current sigma), the unknown part from the reverse process (one denoising step). Replacing the
known part alone gives fills that ignore their surroundings; RePaint therefore *resamples*:
after denoising a stretch of ``jump_length`` steps it jumps back up in time by re-noising the
whole latent and denoises that stretch again, ``jump_n_sample`` times in all, so the unknown
part can adjust to the known one.

The jump schedule is the paper's (``get_schedule_jump`` of the official code with
``n_sample = 1`` and no nested jumps; diffusers' ``RePaintScheduler.set_timesteps``):
:func:`jump_schedule` gives the time indices ``T-1, ..., 0, -1``. Index ``t`` of a run of
``T`` steps is sigma index ``T - 1 - t`` of the sigma list (``sigmas[0]`` is the start,
``sigmas[T]`` the end, usually 0), so the schedule maps onto any descending sigma list: a full
schedule, a zero-terminal-SNR one (sigma_max ~ 4518.8), or the tail of a ``denoise < 1``
pass. Jumps never rise above ``sigmas[0]``.

Everything is in sigma space (variance exploding, ``x = x0 + sigma * noise``, ComfyUI's
convention for epsilon/v-prediction models):

- known region before each model call: ``noise * sigma + latent`` (the run's own noise, as
  ComfyUI's noise mask does);
- a step down from ``sigma`` to ``sigma_next``: ``euler`` (``x + (sigma_next - sigma) * d``,
  ComfyUI's Euler exactly), ``ddim`` (``x0 + sigma_next * eps``, the same deterministic step
  written from x0 and eps), or ``ddpm`` (the ancestral step, DDIM with eta = 1, the stochastic
  step of the paper);
- a jump up from ``sigma_lo`` to ``sigma_hi``: ``x + sqrt(sigma_hi^2 - sigma_lo^2) * eps`` with
  fresh noise from a generator seeded from the run's seed.

Plain torch; nothing imports ComfyUI.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

STEP_RULES = ("euler", "ddim", "ddpm")

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
MaskAt = Callable[[torch.Tensor], "torch.Tensor | None"]

# Mixed into the run's seed so the resampling noise never repeats the run's initial noise.
_NOISE_STREAM = 0x52455041  # "REPA"


# --- the jump schedule ------------------------------------------------------------------------


def jump_schedule(num_steps: int, jump_length: int = 10, jump_n_sample: int = 10) -> list[int]:
    """The RePaint time indices for a run of ``num_steps`` steps, from ``num_steps - 1`` to ``-1``.

    Neighbouring entries differ by exactly 1: a decrease is a denoising step, an increase a step
    back up in time. Jump points are ``t = 0, jump_length, 2 * jump_length, ...`` below
    ``num_steps - jump_length``; each time the descent reaches one with jumps left, it climbs
    ``jump_length`` steps and descends again, ``jump_n_sample - 1`` times per point.
    ``jump_n_sample = 1`` gives the plain descent ``num_steps - 1, ..., 0, -1``.
    """
    _check_int("steps", num_steps, 1)
    _check_int("jump_length", jump_length, 1)
    _check_int("jump_n_sample", jump_n_sample, 1)
    left = {j: jump_n_sample - 1 for j in range(0, num_steps - jump_length, jump_length)}
    t = num_steps - 1
    times = [t]
    while t >= 0:
        t -= 1
        times.append(t)
        if left.get(t, 0) > 0:
            left[t] -= 1
            times.extend(range(t + 1, t + jump_length + 1))
            t += jump_length
    return times


def jump_points(num_steps: int, jump_length: int, jump_n_sample: int) -> int:
    """How many times the run jumps back (``0`` when ``jump_n_sample`` is 1 or the stretch is too short)."""
    _check_int("steps", num_steps, 1)
    _check_int("jump_length", jump_length, 1)
    _check_int("jump_n_sample", jump_n_sample, 1)
    return len(range(0, num_steps - jump_length, jump_length)) * (jump_n_sample - 1)


def model_calls(num_steps: int, jump_length: int = 10, jump_n_sample: int = 10) -> int:
    """Denoising steps (model calls) of a RePaint run: the plain ``num_steps`` plus every step re-done
    after a jump (``jump_length`` per jump). This is the run's progress total."""
    return num_steps + jump_points(num_steps, jump_length, jump_n_sample) * jump_length


@dataclass(frozen=True)
class Move:
    """One move along the sigma list: ``down`` (one model call, ``src -> src + 1``) or ``up`` (a jump,
    ``src -> dst`` with ``dst < src``). ``src``/``dst`` are indices into the sigma list."""

    down: bool
    src: int
    dst: int


def moves(num_steps: int, jump_length: int = 10, jump_n_sample: int = 10) -> list[Move]:
    """The schedule as moves on sigma indices; consecutive steps up are one jump."""
    index = [num_steps - 1 - t for t in jump_schedule(num_steps, jump_length, jump_n_sample)]
    out: list[Move] = []
    for a, b in zip(index[:-1], index[1:]):
        if b > a:
            out.append(Move(True, a, b))
        elif out and not out[-1].down:
            out[-1] = Move(False, out[-1].src, b)
        else:
            out.append(Move(False, a, b))
    return out


# --- the sampler ------------------------------------------------------------------------------


def noise_generator(seed: int | None) -> torch.Generator:
    """The CPU generator of a run's resampling noise, derived from the run's seed (None counts as 0).

    Derived rather than ``manual_seed(seed)``: ComfyUI draws a run's initial noise from a generator
    seeded with the seed itself, and the re-noising must not repeat it.
    """
    if seed is None:
        seed = 0
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed: expected an integer, got {type(seed).__name__}")
    state = np.random.SeedSequence([int(seed) % 2**64, _NOISE_STREAM]).generate_state(1, np.uint64)[0]
    return torch.Generator(device="cpu").manual_seed(int(state))


def sample(
    denoise: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    latent: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    mask: torch.Tensor | MaskAt | None = None,
    jump_length: int = 10,
    jump_n_sample: int = 10,
    step: str = "euler",
    seed: int | None = 0,
    callback: Callable[[dict], None] | None = None,
) -> torch.Tensor:
    """Sample with RePaint resampling along ``sigmas``; returns the final latent.

    Args:
        denoise: ``denoise(x, sigma) -> x0``, the model's estimate of the clean latent from ``x`` at
            noise level ``sigma`` (a 0-d tensor taken from ``sigmas``).
        x: the starting latent at ``sigmas[0]`` (already noised, as k-diffusion samplers get it).
        sigmas: 1-D, non-increasing, every value but the last > 0, the last >= 0. Its length - 1
            is the number of steps T of the schedule.
        latent: the original latent (known region), broadcastable to ``x``; needed with ``mask``.
        noise: the run's unscaled noise (same shape as ``x``); the known region at sigma is
            ``noise * sigma + latent``. Needed with ``mask``.
        mask: 1 = unknown (repaint), 0 = known, broadcastable to ``x``; a soft value ``m`` blends
            ``m`` of the drawn latent with ``1 - m`` of the known one at every step. A callable
            ``mask(sigma) -> tensor`` gives a mask per step (e.g. ComfyUI's denoise_mask_function).
            None: no known region (plain sampling, still with the resampling jumps).
        jump_length, jump_n_sample: the paper's j and r (resample count); ``jump_n_sample = 1`` is
            plain sampling with the known region replaced at each step.
        step: ``euler``, ``ddim`` or ``ddpm`` (see the module docstring).
        seed: seeds the resampling (and ``ddpm``) noise; the same seed gives the same result.
        callback: called after every model call with ``{"i", "total", "x", "denoised", "sigma",
            "sigma_hat"}`` (``i`` counts model calls from 0, ``total`` is :func:`model_calls`). It
            may raise to cancel the run; nothing runs after it.

    Returns:
        The latent at ``sigmas[-1]``; the known region there is ``noise * sigmas[-1] + latent``
        (exactly ``latent`` when the list ends in 0 and the mask is binary).
    """
    if step not in STEP_RULES:
        raise ValueError(f"step: expected one of {', '.join(STEP_RULES)}, got {step!r}")
    if not isinstance(x, torch.Tensor) or x.ndim < 1:
        raise TypeError(f"x: expected a latent tensor, got {type(x).__name__}")
    sigmas = check_sigmas(sigmas)
    n = sigmas.numel() - 1
    plan = moves(n, jump_length, jump_n_sample) if n >= 1 else []
    if n < 1:
        return x
    mask_at = _mask_function(mask, x, latent, noise)
    total = model_calls(n, jump_length, jump_n_sample)
    needs_noise = step == "ddpm" or any(not mv.down for mv in plan)
    generator = noise_generator(seed) if needs_noise else None
    # Jump sizes in float64: at zero SNR sigma^2 ~ 2e7, where float32 loses the difference.
    levels = [float(s) for s in sigmas.double()]
    calls = 0
    for mv in plan:
        if not mv.down:
            lo, hi = levels[mv.src], levels[mv.dst]
            x = x + _fresh(x, generator) * math.sqrt(max(hi * hi - lo * lo, 0.0))
            continue
        sigma, sigma_next = sigmas[mv.src], sigmas[mv.dst]
        m = mask_at(sigma)
        if m is not None:
            x = x * m + (noise * sigma + latent) * (1.0 - m)
        denoised = denoise(x, sigma)
        if callback is not None:  # previews show the original in the known region
            shown = denoised if m is None else denoised * m + latent * (1.0 - m)
            callback(
                {"i": calls, "total": total, "x": x, "denoised": shown, "sigma": sigma, "sigma_hat": sigma}
            )
        calls += 1
        x = _step_down(step, x, denoised, sigma, sigma_next, levels[mv.src], levels[mv.dst], generator)
    m = mask_at(sigmas[n])
    if m is not None:
        x = x * m + (noise * sigmas[n] + latent) * (1.0 - m)
    return x


def _step_down(step, x, denoised, sigma, sigma_next, s, s_next, generator):
    if step == "euler":  # k-diffusion / ComfyUI sample_euler, operation for operation
        d = (x - denoised) / sigma
        dt = sigma_next - sigma
        return x + d * dt
    if step == "ddim":  # eta = 0: keep the predicted noise, move x0 + sigma * eps to sigma_next
        eps = (x - denoised) / sigma
        return denoised + eps * sigma_next
    # ddpm: ancestral step (DDIM with eta = 1): down to sigma_down deterministically, add sigma_up of noise
    sigma_up = math.sqrt(max(s_next**2 * (s**2 - s_next**2) / s**2, 0.0)) if s_next > 0 else 0.0
    sigma_down = math.sqrt(max(s_next**2 - sigma_up**2, 0.0))
    eps = (x - denoised) / sigma
    out = denoised + eps * sigma_down
    if sigma_up > 0:
        out = out + _fresh(x, generator) * sigma_up
    return out


def _fresh(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Standard normal noise of ``like``'s shape, drawn on the CPU (the same on every device)."""
    return torch.randn(like.shape, generator=generator, dtype=torch.float32).to(like.device, like.dtype)


def _mask_function(mask, x: torch.Tensor, latent, noise) -> MaskAt:
    if mask is None:
        return lambda sigma: None
    if latent is None or noise is None:
        raise ValueError(
            "mask: a known region needs both 'latent' (the original) and 'noise' (the run's noise)"
        )
    for name, value in (("latent", latent), ("noise", noise)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name}: expected a tensor, got {type(value).__name__}")
        _check_broadcast(name, value, x)
    if callable(mask) and not isinstance(mask, torch.Tensor):

        def checked(sigma):
            m = mask(sigma)
            if m is not None:
                _check_broadcast("mask", m, x)
            return m

        return checked
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask: expected a tensor or a function of sigma, got {type(mask).__name__}")
    _check_broadcast("mask", mask, x)
    return lambda sigma: mask


def _check_broadcast(name: str, value: torch.Tensor, x: torch.Tensor) -> None:
    try:
        shape = torch.broadcast_shapes(value.shape, x.shape)
    except RuntimeError:
        shape = None
    if shape != x.shape:
        raise ValueError(
            f"{name}: shape {tuple(value.shape)} does not broadcast to the latent's {tuple(x.shape)}"
        )


# --- validation -------------------------------------------------------------------------------


def check_sigmas(sigmas) -> torch.Tensor:
    """A 1-D non-increasing sigma list with every value but the last > 0 and the last >= 0."""
    if not isinstance(sigmas, torch.Tensor):
        try:
            sigmas = torch.as_tensor(sigmas, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(
                f"sigmas: expected a 1-D tensor of noise levels, got {type(sigmas).__name__}"
            ) from None
    if sigmas.ndim != 1:
        raise ValueError(f"sigmas: expected a 1-D list of noise levels, got shape {tuple(sigmas.shape)}")
    if sigmas.numel() == 0:
        return sigmas
    values = sigmas.detach().double().cpu()
    if not bool(torch.isfinite(values).all()):
        raise ValueError("sigmas: contains NaN or infinite values")
    if bool((values[1:] > values[:-1]).any()):
        raise ValueError("sigmas: expected a non-increasing list (from the most noise to the least)")
    if bool((values[:-1] <= 0).any()) or float(values[-1]) < 0:
        raise ValueError("sigmas: every noise level before the last must be > 0 and the last >= 0")
    return sigmas


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
