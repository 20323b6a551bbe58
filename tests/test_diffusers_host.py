"""The diffusers host of SGIM: schedules, exactness with oracle UNets, masks, determinism, 9-channel UNets."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from diffusers.guiders.guider_utils import rescale_noise_cfg
from tiny_diffusers import AnchoredModule, build_model_dir

from mdim_core.inpaint import diffusers_host, sgim
from mdim_core.inpaint.diffusers_host import DiffusersHost, make_scheduler
from mdim_core.inpaint.host import check_host, grey_fill


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_models")
    return {
        "v4": build_model_dir(root / "v4", in_channels=4, prediction="v_prediction", zero_snr=True),
        "v9": build_model_dir(root / "v9", in_channels=9, prediction="v_prediction", zero_snr=True, seed=1),
        "eps4": build_model_dir(root / "eps4", in_channels=4, prediction="epsilon", zero_snr=False, seed=2),
    }


@pytest.fixture(scope="module")
def hosts(model_dirs):
    return {k: diffusers_host.load_host(d, prompt="manga", negative="color", cfg=3.0) for k, d in model_dirs.items()}


def _page(h=96, w=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(1, h, w, 3, generator=g)
    mask = torch.zeros(1, h, w)
    mask[:, 30:61, 21:50] = 1.0
    return image, mask


SMALL = sgim.SGIMConfig(steps=4, fri_steps=2, sgi_max_side=32, min_crop_side=0, context_margin=8)


# --- schedules -----------------------------------------------------------------------------------


def test_zero_snr_scheduler_is_trailing_ddim_with_terminal_alpha_bar_zero():
    s = make_scheduler(None, prediction="v_prediction", zero_snr=True)
    assert type(s).__name__ == "DDIMScheduler"
    assert float(s.alphas_cumprod[-1]) == 0.0
    s.set_timesteps(10)
    assert s.timesteps.tolist() == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]


def test_epsilon_with_zero_snr_is_refused_unless_allowed():
    with pytest.raises(ValueError, match="epsilon"):
        make_scheduler(None, prediction="epsilon", zero_snr=True)
    s = make_scheduler(None, prediction="epsilon", zero_snr=True, allow_epsilon_zero_snr=True)
    assert s.config.prediction_type == "epsilon" and s.config.rescale_betas_zero_snr


def test_scheduler_follows_model_config_and_bad_kind(model_dirs, hosts):
    assert hosts["v4"].prediction_type == "v_prediction"
    assert hosts["v4"].scheduler.config.rescale_betas_zero_snr and hosts["v4"].cfg_rescale == 0.7
    assert hosts["eps4"].prediction_type == "epsilon"
    assert not hosts["eps4"].scheduler.config.rescale_betas_zero_snr and hosts["eps4"].cfg_rescale == 0.0
    with pytest.raises(ValueError, match="scheduler"):
        make_scheduler(None, kind="plms")
    euler = make_scheduler(None, kind="euler", prediction="v_prediction", zero_snr=True)
    assert type(euler).__name__ == "EulerDiscreteScheduler" and euler.config.timestep_spacing == "trailing"


def test_strength_half_of_50_trailing_steps_starts_at_499(hosts):
    t = hosts["v4"].timesteps_for(25, 0.5)
    assert len(t) == 25 and int(t[0]) == 499 and int(t[-1]) == 19
    assert hosts["v4"].timesteps_for(10, 1.0).tolist()[0] == 999
    t = hosts["v4"].timesteps_for(3, 0.3)  # schedule of round(3 / 0.3) = 10 steps, the last 3 run
    assert t.tolist() == [299, 199, 99]


# --- exactness with oracle UNets -----------------------------------------------------------------


class OracleUNet(AnchoredModule):
    """Returns the exact v (or eps) that denoises to a known clean latent ``x0``."""

    def __init__(self, x0, alphas_cumprod, prediction, in_channels=4):
        super().__init__()
        self.register_buffer("x0", x0.clone())
        self.ac = alphas_cumprod.double()
        self.prediction = prediction
        self.config = SimpleNamespace(in_channels=in_channels)
        self.calls = 0

    def forward(self, sample, t, encoder_hidden_states=None, return_dict=False):
        self.calls += 1
        x = sample[:, :4].double()
        x0 = self.x0.double().repeat(x.shape[0] // self.x0.shape[0], 1, 1, 1)
        a = self.ac[int(t)]
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        out = a.sqrt() * eps - (1 - a).sqrt() * x0 if self.prediction == "v_prediction" else eps
        return (out.float(),)


def _oracle_host(x0, prediction, zero_snr, kind="ddim", vae=None, in_channels=4, cfg=3.0):
    # set_alpha_to_one: DDIM's last step lands on x0 (SD's own config stops at alpha_bar_0 = 0.99915)
    config = dict(diffusers_host.SD_SCHEDULER_CONFIG, set_alpha_to_one=True)
    sched = make_scheduler(config, kind=kind, prediction=prediction, zero_snr=zero_snr)
    unet = OracleUNet(x0, sched.alphas_cumprod, prediction, in_channels)
    vae = vae or SimpleNamespace(config=SimpleNamespace(latent_channels=4, block_out_channels=(1, 1, 1, 1), scaling_factor=1.0))
    embeds = torch.zeros(1, 4, 8)
    return DiffusersHost(unet, vae, sched, embeds, embeds, cfg=cfg, cfg_rescale=0.7 if zero_snr else 0.0)


@pytest.mark.parametrize("strength,steps", [(1.0, 10), (0.5, 5)])
def test_vpred_zero_snr_oracle_reproduces_x0_inside_the_mask(strength, steps):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(1, 4, 6, 5, generator=g)
    start = torch.randn(1, 4, 6, 5, generator=g)  # what the pass starts from (e.g. the SGI result)
    mask = torch.zeros(1, 48, 40)
    mask[:, 8:30, 4:25] = 1.0
    host = _oracle_host(x0, "v_prediction", zero_snr=True)
    out = host.denoise(start, image=torch.rand(1, 48, 40, 3), mask=mask, strength=strength, steps=steps, seed=5)
    cells = torch.nn.functional.max_pool2d(mask[:, None], 8).bool().expand_as(out)
    assert (out - x0)[cells].abs().max() < 1e-4
    assert torch.equal(out[~cells], start[~cells])  # the known cells come back exactly
    assert host.unet.calls == steps


def test_prediction_type_dispatch_eps_and_v():
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(1, 4, 4, 4, generator=g)
    mask = torch.ones(1, 32, 32)
    image = torch.rand(1, 32, 32, 3)
    for kind in ("ddim", "euler"):
        eps = _oracle_host(x0, "epsilon", zero_snr=False, kind=kind)
        out = eps.denoise(torch.zeros_like(x0), image=image, mask=mask, strength=1.0, steps=20, seed=0)
        assert (out - x0).abs().max() < 2e-3, kind
    v = _oracle_host(x0, "v_prediction", zero_snr=True)
    assert (v.denoise(torch.zeros_like(x0), image=image, mask=mask, strength=1.0, steps=8, seed=0) - x0).abs().max() < 1e-4
    # The same v-oracle read as epsilon (wrong dispatch) does not land on x0.
    wrong = _oracle_host(x0, "v_prediction", zero_snr=False)
    wrong.scheduler = make_scheduler(None, prediction="epsilon", zero_snr=False)
    wrong.unet.ac = wrong.scheduler.alphas_cumprod.double()
    assert (wrong.denoise(torch.zeros_like(x0), image=image, mask=mask, strength=1.0, steps=8, seed=0) - x0).abs().max() > 0.1


@pytest.mark.parametrize("kind", ["ddim", "euler", "dpmpp_2m"])
@pytest.mark.parametrize("prediction,zero_snr", [("v_prediction", True), ("epsilon", False), ("v_prediction", False)])
def test_every_scheduler_kind_lands_on_x0(kind, prediction, zero_snr):
    x0 = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(4))
    host = _oracle_host(x0, prediction, zero_snr, kind=kind)
    assert host.scheduler.config.rescale_betas_zero_snr == zero_snr
    out = host.denoise(torch.zeros_like(x0), image=torch.rand(1, 32, 32, 3), mask=torch.ones(1, 32, 32), strength=1.0, steps=12, seed=0)
    assert (out - x0).abs().max() < 1e-4


def test_cfg_and_rescale_match_diffusers(hosts):
    host = hosts["v4"]
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 4, 4, 4, generator=g)
    t = torch.tensor(499)
    got = host._model_output(x, t, None)
    unet = host.unet
    with torch.no_grad():
        cond = unet(x, t, encoder_hidden_states=host.prompt_embeds).sample
        uncond = unet(x, t, encoder_hidden_states=host.negative_embeds).sample
    guided = uncond + host.cfg * (cond - uncond)
    want = rescale_noise_cfg(guided, cond, guidance_rescale=0.7)
    assert (got - want).abs().max() < 1e-5
    assert (got - guided).abs().max() > 1e-4  # the rescale did something


# --- through the SGIM engine with real (tiny) models --------------------------------------------


@pytest.mark.parametrize("key", ["v4", "v9", "eps4"])
def test_engine_outside_mask_exact_and_deterministic(hosts, key):
    host = hosts[key]
    check_host(host)
    image, mask = _page()
    before = (image.clone(), mask.clone())
    a = sgim.inpaint(host, image, mask, seed=7, config=SMALL)
    b = sgim.inpaint(host, image, mask, seed=7, config=SMALL)
    c = sgim.inpaint(host, image, mask, seed=8, config=SMALL)
    assert torch.equal(image, before[0]) and torch.equal(mask, before[1])
    outside = (mask == 0)[..., None].expand_as(image)
    assert torch.equal(a.image[outside], image[outside])
    assert torch.equal(a.image, b.image)
    assert not torch.equal(a.image, c.image)
    assert (a.image - image)[~outside].abs().mean() > 0.01  # the hole was redrawn
    assert a.passes == 2  # the crop (47x45) was shrunk to <= 32: SGI + FRI


def test_nine_channel_unet_gets_mask_and_masked_image(hosts):
    host = hosts["v9"]
    seen = []
    real = host.unet.forward

    def spy(sample, t, **kw):
        seen.append(sample.detach().clone())
        return real(sample, t, **kw)

    host.unet.forward = spy
    try:
        image, mask = _page(64, 64)
        latent = host.encode(image)
        host.denoise(latent, image=image, mask=mask, strength=1.0, steps=1, seed=0)
    finally:
        del host.unet.forward
    x = seen[0]
    assert x.shape[1] == 9
    cells = torch.nn.functional.max_pool2d(mask[:, None], 8)
    assert torch.equal(x[:1, 4:5], cells)  # channel 4: the latent-cell mask
    masked = host.encode(grey_fill(image, mask))
    assert (x[:1, 5:] - masked).abs().max() < 1e-5  # channels 5..8: the grey-filled page
    assert torch.equal(grey_fill(image, mask)[mask.bool()], torch.full_like(image[mask.bool()], 0.5))


def test_tiled_vae_above_threshold(model_dirs):
    tiled = diffusers_host.load_host(model_dirs["v4"], cfg=1.0, tiled_vae_megapixels=0.001)
    plain = diffusers_host.load_host(model_dirs["v4"], cfg=1.0, tiled_vae_megapixels=0)
    image = torch.rand(1, 128, 96, 3)
    calls = []
    real = tiled.vae.tiled_encode
    tiled.vae.tiled_encode = lambda x: calls.append(x.shape) or real(x)
    try:
        lt = tiled.encode(image)
    finally:
        del tiled.vae.tiled_encode
    lp = plain.encode(image)
    assert calls and lt.shape == lp.shape == (1, 4, 16, 12)
    assert tiled.decode(lt).shape == plain.decode(lp).shape == (1, 128, 96, 3)


def test_bad_model_folder_and_channels(tmp_path, model_dirs):
    with pytest.raises(ValueError, match="model"):
        diffusers_host.load_host(tmp_path)
    (tmp_path / "unet").mkdir()
    with pytest.raises(ValueError, match="vae, text_encoder, tokenizer"):
        diffusers_host.load_host(tmp_path)
    sched = make_scheduler(None)
    unet = OracleUNet(torch.zeros(1, 4, 1, 1), sched.alphas_cumprod, "epsilon", in_channels=5)
    vae = SimpleNamespace(config=SimpleNamespace(latent_channels=4, block_out_channels=(1, 1, 1, 1)))
    with pytest.raises(ValueError, match="unet: has 5 input channels"):
        DiffusersHost(unet, vae, sched, torch.zeros(1, 4, 8))


def test_symmetric_vae_decodes_with_unscaled_latents(model_dirs):
    from mdim_core.symvae import SymmetricVAE

    host = diffusers_host.load_host(model_dirs["v4"], cfg=1.0)
    image, mask = _page(64, 48)
    latent = host.encode(image)
    plain = host.decode(latent)
    host.symvae = SymmetricVAE(host.vae)
    assert torch.equal(host.decode(latent, source=image, mask=mask), plain)  # zero-init adapters: the base decode
    with torch.no_grad():
        host.symvae.adapters[0].conv_out.weight.fill_(0.05)
    skipped = host.decode(latent, source=image, mask=mask)
    assert skipped.shape == plain.shape and (skipped - plain).abs().max() > 1e-3  # the skips are used


@pytest.mark.parametrize("key,strength,steps,partial", [("v4", 1.0, 4, True), ("v4", 0.5, 3, True), ("v9", 1.0, 4, False)])
def test_parity_with_the_diffusers_inpaint_pipeline(model_dirs, monkeypatch, key, strength, steps, partial):
    """Same latents as StableDiffusionInpaintPipeline (which has no CFG rescale, and replaces the known
    region only for 4-channel UNets: the 9-channel case uses a full mask, where both agree)."""
    import diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_inpaint as inpaint_module
    from diffusers import StableDiffusionInpaintPipeline
    from transformers import CLIPTextModel, CLIPTokenizer

    # The pipeline samples the VAE posterior; the host takes its mode. Make the pipeline take the mode too.
    monkeypatch.setattr(inpaint_module, "retrieve_latents", lambda enc, generator=None, sample_mode="sample": enc.latent_dist.mode())
    root = model_dirs[key]
    host = diffusers_host.load_host(root, prompt="manga", negative="color", cfg=3.0, cfg_rescale=0.0)
    pipe = StableDiffusionInpaintPipeline(
        vae=host.vae, text_encoder=CLIPTextModel.from_pretrained(root / "text_encoder"),
        tokenizer=CLIPTokenizer.from_pretrained(root / "tokenizer"), unet=host.unet,
        scheduler=host.scheduler.__class__.from_config(host.scheduler.config), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(1, 64, 64)
    if partial:  # on whole 8-px cells, where the pipeline's nearest downsampling equals the host's cell mask
        mask = torch.zeros(1, 64, 64)
        mask[:, 16:40, 8:48] = 1.0
    ours = host.denoise(host.encode(image), image=image, mask=mask, strength=strength, steps=steps, seed=7)
    ref = pipe(
        prompt_embeds=host.prompt_embeds, negative_prompt_embeds=host.negative_embeds,
        image=image.permute(0, 3, 1, 2), mask_image=mask[:, None], height=64, width=64, strength=strength,
        num_inference_steps=int(steps / strength), guidance_scale=3.0,
        generator=torch.Generator().manual_seed(7), output_type="latent",
    ).images  # fmt: skip
    assert ours.shape == ref.shape
    assert (ours - ref).abs().max() < 1e-5
    assert ours.abs().mean() > 0.05
