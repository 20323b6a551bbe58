"""A tiny ONNX model with the signature of the RT-DETR comic text-and-bubble detector, built in code.

MDIM Text Detector Loader expects that signature (input ``images`` [N, 3, 640, 640] and
``orig_target_sizes`` [N, 2]; outputs ``labels``, ``boxes``, ``scores``). The unit tests and the
real-host tests use this stand-in (no weights to download). Needs the ``onnx`` package.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def tiny_detector(path: Path, boxes_norm: np.ndarray, labels: np.ndarray) -> Path:
    """An ONNX graph with the RT-DETR comic detector's signature: scores = mean of the input image,
    boxes = normalised xyxy constants x (w, h, w, h) of orig_target_sizes, labels constant."""
    import onnx
    from onnx import TensorProto, helper

    k = len(labels)
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Unsqueeze", ["mean", "ax1"], ["mean2"]),
        helper.make_node("Mul", ["mean2", "ones"], ["scores"]),
        helper.make_node("Cast", ["orig_target_sizes"], ["sizes_f"], to=TensorProto.FLOAT),
        helper.make_node("Concat", ["sizes_f", "sizes_f"], ["whwh"], axis=1),
        helper.make_node("Unsqueeze", ["whwh", "ax1"], ["whwh3"]),
        helper.make_node("Mul", ["whwh3", "nboxes"], ["boxes"]),
        helper.make_node("Mul", ["scores", "zero"], ["zeros"]),
        helper.make_node("Add", ["zeros", "flabels"], ["labels_f"]),
        helper.make_node("Cast", ["labels_f"], ["labels"], to=TensorProto.INT64),
    ]
    inits = [
        helper.make_tensor("ax1", TensorProto.INT64, [1], [1]),
        helper.make_tensor("ones", TensorProto.FLOAT, [1, k], [1.0] * k),
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor("nboxes", TensorProto.FLOAT, [1, k, 4], boxes_norm.astype(np.float32).ravel().tolist()),
        helper.make_tensor("flabels", TensorProto.FLOAT, [1, k], labels.astype(np.float32).tolist()),
    ]
    graph = helper.make_graph(
        nodes, "tiny_comic_detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 640, 640]),
         helper.make_tensor_value_info("orig_target_sizes", TensorProto.INT64, ["N", 2])],
        [helper.make_tensor_value_info("labels", TensorProto.INT64, ["N", k]),
         helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["N", k, 4]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", k])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


