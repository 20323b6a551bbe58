"""MDIM SGIM Inpaint frames (page / panels) in a real ComfyUI (in-process): what a demanding user hits.

Each frame (the page, or with ``limit_to_panel`` each panel holding mask) is shrunk for the
structure pass, which runs on crops of the shrunk frame; the refinement pass runs at full
resolution on crops around the regions. These tests drive the node as the host does, on
torch-drawn multi-panel pages, and check what must hold whatever the (random) weights: every
pixel outside the mask comes back bit for bit through the node's IMAGE output, the same seed gives
the same bytes, the progress bar counts exactly the planned steps, every pass stays inside its
frame, cancelling in either pass stops the run and the next run is unaffected.
"""

from __future__ import annotations

import pytest

FAST = {"steps": 2, "fri_steps": 1}


def _mods():
    sgim = __import__("mdim_pack_under_test.mdim_core.inpaint.sgim", fromlist=["x"])
    sgim_nodes = __import__("mdim_pack_under_test.nodes.sgim_host", fromlist=["x"])
    return sgim, sgim_nodes


# --------------------------------------------------------------------------- pages



def _spy_hint_sizes(monkeypatch) -> list:
    """Record ``(latent size, hint size)`` of every ControlNet call while sampling."""
    import comfy.controlnet

    seen = []
    real = comfy.controlnet.ControlNet.get_control

    def spy(self, x_noisy, *args, **kwargs):
        out = real(self, x_noisy, *args, **kwargs)
        seen.append((tuple(x_noisy.shape[2:]), tuple(self.cond_hint.shape[2:])))
        return out

    monkeypatch.setattr(comfy.controlnet.ControlNet, "get_control", spy)
    return seen


def draw_page(h: int, w: int, panels, seed: int = 0):
    """A white page ``[1, h, w, 3]`` with black-framed panels ``(y0, x0, y1, x1)`` full of dots and hatching."""
    import torch

    g = torch.Generator().manual_seed(seed)
    page = torch.ones(h, w)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    tone = (((yy + xx) % 6) < 2).float() * 0.8 + 0.1 * torch.rand(h, w, generator=g)
    for y0, x0, y1, x1 in panels:
        page[y0:y1, x0:x1] = 0.0
        page[y0 + 3 : y1 - 3, x0 + 3 : x1 - 3] = tone[y0 + 3 : y1 - 3, x0 + 3 : x1 - 3]
    return page[None, :, :, None].expand(1, h, w, 3).contiguous()


# Page 240 x 320 (H x W): panels A (top left), B (top right), C (bottom); gutters x 152..168, y 112..128.
PAGE_HW = (240, 320)
PANEL_A, PANEL_B, PANEL_C = (8, 8, 112, 152), (8, 168, 112, 312), (128, 8, 232, 312)
REGIONS = {  # mask boxes
    "in_a": (30, 30, 60, 90),
    "in_c": (150, 200, 200, 260),
    "across_ab": (70, 140, 90, 180),  # crosses the vertical gutter between A and B
    "gutter": (116, 60, 124, 120),  # white gutter between the rows
}


def mask_of(hw, boxes):
    import torch

    m = torch.zeros(1, *hw)
    for y0, x0, y1, x1 in boxes:
        m[:, y0:y1, x0:x1] = 1.0
    return m


@pytest.fixture(scope="module", autouse=True)
def _comfy(inprocess_comfy):
    """Every test runs with ComfyUI imported and the pack loaded in this process."""
    return inprocess_comfy


@pytest.fixture(scope="module")
def panel_page():
    return draw_page(*PAGE_HW, (PANEL_A, PANEL_B, PANEL_C))


@pytest.fixture(scope="module")
def prompts(inprocess_checkpoint):
    _, clip, _ = inprocess_checkpoint
    return (
        clip.encode_from_tokens_scheduled(clip.tokenize("manga, monochrome")),
        clip.encode_from_tokens_scheduled(clip.tokenize("color")),
    )


def node_inputs(checkpoint, prompts, image, mask, **overrides):
    model, _, vae = checkpoint
    inputs = {
        "model": model, "positive": prompts[0], "negative": prompts[1], "vae": vae, "image": image, "mask": mask,
        "seed": 7, "steps": 2, "cfg": 3.0, "sampler_name": "euler", "scheduler": "simple", "sgi_max_side": 128,
        "plan": "halve", "fri_strength": 0.5, "fri_steps": 1, "run_fri": "auto", "grow_mask": 0, "feather": 0,
        "context_margin": 16, "min_crop_side": 0, "limit_to_panel": False, "tiled_vae_megapixels": 4.0,
        "flat_fill": "off",  # regions on flat white or black paper go to the model too: these tests check its passes
    }  # fmt: skip
    inputs.update(overrides)
    return inputs


def config_of(inputs):
    sgim, _ = _mods()
    names = {f.name for f in __import__("dataclasses").fields(sgim.SGIMConfig)}
    return sgim.SGIMConfig(**{k: v for k, v in inputs.items() if k in names})


def planned(inputs):
    """The engine's plan for these node inputs (what the node will run)."""
    import torch

    sgim, _ = _mods()
    masks = __import__("mdim_pack_under_test.mdim_core.imaging.masks", fromlist=["x"])
    image, config = inputs["image"], config_of(inputs)
    m = masks.clean(inputs["mask"], batch=image.shape[0], size=tuple(image.shape[1:3]), threshold=config.mask_threshold,
                    grow_pixels=config.grow_mask, dtype=torch.bool)  # fmt: skip
    gray = image[..., :3].float().mean(-1) if config.limit_to_panel else None
    return sgim.plan(tuple(image.shape[1:3]), m, config, seed=inputs["seed"], page_gray=gray), m


class Recorder:
    """Spies on the node's host: every pass's PassInfo and the (done, total) its progress bar shows.

    ``cancel_at(done, passes)``: when true, the user presses Cancel just before that progress update.
    (Tiled VAE calls show their own ComfyUI progress bars; only the node's own updates are recorded.)
    """

    def __init__(self, monkeypatch, cancel_at=None):
        import comfy.model_management

        _, sgim_nodes = _mods()
        self.passes, self.progress, self.masks = [], [], []
        real_denoise = sgim_nodes.ComfyHost.denoise
        real_report = sgim_nodes.ComfyHost._report
        rec = self

        def denoise(host, latent, **kw):
            rec.passes.append(kw["info"])
            rec.masks.append(kw["mask"].clone())
            return real_denoise(host, latent, **kw)

        def report(host, done, total, preview=None):
            rec.progress.append((done, total))
            if cancel_at is not None and cancel_at(done, rec.passes):
                comfy.model_management.interrupt_current_processing()
            return real_report(host, done, total, preview)

        monkeypatch.setattr(sgim_nodes.ComfyHost, "denoise", denoise)
        monkeypatch.setattr(sgim_nodes.ComfyHost, "_report", report)


def expected_total(frames, config):
    return sum(
        config.steps * len(f.sgi) + (config.fri_steps * sum(c.passes for c in f.crops) if f.run_fri else 0)
        for f in frames
    )


def assert_outside_exact(out, image, m):
    """``m``: bool ``[B, H, W]`` cleaned mask. Outside it, the node output equals the input bit for bit."""
    import torch

    assert out.shape == image.shape and out.dtype == image.dtype
    outside = (~m)[..., None].expand_as(image)
    assert torch.equal(out[outside], image[outside])
    inside = m[..., None].expand_as(image)
    assert float((out - image)[inside].abs().mean()) > 0.01  # and the mask really was redrawn


def run_node(inprocess_comfy, inputs):
    return inprocess_comfy.run("MDIM_SGIMInpaint", **inputs)


# --------------------------------------------------------------------------- limit_to_panel


def _inside(box, frame):
    return frame[0] <= box[0] and frame[1] <= box[1] and box[2] <= frame[2] and box[3] <= frame[3]


def check_run(inprocess_comfy, inputs, monkeypatch, rerun=True, rec=None):
    """Run the node; check outside-exactness, the passes against the plan, progress and determinism."""
    import torch

    frames, m = planned(inputs)
    config = config_of(inputs)
    image_before, mask_before = inputs["image"].clone(), inputs["mask"].clone()
    rec = rec or Recorder(monkeypatch)
    out, preview = run_node(inprocess_comfy, inputs)
    rec.preview = preview
    assert_outside_exact(out, inputs["image"], m)
    outside = (~m)[..., None].expand_as(inputs["image"])
    assert torch.equal(preview[outside], inputs["image"][outside])
    # every mask pixel belongs to exactly one frame (frames may overlap; each repaints only its own pixels)
    owned = torch.zeros(m.shape, dtype=torch.int32)
    for f in frames:
        y0, x0, y1, x1 = f.box
        owned[list(f.rows), y0:y1, x0:x1] += f.mask.int()
    assert torch.equal(owned, m.int())
    changed = (out != inputs["image"]).any(-1)
    assert float(changed[m].float().mean()) > 0.9, float(changed[m].float().mean())
    jobs = [(f, c) for f in frames for c in f.jobs]
    assert [(i.name, i.box, i.batch_indices) for i in rec.passes] == [(c.name, c.page_box, c.rows) for _, c in jobs]
    for frame, job in jobs:
        assert _inside(job.page_box, frame.box), (job, frame.box)
    total = expected_total(frames, config)
    assert rec.passes[0].total_steps == total and rec.passes[0].count == len(jobs)
    done = [d for d, _ in rec.progress]
    assert all(t == total for _, t in rec.progress) and done[-1] == total
    assert done == sorted(done) and done[0] == 0
    assert [i.steps_before for i in rec.passes] == sorted(i.steps_before for i in rec.passes)
    assert torch.equal(inputs["image"], image_before) and torch.equal(inputs["mask"], mask_before)
    if rerun:
        again, _ = run_node(inprocess_comfy, inputs)
        assert torch.equal(out, again)
    return out, frames, rec


@pytest.fixture(params=["standard", "inpainting"])
def checkpoint(request, inprocess_checkpoint, inprocess_inpaint_checkpoint):
    return inprocess_checkpoint if request.param == "standard" else inprocess_inpaint_checkpoint


def test_limit_to_panel_on_a_four_frame_page(inprocess_comfy, checkpoint, inprocess_checkpoint, prompts, panel_page, monkeypatch):
    import torch

    near_ab = (70, 100, 90, 122)  # in panel A, two 8-px cells left of the region across the A|B gutter
    mask = mask_of(PAGE_HW, [*REGIONS.values(), near_ab])
    inputs = node_inputs(checkpoint, prompts, panel_page, mask, limit_to_panel=True, context_margin=24)
    out, frames, rec = check_run(inprocess_comfy, inputs, monkeypatch, rerun=checkpoint is inprocess_checkpoint)
    assert len(frames) == 4 and {p.name for p in rec.passes} == {"sgi", "fri"}
    # overlapping frames: a refinement pass frees only mask pixels of its own frame, never another frame's
    _, m = planned(inputs)
    jobs, others = [(f, c) for f in frames for c in f.jobs], 0
    for (frame, _), info, pass_mask in zip(jobs, rec.passes, rec.masks):
        if info.name != "fri":
            continue
        y0, x0, y1, x1 = info.box
        own = torch.zeros(PAGE_HW, dtype=torch.bool)
        own[frame.box[0] : frame.box[2], frame.box[1] : frame.box[3]] = frame.mask
        freed = pass_mask[0, : y1 - y0, : x1 - x0] > 0
        assert freed.any() and not (freed & ~own[y0:y1, x0:x1]).any(), (frame.box, info.box)
        others += bool((m[0, y0:y1, x0:x1] & ~own[y0:y1, x0:x1]).any())
    assert others  # some refinement crops do hold mask pixels of another frame (kept as known context)


def test_limit_to_panel_batch_of_three_pages_two_masks(inprocess_comfy, inprocess_checkpoint, prompts, monkeypatch):
    """Pages 0 and 2 (one layout, another screentone) share a mask in A and across A|B; page 1 (two tall
    panels) has its own in its right panel and in its gutter. Rows 0 and 2 run together, not consecutively."""
    import torch

    layout = (PANEL_A, PANEL_B, PANEL_C)
    other = draw_page(*PAGE_HW, ((8, 8, 232, 100), (8, 116, 232, 312)), seed=1)  # two tall panels
    image = torch.cat([draw_page(*PAGE_HW, layout), other, draw_page(*PAGE_HW, layout, seed=2)])
    shared = mask_of(PAGE_HW, [REGIONS["in_a"], REGIONS["across_ab"]])
    mask = torch.cat([shared, mask_of(PAGE_HW, [(150, 200, 200, 260), (100, 102, 140, 114)]), shared])
    inputs = node_inputs(inprocess_checkpoint, prompts, image, mask, limit_to_panel=True)
    out, frames, rec = check_run(inprocess_comfy, inputs, monkeypatch, rerun=False)
    assert sorted((f.rows, f.box) for f in frames) == [
        ((0, 2), PANEL_A), ((0, 2), (8, 8, 112, 312)), ((1,), (0, 0, *PAGE_HW)), ((1,), (8, 116, 232, 312))
    ]
    assert {p.batch_indices for p in rec.passes} == {(0, 2), (1,)}
    assert not torch.equal(out[0], out[2])


def test_limit_to_panel_with_the_symmetric_vae(inprocess_comfy, inprocess_checkpoint, prompts, panel_page, monkeypatch):
    symvae_nodes = __import__("mdim_pack_under_test.nodes.symvae_nodes", fromlist=["x"])
    _, _, vae = inprocess_checkpoint
    loader = inprocess_comfy.nodes["MDIM_SymVAELoader"]
    handle = loader.execute(vae=vae, adapter_name=symvae_nodes.NO_ADAPTERS, allow_other_vae_weights=False).args[0]
    mask = mask_of(PAGE_HW, [REGIONS["in_a"], REGIONS["gutter"], REGIONS["in_c"]])
    inputs = node_inputs(inprocess_checkpoint, prompts, panel_page, mask, limit_to_panel=True, symvae=handle)
    out, frames, _ = check_run(inprocess_comfy, inputs, monkeypatch, rerun=False)
    plain, _ = run_node(inprocess_comfy, {k: v for k, v in inputs.items() if k != "symvae"})
    assert float((out - plain).abs().max()) < 2e-2  # untrained adapters decode like the base VAE
    assert sorted(f.box for f in frames) == [(0, 0, *PAGE_HW), PANEL_A, PANEL_C]


@pytest.mark.parametrize("hw", [(500, 700), (700, 500)])
def test_large_page_with_a_controlnet(inprocess_comfy, inprocess_checkpoint, prompts, tiny_checkpoints, hw, monkeypatch):
    """A 700x500 page shrunk to <= 128 for the structure pass, a page-sized ControlNet hint on both prompts."""
    import importlib

    import comfy.controlnet
    import torch

    comfy_nodes = importlib.import_module("nodes")
    controlnet = comfy.controlnet.load_controlnet(str(tiny_checkpoints["controlnet"]))
    h, w = hw
    page = draw_page(h, w, ((10, 10, h // 2 - 8, w - 10), (h // 2 + 8, 10, h - 10, w - 10)), seed=3)
    hint = 1.0 - page
    pos, neg = comfy_nodes.ControlNetApplyAdvanced().apply_controlnet(prompts[0], prompts[1], controlnet, hint, 0.8, 0.0, 1.0)
    mask = mask_of(hw, [(40, 40, 90, 120), (h - 90, w - 130, h - 40, w - 60), (h // 2 - 4, 200, h // 2 + 4, 260)])
    inputs = node_inputs(inprocess_checkpoint, (pos, neg), page, mask)
    seen = _spy_hint_sizes(monkeypatch)
    out, frames, rec = check_run(inprocess_comfy, inputs, monkeypatch, rerun=False)
    assert len(frames) == 1 and frames[0].shrunk and max(frames[0].sgi_size) <= 128
    assert {p.name for p in rec.passes} == {"sgi", "fri"}
    assert seen and all((lh * 8, lw * 8) == hint_hw for (lh, lw), hint_hw in seen)  # hint follows each pass
    assert pos[0][1]["control"].cond_hint is None and torch.equal(pos[0][1]["control"].cond_hint_original, hint.movedim(-1, 1))


@pytest.mark.parametrize("hw", [(3, 700), (700, 3), (1, 300)])
def test_strips_larger_than_sgi_max_side(inprocess_comfy, inprocess_checkpoint, prompts, hw, monkeypatch):
    import torch

    g = torch.Generator().manual_seed(sum(hw))
    image = torch.rand(1, *hw, 3, generator=g)
    long = max(hw)
    box = (0, long // 3, hw[0], long // 3 + 50) if hw[0] < hw[1] else (long // 3, 0, long // 3 + 50, hw[1])
    mask = mask_of(hw, [box])
    inputs = node_inputs(inprocess_checkpoint, prompts, image, mask, sgi_max_side=64, limit_to_panel=True)
    _, frames, rec = check_run(inprocess_comfy, inputs, monkeypatch, rerun=False)
    assert frames[0].shrunk and {p.name for p in rec.passes} == {"sgi", "fri"}


@pytest.mark.parametrize("plan,run_fri,side", [
    ("fit", "auto", 100), ("halve", "always", 128), ("halve", "never", 128),
    ("halve", "always", 512), ("fit", "never", 512),
])  # fmt: skip
def test_plans_and_run_fri_on_shrunk_and_unshrunk_pages(inprocess_comfy, inprocess_checkpoint, prompts, panel_page,
                                                       plan, run_fri, side, monkeypatch):  # fmt: skip
    import torch

    mask = mask_of(PAGE_HW, [REGIONS["in_a"], REGIONS["in_c"]])
    inputs = node_inputs(inprocess_checkpoint, prompts, panel_page, mask, plan=plan, run_fri=run_fri, sgi_max_side=side)
    out, frames, rec = check_run(inprocess_comfy, inputs, monkeypatch, rerun=False)
    (frame,) = frames
    assert frame.shrunk == (side < 320)
    preview = rec.preview
    # without refinement the result is the (upscaled) structure pass itself: the preview, byte for byte
    assert torch.equal(out, preview) == (run_fri == "never" or (run_fri == "auto" and not frame.shrunk))
    if plan == "fit" and frame.shrunk:
        assert max(frame.sgi_size) == side
    fri = run_fri == "always" or (run_fri == "auto" and frame.shrunk)
    assert ("fri" in {p.name for p in rec.passes}) == fri
    if frame.shrunk:
        assert all(max(p.size) <= side for p in rec.passes if p.name == "sgi")


def test_feather_with_overlapping_crops_and_grow_at_the_page_border(inprocess_comfy, inprocess_checkpoint, prompts,
                                                                    panel_page, monkeypatch):  # fmt: skip
    """Two bars of an L whose crops overlap and a region in the page corner, grown and feathered.

    The first crop's passes see the same input with and without feathering, so inside its region the
    feathered output is exactly the hard one where the weight is 1 and the weighted blend on the edge.
    """
    import torch

    sgim, _ = _mods()
    masks = __import__("mdim_pack_under_test.mdim_core.imaging.masks", fromlist=["x"])
    boxes = [(40, 40, 48, 200), (80, 192, 220, 200), (228, 300, 240, 320)]
    mask = mask_of(PAGE_HW, boxes)
    hard_inputs = node_inputs(inprocess_checkpoint, prompts, panel_page, mask, grow_mask=3, context_margin=24)
    inputs = dict(hard_inputs, feather=4)
    out, frames, _ = check_run(inprocess_comfy, inputs, monkeypatch, rerun=False)
    hard, _ = run_node(inprocess_comfy, hard_inputs)
    _, m = planned(inputs)
    assert int(m.sum()) > int(mask.sum()) and bool(m[0, -1, -1])  # grown, to the page corner
    (frame,) = frames
    crops = [c.box for c in frame.crops]
    assert crops[0] == (13, 13, 75, 227) and any(__import__("mdim_pack_under_test.mdim_core.imaging.geometry", fromlist=["x"]).boxes_overlap(crops[0], b) for b in crops[1:]), crops
    y0, x0, y1, x1 = crops[0]
    own = m[:, y0:y1, x0:x1]
    weight = masks.feather(own, 4)[..., None]
    image = panel_page[:, y0:y1, x0:x1]
    got, want_new = out[:, y0:y1, x0:x1], hard[:, y0:y1, x0:x1]
    full = (weight == 1).expand_as(got)
    edge = ((weight > 0) & (weight < 1)).expand_as(got)
    assert full.any() and edge.any()
    assert torch.equal(got[full], want_new[full])
    blend = image + weight * (want_new - image)
    assert torch.allclose(got[edge], blend.expand_as(got)[edge], atol=1e-6)
    assert float((got - want_new)[edge].abs().max()) > 1e-3  # the edge really blends


# --------------------------------------------------------------------------- cancel


@pytest.mark.parametrize("phase", ["sgi", "fri"])
def test_cancel_in_either_pass_of_a_shrunk_page_then_a_normal_run(inprocess_comfy, inprocess_checkpoint, prompts,
                                                                  panel_page, phase, monkeypatch):  # fmt: skip
    import comfy.model_management
    import torch

    mask = mask_of(PAGE_HW, [REGIONS["in_a"], REGIONS["in_c"]])
    inputs = node_inputs(inprocess_checkpoint, prompts, panel_page, mask, steps=3, fri_steps=2)
    reference, _ = run_node(inprocess_comfy, inputs)
    image_before = panel_page.clone()

    def mid_pass(value, passes):  # after the first step of the first pass of this kind
        return bool(passes) and passes[-1].name == phase and value == passes[-1].steps_before + 1

    rec = Recorder(monkeypatch, cancel_at=mid_pass)
    with pytest.raises(comfy.model_management.InterruptProcessingException):
        run_node(inprocess_comfy, inputs)
    assert rec.passes[-1].name == phase
    names = [p.name for p in rec.passes]
    assert names.count(phase) == 1 and (phase == "sgi" or "sgi" in names)
    assert not comfy.model_management.processing_interrupted()
    assert torch.equal(panel_page, image_before)
    monkeypatch.undo()
    again, _ = run_node(inprocess_comfy, inputs)
    assert torch.equal(again, reference)


# --------------------------------------------------------------------------- odd pages


def test_mask_only_in_the_gutter_with_limit_to_panel(inprocess_comfy, inprocess_checkpoint, prompts, panel_page,
                                                     monkeypatch):  # fmt: skip
    mask = mask_of(PAGE_HW, [REGIONS["gutter"], (20, 154, 100, 166)])  # both gutters, touching no panel
    inputs = node_inputs(inprocess_checkpoint, prompts, panel_page, mask, limit_to_panel=True)
    _, frames, _ = check_run(inprocess_comfy, inputs, monkeypatch, rerun=False)
    assert [f.box for f in frames] == [(0, 0, *PAGE_HW)]


@pytest.mark.parametrize("kind", ["all_white", "all_black", "whole_panel"])
def test_pages_without_usable_panels(inprocess_comfy, inprocess_checkpoint, prompts, panel_page, kind, monkeypatch):
    """No gutter at all (white or black page) or a mask covering a whole panel: the page is the frame."""
    import torch

    hw = PAGE_HW
    if kind == "all_white":
        image = torch.ones(1, *hw, 3)
        mask = mask_of(hw, [REGIONS["in_a"]])
    elif kind == "all_black":
        hw = (96, 128)
        image = torch.zeros(1, *hw, 3)
        mask = mask_of(hw, [(0, 0, 60, 128)])  # most of the page
    else:
        image = panel_page
        mask = mask_of(hw, [PANEL_A])
    inputs = node_inputs(inprocess_checkpoint, prompts, image, mask, limit_to_panel=True, sgi_max_side=64)
    _, frames, _ = check_run(inprocess_comfy, inputs, monkeypatch, rerun=False)
    assert [f.box for f in frames] == [(0, 0, *hw)] and frames[0].shrunk


def test_panels_that_fit_skip_refinement_while_the_page_frame_refines(inprocess_comfy, inprocess_checkpoint, prompts,
                                                                      panel_page, monkeypatch):  # fmt: skip
    """sgi_max_side 160: panel A (104x144) fits and runs one full-resolution pass; C, A|B and the page shrink."""
    import torch

    mask = mask_of(PAGE_HW, REGIONS.values())
    inputs = node_inputs(inprocess_checkpoint, prompts, panel_page, mask, limit_to_panel=True, sgi_max_side=160)
    out, frames, rec = check_run(inprocess_comfy, inputs, monkeypatch, rerun=False)
    by_box = {f.box: f for f in frames}
    assert not by_box[PANEL_A].shrunk and not by_box[PANEL_A].run_fri
    assert by_box[PANEL_C].shrunk and by_box[PANEL_C].run_fri and by_box[(0, 0, *PAGE_HW)].run_fri
    a_passes = [p for p in rec.passes if _inside(p.box, PANEL_A) and p.box[3] <= 152]
    assert a_passes and all(p.name == "sgi" and p.size == (p.box[2] - p.box[0], p.box[3] - p.box[1]) for p in a_passes)
    # panel A ran no refinement: its result is the structure pass itself, as in the preview; C was refined
    preview = rec.preview
    y0, x0, y1, x1 = REGIONS["in_a"]
    assert torch.equal(out[:, y0:y1, x0:x1], preview[:, y0:y1, x0:x1])
    y0, x0, y1, x1 = REGIONS["in_c"]
    assert not torch.equal(out[:, y0:y1, x0:x1], preview[:, y0:y1, x0:x1])


@pytest.mark.parametrize("channels", [1, 4])
def test_grayscale_and_rgba_pages_with_limit_to_panel(inprocess_comfy, inprocess_checkpoint, prompts, panel_page,
                                                      channels, monkeypatch):  # fmt: skip
    """Grayscale comes back grayscale; RGBA loses its alpha. The RGBA batch's second page has an empty mask."""
    import torch

    mask = mask_of(PAGE_HW, [REGIONS["in_a"], REGIONS["across_ab"]])
    if channels == 1:
        image = panel_page[..., :1].contiguous()
    else:
        page = torch.cat([panel_page, torch.full_like(panel_page[..., :1], 0.5)], -1)
        image, mask = torch.cat([page, 1.0 - page]), torch.cat([mask, torch.zeros_like(mask)])
    inputs = node_inputs(inprocess_checkpoint, prompts, image, mask, limit_to_panel=True)
    rec = Recorder(monkeypatch)
    out, preview = run_node(inprocess_comfy, inputs)
    frames, m = planned(inputs)
    rgb = image[..., :3] if channels == 4 else image
    assert_outside_exact(out, rgb, m)
    assert len(frames) == 2 and all(f.rows == (0,) for f in frames) and len(rec.passes) == sum(len(f.jobs) for f in frames)
    if channels == 4:
        assert torch.equal(out[1], rgb[1]) and torch.equal(preview[1], rgb[1])


def test_controlnet_hint_rows_follow_each_page_of_a_batch_with_panels(inprocess_comfy, inprocess_checkpoint, prompts,
                                                                      tiny_checkpoints, monkeypatch):  # fmt: skip
    """Two pages, two masks, two hints: every refinement pass's ControlNet sees its own page's hint under its crop."""
    import importlib

    import comfy.controlnet
    import comfy.utils
    import torch
    import torch.nn.functional as F

    comfy_nodes = importlib.import_module("nodes")
    controlnet = comfy.controlnet.load_controlnet(str(tiny_checkpoints["controlnet"]))
    image = torch.cat([draw_page(*PAGE_HW, (PANEL_A, PANEL_B, PANEL_C)), draw_page(*PAGE_HW, (PANEL_A, PANEL_B, PANEL_C), 2)])
    hint = torch.rand(2, *PAGE_HW, 3, generator=torch.Generator().manual_seed(5))
    pos, neg = comfy_nodes.ControlNetApplyAdvanced().apply_controlnet(prompts[0], prompts[1], controlnet, hint, 1.0, 0.0, 1.0)
    mask = torch.cat([mask_of(PAGE_HW, [REGIONS["in_a"]]), mask_of(PAGE_HW, [REGIONS["in_c"], REGIONS["gutter"]])])
    inputs = node_inputs(inprocess_checkpoint, (pos, neg), image, mask, limit_to_panel=True)
    seen = []
    real = comfy.controlnet.ControlNet.get_control

    def spy(self, x_noisy, *args, **kwargs):
        out = real(self, x_noisy, *args, **kwargs)
        seen.append((rec.passes[-1], self.cond_hint.clone()))
        return out

    monkeypatch.setattr(comfy.controlnet.ControlNet, "get_control", spy)
    rec = Recorder(monkeypatch)
    _, frames, _ = check_run(inprocess_comfy, inputs, monkeypatch, rerun=False, rec=rec)
    assert sorted((f.rows, f.box) for f in frames) == [((0,), PANEL_A), ((1,), (0, 0, *PAGE_HW)), ((1,), PANEL_C)]
    assert {(info.name, info.batch_indices) for info, _ in seen} == {(n, r) for n in ("sgi", "fri") for r in ((0,), (1,))}
    for info, cond_hint in seen:
        (row,) = info.batch_indices
        y0, x0, y1, x1 = info.box
        part = hint[row : row + 1, y0:y1, x0:x1].movedim(-1, 1)
        if info.name == "sgi":  # these frames shrink by exactly 2 or 4: the hint is the box's part, nearest-exact
            assert (y1 - y0) % info.size[0] == 0 and (x1 - x0) % info.size[1] == 0
            part = comfy.utils.common_upscale(part, info.size[1], info.size[0], "nearest-exact", "disabled")
        ph, pw = info.padded_size
        want = F.pad(part, (0, pw - part.shape[-1], 0, ph - part.shape[-2]), mode="replicate")
        assert all(torch.equal(r, want[0].to(r.dtype)) for r in cond_hint), info


@pytest.mark.parametrize("hint_hw", [(64, 64), None])
@pytest.mark.parametrize("hw", [(1, 700), (700, 2)])
def test_strip_with_a_controlnet_hint_of_any_shape(inprocess_comfy, inprocess_checkpoint, prompts, tiny_checkpoints,
                                                   hw, hint_hw, monkeypatch):  # fmt: skip
    """A 1x700 / 700x2 strip, shrunk for the structure pass, with a square or a strip-shaped hint."""
    import importlib

    import comfy.controlnet
    import torch

    comfy_nodes = importlib.import_module("nodes")
    controlnet = comfy.controlnet.load_controlnet(str(tiny_checkpoints["controlnet"]))
    g = torch.Generator().manual_seed(sum(hw))
    image = torch.rand(1, *hw, 3, generator=g)
    hint = torch.rand(1, *(hint_hw or hw), 3, generator=g)
    pos, neg = comfy_nodes.ControlNetApplyAdvanced().apply_controlnet(prompts[0], prompts[1], controlnet, hint, 1.0, 0.0, 1.0)
    box = (0, 300, hw[0], 360) if hw[0] < hw[1] else (300, 0, 360, hw[1])
    inputs = node_inputs(inprocess_checkpoint, (pos, neg), image, mask_of(hw, [box]), sgi_max_side=64)
    _, frames, rec = check_run(inprocess_comfy, inputs, monkeypatch, rerun=False)
    assert frames[0].shrunk and {p.name for p in rec.passes} == {"sgi", "fri"}


def test_fit_plan_per_panel_with_a_controlnet(inprocess_comfy, inprocess_checkpoint, prompts, panel_page,
                                              tiny_checkpoints, monkeypatch):  # fmt: skip
    """'fit' to 140: panel A 104x144 -> 101x140, C and A|B 104x304 -> 48x140 (no exact ratio); hints follow."""
    import importlib

    import comfy.controlnet

    comfy_nodes = importlib.import_module("nodes")
    controlnet = comfy.controlnet.load_controlnet(str(tiny_checkpoints["controlnet"]))
    pos, neg = comfy_nodes.ControlNetApplyAdvanced().apply_controlnet(prompts[0], prompts[1], controlnet, panel_page, 1.0, 0.0, 1.0)
    mask = mask_of(PAGE_HW, REGIONS.values())
    inputs = node_inputs(inprocess_checkpoint, (pos, neg), panel_page, mask, limit_to_panel=True, plan="fit", sgi_max_side=140)
    seen = _spy_hint_sizes(monkeypatch)
    _, frames, rec = check_run(inprocess_comfy, inputs, monkeypatch, rerun=False)
    sizes = {f.box: f.sgi_size for f in frames}
    assert sizes[PANEL_A] == (101, 140) and sizes[PANEL_C] == (48, 140) and sizes[(0, 0, *PAGE_HW)] == (105, 140)
    assert len(seen) >= len(rec.passes) and all((lh * 8, lw * 8) == hint for (lh, lw), hint in seen)


def test_node_defaults_on_a_panel_page(inprocess_comfy, inprocess_checkpoint, prompts, monkeypatch):
    """The node's own defaults (sgi_max_side 1024, margin 64, min side 512) with panels and the largest seed:
    nothing shrinks, so each frame (the panel, the two panels under the region across their gutter)
    runs one full-resolution pass on a crop as large as the frame, and no refinement."""
    node = inprocess_comfy.nodes["MDIM_SGIMInpaint"]
    defaults = {i.id: i.default for i in node.define_schema().inputs if getattr(i, "default", None) is not None}
    h, w = 200, 280
    page = draw_page(h, w, ((6, 6, 96, 136), (6, 144, 96, 274), (104, 6, 194, 274)), seed=4)
    mask = mask_of((h, w), [(20, 20, 40, 100), (50, 130, 66, 150), (130, 180, 160, 230)])
    inputs = node_inputs(inprocess_checkpoint, prompts, page, mask)
    inputs.update({k: v for k, v in defaults.items() if k in inputs and k not in ("seed",)})
    inputs.update(steps=2, fri_steps=1, limit_to_panel=True, seed=0xFFFFFFFFFFFFFFFF)
    _, frames, rec = check_run(inprocess_comfy, inputs, monkeypatch, rerun=False)
    assert not any(f.shrunk or f.run_fri for f in frames) and {p.name for p in rec.passes} == {"sgi"}
    assert [c.seed for f in frames for c in f.jobs][:2] == [0xFFFFFFFFFFFFFFFF, 0]  # seeds wrap around
    assert sorted(f.box for f in frames) == [(6, 6, 96, 136), (6, 6, 96, 274), (104, 6, 194, 274)]
    assert all(c.box == f.box for f in frames for c in f.crops)  # min_crop_side 512 is clamped to the frame


@pytest.mark.parametrize("hw", [(240, 320), (1, 700)])
def test_tiled_vae_in_every_pass_of_panel_frames(inprocess_comfy, inprocess_checkpoint, prompts, panel_page, hw,
                                                 monkeypatch):  # fmt: skip
    """tiled_vae_megapixels so small that every pass encodes and decodes in tiles (ComfyUI's tiled VAE)."""
    import torch

    _, _, vae = inprocess_checkpoint
    calls = []
    for name in ("encode_tiled", "decode_tiled"):
        real = getattr(type(vae), name)
        monkeypatch.setattr(vae, name, lambda *a, _real=real, _name=name, **k: calls.append(_name) or _real(vae, *a, **k))
    if hw == PAGE_HW:
        image, mask = panel_page, mask_of(hw, [REGIONS["in_a"], REGIONS["across_ab"], REGIONS["gutter"]])
    else:
        image, mask = torch.rand(1, *hw, 3, generator=torch.Generator().manual_seed(9)), mask_of(hw, [(0, 300, 1, 360)])
    inputs = node_inputs(inprocess_checkpoint, prompts, image, mask, limit_to_panel=True, tiled_vae_megapixels=0.0001)
    _, frames, rec = check_run(inprocess_comfy, inputs, monkeypatch, rerun=False)
    assert calls.count("encode_tiled") >= len(rec.passes) and calls.count("decode_tiled") >= len(rec.passes)


# --------------------------------------------------------------------------- through /prompt


def test_panel_page_through_prompt_with_limit_to_panel(comfy_server, workflow_prompt, comfy_run, comfy_images):
    """The shipped text-removal workflow on an uploaded 8-bit panel page, panel by panel, shrunk: the saved
    PNG equals the page outside the mask, the mask is redrawn, the same seed gives the same bytes."""
    import numpy as np
    from test_user_scenarios import upload

    page = (draw_page(*PAGE_HW, (PANEL_A, PANEL_B, PANEL_C))[0].numpy() * 255).round().astype(np.uint8)
    mask = mask_of(PAGE_HW, REGIONS.values())[0].numpy() > 0.5
    names = (upload(comfy_server, "qa_panels.png", page), upload(comfy_server, "qa_panels_mask.png", (mask * 255).astype(np.uint8)))
    overrides = {**FAST, "limit_to_panel": True, "sgi_max_side": 128, "context_margin": 16, "min_crop_side": 0}
    results = []
    for seed in (3, 4, 3):  # the middle run evicts the first from the host's cache: the third one recomputes
        prompt = workflow_prompt("mdim_sgim_text_removal.json", **{**overrides, "seed": seed})
        prompt["2"]["inputs"]["image"], prompt["3"]["inputs"]["image"] = names
        out, preview = comfy_images(comfy_run(prompt))
        changed = (out[..., :3] != page[..., :3]).any(-1)
        assert out.shape == preview.shape == page.shape and not (changed & ~mask).any()
        assert changed[mask].mean() > 0.9
        results.append(out)
    assert np.array_equal(results[0], results[2]) and not np.array_equal(results[0][mask], results[1][mask])
