"""Serving MiniLM with Triton and comparing every served format against the oracle."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from harness.embeddings.compare import (
    ORACLE,
    PairStats,
    blowup_problems,
    pair_stats,
    pairwise,
    threshold_failures,
)
from harness.embeddings.convert import format_cfg, repo_model_file
from harness.embeddings.fixtures_gen import fixture, read_sentences
from harness.embeddings.model import model_path, validate_texts
from harness.embeddings.repository import ensemble_name, served_models
from harness.errors import HarnessError
from harness.paths import resolve

log = logging.getLogger(__name__)


def servable_formats(cfg: DictConfig, formats: list[str] | None = None) -> tuple[list[str], dict]:
    """(formats that can be served here, {format: reason} for the ones left out)."""
    formats = list(formats or cfg.embed.default_formats)
    ok, skipped = [], {}
    for fmt in formats:
        f = format_cfg(cfg, fmt)
        if f.kind == "tensorrt":
            skipped[fmt] = "TensorRT needs an NVIDIA GPU (not served by the embedded backend)"
        elif not repo_model_file(cfg, fmt).is_file():
            skipped[fmt] = "not converted yet (run `harness convert`)"
        else:
            ok.append(fmt)
    return ok, skipped


def make_server(
    cfg: DictConfig,
    formats: list[str],
    backend: str | None = None,
    work_dir: Path | None = None,
    **kwargs: Any,
) -> Any:
    """A TritonServer (not started) serving the tokenizer, `formats` and their ensembles."""
    from harness.services.triton import make_triton

    models = served_models(cfg.embed, formats)
    return make_triton(
        cfg, backend, resolve(cfg.embed.repository), models, work_dir=work_dir, **kwargs
    )


def text_array(texts: list[Any]) -> np.ndarray:
    """Texts as the [n, 1] BYTES tensor the ensembles take (validated first)."""
    validate_texts(list(texts))
    enc = [t if isinstance(t, bytes) else str(t).encode("utf-8") for t in texts]
    return np.array(enc, dtype=object).reshape(-1, 1)


def embed_served(client: Any, cfg: DictConfig, fmt: str, texts: list[str]) -> np.ndarray:
    """Embeddings of `texts` from format `fmt`'s text-in ensemble (float32 [n, dim])."""
    format_cfg(cfg, fmt)  # an unknown name fails in one line before any request
    name = ensemble_name(cfg.embed, fmt)
    out = client.infer(name, {"text": text_array(texts)}, batch=int(cfg.embed.compare.batch_size))
    return np.asarray(out[cfg.embed.model.output_name], dtype=np.float32)


@dataclass
class Comparison:
    """Everything `harness embed compare` measured."""

    sentences: list[str]
    embeddings: dict[str, np.ndarray]
    vs_oracle: dict[str, PairStats]
    matrix: dict[tuple[str, str], PairStats]
    failures: dict[str, list[str]]
    blowups: dict[str, list[str]]
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every served format met its thresholds and none blew up."""
        return not any(self.failures.values()) and not any(self.blowups.values())


def compare_served(
    cfg: DictConfig, client: Any, formats: list[str], skipped: dict[str, str] | None = None
) -> Comparison:
    """Send the fixture sentences to every format, compare to the oracle and to each other."""
    from harness.embeddings.oracle import oracle_embed

    t0 = time.perf_counter()
    sentences = read_sentences(fixture(cfg, cfg.embed.compare.sentences_file))
    embeddings = {ORACLE: oracle_embed(str(model_path(cfg.embed.model.package)), sentences)}
    for fmt in formats:
        embeddings[fmt] = embed_served(client, cfg, fmt, sentences)
    th = cfg.embed.thresholds
    vs = {fmt: pair_stats(embeddings[fmt], embeddings[ORACLE]) for fmt in formats}
    failures = {
        fmt: threshold_failures(format_cfg(cfg, fmt).precision, vs[fmt], th) for fmt in formats
    }
    blowups = {n: blowup_problems(e, float(th.norm_tolerance)) for n, e in embeddings.items()}
    return Comparison(
        sentences,
        embeddings,
        vs,
        pairwise(embeddings),
        failures,
        blowups,
        dict(skipped or {}),
        time.perf_counter() - t0,
    )


def require_formats(cfg: DictConfig, formats: list[str]) -> None:
    """Raise one line for an unknown format name."""
    for fmt in formats:
        format_cfg(cfg, fmt)
    if not formats:
        raise HarnessError("no format to serve: give --formats or convert first")
