"""`harness client` logic: load images, classify them on Triton, accuracy and latency."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from harness.errors import HarnessError


def digits_28x28(images_8x8: np.ndarray) -> np.ndarray:
    """scikit-learn 8x8 digits (0..16) -> float32 [N,1,28,28] in [0,1] (bilinear)."""
    import torch

    x = torch.from_numpy(images_8x8.astype(np.float32) / 16.0).unsqueeze(1)
    x = torch.nn.functional.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)
    return x.clamp(0, 1).numpy().astype(np.float32)


def test_split(cfg: DictConfig) -> tuple[np.ndarray, np.ndarray, str]:
    """(images [N,1,28,28] float32, labels, description) of the test split."""
    try:  # the data pipeline's own test split (IDX files, built by `harness data prepare`)
        from harness.data.loader import load_split

        split = load_split(cfg, "test")
        images = split.images.astype(np.float32)[:, None] / float(cfg.data.pixel_scale)
        return images, np.asarray(split.labels), f"{cfg.data.name} test split"
    except (ImportError, AttributeError, KeyError, HarnessError):
        pass  # the data package is absent or not configured: use the built-in hold-out below
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    _, x, _, y = train_test_split(
        d.images, d.target, test_size=0.2, random_state=int(cfg.seed), stratify=d.target
    )
    return digits_28x28(x), y.astype(np.int64), "scikit-learn digits, 20% stratified hold-out"


def load_images(paths: list[str]) -> np.ndarray:
    """Image files (PNG/JPEG: grey, resized to 28x28, scaled to [0,1]) or .npy arrays."""
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
        out.append(np.asarray(grey, np.float32).reshape(1, 1, 28, 28) / 255.0)
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
) -> list[str]:
    """Classify images on Triton (a given URL, a given server, or one started for the run)."""
    from contextlib import nullcontext

    from harness.services.triton import make_triton
    from harness.serving.client import TritonClient

    c = cfg.triton.client
    protocol = protocol or c.protocol
    model = model or cfg.triton.model_name
    batch = int(batch_size or c.batch_size)
    if image_files:
        images, labels, what = load_images(image_files), None, f"{len(image_files)} file(s)"
    else:
        images, labels, what = test_split(cfg)
        if c.test_samples:
            images, labels = images[: int(c.test_samples)], labels[: int(c.test_samples)]
    owned = None
    if url is None and server is None:
        owned = make_triton(cfg, None, None, [model])
    ctx = owned if owned is not None else nullcontext()
    with ctx:
        srv = owned or server
        address = url or srv.address(protocol)
        with TritonClient(address, protocol, c.timeout_s, c.connect_timeout_s) as client:
            client.info(model)  # fail early on an unknown model
            latencies, preds = [], []
            for i in range(0, len(images), batch):
                t0 = time.perf_counter()
                preds.append(client.classify(model, images[i : i + batch]).labels)
                latencies.append((time.perf_counter() - t0) * 1000.0)
    pred = np.concatenate(preds)
    p = np.percentile(latencies, [50, 90, 95, 99])
    lines = [
        f"client: {len(images)} images ({what}) -> {model} over {protocol} at {address}",
        f"  requests: {len(latencies)} of <= {batch} images; latency ms p50 {p[0]:.2f} "
        f"p90 {p[1]:.2f} p95 {p[2]:.2f} p99 {p[3]:.2f}",
    ]
    if labels is not None:
        lines.insert(1, f"  accuracy: {(pred == labels).mean():.4f}")
    else:
        lines.append("  predicted: " + " ".join(map(str, pred[:50].tolist())))
    return lines
