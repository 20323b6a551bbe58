"""SGIM planning on pages with panels: which frames (the page, panels) the structure passes work on.

Pure geometry (mdim_core.inpaint.plan), no model: the same page and regions the real-host QA tests
run through the node, checked here in CI.
"""

from __future__ import annotations

import torch

from mdim_core.imaging import masks
from mdim_core.inpaint import plan
from mdim_core.inpaint.config import SGIMConfig

# Page 240 x 320 (H x W): panels A (top left), B (top right), C (bottom); gutters x 152..168, y 112..128.
PAGE_HW = (240, 320)
PANEL_A, PANEL_B, PANEL_C = (8, 8, 112, 152), (8, 168, 112, 312), (128, 8, 232, 312)
REGIONS = {  # mask boxes
    "in_a": (30, 30, 60, 90),
    "in_c": (150, 200, 200, 260),
    "across_ab": (70, 140, 90, 180),  # crosses the vertical gutter between A and B
    "gutter": (116, 60, 124, 120),  # white gutter between the rows
}


def draw_page(h: int, w: int, panels, seed: int = 0) -> torch.Tensor:
    """A white page ``[1, h, w, 3]`` with black-framed panels ``(y0, x0, y1, x1)`` full of dots and hatching."""
    g = torch.Generator().manual_seed(seed)
    page = torch.ones(h, w)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    tone = (((yy + xx) % 6) < 2).float() * 0.8 + 0.1 * torch.rand(h, w, generator=g)
    for y0, x0, y1, x1 in panels:
        page[y0:y1, x0:x1] = 0.0
        page[y0 + 3 : y1 - 3, x0 + 3 : x1 - 3] = tone[y0 + 3 : y1 - 3, x0 + 3 : x1 - 3]
    return page[None, :, :, None].expand(1, h, w, 3).contiguous()


def test_panel_page_plan_has_the_expected_frames():
    """Regions in A, in C, across the A|B gutter and in the gutter: four frames, the gutter text with the page."""
    page = draw_page(*PAGE_HW, (PANEL_A, PANEL_B, PANEL_C))
    mask = torch.zeros(1, *PAGE_HW)
    for y0, x0, y1, x1 in REGIONS.values():
        mask[:, y0:y1, x0:x1] = 1.0
    config = SGIMConfig(sgi_max_side=128, context_margin=16, min_crop_side=0, limit_to_panel=True, steps=2, fri_steps=1)
    m = masks.clean(mask, batch=1, size=PAGE_HW, dtype=torch.bool)
    frames = plan.plan(PAGE_HW, m, config, seed=7, page_gray=page.mean(-1))
    ab = (PANEL_A[0], PANEL_A[1], PANEL_B[2], PANEL_B[3])
    assert sorted(f.box for f in frames) == sorted([(0, 0, *PAGE_HW), PANEL_A, PANEL_C, ab])
    # the page (320 wide) and A|B (304 wide) shrink under 128; A (144 wide) and C (304 wide) too
    assert all(f.shrunk for f in frames)
    # every region belongs to exactly one frame, and every crop stays inside its frame
    owned = sum(f.mask.sum().item() for f in frames)
    assert owned == m.sum().item()
    for f in frames:
        for c in f.crops:
            assert f.box[0] <= c.box[0] and f.box[1] <= c.box[1] and c.box[2] <= f.box[2] and c.box[3] <= f.box[3]
    # seeds: the crops that run take seed, seed + 1, ... in run order, across frames
    seeds = [c.seed for f in frames for c in f.jobs]
    assert seeds == list(range(7, 7 + len(seeds)))
