"""Embeddings pieces that need no server: cache, canonical configs, fixtures, inputs, CLI errors."""

import json

import numpy as np
import pytest

from harness.cli import main
from harness.config import compose
from harness.embeddings.cache import ConversionCache, file_sha256, install, key_of
from harness.embeddings.convert import Converter, format_cfg
from harness.embeddings.fixtures_gen import calibration_sentences, fixture, read_sentences
from harness.embeddings.model import validate_texts
from harness.embeddings.repository import canonical_configs, served_models
from harness.errors import HarnessError
from harness.paths import resolve
from harness.serving.repository import format_config, read_config


@pytest.fixture(scope="module")
def cfg():
    return compose([])


# ---- cache -----------------------------------------------------------------------------------
def test_cache_key_is_stable_and_sensitive():
    assert key_of({"a": 1, "b": [1, 2]}) == key_of({"b": [1, 2], "a": 1})
    assert key_of({"a": 1}) != key_of({"a": 2})


def test_cache_store_lookup_and_corruption(tmp_path):
    cache = ConversionCache(tmp_path / "c")
    art = tmp_path / "model.onnx"
    art.write_bytes(b"weights")
    stored = cache.store("onnx", "k1", art, "model.onnx", {"checks": {"x": 1.0}})
    hit = cache.lookup("onnx", "k1", "model.onnx")
    assert hit is not None and hit[0] == stored and hit[1]["checks"] == {"x": 1.0}
    assert cache.lookup("onnx", "other", "model.onnx") is None
    stored.write_bytes(b"truncated")  # a damaged entry is not a hit
    assert cache.lookup("onnx", "k1", "model.onnx") is None


def test_install_skips_identical_files(tmp_path):
    src = tmp_path / "a.bin"
    src.write_bytes(b"x" * 100)
    dst = tmp_path / "repo" / "m" / "1" / "model.onnx"
    assert install(src, dst) is True
    assert install(src, dst) is False
    assert file_sha256(dst) == file_sha256(src)


def test_conversion_keys_follow_their_inputs(cfg):
    base = Converter(cfg)
    other = Converter(compose(["embed.convert.int8.per_channel=false"]))
    assert base.key("onnx") == other.key("onnx")  # int8 settings do not touch the fp32 export
    assert base.key("int8") != other.key("int8")
    assert base.key("fp16") == other.key("fp16")


# ---- canonical repository ---------------------------------------------------------------------
def test_committed_configs_match_the_generator(cfg):
    root = resolve(cfg.embed.repository)
    for name, want in canonical_configs(cfg.embed).items():
        assert format_config(read_config(root / name)) == format_config(want), name


def test_canonical_configs_batch_and_wire_correctly(cfg):
    configs = canonical_configs(cfg.embed)
    for name, c in configs.items():
        assert c.max_batch_size > 0, name
    ov = configs["minilm-onnx-openvino"]
    assert ov.platform == "onnxruntime_onnx"
    assert ov.optimization.execution_accelerators.cpu_execution_accelerator[0].name == "openvino"
    trt = configs["minilm-trt-int8"]
    assert trt.platform == "tensorrt_plan"
    assert trt.instance_group[0].kind == trt.instance_group[0].KIND_GPU
    tok = configs["minilm-tokenizer"]
    assert tok.backend == "python" and tok.input[0].data_type == 13  # TYPE_STRING
    for fmt in cfg.embed.formats:
        model = configs[format_cfg(cfg, fmt).model]
        assert model.HasField("dynamic_batching")
        assert [i.name for i in model.input] == list(cfg.embed.model.input_names)
        assert list(model.output[0].dims) == [cfg.embed.model.dim]
        ens = configs[model.name + cfg.embed.ensemble_suffix]
        steps = ens.ensemble_scheduling.step
        assert [s.model_name for s in steps] == ["minilm-tokenizer", model.name]
        assert dict(steps[1].output_map) == {"embeddings": "embeddings"}


def test_tokenizer_model_code_is_committed(cfg):
    path = resolve(cfg.embed.repository) / cfg.embed.tokenizer_model / "1" / "model.py"
    assert "TYPE_STRING" in path.read_text()


def test_served_models_include_tokenizer_and_ensembles(cfg):
    names = served_models(cfg.embed, ["onnx", "int8"])
    assert names == [
        "minilm-tokenizer",
        "minilm-onnx",
        "minilm-onnx-ensemble",
        "minilm-onnx-int8",
        "minilm-onnx-int8-ensemble",
    ]


# ---- fixtures ---------------------------------------------------------------------------------
def test_calibration_set_is_the_generators_output(cfg):
    committed = read_sentences(fixture(cfg, cfg.embed.convert.int8.calibration_file))
    assert committed == calibration_sentences()
    assert len(committed) >= 200 and len(set(committed)) == len(committed)


def test_calibration_is_disjoint_from_evaluation(cfg):
    cal = set(read_sentences(fixture(cfg, cfg.embed.convert.int8.calibration_file)))
    ev = set(read_sentences(fixture(cfg, cfg.embed.compare.sentences_file)))
    assert not cal & ev


def test_golden_has_provenance_and_unit_vectors(cfg):
    doc = json.loads(fixture(cfg, cfg.embed.compare.golden_file).read_text())
    assert doc["provenance"]["script"].endswith("fixtures_gen.py")
    emb = np.array(doc["embeddings"])
    assert emb.shape == (len(doc["sentences"]), cfg.embed.model.dim)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


# ---- input validation and CLI errors ----------------------------------------------------------
@pytest.mark.parametrize(
    "texts, match",
    [
        ([], "empty batch"),
        (["ok", ""], "sentence 1 is empty"),
        (["   "], "sentence 0 is empty"),
        ([b"\xff\xfe bad"], "not valid UTF-8"),
        ([3], "not text"),
    ],
)
def test_bad_texts_are_named(texts, match):
    with pytest.raises(HarnessError, match=match):
        validate_texts(texts)


def test_unknown_format_is_one_line(capsys):
    assert main(["convert", "--formats", "onnx,nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown embedding format 'nope'" in err[0]


def test_embed_unknown_format_is_one_line(capsys):
    assert main(["embed", "compare", "--formats", "int4"]) == 2
    assert "unknown embedding format 'int4'" in capsys.readouterr().err


def test_weight_folders_are_kept_in_git(cfg):
    root = resolve(cfg.embed.repository)
    for name in canonical_configs(cfg.embed):
        if name != cfg.embed.tokenizer_model:
            assert (root / name / "1" / ".gitkeep").is_file(), name
