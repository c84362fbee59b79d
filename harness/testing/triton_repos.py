"""Build small canonical model repositories with every kind of model the materializer handles.

Used by the materializer's unit tests and the local server's integration tests: an ONNX model
with INT64/FP16/STRING inputs and outputs, the fixture classifier with the OpenVINO accelerator,
a python-backend model, an ensemble and a TensorRT plan (skipped locally).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from harness.testing.fixtures_triton import GOLDEN_DIR

MULTI_CONFIG = """
name: "multi"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [
  { name: "ids" data_type: TYPE_INT64 dims: [ 3 ] },
  { name: "half" data_type: TYPE_FP16 dims: [ 2 ] },
  { name: "text" data_type: TYPE_STRING dims: [ 1 ] }
]
output [
  { name: "ids_twice" data_type: TYPE_INT64 dims: [ 3 ] },
  { name: "half_squared" data_type: TYPE_FP16 dims: [ 2 ] },
  { name: "text_out" data_type: TYPE_STRING dims: [ 1 ] }
]
dynamic_batching { max_queue_delay_microseconds: 500 }
instance_group [ { count: 1 kind: KIND_CPU } ]
parameters { key: "intra_op_thread_count" value: { string_value: "1" } }
"""

OPENVINO_CONFIG = """
name: "mnist-openvino"
platform: "onnxruntime_onnx"
max_batch_size: 16
input [ { name: "images" data_type: TYPE_FP32 dims: [ 1, 28, 28 ] } ]
output [ { name: "logits" data_type: TYPE_FP32 dims: [ 10 ] } ]
dynamic_batching { }
optimization { execution_accelerators {
  cpu_execution_accelerator : [ { name : "openvino" } ]
} }
"""

ECHO_CONFIG = """
name: "echo"
backend: "python"
max_batch_size: 4
input [ { name: "x" data_type: TYPE_FP32 dims: [ 2 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 2 ] } ]
"""

ECHO_MODEL = """
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "x").as_numpy()
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("y", x * 2)]))
        return out
"""

ENSEMBLE_CONFIG = """
name: "mnist-ensemble"
platform: "ensemble"
max_batch_size: 16
input [ { name: "pixels" data_type: TYPE_FP32 dims: [ 1, 28, 28 ] } ]
output [ { name: "scores" data_type: TYPE_FP32 dims: [ 10 ] } ]
ensemble_scheduling { step [ {
  model_name: "mnist-openvino"
  model_version: -1
  input_map { key: "images" value: "pixels" }
  output_map { key: "logits" value: "scores" }
} ] }
"""

TRT_CONFIG = """
name: "mnist-trt"
platform: "tensorrt_plan"
max_batch_size: 8
input [ { name: "images" data_type: TYPE_FP32 dims: [ 1, 28, 28 ] } ]
output [ { name: "logits" data_type: TYPE_FP32 dims: [ 10 ] } ]
"""


def multi_dtype_onnx(path: Path) -> Path:
    """An ONNX graph: ids*2 (int64), half^2 (fp16), text passthrough (string); dynamic batch."""
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, ["n", 3])
    half = helper.make_tensor_value_info("half", TensorProto.FLOAT16, ["n", 2])
    text = helper.make_tensor_value_info("text", TensorProto.STRING, ["n", 1])
    outs = [
        helper.make_tensor_value_info("ids_twice", TensorProto.INT64, ["n", 3]),
        helper.make_tensor_value_info("half_squared", TensorProto.FLOAT16, ["n", 2]),
        helper.make_tensor_value_info("text_out", TensorProto.STRING, ["n", 1]),
    ]
    nodes = [
        helper.make_node("Add", ["ids", "ids"], ["ids_twice"]),
        helper.make_node("Mul", ["half", "half"], ["half_squared"]),
        helper.make_node("Identity", ["text"], ["text_out"]),
    ]
    graph = helper.make_graph(nodes, "multi", [ids, half, text], outs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _model(repo: Path, name: str, config: str, files: dict[str, Path | str] | None = None) -> None:
    (repo / name / "1").mkdir(parents=True, exist_ok=True)
    (repo / name / "config.pbtxt").write_text(config.strip() + "\n")
    for rel, content in (files or {}).items():
        target = repo / name / rel
        if isinstance(content, Path):
            shutil.copyfile(content, target)
        else:
            target.write_text(content)


def build_variety_repository(repo: Path) -> Path:
    """Write the five kinds of models into `repo` (a canonical, container-style repository)."""
    repo.mkdir(parents=True, exist_ok=True)
    _model(repo, "multi", MULTI_CONFIG)
    multi_dtype_onnx(repo / "multi" / "1" / "model.onnx")
    _model(repo, "mnist-openvino", OPENVINO_CONFIG, {"1/model.onnx": GOLDEN_DIR / "model.onnx"})
    _model(repo, "echo", ECHO_CONFIG, {"1/model.py": ECHO_MODEL})
    _model(repo, "mnist-ensemble", ENSEMBLE_CONFIG)
    _model(repo, "mnist-trt", TRT_CONFIG, {"1/model.plan": "not a real plan"})
    return repo
