"""The training loop: deterministic, resumable from checkpoints, logged to MLflow."""

from __future__ import annotations

import logging
import random
import sys
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from harness.data.loader import load_split
from harness.errors import HarnessError
from harness.io import atomic_path
from harness.models.cnn import DigitCNN, build_model
from harness.paths import resolve
from harness.storage.checkpoint_format import CheckpointStore
from harness.storage.checkpoints import make_store
from harness.training.state import capture_state, restore_state
from harness.training.tracking import RunLogger

log = logging.getLogger(__name__)
MODEL_FORMAT = 1


def setup_determinism(cfg: DictConfig) -> None:
    """Seed every RNG and fix threads and algorithms so a run repeats bit for bit."""
    torch.set_num_threads(int(cfg.train.num_threads))
    torch.use_deterministic_algorithms(bool(cfg.train.deterministic))
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)


def epoch_generator(cfg: DictConfig, epoch: int) -> torch.Generator:
    """The RNG for shuffling/augmenting epoch `epoch`: a function of (seed, epoch) only, so a
    resumed run shuffles exactly like an uninterrupted one."""
    g = torch.Generator()
    g.manual_seed(int(cfg.seed) * 1_000_003 + epoch)
    return g


def random_shift(x: torch.Tensor, max_shift: int, g: torch.Generator) -> torch.Tensor:
    """Translate each image by up to `max_shift` pixels (zero fill), offsets drawn from `g`."""
    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    s = max_shift
    xp = F.pad(x, (s, s, s, s)).permute(0, 2, 3, 1)  # N, H+2s, W+2s, C
    dy = torch.randint(0, 2 * s + 1, (n,), generator=g)
    dx = torch.randint(0, 2 * s + 1, (n,), generator=g)
    rows = (dy[:, None] + torch.arange(h))[:, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, :]
    return xp[torch.arange(n)[:, None, None], rows, cols].permute(0, 3, 1, 2).contiguous()


def make_optimizer(cfg: DictConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimizer named by train.optimizer."""
    tc = cfg.train
    if tc.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    if tc.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay
        )
    raise HarnessError(f"unknown train.optimizer '{tc.optimizer}' (adam, sgd)")


def make_scheduler(cfg: DictConfig, optimizer: torch.optim.Optimizer) -> Any:
    """The per-epoch LR schedule named by train.scheduler (None for 'none')."""
    kind = cfg.train.scheduler
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, cfg.train.epochs))
    if kind in ("none", None):
        return None
    raise HarnessError(f"unknown train.scheduler '{kind}' (cosine, none)")


@torch.no_grad()
def predict(
    model: torch.nn.Module, x: torch.Tensor, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits for `x` in batches (eval mode)."""
    model.eval()
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int):
    """(mean cross-entropy, accuracy) of `model` on (x, y)."""
    logits = predict(model, x, batch_size)
    loss = F.cross_entropy(logits, y).item()
    acc = (logits.argmax(1) == y).double().mean().item()
    return loss, acc


def resume_state(cfg: DictConfig, store: CheckpointStore | None) -> dict[str, Any] | None:
    """The checkpoint to resume from (top-level `resume`: false | true = latest | a key)."""
    resume = cfg.resume
    if resume is False or resume is None or str(resume).lower() in ("false", "none", ""):
        return None
    if store is None:
        raise HarnessError("resume needs a checkpoint store (checkpoint.store=local or s3)")
    key = None if resume is True or str(resume).lower() == "true" else str(resume)
    return store.load(key)


def save_model(cfg: DictConfig, model: torch.nn.Module, metrics: dict[str, float]) -> str:
    """Write the state dict + resolved config to train.model_file atomically."""
    path = resolve(cfg.train.model_file)
    payload = {
        "format_version": MODEL_FORMAT,
        "model": model.state_dict(),
        "config": OmegaConf.to_container(cfg, resolve=True),
        "metrics": metrics,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
        tmp.chmod(0o644)
    return str(path)


def load_trained(cfg: DictConfig, path: str | None = None) -> tuple[DigitCNN, DictConfig]:
    """Load the trained model (eval mode) and the config it was trained with."""
    path = resolve(path or cfg.train.model_file)
    if not path.exists():
        raise HarnessError(f"trained model not found: {path} (run `harness train` first)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        saved = OmegaConf.create(payload["config"])
        model = build_model(saved.model)
        model.load_state_dict(payload["model"])
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HarnessError(f"cannot load trained model {path}: {first}") from exc
    return model.eval(), saved


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train per cfg; save model.pt and model.onnx; log to MLflow; return summary metrics."""
    from harness.export.onnx import export_onnx

    tc = cfg.train
    setup_determinism(cfg)
    scale = cfg.data.pixel_scale
    x_train, y_train = load_split(cfg, "train").tensors(scale)
    x_val, y_val = load_split(cfg, "val").tensors(scale)
    x_test, y_test = load_split(cfg, "test").tensors(scale)

    model = build_model(cfg.model)
    optimizer = make_optimizer(cfg, model)
    scheduler = make_scheduler(cfg, optimizer)
    store = make_store(cfg)
    start_epoch, step = 0, 0
    state = resume_state(cfg, store)
    if state is not None:
        start_epoch, step = restore_state(state, model, optimizer, scheduler, cfg)
        log.info("resumed after epoch %d (step %d)", start_epoch, step)
    n, bs = len(x_train), int(tc.batch_size)
    every = int(cfg.checkpoint.every_n_epochs)
    summary: dict[str, Any] = {}
    train_seconds, images_seen = 0.0, 0
    cpu0 = time.process_time()  # CPU seconds: comparable across machines of different load

    with RunLogger(cfg) as run:
        for epoch in range(start_epoch, int(tc.epochs)):
            g = epoch_generator(cfg, epoch)
            order = torch.randperm(n, generator=g)
            model.train()
            total, correct, loss_sum = 0, 0, 0.0
            t0 = time.perf_counter()
            bar = tqdm(
                range(0, n, bs),
                desc=f"epoch {epoch + 1}/{tc.epochs}",
                unit="batch",
                file=sys.stderr,
                disable=not tc.progress,
                leave=False,
            )
            for i in bar:
                idx = order[i : i + bs]
                xb = random_shift(x_train[idx], int(tc.augment.max_shift), g)
                yb = y_train[idx]
                optimizer.zero_grad(set_to_none=True)
                logits = model(xb)
                loss = F.cross_entropy(logits, yb)
                loss.backward()
                optimizer.step()
                step += 1
                loss_sum += loss.item() * len(idx)
                correct += int((logits.argmax(1) == yb).sum())
                total += len(idx)
                bar.set_postfix(loss=f"{loss_sum / total:.4f}")
            elapsed = time.perf_counter() - t0
            train_seconds += elapsed
            images_seen += total
            lr = optimizer.param_groups[0]["lr"]
            if scheduler is not None:
                scheduler.step()
            val_loss, val_acc = evaluate(model, x_val, y_val, tc.eval_batch_size)
            metrics = {
                "train_loss": loss_sum / total,
                "train_accuracy": correct / total,
                "val_loss": val_loss,
                "val_accuracy": val_acc,
                "learning_rate": lr,
                "images_per_second": total / elapsed,
            }
            run.log_metrics(metrics, step=epoch + 1)
            log.info(
                "epoch %d/%d: train_loss %.4f val_loss %.4f val_acc %.4f (%.1fs)",
                epoch + 1,
                tc.epochs,
                metrics["train_loss"],
                val_loss,
                val_acc,
                elapsed,
            )
            done = epoch + 1
            stop = tc.stop_after_epoch is not None and done >= int(tc.stop_after_epoch)
            last = done == tc.epochs or stop
            if store is not None and every > 0 and (done % every == 0 or last):
                key = store.save(capture_state(model, optimizer, scheduler, done, step, cfg), done)
                log.info("checkpoint %s saved", key)
            if stop and done < tc.epochs:
                log.info("stopping after epoch %d (train.stop_after_epoch)", done)
                return {"stopped_after_epoch": done, "global_step": step, "run_id": run.run_id}

        test_loss, test_acc = evaluate(model, x_test, y_test, tc.eval_batch_size)
        summary = {
            "test_loss": test_loss,
            "test_accuracy": test_acc,
            "train_seconds": train_seconds,
            "train_cpu_seconds": time.process_time() - cpu0,
            "images_per_second": images_seen / train_seconds if train_seconds else 0.0,
            "epochs": int(tc.epochs),
            "global_step": step,
        }
        run.log_metrics({"test_loss": test_loss, "test_accuracy": test_acc}, step=int(tc.epochs))
        summary["model_file"] = save_model(cfg, model, {"test_accuracy": test_acc})
        onnx_path = export_onnx(cfg, model, path=tc.onnx_file)
        summary["onnx_file"] = str(onnx_path)
        model_uri = run.log_onnx(onnx_path)
        summary["run_id"] = run.run_id
        summary["model_uri"] = model_uri
        summary["tracking_uri"] = run.tracking_uri
        run.write_run_info(model_uri, {"test_accuracy": test_acc})
    return summary
