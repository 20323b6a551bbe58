"""Page-level conditioning follows each SGIM pass's crop, inside a real ComfyUI (in-process).

ControlNet hints, Conditioning Set Area (cells and percentages) and Conditioning Set Mask are laid
out on the whole page; every MDIM SGIM pass samples a crop of it (shrunk for the structure pass,
padded at the bottom/right). These tests check, with the real ControlNet code and sampler, that the
hint a ControlNet actually receives for a pass is the page hint's part under that pass, that areas
and masks land on the right latent cells, and that the user's objects stay untouched.
"""

from __future__ import annotations

import pytest

PAGE = (64, 96)  # page (H, W) in pixels


def _mods():
    """(a namespace with the conditioning mapping and the ComfyUI host, PassInfo) of the pack under test."""
    import types

    conditioning = __import__("mdim_pack_under_test.mdim_core.inpaint.conditioning", fromlist=["x"])
    sgim_host = __import__("mdim_pack_under_test.nodes.sgim_host", fromlist=["x"])
    host = __import__("mdim_pack_under_test.mdim_core.inpaint.host", fromlist=["x"])
    ns = types.SimpleNamespace(
        crop_page_conditioning=conditioning.crop_page_conditioning,
        crop_page_tensor=conditioning.crop_page_tensor,
        ComfyHost=sgim_host.ComfyHost,
    )
    return ns, host.PassInfo


def _info(box, size, padded, name="fri", rows=(0,)):
    _, PassInfo = _mods()
    return PassInfo(name, 0, 1, 0, 2, 0, 1, rows, box, size, padded, page_size=PAGE, batch=max(rows) + 1)


def _pad(t, padded):
    """Bottom/right edge-replicate padding of [B, C, h, w] to padded (H, W), as the engine pads pages."""
    import torch.nn.functional as F

    return F.pad(t, (0, padded[1] - t.shape[-1], 0, padded[0] - t.shape[-2]), mode="replicate")


def _resize_nearest(t, h, w):
    import comfy.utils

    return comfy.utils.common_upscale(t, w, h, "nearest-exact", "disabled")


@pytest.fixture(scope="module")
def controlnet(inprocess_comfy, tiny_checkpoints):
    import comfy.controlnet

    return comfy.controlnet.load_controlnet(str(tiny_checkpoints["controlnet"]))


@pytest.fixture(scope="module")
def comfy_nodes(inprocess_comfy):
    import importlib

    return importlib.import_module("nodes")


def _hint(h, w, seed):
    import torch

    return torch.rand(1, h, w, 3, generator=torch.Generator().manual_seed(seed))  # IMAGE layout


def _apply(comfy_nodes, cond, controlnet, image, strength=1.0):
    pos, neg = comfy_nodes.ControlNetApplyAdvanced().apply_controlnet(cond, cond, controlnet, image, strength, 0.0, 1.0)
    return pos, neg


@pytest.fixture(scope="module")
def chained(inprocess_checkpoint, comfy_nodes, controlnet):
    """Positive/negative with two ControlNets applied in a row: a page-size hint, then a half-size hint."""
    _, clip, _ = inprocess_checkpoint
    cond = clip.encode_from_tokens_scheduled(clip.tokenize("manga"))
    full, half = _hint(*PAGE, 1), _hint(PAGE[0] // 2, PAGE[1] // 2, 2)
    pos, neg = _apply(comfy_nodes, cond, controlnet, full)
    pos, neg = _apply(comfy_nodes, pos, controlnet, half, strength=0.7)
    return pos, neg, full, half


def _page_hint_at_page_size(hint_image):
    """What ComfyUI feeds a ControlNet for a whole-page pass: the hint resized to the page (nearest-exact)."""
    import comfy.utils

    return comfy.utils.common_upscale(hint_image.movedim(-1, 1), PAGE[1], PAGE[0], "nearest-exact", "center")


CASES = {
    # name: (box, size, padded)
    "fri_crop": ((8, 16, 48, 60), (40, 44), (40, 48)),
    "sgi_shrunk_crop": ((8, 16, 48, 64), (20, 24), (24, 24)),
    "sgi_shrunk_page": ((0, 0, 64, 96), (32, 48), (32, 48)),
}


def _expected(page_hint, box, size, padded):
    y0, x0, y1, x1 = box
    part = page_hint[:, :, y0:y1, x0:x1]
    if part.shape[-2:] != size:
        part = _resize_nearest(part, *size)
    return _pad(part, padded)


@pytest.mark.parametrize("case", sorted(CASES))
def test_chain_hints_are_the_page_hints_part_under_the_pass(case, chained):
    import torch

    sgim_nodes, _ = _mods()
    pos, neg, full, half = chained
    box, size, padded = CASES[case]
    info = _info(box, size, padded)
    original = pos[0][1]["control"]
    original_prev = original.previous_controlnet
    hints_before = (original.cond_hint_original.clone(), original_prev.cond_hint_original.clone())

    memo = {}
    new_pos = sgim_nodes.crop_page_conditioning(pos, info, 8, memo)
    new_neg = sgim_nodes.crop_page_conditioning(neg, info, 8, memo)
    control = new_pos[0][1]["control"]
    assert control is not original and control.previous_controlnet is not original_prev
    assert new_neg[0][1]["control"] is control  # positive and negative share one copy, as they shared the original
    assert control.previous_controlnet.previous_controlnet is None
    assert control.strength == 0.7 and control.previous_controlnet.strength == 1.0
    assert control.cond_hint is None and control.previous_controlnet.cond_hint is None
    # the outer ControlNet carries the half-size hint, the inner one the page-size hint
    for ctrl, hint_image in ((control, half), (control.previous_controlnet, full)):
        expected = _expected(_page_hint_at_page_size(hint_image), box, size, padded)
        assert ctrl.cond_hint_original.shape == (1, 3, *padded)
        assert torch.equal(ctrl.cond_hint_original, expected)
    # the user's conditioning, ControlNets and hints are unchanged
    assert pos[0][1]["control"] is original and original.previous_controlnet is original_prev
    assert torch.equal(original.cond_hint_original, hints_before[0])
    assert torch.equal(original_prev.cond_hint_original, hints_before[1])
    assert original.cond_hint is None and original_prev.cond_hint is None


def test_fri_crop_hint_is_an_exact_slice_of_a_page_size_hint(chained):
    import torch

    sgim_nodes, _ = _mods()
    _, _, full, _ = chained
    hint = full.movedim(-1, 1)
    info = _info((8, 16, 48, 60), (40, 44), (40, 48))
    crop = sgim_nodes.crop_page_tensor(hint, info, (40, 48))
    assert torch.equal(crop[..., :44], hint[:, :, 8:48, 16:60])
    assert torch.equal(crop[..., 44:], hint[:, :, 8:48, 59:60].expand(-1, -1, -1, 4))  # right padding repeats the edge



def test_bilinear_controlnet_hint_is_interpolated_at_the_pass_pixels(comfy_nodes, inprocess_checkpoint, controlnet):
    """A ControlNet that resizes hints bilinearly gets the bilinear page-size hint's crop."""
    import torch
    import torch.nn.functional as F

    sgim_nodes, _ = _mods()
    _, clip, _ = inprocess_checkpoint
    cond = clip.encode_from_tokens_scheduled(clip.tokenize("manga"))
    half = _hint(PAGE[0] // 2, PAGE[1] // 2, 8)
    pos, _ = _apply(comfy_nodes, cond, controlnet, half)
    pos[0][1]["control"].upscale_algorithm = "bilinear"  # this test's own ControlNet copy
    box, size, padded = CASES["fri_crop"]
    got = sgim_nodes.crop_page_conditioning(pos, _info(box, size, padded), 8)[0][1]["control"].cond_hint_original
    page_hint = F.interpolate(half.movedim(-1, 1), size=PAGE, mode="bilinear", align_corners=False)
    want = _pad(page_hint[:, :, box[0] : box[2], box[1] : box[3]], padded)
    assert got.shape == want.shape and torch.allclose(got, want, atol=1e-6)
    assert not torch.equal(got, _expected(_page_hint_at_page_size(half), box, size, padded))  # not nearest


def test_hint_of_another_aspect_ratio_is_centre_cropped_to_the_page_as_comfyui_does(comfy_nodes, prompts, controlnet):
    """A 64x128 hint on a 64x96 page: ComfyUI uses its middle 96 columns for a whole-page pass; crops agree."""
    import comfy.utils
    import torch

    sgim_nodes, _ = _mods()
    wide = _hint(64, 128, 11)
    pos, _ = _apply(comfy_nodes, prompts[0], controlnet, wide)
    whole = comfy.utils.common_upscale(wide.movedim(-1, 1), PAGE[1], PAGE[0], "nearest-exact", "center")
    assert torch.equal(whole, wide.movedim(-1, 1)[:, :, :, 16:112])
    box, size, padded = CASES["fri_crop"]
    got = sgim_nodes.crop_page_conditioning(pos, _info(box, size, padded), 8)[0][1]["control"].cond_hint_original
    assert torch.equal(got, _pad(whole[:, :, 8:48, 16:60], padded))

def test_whole_page_pass_leaves_conditioning_untouched(chained):
    sgim_nodes, _ = _mods()
    pos, _, _, _ = chained
    assert sgim_nodes.crop_page_conditioning(pos, _info((0, 0, *PAGE), PAGE, PAGE, name="sgi"), 8) is pos
    assert sgim_nodes.crop_page_conditioning(pos, None, 8) is pos


def test_controlnet_receives_the_cropped_hint_while_sampling(inprocess_checkpoint, chained, monkeypatch):
    """A crop pass through the real sampler: the hint each ControlNet builds (cond_hint) is the page hint's crop."""
    import comfy.controlnet
    import torch

    sgim_nodes, _ = _mods()
    model, _, vae = inprocess_checkpoint
    pos, neg, full, half = chained
    box, size, padded = CASES["sgi_shrunk_crop"]
    info = _info(box, size, padded, name="sgi")
    seen = {}
    real = comfy.controlnet.ControlNet.get_control

    def spy(self, x_noisy, *args, **kwargs):
        out = real(self, x_noisy, *args, **kwargs)
        seen.setdefault(self.strength, []).append((tuple(x_noisy.shape), self.cond_hint.clone()))
        return out

    monkeypatch.setattr(comfy.controlnet.ControlNet, "get_control", spy)
    host = sgim_nodes.ComfyHost(model, vae, pos, neg, cfg=2.0, sampler_name="euler", scheduler="simple")
    image = torch.rand(1, *padded, 3, generator=torch.Generator().manual_seed(3))
    mask = torch.zeros(1, *padded)
    mask[:, 4:12, 4:20] = 1.0
    with torch.inference_mode():
        latent = vae.encode(image)
        out = host.denoise(latent, image=image, mask=mask, strength=1.0, steps=2, seed=1, info=info)
    assert out.shape == latent.shape and torch.isfinite(out).all()
    assert sorted(seen) == [0.7, 1.0]
    for strength, hint_image in ((0.7, half), (1.0, full)):
        expected = _expected(_page_hint_at_page_size(hint_image), box, size, padded)
        for x_shape, cond_hint in seen[strength]:
            assert x_shape[2:] == (padded[0] // 8, padded[1] // 8)
            assert cond_hint.shape[1:] == expected.shape[1:]
            assert all(torch.equal(row, expected[0].to(cond_hint.dtype)) for row in cond_hint)
    assert pos[0][1]["control"].cond_hint is None  # the user's ControlNet was never sampled


def test_hint_rows_follow_the_pages_of_the_pass(comfy_nodes, inprocess_checkpoint, controlnet):
    import torch

    sgim_nodes, _ = _mods()
    _, clip, _ = inprocess_checkpoint
    cond = clip.encode_from_tokens_scheduled(clip.tokenize("manga"))
    hints = torch.cat([_hint(*PAGE, 5), _hint(*PAGE, 6), _hint(*PAGE, 7)])
    pos, _ = _apply(comfy_nodes, cond, controlnet, hints)
    info = _info((0, 0, 32, 40), (32, 40), (32, 40), rows=(2, 0))
    got = sgim_nodes.crop_page_conditioning(pos, info, 8)[0][1]["control"].cond_hint_original
    assert torch.equal(got, hints.movedim(-1, 1)[[2, 0], :, :32, :40])


# --------------------------------------------------------------------------- areas and masks


@pytest.fixture(scope="module")
def prompts(inprocess_checkpoint):
    _, clip, _ = inprocess_checkpoint
    return (
        clip.encode_from_tokens_scheduled(clip.tokenize("manga")),
        clip.encode_from_tokens_scheduled(clip.tokenize("screentone")),
    )


def _left_half(comfy_nodes, cond, percentage):
    if percentage:
        return comfy_nodes.ConditioningSetAreaPercentage().append(cond, 0.5, 1.0, 0.0, 0.0, 0.8)[0]
    return comfy_nodes.ConditioningSetArea().append(cond, PAGE[1] // 2, PAGE[0], 0, 0, 0.8)[0]


@pytest.mark.parametrize("percentage", [False, True])
def test_left_half_area_maps_to_the_pass_cells(comfy_nodes, prompts, percentage):
    sgim_nodes, _ = _mods()
    base, other = prompts
    area_cond = _left_half(comfy_nodes, other, percentage)
    conds = base + area_cond  # Conditioning Combine
    before = [dict(c[1]) for c in conds]
    # crop x 32..80 straddles the area's edge at x = 48: pass columns 0..16 = latent cells 0..2
    straddle = sgim_nodes.crop_page_conditioning(conds, _info((0, 32, 64, 80), (64, 48), (64, 48)), 8)
    assert len(straddle) == 2 and straddle[1][1]["area"] == (8, 2, 0, 0) and straddle[1][1]["strength"] == 0.8
    assert "area" not in straddle[0][1]
    # the same crop shrunk by two (structure pass): one latent cell column, all rows
    shrunk = sgim_nodes.crop_page_conditioning(conds, _info((0, 32, 64, 80), (32, 24), (32, 24), "sgi"), 8)
    assert shrunk[1][1]["area"] == (4, 1, 0, 0)
    # a crop of the page's lower right: the area is left out of this pass
    right = sgim_nodes.crop_page_conditioning(conds, _info((16, 56, 64, 96), (48, 40), (48, 40)), 8)
    assert len(right) == 1 and right[0][1] is conds[0][1]
    # a crop of the upper left: the area fills the pass from its top-left corner to x = 48
    left = sgim_nodes.crop_page_conditioning(conds, _info((0, 8, 40, 60), (40, 52), (40, 56)), 8)
    assert left[1][1]["area"] == (5, 5, 0, 0)
    # nothing the user made changed
    assert [dict(c[1]) for c in conds] == before


def test_area_alone_outside_the_pass_keeps_one_entry_with_no_weight(comfy_nodes, prompts):
    sgim_nodes, _ = _mods()
    area_only = _left_half(comfy_nodes, prompts[1], False)
    got = sgim_nodes.crop_page_conditioning(area_only, _info((0, 56, 64, 96), (64, 40), (64, 40)), 8)
    assert len(got) == 1 and got[0][1]["strength"] == 0.0 and got[0][1]["area"] == (8, 5, 0, 0)
    assert area_only[0][1]["strength"] == 0.8 and area_only[0][1]["area"] == (8, 6, 0, 0)


def test_mask_condition_is_cut_to_the_pass_latent_cells(comfy_nodes, prompts):
    import torch

    sgim_nodes, _ = _mods()
    page_mask = torch.zeros(1, *PAGE)
    page_mask[:, :, :48] = 1.0  # left half of the page
    masked = comfy_nodes.ConditioningSetMask().append(prompts[1], page_mask, "default", 0.9)[0]
    conds = prompts[0] + masked
    got = sgim_nodes.crop_page_conditioning(conds, _info((0, 32, 64, 80), (64, 48), (64, 48)), 8)
    expected = torch.zeros(1, 8, 6)
    expected[:, :, :2] = 1.0
    assert torch.equal(got[1][1]["mask"], expected) and got[1][1]["mask_strength"] == 0.9
    # a half-resolution mask gives the same cells; a crop right of the mask drops the entry
    half = comfy_nodes.ConditioningSetMask().append(prompts[1], page_mask[:, ::2, ::2], "default", 0.9)[0]
    got_half = sgim_nodes.crop_page_conditioning(prompts[0] + half, _info((0, 32, 64, 80), (64, 48), (64, 48)), 8)
    assert torch.equal(got_half[1][1]["mask"], expected)
    # a mask of another aspect ratio is stretched over the page (ComfyUI resizes cond masks without cropping)
    # (cell centres x = 36, 44, ..., 76 on the page sample the 64x192 mask at x' = 2x - 0.5; ones from x' = 120)
    wide = torch.zeros(1, 64, 192)
    wide[:, :, 120:] = 1.0
    stretched = comfy_nodes.ConditioningSetMask().append(prompts[1], wide, "default", 0.9)[0]
    got_wide = sgim_nodes.crop_page_conditioning(prompts[0] + stretched, _info((0, 32, 64, 80), (64, 48), (64, 48)), 8)
    assert torch.equal(got_wide[1][1]["mask"][0, 0], torch.tensor([0.0, 0.0, 0.0, 0.5, 1.0, 1.0]))
    assert torch.equal(got_wide[1][1]["mask"], got_wide[1][1]["mask"][:, :1].expand(1, 8, 6))
    right = sgim_nodes.crop_page_conditioning(conds, _info((0, 56, 64, 96), (64, 40), (64, 40)), 8)
    assert len(right) == 1
    assert masked[0][1]["mask"] is not got[1][1]["mask"] and torch.equal(masked[0][1]["mask"], page_mask)


def test_sampler_sees_the_pass_area(inprocess_checkpoint, comfy_nodes, prompts, monkeypatch):
    """Through the real sampler: get_area_and_mult receives the pass's area, in the pass latent cells."""
    import comfy.samplers
    import torch

    sgim_nodes, _ = _mods()
    model, _, vae = inprocess_checkpoint
    conds = prompts[0] + _left_half(comfy_nodes, prompts[1], True)
    seen = []
    real = comfy.samplers.get_area_and_mult

    def spy(cond, x_in, timestep):
        seen.append(cond.get("area"))
        return real(cond, x_in, timestep)

    monkeypatch.setattr(comfy.samplers, "get_area_and_mult", spy)
    host = sgim_nodes.ComfyHost(model, vae, conds, prompts[0], cfg=2.0, sampler_name="euler", scheduler="simple")
    image = torch.rand(1, 64, 48, 3, generator=torch.Generator().manual_seed(4))
    mask = torch.ones(1, 64, 48)
    info = _info((0, 32, 64, 80), (64, 48), (64, 48))
    with torch.inference_mode():
        out = host.denoise(vae.encode(image), image=image, mask=mask, strength=1.0, steps=1, seed=2, info=info)
    assert torch.isfinite(out).all()
    assert (8, 2, 0, 0) in seen and ("percentage", 1.0, 0.5, 0.0, 0.0) not in seen


def test_node_run_gives_every_pass_the_hint_under_its_crop(inprocess_comfy, inprocess_checkpoint, comfy_nodes, controlnet, test_images, monkeypatch):
    """MDIM SGIM Inpaint on the test page with the page itself as ControlNet hint (structure + refinement
    passes on a crop): the refinement pass's ControlNet sees exactly the page crop; the structure
    pass's hint has the pass's padded size; the node's result keeps every pixel outside the mask."""
    import comfy.controlnet
    import numpy as np
    import torch

    sgim_nodes, _ = _mods()
    model, clip, vae = inprocess_checkpoint
    page = torch.from_numpy(test_images["mdim_example_page.png"].astype(np.float32) / 255.0)[None]
    mask = torch.from_numpy((test_images["mdim_example_mask.png"][..., 0] > 127).astype(np.float32))[None]
    cond = clip.encode_from_tokens_scheduled(clip.tokenize("manga"))
    pos, neg = _apply(comfy_nodes, cond, controlnet, page)
    passes = []
    real_denoise, real_control = sgim_nodes.ComfyHost.denoise, comfy.controlnet.ControlNet.get_control

    def denoise(self, latent, **kw):
        passes.append((kw["info"], kw["image"].clone(), kw["mask"].clone(), []))
        return real_denoise(self, latent, **kw)

    def get_control(self, x_noisy, *args, **kwargs):
        out = real_control(self, x_noisy, *args, **kwargs)
        passes[-1][3].append(self.cond_hint.clone())
        return out

    monkeypatch.setattr(sgim_nodes.ComfyHost, "denoise", denoise)
    monkeypatch.setattr(comfy.controlnet.ControlNet, "get_control", get_control)
    inputs = {
        "model": model, "positive": pos, "negative": neg, "vae": vae, "image": page, "mask": mask, "seed": 5,
        "steps": 2, "cfg": 2.0, "sampler_name": "euler", "scheduler": "simple", "sgi_max_side": 64, "plan": "halve",
        "fri_strength": 0.5, "fri_steps": 1, "run_fri": "auto", "grow_mask": 0, "feather": 0, "context_margin": 16,
        "min_crop_side": 0, "limit_to_panel": False, "tiled_vae_megapixels": 4.0,
        "flat_fill": "off",  # the page's text sits in flat paper: 'auto' would fill it without the model
    }  # fmt: skip
    out, _ = inprocess_comfy.run("MDIM_SGIMInpaint", **inputs)
    outside = (mask == 0)[..., None].expand_as(page)
    assert torch.equal(out[outside], page[outside])
    names = [p[0].name for p in passes]
    assert "sgi" in names and "fri" in names
    for info, image, pass_mask, hints in passes:
        assert hints, f"the ControlNet was not sampled in the {info.name} pass"
        assert tuple(image.shape[1:3]) == tuple(info.padded_size)
        for hint in hints:
            assert tuple(hint.shape[2:]) == tuple(info.padded_size)
            if info.name == "fri":  # the page is the hint: the refinement hint is the pass image (outside
                # the mask, where the engine has not pasted the structure pass) and the page crop inside
                known = (pass_mask[0] == 0).expand(3, -1, -1)
                assert known.any() and pass_mask.any()
                y0, x0, y1, x1 = info.box
                want = image.movedim(-1, 1)[0].to(hint.dtype)
                crop = page.movedim(-1, 1)[0, :, y0:y1, x0:x1].to(hint.dtype)
                for row in hint:
                    assert torch.equal(row[known], want[known])
                    assert torch.equal(row[:, : y1 - y0, : x1 - x0], crop)
            else:  # the structure pass: the page crop shrunk to the pass size (nearest-exact), padded
                y0, x0, y1, x1 = info.box
                assert info.size != (y1 - y0, x1 - x0)
                want = _pad(_resize_nearest(page.movedim(-1, 1)[:, :, y0:y1, x0:x1], *info.size), info.padded_size)
                assert all(torch.equal(row, want[0].to(hint.dtype)) for row in hint)
    assert pos[0][1]["control"].cond_hint is None and torch.equal(pos[0][1]["control"].cond_hint_original, page.movedim(-1, 1))


def test_inpaint_controlnet_mask_is_cut_like_its_hint(comfy_nodes, inprocess_checkpoint, controlnet):
    """Extra concat images of a ControlNet (the mask of inpainting ControlNets) follow the crop like the hint."""
    import torch

    sgim_nodes, _ = _mods()
    _, clip, _ = inprocess_checkpoint
    cond = clip.encode_from_tokens_scheduled(clip.tokenize("manga"))
    page_mask = torch.rand(1, 1, *PAGE, generator=torch.Generator().manual_seed(9))
    hint = _hint(*PAGE, 10)
    pos, _ = comfy_nodes.ControlNetApplyAdvanced().apply_controlnet(
        cond, cond, controlnet, hint, 1.0, 0.0, 1.0, extra_concat=[page_mask]
    )
    box, size, padded = CASES["fri_crop"]
    control = sgim_nodes.crop_page_conditioning(pos, _info(box, size, padded), 8)[0][1]["control"]
    assert torch.equal(control.extra_concat_orig[0], _pad(page_mask[:, :, 8:48, 16:60], padded))
    assert pos[0][1]["control"].extra_concat_orig[0] is page_mask


def test_sampler_runs_a_pass_that_no_area_or_mask_covers(inprocess_checkpoint, comfy_nodes, prompts, monkeypatch, caplog):
    """An area-only positive and a mask-only negative that both miss the crop: the pass still samples,
    every entry it gets weighs 0 there (as ComfyUI outside every area), and the user is told."""
    import logging

    import comfy.samplers
    import torch

    sgim_nodes, _ = _mods()
    model, _, vae = inprocess_checkpoint
    positive = _left_half(comfy_nodes, prompts[1], False)
    page_mask = torch.zeros(1, *PAGE)
    page_mask[:, :, :40] = 1.0
    negative = comfy_nodes.ConditioningSetMask().append(prompts[0], page_mask, "mask bounds", 1.0)[0]
    seen = []
    real = comfy.samplers.get_area_and_mult

    def spy(cond, x_in, timestep):
        out = real(cond, x_in, timestep)
        seen.append((cond.get("area"), None if out is None else float(out.mult.abs().max())))
        return out

    monkeypatch.setattr(comfy.samplers, "get_area_and_mult", spy)
    host = sgim_nodes.ComfyHost(model, vae, positive, negative, cfg=2.0, sampler_name="euler", scheduler="simple")
    image = torch.rand(1, 64, 40, 3, generator=torch.Generator().manual_seed(4))
    info = _info((0, 56, 64, 96), (64, 40), (64, 40))
    with caplog.at_level(logging.WARNING, logger="MDIM"), torch.inference_mode():
        out = host.denoise(vae.encode(image), image=image, mask=torch.ones(1, 64, 40), strength=1.0, steps=1, seed=2, info=info)
    assert torch.isfinite(out).all()
    assert seen and all(mult == 0.0 for _, mult in seen)
    assert (8, 5, 0, 0) in [area for area, _ in seen]
    assert "(0, 56, 64, 96)" in caplog.text and "Conditioning Combine" in caplog.text
    assert positive[0][1]["strength"] == 0.8 and torch.equal(negative[0][1]["mask"], page_mask)


def test_area_edges_off_the_crop_grid_take_cells_at_least_half_inside(comfy_nodes, prompts):
    sgim_nodes, _ = _mods()
    area = comfy_nodes.ConditioningSetArea().append(prompts[1], 56, 24, 0, 16, 1.0)[0]  # x 0..56, y 16..40
    conds = prompts[0] + area
    # crop x 36..84, y 4..60: the area's right edge x = 56 is 20 px = 2.5 cells in, its top y = 16 is 1.5 cells
    # down and its bottom y = 40 is 4.5 cells down: the half-covered cells 2 (x), 1 and 4 (y) are in
    got = sgim_nodes.crop_page_conditioning(conds, _info((4, 36, 60, 84), (56, 48), (56, 48)), 8)
    assert got[1][1]["area"] == (4, 3, 1, 0)
    # shrunk by 4 (structure pass): 0.625 cells wide -> 1 cell; y 0.375..1.125 cells -> cell 0 only
    got = sgim_nodes.crop_page_conditioning(conds, _info((4, 36, 60, 84), (14, 12), (16, 16), "sgi"), 8)
    assert got[1][1]["area"] == (1, 1, 0, 0)


def test_structure_pass_hint_follows_the_exact_extent_of_a_shrunk_crop(chained):
    """A crop of a page shrunk by a non-integer factor shows a fractional page area (``info.extent``);
    its hint takes, for every pass pixel, the page pixel under that pixel's exact centre."""
    import torch

    sgim_nodes, PassInfo = _mods()
    pos, _, full, _ = chained
    small = (41, 61)  # the 64 x 96 page fitted to 61 px: 1.561 / 1.574 page pixels per pass pixel
    a, b = (5, 7), (30, 50)  # the crop on the shrunk page
    extent = (a[0] * 64 / 41, a[1] * 96 / 61, b[0] * 64 / 41, b[1] * 96 / 61)
    box = (int(extent[0]), int(extent[1]), -int(-extent[2] // 1), -int(-extent[3] // 1))  # rounded outward
    size, padded = (b[0] - a[0], b[1] - a[1]), (32, 48)
    info = PassInfo("sgi", 0, 1, 0, 2, 0, 1, (0,), box, size, padded, page_size=PAGE, extent=extent)
    hint = sgim_nodes.crop_page_conditioning(pos, info, 8, {})[0][1]["control"].previous_controlnet.cond_hint_original
    page_hint = _page_hint_at_page_size(full)
    # exact rational centres: shrunk pixel i shows page rows from i * 64 / 41, its centre at (2i + 1) * 32 / 41
    rows = torch.tensor([((2 * (a[0] + q) + 1) * PAGE[0]) // (2 * small[0]) for q in range(size[0])])
    cols = torch.tensor([((2 * (a[1] + q) + 1) * PAGE[1]) // (2 * small[1]) for q in range(size[1])])
    expected = _pad(page_hint.index_select(-2, rows).index_select(-1, cols), padded)
    assert torch.equal(hint, expected)
    # the rounded box alone would shift the hint: taking it as the extent gives another hint
    rounded = PassInfo("sgi", 0, 1, 0, 2, 0, 1, (0,), box, size, padded, page_size=PAGE)
    shifted = sgim_nodes.crop_page_conditioning(pos, rounded, 8, {})[0][1]["control"].previous_controlnet
    assert not torch.equal(shifted.cond_hint_original, expected)
