"""RePaint resampling: the paper's jump schedule, its mapping onto sigma lists, and the sampler loop.

The schedule is checked against an independent construction from the paper's description and
against diffusers' RePaintScheduler; the loop against plain samplers written here, exact oracle
denoisers, and a Gaussian model whose conditional distribution is known in closed form.
"""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import RePaintScheduler
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mdim_core.sampling import repaint as R
from mdim_core.sampling import schedule as S

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- the schedule


def paper_schedule(T: int, j: int, r: int) -> list[int]:
    """Built from the paper's description (Sec. 4.2 and Fig. 9/10), not from its code: descend from
    T-1 to -1; on reaching a jump point (0, j, 2j, ... below T - j), climb j steps and come back
    down to it, r - 1 times in a row."""
    points = set(range(0, T - j, j))
    times = [T - 1]
    for t in range(T - 2, -2, -1):
        times.append(t)
        if t in points:
            for _ in range(r - 1):
                times += list(range(t + 1, t + j + 1)) + list(range(t + j - 1, t - 1, -1))
    return times


@SETTINGS
@given(st.integers(1, 300), st.integers(1, 40), st.integers(1, 12))
def test_jump_schedule_is_the_papers(T, j, r):
    times = R.jump_schedule(T, j, r)
    assert times == paper_schedule(T, j, r)
    assert times[0] == T - 1 and times[-1] == -1
    assert all(abs(a - b) == 1 for a, b in zip(times, times[1:]))
    assert max(times) == T - 1  # never above the start
    downs = sum(b < a for a, b in zip(times, times[1:]))
    assert downs == R.model_calls(T, j, r)
    assert downs == T + (r - 1) * j * len(range(0, T - j, j))


@SETTINGS
@given(st.integers(1, 250), st.integers(1, 30), st.integers(1, 12))
def test_jump_schedule_matches_diffusers_repaint_scheduler(T, j, r):
    sched = RePaintScheduler(num_train_timesteps=1000)
    sched.set_timesteps(T, jump_length=j, jump_n_sample=r)
    stride = 1000 // T
    ours = [t * stride for t in R.jump_schedule(T, j, r)[:-1]]  # diffusers leaves out the final -1
    assert sched.timesteps.tolist() == ours


def test_the_papers_setting_costs_about_ten_times_the_steps():
    # T = 250, j = 10, r = 10 (the paper's): 24 jump points, 9 jumps of 10 steps each
    assert R.model_calls(250, 10, 10) == 250 + 24 * 9 * 10
    assert R.model_calls(30, 10, 10) == 30 + 2 * 9 * 10
    assert R.model_calls(30, 10, 1) == 30
    assert R.model_calls(5, 10, 10) == 5  # the stretch is shorter than one jump: no resampling


def test_moves_collapse_climbs_into_one_jump():
    mv = R.moves(6, 2, 2)
    # times 5 4 3 2 3 4 3 2 1 0 1 2 1 0 -1 -> sigma indices 0 1 2 3 2 1 2 3 4 5 4 3 4 5 6
    assert [(m.down, m.src, m.dst) for m in mv] == [
        (True, 0, 1), (True, 1, 2), (True, 2, 3), (False, 3, 1), (True, 1, 2), (True, 2, 3),
        (True, 3, 4), (True, 4, 5), (False, 5, 3), (True, 3, 4), (True, 4, 5), (True, 5, 6),
    ]  # fmt: skip


@pytest.mark.parametrize(
    "args,match",
    [((0, 10, 10), "steps"), ((10, 0, 10), "jump_length"), ((10, 10, 0), "jump_n_sample"),
     ((10, 2.0, 10), "jump_length"), ((10, True, 10), "jump_length")],
)  # fmt: skip
def test_schedule_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        R.jump_schedule(*args)


# --------------------------------------------------------------------------- helpers


def karras(n: int, hi: float = 14.6, lo: float = 0.03) -> torch.Tensor:
    return torch.cat([torch.logspace(math.log10(hi), math.log10(lo), n), torch.zeros(1)]).float()


def problem(shape=(2, 4, 8, 8), seed=0, sigma0=14.6):
    """(truth, noise, binary mask 1 = unknown, start x) for an inpainting run."""
    g = torch.Generator().manual_seed(seed)
    truth = torch.randn(shape, generator=g)
    noise = torch.randn(shape, generator=g)
    mask = torch.zeros(shape[0], 1, *shape[2:])
    mask[..., 2:6, 1:5] = 1.0
    mask = mask.expand(shape).contiguous()
    return truth, noise, mask, noise * sigma0 + truth


class Recorder:
    """A denoiser that records its inputs and returns ``fn(x, sigma)``."""

    def __init__(self, fn):
        self.fn, self.calls = fn, []

    def __call__(self, x, sigma):
        self.calls.append((x.clone(), float(sigma)))
        return self.fn(x, sigma)


# --------------------------------------------------------------------------- resample 1 == plain samplers


def plain_inpaint(denoise, x, sigmas, latent, noise, mask, step, seed=0):
    """A plain sampler with ComfyUI's noise-mask replacement (KSamplerX0Inpaint): the model sees the known
    region noised to the current sigma, its output's known region is the original. The Euler update
    works on the sampler's own state, as k-diffusion's sample_euler does."""
    gen = R.noise_generator(seed)
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        model_in = x * mask + (noise * s + latent) * (1.0 - mask)
        den = denoise(model_in, s) * mask + latent * (1.0 - mask)
        if step == "euler":
            x = x + (x - den) / s * (s_next - s)
        elif step == "ddim":
            x = den + (model_in - den) / s * s_next
        else:  # ancestral, eta = 1
            a, b = float(s), float(s_next)
            up = math.sqrt(b * b * (a * a - b * b) / (a * a)) if b > 0 else 0.0
            down = math.sqrt(max(b * b - up * up, 0.0))
            x = den + (model_in - den) / s * down
            if up > 0:
                x = x + torch.randn(x.shape, generator=gen) * up
    return x


def tiny_net_denoiser(seed=0, channels=4):
    """A fixed random conv net mixing neighbouring cells and channels (like a UNet, unlike an oracle)."""
    g = torch.Generator().manual_seed(seed)
    w1 = torch.randn(8, channels, 3, 3, generator=g) * 0.2
    w2 = torch.randn(channels, 8, 3, 3, generator=g) * 0.2

    def denoise(x, sigma):
        h = torch.tanh(torch.nn.functional.conv2d(x / (1 + sigma**2) ** 0.5, w1, padding=1))
        return torch.nn.functional.conv2d(h, w2, padding=1)

    return denoise


@pytest.mark.parametrize("step", R.STEP_RULES)
@pytest.mark.parametrize("sigmas", [karras(12), S.trailing_sigmas(S.zero_snr_sigmas(), 10), karras(20)[8:]])
def test_resample_one_equals_the_plain_sampler(step, sigmas):
    truth, noise, mask, _ = problem()
    x = noise * sigmas[0] + truth
    net = tiny_net_denoiser()
    ours = R.sample(net, x, sigmas, latent=truth, noise=noise, mask=mask, jump_n_sample=1, step=step, seed=4)
    ref = plain_inpaint(net, x, sigmas, truth, noise, mask, step, seed=4)
    hole = mask.bool()
    if step == "euler":  # operation for operation: bit for bit where the model draws
        assert torch.equal(ours[hole], ref[hole])
    else:  # the reference rounds in another order
        assert torch.allclose(ours[hole], ref[hole], rtol=1e-5, atol=1e-5)
    # the known region ends exactly on the original; the plain sampler only within float noise
    assert torch.equal(ours[~hole], truth[~hole])
    assert torch.allclose(ref[~hole], truth[~hole], atol=1e-4 * float(sigmas[0]))


def test_resample_one_euler_without_mask_is_sample_euler():
    sigmas = karras(9)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 4, 6, 6, generator=g) * sigmas[0]
    net = tiny_net_denoiser(1)
    ref = x
    for i in range(len(sigmas) - 1):  # k-diffusion sample_euler
        d = (ref - net(ref, sigmas[i])) / sigmas[i]
        ref = ref + d * (sigmas[i + 1] - sigmas[i])
    assert torch.equal(R.sample(net, x, sigmas, jump_n_sample=1, step="euler"), ref)


# --------------------------------------------------------------------------- oracles


@pytest.mark.parametrize("step", R.STEP_RULES)
@pytest.mark.parametrize(
    "sigmas",
    [karras(30), S.trailing_sigmas(S.zero_snr_sigmas(), 30), S.trailing_sigmas(S.zero_snr_sigmas(), 50, 0.5)],
    ids=["karras", "zero_snr", "zero_snr_half"],
)
def test_oracle_reproduces_known_region_and_converges_to_truth(step, sigmas):
    truth, noise, mask, _ = problem(seed=1)
    x = noise * sigmas[0] + truth
    out = R.sample(lambda x_, s: truth, x, sigmas, latent=truth, noise=noise, mask=mask, jump_length=5, jump_n_sample=4,
                   step=step, seed=2)  # fmt: skip
    hole = mask.bool()
    assert torch.equal(out[~hole], truth[~hole])
    assert torch.max(torch.abs(out[hole] - truth[hole])).item() < 1e-3


def test_oracle_that_knows_only_the_known_region_fills_the_hole_from_it():
    """A denoiser that sees the whole latent: it predicts each unknown cell as the mean of the known
    cells of its row. The fill must come from the known region, which the sampler supplies."""
    truth, noise, mask, x = problem(seed=2)
    known = 1.0 - mask

    def denoise(x_, sigma):
        row_mean = (x_ * known).sum(-1, keepdim=True) / known.sum(-1, keepdim=True)  # noisy known cells
        return x_ * 0 + row_mean  # the noise averages out only as sigma falls; the last steps decide

    sigmas = karras(40, lo=1e-5)  # the last model call sees the known cells with noise 1e-5
    out = R.sample(
        denoise, x, sigmas, latent=truth, noise=noise, mask=mask, jump_length=4, jump_n_sample=3, seed=0
    )
    row_truth = (truth * known).sum(-1, keepdim=True) / known.sum(-1, keepdim=True)
    expected = torch.where(mask.bool(), row_truth.expand_as(truth), truth)
    assert torch.allclose(out, expected, atol=1e-3)


def gaussian_pairs(n=20000, rho=0.95, seed=1):
    cov = torch.tensor([[1.0, rho], [rho, 1.0]], dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    x0 = (torch.randn(n, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).T).float()
    noise = torch.randn(n, 2, generator=g)

    def denoise(x, sigma):  # the exact posterior mean E[x0 | x] of N(0, cov)
        a = cov @ torch.linalg.inv(cov + float(sigma) ** 2 * torch.eye(2, dtype=torch.float64))
        return (x.double() @ a.T).float()

    return x0, noise, denoise


@pytest.mark.parametrize("step,tolerance", [("ddpm", 0.04), ("euler", 0.06)])
def test_resampling_harmonises_the_unknown_with_the_known(step, tolerance):
    """Pairs (a, b) with correlation 0.95; a is known, b is drawn. The right answer is b | a, slope 0.95.
    Replacing the known part alone (jump_n_sample 1) ignores a (slope ~0.6); resampling fixes that."""
    x0, noise, denoise = gaussian_pairs()
    mask = torch.tensor([0.0, 1.0])
    sigmas = karras(50)

    def slope(r):
        out = R.sample(denoise, noise * sigmas[0] + x0, sigmas, latent=x0, noise=noise, mask=mask, jump_length=10,
                       jump_n_sample=r, step=step, seed=5)  # fmt: skip
        a, b = out[:, 0].double(), out[:, 1].double()
        assert torch.equal(out[:, 0], x0[:, 0])
        return float((a * b).mean() / (a * a).mean())

    plain, resampled = slope(1), slope(10)
    assert plain < 0.75
    assert abs(resampled - 0.95) < tolerance
    assert resampled - plain > 0.15


def test_jumps_renoise_the_whole_latent_to_the_higher_sigma():
    """With a denoiser that predicts 0, x/sigma stays a standard normal at every model call only if every
    jump adds exactly sqrt(hi^2 - lo^2) of fresh noise; the known region is the original noised by the
    run's own noise at exactly that sigma."""
    shape = (1, 4, 64, 64)
    g = torch.Generator().manual_seed(0)
    latent, noise = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    mask = torch.zeros(shape)
    mask[..., :, 32:] = 1.0
    sigmas = S.trailing_sigmas(S.zero_snr_sigmas(), 20)
    rec = Recorder(lambda x, s: torch.zeros_like(x))
    R.sample(rec, noise * sigmas[0], sigmas, latent=latent, noise=noise, mask=mask, jump_length=5, jump_n_sample=3,
             step="euler", seed=1)  # fmt: skip
    assert len(rec.calls) == R.model_calls(20, 5, 3)
    hole = mask.bool()
    for x, s in rec.calls:
        assert abs(float(x[hole].std()) / s - 1.0) < 0.03, s
        assert torch.equal(x[~hole], (noise * torch.tensor(s) + latent)[~hole])


# --------------------------------------------------------------------------- any sigma list


@st.composite
def sigma_lists(draw):
    n = draw(st.integers(1, 30))
    top = draw(st.sampled_from([14.6146, 4518.7637, 1.0, 0.5]))
    inner = sorted(draw(st.lists(st.floats(0.01, 0.999), min_size=n, max_size=n)), reverse=True)
    values = [top] + [top * v for v in inner[:-1]]
    last = draw(st.sampled_from([0.0, top * inner[-1]]))  # ends at 0, or a split-off first half
    return torch.tensor(values + [last], dtype=torch.float32)


@SETTINGS
@given(sigma_lists(), st.integers(1, 12), st.integers(1, 5), st.sampled_from(R.STEP_RULES))
def test_any_sigma_list_follows_the_schedule(sigmas, j, r, step):
    n = len(sigmas) - 1
    truth, noise, mask, _ = problem(shape=(1, 2, 6, 6))
    x = noise * sigmas[0] + truth
    rec = Recorder(lambda x_, s: x_ * 0.5)
    seen = []
    out = R.sample(rec, x, sigmas, latent=truth, noise=noise, mask=mask, jump_length=j, jump_n_sample=r, step=step,
                   seed=7, callback=seen.append)  # fmt: skip
    index = [n - 1 - t for t in R.jump_schedule(n, j, r)]
    expected = [float(sigmas[a]) for a, b in zip(index, index[1:]) if b > a]
    assert [s for _, s in rec.calls] == expected
    assert max(s for _, s in rec.calls) == float(sigmas[0])  # jumps never rise above the start
    total = R.model_calls(n, j, r)
    assert [c["i"] for c in seen] == list(range(total)) and {c["total"] for c in seen} == {total}
    hole = mask.bool()
    for x_in, s in rec.calls:
        assert torch.equal(x_in[~hole], (noise * torch.tensor(s) + truth)[~hole])
    assert torch.equal(out[~hole], (noise * sigmas[-1] + truth)[~hole])
    assert torch.isfinite(out).all()


# --------------------------------------------------------------------------- runs, seeds, cancel, inputs


def test_same_seed_same_result_and_the_seed_drives_the_jumps():
    truth, noise, mask, x = problem()
    sigmas, net = karras(12), tiny_net_denoiser()
    kw = dict(latent=truth, noise=noise, mask=mask, jump_length=3, jump_n_sample=3)
    a = R.sample(net, x, sigmas, seed=1, **kw)
    assert torch.equal(a, R.sample(net, x, sigmas, seed=1, **kw))
    assert not torch.equal(a, R.sample(net, x, sigmas, seed=2, **kw))
    big = 2**64 - 1  # ComfyUI's largest seed
    assert torch.isfinite(R.sample(net, x, sigmas, seed=big, **kw)).all()
    # the resampling noise is not the generator ComfyUI draws the run's noise from
    assert not torch.equal(
        torch.randn(8, generator=R.noise_generator(1)), torch.randn(8, generator=torch.manual_seed(1))
    )


def test_callback_can_cancel_and_nothing_runs_after_it():
    truth, noise, mask, x = problem()
    rec = Recorder(lambda x_, s: truth)

    class Cancelled(Exception):
        pass

    def callback(info):
        if info["i"] == 3:
            raise Cancelled

    with pytest.raises(Cancelled):
        R.sample(
            rec,
            x,
            karras(10),
            latent=truth,
            noise=noise,
            mask=mask,
            jump_length=2,
            jump_n_sample=3,
            callback=callback,
        )
    assert len(rec.calls) == 4


def test_inputs_are_not_modified():
    truth, noise, mask, x = problem()
    before = [t.clone() for t in (truth, noise, mask, x)]
    sigmas = karras(8)
    sigmas_before = sigmas.clone()
    R.sample(tiny_net_denoiser(), x, sigmas, latent=truth, noise=noise, mask=mask, jump_length=2, jump_n_sample=2,
             step="ddpm")  # fmt: skip
    assert all(torch.equal(a, b) for a, b in zip(before, (truth, noise, mask, x)))
    assert torch.equal(sigmas, sigmas_before)


def test_mask_per_sigma_is_asked_at_every_call_and_at_the_end():
    truth, noise, mask, x = problem()
    asked = []

    def mask_at(sigma):
        asked.append(float(sigma))
        return mask

    sigmas = karras(6)
    R.sample(
        lambda x_, s: truth,
        x,
        sigmas,
        latent=truth,
        noise=noise,
        mask=mask_at,
        jump_length=2,
        jump_n_sample=2,
    )
    assert len(asked) == R.model_calls(6, 2, 2) + 1 and asked[-1] == 0.0


def test_soft_mask_blends_known_and_drawn():
    truth, noise, _, x = problem()
    mask = torch.full_like(truth, 0.25)
    other = truth + 1.0
    out = R.sample(
        lambda x_, s: other, x, karras(10), latent=truth, noise=noise, mask=mask, jump_n_sample=1, step="ddim"
    )
    assert torch.allclose(out, 0.25 * other + 0.75 * truth, atol=1e-4)


def test_short_and_empty_sigma_lists():
    truth, noise, mask, x = problem()
    assert R.sample(lambda x_, s: truth, x, torch.tensor([1.0]), latent=truth, noise=noise, mask=mask) is x
    out = R.sample(lambda x_, s: truth, x, torch.tensor([2.0, 0.0]), latent=truth, noise=noise, mask=mask)
    assert torch.allclose(out, truth, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(sigmas=torch.tensor([1.0, 2.0, 0.0])), ValueError, "non-increasing"),
        (dict(sigmas=torch.tensor([1.0, float("nan"), 0.0])), ValueError, "NaN"),
        (dict(sigmas=torch.tensor([1.0, 0.0, 0.0])), ValueError, "before the last must be > 0"),
        (dict(sigmas=torch.ones(2, 2)), ValueError, "1-D"),
        (dict(step="heun"), ValueError, "step: expected one of euler, ddim, ddpm"),
        (dict(jump_length=0), ValueError, "jump_length"),
        (dict(mask=torch.ones(3, 3)), ValueError, "mask: shape"),
        (dict(mask="all"), TypeError, "mask"),
        (dict(noise=None), ValueError, "needs both 'latent'"),
        (dict(seed=1.5), TypeError, "seed"),
    ],
)
def test_bad_input_is_named(kwargs, error, match):
    truth, noise, mask, x = problem()
    args = dict(sigmas=karras(4), latent=truth, noise=noise, mask=mask, jump_length=2, jump_n_sample=2)
    args.update(kwargs)
    sigmas = args.pop("sigmas")
    with pytest.raises(error, match=match):
        R.sample(lambda x_, s: truth, x, sigmas, **args)
