"""MDIM Text Detector Loader: a user's ONNX text/bubble detector for MDIM Text Mask (needs onnxruntime).

onnxruntime is imported first: without it this module raises ImportError before touching ComfyUI,
so the pack skips only this node (one log line) and MDIM Text Mask works with its classical detector.
"""

from __future__ import annotations

import onnxruntime  # optional dependency of this node only: imported before anything of ComfyUI

ONNXRUNTIME_VERSION = onnxruntime.__version__  # (a statement: keeps the import above first when imports are sorted)

import logging  # noqa: E402

import folder_paths  # noqa: E402
from comfy_api.latest import io  # noqa: E402

from ..mdim_core.textmask.detector import TextDetector  # noqa: E402
from .symvae_nodes import FOLDER, register_model_folder  # noqa: E402
from .textmask_nodes import DetectorType  # noqa: E402

log = logging.getLogger("MDIM")

register_model_folder(".onnx")


def detector_files() -> list[str]:
    return [f for f in folder_paths.get_filename_list(FOLDER) if f.lower().endswith(".onnx")]


class MDIMTextDetectorLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="MDIM_TextDetectorLoader",
            display_name="MDIM Text Detector Loader",
            category="MDIM/text",
            description=(
                "Loads a learned text/bubble detector (ONNX, run with onnxruntime) from models/mdim, for pages "
                "the classical detector of MDIM Text Mask misses. It expects the RT-DETR comic text-and-bubble "
                "signature (input 'images' [N,3,640,640] RGB/255 and 'orig_target_sizes'; outputs labels, boxes, "
                "scores; classes bubble / text_bubble / text_free). Its text boxes are refined to exact text pixels."
            ),
            inputs=[
                io.Combo.Input("detector_name", options=detector_files(),
                               tooltip="The .onnx detector file in ComfyUI/models/mdim."),
                io.Float.Input("threshold", default=0.3, min=0.0, max=1.0, step=0.01,
                               tooltip="Least detection score kept (0..1); lower finds more, with more false boxes."),
            ],
            outputs=[DetectorType.Output(tooltip="The detector, for the detector input of MDIM Text Mask.")],
        )

    @classmethod
    def execute(cls, detector_name, threshold) -> io.NodeOutput:
        path = folder_paths.get_full_path(FOLDER, detector_name) if detector_name else None
        if path is None:
            raise ValueError(f"detector_name: {detector_name!r} is not an .onnx file in models/{FOLDER}")
        det = TextDetector(path, threshold=float(threshold))
        log.info("[MDIM] text detector loaded: %s", detector_name)
        return io.NodeOutput(det)


NODES = [MDIMTextDetectorLoader]
