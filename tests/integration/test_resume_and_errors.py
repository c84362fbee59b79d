"""Bit-exact resume in a new process, the default config's accuracy, and bad input via the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.config import compose
from harness.data.layout import split_paths
from harness.data.loader import prepare
from harness.services.base import free_port
from harness.storage.checkpoints import LocalCheckpointStore
from harness.testing.states import assert_bit_identical
from tests.integration._cli import harness, ok

pytestmark = pytest.mark.integration

SMALL = ["train.epochs=2", "model.channels=4", "model.hidden=32", "train.progress=false"]


def test_resume_in_new_process_is_bit_exact(tmp_path):
    data = [f"data.dir={tmp_path}/data", "logging.enabled=false", *SMALL]

    def run_dir(name):
        return [f"paths.artifacts_dir={tmp_path}/{name}", f"paths.work_dir={tmp_path}/w"]

    ok(harness("train", *data, *run_dir("straight")))
    proc = ok(harness("train", *data, *run_dir("resumed"), "train.stop_after_epoch=1"))
    assert "stopped after epoch 1" in proc.stdout
    assert not (tmp_path / "resumed" / "model.pt").exists()
    ok(harness("train", *data, *run_dir("resumed"), "resume=true"))

    straight = LocalCheckpointStore(tmp_path / "straight" / "checkpoints")
    resumed = LocalCheckpointStore(tmp_path / "resumed" / "checkpoints")
    epochs = [[k.split("-", 1)[1] for k in s.list()] for s in (straight, resumed)]
    assert epochs[0] == epochs[1] == ["epoch0001.ckpt", "epoch0002.ckpt"]
    assert resumed.latest() == resumed.list()[-1]
    a, b = straight.load(), resumed.load()
    assert a["epoch"] == b["epoch"] == 2 and a["global_step"] == b["global_step"]
    assert_bit_identical(a["model"], b["model"])
    assert_bit_identical(a["optimizer"], b["optimizer"])
    assert a["scheduler"] == b["scheduler"]
    assert_bit_identical(a["rng"]["torch"], b["rng"]["torch"])
    # the epoch really changed the weights (the comparison is not between two untouched models)
    first = straight.load(straight.list()[0])["model"]
    assert any(not torch.equal(first[k], a["model"][k]) for k in first)
    ma = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)["model"]
    mb = torch.load(tmp_path / "resumed" / "model.pt", weights_only=True)["model"]
    assert_bit_identical(ma, mb)


def test_default_config_reaches_target_accuracy(tmp_path):
    """The default training config (the one `make demo` runs) meets train.min_test_accuracy."""
    from harness.training import train

    cfg = compose(
        [
            f"paths.artifacts_dir={tmp_path}/a",
            f"data.dir={tmp_path}/data",
            "logging.enabled=false",
            "checkpoint.store=none",
            "train.progress=false",
        ]
    )
    result = train(cfg)
    print(
        f"default config: test accuracy {result['test_accuracy']:.4f}, "
        f"{result['train_seconds']:.1f}s, {result['images_per_second']:.0f} images/s, "
        f"{result['train_cpu_seconds']:.1f} CPU-s"
    )
    assert result["test_accuracy"] >= cfg.train.min_test_accuracy


def _one_line_error(proc, *words):
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("harness: error:")
    for w in words:
        assert w in lines[0], lines[0]
    assert "Traceback" not in proc.stderr


def test_bad_input_gives_one_line_and_no_output(tmp_path):
    base = [
        f"data.dir={tmp_path}/data",
        f"paths.artifacts_dir={tmp_path}/out",
        f"paths.work_dir={tmp_path}/w",
        "train.progress=false",
        *SMALL[:3],
    ]
    cfg = compose(base)
    prepare(cfg)
    img, _ = split_paths(cfg.data, "test")
    good = img.read_bytes()
    out = tmp_path / "out"

    img.write_bytes(good[:-100])  # truncated
    _one_line_error(harness("train", *base, "logging.enabled=false"), "truncated", img.name)
    img.write_bytes(b"\x00\x00\x99\x03" + good[4:])  # wrong magic
    _one_line_error(harness("data", "describe", *base), "bad magic", img.name)
    assert not out.exists() or not any(out.rglob("model.pt"))
    img.write_bytes(good)

    _one_line_error(harness("infer", *base), "trained model not found")
    _one_line_error(harness("export", *base), "trained model not found")
    assert not out.exists() or not any(out.rglob("*.csv"))

    _one_line_error(harness("train", *base, "train.nope=3"), "invalid configuration override")
    dead = f"http://127.0.0.1:{free_port()}"
    _one_line_error(harness("train", *base, f"logging.tracking_uri={dead}"), "unreachable", dead)
    assert not out.exists() or not list(out.rglob("*"))
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    np.testing.assert_equal(img.read_bytes() == good, True)
