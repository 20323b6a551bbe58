"""An optional learned text/bubble detector: a user-supplied ONNX model run with onnxruntime.

The signature is the one of the RT-DETR-v2 comic text-and-bubble detectors (e.g. the Apache-2.0
``comic-text-and-bubble-detector``):

- inputs ``images`` float32 ``[N, 3, 640, 640]``, RGB / 255 (the page stretched to 640 x 640),
  and ``orig_target_sizes`` int64 ``[N, 2]`` = (width, height) of the page;
- outputs ``labels`` int ``[N, K]``, ``boxes`` float ``[N, K, 4]`` (x0, y0, x1, y1 in page pixels)
  and ``scores`` float ``[N, K]``; classes 0 bubble, 1 text_bubble, 2 text_free.

Its text boxes feed :func:`.refine.refine_mask`, which turns them into exact text pixels. Only
the ONNX file is read (no pickled code). onnxruntime is imported when a detector is loaded: without
it everything else in this package works.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .common import Box, check_page

log = logging.getLogger("MDIM")

INPUT_SIDE = 640
CLASSES = ("bubble", "text_bubble", "text_free")
#: Which detector classes each kind of text uses.
KIND_CLASSES = {"bubble": ("text_bubble",), "free": ("text_free",)}


@dataclass(frozen=True)
class Detection:
    label: str
    box: Box  # (y0, x0, y1, x1) page px, end-exclusive
    score: float


def preprocess(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(images [1, 3, 640, 640] float32 RGB/255, orig_target_sizes [1, 2] int64 (w, h))`` of a page."""
    page = check_page(image)
    h, w = page.shape[:2]
    rgb = page[..., :3] if page.shape[2] >= 3 else np.repeat(page[..., :1], 3, axis=2)
    if rgb.dtype != np.uint8:
        rgb = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
    small = np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).resize((INPUT_SIDE, INPUT_SIDE), Image.Resampling.BILINEAR))
    images = (small.astype(np.float32) / np.float32(255.0)).transpose(2, 0, 1)[None]
    return np.ascontiguousarray(images), np.array([[w, h]], np.int64)


def postprocess(labels, boxes, scores, size: tuple[int, int], threshold: float = 0.3) -> list[Detection]:
    """Detections of one page from the raw outputs (batch of 1 or none), clipped to the page ``(H, W)``,
    best first; boxes under ``threshold`` or of unknown classes are dropped."""
    labels = np.asarray(labels).reshape(-1)
    scores = np.asarray(scores, np.float64).reshape(-1)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if not (len(labels) == len(scores) == len(boxes)):
        raise ValueError(f"detector outputs disagree: {len(labels)} labels, {len(boxes)} boxes, {len(scores)} scores")
    h, w = size
    out = []
    for lab, (x0, y0, x1, y1), sc in zip(labels.tolist(), boxes.tolist(), scores.tolist()):
        if not np.isfinite(sc) or sc < threshold or not 0 <= int(lab) < len(CLASSES):
            continue
        bx0, bx1 = sorted((min(max(x0, 0.0), w), min(max(x1, 0.0), w)))
        by0, by1 = sorted((min(max(y0, 0.0), h), min(max(y1, 0.0), h)))
        box = (int(np.floor(by0)), int(np.floor(bx0)), int(np.ceil(by1)), int(np.ceil(bx1)))
        if box[2] > box[0] and box[3] > box[1]:
            out.append(Detection(CLASSES[int(lab)], box, float(sc)))
    return sorted(out, key=lambda d: -d.score)


def boxes_mask(detections: list[Detection], size: tuple[int, int], classes=("text_bubble", "text_free"),
               margin: int = 2) -> np.ndarray:
    """A rough bool mask ``[H, W]``: the boxes of the chosen classes, grown by ``margin`` px."""
    h, w = size
    m = np.zeros((h, w), bool)
    for d in detections:
        if d.label in classes:
            y0, x0, y1, x1 = d.box
            m[max(0, y0 - margin) : min(h, y1 + margin), max(0, x0 - margin) : min(w, x1 + margin)] = True
    return m


class TextDetector:
    """A loaded ONNX detector. ``detect(page) -> [Detection]``; ``threshold`` is the least score kept."""

    def __init__(self, path: str | Path, *, threshold: float = 0.3, providers: list[str] | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ImportError("the learned text detector needs onnxruntime: pip install onnxruntime") from None
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"detector: {str(path)!r} does not exist (expected an .onnx file)")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold: expected a score in 0..1, got {threshold!r}")
        try:
            self.session = ort.InferenceSession(str(path), providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own error types for bad files
            raise ValueError(f"detector: {path.name} is not a readable ONNX model: {exc}") from None
        inputs = {i.name for i in self.session.get_inputs()}
        if not {"images", "orig_target_sizes"} <= inputs:
            raise ValueError(f"detector: {path.name} has inputs {sorted(inputs)}; expected 'images' [N,3,640,640] "
                             "and 'orig_target_sizes' [N,2] (an RT-DETR comic text/bubble detector)")
        names = [o.name for o in self.session.get_outputs()]
        if len(names) < 3:
            raise ValueError(f"detector: {path.name} has outputs {names}; expected labels, boxes, scores")
        self.outputs = [n for n in ("labels", "boxes", "scores") if n in names]
        if len(self.outputs) != 3:  # unnamed: the RT-DETR order
            self.outputs = names[:3]
        self.path, self.threshold = path, float(threshold)

    def detect(self, image: np.ndarray) -> list[Detection]:
        images, sizes = preprocess(image)
        labels, boxes, scores = self.session.run(self.outputs, {"images": images, "orig_target_sizes": sizes})
        h, w = int(sizes[0, 1]), int(sizes[0, 0])
        return postprocess(labels, boxes, scores, (h, w), self.threshold)

    def __repr__(self) -> str:
        return f"TextDetector({self.path.name!r}, threshold={self.threshold})"


def load_detector(path: str | Path, threshold: float = 0.3) -> TextDetector:
    """Load an ONNX text/bubble detector (needs onnxruntime)."""
    return TextDetector(path, threshold=threshold)
