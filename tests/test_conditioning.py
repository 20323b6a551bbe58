"""Page-level conditioning cut to one SGIM pass (mdim_core.inpaint.conditioning), without ComfyUI.

The reference for a hint is what a whole-page pass would feed the ControlNet: the hint centre-cropped to
the page's aspect ratio and resized to the page with torch's interpolation (what ComfyUI's
``common_upscale`` does for "nearest-exact" and "bilinear"), then cut to the pass's crop, resized to
the pass content size and padded at the bottom/right by edge replication. The stand-in ControlNet below
has the attributes the mapping reads from ComfyUI's ControlNet objects; the real ones are checked in the
integration suite.
"""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from mdim_core.inpaint.conditioning import batch_rows, crop_area, crop_page_conditioning, crop_page_tensor
from mdim_core.inpaint.host import PassInfo

PAGE = (64, 96)


class Control:
    """What crop_page_conditioning reads of a ComfyUI ControlNet."""

    def __init__(self, hint, previous=None, strength=1.0, upscale_algorithm="nearest-exact", extra=None):
        self.cond_hint_original = hint
        self.previous_controlnet = previous
        self.strength = strength
        self.upscale_algorithm = upscale_algorithm
        self.cond_hint = "cached"  # a per-size cache ComfyUI fills while sampling
        self.extra_concat_orig = extra

    def copy(self):
        new = Control(self.cond_hint_original, self.previous_controlnet, self.strength, self.upscale_algorithm,
                      self.extra_concat_orig)
        new.cond_hint = self.cond_hint
        return new


def info(box, size, padded, name="fri", rows=(0,), batch=1, page=PAGE, extent=None):
    return PassInfo(name, 0, 1, 0, 2, 0, 1, rows, box, size, padded, page_size=page, extent=extent, batch=batch)


def page_hint(hint, page=PAGE, mode="nearest-exact"):
    """A whole-page pass's hint: centre-crop to the page's aspect ratio, resize to the page."""
    h, w = hint.shape[-2:]
    old, new = w / h, page[1] / page[0]
    if old > new:
        x = round((w - w * (new / old)) / 2)
        hint = hint[..., :, x : w - x]
    elif old < new:
        y = round((h - h * (old / new)) / 2)
        hint = hint[..., y : h - y, :]
    kw = {"align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(hint, size=page, mode=mode, **kw)


def expected(hint_page, box, size, padded, mode="nearest-exact"):
    y0, x0, y1, x1 = box
    part = hint_page[:, :, y0:y1, x0:x1]
    if tuple(part.shape[-2:]) != tuple(size):
        kw = {"align_corners": False} if mode == "bilinear" else {}
        part = F.interpolate(part, size=size, mode=mode, **kw)
    return F.pad(part, (0, padded[1] - size[1], 0, padded[0] - size[0]), mode="replicate")


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


CASES = {
    "fri_crop": ((8, 16, 48, 60), (40, 44), (40, 48)),
    "page_not_multiple_of_8": ((0, 0, 64, 96), (64, 90), (64, 96)),
}


@pytest.mark.parametrize("hint_size", [PAGE, (32, 48), (64, 128), (100, 96)])
@pytest.mark.parametrize("case", sorted(CASES))
def test_full_resolution_crops_get_the_page_hints_part(case, hint_size):
    hint = rand(1, 3, *hint_size, seed=1)
    box, size, padded = CASES[case]
    got = crop_page_tensor(hint, info(box, size, padded), padded)
    assert torch.equal(got, expected(page_hint(hint), box, size, padded))


def test_shrunk_crop_with_an_exact_fractional_extent():
    # a crop of a page shrunk by 2: pass pixel q shows page pixels 2q..2q+2, centre 2q+1 (nearest picks 2q+1)
    hint = rand(1, 3, *PAGE, seed=2)
    got = crop_page_tensor(hint, info((8, 16, 48, 64), (20, 24), (24, 24), name="sgi"), (24, 24))
    want = hint[:, :, 9:48:2, 17:64:2]
    assert torch.equal(got[..., :20, :24], want)
    assert torch.equal(got[..., 20:, :], got[..., 19:20, :].expand(-1, -1, 4, -1))  # padding repeats the edge
    # a shrunk page whose halving rounded up (3 -> 2 px): the extent keeps the exact area
    odd = crop_page_tensor(hint[..., :3, :], info((0, 0, 3, 96), (2, 48), (8, 48), name="sgi", page=(3, 96),
                                                  extent=(0.0, 0.0, 3.0, 96.0)), (8, 48))
    assert torch.equal(odd[:, :, 0], hint[:, :, 0, 1::2]) and torch.equal(odd[:, :, 1], hint[:, :, 2, 1::2])


def test_bilinear_hints_are_interpolated_at_the_pass_pixels():
    half = rand(1, 3, 32, 48, seed=3)
    box, size, padded = CASES["fri_crop"]
    got = crop_page_tensor(half, info(box, size, padded), padded, linear=True)
    want = expected(page_hint(half, mode="bilinear"), box, size, padded)
    assert torch.allclose(got, want, atol=1e-6)
    assert not torch.allclose(got, crop_page_tensor(half, info(box, size, padded), padded), atol=1e-3)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(8, 120), st.integers(8, 120), st.data(),
    st.sampled_from([(1, 1), (1, 2), (2, 1), (3, 2)]),
)
def test_any_crop_of_any_page_matches_a_whole_page_pass(ph, pw, data, hint_scale):
    """Whole-pixel crops (full-resolution passes): the crop of the page-size hint, for any page and hint size."""
    y0 = data.draw(st.integers(0, ph - 1))
    x0 = data.draw(st.integers(0, pw - 1))
    y1 = data.draw(st.integers(y0 + 1, ph))
    x1 = data.draw(st.integers(x0 + 1, pw))
    size = (y1 - y0, x1 - x0)
    padded = (-(-size[0] // 8) * 8, -(-size[1] // 8) * 8)
    hint = rand(1, 3, max(1, ph * hint_scale[0] // hint_scale[1]), max(1, pw * hint_scale[0] // hint_scale[1]), seed=4)
    got = crop_page_tensor(hint, info((y0, x0, y1, x1), size, padded, page=(ph, pw)), padded)
    assert torch.equal(got, expected(page_hint(hint, (ph, pw)), (y0, x0, y1, x1), size, padded))


def test_a_chain_of_controlnets_is_copied_once_and_the_callers_objects_stay_as_they_were():
    full, half = rand(1, 3, *PAGE, seed=5), rand(1, 3, 32, 48, seed=6)
    inner = Control(full)
    outer = Control(half, previous=inner, strength=0.7)
    pos = [[torch.zeros(1, 2, 4), {"control": outer}]]
    neg = [[torch.ones(1, 2, 4), {"control": outer}]]
    box, size, padded = CASES["fri_crop"]
    memo = {}
    new_pos = crop_page_conditioning(pos, info(box, size, padded), 8, memo)
    new_neg = crop_page_conditioning(neg, info(box, size, padded), 8, memo)
    got = new_pos[0][1]["control"]
    assert got is not outer and got.previous_controlnet is not inner and new_neg[0][1]["control"] is got
    assert got.strength == 0.7 and got.cond_hint is None and got.previous_controlnet.cond_hint is None
    assert torch.equal(got.cond_hint_original, expected(page_hint(half), box, size, padded))
    assert torch.equal(got.previous_controlnet.cond_hint_original, expected(page_hint(full), box, size, padded))
    assert pos[0][1]["control"] is outer and outer.previous_controlnet is inner
    assert outer.cond_hint_original is half and inner.cond_hint_original is full and outer.cond_hint == "cached"
    assert new_pos[0][0] is pos[0][0]  # the embedding is shared, not copied


def test_a_pass_over_every_page_whole_leaves_the_conditioning_as_it_is():
    pos = [[torch.zeros(1), {"control": Control(rand(1, 3, *PAGE))}]]
    assert crop_page_conditioning(pos, info((0, 0, *PAGE), PAGE, PAGE, name="sgi"), 8) is pos
    assert crop_page_conditioning(pos, None, 8) is pos
    # the whole page, but only some pages of the batch: the hints must follow the pages
    hints = rand(3, 3, *PAGE, seed=7)
    pos = [[torch.zeros(1), {"control": Control(hints)}]]
    got = crop_page_conditioning(pos, info((0, 0, *PAGE), PAGE, PAGE, rows=(2, 0), batch=3), 8)
    assert torch.equal(got[0][1]["control"].cond_hint_original, hints[[2, 0]])


def test_hint_batches_must_be_one_or_one_per_page():
    hints = rand(3, 3, *PAGE, seed=8)
    box, size, padded = CASES["fri_crop"]
    got = crop_page_tensor(batch_rows(hints, info(box, size, padded, rows=(1,), batch=3), "hint"),
                           info(box, size, padded), padded)
    assert torch.equal(got, expected(page_hint(hints[1:2]), box, size, padded))
    assert batch_rows(hints[:1], info(box, size, padded, rows=(2,), batch=3), "hint").shape[0] == 1  # shared
    with pytest.raises(ValueError, match="ControlNet hint: a batch of 2 for 3 page"):
        crop_page_conditioning([[torch.zeros(1), {"control": Control(hints[:2])}]],
                               info(box, size, padded, rows=(0,), batch=3), 8)


def test_areas_map_to_the_pass_latent_cells():
    straddle = info((0, 32, 64, 80), (64, 48), (64, 48))
    left_half = (8, 6, 0, 0)  # Conditioning Set Area: h, w, y, x in page latent cells
    assert crop_area(left_half, straddle, 8) == (8, 2, 0, 0)
    assert crop_area(("percentage", 1.0, 0.5, 0.0, 0.0), straddle, 8) == (8, 2, 0, 0)
    shrunk = info((0, 32, 64, 80), (32, 24), (32, 24), name="sgi")
    assert crop_area(left_half, shrunk, 8) == (4, 1, 0, 0)
    assert crop_area(left_half, info((16, 56, 64, 96), (48, 40), (48, 40)), 8) is None
    assert crop_area(left_half, info((0, 8, 40, 60), (40, 52), (40, 56)), 8) == (5, 5, 0, 0)
    assert crop_area(("unknown", 1), straddle, 8) == ("unknown", 1)  # other layouts pass through


def test_entries_outside_the_pass_are_dropped_or_kept_with_no_weight(caplog):
    base = [torch.zeros(1), {}]
    area = [torch.ones(1), {"area": (8, 6, 0, 0), "strength": 0.8}]
    right = info((16, 56, 64, 96), (48, 40), (48, 40))
    got = crop_page_conditioning([base, area], right, 8)
    assert len(got) == 1 and got[0][1] is base[1]
    with caplog.at_level(logging.WARNING, logger="MDIM"):
        alone = crop_page_conditioning([area], right, 8)
    assert len(alone) == 1 and alone[0][1]["strength"] == 0.0 and "no entry of a conditioning covers" in caplog.text
    assert area[1] == {"area": (8, 6, 0, 0), "strength": 0.8}


def test_masks_are_cut_to_the_pass_latent_cells():
    page_mask = torch.zeros(1, *PAGE)
    page_mask[:, :, :48] = 1.0
    conds = [[torch.zeros(1), {}], [torch.ones(1), {"mask": page_mask, "mask_strength": 0.9}]]
    straddle = info((0, 32, 64, 80), (64, 48), (64, 48))
    got = crop_page_conditioning(conds, straddle, 8)
    want = torch.zeros(1, 8, 6)
    want[:, :, :2] = 1.0
    assert torch.equal(got[1][1]["mask"], want) and got[1][1]["mask_strength"] == 0.9
    half = [conds[0], [torch.ones(1), {"mask": page_mask[:, ::2, ::2]}]]
    assert torch.equal(crop_page_conditioning(half, straddle, 8)[1][1]["mask"], want)
    wide = torch.zeros(1, 64, 192)
    wide[:, :, 120:] = 1.0  # another aspect ratio: stretched over the page, as ComfyUI resizes cond masks
    got_wide = crop_page_conditioning([conds[0], [torch.ones(1), {"mask": wide}]], straddle, 8)[1][1]["mask"]
    assert torch.equal(got_wide[0, 0], torch.tensor([0.0, 0.0, 0.0, 0.5, 1.0, 1.0]))
    assert len(crop_page_conditioning(conds, info((0, 56, 64, 96), (64, 40), (64, 40)), 8)) == 1
    assert conds[1][1]["mask"] is page_mask and float(page_mask.sum()) == 64 * 48
