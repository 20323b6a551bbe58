"""MDIM training loop: the loss, exact resume, checkpoints, Ctrl+C, NaN, full disk, validation, the command."""

from __future__ import annotations

import errno
import json
import os
import signal
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tiny_diffusers import SpaceToDepthCodec, build_model_dir, build_text_encoder

from mdim_core.__main__ import main
from mdim_core.imaging.imageio import write_image
from mdim_core.inpaint.diffusers_host import grey_fill
from mdim_core.synth import generate_page
from mdim_core.training import state, trainer
from mdim_core.training.data import Batch, PageSet
from mdim_core.training.models import Components, load_base
from mdim_core.training.objective import NoiseObjective

# --- the objective and the loss ---------------------------------------------------------------------------


def _hand_schedule(zero_snr: bool) -> np.ndarray:
    """alpha_bar of SD's schedule, rescaled to zero terminal SNR as in Lin et al. 2023 (Algorithm 1), float64."""
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2
    ab = np.cumprod(1.0 - betas)
    if not zero_snr:
        return ab
    s = np.sqrt(ab)
    s0, s_t = s[0], s[-1]
    s = (s - s_t) * s0 / (s0 - s_t)
    return s**2


def test_zero_snr_schedule_v_target_and_mse_match_a_hand_computation():
    obj = NoiseObjective()
    ab = _hand_schedule(True)
    assert float(obj.alphas_cumprod[-1]) == 0.0 and ab[-1] == 0.0
    np.testing.assert_allclose(obj.alphas_cumprod.double().numpy(), ab, rtol=0, atol=2e-6)
    np.testing.assert_allclose(NoiseObjective("epsilon", False).alphas_cumprod.double().numpy(),
                               _hand_schedule(False), rtol=0, atol=2e-6)
    g = torch.Generator().manual_seed(0)
    x0, noise, pred = (torch.randn(3, 4, 5, 6, generator=g) for _ in range(3))
    t = torch.tensor([0, 500, 999])
    a = torch.from_numpy(ab[[0, 500, 999]]).view(3, 1, 1, 1)
    v = a.sqrt() * noise.double() - (1 - a).sqrt() * x0.double()
    xt = a.sqrt() * x0.double() + (1 - a).sqrt() * noise.double()
    torch.testing.assert_close(obj.target(x0, noise, t).double(), v, rtol=0, atol=1e-5)
    torch.testing.assert_close(obj.add_noise(x0, noise, t).double(), xt, rtol=0, atol=1e-5)
    assert torch.equal(obj.target(x0, noise, t)[2], -x0[2])  # at SNR 0: x_T is pure noise and v = -x_0
    assert torch.equal(obj.add_noise(x0, noise, t)[2], noise[2])
    mse = float(((pred.double() - v) ** 2).mean())
    assert abs(float(obj.loss(pred, obj.target(x0, noise, t))) - mse) < 1e-5
    # parity with diffusers' scheduler (the reference implementation of the same formulas)
    from diffusers import DDPMScheduler

    ref = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                        rescale_betas_zero_snr=True, prediction_type="v_prediction")
    assert torch.equal(ref.alphas_cumprod, obj.alphas_cumprod)
    assert torch.equal(ref.get_velocity(x0, noise, t), obj.target(x0, noise, t))
    assert torch.equal(ref.add_noise(x0, noise, t), obj.add_noise(x0, noise, t))
    assert torch.equal(NoiseObjective("epsilon", False).target(x0, noise, t), noise)
    with pytest.raises(ValueError, match="epsilon"):
        NoiseObjective("epsilon", zero_snr=True)


class _Recorder(torch.nn.Module):
    """A stand-in UNet that records its input and predicts zeros (so the loss is the mean of target^2)."""

    def __init__(self, in_channels):
        super().__init__()
        self.config = type("C", (), {"in_channels": in_channels})()
        self.seen = []

    def forward(self, x, t, encoder_hidden_states=None, return_dict=False):
        self.seen.append((x.clone(), t.clone(), encoder_hidden_states.clone()))
        return (torch.zeros(x.shape[0], 16, *x.shape[2:]),)


def test_batch_loss_is_mse_on_v_of_the_nine_channel_input(tmp_path):
    codec = SpaceToDepthCodec(4)  # exact: the clean latent is known
    text, tok = build_text_encoder(tmp_path / "tok")
    comps = Components(None, codec, text, tok)
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.uniform(0, 1, (3, 32, 32, 3)).astype(np.float32))
    masks = torch.zeros(3, 32, 32)
    masks[0] = 1.0  # the whole image
    masks[1, 4:13, 9:30] = 1.0
    valid = torch.ones(3, 32, 32)
    valid[2, 24:] = 0.0  # paper padding below a short page
    batch = Batch(images, masks, valid, ["manga", "manga, a", "b"], ["full", "box", "wide"])
    obj = NoiseObjective()
    unet = _Recorder(33)
    loss = trainer.batch_loss(unet, comps, batch, obj, torch.Generator().manual_seed(3), device="cpu")
    (x, t, ctx), = unet.seen
    x0 = codec.encode(images.movedim(-1, 1) * 2 - 1).latent_dist.mode()
    noisy, mask_ch, masked = x[:, :16], x[:, 16:17], x[:, 17:]
    a = obj.alphas_cumprod[t].view(3, 1, 1, 1).double()
    eps = (noisy.double() - a.sqrt() * x0) / (1 - a).sqrt()
    v = a.sqrt() * eps - (1 - a).sqrt() * x0
    weight = torch.ones(3, 1, 8, 8, dtype=torch.float64)
    weight[2, :, 6:] = 0.0  # latent rows holding padding are left out
    want = ((v**2) * weight).sum() / (weight.sum() * 16)
    assert abs(float(loss) - float(want)) < 1e-4 * float(want)
    # mask channel: every latent cell the mask touches; masked image: the grey-filled crop's latent
    assert torch.equal(mask_ch[0], torch.ones(1, 8, 8)) and mask_ch[1, 0, 1:4, 2:8].min() == 1
    assert float(mask_ch[1].sum()) == 3 * 6 and float(mask_ch[2].sum()) == 0
    torch.testing.assert_close(masked, codec.encode(grey_fill(images, masks).movedim(-1, 1) * 2 - 1).latent_dist.mode())
    assert ctx.shape == (3, 16, 16)
    assert torch.equal(ctx[0], text(tok(["manga"], padding="max_length", max_length=16, truncation=True,
                                        return_tensors="pt").input_ids)[0][0])


def test_learning_rate_is_constant_unless_a_warm_up_is_asked():
    cfg = trainer.TrainConfig(lr=1e-6)
    assert [cfg.lr_at(s) for s in (0, 1, 5000)] == [1e-6] * 3
    warm = trainer.TrainConfig(lr=1e-4, warmup_steps=4)
    assert [warm.lr_at(s) for s in range(6)] == pytest.approx([2.5e-5, 5e-5, 7.5e-5, 1e-4, 1e-4, 1e-4])
    for bad in ({"resolution": 100}, {"lr": 0}, {"full_mask_prob": 2}, {"mixed_precision": "fp8"}, {"steps": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            trainer.TrainConfig(**bad)


# --- runs ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return build_model_dir(tmp_path_factory.mktemp("base"), in_channels=4, seed=3)


@pytest.fixture(scope="module")
def pages_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pages")
    for i in range(3):
        write_image(folder / f"p{i}.png", generate_page(i, size=(160, 120), dpi=36).clean[..., None])
    (folder / "p1.txt").write_text("1girl, rain, umbrella")
    return folder


def _args(base, pages, out, *extra):
    return ["train", "--model", str(base), "--data", str(pages), "-o", str(out), "--resolution", "64",
            "--max-side", "128", "--batch-size", "2", "--lr", "1e-3", "--save-every", "1", "--validate-every", "0",
            "--log-every", "1", "-q", *extra]


def _final_unet(out):
    step, folder = state.list_checkpoints(out)[-1]
    return step, load_file(str(folder / "unet.safetensors")), load_file(str(folder / "optimizer.safetensors"))


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_resumed_runs_equal_a_straight_run_bit_for_bit(base, pages_dir, tmp_path):
    """N steps then --resume --steps M, and a run stopped by Ctrl+C and resumed, both equal a straight M-step run."""
    extra = ["--ema-decay", "0.9", "--grad-accum", "2", "--keep-checkpoints", "10"]
    assert main(_args(base, pages_dir, tmp_path / "straight", "--steps", "4", *extra)) == 0
    assert main(_args(base, pages_dir, tmp_path / "parts", "--steps", "2", *extra)) == 0
    assert (tmp_path / "parts" / "parts.safetensors").is_file()  # a finished 2-step run wrote its model
    assert main(_args(base, pages_dir, tmp_path / "parts", "--steps", "4", "--resume", *extra)) == 0
    s_step, s_unet, s_opt = _final_unet(tmp_path / "straight")
    p_step, p_unet, p_opt = _final_unet(tmp_path / "parts")
    assert s_step == p_step == 4 and _equal(s_unet, p_unet) and _equal(s_opt, p_opt)
    ema = [load_file(str(state.list_checkpoints(tmp_path / n)[-1][1] / "ema.safetensors")) for n in ("straight", "parts")]
    assert _equal(*ema)
    single = [load_file(str(tmp_path / n / f"{n}.safetensors")) for n in ("straight", "parts")]
    assert _equal(*single)  # the written checkpoints too (EMA weights, fp16)
    two = load_file(str(state.list_checkpoints(tmp_path / "straight")[1][1] / "unet.safetensors"))
    assert not _equal(two, s_unet)  # training changed the weights
    # Ctrl+C after step 3: a checkpoint of step 3 is saved and the run stops; --resume finishes it identically
    comps = load_base(base)
    pages = PageSet.from_folder(pages_dir, 128)
    cfg = trainer.TrainConfig(steps=4, resolution=64, max_side=128, batch_size=2, lr=1e-3, save_every=10,
                              validate_every=0, ema_decay=0.9, grad_accum=2, keep_checkpoints=10, log_every=1)

    def ctrl_c(step):
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(trainer.TrainingInterrupted, match="step 3"):
        trainer.train(comps, pages, cfg, tmp_path / "stopped", progress=False, device="cpu", on_step=ctrl_c)
    assert [s for s, _ in state.list_checkpoints(tmp_path / "stopped")] == [3]
    trainer.train(load_base(base), pages, cfg, tmp_path / "stopped", resume=True, progress=False, device="cpu",
                  export=False)
    _, c_unet, c_opt = _final_unet(tmp_path / "stopped")
    assert _equal(c_unet, s_unet) and _equal(c_opt, s_opt)
    rows = (tmp_path / "stopped" / "train_log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["step", "1", "2", "3", "4"]  # the log continues, no repeats


def _quick_cfg(**kw):
    base = dict(steps=5, resolution=64, max_side=128, batch_size=2, lr=1e-3, save_every=1, validate_every=0,
                keep_checkpoints=2, log_every=1)
    return trainer.TrainConfig(**{**base, **kw})


@pytest.mark.slow
def test_checkpoints_rotate_and_a_finished_run_needs_resume(base, pages_dir, tmp_path):
    comps, pages = load_base(base), PageSet.from_folder(pages_dir, 128)
    result = trainer.train(comps, pages, _quick_cfg(), tmp_path / "run", progress=False, device="cpu")
    assert [s for s, _ in state.list_checkpoints(tmp_path / "run")] == [4, 5]
    assert result.step == 5 and result.single_file.is_file() and (result.diffusers_dir / "unet").is_dir()
    assert not [p for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.startswith(".")]
    with pytest.raises(ValueError, match="already holds a training run.*--resume"):
        trainer.train(load_base(base), pages, _quick_cfg(), tmp_path / "run", progress=False, device="cpu")
    again = trainer.train(load_base(base), pages, _quick_cfg(), tmp_path / "run", resume=True, progress=False,
                          device="cpu")
    assert again.step == 5 and again.resumed_from == 5  # nothing left to train: the model is written again


@pytest.mark.slow
def test_nan_loss_stops_keeping_the_last_good_checkpoint(base, pages_dir, tmp_path, monkeypatch):
    real = trainer.batch_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 4 else loss

    monkeypatch.setattr(trainer, "batch_loss", poisoned)
    comps, pages = load_base(base), PageSet.from_folder(pages_dir, 128)
    out = tmp_path / "run"
    with pytest.raises(trainer.TrainingStopped) as err:
        trainer.train(comps, pages, _quick_cfg(save_every=2), out, progress=False, device="cpu")
    message = str(err.value)
    assert "loss became nan at step 4" in message and "step-000002" in message and "--lr" in message
    assert "--resume" in message
    assert [s for s, _ in state.list_checkpoints(out)] == [2]
    kept = load_file(str(state.list_checkpoints(out)[0][1] / "unet.safetensors"))
    assert all(bool(torch.isfinite(v).all()) for v in kept.values())
    assert not (out / "model").exists() and not (out / "run.safetensors").exists()
    # the command says it with exit status 3
    calls["n"] = 0
    code = main(_args(base, pages_dir, tmp_path / "cli", "--steps", "5"))
    assert code == 3


@pytest.mark.slow
def test_full_disk_keeps_what_was_written(base, pages_dir, tmp_path, monkeypatch):
    real = state.save_file
    calls = {"n": 0}

    def full_disk(tensors, path, metadata=None):
        calls["n"] += 1
        if calls["n"] == 4:  # the second checkpoint's UNet file: half written, then the disk is full
            with open(path, "wb") as fh:
                fh.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, path, metadata)

    monkeypatch.setattr(state, "save_file", full_disk)
    comps, pages = load_base(base), PageSet.from_folder(pages_dir, 128)
    out = tmp_path / "run"
    with pytest.raises(trainer.TrainingStopped, match="disk is full.*step-000001.*--resume"):
        trainer.train(comps, pages, _quick_cfg(keep_checkpoints=5), out, progress=False, device="cpu")
    assert [s for s, _ in state.list_checkpoints(out)] == [1]
    assert state.read_checkpoint(state.list_checkpoints(out)[0][1])["step"] == 1  # complete and readable
    leftovers = [p for p in out.rglob("*") if ".part" in p.name]
    assert not leftovers
    monkeypatch.setattr(state, "save_file", real)
    result = trainer.train(load_base(base), pages, _quick_cfg(keep_checkpoints=5), out, resume=True, progress=False,
                           device="cpu", export=False)
    assert result.resumed_from == 1 and result.step == 5


@pytest.mark.slow
def test_validation_logs_metrics_and_pictures(base, pages_dir, tmp_path):
    from mdim_core.inpaint.sgim import SGIMConfig
    from mdim_core.training.validation import Validator, synthetic_cases

    cases = synthetic_cases(1, max_side=64)
    assert {c.kind for c in cases} == {"text", "box"}
    for c in cases:
        assert c.image.shape == (128, 91) and c.mask.any()
        assert np.array_equal(c.image[~c.mask], c.truth[~c.mask])  # truth differs only where the mask is
    validator = Validator(cases, SGIMConfig(steps=2, fri_steps=1, sgi_max_side=64, min_crop_side=64), cfg=1.0)
    comps, pages = load_base(base), PageSet.from_folder(pages_dir, 128)
    result = trainer.train(comps, pages, _quick_cfg(steps=2, validate_every=2), tmp_path / "run", progress=False,
                           device="cpu", validator=validator)
    rows = (tmp_path / "run" / "validation.csv").read_text().splitlines()
    assert rows[0] == "step,case,kind,psnr_in,paper_white,seconds" and len(rows) == 1 + 2 * len(cases)
    assert {r["step"] for r in result.validation} == {0, 2}
    assert all(np.isfinite(r["psnr_in"]) for r in result.validation)
    for case in cases:
        assert (tmp_path / "run" / "validation" / "step-000002" / f"{case.name}.png").is_file()
        assert (tmp_path / "run" / "validation" / "inputs" / f"{case.name}_truth.png").is_file()


def test_missing_accelerate_is_named(base, pages_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "accelerate", None)
    with pytest.raises(ImportError, match="'accelerate'.*pip install accelerate"):
        trainer.require_accelerate()
    assert main(_args(base, pages_dir, tmp_path / "out", "--steps", "1")) == 2
    assert "accelerate" in capsys.readouterr().err


def test_command_refuses_bad_input_naming_it(base, pages_dir, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(_args(base, tmp_path / "empty", tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert "no page images" in err and str(tmp_path / "empty") in err
    assert main(_args(base, tmp_path / "missing", tmp_path / "out")) == 2
    assert str(tmp_path / "missing") in capsys.readouterr().err
    (tmp_path / "model.json").write_text(json.dumps({}))
    assert main(_args(tmp_path / "model.json", pages_dir, tmp_path / "out")) == 2
    assert "model.json: expected a single-file checkpoint (.safetensors, .sft, .pt, .pth, .ckpt, .bin) or a diffusers folder" in capsys.readouterr().err
    assert main(_args(base, pages_dir, tmp_path / "out", "--resolution", "100")) == 2
    assert "resolution" in capsys.readouterr().err
    assert not (tmp_path / "out" / "checkpoints").exists()


@pytest.mark.slow
def test_bf16_mixed_precision_trains_and_writes_the_exact_base_vae(base, pages_dir, tmp_path):
    """bf16 autocast with fp32 master weights (CPU here); the frozen VAE and text encoder run in bf16 but the
    written model carries their exact base weights. A second precision in one process is accepted."""
    from diffusers import AutoencoderKL

    comps, pages = load_base(base), PageSet.from_folder(pages_dir, 128)
    trainer.train(load_base(base), pages, _quick_cfg(steps=1), tmp_path / "fp32", progress=False, device="cpu",
                  export=False)
    result = trainer.train(comps, pages, _quick_cfg(steps=2, mixed_precision="bf16", save_dtype="fp32"),
                           tmp_path / "bf16", progress=False, device="cpu")
    assert result.step == 2 and np.isfinite(result.final_loss)
    unet = load_file(str(state.list_checkpoints(tmp_path / "bf16")[-1][1] / "unet.safetensors"))
    assert all(v.dtype == torch.float32 for v in unet.values())  # master weights stay fp32
    written = AutoencoderKL.from_pretrained(result.diffusers_dir / "vae")
    original = AutoencoderKL.from_pretrained(base / "vae")
    assert all(torch.equal(a, b) for a, b in zip(written.state_dict().values(), original.state_dict().values()))


def test_val_data_pages_are_their_own_truth(pages_dir):
    from mdim_core.training.validation import folder_cases

    cases = folder_cases(pages_dir, n_pages=2, max_side=128)
    assert [c.name for c in cases] == ["p0_bubble", "p0_box", "p1_bubble", "p1_box"]
    for c in cases:
        assert c.image.shape == c.mask.shape == (160, 120) and np.array_equal(c.image, c.truth)
        assert 0 < c.mask.mean() < 0.6  # masks drawn at the structure scale (80x60 px), enlarged to the page
    again = folder_cases(pages_dir, n_pages=2, max_side=128)
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(cases, again))  # the same pages every time


@pytest.mark.slow
def test_gradient_checkpointing_changes_memory_not_results(base, pages_dir, tmp_path):
    pages = PageSet.from_folder(pages_dir, 128)
    outs = []
    for ckpt in (False, True):
        comps = load_base(base)
        trainer.train(comps, pages, _quick_cfg(steps=2, gradient_checkpointing=ckpt), tmp_path / str(ckpt),
                      progress=False, device="cpu", export=False)
        outs.append(_final_unet(tmp_path / str(ckpt))[1])
        assert comps.unet.is_gradient_checkpointing == ckpt
    for k in outs[0]:
        torch.testing.assert_close(outs[0][k], outs[1][k], rtol=0, atol=1e-7)


def test_eight_bit_adamw_names_bitsandbytes(monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    with pytest.raises(ImportError, match="bitsandbytes"):
        trainer.make_optimizer([torch.nn.Parameter(torch.zeros(2))], trainer.TrainConfig(optimizer="adamw8bit"))
    assert trainer.resolve_auto("auto", "auto", "cpu") == ("no", "adamw")
