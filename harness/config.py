"""Hydra composition: configs/ is the single source of truth; overrides come from the CLI."""

from __future__ import annotations

from collections.abc import Sequence

from hydra import compose as _compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from harness.errors import HarnessError
from harness.paths import CONFIG_DIR, FIXTURES_DIR

# `${harness_fixtures:}` in configs/: the repository's fixtures/, or the wheel's copy of them.
if not OmegaConf.has_resolver("harness_fixtures"):
    OmegaConf.register_new_resolver("harness_fixtures", lambda: str(FIXTURES_DIR))


# Overrides applied to every compose() of this process before its own ones: set by the
# conformance plugin from --verify-overrides, so library code the checks call sees them too.
session_overrides: list[str] = []


def compose(overrides: Sequence[str] = (), config_name: str = "config") -> DictConfig:
    """Compose configs/<config_name>.yaml with Hydra overrides; bad overrides raise HarnessError."""
    overrides = [*session_overrides, *overrides]
    GlobalHydra.instance().clear()
    if not (CONFIG_DIR / f"{config_name}.yaml").is_file():
        raise HarnessError(f"no {config_name}.yaml in the config folder {CONFIG_DIR}")
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = _compose(config_name=config_name, overrides=list(overrides))
    except Exception as exc:  # hydra raises several unrelated types for a bad override
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HarnessError(f"invalid configuration override: {first}") from exc
    return cfg


def to_yaml(cfg: DictConfig) -> str:
    """Render a resolved config as YAML."""
    return OmegaConf.to_yaml(cfg, resolve=True)


def to_flat_dict(cfg: DictConfig) -> dict[str, object]:
    """Flatten a resolved config into dotted keys (for MLflow params)."""
    out: dict[str, object] = {}

    def walk(node: object, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            out[prefix[:-1]] = node

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return out
