"""Benchmarks: training throughput (images/s) and ONNX inference latency at batch 1 and 64.

Absolute numbers are reported (pytest-benchmark table, extra_info, printed with -s), never
asserted: on 2 shared cores they say more about the neighbours than about the model. Asserted
are ratios measured side by side in interleaved rounds (median over rounds), with floors in
configs/perf/default.yaml (`pipeline`): the training step with the harness's augmentation
against a bare step of the same model, and the per-image cost of batch 1 against batch 64.
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harness.config import compose
from harness.data.loader import load_split
from harness.export.onnx import export_onnx, onnx_session
from harness.models.cnn import build_model
from harness.training.loop import make_optimizer, random_shift, setup_determinism

pytestmark = pytest.mark.perf
RESULTS: dict[str, float] = {}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("perf")
    cfg = compose([f"data.dir={d}/data"])
    setup_determinism(cfg)
    x, y = load_split(cfg, "train").tensors(cfg.data.pixel_scale)
    model = build_model(cfg.model)
    path = export_onnx(cfg, model.eval(), path=d / "model.onnx")
    return cfg, model, x, y, onnx_session(path)


def test_training_throughput(benchmark, setup):
    cfg, model, x, y, _ = setup
    pc = cfg.perf.pipeline
    opt = make_optimizer(cfg, model)
    bs, steps = int(cfg.train.batch_size), int(pc.train_steps)
    shift = int(cfg.train.augment.max_shift)
    g = torch.Generator().manual_seed(0)

    def train_steps(augment: bool = True) -> None:
        model.train()
        for i in range(steps):
            xb = x[i * bs : (i + 1) * bs]
            if augment:  # what the harness's training loop does to every batch
                xb = random_shift(xb, shift, g)
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xb), y[i * bs : (i + 1) * bs])
            loss.backward()
            opt.step()

    benchmark.pedantic(train_steps, rounds=5, warmup_rounds=1)
    ips = steps * bs / benchmark.stats.stats.median
    benchmark.extra_info["images_per_second"] = round(ips, 1)
    print(f"\ntraining throughput: {ips:.0f} images/s (batch {bs}, default model)")

    # The harness's step against a bare step of the same model, interleaved round by round.
    ratios = []
    for _ in range(int(pc.rounds)):
        ratios.append(_seconds(train_steps) / _seconds(lambda: train_steps(augment=False)))
    ratio = statistics.median(ratios)
    benchmark.extra_info["augmented_over_bare"] = round(ratio, 3)
    print(f"augmented / bare step time per round: {', '.join(f'{r:.2f}' for r in ratios)}")
    assert ratio <= float(pc.max_augmented_over_bare), (
        f"a training step with augmentation takes {ratio:.2f}x a bare step (median of "
        f"{', '.join(f'{r:.2f}' for r in ratios)}); ceiling {pc.max_augmented_over_bare}x "
        f"({_load()})"
    )


def _seconds(fn) -> float:
    """Wall seconds of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _load() -> str:
    return f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"


@pytest.mark.parametrize("batch", [1, 64])
def test_onnx_inference_latency(benchmark, setup, batch):
    cfg, _, x, _, sess = setup
    inp = np.ascontiguousarray(x[:batch].numpy())
    out = benchmark.pedantic(
        lambda: sess.run(["logits"], {"images": inp}), rounds=50, iterations=5, warmup_rounds=5
    )
    assert out[0].shape == (batch, 10)
    median = benchmark.stats.stats.median
    RESULTS[f"b{batch}"] = median / batch
    benchmark.extra_info["ms_per_batch"] = round(median * 1e3, 3)
    benchmark.extra_info["ms_per_image"] = round(median * 1e3 / batch, 4)
    print(f"\nONNX batch {batch}: {median * 1e3:.3f} ms/batch, {median * 1e3 / batch:.4f} ms/image")


def test_batching_pays_per_image(setup):
    """Per-image cost at batch 1 over batch 64, measured in the same interleaved rounds."""
    cfg, _, x, _, sess = setup
    pc = cfg.perf.pipeline
    inputs = {b: {"images": np.ascontiguousarray(x[:b].numpy())} for b in (1, 64)}

    def per_image(batch: int, calls: int) -> float:
        sess.run(["logits"], inputs[batch])  # warm
        return _seconds(lambda: [sess.run(["logits"], inputs[batch]) for _ in range(calls)]) / (
            calls * batch
        )

    ratios = [per_image(1, 64 * 4) / per_image(64, 4) for _ in range(int(pc.rounds))]
    ratio = statistics.median(ratios)
    if set(RESULTS) == {"b1", "b64"}:  # the pytest-benchmark figures, when they ran too
        bench = RESULTS["b1"] / RESULTS["b64"]
        print(f"\nbenchmarks above: batch 1 / batch 64 per image {bench:.2f}x")
    print(
        f"\nper-image cost, batch 1 / batch 64, per round: {', '.join(f'{r:.2f}' for r in ratios)}"
    )
    assert ratio >= float(pc.min_batch1_over_batch64_per_image), (
        f"batch 64 costs {1 / ratio:.2f}x batch 1 per image (median of rounds "
        f"{', '.join(f'{r:.2f}' for r in ratios)}); floor {pc.min_batch1_over_batch64_per_image}x "
        f"({_load()})"
    )
