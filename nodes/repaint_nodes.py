"""MDIM RePaint Sampler: RePaint resampling (Lugmayr et al. 2022) as a SAMPLER.

The sampler loop lives in ``mdim_core.sampling.repaint``; this module adapts it to ComfyUI's
sampler contract (``comfy.samplers.KSAMPLER``): the sampler function gets the host's inpainting
wrapper (``KSamplerX0Inpaint``, carrying the original latent and the run's noise), the sigma
list, and ``extra_args`` with the noise mask (``denoise_mask``), the model options and the seed.
The mask is applied once, by the RePaint loop (the wrapper is called without it), per step through
the model's ``denoise_mask_function`` when one is set (e.g. Differential Diffusion). The progress
total counts the resampling: ``RePaintSampler.sample`` hands the host's callback the number of
model calls of the run instead of the number of sigmas.

Works wherever a SAMPLER goes: SamplerCustom, SamplerCustomAdvanced (with any guider), MDIM SGIM
Inpaint's ``sampler`` input (both passes; ``mdim_callbacks`` tells its progress bar how many calls a
pass makes), and any node that samples through ``comfy.sample.sample_custom`` with a noise mask.
"""

from __future__ import annotations

import logging

import comfy.model_management
import comfy.model_sampling
import comfy.samplers
from comfy_api.latest import io

from ..mdim_core.sampling import repaint

log = logging.getLogger("MDIM")

STEP_OPTIONS = list(repaint.STEP_RULES)
DEFAULT_STEP = "ddpm"


def _variance_exploding_types() -> tuple[type, ...]:
    """Model parameterizations whose noised latent is ``x0 + sigma * noise`` (SD1.x/2.x/SDXL and kin)."""
    names = ("EPS", "V_PREDICTION_DDPM")  # EPS covers V_PREDICTION, EDM, X0; the second is newer hosts'
    return tuple(getattr(comfy.model_sampling, n) for n in names if hasattr(comfy.model_sampling, n))


def check_model_sampling(model_k) -> None:
    """Refuse models that do not noise as ``x0 + sigma * noise`` (flow matching: SD3, Flux, ...)."""
    try:
        sampling = model_k.inner_model.inner_model.model_sampling
    except AttributeError:  # a wrapper of another shape: nothing to check against
        return
    if not isinstance(sampling, _variance_exploding_types()):
        raise ValueError(
            "sampler: MDIM RePaint Sampler works with models that noise as x0 + sigma * noise (SD1.x, SD2.x, "
            f"SDXL: epsilon or v-prediction); this model samples as {type(sampling).__name__} (flow matching or "
            "another parameterization), where its re-noising would be wrong. Use a core sampler with this model."
        )


def sample_repaint(
    model,
    x,
    sigmas,
    extra_args=None,
    callback=None,
    disable=None,
    jump_length: int = 10,
    jump_n_sample: int = 10,
    step: str = DEFAULT_STEP,
):
    """A k-diffusion sampler function (what ``comfy.samplers.KSAMPLER`` calls) running RePaint."""
    check_model_sampling(model)
    extra_args = dict(extra_args or {})
    denoise_mask = extra_args.pop("denoise_mask", None)
    model_options = extra_args.get("model_options") or {}
    s_in = x.new_ones([x.shape[0]])

    def denoise(x_, sigma):
        comfy.model_management.throw_exception_if_processing_interrupted()
        return model(x_, sigma * s_in, denoise_mask=None, **extra_args)  # the loop applies the mask

    mask = latent = noise = None
    if denoise_mask is not None:
        latent, noise = getattr(model, "latent_image", None), getattr(model, "noise", None)
        mask_function = model_options.get("denoise_mask_function")
        if mask_function is None:
            mask = denoise_mask
        else:

            def mask(sigma):
                return mask_function(
                    sigma * s_in, denoise_mask, extra_options={"model": model.inner_model, "sigmas": sigmas}
                )
    else:
        log.warning(
            "[MDIM] RePaint Sampler: the latent has no noise mask, so nothing is known to harmonise with; "
            "sampling the whole latent with resampling jumps (connect Set Latent Noise Mask to inpaint)"
        )
    steps = len(sigmas) - 1
    if steps >= 1 and jump_n_sample > 1 and repaint.jump_points(steps, jump_length, jump_n_sample) == 0:
        log.info(
            "[MDIM] RePaint Sampler: %d step(s) leave no room for a jump of %d steps; sampling without resampling "
            "(lower jump_length below the number of steps to resample)",
            steps,
            jump_length,
        )
    bar = None
    if not disable and steps >= 1:
        from tqdm.auto import tqdm

        bar = tqdm(total=repaint.model_calls(steps, jump_length, jump_n_sample))

    def report(info):
        if bar is not None:
            bar.update(1)
        if callback is not None:
            callback(info)

    try:
        return repaint.sample(
            denoise,
            x,
            sigmas,
            latent=latent,
            noise=noise,
            mask=mask,
            jump_length=jump_length,
            jump_n_sample=jump_n_sample,
            step=step,
            seed=extra_args.get("seed"),
            callback=report,
        )
    finally:
        if bar is not None:
            bar.close()


class RePaintSampler(comfy.samplers.KSAMPLER):
    """ComfyUI SAMPLER running RePaint; its progress total is the run's number of model calls."""

    def __init__(self, jump_length: int = 10, jump_n_sample: int = 10, step: str = DEFAULT_STEP):
        repaint.jump_schedule(1, jump_length, jump_n_sample)  # validates both
        if step not in repaint.STEP_RULES:
            raise ValueError(f"step: expected one of {', '.join(repaint.STEP_RULES)}, got {step!r}")
        self.jump_length, self.jump_n_sample, self.step = int(jump_length), int(jump_n_sample), step
        options = {"jump_length": self.jump_length, "jump_n_sample": self.jump_n_sample, "step": step}
        super().__init__(sample_repaint, extra_options=options)

    def model_calls(self, sigmas) -> int:
        """Model calls (= progress steps) of a run over ``sigmas`` (a sigma list, or its number of steps)."""
        steps = sigmas if isinstance(sigmas, int) else len(sigmas) - 1
        return repaint.model_calls(steps, self.jump_length, self.jump_n_sample) if steps >= 1 else 0

    def mdim_callbacks(self, steps: int) -> int:
        """Callbacks of a pass of ``steps`` steps: what MDIM SGIM Inpaint asks a SAMPLER to share its bar."""
        return self.model_calls(int(steps))

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, *args, **kwargs):
        if callback is not None:
            total, host_callback = self.model_calls(sigmas), callback

            def callback(step, x0, x, _sigma_steps):
                return host_callback(step, x0, x, total)

        return super().sample(model_wrap, sigmas, extra_args, callback, noise, *args, **kwargs)


class MDIMRePaintSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MDIM_RePaintSampler",
            display_name="MDIM RePaint Sampler",
            category="MDIM/sampling",
            description=(
                "RePaint (Lugmayr et al. 2022) as a sampler for SamplerCustom / SamplerCustomAdvanced: inpaints "
                "with any checkpoint, also one never trained for inpainting. At every step the known part of the "
                "latent (outside the noise mask) is the original noised to that step, the masked part is drawn; "
                "after every jump_length steps the whole latent is noised back up and that stretch is drawn "
                "again, so the fill adapts to its surroundings. Costs more model calls (30 steps with the "
                "defaults: 210). Needs a noise mask on the latent (Set Latent Noise Mask)."
            ),
            inputs=[
                io.Int.Input(
                    "jump_length",
                    default=10,
                    min=1,
                    max=1000,
                    tooltip=(
                        "Steps per resampled stretch (j in the paper): after this many steps the latent jumps back "
                        "up by as many steps. Must be below the number of steps for any resampling to happen."
                    ),
                ),
                io.Int.Input(
                    "jump_n_sample",
                    default=10,
                    min=1,
                    max=100,
                    tooltip=(
                        "How often each stretch is drawn (r in the paper, the resample count). 1 = no resampling "
                        "(plain inpainting with the known part replaced each step). Each extra pass adds "
                        "jump_length model calls per stretch."
                    ),
                ),
                io.Combo.Input(
                    "step",
                    options=STEP_OPTIONS,
                    default=DEFAULT_STEP,
                    tooltip=(
                        "How each step draws the masked part: 'ddpm' adds fresh noise each step (the paper's "
                        "choice; harmonises best), 'euler' is ComfyUI's euler (deterministic), 'ddim' the same "
                        "deterministic step computed from the predicted image and noise."
                    ),
                ),
            ],
            outputs=[
                io.Sampler.Output(
                    tooltip="Connect to SamplerCustom / SamplerCustomAdvanced 'sampler' (or MDIM SGIM Inpaint)."
                )
            ],
        )

    @classmethod
    def execute(cls, jump_length, jump_n_sample, step) -> io.NodeOutput:
        return io.NodeOutput(RePaintSampler(jump_length, jump_n_sample, step))


NODES = [MDIMRePaintSampler]
