"""Symmetric VAE model: zero-init parity (both module layouts), mask gating, tiling, bad input."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_models import build_autoencoder_kl, build_local_autoencoder_kl

from mdim_core.imaging import geometry
from mdim_core.symvae import SymmetricVAE, detect_layout
from mdim_core.symvae.model import _ramp


class _Node(torch.nn.Module):
    pass


class LDMView(torch.nn.Module):
    """A diffusers AutoencoderKL presented under the LDM (ComfyUI) attribute names.

    The sub-modules are the diffusers ones (same objects), arranged as ComfyUI's
    ``comfy.ldm.models.autoencoder.AutoencoderKL`` arranges its own: encoder.down[i].block /
    .attn / .downsample, encoder.mid.block_1/attn_1/block_2, decoder.up[i] with up[0] at full
    resolution, decoder.norm_out followed by a SiLU in forward. Its ``decode`` is the diffusers
    decode, so a walk of the LDM names that gets the order wrong cannot match it.
    """

    def __init__(self, vae):
        super().__init__()
        self._vae = vae
        enc, dec = vae.encoder, vae.decoder
        n = len(enc.down_blocks)
        self.encoder = _Node()
        self.encoder.conv_in = enc.conv_in
        self.encoder.down = torch.nn.ModuleList()
        for i, block in enumerate(enc.down_blocks):
            level = _Node()
            level.block = block.resnets
            level.attn = torch.nn.ModuleList()
            if i < n - 1:
                level.downsample = block.downsamplers[0]
            self.encoder.down.append(level)
        self.encoder.mid = _Node()
        self.encoder.mid.block_1, self.encoder.mid.block_2 = enc.mid_block.resnets
        self.encoder.mid.attn_1 = enc.mid_block.attentions[0]
        self.encoder.norm_out, self.encoder.conv_out = enc.conv_norm_out, enc.conv_out
        self.decoder = _Node()
        self.decoder.conv_in = dec.conv_in
        self.decoder.mid = _Node()
        self.decoder.mid.block_1, self.decoder.mid.block_2 = dec.mid_block.resnets
        self.decoder.mid.attn_1 = dec.mid_block.attentions[0]
        levels = []
        for i in range(n):
            block = dec.up_blocks[n - 1 - i]
            level = _Node()
            level.block = block.resnets
            level.attn = torch.nn.ModuleList()
            if i != 0:
                level.upsample = block.upsamplers[0]
            levels.append(level)
        self.decoder.up = torch.nn.ModuleList(levels)
        self.decoder.norm_out, self.decoder.conv_out = dec.conv_norm_out, dec.conv_out
        self.quant_conv, self.post_quant_conv = vae.quant_conv, vae.post_quant_conv

    def encode(self, x):
        return self._vae.encode(x).latent_dist.mode()

    def decode(self, z):
        return self._vae.decode(z).sample


@pytest.fixture(scope="module")
def vae():
    return build_autoencoder_kl(seed=0)


def _page(seed: int, b: int = 1, h: int = 64, w: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    img = torch.rand(b, h, w, 1, generator=g).expand(-1, -1, -1, 3)
    # a screentone-like pattern plus a black bar, so features are not noise only
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    dots = ((torch.sin(xx * 1.3) * torch.sin(yy * 1.3)) > 0.3).float()[None, :, :, None]
    return (0.5 * img + 0.5 * dots).clamp(0, 1).contiguous()


def _base_decode(vae, z) -> torch.Tensor:
    with torch.no_grad():
        return ((vae.decode(z).sample + 1) / 2).clamp(0, 1).movedim(1, -1)


def _randomise(sym: SymmetricVAE, seed: int = 1, scale: float = 0.5) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for a in sym.adapters:
            a.conv_out.weight.copy_(torch.randn(a.conv_out.weight.shape, generator=g) * scale)
            a.conv_out.bias.copy_(torch.randn(a.conv_out.bias.shape, generator=g) * 0.1)


@pytest.mark.parametrize("layout", ["diffusers", "ldm"])
def test_zero_init_decodes_like_base(vae, layout):
    base = vae if layout == "diffusers" else LDMView(vae)
    sym = SymmetricVAE(base)
    assert sym.layout.name == layout
    img = _page(0, b=2)
    z = sym.encode(img)
    with torch.no_grad():
        ref_z = vae.encode(img.movedim(-1, 1) * 2 - 1).latent_dist.mode()
    assert torch.equal(z, ref_z)
    ref = _base_decode(vae, z)
    plain = sym.decode(z)
    skip = sym.decode(z, source=img)
    mask = torch.zeros(2, 64, 64)
    mask[:, 20:40, 10:50] = 1
    gated = sym.decode(z, source=img, mask=mask, fill="white")
    for out in (plain, skip, gated):
        assert out.shape == (2, 64, 64, 3)
        assert (out - ref).abs().max().item() <= 1e-5


def test_tap_layout_and_no_base_weights(vae):
    sym = SymmetricVAE(vae)
    assert [d["tap_channels"] for d in sym.tap_layout()] == [32, 32, 64, 64]
    # decoder widths at the start of each level (full resolution first)
    assert [d["decoder_channels"] for d in sym.tap_layout()] == [32, 64, 64, 64]
    assert all(k.startswith("adapters.") for k in sym.state_dict())
    base_ids = {id(p) for p in vae.parameters()}
    assert not base_ids & {id(p) for p in sym.parameters()}
    # LDM view of the same model describes the same levels
    assert SymmetricVAE(LDMView(vae)).tap_layout() == sym.tap_layout()


def test_layout_taps_match_between_layouts(vae):
    x = _page(3).movedim(-1, 1) * 2 - 1
    with torch.no_grad():
        a = detect_layout(vae).taps(x)
        b = detect_layout(LDMView(vae)).taps(x)
    assert [t.shape[-1] for t in a] == [64, 32, 16, 8]
    for ta, tb in zip(a, b):
        assert torch.equal(ta, tb)


@pytest.mark.parametrize("layout", ["diffusers", "ldm"])
def test_trained_adapters_change_output_and_layouts_agree(vae, layout):
    sym = SymmetricVAE(vae if layout == "diffusers" else LDMView(vae))
    _randomise(sym)
    img = _page(1)
    z = sym.encode(img)
    out = sym.decode(z, source=img)
    ref = _base_decode(vae, z)
    assert (out - ref).abs().max().item() > 1e-2
    other = SymmetricVAE(vae if layout == "ldm" else LDMView(vae))
    other.load_state_dict(sym.state_dict())
    assert (other.decode(z, source=img) - out).abs().max().item() <= 1e-6


@pytest.mark.parametrize("fill", ["base", "white"])
def test_gating_makes_hole_independent_of_removed_content(vae, fill):
    sym = SymmetricVAE(vae)
    _randomise(sym, seed=2)
    img = _page(2)
    z = sym.encode(img)
    mask = torch.zeros(1, 64, 64)
    mask[:, 16:40, 24:48] = 1
    a = img.clone()
    b = img.clone()
    a[:, 16:40, 24:48] = 0.0  # black "text" in the hole
    b[:, 16:40, 24:48] = torch.rand(1, 24, 24, 1, generator=torch.Generator().manual_seed(5))
    out_a = sym.decode(z, source=a, mask=mask, fill=fill)
    out_b = sym.decode(z, source=b, mask=mask, fill=fill)
    assert torch.equal(out_a, out_b)  # the removed content does not reach the output at all
    # without the mask the hole content does reach the decoder: the test above can fail
    free_a, free_b = sym.decode(z, source=a), sym.decode(z, source=b)
    assert (free_a - free_b)[:, 16:40, 24:48].abs().max().item() > 1e-2
    # outside the dilated gate the skips still act (the output is not just the base decode)
    base = _base_decode(vae, z)
    assert (out_a - base)[:, :8].abs().max().item() > 1e-2


def test_gate_switches_skips_off_inside_hole(vae):
    sym = SymmetricVAE(vae)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 30:34, 30:34] = 1
    gates = sym.gates(mask, dilation=2)
    assert [tuple(g.shape[-2:]) for g in gates] == [(64, 64), (32, 32), (16, 16), (8, 8)]
    g0 = gates[0][0, 0]
    assert g0[27:37, 27:37].eq(0).all()  # hole dilated by 2 px + 1 cell
    assert g0[:26].eq(1).all() and g0[38:].eq(1).all()
    assert gates[3][0, 0, 3:5, 3:5].eq(0).all() and gates[3][0, 0, 0, 0] == 1


def test_ramps_fade_only_towards_neighbours():
    r = _ramp(16, 16, 4, True, True, False, False)
    assert r.shape == (1, 16, 16, 1) and r.min() > 0 and r[0, 8, 8, 0] == 1
    assert torch.equal(r[0, :, 0, 0], r[0, :, 15, 0])  # no ramp towards the left and right
    assert r[0, 0, 8, 0] < r[0, 3, 8, 0] < 1 and r[0, 15, 8, 0] == r[0, 0, 8, 0]
    assert torch.equal(_ramp(8, 8, 4, False, False, False, False), torch.ones(1, 8, 8, 1))


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.sampled_from([32, 40, 64]), st.integers(0, 64))
def test_tiled_blend_weights_add_up_to_one(vae, h, w, tile, overlap):
    """The tiled loop with a tile function that gives back its own source crop returns the source:
    every pixel's blend weights add up to 1, whatever the tiles' overlaps (no seam, no gap)."""
    sym = SymmetricVAE(vae)
    g = torch.Generator().manual_seed(h * 41 + w)
    source = torch.rand(2, h * 8, w * 8, 3, generator=g)
    tiles = []

    def crop(y0, y1, x0, x1):
        tiles.append((y0, y1, x0, x1))
        return source[:, y0 * 8 : y1 * 8, x0 * 8 : x1 * 8]

    out = sym._tiled(2, h, w, tile, overlap, crop)
    assert out.shape == source.shape
    assert (out - source).abs().max().item() <= 1e-6
    lt = tile // 8
    spans = geometry.tile_spans(h, lt, max(0, min(overlap // 8, lt // 2)))
    assert len(tiles) == len(spans) * len(geometry.tile_spans(w, lt, max(0, min(overlap // 8, lt // 2))))


def test_tiled_decode_equals_whole_decode_on_a_local_model():
    """On a decoder without GroupNorm and attention (each pixel sees ~60 px), a tiled decode differs
    from the whole decode only by the blend of tile edges: far below the image's own contrast."""
    sym = SymmetricVAE(build_local_autoencoder_kl())
    _randomise(sym, seed=1, scale=1.0)
    img = _page(11, h=256, w=192)
    z = sym.encode(img)
    whole = sym.decode(z, source=img, tile=0)
    # the decode has real contrast: a tile placed one latent cell off would exceed the tolerance
    assert (whole[:, :, 8:] - whole[:, :, :-8]).abs().max().item() > 0.1
    for tile, overlap in ((64, 32), (96, 48), (128, 64)):
        tiled = sym.decode(z, source=img, tile=tile, overlap=overlap)
        assert (tiled - whole).abs().max().item() <= 0.01, (tile, overlap)


def test_tiled_decode_close_to_whole_and_exact_for_one_tile(vae):
    sym = SymmetricVAE(vae)
    _randomise(sym, seed=3, scale=0.2)
    img = _page(4, h=128, w=96)
    z = sym.encode(img)
    whole = sym.decode(z, source=img, tile=0)
    one = sym.decode(z, source=img, tile=128)
    assert torch.equal(one, whole)
    tiled = sym.decode(z, source=img, tile=64, overlap=32)
    assert tiled.shape == whole.shape
    # pixels covered by one tile only are that tile decoded on its own (with its own source crop)
    first = sym.decode(z[:, :, :8, :8], source=img[:, :64, :64], tile=0)
    assert (tiled[:, :32, :32] - first[:, :32, :32]).abs().max().item() <= 1e-6
    last = sym.decode(z[:, :, 8:, 4:], source=img[:, 64:, 32:], tile=0)
    assert (tiled[:, 96:, 64:] - last[:, 32:, 32:]).abs().max().item() <= 1e-6
    # blended seams stay between the two tiles' values (no overshoot)
    assert tiled.min() >= 0 and tiled.max() <= 1


def test_restore_any_size(vae):
    sym = SymmetricVAE(vae)
    img = _page(6, h=61, w=45)[..., :1]
    out = sym.restore(img)
    assert out.shape == (1, 61, 45, 3)
    padded = torch.nn.functional.pad(img.expand(-1, -1, -1, 3).movedim(-1, 1), (0, 3, 0, 3), mode="replicate")
    with torch.no_grad():
        z = vae.encode(padded * 2 - 1).latent_dist.mode()
    ref = _base_decode(vae, z)[:, :61, :45]
    assert (out - ref).abs().max().item() <= 1e-5
    tiled = sym.restore(_page(6, h=100, w=80), tile=64, overlap=16)
    assert tiled.shape == (1, 100, 80, 3)


def test_inputs_are_not_mutated(vae):
    sym = SymmetricVAE(vae)
    _randomise(sym)
    img = _page(7)
    mask = torch.zeros(1, 64, 64)
    mask[:, 10:20, 10:20] = 1
    z = sym.encode(img)
    copies = (img.clone(), mask.clone(), z.clone())
    sym.decode(z, source=img, mask=mask)
    assert torch.equal(img, copies[0]) and torch.equal(mask, copies[1]) and torch.equal(z, copies[2])


def test_bad_input(vae):
    sym = SymmetricVAE(vae)
    img = _page(8)
    z = sym.encode(img)
    with pytest.raises(ValueError, match="source: size"):
        sym.decode(z, source=_page(8, h=72))
    with pytest.raises(ValueError, match="mask: given without a source"):
        sym.decode(z, mask=torch.zeros(64, 64))
    with pytest.raises(ValueError, match="mask: size"):
        sym.decode(z, source=img, mask=torch.zeros(1, 32, 32))
    with pytest.raises(ValueError, match="fill"):
        sym.decode(z, source=img, fill="grey")
    with pytest.raises(ValueError, match="latent: has 3 channels"):
        sym.decode(z[:, :3])
    with pytest.raises(ValueError, match="multiple of 8"):
        sym.encode(_page(8, h=60))
    with pytest.raises(ValueError, match="NaN"):
        sym.decode(z, source=img * float("nan"))
    with pytest.raises(ValueError, match="tile"):
        sym.decode(z, source=img, tile=12)
    with pytest.raises(TypeError, match="vae"):
        SymmetricVAE(torch.nn.Conv2d(3, 3, 1))


def test_large_pages_are_tiled_by_default(vae):
    sym = SymmetricVAE(vae)
    assert sym._tile_size(1024, 1024, None) is None  # up to 1024x1024 px in one piece
    assert sym._tile_size(1032, 1024, None) == 1024  # larger pages: 1024 px tiles
    assert sym._tile_size(4000, 4000, 0) is None  # 0 = never tile
    assert sym._tile_size(4000, 4000, 512) == 512


class _Stop(Exception):
    pass


def test_progress_called_once_per_tile_and_can_cancel(vae):
    sym = SymmetricVAE(vae)
    _randomise(sym, seed=3, scale=0.2)
    img = _page(9, h=128, w=96)
    z = sym.encode(img)
    # 128x96 px in 64-px tiles with 32-px overlap: 3 x 2 tiles
    calls = []
    out = sym.decode(z, source=img, tile=64, overlap=32, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(i, 6) for i in range(1, 7)]
    assert torch.equal(out, sym.decode(z, source=img, tile=64, overlap=32))  # the callback changes nothing
    calls.clear()
    sym.decode(z, source=img, tile=0, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 1)]
    calls.clear()
    sym.restore(img, tile=64, overlap=32, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(i, 6) for i in range(1, 7)]
    calls.clear()
    sym.restore(img[:, :64, :64], tile=1024, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 1)]

    # raising stops the run at once; inputs stay as they were
    mask = torch.zeros(1, 128, 96)
    mask[:, 20:90, 10:60] = 1
    copies = (img.clone(), mask.clone(), z.clone())
    for run in (
        lambda p: sym.decode(z, source=img, mask=mask, tile=64, overlap=32, progress=p),
        lambda p: sym.restore(img, tile=64, overlap=32, progress=p),
    ):
        seen = []

        def cancel_at_2(done, total, seen=seen):
            seen.append(done)
            if done == 2:
                raise _Stop

        with pytest.raises(_Stop):
            run(cancel_at_2)
        assert seen == [1, 2]  # no tile after the one that raised
        assert torch.equal(img, copies[0]) and torch.equal(mask, copies[1]) and torch.equal(z, copies[2])


def test_nan_message_says_what_is_expected(vae):
    sym = SymmetricVAE(vae)
    img = _page(8).clone()
    img[0, 3, 4, 1] = float("nan")
    with pytest.raises(ValueError, match=r"image: contains 1 NaN or infinite value\(s\); expected finite values in 0\.\.1"):
        sym.restore(img)
