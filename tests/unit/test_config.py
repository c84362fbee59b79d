"""configs/ composes, overrides apply, and bad overrides are user errors."""

from __future__ import annotations

import pytest

from harness.config import compose, to_flat_dict
from harness.errors import HarnessError
from harness.paths import ROOT, resolve


def test_default_config_composes_every_group() -> None:
    cfg = compose()
    for group in ("data", "model", "train", "export", "logging", "serve", "triton", "perf"):
        assert group in cfg
    assert cfg.export.path.startswith(cfg.paths.model_repository)
    assert cfg.model.name in cfg.export.path


def test_overrides_change_values() -> None:
    cfg = compose(["model.channels=7", "seed=123"])
    assert cfg.model.channels == 7
    assert cfg.seed == 123


@pytest.mark.parametrize("override", ["no_such_group=foo", "model.no_such_key=1", "=="])
def test_bad_overrides_raise_harness_error(override: str) -> None:
    with pytest.raises(HarnessError, match="invalid configuration override"):
        compose([override])


def test_flat_dict_has_dotted_keys() -> None:
    flat = to_flat_dict(compose(["model.channels=9"]))
    assert flat["model.channels"] == 9
    assert all("." in k or k in ("seed", "resume") for k in flat)


def test_relative_paths_resolve_from_repo_root(tmp_path) -> None:
    assert resolve("configs") == ROOT / "configs"
    assert resolve(tmp_path) == tmp_path
