"""Offline validation of every Triton config.pbtxt in model_repository/ (no server, no GPU).

The real repository's configs must pass; deliberately broken copies must fail, so the checks
are known to bite. ONNX graphs come from model.onnx where it exists, else are built here from
code (the project's exporter, or onnx.helper for the synthetic cases).
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from harness.config import compose
from harness.deploy.model_configs import (
    ModelCheck,
    check_model_config,
    check_repository,
    model_configs,
    parse_model_config,
    unconfigured_models,
)
from harness.paths import resolve

CFG = compose()
REPO = resolve(CFG.paths.model_repository)
CONFIGS = model_configs(REPO)

GOOD = """
name: "toy"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "images" data_type: TYPE_FP32 dims: [ 1, 4, 4 ] } ]
output [ { name: "logits" data_type: TYPE_FP32 dims: [ 3 ] } ]
dynamic_batching { preferred_batch_size: [ 4 ] max_queue_delay_microseconds: 100 }
instance_group [ { count: 1 kind: KIND_CPU } ]
"""


def toy_onnx(path: Path, inp: str = "images", out: str = "logits") -> Path:
    """A real ONNX graph [N,1,4,4] -> [N,3] (Flatten + MatMul) written to `path`."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [16, 3], [0.1] * 48)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", [inp], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "w"], [out]),
        ],
        "toy",
        [helper.make_tensor_value_info(inp, TensorProto.FLOAT, ["N", 1, 4, 4])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", 3])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def toy_repo(tmp_path: Path, config: str = GOOD, with_onnx: bool = True) -> Path:
    """A one-model repository toy/{config.pbtxt,1/model.onnx} under tmp_path."""
    model_dir = tmp_path / "repo" / "toy"
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "config.pbtxt").write_text(config)
    if with_onnx:
        toy_onnx(model_dir / "1" / "model.onnx")
    return model_dir / "config.pbtxt"


# ----------------------------------------------------------------------------- the real repository


@functools.lru_cache(maxsize=1)
def repository_results() -> dict[str, ModelCheck]:
    """The checks of the whole repository, once (each model.onnx is read a single time)."""
    return {c.name: c for c in check_repository(REPO, CFG)}


@pytest.mark.parametrize(
    "config",
    CONFIGS or [pytest.param(None, marks=pytest.mark.skip(reason="no config.pbtxt in repo"))],
    ids=[p.parent.name for p in CONFIGS] or ["none"],
)
def test_repository_config_is_valid(config: Path) -> None:
    """Each canonical config parses with Triton's schema and passes every check."""
    result = repository_results()[config.parent.name]
    assert result.problems == [], "\n".join(result.problems)


def test_repository_configs_parse_with_tritons_own_schema() -> None:
    """Triton's ModelConfig protobuf (unknown fields are errors) reads every config."""
    assert CONFIGS, "no config.pbtxt in model_repository/"
    for p in CONFIGS:
        mc = parse_model_config(p)
        assert mc.name in ("", p.parent.name)
        assert mc.input and mc.output


def test_every_model_folder_has_a_config() -> None:
    """The canonical repository spells every config out (no auto-completed configs)."""
    assert unconfigured_models(REPO) == []


def test_unconfigured_model_folder_is_reported(tmp_path: Path) -> None:
    """A model folder with weights but no config.pbtxt is named."""
    toy_repo(tmp_path)
    (tmp_path / "repo" / "bare" / "1").mkdir(parents=True)
    (tmp_path / "repo" / "notes").mkdir()  # no version folder: not a model
    assert unconfigured_models(tmp_path / "repo") == ["bare"]


def test_classifier_config_matches_an_onnx_export_built_here(tmp_path: Path) -> None:
    """The classifier's config against a graph exported now by the project's own exporter."""
    # The classifier's config and the exporter are committed: their absence is breakage.
    config = REPO / CFG.model.name / "config.pbtxt"
    assert config.is_file(), f"{config} is missing"
    from harness.export.onnx import export_onnx
    from harness.models.cnn import build_model

    model_dir = tmp_path / "repo" / CFG.model.name
    shutil.copytree(config.parent, model_dir, ignore=shutil.ignore_patterns("*.onnx"))
    onnx_path = export_onnx(CFG, build_model(CFG.model).eval(), model_dir / "1" / "model.onnx")
    assert Path(onnx_path).is_file()
    result = check_model_config(model_dir / "config.pbtxt", CFG)
    assert result.problems == [], "\n".join(result.problems)
    assert not result.notes  # the graph itself was compared, not just the config names


# ----------------------------------------------------------------------------- the checks bite


def test_good_toy_config_passes(tmp_path: Path) -> None:
    """A correct config next to a matching ONNX graph has no problem."""
    result = check_model_config(toy_repo(tmp_path))
    assert result.problems == [] and result.notes == []


@pytest.mark.parametrize(
    "old,new,expected",
    [
        ('name: "images"', 'name: "pixels"', "input names"),
        ('name: "logits"', 'name: "scores"', "output names"),
        ("max_batch_size: 8", "max_batch_size: 0", "max_batch_size <= 0"),
        ("instance_group [ { count: 1 kind: KIND_CPU } ]", "", "no instance_group"),
        ("dims: [ 3 ]", "dims: [ 4 ]", "dims"),
        ("dims: [ 1, 4, 4 ]", "dims: [ 4, 4 ]", "rank differs"),
        ("TYPE_FP32 dims: [ 3 ]", "TYPE_FP16 dims: [ 3 ]", "ONNX graph has type"),
        ('name: "toy"', 'name: "other"', "differs from its directory"),
        ("preferred_batch_size: [ 4 ]", "preferred_batch_size: [ 16 ]", "> max_batch_size"),
        ("count: 1", "count: 0", "count 0 < 1"),
    ],
)
def test_broken_config_is_reported(tmp_path: Path, old: str, new: str, expected: str) -> None:
    """Each kind of breakage produces a problem naming it."""
    assert old in GOOD
    result = check_model_config(toy_repo(tmp_path, GOOD.replace(old, new)))
    assert any(expected in p for p in result.problems), result.problems


def test_unknown_field_does_not_parse(tmp_path: Path) -> None:
    """A misspelled field is an error of Triton's schema, not silently ignored."""
    bad = GOOD.replace("max_batch_size", "max_batchsize")
    result = check_model_config(toy_repo(tmp_path, bad))
    assert any("does not parse" in p for p in result.problems)


def test_missing_version_directory(tmp_path: Path) -> None:
    """A model without a numeric version directory cannot be loaded."""
    config = toy_repo(tmp_path, with_onnx=False)
    shutil.rmtree(config.parent / "1")
    assert any("version directory" in p for p in check_model_config(config).problems)


def test_without_onnx_names_come_from_the_export_config(tmp_path: Path) -> None:
    """No model.onnx: the classifier's names are checked against configs/export."""
    name, inp, out = CFG.model.name, CFG.export.input_name, CFG.export.output_name
    text = GOOD.replace('"toy"', f'"{name}"').replace('"images"', f'"{inp}"')
    text = text.replace('"logits"', f'"{out}"')
    model_dir = tmp_path / name
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "config.pbtxt").write_text(text)
    ok = check_model_config(model_dir / "config.pbtxt", CFG)
    assert ok.problems == [] and ok.notes
    (model_dir / "config.pbtxt").write_text(text.replace(f'"{inp}"', '"input__0"'))
    bad = check_model_config(model_dir / "config.pbtxt", CFG)
    assert any("export/convert config" in p for p in bad.problems), bad.problems


ENSEMBLE = """
name: "pipe"
platform: "ensemble"
max_batch_size: 8
input [ { name: "RAW" data_type: TYPE_FP32 dims: [ 1, 4, 4 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 3 ] } ]
ensemble_scheduling {
  step [
    {
      model_name: "toy"
      model_version: -1
      input_map { key: "images" value: "RAW" }
      output_map { key: "logits" value: "OUT" }
    }
  ]
}
"""


def test_ensemble_steps_are_checked_against_their_models(tmp_path: Path) -> None:
    """An ensemble must map existing inputs/outputs of existing models."""
    toy = toy_repo(tmp_path)
    repo = toy.parent.parent
    (repo / "pipe").mkdir()
    (repo / "pipe" / "config.pbtxt").write_text(ENSEMBLE)
    results = {c.name: c for c in check_repository(repo)}
    assert results["pipe"].problems == [] and results["toy"].problems == []

    (repo / "pipe" / "config.pbtxt").write_text(ENSEMBLE.replace('key: "images"', 'key: "img"'))
    results = {c.name: c for c in check_repository(repo)}
    assert any("'img' is not one of its inputs" in p for p in results["pipe"].problems)

    (repo / "pipe" / "config.pbtxt").write_text(ENSEMBLE.replace('"toy"', '"nope"'))
    results = {c.name: c for c in check_repository(repo)}
    assert any("unknown model 'nope'" in p for p in results["pipe"].problems)


def test_tensorrt_on_cpu_instances_is_reported(tmp_path: Path) -> None:
    """A TensorRT plan cannot run on a KIND_CPU instance group."""
    text = GOOD.replace('platform: "onnxruntime_onnx"', 'platform: "tensorrt_plan"')
    config = toy_repo(tmp_path, text, with_onnx=False)
    assert any("KIND_CPU" in p for p in check_model_config(config).problems)


PYTHON_MODEL = """
name: "tok"
backend: "python"
max_batch_size: 8
input [ { name: "text" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "ids" data_type: TYPE_INT64 dims: [ -1 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
"""


def test_python_model_needs_model_py_and_its_imports_are_named(tmp_path: Path) -> None:
    """No model.py is a problem; imports NVIDIA's image lacks are named in a note."""
    model_dir = tmp_path / "tok"
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "config.pbtxt").write_text(PYTHON_MODEL)
    result = check_model_config(model_dir / "config.pbtxt")
    assert any("without model.py" in p for p in result.problems)
    (model_dir / "1" / "model.py").write_text(
        "import json\nimport numpy as np\nimport triton_python_backend_utils as pb\n"
        "def load():\n    from transformers import AutoTokenizer\n    import tokenizers.x\n"
    )
    result = check_model_config(model_dir / "config.pbtxt")
    assert result.problems == []
    assert any("imports tokenizers, transformers:" in n for n in result.notes), result.notes
    env = (
        'parameters { key: "EXECUTION_ENV_PATH"'
        ' value: { string_value: "$$TRITON_MODEL_DIRECTORY/env.tar.gz" } }'
    )
    (model_dir / "config.pbtxt").write_text(PYTHON_MODEL + env)
    assert check_model_config(model_dir / "config.pbtxt").notes == []
