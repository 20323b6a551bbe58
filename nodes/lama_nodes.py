"""LaMa nodes: MDIM LaMa Loader and MDIM LaMa Fill.

The network and the crop strategy live in ``mdim_core.inpaint.lama``; this module finds the files
through ``folder_paths`` (``models/inpaint`` and ``models/mdim``), hands the loaded network to the
host's model management (a ``ModelPatcher``: loaded on the host's device when a fill runs,
offloaded when other models need the memory) and shows progress per crop with Cancel.

The MDIM_LAMA value is a :class:`LamaHandle`. Needs spandrel (in ComfyUI's own requirements);
without it this module raises ImportError and the pack skips it with one log line.
"""

from __future__ import annotations

import logging

import comfy.model_management
import comfy.model_patcher
import comfy.utils
import spandrel  # noqa: F401 - the LaMa network comes from spandrel: no spandrel, no LaMa nodes
from comfy_api.latest import io

from ..mdim_core.inpaint import lama as lama_core
from ..mdim_core.weight_files import WEIGHT_EXTENSIONS
from .model_folders import full_path, model_files, register_model_folder

log = logging.getLogger("MDIM")

FOLDERS = ("inpaint", "mdim")
LamaType = io.Custom("MDIM_LAMA")

register_model_folder("inpaint", WEIGHT_EXTENSIONS)
register_model_folder("mdim", WEIGHT_EXTENSIONS)  # shared with other families: lists are filtered


def _files() -> list[str]:
    """LaMa-format files of models/inpaint and models/mdim (the latter also holds other families' files)."""
    return [f for f in model_files(*FOLDERS) if f.lower().endswith(WEIGHT_EXTENSIONS)]


class LamaHandle:
    """A loaded LaMa (the MDIM_LAMA value): ``model`` (``mdim_core.inpaint.lama_core.LamaModel``) and the
    ``patcher`` that puts it on the host's device. Other nodes call ``handle.fill(image, mask, config,
    progress)`` (the arguments of ``lama_core.fill``)."""

    def __init__(self, model: lama_core.LamaModel):
        self.model = model
        self.patcher = comfy.model_patcher.ModelPatcher(
            model.module,
            load_device=comfy.model_management.get_torch_device(),
            offload_device=comfy.model_management.unet_offload_device(),
        )

    @property
    def name(self) -> str:
        return self.model.name

    def load(self, side: int) -> None:
        """Put the network on the host's device, freeing room for the activations of a ``side``-px crop."""
        # ~ what ComfyUI's upscale node reserves per 512x512 tile of a spandrel model, scaled to the crop
        activations = 3 * 4 * 384 * max(side, 64) ** 2
        comfy.model_management.load_models_gpu([self.patcher], memory_required=activations)

    def fill(self, image, mask, config: lama_core.LamaConfig, progress=None) -> lama_core.LamaResult:
        self.load(config.max_side or max(image.shape[1:3]))
        return lama_core.fill(self.model, image, mask, config, progress=progress)


def _check_handle(value) -> LamaHandle:
    if not isinstance(value, LamaHandle):
        raise ValueError(f"lama: expected the output of MDIM LaMa Loader, got {type(value).__name__}")
    return value


class MDIMLamaLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MDIM_LamaLoader",
            display_name="MDIM LaMa Loader",
            category="MDIM/inpaint",
            description=(
                "Loads LaMa inpainting weights (big-lama, or an anime/manga fine-tune of it) from models/inpaint "
                "or models/mdim, for MDIM LaMa Fill. Reads .safetensors, PyTorch state dicts (.pth/.ckpt/.pt) "
                "and TorchScript files such as big-lama.pt without running any code from the file."
            ),
            inputs=[
                io.Combo.Input(
                    "model_name",
                    options=_files(),
                    tooltip=(
                        "LaMa weight file (.safetensors, .pt, .pth or .ckpt) in models/inpaint or models/mdim: big-lama "
                        "or a fine-tune with its architecture."
                    ),
                ),
            ],
            outputs=[LamaType.Output(tooltip="The LaMa network, for MDIM LaMa Fill.")],
        )

    @classmethod
    def execute(cls, model_name) -> io.NodeOutput:
        known = isinstance(model_name, str) and model_name.lower().endswith(WEIGHT_EXTENSIONS)
        path = full_path(model_name, *FOLDERS) if known else None
        if path is None:
            raise ValueError(f"model_name: {model_name!r} is not in models/inpaint or models/mdim")
        return io.NodeOutput(LamaHandle(lama_core.load_lama(path, name=model_name)))


class MDIMLamaFill(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        d = lama_core.LamaConfig()
        return io.Schema(
            node_id="MDIM_LamaFill",
            display_name="MDIM LaMa Fill",
            category="MDIM/inpaint",
            description=(
                "Fills the masked areas of a page with LaMa, fast and without a prompt. Each mask region is filled "
                "on a crop around it with some context, shrunk only when the crop is larger than LaMa's working "
                "size (the page is never squashed to 512 px), and pasted back inside the mask: every pixel outside "
                "it is returned unchanged. Good alone for clean backgrounds, or as the pre-fill of MDIM SGIM Inpaint."
            ),
            inputs=[
                LamaType.Input("lama", tooltip="From MDIM LaMa Loader."),
                io.Image.Input("image", tooltip="The page(s) to fill, any size; grayscale, RGB or RGBA (alpha is dropped)."),
                io.Mask.Input(
                    "mask",
                    tooltip=(
                        "What to remove and fill (white/1 = fill). A different size is resized, one mask serves a whole "
                        "batch; values >= 0.5 count."
                    ),
                ),
                io.Int.Input(
                    "max_side", default=d.max_side, min=0, max=8192, step=8,
                    tooltip=(
                        "A crop whose long side exceeds this is shrunk to it for LaMa and the fill enlarged back. 512 "
                        "suits big-lama and the 512-px manga fine-tunes; larger keeps more detail in big regions (LaMa "
                        "paper reports good fills up to ~2k px); 0 never shrinks."
                    ),
                ),
                io.Int.Input(
                    "context_margin", default=d.context_margin, min=0, max=4096,
                    tooltip="Pixels of the page around each mask region that LaMa sees as context.",
                ),
                io.Int.Input(
                    "grow_mask", default=d.grow_mask, min=0, max=256,
                    tooltip="Grow the mask by this many pixels first (opt-in: pixels that close may change too). 0 keeps your mask exactly.",
                ),
                io.Combo.Input(
                    "precision", options=list(lama_core.PRECISIONS), default=d.precision,
                    tooltip=(
                        "fp32 (safe everywhere) or bf16 (faster on GPUs that support it; the Fourier transforms stay "
                        "fp32). fp16 is not offered: it gives black fills on large crops."
                    ),
                ),
            ],
            outputs=[
                io.Image.Output(tooltip="The page with the masked areas filled; every pixel outside the mask equals the input."),
            ],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, lama, image, mask, max_side, context_margin, grow_mask, precision) -> io.NodeOutput:
        handle = _check_handle(lama)
        config = lama_core.LamaConfig(max_side=max_side, context_margin=context_margin, grow_mask=grow_mask, precision=precision)
        hidden = getattr(cls, "hidden", None)
        progress = _progress(getattr(hidden, "unique_id", None) if hidden is not None else None)
        result = handle.fill(image, mask, config, progress)
        log.info("[MDIM] LaMa Fill: %d crop(s) with %s", result.model_calls, handle.name)
        return io.NodeOutput(result.image)


def _progress(node_id):
    """``progress(done, total)`` for ``lama_core.fill``: the node's progress bar, and Cancel between crops."""
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        comfy.model_management.throw_exception_if_processing_interrupted()
        if bar is None:
            bar = comfy.utils.ProgressBar(total, node_id=node_id)
        bar.update_absolute(done, total)

    return progress


NODES = [MDIMLamaLoader, MDIMLamaFill]
