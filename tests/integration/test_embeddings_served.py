"""Served formats (Triton, tokenizer + ensembles) against the oracle, golden files and bad input."""

import json

import numpy as np
import pytest

from harness.embeddings.compare import ORACLE
from harness.embeddings.convert import parity_batch, repo_model_file
from harness.embeddings.fixtures_gen import fixture
from harness.embeddings.runtime import ort_runner
from harness.embeddings.serving import embed_served
from harness.errors import HarnessError

pytestmark = pytest.mark.integration
FORMATS = ["onnx", "openvino", "fp16", "int8", "int8-dynamic", "int8-openvino"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_format_meets_its_threshold(embed_comparison, fmt):
    assert fmt in embed_comparison.vs_oracle, f"{fmt} was not served"
    assert embed_comparison.failures[fmt] == [], embed_comparison.vs_oracle[fmt]


@pytest.mark.parametrize("fmt", FORMATS + [ORACLE])
def test_embeddings_did_not_blow_up(embed_comparison, embed_cfg, fmt):
    emb = embed_comparison.embeddings[fmt]
    assert emb.shape == (len(embed_comparison.sentences), embed_cfg.embed.model.dim)
    assert embed_comparison.blowups[fmt] == []


def test_report_has_table_and_heatmap(embed_cfg, embed_comparison, tmp_path):
    from harness.embeddings.report import write_report

    path = write_report(embed_cfg, embed_comparison, path=tmp_path / "embeddings.md")
    text = path.read_text()
    for fmt in FORMATS:
        assert f"| {fmt} |" in text
    png = tmp_path / "embeddings_heatmap.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_served_model_equals_inprocess_onnxruntime(embed_cfg, embed_client):
    batch = parity_batch(embed_cfg)
    want = ort_runner(repo_model_file(embed_cfg, "onnx"))(batch)
    got = embed_client.infer("minilm-onnx", batch)["embeddings"]
    assert np.abs(got - want).max() <= 1e-5


def test_served_ensemble_matches_golden(embed_cfg, embed_client):
    doc = json.loads(fixture(embed_cfg, embed_cfg.embed.compare.golden_file).read_text())
    got = embed_served(embed_client, embed_cfg, "onnx", doc["sentences"])
    assert (
        np.abs(got - np.array(doc["embeddings"])).max() <= embed_cfg.embed.thresholds.exact_max_abs
    )


def test_long_text_is_truncated_like_the_oracle(embed_cfg, embed_client):
    from harness.embeddings.model import model_path
    from harness.embeddings.oracle import oracle_embed

    long_text = " ".join(f"word{i}" for i in range(2000))  # far beyond 256 tokens
    got = embed_served(embed_client, embed_cfg, "onnx", [long_text])
    want = oracle_embed(str(model_path(embed_cfg.embed.model.package)), [long_text])
    assert np.abs(got - want).max() <= embed_cfg.embed.thresholds.exact_max_abs


def _raw(client, texts):
    arr = np.array(texts, dtype=object).reshape(-1, 1)
    return client.infer("minilm-onnx-ensemble", {"text": arr}, validate=False)


@pytest.mark.parametrize(
    "texts, match",
    [([b""], "empty"), ([b"\xff\xfe\xfa"], "UTF-8")],
)
def test_server_rejects_bad_text_and_keeps_serving(embed_cfg, embed_client, texts, match):
    with pytest.raises(HarnessError, match=match):
        _raw(embed_client, texts)
    ok = embed_served(embed_client, embed_cfg, "onnx", ["still serving"])
    assert ok.shape == (1, embed_cfg.embed.model.dim)


@pytest.mark.parametrize("texts, match", [([], "empty batch"), ([""], "empty")])
def test_client_rejects_bad_batches(embed_cfg, embed_client, texts, match):
    with pytest.raises(HarnessError, match=match):
        embed_served(embed_client, embed_cfg, "onnx", texts)


def test_unknown_format_is_refused(embed_cfg, embed_client):
    with pytest.raises(HarnessError, match="unknown embedding format"):
        embed_served(embed_client, embed_cfg, "int3", ["x"])
