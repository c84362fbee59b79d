"""Conformance checks of a served text -> embedding model (`harness verify embeddings`).

The oracle is sentence-transformers in-process; the thresholds are the project's per precision
(configs/embed `embed.thresholds`); the knobs of the checks are in configs/verify `embeddings`.
Every check is one test; its name (without `test_`) is what `harness verify` prints.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from harness.conformance.plugin import option, require

URL, MODEL = "verify-embeddings-url", "verify-embeddings-model"
PRECISION, SENTENCES = "verify-embeddings-precision", "verify-sentences"
DEFAULT_PRECISION = "fp32"


@dataclass
class Target:
    """The server, model and settings every check of this module shares."""

    client: Any
    model: str
    precision: str
    cfg: Any  # the composed configuration (embed + verify sections)

    @property
    def vcfg(self) -> Any:
        """configs/verify `embeddings`."""
        return self.cfg.verify.embeddings

    @property
    def thresholds(self) -> Any:
        """configs/embed `embed.thresholds` (the project's drift thresholds)."""
        return self.cfg.embed.thresholds


@pytest.fixture(scope="module")
def target(pytestconfig) -> Iterator[Target]:
    """The client of the server under test (skips the module without --verify-embeddings-url)."""
    from harness.config import compose
    from harness.errors import HarnessError
    from harness.verify.embeddings import OipHttp, precision_check

    url = require(pytestconfig, URL, "embedding server")
    model = require(pytestconfig, MODEL, "embedding model")
    cfg = compose([])
    precision = option(pytestconfig, PRECISION) or DEFAULT_PRECISION
    try:
        precision_check(cfg, precision)
    except HarnessError as exc:
        pytest.fail(str(exc), pytrace=False)
    client = OipHttp(url, float(cfg.verify.embeddings.timeout_s))
    try:
        yield Target(client, model, precision, cfg)
    finally:
        client.close()


@pytest.fixture(scope="module")
def model_state(target) -> str:
    """'' when the model answers ready, else why not (the checks that need it skip)."""
    client = target.client
    code, text = client.status(client.model_path(target.model, "/ready"))
    if code == 200:
        return ""
    # Triton answers /ready of an unknown model with 400 "version not ready": metadata says more
    meta_code, meta_text = client.status(client.model_path(target.model))
    if meta_code != 200:
        code, text = meta_code, meta_text
    return f"model '{target.model}' is not ready: HTTP {code} {text}"


@pytest.fixture(scope="module")
def oracle_path(target) -> str:
    """Directory of the sentence-transformers model that is the oracle."""
    from harness.embeddings.model import model_path

    return str(model_path(target.vcfg.oracle_package))


@pytest.fixture(scope="module")
def spec(target, model_state, oracle_path) -> Any:
    """The served model's text input and embedding output (skips when the model is not ready)."""
    from harness.embeddings.oracle import oracle_dim
    from harness.errors import HarnessError
    from harness.verify.embeddings import describe

    if model_state:
        pytest.skip("needs a ready model (see model_ready)")
    try:
        found, _ = describe(target.client.metadata(target.model), oracle_dim(oracle_path))
    except HarnessError:
        found = None
    if found is None:
        pytest.skip("needs a text input and an embedding output (see metadata)")
    return found


@dataclass
class Embedded:
    """The sentences, their served and oracle embeddings (computed once per run), or why not."""

    sentences: list[str]
    served: np.ndarray | None
    oracle: np.ndarray | None
    error: str
    seconds: float = 0.0


@pytest.fixture(scope="module")
def embedded(pytestconfig, target, spec, oracle_path) -> Embedded:
    """Every sentence (the user's file or the committed set) through the model and the oracle."""
    from harness.embeddings.fixtures_gen import fixture
    from harness.embeddings.oracle import oracle_embed
    from harness.errors import HarnessError
    from harness.verify.embeddings import embed, load_sentences

    path = option(pytestconfig, SENTENCES) or fixture(
        target.cfg, target.cfg.embed.compare.sentences_file
    )
    try:
        sentences = load_sentences(path)
    except HarnessError as exc:
        return Embedded([], None, None, str(exc))
    oracle = oracle_embed(oracle_path, sentences).astype(np.float64)
    start = time.perf_counter()
    try:
        served = embed(target.client, spec, sentences, int(target.vcfg.batch_size))
    except HarnessError as exc:
        return Embedded(sentences, None, oracle, str(exc), time.perf_counter() - start)
    return Embedded(sentences, served, oracle, "", time.perf_counter() - start)


def _served(embedded: Embedded, primary: bool = False) -> np.ndarray:
    """The served embeddings; without them the oracle check fails and the others skip."""
    if embedded.served is None:
        if primary:
            pytest.fail(embedded.error, pytrace=False)
        pytest.skip("needs the served embeddings (see embeddings_match_oracle)")
    return embedded.served


def _embed(target: Target, spec: Any, texts: list[str], batch: int, what: str = "") -> np.ndarray:
    """Served embeddings of `texts`; a refused or broken request fails the check in one line."""
    from harness.errors import HarnessError
    from harness.verify.embeddings import embed

    try:
        return embed(target.client, spec, texts, batch)
    except HarnessError as exc:
        pytest.fail(f"{what}{exc}", pytrace=False)


def _still_serving(target: Target, spec: Any) -> None:
    """Fail unless the server is ready and embeds one sentence (after a refused request)."""
    code, text = target.client.status("/v2/health/ready")
    if code != 200:
        pytest.fail(f"the server is no longer ready: HTTP {code} {text}", pytrace=False)
    _embed(target, spec, [target.vcfg.probe_sentence], 1, "the server stopped serving: ")


# ----------------------------------------------------------------------------------- checks
def test_server_live(target):
    code, text = target.client.status("/v2/health/live")
    assert code == 200, f"GET /v2/health/live: HTTP {code} {text}"


def test_server_ready(target):
    code, text = target.client.status("/v2/health/ready")
    assert code == 200, f"GET /v2/health/ready: HTTP {code} {text}"


def test_model_ready(target, model_state):
    assert not model_state, model_state


def test_metadata(target, model_state, oracle_path, record_metric):
    from harness.embeddings.oracle import oracle_dim
    from harness.errors import HarnessError
    from harness.verify.embeddings import describe

    if model_state:
        pytest.skip("needs a ready model (see model_ready)")
    try:
        metadata = target.client.metadata(target.model)
    except HarnessError as exc:
        pytest.fail(str(exc), pytrace=False)
    found, problems = describe(metadata, oracle_dim(oracle_path))
    assert found is not None, "; ".join(problems)
    record_metric("embedding_dim", found.output_shape[-1])


def test_embeddings_match_oracle(target, embedded, record_metric):
    from harness.verify.embeddings import drift, unit_rows

    served = _served(embedded, primary=True)
    sentences = embedded.sentences
    record_metric("sentences", len(sentences))
    record_metric("served_sentences_per_s", round(len(sentences) / embedded.seconds, 1))
    got = served if target.vcfg.expect_normalised else unit_rows(served)
    result = drift(target.precision, got, embedded.oracle, sentences, target.thresholds)
    for key in target.vcfg.oracle_metrics:
        record_metric(f"oracle_{key}", f"{result.stats.as_dict()[key]:.6g}")
    assert not result.failures, f"{target.precision}: " + "; ".join(result.failures)


def test_normalised(target, embedded):
    from harness.embeddings.compare import blowup_problems

    served = _served(embedded)
    if not target.vcfg.expect_normalised:
        pytest.skip("configs/verify embeddings.expect_normalised is false")
    problems = blowup_problems(served, float(target.thresholds.norm_tolerance))
    assert not problems, "; ".join(problems)


def test_batch_invariance(target, spec, embedded, record_metric):
    from harness.verify.embeddings import drift, invariance_rows

    _served(embedded)
    sentences = embedded.sentences
    rows = invariance_rows(sentences, int(target.vcfg.invariance_sentences))
    texts = [sentences[i] for i in rows]
    batched = _embed(target, spec, texts, len(texts))
    alone = np.concatenate([_embed(target, spec, [t], 1) for t in texts])
    result = drift(target.precision, batched, alone, sentences, target.thresholds, index=rows)
    record_metric("batch_vs_alone_max_abs", f"{result.stats.max_abs:.3g}")
    assert not result.failures, f"a batch of {len(texts)} vs each alone: " + "; ".join(
        result.failures
    )


def test_deterministic(target, spec, embedded, record_metric):
    from harness.verify.embeddings import drift, invariance_rows

    _served(embedded)
    sentences = embedded.sentences
    rows = invariance_rows(sentences, int(target.vcfg.invariance_sentences))
    texts = [sentences[i] for i in rows]
    first = _embed(target, spec, texts, len(texts))
    again = [_embed(target, spec, texts, len(texts)) for _ in range(int(target.vcfg.repeats))]
    worst = max(float(np.abs(a - first).max()) for a in again)
    record_metric("repeat_max_abs", f"{worst:.3g}")
    # the same text must give the same vector at any precision (configs/verify says which bound)
    same = str(target.vcfg.determinism_precision)
    for a in again:
        result = drift(same, a, first, sentences, target.thresholds, index=rows)
        assert not result.failures, "the same texts again: " + "; ".join(result.failures)


BAD_INPUTS = ["empty_batch", "wrong_datatype"]


def _bad_body(kind: str, spec: Any) -> dict[str, Any]:
    if kind == "empty_batch":
        return {
            "inputs": [
                {
                    "name": spec.input_name,
                    "shape": spec.text_shape(0),
                    "datatype": "BYTES",
                    "data": [],
                }
            ]
        }
    # a number where the model declares text
    return {
        "inputs": [
            {"name": spec.input_name, "shape": spec.text_shape(1), "datatype": "FP32", "data": [1]}
        ]
    }


@pytest.mark.parametrize("kind", BAD_INPUTS)
def test_bad_input_is_refused(target, spec, kind):
    resp = target.client.infer(target.model, _bad_body(kind, spec))
    low, high = (int(c) for c in target.vcfg.client_error_codes)
    assert low <= resp.status_code <= high, (
        f"{kind.replace('_', ' ')}: HTTP {resp.status_code}, expected a client error "
        f"({low}-{high}): {resp.text[:160]}"
    )
    _still_serving(target, spec)
