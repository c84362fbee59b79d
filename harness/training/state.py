"""Training state: everything needed to continue a run bit for bit (weights, optimizer,
scheduler, RNG states, position), captured after an epoch and restored before the next."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from harness.errors import HarnessError
from harness.storage.checkpoint_format import FORMAT_VERSION, missing_keys


def rng_state() -> dict[str, Any]:
    """The python, numpy and torch global RNG states."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }


def set_rng_state(rng: dict[str, Any]) -> None:
    """Restore what rng_state() captured."""
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])


def capture_state(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    epoch: int,
    global_step: int,
    cfg: DictConfig,
) -> dict[str, Any]:
    """A checkpoint dict after `epoch` completed epochs (tensors cloned, safe to keep)."""

    def clone(obj: Any) -> Any:
        if isinstance(obj, torch.Tensor):
            return obj.detach().clone()
        if isinstance(obj, dict):
            return {k: clone(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [clone(v) for v in obj]
        return obj

    return {
        "format_version": FORMAT_VERSION,
        "model": clone(model.state_dict()),
        "optimizer": clone(optimizer.state_dict()),
        "scheduler": clone(scheduler.state_dict()) if scheduler is not None else None,
        "config": OmegaConf.to_container(cfg, resolve=True),
        "epoch": int(epoch),
        "global_step": int(global_step),
        "rng": rng_state(),
    }


def restore_state(
    state: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    cfg: DictConfig,
) -> tuple[int, int]:
    """Load a checkpoint into model/optimizer/scheduler and the RNGs; return (epoch, step)."""
    missing = missing_keys(state)
    if missing:
        raise HarnessError(f"checkpoint is missing keys: {', '.join(missing)}")
    if state["format_version"] != FORMAT_VERSION:
        raise HarnessError(
            f"checkpoint format {state['format_version']} is not supported (need {FORMAT_VERSION})"
        )
    saved_model = (state["config"] or {}).get("model")
    current = OmegaConf.to_container(cfg.model, resolve=True)
    if saved_model != current:
        diff = sorted(
            k
            for k in set(current) | set(saved_model or {})
            if (saved_model or {}).get(k) != current.get(k)
        )
        raise HarnessError(
            "checkpoint model config is incompatible with the current one "
            f"(differs in: {', '.join('model.' + k for k in diff)})"
        )
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            if state["scheduler"] is None:
                raise HarnessError("checkpoint has no scheduler state but training uses one")
            scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HarnessError(f"checkpoint does not fit the model/optimizer: {first}") from exc
    return int(state["epoch"]), int(state["global_step"])
