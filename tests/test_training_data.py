"""MDIM training data: prompts, tags, structure-scale pages, crops, masks, bad data folders."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mdim_core.imaging.geometry import resize_image
from mdim_core.imaging.imageio import write_image
from mdim_core.synth import generate_page
from mdim_core.synth.maskgen import box_mask
from mdim_core.training.data import (
    PROMPT_PREFIX,
    CropSampler,
    PageSet,
    build_prompt,
    read_tags,
    structure_scale,
)
from mdim_core.training.masks import MASK_KINDS, MaskSampler, bubble_mask

# --- prompts and tags -----------------------------------------------------------------------------


def test_prompt_is_the_thesis_prefix_then_the_tags_in_random_order():
    assert PROMPT_PREFIX == "manga, manga style, comic, monochrome"
    assert build_prompt([]) == PROMPT_PREFIX
    tags = ["1girl", "speech bubble", "school uniform"]
    seen = set()
    for seed in range(60):
        prompt = build_prompt(tags, np.random.default_rng(seed))
        assert prompt.startswith(PROMPT_PREFIX + ", ")
        rest = prompt[len(PROMPT_PREFIX) + 2 :].split(", ")
        assert sorted(rest) == sorted(tags)
        seen.add(tuple(rest))
    assert len(seen) == math.factorial(3)  # every order happens
    assert build_prompt(tags, np.random.default_rng(3)) == build_prompt(tags, np.random.default_rng(3))
    # tags already in the prefix are not repeated; empty ones and duplicates are dropped
    assert build_prompt(["monochrome", " 1girl ", "", "1girl", "comic"]) == PROMPT_PREFIX + ", 1girl"


def test_tags_come_from_the_same_stem_txt_file(tmp_path):
    page = tmp_path / "p001.png"
    (tmp_path / "p001.txt").write_text("1girl, speech bubble,\nmonochrome , ,greyscale", encoding="utf-8")
    assert read_tags(page) == ["1girl", "speech bubble", "monochrome", "greyscale"]
    assert read_tags(tmp_path / "none.png") == []


# --- structure scale and crops ----------------------------------------------------------------------


def test_pages_are_halved_to_the_structure_pass_scale():
    rng = np.random.default_rng(0)
    page = rng.uniform(0, 1, (3000, 2100)).astype(np.float32)
    small = structure_scale(page[..., None], 1024)
    assert small.shape == (750, 525, 1) and small.dtype == np.uint8  # 3000 -> 1500 -> 750
    ref = resize_image(torch.from_numpy(page)[None, ..., None], (750, 525))[0].numpy()
    assert np.abs(small.astype(np.float32) / 255.0 - ref).max() <= 0.5 / 255.0 + 1e-6  # area-averaged, then 8 bit
    assert structure_scale(page[:1000, :700, None], 1024).shape == (1000, 700, 1)  # small pages are kept
    assert structure_scale(page[:1025, :10, None], 1024).shape == (513, 5, 1)  # rounded up, as SGIM's plan


@settings(max_examples=30, deadline=None)
@given(h=st.integers(8, 255), w=st.integers(8, 255), seed=st.integers(0, 2**16))
def test_crop_sampler_cuts_the_page_at_its_scale(h, w, seed):
    # red = row, green = column: a crop's first pixel says where it was cut
    yy, xx = np.mgrid[0:h, 0:w]
    noise = np.random.default_rng(seed).integers(0, 256, (h, w))
    page = np.stack([yy, xx, noise], axis=-1).astype(np.float32) / 255.0
    pages = PageSet.from_images([page], max_side=10_000)
    stored = pages.pages[0].pixels
    assert np.array_equal(stored, np.stack([yy, xx, noise], axis=-1))  # kept at its scale (within max_side)
    r = 64
    sampler = CropSampler(pages, MaskSampler(page_side=128, full_mask_prob=0.5, kinds=("wide", "box")), r)
    batch = sampler.sample(np.random.default_rng(seed), 3)
    assert batch.images.shape == (3, r, r, 3) and batch.masks.shape == (3, r, r) and batch.valid.shape == (3, r, r)
    ch, cw = min(h, r), min(w, r)
    for i in range(3):
        img = np.round(batch.images[i].numpy() * 255.0).astype(np.int64)
        assert batch.valid[i, :ch, :cw].min() == 1 and float(batch.valid[i].sum()) == ch * cw
        assert np.all(img[ch:] == 255) and np.all(img[:, cw:] == 255)  # paper padding outside the page
        y, x = int(img[0, 0, 0]), int(img[0, 0, 1])
        assert 0 <= y <= h - ch and 0 <= x <= w - cw
        assert np.array_equal(img[:ch, :cw], stored[y : y + ch, x : x + cw])  # a piece of the page, unscaled
        m = batch.masks[i].numpy()
        assert set(np.unique(m)) <= {0.0, 1.0} and m.any()
    again = sampler.sample(np.random.default_rng(seed), 3)
    assert torch.equal(batch.images, again.images) and torch.equal(batch.masks, again.masks)


def test_grey_pages_are_replicated_to_rgb():
    grey = np.random.default_rng(0).uniform(0, 1, (40, 30)).astype(np.float32)
    pages = PageSet.from_images([grey], max_side=1024)
    assert pages.pages[0].pixels.shape == (40, 30, 1)  # stored once
    batch = CropSampler(pages, MaskSampler(128, 1.0), 64).sample(np.random.default_rng(0), 1)
    img = batch.images[0].numpy()
    assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 0], img[..., 2])
    assert np.abs(img[:40, :30, 0] - grey).max() <= 0.5 / 255 + 1e-6


# --- masks -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [0.75, 0.3])
def test_the_whole_image_is_masked_with_the_given_probability(p):
    sampler = MaskSampler(page_side=128, full_mask_prob=p, kinds=("box",))
    rng = np.random.default_rng(1)
    n = 1500
    full = 0
    for _ in range(n):
        mask, kind = sampler.sample(rng, (32, 32))
        if kind == "full":
            full += 1
            assert mask.all()
        else:
            assert mask.any() and not mask.all() and kind == "box"
    sigma = math.sqrt(n * p * (1 - p))
    assert abs(full - n * p) < 4.5 * sigma  # binomial: fails by chance with probability < 1e-5
    assert all(MaskSampler(128, 0.0, ("box",)).sample(rng, (16, 16))[1] == "box" for _ in range(50))
    assert all(MaskSampler(128, 1.0).sample(rng, (16, 16))[1] == "full" for _ in range(50))


def test_shapes_come_from_the_pack_generators():
    sampler = MaskSampler(page_side=256, full_mask_prob=0.0, bank_size=4)
    page = generate_page(7_000_000 + 3, size=sampler.page_shape, dpi=sampler.dpi, masks=False)
    bank = sampler.bank_page(3)
    assert np.array_equal(bank["text"], page.masks["text"]) and np.array_equal(bank["sfx"], page.masks["sfx"])
    assert np.array_equal(bank["bubble"], bubble_mask(page)) and bank["bubble"].any()
    # bubble masks lie inside the bubbles (paper white in the clean page) and cover most of them
    assert page.clean[bank["bubble"]].mean() > 0.97
    # the box kind is maskgen's box_mask, flipped at random
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    only_box = MaskSampler(page_side=256, full_mask_prob=0.0, kinds=("box",))
    got, kind = only_box.sample(rng_a, (48, 40))
    rng_b.uniform()
    rng_b.integers(1)
    ref = box_mask(rng_b, (48, 40))
    flips = [ref, ref[:, ::-1], ref[::-1], ref[::-1, ::-1]]
    assert kind == "box" and any(np.array_equal(got, f) for f in flips)
    kinds = {sampler.sample(np.random.default_rng(s), (64, 64))[1] for s in range(80)}
    assert kinds == set(MASK_KINDS)


def test_bad_mask_settings_are_refused():
    with pytest.raises(ValueError, match="full_mask_prob"):
        MaskSampler(full_mask_prob=1.5)
    with pytest.raises(ValueError, match="mask kinds"):
        MaskSampler(kinds=("bubble", "heads"))


# --- data folders --------------------------------------------------------------------------------------


def _write_pages(folder, n=2, size=(96, 72)):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        write_image(folder / f"p{i}.png", generate_page(i, size=size, dpi=36).clean[..., None])


def test_folder_is_read_recursively_with_tags_and_corrupt_pages_skipped(tmp_path, caplog):
    _write_pages(tmp_path / "vol1", 2)
    _write_pages(tmp_path / "vol2" / "ch1", 1)
    (tmp_path / "vol1" / "p0.txt").write_text("1girl, rain")
    (tmp_path / "vol2" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.png").write_bytes(b"junk")
    with caplog.at_level(logging.WARNING, logger="MDIM"):
        pages = PageSet.from_folder(tmp_path, max_side=64)
    assert [p.name for p in pages.pages] == ["vol1/p0.png", "vol1/p1.png", "vol2/ch1/p0.png"]
    assert pages.pages[0].tags == ("1girl", "rain") and pages.pages[1].tags == ()
    assert all(max(p.pixels.shape[:2]) <= 64 for p in pages.pages)
    assert [s[0] for s in pages.skipped] == ["vol2/broken.png"]
    assert any("broken.png" in r.getMessage() and "skipping" in r.getMessage() for r in caplog.records)


def test_empty_or_unreadable_data_folder_names_the_folder(tmp_path):
    with pytest.raises(ValueError, match=str(tmp_path / "missing")):
        PageSet.from_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no pages here")
    with pytest.raises(ValueError, match=r"no page images.*empty"):
        PageSet.from_folder(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.png").write_bytes(b"")
    (tmp_path / "bad" / "b.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(ValueError, match=r"none of the 2 image\(s\) in the folder .*bad"):
        PageSet.from_folder(tmp_path / "bad")
