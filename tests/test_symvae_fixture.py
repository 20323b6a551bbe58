"""The tiny trained Symmetric VAE shipped as a test fixture (made by benchmarks/symvae_tiny.py).

On a held-out generated page the trained adapters must keep screentone that the base VAE smears,
restore an aged scan better than the base VAE, and still never let a masked hole's content back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mdim_core.evaluation import metrics
from mdim_core.restore.levels import prepare_ground_truth, to_grayscale
from mdim_core.symvae import SymmetricVAE, load_adapters
from mdim_core.synth import generate_page
from mdim_core.synth.aging import age_page

FIXTURES = Path(__file__).parent / "fixtures" / "symvae_tiny"


@pytest.fixture(scope="module")
def sym():
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(str(FIXTURES / "base_vae"), torch_dtype=torch.float32).eval()
    s = SymmetricVAE(vae)
    meta = load_adapters(s, FIXTURES / "adapters.safetensors")
    assert meta["mdim.base_family"] == "kl-f8-z4"
    return s


@pytest.fixture(scope="module")
def page():
    return generate_page(20_001, size=(320, 256), dpi=300.0, masks=False)


def _t(img: np.ndarray) -> torch.Tensor:
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None]


def _g(t: torch.Tensor) -> np.ndarray:
    return to_grayscale(t[0].numpy())


@pytest.mark.slow
def test_keeps_screentone_the_base_vae_smears(sym, page):
    x = _t(page.clean)
    z = sym.encode(x)
    base = metrics.evaluate_pair(_g(sym.decode(z)), page.clean, screentone=page.screentone, tile=32)
    ours = metrics.evaluate_pair(_g(sym.decode(z, source=x)), page.clean, screentone=page.screentone, tile=32)
    assert ours["tone_err"] < 0.5 * base["tone_err"]
    assert ours["period_match"] > base["period_match"] + 0.5
    assert ours["psnr"] > base["psnr"] + 5.0


@pytest.mark.slow
def test_restores_an_aged_scan_better_than_the_base_vae(sym, page):
    aged = age_page(page.clean, seed=7, dpi=300.0)
    truth = prepare_ground_truth(page.clean)
    base = metrics.evaluate_pair(_g(sym.decode(sym.encode(_t(aged)))), truth, screentone=page.screentone, tile=32)
    ours = metrics.evaluate_pair(_g(sym.restore(_t(aged))), truth, screentone=page.screentone, tile=32)
    assert ours["psnr"] > base["psnr"] + 3.0
    assert ours["ssim"] > base["ssim"]


@pytest.mark.slow
def test_trained_adapters_never_bring_the_hole_back(sym, page):
    x = _t(page.clean)
    z = sym.encode(x)
    mask = torch.zeros(1, 320, 256)
    mask[:, 100:180, 60:200] = 1
    other = x.clone()
    other[:, 100:180, 60:200] = 0.0  # e.g. black text that was removed
    a = sym.decode(z, source=x, mask=mask)
    b = sym.decode(z, source=other, mask=mask)
    assert torch.equal(a, b)
    assert (sym.decode(z, source=x) - sym.decode(z, source=other))[:, 100:180, 60:200].abs().max() > 0.1
