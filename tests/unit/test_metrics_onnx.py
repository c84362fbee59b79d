"""Metrics against scikit-learn, the shift augmentation, and ONNX export parity."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from sklearn.metrics import confusion_matrix as sk_cm
from sklearn.metrics import f1_score

from harness.config import compose
from harness.errors import HarnessError
from harness.export.onnx import check_parity, export_onnx, onnx_session
from harness.models.cnn import build_model
from harness.training.loop import random_shift
from harness.training.metrics import accuracy, confusion_matrix, macro_f1


def test_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 500)
    p = np.where(rng.random(500) < 0.8, y, rng.integers(0, 10, 500))
    cm = confusion_matrix(y, p, 10)
    np.testing.assert_array_equal(cm, sk_cm(y, p, labels=range(10)))
    assert accuracy(y, p) == pytest.approx(np.mean(y == p))
    assert macro_f1(cm) == pytest.approx(f1_score(y, p, average="macro"))


def test_random_shift_moves_content_without_changing_it():
    x = torch.zeros(64, 1, 28, 28)
    x[:, 0, 10:18, 10:18] = torch.rand(64, 8, 8) + 0.5
    g = torch.Generator().manual_seed(0)
    y = random_shift(x, 2, g)
    assert y.shape == x.shape
    assert torch.allclose(y.sum((1, 2, 3)), x.sum((1, 2, 3)))  # nothing falls off the canvas
    assert not torch.equal(x, y)
    assert torch.equal(random_shift(x, 0, g), x)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(random_shift(x, 2, g1), random_shift(x, 2, g2))


@pytest.fixture(scope="module")
def small():
    cfg = compose(["model.channels=4", "model.hidden=16"])
    torch.manual_seed(0)
    return cfg, build_model(cfg.model).eval()


def test_export_contract_and_parity(tmp_path, small):
    cfg, model = small
    path = export_onnx(cfg, model, path=tmp_path / "m" / "model.onnx")
    m = onnx.load(str(path))
    assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) >= 17
    (inp,) = m.graph.input
    (out,) = m.graph.output
    assert inp.name == "images" and out.name == "logits"
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 28, 28]
    sess = onnx_session(path)
    for n in (1, 7):
        x = np.random.default_rng(n).random((n, 1, 28, 28), dtype=np.float32)
        got = sess.run(None, {"images": x})[0]
        ref = model(torch.from_numpy(x)).detach().numpy()
        assert got.shape == (n, 10) and np.abs(got - ref).max() <= 1e-5
    assert list(tmp_path.joinpath("m").iterdir()) == [path]  # no temp file left


def test_parity_failure_is_detected(tmp_path, small):
    cfg, model = small
    path = export_onnx(cfg, model, path=tmp_path / "model.onnx")
    other = build_model(cfg.model).eval()  # different weights: parity must fail
    with pytest.raises(HarnessError, match="ONNX parity failed"):
        check_parity(cfg, other, path)
