"""The external Triton tier skips only for a refusal it expects, and fails for anything else."""

from __future__ import annotations

import pytest

from harness.config import compose
from harness.services.base import free_port
from harness.services.triton import make_triton
from harness.serving.golden import make_fixture_repository
from harness.testing.fixtures_triton import _load_fixture_model_externally, external_load_refusal

pytestmark = pytest.mark.integration


class _Unreachable:
    """An "external" server whose address answers nothing (a typo in --triton-url, say)."""

    http_address = f"127.0.0.1:{free_port()}"
    models: list[str] = []


def test_a_server_not_in_explicit_mode_skips_with_its_reason(tmp_path) -> None:
    cfg = compose(["triton.server.model_control_mode=poll"])
    repo = make_fixture_repository(cfg, tmp_path / "repo")
    with make_triton(cfg, "local", repo, work_dir=tmp_path / "w") as server:
        with pytest.raises(pytest.skip.Exception, match="not in explicit model-control mode"):
            _load_fixture_model_externally(cfg, server)


def test_an_unreachable_server_fails_instead_of_skipping() -> None:
    with pytest.raises(Exception) as info:
        _load_fixture_model_externally(compose([]), _Unreachable())
    assert not isinstance(info.value, pytest.skip.Exception), info.value


def test_only_known_refusals_are_expected() -> None:
    assert external_load_refusal(
        "failed to load 'x': unable to find backend library for backend 'onnxruntime'"
    )
    assert external_load_refusal("load failed: model config is invalid") is None
    assert external_load_refusal("") is None
