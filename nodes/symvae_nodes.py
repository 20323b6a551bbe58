"""Symmetric VAE nodes: Loader, Encode, Decode, Restore.

The model lives in ``mdim_core.symvae``; this module wraps the host's loaded VAE (never copied,
never changed) and moves tensors between ComfyUI's types and the core API.

The MDIM_SYMVAE value is a :class:`SymVAEHandle`. Other nodes (the SGIM node) use it through
``handle.decode(latent, source, mask)`` (see its docstring).

A LATENT made by MDIM Symmetric VAE Encode carries extra keys that survive core KSampler
(it returns ``latent.copy()`` with new samples):

``mdim_source``  IMAGE [B, H8, W8, 3] float32 (CPU): the encoded image, padded (edge replicate)
                 to multiples of 8, exactly 8x the latent size
``mdim_mask``    MASK [B, H8, W8] (only when a mask was given; 1 = repaint)
``mdim_size``    (H, W) of the image before padding; the decoded image is cropped back to it
"""

from __future__ import annotations

import logging

import comfy.model_management
import comfy.utils
import folder_paths
import torch
from comfy_api.latest import io

from ..mdim_core.imaging import checks, geometry
from ..mdim_core.imaging import masks as mdim_masks
from ..mdim_core.symvae import SymmetricVAE, load_adapters
from . import model_folders
from .sgim_host import expect_vae

log = logging.getLogger("MDIM")

FOLDER = "mdim"
NO_ADAPTERS = "(none: untrained, decodes like the VAE)"
SymVAEType = io.Custom("MDIM_SYMVAE")


def register_model_folder(*extensions: str) -> None:
    """``models/mdim`` (and any ``mdim:`` entry of extra_model_paths.yaml): ``.safetensors`` files, and
    the other ``extensions`` a node family needs there (each family filters the list by its own)."""
    model_folders.register_model_folder(FOLDER, (".safetensors", *extensions))


register_model_folder()


class SymVAEHandle:
    """A loaded Symmetric VAE: the host's VAE plus adapters (the MDIM_SYMVAE value).

    Python API for other nodes (IMAGE/MASK/LATENT tensors as ComfyUI passes them)::

        handle.decode(latent, source=None, mask=None, fill="base", tile=1024, progress=None) -> IMAGE
            latent: raw latent [B,4,h,w] (a LATENT's "samples"); source: IMAGE exactly 8x the
            latent's size (the original page or crop) or None (= plain VAE decode); mask:
            MASK of the source's size, 1 = repaint (the hole is filled and its skips gated,
            so removed text never comes back). Returns IMAGE [B,8h,8w,3] on the CPU.
            progress: optional ``progress(done, total)`` called after every tile (may raise).
        handle.encode(image) -> raw latent (the host VAE's encode)
        handle.restore(image, tile=1024, progress=None) -> IMAGE, old scan -> clean page
        handle.vae  the host VAE;  handle.sym  the mdim_core SymmetricVAE
    """

    def __init__(self, vae, sym: SymmetricVAE, name: str):
        self.vae = vae
        self.sym = sym
        self.name = name

    def _load(self) -> None:
        comfy.model_management.load_models_gpu([self.vae.patcher])

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(image[..., :3])

    def decode(self, latent, source=None, mask=None, fill: str = "base", tile: int | None = 1024, progress=None) -> torch.Tensor:
        if source is None:
            return self.vae.decode(latent)[..., :3].float()
        self._load()
        device = self.vae.device
        out = self.sym.decode(
            latent.to(device),
            source=source[..., :3].to(device),
            mask=None if mask is None else mask.to(device),
            fill=fill,
            tile=tile,
            progress=progress,
        )
        return out.to(comfy.model_management.intermediate_device())

    def restore(self, image: torch.Tensor, tile: int | None = 1024, progress=None) -> torch.Tensor:
        self._load()
        out = self.sym.restore(image.to(self.vae.device), tile=tile, progress=progress)
        return out.to(comfy.model_management.intermediate_device())


def _check_vae(vae, name: str = "vae"):
    expect_vae(vae, name)
    vae.throw_exception_if_invalid()
    model = getattr(vae, "first_stage_model", None)
    try:
        return SymmetricVAE(model)
    except TypeError as exc:
        raise ValueError(
            f"{name}: this VAE cannot carry a Symmetric VAE ({exc}); use an SD1.x/SD2.x/SDXL-style KL VAE"
        ) from exc


def _check_handle(symvae) -> SymVAEHandle:
    if not isinstance(symvae, SymVAEHandle):
        raise ValueError(f"symvae: expected the output of MDIM Symmetric VAE Loader, got {type(symvae).__name__}")
    return symvae


def _progress():
    """A ``progress(done, total)`` for mdim_core's tiled runs: ComfyUI's progress bar and Cancel."""
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = comfy.utils.ProgressBar(total)
        bar.update_absolute(done, total)
        comfy.model_management.throw_exception_if_processing_interrupted()

    return progress


class MDIMSymVAELoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MDIM_SymVAELoader",
            display_name="MDIM Symmetric VAE Loader",
            category="MDIM/vae",
            description=(
                "Adds Symmetric VAE adapters (from models/mdim) to a loaded VAE: decoding then also uses the "
                "encoder's features of the source page, which keeps screentone dots sharp and, with adapters "
                "trained on aged pages, restores old scans. The VAE itself is shared, not copied or changed."
            ),
            inputs=[
                io.Vae.Input("vae", tooltip="The SD VAE the adapters were trained for (e.g. your checkpoint's VAE)."),
                io.Combo.Input(
                    "adapter_name",
                    options=[NO_ADAPTERS] + [f for f in folder_paths.get_filename_list(FOLDER)
                                             if f.lower().endswith(".safetensors")],
                    default=NO_ADAPTERS,
                    tooltip=(
                        "Adapter file (.safetensors) in models/mdim, made by `python -m mdim_core train-symvae`. "
                        "'none' gives untrained adapters: every decode equals the plain VAE's."
                    ),
                ),
                io.Boolean.Input(
                    "allow_other_vae_weights",
                    default=False,
                    tooltip=(
                        "Expert option: accept a file trained on another VAE of the same shape (e.g. SD1.5 "
                        "adapters on an SDXL VAE). Results are usually worse; off refuses such files."
                    ),
                ),
            ],
            outputs=[SymVAEType.Output(tooltip="The Symmetric VAE, for the MDIM Symmetric VAE and SGIM nodes.")],
        )

    @classmethod
    def execute(cls, vae, adapter_name, allow_other_vae_weights) -> io.NodeOutput:
        sym = _check_vae(vae)
        if adapter_name and adapter_name != NO_ADAPTERS:
            path = folder_paths.get_full_path(FOLDER, adapter_name)
            if path is None:
                raise ValueError(f"adapter_name: {adapter_name!r} is not in models/{FOLDER}")
            load_adapters(sym, path, check_weights=not allow_other_vae_weights)
            log.info("[MDIM] Symmetric VAE adapters loaded from %s", adapter_name)
        sym.eval()
        return io.NodeOutput(SymVAEHandle(vae, sym, adapter_name))


class MDIMSymVAEEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MDIM_SymVAEEncode",
            display_name="MDIM Symmetric VAE Encode",
            category="MDIM/vae",
            description=(
                "Encodes an image like VAE Encode and keeps the image (and mask) in the LATENT, so MDIM "
                "Symmetric VAE Decode can use its fine detail after sampling. Any size: the image is padded "
                "to multiples of 8 and the decoded image is cropped back."
            ),
            inputs=[
                SymVAEType.Input("symvae", tooltip="From MDIM Symmetric VAE Loader."),
                io.Image.Input("image", tooltip="The page to encode (grayscale or RGB; alpha is dropped)."),
                io.Mask.Input(
                    "mask",
                    optional=True,
                    tooltip=(
                        "Optional: what will be repainted (1 = repaint, e.g. text to remove). Cleaned like MDIM "
                        "SGIM Inpaint's mask: values >= 0.5 are the mask (soft or JPEG masks included). Its "
                        "features are switched off at decode time so the removed content never comes back."
                    ),
                ),
                io.Boolean.Input(
                    "set_noise_mask",
                    default=True,
                    tooltip="With a mask: also set it as the LATENT's noise mask so KSampler repaints only there.",
                ),
            ],
            outputs=[io.Latent.Output(tooltip="LATENT for KSampler; it carries the source image for the decode.")],
        )

    @classmethod
    def execute(cls, symvae, image, set_noise_mask, mask=None) -> io.NodeOutput:
        handle = _check_handle(symvae)
        image = checks.image_batch(image, "image", rgb=True)
        b, h, w, _ = image.shape
        f = handle.sym.downscale
        source = geometry.pad_image(image.float(), f).cpu().contiguous()  # edge replicate
        latent = handle.encode(source)
        out = {"samples": latent, "mdim_source": source, "mdim_size": (h, w)}
        if mask is not None:
            # the same cleanup as MDIM SGIM Inpaint: 1 where the mask is >= 0.5 (JPEG masks included)
            m = mdim_masks.clean(mask, batch=b, size=(h, w), name="mask")
            pm = geometry.pad_mask(m, f, mode="replicate").contiguous()
            out["mdim_mask"] = pm
            if set_noise_mask:
                out["noise_mask"] = pm[:, None].clone()
        return io.NodeOutput(out)


def _latent_source(samples: dict, name: str = "samples"):
    """(latent, source, mask, size) of a LATENT; source None when it carries none."""
    if not isinstance(samples, dict) or "samples" not in samples:
        raise ValueError(f"{name}: expected a LATENT")
    latent = samples["samples"]
    if not isinstance(latent, torch.Tensor) or latent.ndim != 4:
        raise ValueError(f"{name}: expected a 2-D image latent [B,C,h,w], got shape "
                         f"{tuple(getattr(latent, 'shape', ())) or type(latent).__name__}")
    if not bool(torch.isfinite(latent).all()):
        bad = int((~torch.isfinite(latent)).sum())
        raise ValueError(f"{name}: the latent contains {bad} NaN or infinite value(s) (a sampler diverged, or a "
                         "broken latent file); nothing to decode")
    source = samples.get("mdim_source")
    if source is None:
        return latent, None, None, None
    b = latent.shape[0]
    if source.shape[0] != b:
        if source.shape[0] and b % source.shape[0] == 0:
            source = source.repeat(b // source.shape[0], 1, 1, 1)
        else:
            raise ValueError(
                f"{name}: the LATENT has {b} latents but carries {source.shape[0]} source images "
                "(from MDIM Symmetric VAE Encode); batch nodes in between must keep them matched"
            )
    mask = samples.get("mdim_mask")
    if mask is not None and mask.shape[0] != b:
        if not (mask.shape[0] and b % mask.shape[0] == 0):
            raise ValueError(
                f"{name}: the LATENT has {b} latents but carries {mask.shape[0]} masks "
                "(from MDIM Symmetric VAE Encode); batch nodes in between must keep them matched"
            )
        mask = mask.repeat(b // mask.shape[0], 1, 1)
    return latent, source, mask, samples.get("mdim_size")


class MDIMSymVAEDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MDIM_SymVAEDecode",
            display_name="MDIM Symmetric VAE Decode",
            category="MDIM/vae",
            description=(
                "Decodes a LATENT made by MDIM Symmetric VAE Encode (also after KSampler) with the source "
                "image's features, keeping screentone and line detail. Inside the mask the result comes from "
                "the latent only. A LATENT without a source decodes like VAE Decode."
            ),
            inputs=[
                SymVAEType.Input("symvae", tooltip="From MDIM Symmetric VAE Loader."),
                io.Latent.Input("samples", tooltip="LATENT from MDIM Symmetric VAE Encode, directly or after KSampler."),
                io.Combo.Input(
                    "fill",
                    options=["base", "white"],
                    default="base",
                    tooltip=(
                        "What replaces the masked area before the source's features are taken: 'base' = the "
                        "plain VAE decode of the latent (best, one extra decode), 'white' = paper white (faster)."
                    ),
                ),
                io.Boolean.Input(
                    "paste_outside_mask",
                    default=True,
                    tooltip="With a mask: pixels outside it are the source's exactly (the decode is used inside only).",
                ),
                io.Int.Input(
                    "tile_size",
                    default=1024,
                    min=0,
                    max=8192,
                    step=64,
                    tooltip="Pages larger than this (px) are decoded in overlapping tiles to save memory; 0 = never tile.",
                ),
            ],
            outputs=[io.Image.Output(tooltip="The decoded image, at the size of the encoded image.")],
        )

    @classmethod
    def execute(cls, symvae, samples, fill, paste_outside_mask, tile_size) -> io.NodeOutput:
        handle = _check_handle(symvae)
        latent, source, mask, size = _latent_source(samples)
        if source is None:
            log.info(
                "[MDIM] MDIM Symmetric VAE Decode: the LATENT carries no source image (not from MDIM Symmetric "
                "VAE Encode, or a node dropped it); decoding like the plain VAE"
            )
            return io.NodeOutput(handle.decode(latent))
        f = handle.sym.downscale
        want = (latent.shape[2] * f, latent.shape[3] * f)
        if tuple(source.shape[1:3]) != want:
            raise ValueError(
                f"samples: the LATENT's source image is {source.shape[2]}x{source.shape[1]} but its latent decodes "
                f"to {want[1]}x{want[0]}; the latent was resized or cropped after MDIM Symmetric VAE Encode. "
                "Encode the resized image again, or use VAE Decode."
            )
        out = handle.decode(latent, source=source, mask=mask, fill=fill, tile=tile_size or 0, progress=_progress())
        if mask is not None and paste_outside_mask:
            src = source.to(out)
            hole = mdim_masks.binarize(mask.to("cpu"), dtype=torch.bool).to(out.device)[..., None]
            out = torch.where(hole, out, src)
        if size is not None:
            out = out[:, : size[0], : size[1]]
        return io.NodeOutput(out.contiguous())


class MDIMSymVAERestore(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MDIM_SymVAERestore",
            display_name="MDIM Symmetric VAE Restore",
            category="MDIM/restore",
            description=(
                "Old scan -> clean page in one pass of the Symmetric VAE (needs adapters trained for "
                "restoration). Any size; large pages run in overlapping tiles."
            ),
            inputs=[
                SymVAEType.Input("symvae", tooltip="From MDIM Symmetric VAE Loader, with restoration adapters."),
                io.Image.Input("image", tooltip="The old scan (colour or grayscale)."),
                io.Int.Input(
                    "tile_size",
                    default=1024,
                    min=0,
                    max=8192,
                    step=64,
                    tooltip="Pages larger than this (px) run in overlapping tiles; 0 = never tile (needs more memory).",
                ),
                io.Boolean.Input(
                    "grayscale",
                    default=True,
                    tooltip="Output a grayscale page (manga); off keeps the decoder's colour channels.",
                ),
            ],
            outputs=[io.Image.Output(tooltip="The restored page, same size as the input.")],
        )

    @classmethod
    def execute(cls, symvae, image, tile_size, grayscale) -> io.NodeOutput:
        handle = _check_handle(symvae)
        image = checks.image_batch(image, "image", rgb=True)
        out = handle.restore(image.float(), tile=tile_size or 0, progress=_progress())
        if grayscale:
            out = out.mean(dim=-1, keepdim=True).expand(-1, -1, -1, 3)
        return io.NodeOutput(out.contiguous())


NODES = [MDIMSymVAELoader, MDIMSymVAEEncode, MDIMSymVAEDecode, MDIMSymVAERestore]
