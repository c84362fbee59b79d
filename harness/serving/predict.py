"""`harness client` logic: load images, classify them on Triton, accuracy and latency."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from harness.data.preprocess import to_model_input
from harness.errors import HarnessError
from harness.io import write_predictions


def test_split(cfg: DictConfig) -> tuple[np.ndarray, np.ndarray, str]:
    """(model-ready images [N,1,28,28], labels, description) of the data set's test split."""
    from harness.data.loader import load_split

    split = load_split(cfg, "test")  # built (digits) or fetched (DVC) when missing
    images = to_model_input(split.images, float(cfg.data.pixel_scale))
    return images, np.asarray(split.labels), f"{cfg.data.name} test split"


def load_images(paths: list[str], pixel_scale: float) -> np.ndarray:
    """Image files (PNG/JPEG: grey 28x28, preprocessed as in training) or model-ready .npy."""
    out = []
    for p in map(Path, paths):
        if not p.is_file():
            raise HarnessError(f"image file {p} does not exist")
        if p.suffix == ".npy":
            arr = np.load(p).astype(np.float32)
            out.append(arr.reshape(-1, 1, 28, 28) if arr.size % 784 == 0 else arr)
            continue
        try:
            from PIL import Image

            with Image.open(p) as img:
                grey = img.convert("L").resize((28, 28))
        except Exception as exc:
            raise HarnessError(f"cannot read image {p}: {exc}") from exc
        out.append(to_model_input(np.asarray(grey).reshape(1, 28, 28), pixel_scale))
    return np.concatenate(out)


def run_client(
    cfg: DictConfig,
    *,
    url: str | None = None,
    protocol: str | None = None,
    model: str | None = None,
    image_files: list[str] | None = None,
    batch_size: int | None = None,
    server=None,
    predictions_file: str | None = None,
) -> list[str]:
    """Classify images on Triton (a given URL, a given server, or one started for the run)."""
    from contextlib import nullcontext

    from harness.services.triton import make_triton
    from harness.serving.client import TritonClient

    c = cfg.triton.client
    protocol = protocol or c.protocol
    model = model or cfg.triton.model_name
    batch = int(batch_size or c.batch_size)

    def inputs() -> tuple[np.ndarray, np.ndarray | None, str]:
        if image_files:
            images = load_images(image_files, float(cfg.data.pixel_scale))
            return images, None, f"{len(image_files)} file(s)"
        images, labels, what = test_split(cfg)
        if c.test_samples:
            images, labels = images[: int(c.test_samples)], labels[: int(c.test_samples)]
        return images, labels, what

    if image_files:  # a bad file is one line before any server starts
        images, labels, what = inputs()
    owned = None
    if url is None and server is None:
        owned = make_triton(cfg, None, None, [model])
    ctx = owned if owned is not None else nullcontext()
    with ctx:
        srv = owned or server
        address = url or srv.address(protocol)
        with TritonClient(address, protocol, c.timeout_s, c.connect_timeout_s) as client:
            client.info(model)  # fail early on a dead server or an unknown model
            if not image_files:  # the test split (built on first use) once the server answers
                images, labels, what = inputs()
            latencies, preds, confs = [], [], []
            for i in range(0, len(images), batch):
                t0 = time.perf_counter()
                answer = client.classify(model, images[i : i + batch])
                latencies.append((time.perf_counter() - t0) * 1000.0)
                preds.append(answer.labels)
                confs.append(answer.probabilities.max(axis=1))
    pred = np.concatenate(preds)
    p = np.percentile(latencies, [50, 90, 95, 99])
    lines = [
        f"client: {len(images)} images ({what}) -> {model} over {protocol} at {address}",
        f"  requests: {len(latencies)} of <= {batch} images; latency ms p50 {p[0]:.2f} "
        f"p90 {p[1]:.2f} p95 {p[2]:.2f} p99 {p[3]:.2f}",
    ]
    if predictions_file:
        path = write_predictions(predictions_file, pred, np.concatenate(confs), labels)
        lines.append(f"  predictions: {path} ({len(pred)} rows)")
    if labels is not None:
        lines.insert(1, f"  accuracy: {(pred == labels).mean():.4f}")
    else:
        lines.append("  predicted: " + " ".join(map(str, pred[:50].tolist())))
    return lines
