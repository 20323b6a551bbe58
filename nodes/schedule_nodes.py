"""Zero-terminal-SNR sampling nodes: MDIM Zero-SNR Model and MDIM Trailing Sigmas.

The schedule math lives in ``mdim_core.sampling.schedule``; this module only patches a *clone* of the host's MODEL
(the input model is never changed) and turns the model's sigma table into SIGMAS.
"""

from __future__ import annotations

import logging

import comfy.model_base
import comfy.model_sampling
import comfy.supported_models
import torch
from comfy_api.latest import io

from ..mdim_core.sampling import schedule
from .sgim_host import expect_model

log = logging.getLogger("MDIM")

PREDICTION_OPTIONS = ["v_prediction", "epsilon"]


class ZeroSNRVPrediction(comfy.model_sampling.ModelSamplingDiscrete, comfy.model_sampling.V_PREDICTION):
    """Discrete SD schedule rescaled to zero terminal SNR, v-prediction parameterization."""


class ZeroSNREpsilon(comfy.model_sampling.ModelSamplingDiscrete, comfy.model_sampling.EPS):
    """Zero-SNR schedule with epsilon-prediction (only when the user explicitly opts in)."""


class ZeroSNRRescaleCFG:
    """Post-CFG hook: CFG rescale (Lin et al. 2023) in the model's output space.

    Runs after every other CFG function (``sampler_cfg_function`` of e.g. core RescaleCFG or other packs), so
    both coexist. A model patched twice by MDIM keeps only the newest instance.
    """

    def __init__(self, phi: float, prediction: str):
        self.phi = float(phi)
        self.prediction = prediction

    def __call__(self, args: dict):
        denoised = args["denoised"]
        cond_denoised = args["cond_denoised"]
        if args.get("uncond_denoised") is None or args.get("cond_scale", 1.0) == 1.0 or cond_denoised is None:
            return denoised  # no guidance happened: nothing to rescale
        return schedule.rescale_cfg_denoised(
            args["input"], args["sigma"], denoised, cond_denoised, self.phi, self.prediction
        )


def check_discrete_model(model, input_name: str = "model") -> None:
    """Refuse models that do not sample on a discrete (DDPM-style) timestep schedule."""
    expect_model(model, input_name)
    base = model.model
    model_type = getattr(base, "model_type", None)
    if model_type not in (comfy.model_base.ModelType.EPS, comfy.model_base.ModelType.V_PREDICTION):
        name = getattr(model_type, "name", str(model_type))
        raise ValueError(
            f"{input_name}: zero-terminal-SNR sampling needs a discrete-timestep diffusion model "
            f"(SD1.x, SD2.x, SDXL with epsilon- or v-prediction); this model samples as {name} "
            "(flow-matching, EDM and continuous-time models have no discrete beta schedule to rescale)."
        )
    sampling = model.get_model_object("model_sampling")
    if not isinstance(sampling, comfy.model_sampling.ModelSamplingDiscrete) or isinstance(
        sampling, comfy.model_sampling.ModelSamplingDiscreteEDM
    ):
        raise ValueError(
            f"{input_name}: its sampling was patched to {type(sampling).__name__}, which is not a discrete "
            "timestep schedule. Connect the model before nodes that change its sampling (e.g. ModelSamplingSD3)."
        )


def host_declared_prediction(model) -> str | None:
    """The parameterization the host positively knows from the checkpoint, or None when it cannot tell.

    ComfyUI reads ``v_pred``/``ztsnr`` keys only for SDXL and guesses SD2 v-models from their weights; an SD1.x
    checkpoint always loads as epsilon whatever it was trained with, so it says nothing.
    """
    model_type = model.model.model_type
    config = model.model.model_config
    if model_type == comfy.model_base.ModelType.V_PREDICTION:
        return "v_prediction"
    if isinstance(config, comfy.supported_models.SD20):
        return "epsilon"
    return None


class MDIMZeroSNRModel(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MDIM_ZeroSNRModel",
            display_name="MDIM Zero-SNR Model",
            category="MDIM/sampling",
            description=(
                "Makes the model sample with a zero-terminal-SNR schedule (Lin et al. 2023), as MDIM checkpoints "
                "are trained: starts from pure noise so pages can be pure white and pure black. Returns a patched "
                "copy; the input model is not changed. Use a sampler such as euler/dpmpp_2m/ddim with the "
                "'simple' scheduler (trailing-like), or MDIM Trailing Sigmas."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The loaded diffusion model (e.g. from Load Checkpoint)."),
                io.Combo.Input(
                    "prediction",
                    options=PREDICTION_OPTIONS,
                    default="v_prediction",
                    tooltip=(
                        "What the checkpoint was trained to predict. MDIM checkpoints are v-prediction. ComfyUI "
                        "cannot tell this for SD1.x checkpoints, so say it here."
                    ),
                ),
                io.Float.Input(
                    "cfg_rescale",
                    default=0.7,
                    min=0.0,
                    max=1.0,
                    step=0.01,
                    tooltip=(
                        "CFG rescale factor phi: keeps guided outputs from over-exposing. 0.7 as in the paper; "
                        "0 disables it. Works together with other CFG patches in the graph."
                    ),
                ),
                io.Boolean.Input(
                    "allow_epsilon_zero_snr",
                    default=False,
                    tooltip=(
                        "Expert option. Zero SNR with an epsilon-prediction model is refused because epsilon is "
                        "undefined at SNR 0; enable only if you know your model handles it."
                    ),
                ),
            ],
            outputs=[
                io.Model.Output(tooltip="A patched copy of the model that samples with zero terminal SNR.")
            ],
        )

    @classmethod
    def execute(cls, model, prediction, cfg_rescale, allow_epsilon_zero_snr) -> io.NodeOutput:
        return io.NodeOutput(patch_zero_snr(model, prediction, cfg_rescale, allow_epsilon_zero_snr))


def patch_zero_snr(
    model, prediction: str = "v_prediction", cfg_rescale: float = 0.7, allow_epsilon: bool = False
):
    """A clone of ``model`` with zero-SNR sampling and optional CFG rescale. ``model`` itself is not touched."""
    schedule.check_prediction(prediction)
    schedule.check_phi(cfg_rescale)
    check_discrete_model(model)
    schedule.check_parameterization(prediction, zero_snr=True, allow_epsilon_zero_snr=allow_epsilon)
    declared = host_declared_prediction(model)
    if declared is not None and declared != prediction:
        log.warning(
            "[MDIM] MDIM Zero-SNR Model: prediction is set to %s but the checkpoint declares %s. "
            "Results will be wrong unless the checkpoint really is %s; set prediction to %s otherwise.",
            prediction,
            declared,
            prediction,
            declared,
        )
    sampling_class = ZeroSNRVPrediction if prediction == "v_prediction" else ZeroSNREpsilon
    patched = model.clone()
    patched.add_object_patch("model_sampling", sampling_class(model.model.model_config, zsnr=True))
    post = [
        f
        for f in patched.model_options.get("sampler_post_cfg_function", [])
        if not isinstance(f, ZeroSNRRescaleCFG)
    ]
    patched.model_options["sampler_post_cfg_function"] = post
    if cfg_rescale > 0.0:
        patched.set_model_sampler_post_cfg_function(ZeroSNRRescaleCFG(cfg_rescale, prediction))
    return patched


class MDIMTrailingSigmas(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MDIM_TrailingSigmas",
            display_name="MDIM Trailing Sigmas",
            category="MDIM/sampling",
            description=(
                "Trailing timestep spacing (Lin et al. 2023) for SamplerCustom / SamplerCustomAdvanced and MDIM "
                "SGIM Inpaint: the first step starts at the model's terminal sigma. 'steps' and 'denoise' count as "
                "in KSampler and BasicScheduler: 'steps' steps run, with denoise < 1 the last 'steps' of a "
                "trailing schedule of int(steps / denoise) steps (25 steps at denoise 0.5 start at t=499)."
            ),
            inputs=[
                io.Model.Input(
                    "model",
                    tooltip="The model whose sigma table is used; connect the output of MDIM Zero-SNR Model.",
                ),
                io.Int.Input(
                    "steps",
                    default=30,
                    min=1,
                    max=1000,
                    tooltip="Steps that run, as in KSampler (with denoise < 1 the schedule has int(steps / denoise) steps, at most the model's timesteps).",
                ),
                io.Float.Input(
                    "denoise",
                    default=1.0,
                    min=0.0,
                    max=1.0,
                    step=0.01,
                    tooltip="As KSampler's denoise, in (0, 1]: 1 starts from pure noise; 0.5 runs the second half of a schedule twice as long as steps.",
                ),
            ],
            outputs=[io.Sigmas.Output(tooltip="Descending sigmas ending with 0, for a custom sampler.")],
        )

    @classmethod
    def execute(cls, model, steps, denoise) -> io.NodeOutput:
        return io.NodeOutput(trailing_sigmas_for_model(model, steps, denoise))


def trailing_sigmas_for_model(model, steps: int, denoise: float = 1.0):
    check_discrete_model(model)
    if isinstance(denoise, (int, float)) and denoise == 0:
        return torch.zeros(0)  # nothing to denoise: no sigmas, as core BasicScheduler gives (samplers pass through)
    table = model.get_model_object("model_sampling").sigmas.detach().float().cpu()
    return schedule.trailing_sigmas(table, steps, denoise)


NODES = [MDIMZeroSNRModel, MDIMTrailingSigmas]
