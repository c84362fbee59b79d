"""The independent oracle: sentence-transformers' own encode(), computed in-process."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

import harness.embeddings.model  # noqa: F401  (sets HF_HUB_OFFLINE before transformers loads)


@functools.lru_cache(maxsize=2)
def _load(path: str) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device="cpu")


def oracle_embed(path: str, texts: list[str], batch_size: int = 32) -> np.ndarray:
    """SentenceTransformer(path).encode(texts, normalize_embeddings=True) as float32 [n, dim]."""
    model = _load(path)
    emb = model.encode(
        list(texts),
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    return np.asarray(emb, dtype=np.float32)


def oracle_max_length(path: str) -> int:
    """The truncation length sentence-transformers applies (max_seq_length)."""
    return int(_load(path).max_seq_length)


def oracle_dim(path: str) -> int:
    """The embedding dimension of the oracle model."""
    model = _load(path)
    # sentence-transformers 5 renamed the method; the old name warns there
    get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(get())
