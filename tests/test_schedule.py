"""Zero-terminal-SNR schedule math: parity with diffusers and ComfyUI's formulas, exactness, bad input."""

import math

import pytest
import torch
from diffusers import DDIMScheduler, EulerDiscreteScheduler
from diffusers.guiders.guider_utils import rescale_noise_cfg
from diffusers.schedulers.scheduling_ddim import rescale_zero_terminal_snr
from hypothesis import given, settings
from hypothesis import strategies as st

from mdim_core.sampling import schedule as S


def ddim(**kw):
    return DDIMScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
        prediction_type="v_prediction",
        clip_sample=False,
        set_alpha_to_one=True,  # the last step lands on x0 itself
        **kw,
    )


def test_zero_snr_alphas_cumprod_match_diffusers_ddim():
    ours = S.zero_snr_alphas_cumprod()
    ref = ddim().alphas_cumprod
    assert ours.shape == ref.shape == (1000,)
    assert torch.max(torch.abs(ours - ref)).item() < 1e-6
    assert ours[-1].item() == 0.0  # zero terminal SNR, exactly
    plain = S.alphas_cumprod_from_betas(S.scaled_linear_betas())
    assert abs(ours[0].item() - plain[0].item()) < 1e-7  # first value unchanged
    # SD's own schedule ends at sqrt(alpha_bar_T) = 0.068 (SNR 0.0047): the flaw being fixed.
    assert abs(plain[-1].sqrt().item() - 0.068) < 1e-3


def test_scaled_linear_betas_match_diffusers():
    ref = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).betas
    assert torch.equal(S.scaled_linear_betas(), ref)


@pytest.mark.parametrize("steps", [1, 2, 3, 7, 10, 25, 30, 50, 333, 1000])
def test_trailing_timesteps_match_diffusers(steps):
    sched = ddim()
    sched.set_timesteps(steps)
    assert torch.equal(S.trailing_timesteps(steps), sched.timesteps.to(torch.int64))
    assert S.trailing_timesteps(steps)[0].item() == 999  # trailing starts at the terminal step


def test_trailing_ten_steps_is_the_paper_table():
    assert S.trailing_timesteps(10).tolist() == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("beta_end", [0.012, 0.02])
def test_zero_snr_betas_equal_diffusers_rescale(dtype, beta_end):
    betas = S.scaled_linear_betas(beta_end=beta_end, dtype=dtype)
    ours = S.zero_snr_betas(betas)
    ref = rescale_zero_terminal_snr(betas.clone())
    assert ours.dtype == dtype and torch.equal(ours, ref)
    assert torch.equal(betas, S.scaled_linear_betas(beta_end=beta_end, dtype=dtype))  # input untouched


def diffusers_img2img_timesteps(steps, strength):
    """diffusers StableDiffusionImg2ImgPipeline.get_timesteps, verbatim arithmetic."""
    sched = ddim()
    sched.set_timesteps(steps)
    init_timestep = min(int(steps * strength), steps)
    t_start = max(steps - init_timestep, 0)
    return sched.timesteps[t_start:]


@pytest.mark.parametrize(
    "denoise, schedule", [(0.45, 55), (0.5, 50), (0.6, 41), (0.7, 35), (0.99, 25), (1.0, 25), (0.99995, 25)]
)
def test_ksampler_step_rule_at_25_steps(denoise, schedule):
    # KSampler(25, denoise) samples the last 25 steps of int(25 / denoise) (a denoise above 0.9999 is 1)
    assert S.ksampler_schedule(25, denoise) == (schedule, schedule - 25)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 500), st.floats(0.001, 1.0))
def test_ksampler_step_rule_runs_exactly_steps(steps, denoise):
    total, first = S.ksampler_schedule(steps, denoise)
    assert total - first == steps and first >= 0
    assert total == (steps if denoise > 0.9999 else math.floor(steps / denoise))


def test_trailing_tail_equals_diffusers_img2img_where_both_run_the_same_steps():
    # KSampler(25, 0.5) is diffusers' 50 inference steps at strength 0.5: the same 25 timesteps from t = 499
    total, first = S.ksampler_schedule(25, 0.5)
    ours = S.trailing_timesteps(total)[first:]
    assert torch.equal(ours, diffusers_img2img_timesteps(50, 0.5).to(torch.int64))
    assert ours[0].item() == 499 and len(ours) == 25 and ours[-1].item() == 19
    # at 0.7 they differ: diffusers' 35 steps at 0.7 run int(24.5) = 24 steps, KSampler(25, 0.7) runs 25
    assert len(diffusers_img2img_timesteps(35, 0.7)) == 24 and S.ksampler_schedule(25, 0.7) == (35, 10)


def test_comfy_sigma_space_schedule():
    sig = S.zero_snr_sigmas()
    assert sig.shape == (1000,) and sig.dtype == torch.float32
    assert abs(sig[-1].item() - 4518.76) < 0.01  # ComfyUI's ModelSamplingDiscrete(zsnr=True) sigma_max
    assert bool(torch.all(sig[1:] > sig[:-1]))
    # Same schedule as diffusers' alphas_cumprod (float32 there, float64 here) except the clamped terminal step.
    ref = S.sigmas_from_alphas_cumprod(ddim().alphas_cumprod.double()[:-1]).float()
    assert torch.allclose(sig[:-1], ref, rtol=2e-4)
    # The first sigma is SD's own (rescaling keeps sqrt(alpha_bar_0)); SD's sigma_max is 14.61.
    sd = S.sigmas_from_alphas_cumprod(S.alphas_cumprod_from_betas(S.scaled_linear_betas(dtype=torch.float64)))
    assert abs(sig[0].item() - sd[0].item()) < 1e-6
    assert abs(sd[-1].item() - 14.61) < 0.01


def test_trailing_sigmas_full_and_tail():
    table = S.zero_snr_sigmas()
    full = S.trailing_sigmas(table, 10)
    assert full.shape == (11,) and full[-1].item() == 0.0
    assert torch.equal(full[:-1], table[S.trailing_timesteps(10)])
    assert full[0].item() == table[-1].item()  # starts at the terminal sigma
    tail = S.trailing_sigmas(table, 25, 0.5)  # KSampler's rule: the last 25 of 50 steps
    assert tail.shape == (26,) and tail[0].item() == table[499].item()
    assert torch.equal(tail, torch.cat([S.trailing_sigmas(table, 50)[25:]]))
    assert bool(torch.all(tail[1:] < tail[:-1]))


def test_rescale_cfg_matches_diffusers_and_formula():
    g = torch.Generator().manual_seed(0)
    pos = torch.randn(3, 4, 8, 8, generator=g)
    neg = torch.randn(3, 4, 8, 8, generator=g)
    cfg = neg + 7.5 * (pos - neg)
    ours = S.rescale_cfg(cfg, pos, 0.7)
    assert torch.allclose(ours, rescale_noise_cfg(cfg, pos, guidance_rescale=0.7), atol=1e-6)
    by_hand = (
        0.7 * cfg * pos.std(dim=(1, 2, 3), keepdim=True) / cfg.std(dim=(1, 2, 3), keepdim=True) + 0.3 * cfg
    )
    assert torch.allclose(ours, by_hand, atol=1e-5)
    assert torch.equal(S.rescale_cfg(cfg, pos, 0.0), cfg)
    full = S.rescale_cfg(cfg, pos, 1.0)
    assert torch.allclose(full.std(dim=(1, 2, 3)), pos.std(dim=(1, 2, 3)), rtol=1e-5)


def test_rescale_cfg_in_denoised_space_equals_rescale_in_v_space():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 8, 8, generator=g) * 30.0
    sigma = torch.tensor([29.0, 3.5])
    v_pos, v_neg = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    v_cfg = v_neg + 5.0 * (v_pos - v_neg)
    d = S.rescale_cfg_denoised(
        x, sigma, S.denoised_from_v(x, v_cfg, sigma), S.denoised_from_v(x, v_pos, sigma), 0.7
    )
    expected = S.denoised_from_v(x, rescale_noise_cfg(v_cfg, v_pos, guidance_rescale=0.7), sigma)
    assert torch.allclose(d, expected, atol=1e-4)
    # conversions are inverse of each other
    assert torch.allclose(S.v_from_denoised(x, S.denoised_from_v(x, v_pos, sigma), sigma), v_pos, atol=1e-4)
    assert torch.allclose(
        S.eps_from_denoised(x, S.denoised_from_eps(x, v_pos, sigma), sigma), v_pos, atol=1e-4
    )


# --- exactness: an oracle that knows x0 must be reproduced from pure noise -------------------------------


def _x0(shape=(2, 4, 16, 16)):
    g = torch.Generator().manual_seed(3)
    return torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1


def _oracle_v(sample, t, x0, alphas_cumprod):
    a = alphas_cumprod[t].double()
    # x_t = sqrt(a) x0 + sqrt(1-a) eps  and  v = sqrt(a) eps - sqrt(1-a) x0  =>  v = (sqrt(a) x_t - x0) / sqrt(1-a)
    return ((a.sqrt() * sample.double() - x0) / (1 - a).sqrt()).to(sample.dtype)


@pytest.mark.parametrize("steps", [1, 10, 50])
def test_diffusers_ddim_zero_snr_reproduces_x0(steps):
    sched = ddim()
    sched.set_timesteps(steps)
    x0 = _x0()
    sample = torch.randn(x0.shape, generator=torch.Generator().manual_seed(4))
    for t in sched.timesteps:
        sample = sched.step(_oracle_v(sample, t, x0, sched.alphas_cumprod), t, sample).prev_sample
    assert torch.max(torch.abs(sample.double() - x0)).item() < 1e-3


def test_diffusers_euler_zero_snr_reproduces_x0():
    sched = EulerDiscreteScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
        prediction_type="v_prediction",
    )
    sched.set_timesteps(20)
    assert sched.timesteps[0].item() == 999
    x0 = _x0()
    sample = torch.randn(x0.shape, generator=torch.Generator().manual_seed(5)) * sched.init_noise_sigma
    for t in sched.timesteps:
        model_in = sched.scale_model_input(sample, t)
        sample = sched.step(_oracle_v(model_in, int(t), x0, sched.alphas_cumprod), t, sample).prev_sample
    assert torch.max(torch.abs(sample.double() - x0)).item() < 1e-3


@pytest.mark.parametrize("step_kind", ["euler", "ddim"])
@pytest.mark.parametrize("steps", [1, 10, 30])
def test_sigma_space_trailing_sampling_reproduces_x0(step_kind, steps):
    """k-diffusion style sampling (what ComfyUI runs) with our trailing sigmas and a v-prediction oracle."""
    table = S.zero_snr_sigmas().double()
    sigmas = S.trailing_sigmas(table, steps).double()
    x0 = _x0()
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    x = noise * (1 + sigmas[0] ** 2) ** 0.5  # ComfyUI's max-denoise noise scaling
    for i in range(steps):
        s, s_next = sigmas[i], sigmas[i + 1]
        a = 1 / (1 + s**2)
        model_in = x * a.sqrt()  # V_PREDICTION.calculate_input: x / sqrt(sigma^2 + 1)
        v = (a.sqrt() * model_in - x0) / (1 - a).sqrt()
        denoised = S.denoised_from_v(x, v, s)
        if step_kind == "euler":
            x = x + (x - denoised) / s * (s_next - s)
        else:  # DDIM (eta = 0) written in alpha space
            a_next = 1 / (1 + s_next**2)
            eps = (model_in - a.sqrt() * denoised) / (1 - a).sqrt()
            x_next_alpha = a_next.sqrt() * denoised + (1 - a_next).sqrt() * eps
            x = x_next_alpha / a_next.sqrt()
    assert torch.max(torch.abs(x - x0)).item() < 1e-3


# --- bad input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [0, -3, 1.5, True])
def test_bad_steps(steps):
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        S.trailing_timesteps(steps)


@pytest.mark.parametrize("denoise", [0.0, -0.5, 1.01, float("nan")])
def test_bad_denoise(denoise):
    with pytest.raises(ValueError, match=r"denoise must be in \(0, 1\]"):
        S.trailing_sigmas(S.zero_snr_sigmas(), 10, denoise)


def test_a_schedule_longer_than_the_model_says_how_to_fix():
    with pytest.raises(ValueError, match="need a schedule of 1000 steps, more than the model's 999 timesteps"):
        S.trailing_sigmas(S.zero_snr_sigmas()[:999], 100, 0.1)
    assert len(S.trailing_sigmas(S.zero_snr_sigmas(), 100, 0.1)) == 101


@pytest.mark.parametrize("phi", [-0.1, 1.5, float("nan")])
def test_bad_phi(phi):
    x = torch.ones(1, 1, 2, 2)
    with pytest.raises(ValueError, match=r"cfg_rescale \(phi\) must be in \[0, 1\]"):
        S.rescale_cfg(x, x, phi)


def test_epsilon_with_zero_snr_is_refused_unless_opted_in():
    with pytest.raises(ValueError, match="needs a v-prediction model"):
        S.check_parameterization("epsilon")
    S.check_parameterization("epsilon", allow_epsilon_zero_snr=True)
    S.check_parameterization("v_prediction")
    S.check_parameterization("epsilon", zero_snr=False)
    with pytest.raises(ValueError, match="prediction must be one of"):
        S.check_parameterization("x0")


def test_sigma_table_must_be_ascending():
    with pytest.raises(ValueError, match="ascending"):
        S.trailing_sigmas(S.zero_snr_sigmas().flip(0), 10)
