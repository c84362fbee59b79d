"""Demo: start the local S3 service, train with checkpoints in it, stop, resume once, stop S3."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping

from omegaconf import DictConfig, OmegaConf

from harness.errors import HarnessError
from harness.paths import resolve


@contextlib.contextmanager
def _env(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the block only (the other demo steps never see them)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_demo(cfg: DictConfig) -> list[str]:
    """Train 2 epochs with S3 checkpoints as 1 epoch + stop + resume; return summary lines."""
    from harness.config import compose
    from harness.services.s3 import make_s3_service
    from harness.storage.checkpoints import S3CheckpointStore
    from harness.training import train

    work = resolve(str(cfg.paths.work_dir)) / "demo-storage"
    overrides = [
        f"paths.work_dir={work}",
        f"paths.artifacts_dir={work}/artifacts",  # never the pipeline's artifacts/
        f"data.dir={resolve(str(cfg.data.dir))}",
        "checkpoint.store=s3",
        "checkpoint.every_n_epochs=1",
        "train.epochs=2",
        "train.progress=false",
        "logging.enabled=false",
    ]
    svc = make_s3_service(compose(overrides), "local")
    t0 = time.monotonic()
    svc.start()
    lines = [f"S3 ({svc.kind}) at {svc.url} started in {time.monotonic() - t0:.1f}s"]
    try:
        with _env(svc.env()):
            run_cfg = compose(overrides)
            stopped = train(compose([*overrides, "train.stop_after_epoch=1"]))
            store = S3CheckpointStore.from_config(run_cfg)
            first = store.latest()
            if stopped.get("stopped_after_epoch") != 1 or first is None:
                raise HarnessError("storage demo: training did not stop after epoch 1")
            lines.append(f"trained 1 epoch and stopped: latest = {store.uri(first)}")
            result = train(compose([*overrides, "resume=true"]))
            info = store.describe()
            lines.append(
                f"resumed from {first}, finished epoch {info['epoch']}: "
                f"test accuracy {result['test_accuracy']:.4f}"
            )
            state = store.load()  # downloaded and sha256-verified
            lines.append(
                f"{len(store.list())} checkpoint(s) in s3://{store.client.bucket}/{store.prefix}/; "
                f"latest {info['key']} ({info['size'] / 1e6:.2f} MB, "
                f"sha256 {info['sha256'][:12]}… verified, epoch {state['epoch']}, "
                f"step {state['global_step']})"
            )
            lines.append(
                "config in checkpoint: "
                + OmegaConf.to_yaml(OmegaConf.create(state["config"]["model"])).replace("\n", " ")
            )
    finally:
        svc.stop()
    lines.append("S3 stopped")
    return lines
