"""config.pbtxt parsing, validation, writing and tuning edits (Triton's own protobuf schema)."""

from __future__ import annotations

import pytest

from harness.errors import HarnessError
from harness.paths import ROOT
from harness.serving.repository import (
    apply_tuning,
    check_config,
    config_from_json,
    config_to_json,
    instance_count,
    leading_comments,
    parse_config,
    read_config,
    validate_config,
    write_config,
)

CANONICAL = ROOT / "model_repository" / "mnist-onnx"


def test_canonical_config_is_valid_and_container_ready():
    cfg = read_config(CANONICAL)
    assert validate_config(cfg, CANONICAL) == []
    assert cfg.platform == "onnxruntime_onnx"
    assert cfg.max_batch_size > 0 and cfg.HasField("dynamic_batching")
    assert [(i.name, list(i.dims)) for i in cfg.input] == [("images", [1, 28, 28])]
    assert [(o.name, list(o.dims)) for o in cfg.output] == [("logits", [10])]
    assert cfg.instance_group[0].kind == cfg.instance_group[0].KIND_CPU


def test_parse_error_is_one_line():
    with pytest.raises(HarnessError, match="invalid config.pbtxt") as info:
        parse_config('name: "x"\nmax_batch_sise: 4\n', "bad/config.pbtxt")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "text, problem",
    [
        (
            'name: "m" platform: "onnxruntime_onnx" max_batch_size: 0 dynamic_batching {} '
            'input [{name: "a" data_type: TYPE_FP32 dims: [1]}] '
            'output [{name: "b" data_type: TYPE_FP32 dims: [1]}]',
            "silently off",
        ),
        (
            'name: "m" max_batch_size: 1 input [{name: "a" data_type: TYPE_FP32 dims: [1]}] '
            'output [{name: "b" data_type: TYPE_FP32 dims: [1]}]',
            "neither platform nor backend",
        ),
        (
            'name: "m" platform: "onnxruntime_onnx" '
            'input [{name: "a" dims: [1]}] output [{name: "b" data_type: TYPE_FP32 dims: [1]}]',
            "no data_type",
        ),
        (
            'name: "m" platform: "onnxruntime_onnx" '
            'input [{name: "a" data_type: TYPE_FP32 dims: [0]}] '
            'output [{name: "b" data_type: TYPE_FP32 dims: [1]}]',
            "invalid dims",
        ),
        (
            'name: "m" platform: "onnxruntime_onnx" '
            'output [{name: "b" data_type: TYPE_FP32 dims: [1]}]',
            "no inputs",
        ),
    ],
)
def test_validation_names_the_problem(text, problem):
    problems = validate_config(parse_config(text))
    assert any(problem in p for p in problems), problems
    with pytest.raises(HarnessError, match=problem):
        check_config(parse_config(text))


def test_name_must_match_directory(tmp_path):
    cfg = read_config(CANONICAL)
    assert any("differs from its directory" in p for p in validate_config(cfg, tmp_path / "x"))


def test_write_read_roundtrip_keeps_header(tmp_path):
    cfg = read_config(CANONICAL)
    (tmp_path / "mnist-onnx").mkdir()
    header = leading_comments(CANONICAL)
    assert header.startswith("#")
    path = write_config(cfg, tmp_path / "mnist-onnx", header=header)
    assert path.read_text().startswith(header)
    assert read_config(path) == cfg


def test_write_refuses_invalid_config(tmp_path):
    cfg = read_config(CANONICAL)
    cfg.max_batch_size = 0
    with pytest.raises(HarnessError, match="refusing to write"):
        write_config(cfg, tmp_path)
    assert not (tmp_path / "config.pbtxt").exists()


def test_json_roundtrip_for_load_overrides():
    cfg = read_config(CANONICAL)
    assert config_from_json(config_to_json(cfg)) == cfg


def test_apply_tuning():
    cfg = read_config(CANONICAL)
    off = apply_tuning(cfg, batching=False, instances=2, intra_op_threads=2)
    assert not off.HasField("dynamic_batching")
    assert instance_count(off) == 2
    assert off.parameters["intra_op_thread_count"].string_value == "2"
    on = apply_tuning(off, batching=True, max_queue_delay_us=500, preferred_batch_size=[4, 8, 999])
    assert on.dynamic_batching.max_queue_delay_microseconds == 500
    assert list(on.dynamic_batching.preferred_batch_size) == [4, 8]  # <= max_batch_size only
    assert cfg.HasField("dynamic_batching")  # the input is not modified
