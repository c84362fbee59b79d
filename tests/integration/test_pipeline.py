"""train (small config) -> infer -> export -> MLflow run -> run-server, through the CLI."""

from __future__ import annotations

import csv
import json
import re
import signal
import subprocess
import sys
import urllib.request

import numpy as np
import onnx
import pytest
import torch
from sklearn.metrics import confusion_matrix, f1_score

from harness.config import compose
from harness.data.loader import load_split
from harness.export.onnx import onnx_session
from harness.paths import ROOT
from harness.services.base import free_port, http_ok, wait_until
from harness.training import load_trained
from harness.training.tracking import git_commit
from tests.integration._cli import harness, ok

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, mlflow_tracking):
    """A small training run logged to the session's MLflow server; returns (overrides, dir)."""
    d = tmp_path_factory.mktemp("pipeline")
    overrides = [
        f"paths.artifacts_dir={d}/artifacts",
        f"paths.work_dir={d}/work",
        f"data.dir={d}/data",
        f"export.path={d}/repo/mnist-onnx/1/model.onnx",
        f"logging.tracking_uri={mlflow_tracking}",
        "logging.experiment=it-pipeline",
        "train.epochs=2",
        "model.channels=8",
        "train.progress=false",
    ]
    proc = ok(harness("train", *overrides))
    assert re.search(r"test accuracy: 0\.\d{4}", proc.stdout)
    return overrides, d


def test_infer_csv_and_printed_metrics(run_dir):
    overrides, d = run_dir
    proc = ok(harness("infer", *overrides))
    rows = list(csv.DictReader(open(d / "artifacts" / "predictions.csv")))
    cfg = compose(overrides)
    test = load_split(cfg, "test")
    assert len(rows) == len(test) == 359
    y = np.array([int(r["true_label"]) for r in rows])
    p = np.array([int(r["predicted_label"]) for r in rows])
    np.testing.assert_array_equal(y, test.labels)  # rows follow the test split, in order
    assert [int(r["index"]) for r in rows] == list(range(len(rows)))
    conf = np.array([float(r["confidence"]) for r in rows])
    assert np.all((conf >= 0.1) & (conf <= 1))
    acc = float(re.search(r"accuracy: ([\d.]+)", proc.stdout).group(1))
    f1 = float(re.search(r"macro-F1: ([\d.]+)", proc.stdout).group(1))
    assert acc == pytest.approx(np.mean(y == p), abs=1e-4)
    assert f1 == pytest.approx(f1_score(y, p, average="macro"), abs=1e-4)
    table = proc.stdout.split("columns: predicted):\n", 1)[1].strip().splitlines()[1:]
    printed = np.array([[int(v) for v in line.split()[1:]] for line in table])
    np.testing.assert_array_equal(printed, confusion_matrix(y, p, labels=range(10)))
    # the model's own predictions agree with the CSV (oracle: torch in this process)
    model, _ = load_trained(cfg)
    x, _ = test.tensors(cfg.data.pixel_scale)
    with torch.no_grad():
        np.testing.assert_array_equal(model(x).argmax(1).numpy(), p)


def test_export_cli_parity(run_dir):
    overrides, d = run_dir
    proc = ok(harness("export", *overrides))
    path = d / "repo" / "mnist-onnx" / "1" / "model.onnx"
    assert str(path) in proc.stdout
    cfg = compose(overrides)
    model, _ = load_trained(cfg)
    test = load_split(cfg, "test")
    x = test.images[:64].astype(np.float32)[:, None] / cfg.data.pixel_scale
    got = onnx_session(path).run(["logits"], {"images": x})[0]
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    assert np.abs(got - ref).max() <= 1e-5
    assert onnx.load(str(path)).opset_import[0].version >= 17


def test_mlflow_run_has_params_commit_metrics_model(run_dir, mlflow_tracking, monkeypatch):
    import mlflow
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_tracking)
    mlflow.set_tracking_uri(mlflow_tracking)

    overrides, d = run_dir
    info = json.loads((d / "artifacts" / "mlflow_run.json").read_text())
    client = MlflowClient(tracking_uri=mlflow_tracking)
    run = client.get_run(info["run_id"])
    params = run.data.params
    assert params["train.epochs"] == "2" and params["model.channels"] == "8"
    assert params["export.input_name"] == "images"
    assert len(params) > 50  # the whole resolved config, flattened
    assert run.data.tags["mlflow.source.git.commit"] == git_commit() != "unknown"
    for name in ("train_loss", "val_loss", "val_accuracy", "learning_rate"):
        history = client.get_metric_history(info["run_id"], name)
        assert [m.step for m in sorted(history, key=lambda m: m.step)] == [1, 2], name
    import mlflow.onnx

    (d / "dl").mkdir()
    logged = mlflow.onnx.load_model(info["model_uri"], dst_path=str(d / "dl"))
    local = onnx.load(str(d / "artifacts" / "model.onnx"))
    from onnx.numpy_helper import to_array

    # mlflow re-saves the graph (external-data handling), so compare content, not bytes
    assert [n.op_type for n in logged.graph.node] == [n.op_type for n in local.graph.node]
    weights = {t.name: to_array(t) for t in local.graph.initializer}
    assert weights and len(weights) == len(logged.graph.initializer)
    for t in logged.graph.initializer:
        np.testing.assert_array_equal(to_array(t), weights[t.name])


def test_run_server_answers_match_onnxruntime(run_dir):
    overrides, d = run_dir
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run-server", "--port", str(port), *overrides],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        up = wait_until(lambda: http_ok(url + "/ping"), 240, 0.5, lambda: proc.poll())
        assert up, proc.stderr.read() if proc.poll() is not None else "no /ping"
        cfg = compose(overrides)
        x = load_split(cfg, "test").images[:10].astype(np.float32)[:, None] / 255.0
        body = json.dumps({"inputs": {"images": x.tolist()}}).encode()
        req = urllib.request.Request(
            url + "/invocations", data=body, headers={"Content-Type": "application/json"}
        )
        answer = json.loads(urllib.request.urlopen(req, timeout=30).read())
        got = np.asarray(answer["predictions"]["logits"], dtype=np.float32)
        ref = onnx_session(d / "artifacts" / "model.onnx").run(["logits"], {"images": x})[0]
        assert got.shape == (10, 10)
        np.testing.assert_allclose(got, ref, atol=1e-6)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert not http_ok(url + "/ping", timeout=1)  # the model server went with it


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_client_on_triton_predicts_what_infer_predicts(run_dir, protocol, tmp_path):
    """Train/serve skew: `harness client` (served ONNX) and `harness infer` (torch) agree on the
    test split prediction for prediction; both preprocess with harness.data.preprocess."""
    import shutil

    overrides, d = run_dir
    ok(harness("export", *overrides))
    shutil.copyfile(
        ROOT / "model_repository" / "mnist-onnx" / "config.pbtxt",
        d / "repo" / "mnist-onnx" / "config.pbtxt",
    )
    ok(harness("infer", *overrides))
    infer_rows = list(csv.DictReader(open(d / "artifacts" / "predictions.csv")))
    out = tmp_path / "client.csv"
    proc = ok(
        harness(
            "client", "--protocol", protocol, "--predictions", str(out), *overrides,
            f"paths.model_repository={d}/repo", "triton.client.test_samples=0",
            timeout=300,
        )  # fmt: skip
    )
    client_rows = list(csv.DictReader(open(out)))
    assert len(client_rows) == len(infer_rows) == 359
    for a, b in zip(client_rows, infer_rows):
        assert (a["index"], a["true_label"], a["predicted_label"]) == (
            b["index"], b["true_label"], b["predicted_label"],
        )  # fmt: skip
        assert float(a["confidence"]) == pytest.approx(float(b["confidence"]), abs=1e-5)
    acc = float(re.search(r"accuracy: ([\d.]+)", proc.stdout).group(1))
    infer_acc = np.mean([r["true_label"] == r["predicted_label"] for r in infer_rows])
    assert acc == pytest.approx(infer_acc, abs=1e-4)
