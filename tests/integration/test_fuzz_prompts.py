"""Fuzz matrix of every MDIM node through ``/prompt``, as the editor sends graphs, on the session's real server.

Each case is a small graph of core nodes around one MDIM node with an odd input: odd sizes (1xN, Nx1,
primes), batch mismatches, empty and full masks, NaN pixels, wrong types (a LATENT or MASK where an
IMAGE goes: the host's validation must refuse them; a type-compatible wrong object passed through
core ``ComfySwitchNode``, whose output takes any type: our node must refuse it) and huge values.
NaN pixels come from a ``.latent`` file with NaN values in the input folder (``LoadLatent``), decoded
by core ``VAEDecode`` and pasted into a page with ``ImageCompositeMasked``.

Required, per case: the server never dies; the outcome is the one expected (runs with correct pixels,
refused by validation naming the input, or an execution error of the MDIM node whose message names
the input); and after every failing prompt a small good prompt runs (with a new seed, so nothing is
served from the host's cache) and keeps every pixel outside its mask.

Set ``MDIM_FUZZ_REPORT_DIR`` to write the tally as ``fuzz_<version>.json`` there
(``benchmarks/fuzz_report.py`` turns them into ``benchmarks/results/fuzz_real_host.md``).
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from comfy_harness import PromptError
from workflow_validation import combo_values

pytestmark = pytest.mark.integration

CKPT = "mdim_tiny_sd15.safetensors"
CKPT_INPAINT = "mdim_tiny_sd15_inpainting.safetensors"
NO_ADAPTERS = "(none: untrained, decodes like the VAE)"
PAGE = (37, 23)  # (H, W): primes
BIG = (1201, 853)  # a page much larger than sgi_max_side 64
RESULTS: list[dict] = []


# --------------------------------------------------------------------------- graphs


class Graph:
    """An API-format prompt built node by node: ``g.add("ClassType", input=value or (node, slot))``."""

    def __init__(self):
        self.nodes: dict[str, dict] = {}
        self._ids = itertools.count(1)

    def add(self, class_type: str, **inputs) -> str:
        node = str(next(self._ids))
        self.nodes[node] = {
            "class_type": class_type,
            "inputs": {k: list(v) if isinstance(v, tuple) else v for k, v in inputs.items()},
        }
        return node

    def find(self, class_type: str) -> str:
        return next(k for k, v in self.nodes.items() if v["class_type"] == class_type)

    def preview(self, source: tuple, kind: str = "IMAGE") -> str:
        if kind == "MASK":
            source = (self.add("MaskToImage", mask=source), 0)
        return self.add("PreviewImage", images=source)


def checkpoint(g: Graph, name: str = CKPT) -> dict:
    ckpt = g.add("CheckpointLoaderSimple", ckpt_name=name)
    return {
        "model": (ckpt, 0), "vae": (ckpt, 2),
        "positive": (g.add("CLIPTextEncode", text="manga", clip=(ckpt, 1)), 0),
        "negative": (g.add("CLIPTextEncode", text="color", clip=(ckpt, 1)), 0),
    }  # fmt: skip


def image(g: Graph, name: str = "fz_page.png", batch: int = 1) -> tuple:
    out = (g.add("LoadImage", image=name), 0)
    return (g.add("RepeatImageBatch", image=out, amount=batch), 0) if batch > 1 else out


def mask(g: Graph, name: str = "fz_mask.png", batch: int = 1) -> tuple:
    return (g.add("ImageToMask", image=image(g, name, batch), channel="red"), 0)


def solid_mask(g: Graph, value: float, hw: tuple = PAGE) -> tuple:
    return (g.add("SolidMask", value=value, width=hw[1], height=hw[0]), 0)


def nan_image(g: Graph, vae: tuple, base: tuple | None = None) -> tuple:
    """An image with NaN pixels, from core nodes only: the NaN latent file decoded, pasted into ``base``."""
    nan = (g.add("VAEDecode", samples=(g.add("LoadLatent", latent="fz_nan.latent"), 0), vae=vae), 0)
    if base is None:
        return nan
    return (g.add("ImageCompositeMasked", destination=base, source=nan, x=4, y=4, resize_source=False), 0)


def switched(g: Graph, value: tuple) -> tuple:
    """``value`` passed through core ComfySwitchNode, whose output the host lets into any input type."""
    return (g.add("ComfySwitchNode", switch=True, on_true=value, on_false=value), 0)


def crop(g: Graph, source: tuple, h: int, w: int) -> tuple:
    return (g.add("ImageCrop", image=source, width=w, height=h, x=0, y=0), 0)


SGIM_SMALL = {
    "seed": 1, "steps": 1, "cfg": 5.0, "sampler_name": "euler", "scheduler": "simple", "sgi_max_side": 1024,
    "plan": "halve", "fri_strength": 0.5, "fri_steps": 1, "run_fri": "auto", "grow_mask": 0, "feather": 0,
    "context_margin": 16, "min_crop_side": 0, "limit_to_panel": False, "tiled_vae_megapixels": 4.0,
    "flat_fill": "off",
}  # fmt: skip
CLEANUP = {"gray": "auto", "remove_background": True, "levels": "thesis", "black_point": 90.0, "white_point": 190.0,
           "sharpen": 3.0, "dpi": 0.0, "bleed_through": 0.0, "despeckle": 0, "deskew": False}  # fmt: skip
TEXT = {"text_in_bubbles": True, "free_text": True, "sfx": False, "grow": 3, "min_size": 0}
LAMA = {"max_side": 512, "context_margin": 128, "grow_mask": 0, "precision": "fp32"}
OUTPAINT = {"top": 0, "bottom": 0, "left": 0, "right": 0, "aspect": "off", "target_height": 0, "target_width": 0,
            "anchor": "center", "fill": "paper", "feather": 0}  # fmt: skip
HARMONIZE = {"x": 2, "y": 2, "scale": 1.0, "mask_is": "transparency", "ring": 8, "seed": 1, "steps": 1, "cfg": 5.0,
             "sampler_name": "euler", "scheduler": "simple", "strength": 0.3, "context_margin": 16, "min_crop_side": 0,
             "tiled_vae_megapixels": 4.0}  # fmt: skip


def sgim(g: Graph, base: dict | None = None, **inputs) -> str:
    base = base or checkpoint(g)
    args = {**SGIM_SMALL, **{k: base[k] for k in ("model", "positive", "negative", "vae")}}
    args.setdefault("image", None)
    args.update(inputs)
    if args["image"] is None:
        args["image"] = image(g)
    if "mask" not in args:
        args["mask"] = mask(g)
    node = g.add("MDIM_SGIMInpaint", **args)
    g.preview((node, 0))
    return node


def symvae(g: Graph, vae: tuple) -> tuple:
    return (g.add("MDIM_SymVAELoader", vae=vae, adapter_name=NO_ADAPTERS, allow_other_vae_weights=False), 0)


def lama(g: Graph, ctx) -> tuple:
    return (g.add("MDIM_LamaLoader", model_name=ctx.lama_name), 0)


def detector(g: Graph, ctx, threshold: float = 0.3) -> tuple:
    return (g.add("MDIM_TextDetectorLoader", detector_name=ctx.detector_name, threshold=threshold), 0)


# --------------------------------------------------------------------------- checks of results


def same_size(*hw):
    def check(images, ctx):
        assert images, "no image"
        for img in images:
            assert img.shape[:2] == tuple(hw), (img.shape, hw)

    return check


def exact_outside(page: str = "fz_page.png", mask_file: str = "fz_mask.png", repainted: bool = True, count: int = 1):
    def check(images, ctx):
        ref, hole = ctx.files[page], ctx.files[mask_file][..., 0] > 127
        assert len(images) >= count
        for img in images[:count]:
            assert img.shape == ref.shape, (img.shape, ref.shape)
            diff = (img != ref).any(-1)
            assert not (diff & ~hole).any(), "pixels outside the mask changed"
            if repainted:
                assert diff[hole].any(), "nothing inside the mask changed"

    return check


def unchanged(page: str = "fz_page.png", count: int = 1):
    def check(images, ctx):
        assert len(images) >= count
        for img in images[:count]:
            assert np.array_equal(img, ctx.files[page])

    return check


# --------------------------------------------------------------------------- the cases


@dataclass
class Case:
    node: str  # the MDIM node under test
    name: str
    build: Callable  # (Graph, ctx) -> None
    expect: str  # "runs", "refused" (validation), "error" (execution error of the MDIM node)
    names: str | tuple = ()  # the input(s) an error must name (one of them)
    check: Callable | None = None  # (images, ctx) for "runs"
    timeout: float = 600.0
    tags: tuple = field(default_factory=tuple)


def _cases() -> list[Case]:
    c: list[Case] = []
    add = c.append

    # ---- MDIM Scan Cleanup
    def cleanup(src_fn, **over):
        def build(g, ctx):
            g.preview((g.add("MDIM_ScanCleanup", image=src_fn(g, ctx), **{**CLEANUP, **over}), 0))
        return build

    add(Case("MDIM_ScanCleanup", "primes 37x23", cleanup(lambda g, ctx: image(g)), "runs", check=same_size(*PAGE)))
    add(Case("MDIM_ScanCleanup", "strip 1x97", cleanup(lambda g, ctx: image(g, "fz_strip_1x97.png")), "runs",
             check=same_size(1, 97)))
    add(Case("MDIM_ScanCleanup", "strip 97x1", cleanup(lambda g, ctx: image(g, "fz_strip_97x1.png")), "runs",
             check=same_size(97, 1)))
    add(Case("MDIM_ScanCleanup", "1x1 pixel", cleanup(lambda g, ctx: crop(g, image(g), 1, 1)), "runs",
             check=same_size(1, 1)))
    add(Case("MDIM_ScanCleanup", "batch of 3", cleanup(lambda g, ctx: image(g, batch=3)), "runs",
             check=same_size(*PAGE)))
    add(Case("MDIM_ScanCleanup", "NaN pixels", cleanup(lambda g, ctx: nan_image(g, checkpoint(g)["vae"], image(g))),
             "error", "image"))
    add(Case("MDIM_ScanCleanup", "huge: despeckle 1000, dpi 4800, sharpen 10 on a big page",
             cleanup(lambda g, ctx: image(g, "fz_big.png"), despeckle=1000, dpi=4800.0, sharpen=10.0), "runs",
             check=same_size(*BIG)))
    add(Case("MDIM_ScanCleanup", "black_point above white_point", cleanup(lambda g, ctx: image(g), black_point=200.0,
             white_point=100.0), "error", "black_point"))
    add(Case("MDIM_ScanCleanup", "LATENT into image", cleanup(
        lambda g, ctx: (g.add("EmptyLatentImage", width=64, height=64, batch_size=1), 0)), "refused", "image"))
    add(Case("MDIM_ScanCleanup", "MASK into image", cleanup(lambda g, ctx: solid_mask(g, 1.0)), "refused", "image"))

    # ---- MDIM Text Mask (+ Text Detector Loader)
    def textmask(src_fn, preview="mask", **over):
        def build(g, ctx):
            extra = {k: (v(g, ctx) if callable(v) else v) for k, v in over.items()}
            node = g.add("MDIM_TextMask", image=src_fn(g, ctx), **{**TEXT, **extra})
            g.preview((node, 0), "MASK")
            g.preview((node, 1))
        return build

    add(Case("MDIM_TextMask", "primes 37x23", textmask(lambda g, ctx: image(g)), "runs", check=same_size(*PAGE)))
    add(Case("MDIM_TextMask", "strip 1x97", textmask(lambda g, ctx: image(g, "fz_strip_1x97.png")), "error",
             ("image", "8x8")))  # the detector needs pages of 8 px a side
    add(Case("MDIM_TextMask", "batch 3, rough_mask batch 2", textmask(
        lambda g, ctx: image(g, batch=3), rough_mask=lambda g, ctx: mask(g, batch=2)), "error", "rough_mask"))
    add(Case("MDIM_TextMask", "empty rough_mask", textmask(
        lambda g, ctx: image(g), rough_mask=lambda g, ctx: solid_mask(g, 0.0)), "runs", check=same_size(*PAGE)))
    add(Case("MDIM_TextMask", "NaN pixels", textmask(lambda g, ctx: nan_image(g, checkpoint(g)["vae"], image(g))),
             "error", "image"))
    add(Case("MDIM_TextMask", "huge: grow 256, min_size 4096 on a big page",
             textmask(lambda g, ctx: image(g, "fz_big.png"), grow=256, min_size=4096), "runs", check=same_size(*BIG)))
    add(Case("MDIM_TextMask", "MASK into image", textmask(lambda g, ctx: solid_mask(g, 1.0)), "refused", "image"))
    add(Case("MDIM_TextMask", "an IMAGE into detector (through a switch)", textmask(
        lambda g, ctx: image(g), detector=lambda g, ctx: switched(g, image(g))), "error", "detector"))
    add(Case("MDIM_TextDetectorLoader", "threshold 0 on a prime page", textmask(
        lambda g, ctx: image(g), detector=lambda g, ctx: detector(g, ctx, 0.0)), "runs",
        check=same_size(*PAGE)))
    add(Case("MDIM_TextDetectorLoader", "threshold 1 on a big page", textmask(
        lambda g, ctx: image(g, "fz_big.png"), detector=lambda g, ctx: detector(g, ctx, 1.0)), "runs",
        check=same_size(*BIG)))

    def missing_detector(g, ctx):
        node = g.add("MDIM_TextMask", image=image(g), **TEXT,
                     detector=(g.add("MDIM_TextDetectorLoader", detector_name="no_such.onnx", threshold=0.3), 0))
        g.preview((node, 1))

    add(Case("MDIM_TextDetectorLoader", "file not in models/mdim", missing_detector, "refused", "detector_name"))

    # ---- MDIM Flat Fill
    def flatfill(src_fn, mask_fn, outputs=(0,), **over):
        def build(g, ctx):
            node = g.add("MDIM_FlatFill", image=src_fn(g, ctx), mask=mask_fn(g, ctx), **{"ring": 3, "tolerance": 0.08,
                                                                                          **over})
            for slot in outputs:
                g.preview((node, slot))
        return build

    add(Case("MDIM_FlatFill", "primes, file mask", flatfill(lambda g, ctx: image(g), lambda g, ctx: mask(g)), "runs",
             check=exact_outside(repainted=False)))
    add(Case("MDIM_FlatFill", "empty mask", flatfill(lambda g, ctx: image(g), lambda g, ctx: solid_mask(g, 0.0)),
             "runs", check=unchanged()))
    add(Case("MDIM_FlatFill", "full mask", flatfill(lambda g, ctx: image(g), lambda g, ctx: solid_mask(g, 1.0)),
             "runs", check=same_size(*PAGE)))
    add(Case("MDIM_FlatFill", "mask of another size (64x64)", flatfill(
        lambda g, ctx: image(g), lambda g, ctx: solid_mask(g, 1.0, (64, 64))), "runs", check=same_size(*PAGE)))
    add(Case("MDIM_FlatFill", "image batch 3, mask batch 2", flatfill(
        lambda g, ctx: image(g, batch=3), lambda g, ctx: mask(g, batch=2)), "error", "mask"))
    add(Case("MDIM_FlatFill", "strip 97x1", flatfill(
        lambda g, ctx: image(g, "fz_strip_97x1.png"), lambda g, ctx: mask(g, "fz_strip_97x1_mask.png")), "runs",
        check=exact_outside("fz_strip_97x1.png", "fz_strip_97x1_mask.png", repainted=False)))
    add(Case("MDIM_FlatFill", "NaN pixels", flatfill(
        lambda g, ctx: nan_image(g, checkpoint(g)["vae"], image(g)), lambda g, ctx: mask(g)), "error", "image"))
    add(Case("MDIM_FlatFill", "huge: ring 64, tolerance 0.5", flatfill(
        lambda g, ctx: image(g), lambda g, ctx: mask(g), ring=64, tolerance=0.5), "runs",
        check=exact_outside(repainted=False)))
    add(Case("MDIM_FlatFill", "LATENT into mask", flatfill(
        lambda g, ctx: image(g), lambda g, ctx: (g.add("EmptyLatentImage", width=64, height=64, batch_size=1), 0)),
        "refused", "mask"))

    # ---- MDIM LaMa Loader / Fill
    def lamafill(src_fn, mask_fn, lama_fn=lama, **over):
        def build(g, ctx):
            node = g.add("MDIM_LamaFill", lama=lama_fn(g, ctx), image=src_fn(g, ctx), mask=mask_fn(g, ctx),
                         **{**LAMA, **over})
            g.preview((node, 0))
        return build

    add(Case("MDIM_LamaFill", "primes, file mask", lamafill(lambda g, ctx: image(g), lambda g, ctx: mask(g)), "runs",
             check=exact_outside()))
    add(Case("MDIM_LamaFill", "strip 1x97", lamafill(
        lambda g, ctx: image(g, "fz_strip_1x97.png"), lambda g, ctx: mask(g, "fz_strip_1x97_mask.png")), "runs",
        check=exact_outside("fz_strip_1x97.png", "fz_strip_1x97_mask.png")))
    add(Case("MDIM_LamaFill", "empty mask", lamafill(lambda g, ctx: image(g), lambda g, ctx: solid_mask(g, 0.0)),
             "runs", check=unchanged()))
    add(Case("MDIM_LamaFill", "full mask", lamafill(lambda g, ctx: image(g), lambda g, ctx: solid_mask(g, 1.0)),
             "runs", check=same_size(*PAGE)))
    add(Case("MDIM_LamaFill", "image batch 3, mask batch 2", lamafill(
        lambda g, ctx: image(g, batch=3), lambda g, ctx: mask(g, batch=2)), "error", "mask"))
    add(Case("MDIM_LamaFill", "NaN pixels", lamafill(
        lambda g, ctx: nan_image(g, checkpoint(g)["vae"], image(g)), lambda g, ctx: mask(g)), "error", "image"))
    add(Case("MDIM_LamaFill", "huge: grow_mask 256, context 4096, max_side 8192", lamafill(
        lambda g, ctx: image(g), lambda g, ctx: mask(g), grow_mask=256, context_margin=4096, max_side=8192), "runs",
        check=same_size(*PAGE)))
    add(Case("MDIM_LamaFill", "a MODEL into lama (through a switch)", lamafill(
        lambda g, ctx: image(g), lambda g, ctx: mask(g), lama_fn=lambda g, ctx: switched(g, checkpoint(g)["model"])),
        "error", "lama"))

    def missing_lama(g, ctx):
        node = g.add("MDIM_LamaFill", lama=(g.add("MDIM_LamaLoader", model_name="no_such_lama.safetensors"), 0),
                     image=image(g), mask=mask(g), **LAMA)
        g.preview((node, 0))

    add(Case("MDIM_LamaLoader", "file not in models/inpaint", missing_lama, "refused", "model_name"))
    add(Case("MDIM_LamaLoader", "big page, sgi-sized crops", lamafill(
        lambda g, ctx: image(g, "fz_big.png"), lambda g, ctx: mask(g, "fz_big_mask.png"), max_side=64), "runs",
        check=exact_outside("fz_big.png", "fz_big_mask.png")))

    # ---- MDIM Outpaint Pad
    def outpaint(src_fn, **over):
        def build(g, ctx):
            node = g.add("MDIM_OutpaintPad", image=src_fn(g, ctx), **{**OUTPAINT, **over})
            g.preview((node, 0))
            g.preview((node, 1), "MASK")
        return build

    add(Case("MDIM_OutpaintPad", "1x1 pixel, edge fill", outpaint(lambda g, ctx: crop(g, image(g), 1, 1), top=2,
             left=3, fill="edge"), "runs", check=same_size(3, 4)))
    add(Case("MDIM_OutpaintPad", "strip 97x1 to a manga page", outpaint(lambda g, ctx: image(g, "fz_strip_97x1.png"),
             aspect="1:√2 (manga page)", fill="mirror"), "runs"))
    add(Case("MDIM_OutpaintPad", "batch of 3", outpaint(lambda g, ctx: image(g, batch=3), bottom=5), "runs",
             check=same_size(PAGE[0] + 5, PAGE[1])))
    add(Case("MDIM_OutpaintPad", "NaN pixels", outpaint(lambda g, ctx: nan_image(g, checkpoint(g)["vae"], image(g)),
             top=4), "error", "image"))
    add(Case("MDIM_OutpaintPad", "huge: top 32768", outpaint(lambda g, ctx: image(g), top=32768), "error",
             ("top", "padded image")))
    add(Case("MDIM_OutpaintPad", "huge: 32768x32768 target", outpaint(lambda g, ctx: image(g), target_width=32768,
             target_height=32768), "error", ("target", "memory")))
    add(Case("MDIM_OutpaintPad", "huge: feather 1024", outpaint(lambda g, ctx: image(g), right=40, feather=1024),
             "runs", check=same_size(PAGE[0], PAGE[1] + 40)))

    # ---- MDIM Paste & Harmonize
    def harmonize(page_fn, fg_fn, fgmask_fn=None, extra=None, **over):
        def build(g, ctx):
            base = checkpoint(g)
            args = {**HARMONIZE, **{k: base[k] for k in ("model", "positive", "negative", "vae")}, **over}
            args.update(page=page_fn(g, ctx), foreground=fg_fn(g, ctx))
            if fgmask_fn is not None:
                args["foreground_mask"] = fgmask_fn(g, ctx)
            for k, fn in (extra or {}).items():
                args[k] = fn(g, ctx, base)
            node = g.add("MDIM_PasteHarmonize", **args)
            g.preview((node, 0))
        return build

    def sfx(g, ctx):
        return image(g, "fz_sfx.png")

    add(Case("MDIM_PasteHarmonize", "RGBA sign on a prime page", harmonize(lambda g, ctx: image(g), sfx), "runs",
             check=same_size(*PAGE)))
    add(Case("MDIM_PasteHarmonize", "sign outside the page", harmonize(lambda g, ctx: image(g), sfx, x=5000),
             "error", ("x", "outside")))
    add(Case("MDIM_PasteHarmonize", "page batch 3, sign batch 2", harmonize(
        lambda g, ctx: image(g, batch=3), lambda g, ctx: image(g, "fz_sfx.png", batch=2)), "error", "foreground"))
    add(Case("MDIM_PasteHarmonize", "foreground_mask batch 2 for one sign", harmonize(
        lambda g, ctx: image(g), sfx, lambda g, ctx: mask(g, "fz_sfx.png", batch=2), mask_is="coverage"), "error",
        "foreground_mask"))
    add(Case("MDIM_PasteHarmonize", "huge: scale 16 on a strip page", harmonize(
        lambda g, ctx: image(g, "fz_strip_97x1.png"), sfx, scale=16.0, x=0, y=0), "error", "scale"))
    add(Case("MDIM_PasteHarmonize", "NaN sign", harmonize(
        lambda g, ctx: image(g), lambda g, ctx: nan_image(g, checkpoint(g)["vae"])), "error", "foreground"))
    add(Case("MDIM_PasteHarmonize", "an IMAGE into symvae (through a switch)", harmonize(
        lambda g, ctx: image(g), sfx, extra={"symvae": lambda g, ctx, base: switched(g, image(g))}), "error",
        "symvae"))
    add(Case("MDIM_PasteHarmonize", "LATENT into foreground", harmonize(
        lambda g, ctx: image(g), lambda g, ctx: (g.add("EmptyLatentImage", width=64, height=64, batch_size=1), 0)),
        "refused", "foreground"))

    # ---- MDIM RePaint Sampler (through core SamplerCustom)
    def repaint(latent_fn, steps=3, **over):
        def build(g, ctx):
            base = checkpoint(g)
            sampler = g.add("MDIM_RePaintSampler", **{"jump_length": 1, "jump_n_sample": 2, "step": "ddpm", **over})
            sigmas = g.add("BasicScheduler", model=base["model"], scheduler="simple", steps=steps, denoise=1.0)
            out = g.add("SamplerCustom", model=base["model"], add_noise=True, noise_seed=3, cfg=5.0,
                        positive=base["positive"], negative=base["negative"], sampler=(sampler, 0),
                        sigmas=(sigmas, 0), latent_image=latent_fn(g, ctx, base))
            g.preview((g.add("VAEDecode", samples=(out, 0), vae=base["vae"]), 0))
        return build

    def masked_latent(src="fz_page.png", mask_file="fz_mask.png"):
        def fn(g, ctx, base):
            latent = (g.add("VAEEncode", pixels=image(g, src), vae=base["vae"]), 0)
            return (g.add("SetLatentNoiseMask", samples=latent, mask=mask(g, mask_file)), 0)
        return fn

    add(Case("MDIM_RePaintSampler", "masked latent of a prime page", repaint(masked_latent()), "runs",
             check=same_size(32, 16)))
    add(Case("MDIM_RePaintSampler", "huge: jump_length 1000, jump_n_sample 100", repaint(
        masked_latent(), jump_length=1000, jump_n_sample=100), "runs", check=same_size(32, 16)))
    add(Case("MDIM_RePaintSampler", "huge: jump_n_sample 100 on an 8x8 page", repaint(
        masked_latent("fz_tiny.png", "fz_tiny_mask.png"), jump_length=1, jump_n_sample=100), "runs",
        check=same_size(8, 8)))
    add(Case("MDIM_RePaintSampler", "no noise mask", repaint(
        lambda g, ctx, base: (g.add("EmptyLatentImage", width=16, height=16, batch_size=3), 0)), "runs",
        check=same_size(16, 16)))

    # ---- MDIM SGIM Inpaint
    def sg(**inputs):
        def build(g, ctx):
            base = checkpoint(g, inputs.get("ckpt", CKPT))
            sgim(g, base, **{k: (v(g, ctx, base) if callable(v) else v) for k, v in inputs.items() if k != "ckpt"})
        return build

    add(Case("MDIM_SGIMInpaint", "primes 37x23", sg(), "runs", check=exact_outside()))
    add(Case("MDIM_SGIMInpaint", "strip 1x97", sg(image=lambda g, ctx, b: image(g, "fz_strip_1x97.png"),
             mask=lambda g, ctx, b: mask(g, "fz_strip_1x97_mask.png")), "runs",
             check=exact_outside("fz_strip_1x97.png", "fz_strip_1x97_mask.png")))
    add(Case("MDIM_SGIMInpaint", "strip 97x1, 9-channel model", sg(
        ckpt=CKPT_INPAINT, image=lambda g, ctx, b: image(g, "fz_strip_97x1.png"),
        mask=lambda g, ctx, b: mask(g, "fz_strip_97x1_mask.png")), "runs",
        check=exact_outside("fz_strip_97x1.png", "fz_strip_97x1_mask.png")))
    add(Case("MDIM_SGIMInpaint", "image batch 3, mask batch 2", sg(
        image=lambda g, ctx, b: image(g, batch=3), mask=lambda g, ctx, b: mask(g, batch=2)), "error", "mask"))
    add(Case("MDIM_SGIMInpaint", "empty mask", sg(mask=lambda g, ctx, b: solid_mask(g, 0.0)), "runs",
             check=unchanged()))
    add(Case("MDIM_SGIMInpaint", "full mask", sg(mask=lambda g, ctx, b: solid_mask(g, 1.0)), "runs",
             check=same_size(*PAGE)))
    add(Case("MDIM_SGIMInpaint", "NaN pixels", sg(image=lambda g, ctx, b: nan_image(g, b["vae"], image(g))),
             "error", "image"))
    add(Case("MDIM_SGIMInpaint", "NaN mask", sg(mask=lambda g, ctx, b: (g.add(
        "ImageToMask", image=nan_image(g, b["vae"], image(g)), channel="red"), 0)), "error", "mask"))
    add(Case("MDIM_SGIMInpaint", "huge: steps 1000 on an 8x8 page", sg(
        image=lambda g, ctx, b: image(g, "fz_tiny.png"), mask=lambda g, ctx, b: mask(g, "fz_tiny_mask.png"),
        steps=1000), "runs", check=exact_outside("fz_tiny.png", "fz_tiny_mask.png"), timeout=1800))
    add(Case("MDIM_SGIMInpaint", "huge: sgi_max_side 64 on a 1201x853 page", sg(
        image=lambda g, ctx, b: image(g, "fz_big.png"), mask=lambda g, ctx, b: mask(g, "fz_big_mask.png"),
        sgi_max_side=64, min_crop_side=0), "runs", check=exact_outside("fz_big.png", "fz_big_mask.png")))
    add(Case("MDIM_SGIMInpaint", "huge: grow_mask 256, feather 256, context 4096, min_crop 8192", sg(
        grow_mask=256, feather=256, context_margin=4096, min_crop_side=8192), "runs", check=same_size(*PAGE)))
    add(Case("MDIM_SGIMInpaint", "prefill batch 2 for 3 pages", sg(
        image=lambda g, ctx, b: image(g, batch=3), prefill=lambda g, ctx, b: image(g, batch=2)), "error", "prefill"))
    add(Case("MDIM_SGIMInpaint", "prefill of another size", sg(
        prefill=lambda g, ctx, b: image(g, "fz_tiny.png")), "error", "prefill"))

    def hinted(n_hints):
        def positive(g, ctx, b):
            cn = g.add("ControlNetLoader", control_net_name=ctx.controlnet)
            hint = image(g, batch=n_hints)
            return (g.add("ControlNetApplyAdvanced", positive=b["positive"], negative=b["negative"],
                          control_net=(cn, 0), image=hint, strength=1.0, start_percent=0.0, end_percent=1.0), 0)
        return positive

    add(Case("MDIM_SGIMInpaint", "ControlNet hint batch 2 for 3 pages", sg(
        image=lambda g, ctx, b: image(g, batch=3), positive=hinted(2)), "error", ("hint", "positive")))
    add(Case("MDIM_SGIMInpaint", "an IMAGE into symvae (through a switch)", sg(
        symvae=lambda g, ctx, b: switched(g, image(g))), "error", "symvae"))
    add(Case("MDIM_SGIMInpaint", "a MODEL into sampler (through a switch)", sg(
        sampler=lambda g, ctx, b: switched(g, b["model"])), "error", "sampler"))
    add(Case("MDIM_SGIMInpaint", "an IMAGE into sigmas (through a switch)", sg(
        sigmas=lambda g, ctx, b: switched(g, image(g))), "error", "sigmas"))
    add(Case("MDIM_SGIMInpaint", "a CLIP into model (through a switch)", sg(
        model=lambda g, ctx, b: switched(g, (g.find("CheckpointLoaderSimple"), 1))), "error", "model"))
    add(Case("MDIM_SGIMInpaint", "LATENT into image", sg(
        image=lambda g, ctx, b: (g.add("EmptyLatentImage", width=64, height=64, batch_size=1), 0)), "refused",
        "image"))
    add(Case("MDIM_SGIMInpaint", "MASK into image", sg(image=lambda g, ctx, b: solid_mask(g, 1.0)), "refused", "image"))
    add(Case("MDIM_SGIMInpaint", "IMAGE into mask", sg(mask=lambda g, ctx, b: image(g)), "refused", "mask"))

    # ---- MDIM Symmetric VAE Loader / Encode / Decode / Restore
    def sv_restore(src_fn, handle_fn=None, **over):
        def build(g, ctx):
            base = checkpoint(g)
            handle = handle_fn(g, ctx, base) if handle_fn else symvae(g, base["vae"])
            node = g.add("MDIM_SymVAERestore", symvae=handle, image=src_fn(g, ctx, base),
                         **{"tile_size": 1024, "grayscale": True, **over})
            g.preview((node, 0))
        return build

    add(Case("MDIM_SymVAERestore", "primes 37x23", sv_restore(lambda g, ctx, b: image(g)), "runs",
             check=same_size(*PAGE)))
    add(Case("MDIM_SymVAERestore", "strip 1x97, tile_size 0", sv_restore(
        lambda g, ctx, b: image(g, "fz_strip_1x97.png"), tile_size=0), "runs", check=same_size(1, 97)))
    add(Case("MDIM_SymVAERestore", "NaN pixels", sv_restore(lambda g, ctx, b: nan_image(g, b["vae"], image(g))),
             "error", "image"))
    add(Case("MDIM_SymVAERestore", "an IMAGE into symvae (through a switch)", sv_restore(
        lambda g, ctx, b: image(g), handle_fn=lambda g, ctx, b: switched(g, image(g))), "error", "symvae"))
    add(Case("MDIM_SymVAELoader", "a MODEL into vae (through a switch)", sv_restore(
        lambda g, ctx, b: image(g), handle_fn=lambda g, ctx, b: (g.add(
            "MDIM_SymVAELoader", vae=switched(g, b["model"]), adapter_name=NO_ADAPTERS,
            allow_other_vae_weights=False), 0)), "error", "vae"))
    add(Case("MDIM_SymVAELoader", "adapter file not in models/mdim", sv_restore(
        lambda g, ctx, b: image(g), handle_fn=lambda g, ctx, b: (g.add(
            "MDIM_SymVAELoader", vae=b["vae"], adapter_name="no_such.safetensors", allow_other_vae_weights=False), 0)),
        "refused", "adapter_name"))

    def sv_roundtrip(src_fn, mask_fn=None, latent_fn=None, **decode):
        def build(g, ctx):
            base = checkpoint(g)
            handle = symvae(g, base["vae"])
            if latent_fn is not None:
                latent = latent_fn(g, ctx, base)
            else:
                enc = {"symvae": handle, "image": src_fn(g, ctx, base), "set_noise_mask": True}
                if mask_fn is not None:
                    enc["mask"] = mask_fn(g, ctx, base)
                latent = (g.add("MDIM_SymVAEEncode", **enc), 0)
            node = g.add("MDIM_SymVAEDecode", symvae=handle, samples=latent,
                         **{"fill": "base", "paste_outside_mask": True, "tile_size": 1024, **decode})
            g.preview((node, 0))
        return build

    add(Case("MDIM_SymVAEEncode", "strip 97x1 with its mask", sv_roundtrip(
        lambda g, ctx, b: image(g, "fz_strip_97x1.png"), lambda g, ctx, b: mask(g, "fz_strip_97x1_mask.png")), "runs",
        check=same_size(97, 1)))
    add(Case("MDIM_SymVAEEncode", "image batch 3, mask batch 2", sv_roundtrip(
        lambda g, ctx, b: image(g, batch=3), lambda g, ctx, b: mask(g, batch=2)), "error", "mask"))
    add(Case("MDIM_SymVAEEncode", "NaN pixels", sv_roundtrip(lambda g, ctx, b: nan_image(g, b["vae"], image(g))),
             "error", "image"))
    add(Case("MDIM_SymVAEEncode", "full mask", sv_roundtrip(lambda g, ctx, b: image(g),
             lambda g, ctx, b: solid_mask(g, 1.0)), "runs", check=same_size(*PAGE)))
    add(Case("MDIM_SymVAEDecode", "NaN latent", sv_roundtrip(
        None, latent_fn=lambda g, ctx, b: (g.add("LoadLatent", latent="fz_nan.latent"), 0)), "error", "samples"))
    add(Case("MDIM_SymVAEDecode", "a core latent (no page) with paste_outside_mask", sv_roundtrip(
        None, latent_fn=lambda g, ctx, b: (g.add("EmptyLatentImage", width=24, height=40, batch_size=2), 0)), "runs",
        check=same_size(40, 24)))
    add(Case("MDIM_SymVAEDecode", "huge: tile_size 8192 on a big page", sv_roundtrip(
        lambda g, ctx, b: image(g, "fz_big.png"), lambda g, ctx, b: mask(g, "fz_big_mask.png"), tile_size=8192),
        "runs", check=same_size(*BIG)))
    add(Case("MDIM_SymVAEDecode", "IMAGE into samples", sv_roundtrip(
        None, latent_fn=lambda g, ctx, b: image(g)), "refused", "samples"))

    # ---- MDIM Trailing Sigmas, MDIM Zero-SNR Model (through core SamplerCustom / KSampler)
    def sigmas_case(model_fn=None, sample=True, **over):
        def build(g, ctx):
            base = checkpoint(g)
            model = model_fn(g, ctx, base) if model_fn else base["model"]
            sig = g.add("MDIM_TrailingSigmas", model=model, **{"steps": 2, "denoise": 1.0, **over})
            g.add("PreviewAny", source=(sig, 0))
            if sample:
                latent = (g.add("EmptyLatentImage", width=16, height=16, batch_size=1), 0)
                out = g.add("SamplerCustom", model=base["model"], add_noise=True, noise_seed=3, cfg=5.0,
                            positive=base["positive"], negative=base["negative"],
                            sampler=(g.add("KSamplerSelect", sampler_name="euler"), 0), sigmas=(sig, 0),
                            latent_image=latent)
                g.preview((g.add("VAEDecode", samples=(out, 0), vae=base["vae"]), 0))
        return build

    add(Case("MDIM_TrailingSigmas", "2 steps into SamplerCustom", sigmas_case(), "runs", check=same_size(16, 16)))
    add(Case("MDIM_TrailingSigmas", "huge: 1000 steps at denoise 0.01", sigmas_case(sample=False, steps=1000,
             denoise=0.01), "error", "steps"))  # a trailing schedule has at most the model's 1000 timesteps
    add(Case("MDIM_TrailingSigmas", "denoise 0", sigmas_case(denoise=0.0), "runs", check=same_size(16, 16)))
    add(Case("MDIM_TrailingSigmas", "a VAE into model (through a switch)", sigmas_case(
        model_fn=lambda g, ctx, b: switched(g, b["vae"]), sample=False), "error", "model"))

    def zsnr(model_fn=None, **over):
        def build(g, ctx):
            base = checkpoint(g)
            model = model_fn(g, ctx, base) if model_fn else base["model"]
            z = g.add("MDIM_ZeroSNRModel", model=model, **{"prediction": "v_prediction", "cfg_rescale": 0.7,
                                                          "allow_epsilon_zero_snr": False, **over})
            latent = (g.add("EmptyLatentImage", width=16, height=16, batch_size=1), 0)
            out = g.add("KSampler", model=(z, 0), seed=1, steps=2, cfg=5.0, sampler_name="euler", scheduler="simple",
                        positive=base["positive"], negative=base["negative"], latent_image=latent, denoise=1.0)
            g.preview((g.add("VAEDecode", samples=(out, 0), vae=base["vae"]), 0))
        return build

    add(Case("MDIM_ZeroSNRModel", "v-prediction, cfg_rescale 1", zsnr(cfg_rescale=1.0), "runs", check=same_size(16, 16)))
    add(Case("MDIM_ZeroSNRModel", "epsilon without allow_epsilon_zero_snr", zsnr(prediction="epsilon"), "error",
             ("prediction", "allow_epsilon_zero_snr")))
    add(Case("MDIM_ZeroSNRModel", "a CLIP into model (through a switch)", zsnr(
        model_fn=lambda g, ctx, b: switched(g, (g.find("CheckpointLoaderSimple"), 1))), "error", "model"))
    add(Case("MDIM_ZeroSNRModel", "a VAE into model", zsnr(model_fn=lambda g, ctx, b: b["vae"]), "refused", "model"))
    return c


CASES = _cases()


# --------------------------------------------------------------------------- fixtures


def _page(h: int, w: int, seed: int) -> np.ndarray:
    """A small manga-like RGB page: white paper, a black frame, strokes, a dotted tone."""
    rng = np.random.default_rng(seed)
    page = np.full((h, w), 255, np.uint8)
    if min(h, w) > 6:
        page[:2], page[-2:], page[:, :2], page[:, -2:] = 0, 0, 0, 0
    strokes = rng.random((h, w)) < 0.08
    page[strokes] = 0
    tone = (np.add.outer(np.arange(h), np.arange(w)) % 4 == 0) & (rng.random((h, w)) < 0.5)
    page[tone] = 96
    return np.repeat(page[..., None], 3, axis=2)


def _mask(h: int, w: int) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[h // 3 : max(h // 3 + 1, 2 * h // 3), w // 3 : max(w // 3 + 1, 2 * w // 3)] = 255
    return np.repeat(m[..., None], 3, axis=2)  # RGB: every host's Load Image reads it exactly


@pytest.fixture(scope="module")
def ctx(comfy_server, test_images):
    """The input files (written into the server's input folder) and the model names the server offers."""
    import torch
    from PIL import Image
    from safetensors.torch import save_file

    input_dir = Path(comfy_server.base_dir) / "input"
    files = {
        "fz_page.png": _page(*PAGE, seed=1),
        "fz_mask.png": _mask(*PAGE),
        "fz_tiny.png": _page(8, 8, seed=2),
        "fz_tiny_mask.png": _mask(8, 8),
        "fz_strip_1x97.png": _page(1, 97, seed=3),
        "fz_strip_1x97_mask.png": _mask(1, 97),
        "fz_strip_97x1.png": _page(97, 1, seed=4),
        "fz_strip_97x1_mask.png": _mask(97, 1),
        "fz_big.png": _page(*BIG, seed=5),
        "fz_sfx.png": test_images["mdim_example_sfx_translated.png"][:20, :20],
    }
    big_mask = np.zeros((*BIG, 3), np.uint8)
    big_mask[300:340, 200:420] = 255
    big_mask[900:960, 600:640] = 255
    files["fz_big_mask.png"] = big_mask
    for name, array in files.items():
        Image.fromarray(array).save(input_dir / name)
    nan = torch.zeros(1, 4, 1, 1)
    nan[0, :, 0, 0] = float("nan")
    save_file({"latent_tensor": nan, "latent_format_version_0": torch.tensor([])}, str(input_dir / "fz_nan.latent"))
    info = comfy_server.object_info()
    lama_names = combo_values(info["MDIM_LamaLoader"]["input"]["required"]["model_name"])
    detectors = combo_values(info.get("MDIM_TextDetectorLoader", {}).get("input", {}).get("required", {})
                             .get("detector_name", []))
    controlnets = combo_values(info["ControlNetLoader"]["input"]["required"]["control_net_name"])
    return type("Ctx", (), {
        "files": files, "lama_name": lama_names[0] if lama_names else None,
        "detector_name": detectors[0] if detectors else None,
        "controlnet": comfy_server.checkpoints.get("controlnet", controlnets[0] if controlnets else None),
        "version": comfy_server.version(), "good_runs": itertools.count(1),
    })  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def tally(comfy_server):
    yield RESULTS
    folder = os.environ.get("MDIM_FUZZ_REPORT_DIR")
    if folder and RESULTS:
        version = ".".join(map(str, comfy_server.version()))
        path = Path(folder) / f"fuzz_{version}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"version": version, "cases": RESULTS}, indent=1), encoding="utf-8")


# --------------------------------------------------------------------------- running


def _good_prompt(ctx, seed: int) -> dict:
    g = Graph()
    sgim(g, seed=seed)
    return g.nodes


def _outcome(comfy_run, prompt: dict, timeout: float):
    try:
        return "runs", comfy_run(prompt, timeout=timeout)
    except PromptError as err:
        if err.node_errors is not None or err.answer is not None:
            return "refused", err.node_errors or err.answer
        if err.error is not None:
            return "error", err.error
        return "other", str(err)


def _names(node_errors: dict, node_id: str) -> str:
    """The validation errors of ``node_id`` as text (type, message, details, input name)."""
    entry = node_errors.get(node_id) or {}
    return json.dumps(entry.get("errors", []))


@pytest.mark.parametrize("case", CASES, ids=[f"{c.node}-{c.name}" for c in CASES])
def test_fuzz_case(case, ctx, comfy_server, comfy_run, comfy_images):
    g = Graph()
    case.build(g, ctx)
    target = [k for k, v in g.nodes.items() if v["class_type"] == case.node]
    assert target, f"the graph of {case.name} has no {case.node}"
    record = {"node": case.node, "case": case.name, "expected": case.expect}
    RESULTS.append(record)
    kind, detail = _outcome(comfy_run, g.nodes, case.timeout)
    record["outcome"] = kind
    assert comfy_server.process.poll() is None, "the server died"
    record["server_alive"] = True
    names = (case.names,) if isinstance(case.names, str) else tuple(case.names)
    if kind == "error":
        record["message"] = f"{detail.get('exception_type')}: {detail.get('exception_message', '')}".strip()[:300]
        record["failing_node"] = detail.get("node_type")
    elif kind == "refused":
        record["message"] = json.dumps(detail)[:300]
    assert kind == case.expect, f"{case.node} / {case.name}: expected {case.expect}, got {kind}: {detail}"
    if kind == "runs" and case.check is not None:
        case.check(comfy_images(detail), ctx)
    if kind == "refused":
        text = " ".join(_names(detail, node) for node in detail) if isinstance(detail, dict) else str(detail)
        assert any(n in text for n in names), f"the refusal names none of {names}: {text}"
    if kind == "error":
        assert detail["node_type"] == case.node or detail["node_type"].startswith("MDIM_"), detail
        assert detail["exception_type"].split(".")[-1] in ("ValueError", "TypeError", "MemoryError"), detail
        assert any(n in detail["exception_message"] for n in names), (names, detail["exception_message"])
        assert "Traceback" not in detail["exception_message"]
    if kind != "runs":  # the next prompt works
        seed = 1000 + next(ctx.good_runs)
        images = comfy_images(comfy_run(_good_prompt(ctx, seed)))
        exact_outside()(images, ctx)
        record["next_prompt_ok"] = True
