"""MDIM Zero-SNR Model and MDIM Trailing Sigmas inside a real ComfyUI (in-process, CPU).

Needs COMFYUI_DIR (skipped otherwise). A tiny random-weight SD1.5 UNet is built with ComfyUI's own classes;
the exactness tests replace the UNet's output by an oracle that returns the exact v for a known x0, so they
check the whole host path (our model_sampling patch, our sigmas, ComfyUI's samplers) without weights.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
if not COMFYUI_DIR:
    pytest.skip("COMFYUI_DIR is not set: real-host tests skipped", allow_module_level=True)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from comfy_harness import import_comfy_on_cpu, load_pack_in_process  # noqa: E402

import_comfy_on_cpu(COMFYUI_DIR)

import comfy.ldm.modules.diffusionmodules.openaimodel as openaimodel  # noqa: E402
import comfy.model_base  # noqa: E402
import comfy.model_sampling  # noqa: E402
import comfy.ops  # noqa: E402
import comfy.sample  # noqa: E402
import comfy.samplers  # noqa: E402
import comfy.sd  # noqa: E402
import comfy.supported_models  # noqa: E402
import comfy_extras.nodes_model_advanced as core_advanced  # noqa: E402
import torch  # noqa: E402
from tiny_checkpoint import UNET_CONFIG, _init_module  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


pack = load_pack_in_process()
from mdim_pack_under_test.mdim_core.sampling import schedule  # noqa: E402
from mdim_pack_under_test.nodes import schedule_nodes  # noqa: E402


@pytest.fixture(scope="module")
def sd15_model():
    """A ModelPatcher of a tiny random SD1.5 UNet, detected by ComfyUI as SD1.5 (epsilon)."""
    torch.manual_seed(0)
    unet = openaimodel.UNetModel(
        in_channels=4, operations=comfy.ops.disable_weight_init, dtype=torch.float32, **UNET_CONFIG
    )
    _init_module(unet, torch.Generator().manual_seed(0))
    with torch.no_grad():
        unet.out[2].weight.mul_(0.1)
    model = comfy.sd.load_diffusion_model_state_dict(unet.state_dict())
    assert isinstance(model.model.model_config, comfy.supported_models.SD15)
    assert model.model.model_type == comfy.model_base.ModelType.EPS
    return model


def _cond(batch=1):
    return [[torch.zeros(batch, 77, 768), {}]]


def _snapshot(model):
    return (dict(model.object_patches), repr(model.model_options), model.get_model_object("model_sampling"))


def _ksample(model, seed=7, steps=4, cfg=5.0):
    latent = torch.zeros(1, 4, 8, 8)
    noise = comfy.sample.prepare_noise(latent, seed)
    pos = [[torch.full((1, 77, 768), 0.1), {}]]
    return comfy.sample.sample(
        model, noise, steps, cfg, "euler", "simple", pos, _cond(), latent, seed=seed, disable_pbar=True
    )


def test_patch_returns_zero_snr_vpred_clone_and_leaves_input_untouched(sd15_model):
    before = _snapshot(sd15_model)
    ref = _ksample(sd15_model)
    (patched,) = schedule_nodes.MDIMZeroSNRModel.execute(sd15_model, "v_prediction", 0.7, False).args
    assert patched is not sd15_model
    ms = patched.get_model_object("model_sampling")
    assert isinstance(ms, comfy.model_sampling.V_PREDICTION)
    assert abs(float(ms.sigma_max) - 4518.76) < 0.01
    # the host's own zero-SNR sigmas and ours agree
    core = comfy.model_sampling.ModelSamplingDiscrete(sd15_model.model.model_config, zsnr=True)
    assert torch.allclose(ms.sigmas, core.sigmas, rtol=1e-6)
    assert torch.allclose(schedule.zero_snr_sigmas(), core.sigmas, rtol=1e-5)
    # the input model is unchanged and a core KSampler on it is bit-identical after our node ran
    assert _snapshot(sd15_model) == before
    assert abs(float(sd15_model.get_model_object("model_sampling").sigma_max) - 14.6146) < 1e-3
    _ksample(patched)
    assert torch.equal(_ksample(sd15_model), ref)
    assert not torch.equal(_ksample(patched), ref)


class OracleUNet(torch.nn.Module):
    """Stands in for the UNet: returns the exact v for a known x0 (in the model's latent space).

    The host feeds it ``calculate_input(sigma, x)`` and the discrete timestep, exactly as it feeds a real UNet,
    and turns its output into x0 with the patched model_sampling, so the whole parameterization is exercised.
    """

    def __init__(self, model_sampling, x0):
        super().__init__()
        self.ms = model_sampling
        self.x0 = x0
        self.dtype = torch.float32  # read by the host to cast inputs

    def forward(self, x_in, timesteps, context=None, **kwargs):
        sigma = self.ms.sigma(timesteps).double().view(-1, 1, 1, 1)
        a = 1.0 / (1.0 + sigma**2)
        # x_in = sqrt(a) x0 + sqrt(1-a) eps  and  v = sqrt(a) eps - sqrt(1-a) x0
        return ((a.sqrt() * x_in.double() - self.x0) / (1.0 - a).sqrt()).to(x_in.dtype)


def _oracle(model, x0_internal):
    m = model.clone()
    m.add_object_patch("diffusion_model", OracleUNet(model.get_model_object("model_sampling"), x0_internal))
    return m


@pytest.mark.parametrize("sampler_name", ["euler", "ddim", "dpmpp_2m"])
@pytest.mark.parametrize("steps,denoise", [(10, 1.0), (30, 1.0), (25, 0.5)])
def test_oracle_v_reproduces_x0_with_trailing_sigmas(sd15_model, sampler_name, steps, denoise):
    patched = schedule_nodes.patch_zero_snr(sd15_model, "v_prediction", 0.0)
    (sigmas,) = schedule_nodes.MDIMTrailingSigmas.execute(patched, steps, denoise).args
    assert len(sigmas) == steps + 1 and sigmas[-1] == 0  # KSampler's rule: steps run, the tail of int(steps / denoise)
    if denoise == 1.0:
        assert abs(float(sigmas[0]) - 4518.76) < 0.01
    else:
        ms = patched.get_model_object("model_sampling")
        assert int(ms.timestep(sigmas[:1])) == 499
    g = torch.Generator().manual_seed(11)
    x0 = (torch.rand(1, 4, 8, 8, generator=g, dtype=torch.float64) * 2 - 1) * 0.9
    model = _oracle(patched, x0)
    latent = torch.zeros(1, 4, 8, 8)
    noise = comfy.sample.prepare_noise(latent, 3)
    sampler = comfy.samplers.sampler_object(sampler_name)
    out = comfy.sample.sample_custom(
        model, noise, 1.0, sampler, sigmas, _cond(), _cond(), latent, disable_pbar=True, seed=3
    )
    scale = patched.model.latent_format.scale_factor
    assert torch.max(torch.abs(out.double() * scale - x0)).item() < 1e-3


@pytest.mark.parametrize("steps,denoise", [(25, 1.0), (25, 0.5), (20, 0.4), (8, 0.8), (10, 0.4)])
def test_trailing_sigmas_equal_core_basic_scheduler_simple_where_both_space_evenly(sd15_model, steps, denoise):
    """Where 1000 / int(steps / denoise) is whole, 'simple' picks the trailing timesteps: the same SIGMAS as core
    BasicScheduler(steps, denoise), which also runs the last ``steps`` of ``int(steps / denoise)``."""
    import importlib

    patched = schedule_nodes.patch_zero_snr(sd15_model, "v_prediction", 0.0)
    (ours,) = schedule_nodes.MDIMTrailingSigmas.execute(patched, steps, denoise).args
    core = importlib.import_module("comfy_extras.nodes_custom_sampler").BasicScheduler
    (theirs,) = core.execute(patched, "simple", steps, denoise).args
    assert theirs.shape == ours.shape and torch.allclose(theirs.float(), ours.float(), rtol=1e-6, atol=0)


def test_oracle_with_ksampler_simple_scheduler(sd15_model):
    """The shipped KSampler workflow path: scheduler 'simple' on the patched model starts at the terminal sigma."""
    patched = schedule_nodes.patch_zero_snr(sd15_model, "v_prediction", 0.7)
    x0 = torch.linspace(-0.9, 0.9, 256, dtype=torch.float64).view(1, 4, 8, 8)
    model = _oracle(patched, x0)
    latent = torch.zeros(1, 4, 8, 8)
    noise = comfy.sample.prepare_noise(latent, 5)
    out = comfy.sample.sample(
        model, noise, 20, 7.0, "euler", "simple", _cond(), _cond(), latent, seed=5, disable_pbar=True
    )
    scale = patched.model.latent_format.scale_factor
    assert torch.max(torch.abs(out.double() * scale - x0)).item() < 1e-3


def test_cfg_rescale_runs_after_other_cfg_patches_and_is_not_duplicated(sd15_model):
    (with_core_rescale,) = core_advanced.RescaleCFG().patch(sd15_model, 0.5)
    patched = schedule_nodes.patch_zero_snr(with_core_rescale, "v_prediction", 0.7)
    assert "sampler_cfg_function" in patched.model_options  # the other pack's/core patch survives
    twice = schedule_nodes.patch_zero_snr(patched, "v_prediction", 0.3)
    hooks = [
        f
        for f in twice.model_options["sampler_post_cfg_function"]
        if isinstance(f, schedule_nodes.ZeroSNRRescaleCFG)
    ]
    assert len(hooks) == 1 and hooks[0].phi == 0.3
    off = schedule_nodes.patch_zero_snr(patched, "v_prediction", 0.0)
    assert not any(
        isinstance(f, schedule_nodes.ZeroSNRRescaleCFG)
        for f in off.model_options.get("sampler_post_cfg_function", [])
    )
    # the hook applies exactly mdim_core's rescale to the guided prediction
    hook = schedule_nodes.ZeroSNRRescaleCFG(0.7, "v_prediction")
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, 8, 8, generator=g) * 5
    sigma = torch.tensor([4.0, 4.0])
    cond, uncond = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    cfg = uncond + 6 * (cond - uncond)
    args = {
        "denoised": cfg,
        "cond_denoised": cond,
        "uncond_denoised": uncond,
        "cond_scale": 6.0,
        "input": x,
        "sigma": sigma,
    }
    expected = schedule.rescale_cfg_denoised(x, sigma, cfg, cond, 0.7)
    assert torch.equal(hook(args), expected)
    assert not torch.allclose(expected, cfg)
    assert torch.equal(hook({**args, "uncond_denoised": None}), cfg)
    assert not torch.equal(_ksample(twice), _ksample(off))


def test_epsilon_is_refused_unless_opted_in(sd15_model):
    with pytest.raises(ValueError, match="needs a v-prediction model"):
        schedule_nodes.MDIMZeroSNRModel.execute(sd15_model, "epsilon", 0.7, False)
    (patched,) = schedule_nodes.MDIMZeroSNRModel.execute(sd15_model, "epsilon", 0.7, True).args
    assert isinstance(patched.get_model_object("model_sampling"), comfy.model_sampling.EPS)


def test_contradiction_with_a_host_declared_v_model_is_reported(sd15_model, caplog):
    declared = sd15_model.clone()
    declared.model = type("Declared", (), {})()  # a stand-in base model object: never touch the shared one
    declared.model.model_type = comfy.model_base.ModelType.V_PREDICTION
    declared.model.model_config = sd15_model.model.model_config
    assert schedule_nodes.host_declared_prediction(declared) == "v_prediction"
    assert schedule_nodes.host_declared_prediction(sd15_model) is None  # SD1.5: the host cannot tell
    with caplog.at_level(logging.WARNING, logger="MDIM"):
        declared.get_model_object = sd15_model.get_model_object
        declared.clone = sd15_model.clone
        schedule_nodes.patch_zero_snr(declared, "epsilon", 0.7, allow_epsilon=True)
    assert "checkpoint declares v_prediction" in caplog.text


def test_non_discrete_models_are_refused(sd15_model):
    (flow,) = core_advanced.ModelSamplingSD3().patch(sd15_model, 3.0)
    with pytest.raises(ValueError, match="not a discrete timestep schedule"):
        schedule_nodes.MDIMZeroSNRModel.execute(flow, "v_prediction", 0.7, False)
    with pytest.raises(ValueError, match="not a discrete timestep schedule"):
        schedule_nodes.MDIMTrailingSigmas.execute(flow, 10, 1.0)
    fake = sd15_model.clone()
    fake.model = type("FlowModel", (), {"model_type": comfy.model_base.ModelType.FLOW})()
    with pytest.raises(ValueError, match="samples as FLOW"):
        schedule_nodes.patch_zero_snr(fake)


@pytest.mark.parametrize(
    "steps,denoise,match",
    [
        (0, 1.0, "steps must be"),
        (1001, 1.0, "more than the model's 1000 timesteps"),
        (600, 0.5, "need a schedule of 1200 steps, more than the model's 1000 timesteps"),
        (10, -0.1, r"denoise must be in \(0, 1\]"),
        (10, 1.5, r"denoise must be in \(0, 1\]"),
    ],
)
def test_trailing_sigmas_bad_input(sd15_model, steps, denoise, match):
    with pytest.raises(ValueError, match=match):
        schedule_nodes.MDIMTrailingSigmas.execute(sd15_model, steps, denoise)


def test_trailing_sigmas_at_denoise_0_are_empty_like_core_basic_scheduler(sd15_model):
    """Nothing to denoise: no sigmas (samplers then return the latent as it is), as core BasicScheduler does."""
    from comfy_extras.nodes_custom_sampler import BasicScheduler

    ours = schedule_nodes.MDIMTrailingSigmas.execute(sd15_model, 10, 0.0)[0]
    core = BasicScheduler.execute(sd15_model, "simple", 10, 0.0)[0]
    assert ours.numel() == 0 and core.numel() == 0


def test_bad_cfg_rescale(sd15_model):
    with pytest.raises(ValueError, match=r"cfg_rescale \(phi\) must be in \[0, 1\]"):
        schedule_nodes.MDIMZeroSNRModel.execute(sd15_model, "v_prediction", 1.5, False)


def _load_pack_without(monkeypatch, caplog, hidden: tuple[str, ...], name: str):
    """The pack loaded under a fresh package name with the modules ``hidden`` made unimportable: node ids, log."""
    import asyncio

    spec = importlib.util.spec_from_file_location(name, REPO / "__init__.py", submodule_search_locations=[str(REPO)])
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    for key in [k for k in list(sys.modules) if k in hidden or k.startswith(tuple(h + "." for h in hidden))] + list(hidden):
        monkeypatch.setitem(sys.modules, key, None)  # makes `import <hidden>...` raise ImportError
    spec.loader.exec_module(module)
    with caplog.at_level(logging.WARNING, logger="MDIM"):
        extension = asyncio.run(module.comfy_entrypoint())
        node_ids = [cls.GET_SCHEMA().node_id for cls in asyncio.run(extension.get_node_list())]
    for key in [k for k in sys.modules if k.startswith(name + ".")]:
        monkeypatch.delitem(sys.modules, key)
    return node_ids, [r.getMessage() for r in caplog.records if "disabled" in r.getMessage()]


def test_every_node_loads_with_comfyuis_own_requirements(monkeypatch, caplog):
    """diffusers is not among ComfyUI's requirements: with it hidden, every node still loads, nothing is disabled."""
    everything, _ = _load_pack_without(monkeypatch, caplog, (), "mdim_pack_with_everything")
    caplog.clear()
    node_ids, disabled = _load_pack_without(monkeypatch, caplog, ("diffusers",), "mdim_pack_without_diffusers")
    assert node_ids == everything and "MDIM_ZeroSNRModel" in node_ids and "MDIM_SGIMInpaint" in node_ids
    assert disabled == []
