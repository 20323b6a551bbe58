"""Symmetric VAE encode, decode and restore at every page size (tiny models), with empty, full,
speckled and border-touching masks: same size out as in and the known answer, or a clear error
naming the input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from size_strategies import MASK_KINDS, make_mask, make_page, page_size
from tiny_models import build_autoencoder_kl

from mdim_core.symvae import SymmetricVAE
from mdim_core.symvae.restore import restore_page

SWEEP = settings(max_examples=12, deadline=None)


@pytest.fixture(scope="module")
def vae():
    return build_autoencoder_kl((8, 8, 16, 16), groups=4, seed=0)  # the SD VAE's layout, narrow: fast


@pytest.fixture(scope="module")
def sym(vae):
    return SymmetricVAE(vae)  # zero adapters: every decode is the base VAE's


@pytest.fixture(scope="module")
def trained(vae):
    s = SymmetricVAE(vae)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for a in s.adapters:
            a.conv_out.weight.copy_(torch.randn(a.conv_out.weight.shape, generator=g) * 0.5)
    return s


def _base_roundtrip(vae, image: torch.Tensor) -> torch.Tensor:
    """The base VAE's encode + decode of ``image`` padded (edge replicate) to /8, cropped back."""
    h, w = image.shape[1:3]
    x = image[..., :3].expand(-1, -1, -1, 3).movedim(-1, 1) * 2 - 1
    x = torch.nn.functional.pad(x, (0, -w % 8, 0, -h % 8), mode="replicate")
    with torch.no_grad():
        z = vae.encode(x).latent_dist.mode()
        return ((vae.decode(z).sample + 1) / 2).clamp(0, 1).movedim(1, -1)[:, :h, :w]


@SWEEP
@given(size=page_size(max_side=1500, max_area=6_000), channels=st.sampled_from([1, 3, 4]))
def test_restore_any_size_is_the_base_roundtrip(vae, sym, size, channels):
    image = torch.from_numpy(make_page(size, channels, seed=size[0]))[None]
    out = sym.restore(image, tile=0)
    assert out.shape == (1, *size, 3) and out.dtype == torch.float32
    assert (out - _base_roundtrip(vae, image)).abs().max().item() <= 5e-4  # float rounding of two decode paths


@pytest.mark.slow
@settings(max_examples=2, deadline=None)
@given(size=st.sampled_from([(1, 4001), (3001, 1), (331, 509)]))
def test_tiled_restore_of_strips_and_a_large_page(trained, size):
    image = torch.from_numpy(make_page(size, 3, cheap=True))[None]
    calls = []
    out = trained.restore(image, tile=256, overlap=64, progress=lambda d, t: calls.append((d, t)))
    assert out.shape == (1, *size, 3) and torch.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1 and calls[-1][0] == calls[-1][1] > 1


@SWEEP
@given(size=page_size(max_side=600, max_area=8_000), kind=st.sampled_from(["gray8", "rgb8", "rgba_float", "gray16"]))
def test_restore_page_numpy_formats(sym, size, kind):
    page = make_page(size, 4 if kind == "rgba_float" else (3 if kind == "rgb8" else 1), seed=size[1])
    if kind.endswith("8"):
        page = np.round(page * 255).astype(np.uint8)
    if kind == "gray16":
        page = np.round(page * 65535).astype(np.uint16)
        with pytest.raises(ValueError, match=r"^scan\.tif: expected float \(0\.\.1\) or uint8 \(0\.\.255\) pixels, got dtype uint16"):
            restore_page(sym, page, name="scan.tif")
        return
    out = restore_page(sym, page, tile=0)
    assert out.shape == size and out.dtype == np.float32 and 0 <= out.min() <= out.max() <= 1


@SWEEP
@given(cells=st.tuples(st.integers(1, 20), st.integers(1, 20)), kind=st.sampled_from(MASK_KINDS),
       tile=st.sampled_from([0, 64]))
def test_decode_with_any_mask_keeps_the_hole_free_of_its_old_content(vae, trained, cells, kind, tile):
    """Whatever the size and mask, the decoded hole depends on the latent only; an empty mask gates
    nothing, a full one everything (the base VAE's decode)."""
    h, w = cells[0] * 8, cells[1] * 8
    page = torch.from_numpy(make_page((h, w), 3, seed=h + w))[None]
    z = trained.encode(page)
    assert z.shape == (1, 4, *cells)
    mask = torch.from_numpy(make_mask(kind, (h, w), seed=w).astype(np.float32))[None]
    other = torch.where(mask[..., None] > 0, 1.0 - page, page)  # different content inside the hole only
    a = trained.decode(z, source=page, mask=mask, tile=tile, fill="white")
    b = trained.decode(z, source=other, mask=mask, tile=tile, fill="white")
    assert a.shape == (1, h, w, 3)
    if kind == "empty":
        assert torch.equal(a, trained.decode(z, source=page, tile=tile))
    elif tile == 0:  # (tiles gate each crop on its own: the hole still never shows its content)
        assert torch.equal(a, b)
    if kind == "full" and tile == 0:
        base = ((vae.decode(z).sample + 1) / 2).clamp(0, 1).movedim(1, -1)
        assert (a - base).abs().max().item() <= 1e-6


@pytest.mark.parametrize("size", [(1, 1), (7, 9), (13, 8)])
def test_encode_needs_multiples_of_8_and_says_so(sym, size):
    with pytest.raises(ValueError, match=r"^image: size .* must be a multiple of 8 \(pad the page first\)"):
        sym.encode(torch.rand(1, *size, 3))


def test_bad_inputs_name_the_input(sym):
    z = sym.encode(torch.rand(1, 16, 16, 3))
    with pytest.raises(ValueError, match=r"^source: contains 1 NaN"):
        bad = torch.rand(1, 16, 16, 3)
        bad[0, 1, 2, 0] = float("nan")
        sym.decode(z, source=bad)
    with pytest.raises(ValueError, match=r"^image: expected float pixels in 0\.\.1, got dtype torch\.uint8"):
        sym.restore(torch.zeros(1, 16, 16, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"^image: expected shape \[B, H, W, C\] or \[H, W, C\]"):
        sym.restore(torch.zeros(16, 16))
    with pytest.raises(ValueError, match=r"^mask: size 8x8 does not match the image size 16x16"):
        sym.decode(z, source=torch.rand(1, 16, 16, 3), mask=torch.zeros(8, 8))
    with pytest.raises(ValueError, match=r"^mask: values must lie in 0\.\.1"):
        sym.decode(z, source=torch.rand(1, 16, 16, 3), mask=torch.full((16, 16), 255.0))
    with pytest.raises(ValueError, match=r"^latent: has 3 channels"):
        sym.decode(z[:, :3])
