"""`harness verify embeddings`: a served text -> embedding model against sentence-transformers.

Speaks the Open Inference Protocol v2 over HTTP with JSON tensors (no client library), so the
same checks run against Triton, MLServer or KServe and see the real HTTP status of a refusal.
The drift thresholds are the project's own (configs/embed `embed.thresholds`, by precision);
the maths is harness.embeddings.compare, the oracle harness.embeddings.oracle.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
from omegaconf import DictConfig

from harness.embeddings.compare import (
    PairStats,
    ThresholdMiss,
    nearest_neighbours,
    pair_stats,
    threshold_misses,
)
from harness.embeddings.fixtures_gen import read_sentences
from harness.embeddings.model import validate_texts
from harness.errors import HarnessError
from harness.urls import base_url

# httpx logs every request at INFO; a verify run makes a few hundred.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)

TEXT_DATATYPE = "BYTES"
FLOAT_DATATYPES = ("FP32", "FP16", "FP64", "BF16")
# how long a sentence excerpt in a failure line may be (the line must stay one readable line)
EXCERPT_CHARS = 40


@dataclass(frozen=True)
class TextModel:
    """The served model's text input and embedding output, as its metadata declares them."""

    name: str
    input_name: str
    input_shape: tuple[int, ...]
    output_name: str
    output_datatype: str
    output_shape: tuple[int, ...]

    def text_shape(self, rows: int) -> list[int]:
        """Shape of a request carrying `rows` texts (the batch axis first, other -1 axes 1)."""
        rest = [1 if d == -1 else d for d in self.input_shape[1:]]
        return [rows, *rest] if self.input_shape else [rows, 1]


def _error_text(resp: httpx.Response) -> str:
    try:
        body = resp.json()
        msg = body.get("error") or body.get("detail") or body
    except ValueError:
        msg = resp.text
    return " ".join(str(msg).split())[:200]


class OipHttp:
    """A minimal Open Inference Protocol v2 REST client that keeps status codes visible."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = base_url(url)
        self.http = httpx.Client(base_url=self.url, timeout=float(timeout_s))

    def get(self, path: str) -> httpx.Response:
        """GET `path`; an unreachable server is one line."""
        try:
            return self.http.get(path)
        except httpx.HTTPError as exc:
            raise HarnessError(f"GET {self.url}{path} failed: {exc}") from exc

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        """POST a JSON body to `path`; an unreachable server is one line."""
        try:
            return self.http.post(path, json=body)
        except httpx.HTTPError as exc:
            raise HarnessError(f"POST {self.url}{path} failed: {exc}") from exc

    def model_path(self, model: str, tail: str = "") -> str:
        """/v2/models/<model><tail> with the name quoted."""
        return f"/v2/models/{quote(model, safe='')}{tail}"

    def status(self, path: str) -> tuple[int, str]:
        """(HTTP status, error text) of GET `path`."""
        resp = self.get(path)
        return resp.status_code, "" if resp.status_code == 200 else _error_text(resp)

    def metadata(self, model: str) -> dict[str, Any]:
        """The model metadata JSON, or one line naming the status and the server's reason."""
        resp = self.get(self.model_path(model))
        if resp.status_code != 200:
            raise HarnessError(
                f"metadata of '{model}': HTTP {resp.status_code} {_error_text(resp)}"
            )
        return resp.json()

    def infer(self, model: str, body: dict[str, Any]) -> httpx.Response:
        """POST an inference request; the caller judges the status."""
        return self.post(self.model_path(model, "/infer"), body)

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()


def describe(metadata: dict[str, Any], dim: int) -> tuple[TextModel | None, list[str]]:
    """(the text input + float output, problems): one BYTES input, a float output of `dim`."""
    problems = []
    inputs = metadata.get("inputs") or []
    outputs = metadata.get("outputs") or []
    texts = [t for t in inputs if t.get("datatype") == TEXT_DATATYPE]
    if len(inputs) != 1 or not texts:
        declared = ", ".join(f"{t.get('name')} {t.get('datatype')}" for t in inputs) or "none"
        problems.append(
            f"expected one {TEXT_DATATYPE} (text) input, the model declares: {declared}"
        )
    floats = [
        t
        for t in outputs
        if t.get("datatype") in FLOAT_DATATYPES and t.get("shape") and int(t["shape"][-1]) == dim
    ]
    if not floats:
        declared = ", ".join(
            f"{t.get('name')} {t.get('datatype')} {t.get('shape')}" for t in outputs
        )
        problems.append(
            f"expected a float output of dimension {dim} (the oracle's), the model declares: "
            f"{declared or 'none'}"
        )
    if problems:
        return None, problems
    return (
        TextModel(
            name=str(metadata.get("name", "")),
            input_name=texts[0]["name"],
            input_shape=tuple(int(d) for d in texts[0].get("shape", [])),
            output_name=floats[0]["name"],
            output_datatype=floats[0]["datatype"],
            output_shape=tuple(int(d) for d in floats[0]["shape"]),
        ),
        [],
    )


def text_request(spec: TextModel, texts: list[str]) -> dict[str, Any]:
    """The JSON inference body carrying `texts` (asks for the embedding output only)."""
    return {
        "inputs": [
            {
                "name": spec.input_name,
                "shape": spec.text_shape(len(texts)),
                "datatype": TEXT_DATATYPE,
                "data": list(texts),
            }
        ],
        "outputs": [{"name": spec.output_name}],
    }


def embed(client: OipHttp, spec: TextModel, texts: list[str], batch_size: int) -> np.ndarray:
    """Embeddings of `texts` (float64 [n, dim]) in requests of at most `batch_size` texts."""
    rows = []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        resp = client.infer(spec.name, text_request(spec, chunk))
        if resp.status_code != 200:
            raise HarnessError(
                f"inference on '{spec.name}' ({len(chunk)} texts from sentence {start}): "
                f"HTTP {resp.status_code} {_error_text(resp)}"
            )
        rows.append(output_array(resp.json(), spec.output_name, len(chunk)))
    return np.concatenate(rows)


def output_array(body: dict[str, Any], name: str, rows: int) -> np.ndarray:
    """Output `name` of an inference answer as float64 [rows, dim], or one line saying why not."""
    for out in body.get("outputs", []):
        if out.get("name") == name:
            data = np.asarray(out.get("data", []), dtype=np.float64)
            if data.size == 0 or data.size % rows:
                raise HarnessError(f"output '{name}' has {data.size} values for {rows} texts")
            return data.reshape(rows, -1)
    raise HarnessError(f"the answer has no output '{name}'")


def load_sentences(path: str | Path) -> list[str]:
    """Sentences of a text file (one a line, `#` comments skipped), validated; one-line errors."""
    try:
        sentences = read_sentences(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise HarnessError(f"cannot read sentences file '{path}': {exc}") from exc
    if not sentences:
        raise HarnessError(f"sentences file '{path}' holds no sentence")
    validate_texts(sentences)
    return sentences


def excerpt(text: str) -> str:
    """The start of a sentence, quoted, for a failure line."""
    short = text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"
    return f'"{short}"'


def worst_sentence(miss: ThresholdMiss, got: np.ndarray, want: np.ndarray) -> tuple[int, str]:
    """(index, text) of the sentence that drives a missed metric (for the failure line)."""
    a, b = got.astype(np.float64), want.astype(np.float64)
    if miss.metric == "max_abs":
        i, dim = np.unravel_index(int(np.abs(a - b).argmax()), a.shape)
        return int(i), f"at dimension {int(dim)}"
    if miss.metric == "mean_norm":
        per_row = np.linalg.norm(a - b, axis=1)
        i = int(per_row.argmax())
        return i, f"‖Δ‖ {per_row[i]:.3g}"
    if miss.metric == "mean_cosine":
        unit_a = a / np.linalg.norm(a, axis=1, keepdims=True).clip(min=1e-12)
        unit_b = b / np.linalg.norm(b, axis=1, keepdims=True).clip(min=1e-12)
        per_row = np.sum(unit_a * unit_b, axis=1)
        i = int(per_row.argmin())
        return i, f"cosine {per_row[i]:.4f}"
    changed = np.flatnonzero(nearest_neighbours(a) != nearest_neighbours(b))
    i = int(changed[0]) if len(changed) else 0
    return i, f"nearest neighbour changed for {len(changed)} sentences ({changed[:5].tolist()})"


@dataclass(frozen=True)
class Drift:
    """How far one set of embeddings is from another, and the failure lines of the thresholds."""

    stats: PairStats
    failures: list[str]


def drift(
    precision: str,
    got: np.ndarray,
    want: np.ndarray,
    sentences: list[str],
    th: DictConfig,
    index: list[int] | None = None,
) -> Drift:
    """`got` vs `want` under the precision's thresholds; each miss names its worst sentence.

    `index` maps rows to sentence numbers when the rows are a subset of the sentences.
    """
    stats = pair_stats(got, want)
    lines = []
    for miss in threshold_misses(precision, stats, th):
        row, detail = worst_sentence(miss, got, want)
        number = index[row] if index is not None else row
        lines.append(f"sentence {number} {excerpt(sentences[number])}: {miss.text()} ({detail})")
    return Drift(stats, lines)


def invariance_rows(sentences: list[str], count: int) -> list[int]:
    """Sentence numbers for the batch checks: the first ones plus the longest (max padding)."""
    longest = max(range(len(sentences)), key=lambda i: len(sentences[i]))
    rows = list(range(min(count, len(sentences))))
    if longest not in rows:
        rows[-1] = longest
    return rows


def unit_rows(emb: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (for models that do not normalise themselves)."""
    return emb / np.linalg.norm(emb, axis=1, keepdims=True).clip(min=1e-12)


def precision_check(cfg: DictConfig, precision: str) -> str:
    """The configs/embed check kind of a precision (exact | fp16 | int8), or one line."""
    by = cfg.embed.thresholds.by_precision
    if precision not in by:
        raise HarnessError(f"unknown precision '{precision}' (choose {', '.join(by)})")
    return str(by[precision])
