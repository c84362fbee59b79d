"""Throughput of the formats: perf_analyzer against the server, and the same runtime in-process."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from harness.embeddings.convert import format_cfg, repo_model_file
from harness.embeddings.fixtures_gen import fixture, read_sentences
from harness.embeddings.model import load_tokenizer, model_path
from harness.io import atomic_open


def token_rows(cfg: DictConfig, seq: int, rows: int) -> np.ndarray:
    """`rows` real token-id sequences of exactly `seq` tokens cut from the fixture sentences."""
    tok = load_tokenizer(str(model_path(cfg.embed.model.package)))
    sents = read_sentences(fixture(cfg, cfg.embed.compare.sentences_file))
    cls, sep = tok.cls_token_id, tok.sep_token_id
    stream: list[int] = []
    for s in sents:
        stream += tok(s, add_special_tokens=False)["input_ids"]
    body = seq - 2
    out = []
    for r in range(rows):
        start = (r * body) % max(1, len(stream) - body)
        out.append([cls] + stream[start : start + body] + [sep])
    return np.array(out, dtype=np.int64)


def write_input_data(cfg: DictConfig, seq: int, path: Path, rows: int = 16) -> Path:
    """perf_analyzer --input-data JSON: real token ids of length `seq`, attention mask all ones."""
    ids = token_rows(cfg, seq, rows)
    names = list(cfg.embed.model.input_names)
    data = [
        {
            names[0]: {"content": row.tolist(), "shape": [seq]},
            names[1]: {"content": [1] * seq, "shape": [seq]},
        }
        for row in ids
    ]
    with atomic_open(path) as fh:
        json.dump({"data": data}, fh)
    return path


def served_perf(
    cfg: DictConfig,
    server: Any,
    formats: list[str],
    seqs: list[int] | None = None,
    concurrency: list[int] | None = None,
    work_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """perf_analyzer rows (format, seq, concurrency, throughput, p50_ms, p99_ms) per format."""
    from harness.perf.analyzer import run_perf_analyzer

    p = cfg.embed.perf
    seqs = list(seqs or p.seq_lengths)
    concurrency = list(concurrency or p.concurrency)
    work_dir = Path(work_dir or cfg.paths.work_dir) / "embed-perf"
    rows = []
    for seq in seqs:
        data = write_input_data(cfg, seq, work_dir / f"input_{seq}.json")
        run_cfg = OmegaConf.merge(cfg, {"perf": {"runner": {"input_data": str(data)}}})
        for fmt in formats:
            results = run_perf_analyzer(
                run_cfg,
                format_cfg(cfg, fmt).model,
                server.address("grpc"),
                concurrency=concurrency,
                protocol="grpc",
                batch_size=int(p.batch_size),
                measurement_interval_ms=int(p.measurement_interval_ms),
                stability_percentage=int(p.stability_percentage),
                max_trials=int(p.max_trials),
            )
            for r in results:
                rows.append(
                    {
                        "format": fmt,
                        "seq": seq,
                        "concurrency": r.concurrency,
                        "throughput": r.throughput,
                        "p50_ms": r.p50_ms,
                        "p99_ms": r.p99_ms,
                        "stable": r.stable,
                    }
                )
    return rows


def inprocess_throughput(
    cfg: DictConfig, fmt: str, batch: int | None = None, seq: int | None = None
) -> dict[str, Any]:
    """Sequences/s of format `fmt`'s file in this process (its runtime, batch x seq tokens)."""
    from harness.embeddings.runtime import make_runner

    p = cfg.embed.perf
    batch, seq = int(batch or p.inprocess_batch), int(seq or p.inprocess_seq)
    runner = make_runner(format_cfg(cfg, fmt).runtime, repo_model_file(cfg, fmt))
    ids = token_rows(cfg, seq, batch)
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    runner(feed)  # warm-up: first run allocates and picks kernels
    times = []
    for _ in range(int(p.inprocess_repeats)):
        t0 = time.perf_counter()
        runner(feed)
        times.append(time.perf_counter() - t0)
    # the median of repeats resists the other tenants of a shared machine
    return {
        "format": fmt,
        "batch": batch,
        "seq": seq,
        "throughput": batch / float(np.median(times)),
    }


def interleaved_inprocess(
    cfg: DictConfig,
    formats: list[str],
    rounds: int = 3,
    batch: int | None = None,
    seq: int | None = None,
) -> dict[str, float]:
    """Median in-process seq/s per format, formats interleaved round by round (fair under noise)."""
    from harness.embeddings.runtime import make_runner

    p = cfg.embed.perf
    batch, seq = int(batch or p.inprocess_batch), int(seq or p.inprocess_seq)
    ids = token_rows(cfg, seq, batch)
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    runners = {f: make_runner(format_cfg(cfg, f).runtime, repo_model_file(cfg, f)) for f in formats}
    for r in runners.values():
        r(feed)
    samples: dict[str, list[float]] = {f: [] for f in formats}
    for _ in range(rounds * int(p.inprocess_repeats)):
        for f, r in runners.items():
            t0 = time.perf_counter()
            r(feed)
            samples[f].append(batch / (time.perf_counter() - t0))
    return {f: float(np.median(v)) for f, v in samples.items()}
