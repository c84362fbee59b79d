"""Demo: start the local S3 service, train with checkpoints in it, stop, resume once, then
verify the service (`harness verify s3`'s checks, authentication on), stop S3."""

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


def _verify(endpoint: str, bucket: str) -> list[str]:
    """`harness verify s3` against the service the demo started: one line per check, MB/s."""
    from harness.verify.runner import run_checks

    options = {"verify-s3-endpoint": endpoint, "verify-s3-bucket": bucket}
    result = run_checks("s3", options, target=f"{endpoint} bucket {bucket}")
    lines = [f"verify s3 {c.outcome.upper()} {c.name} {c.message}".rstrip() for c in result.checks]
    m = result.metrics()
    lines.append(
        f"verify s3: {result.counts()['passed']}/{len(result.checks)} checks passed in "
        f"{result.seconds:.1f}s; put {m.get('s3 put MB/s', '?')} MB/s, "
        f"get {m.get('s3 get MB/s', '?')} MB/s"
    )
    if not result.ok:
        failed = ", ".join(c.name for c in result.failed) or "no check ran"
        raise HarnessError(f"storage demo: verify s3 failed at {endpoint}: {failed}")
    return lines


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
            lines += _verify(svc.url, store.client.bucket)
    finally:
        svc.stop()
    lines.append("S3 stopped")
    return lines
