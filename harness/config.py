"""Hydra composition: configs/ is the single source of truth; overrides come from the CLI."""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from hydra import compose as _compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, ListConfig, OmegaConf

from harness.errors import HarnessError
from harness.paths import CONFIG_DIR, FIXTURES_DIR

# `${harness_fixtures:}` in configs/: the repository's fixtures/, or the wheel's copy of them.
if not OmegaConf.has_resolver("harness_fixtures"):
    OmegaConf.register_new_resolver("harness_fixtures", lambda: str(FIXTURES_DIR))


# Overrides applied to every compose() of this process before its own ones: set by the
# conformance plugin from --verify-overrides, so library code the checks call sees them too.
session_overrides: list[str] = []


SCHEMA_NAME = "schema.yaml"  # configs/schema.yaml: multi-typed keys and value ranges
# Type names of configs/schema.yaml and of the messages, with what each accepts.
TYPES: dict[str, tuple[type, ...]] = {
    "bool": (bool,),
    "int": (int,),
    "float": (int, float),  # `train.lr=1` is a fine float
    "str": (str, int, float),  # `model.name=123` parses as an int; it means the string
    "list": (list, ListConfig),
    "dict": (dict, DictConfig),
}


def _type_name(value: object) -> str:
    """The schema's name for the type of a config value ('int', 'list', ...)."""
    if isinstance(value, (list, ListConfig)):
        return "list"
    if isinstance(value, (dict, DictConfig)):
        return "dict"
    return type(value).__name__


def _accepts(kind: str, value: object) -> bool:
    # bool is an int in Python; `train.epochs=true` is still a wrong type.
    return isinstance(value, TYPES[kind]) and (kind == "bool" or not isinstance(value, bool))


@functools.lru_cache(maxsize=4)
def load_schema(config_dir: str) -> dict[str, dict[str, Any]]:
    """configs/schema.yaml as {'types': {key: [type names]}, 'ranges': {key: bounds}}."""
    path = Path(config_dir) / SCHEMA_NAME
    data = yaml.safe_load(path.read_text()) if path.is_file() else None
    data = data or {}
    return {"types": dict(data.get("types") or {}), "ranges": dict(data.get("ranges") or {})}


def _show(value: object) -> str:
    if isinstance(value, (ListConfig, DictConfig)):
        value = OmegaConf.to_container(value)
    return (
        "null" if value is None else str(value).lower() if isinstance(value, bool) else repr(value)
    )


def range_problem(value: object, bounds: dict[str, Any]) -> str | None:
    """What `value` breaks of `bounds` (min/max/gt/lt/choices), as 'expected ...'; None: fine."""
    if value is None:
        return None
    if "choices" in bounds:
        if value not in bounds["choices"]:
            return "expected one of " + ", ".join(str(c) for c in bounds["choices"])
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "expected a number"
    # Lower bounds first: "expected a value > 0 and <= 100".
    tests = {"min": (">=", operator.ge), "gt": (">", operator.gt)}
    tests |= {"max": ("<=", operator.le), "lt": ("<", operator.lt)}
    broken = [k for k, (_, ok) in tests.items() if k in bounds and not ok(value, bounds[k])]
    if not broken:
        return None
    wanted = [f"{sign} {bounds[k]}" for k, (sign, _) in tests.items() if k in bounds]
    return "expected a value " + " and ".join(wanted)


def _is_group(key: str) -> bool:
    return (CONFIG_DIR / key.replace(".", "/")).is_dir()


def _select(cfg: DictConfig, key: str) -> tuple[bool, object]:
    """(present, resolved value) of a dotted key; a key below a non-mapping is absent."""
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, DictConfig) or part not in node:
            return False, None
        node = node[part]
    if isinstance(node, (DictConfig, ListConfig)):
        return True, node
    return True, OmegaConf.select(cfg, key)


def check_overrides(
    base: DictConfig, final: DictConfig, overrides: Sequence[Override], schema: dict
) -> None:
    """Raise HarnessError naming key, value and expectation for the first ill-typed override."""
    for ov in overrides:
        key, line = ov.key_or_group, ov.input_line
        if ov.is_sweep_override() or ov.is_delete() or ov.package or _is_group(key):
            continue
        present, default = _select(base, key)
        if ov.is_add() or ov.is_force_add():
            if present and ov.is_add():
                raise HarnessError(f"invalid configuration override {line}: {key} exists already")
            continue
        if not present:
            parent = key.rpartition(".")[0]
            has = _select(base, parent)[1] if parent else base
            if isinstance(has, DictConfig):
                known = ", ".join(str(k) for k in has)
                where = f"{parent} has: {known}" if parent else f"top-level keys: {known}"
                where += f"; '+{line}' adds a new key"
            else:
                where = f"{parent} is {_type_name(has)} {_show(has)}, not a mapping"
            raise HarnessError(
                f"invalid configuration override {line}: no key {key} in the configuration "
                f"({where})"
            )
        value = _select(final, key)[1]
        kinds = schema["types"].get(key) or ([] if default is None else [_type_name(default)])
        if value is not None and kinds and not any(_accepts(k, value) for k in kinds):
            raise HarnessError(
                f"invalid configuration override {line}: {key} expects "
                f"{' or '.join(kinds)} (default {_show(default)}), got {_type_name(value)} "
                f"{_show(value)}"
            )
        if isinstance(default, ListConfig) and isinstance(value, ListConfig) and len(default):
            # A list of numbers stays a list of numbers: `perf.sweep=[1,a]` fails here.
            kind = _type_name(default[0])
            if kind in TYPES and all(_accepts(kind, d) for d in default):
                bad = [v for v in value if v is not None and not _accepts(kind, v)]
                if bad:
                    raise HarnessError(
                        f"invalid configuration override {line}: {key} expects a list of "
                        f"{kind} (default {_show(default)}), got {_show(bad[0])}"
                    )


def check_ranges(cfg: DictConfig, overridden: set[str], schema: dict) -> None:
    """Raise HarnessError for the first schema range a composed value breaks."""
    for key, bounds in schema["ranges"].items():
        present, value = _select(cfg, key)
        problem = range_problem(value, bounds) if present else None
        if problem:
            what = "override" if key in overridden else "value (from configs/)"
            raise HarnessError(f"invalid configuration {what} {key}={_show(value)}: {problem}")


def _hydra_message(exc: Exception) -> str:
    # Hydra spreads one reason over several lines ("Could not find 'model/x'\nAvailable ...").
    lines = []
    for line in str(exc).strip().splitlines():
        if line.startswith(("Config search path", "See https://hydra.cc")):
            break
        lines.append(line.strip())
    text = "; ".join(ln for ln in lines[:4] if ln)
    return re.sub(r":;", ":", text) if text else type(exc).__name__


def _compose_hydra(overrides: list[str], config_name: str) -> DictConfig:
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return _compose(config_name=config_name, overrides=overrides)
    except Exception as exc:  # hydra raises several unrelated types for a bad override
        raise HarnessError(f"invalid configuration override: {_hydra_message(exc)}") from exc


@functools.lru_cache(maxsize=8)
def _base_config(groups: tuple[str, ...], config_name: str, config_dir: str) -> DictConfig:
    # Only read (never returned): one composition per group selection per process is enough.
    return _compose_hydra(list(groups), config_name)


def compose(overrides: Sequence[str] = (), config_name: str = "config") -> DictConfig:
    """Compose configs/<config_name>.yaml with Hydra overrides; bad overrides raise HarnessError.

    Every override is checked before any work starts: its key exists, its value has the type of
    the key's default (or one configs/schema.yaml allows), and values stay in the schema's ranges.
    """
    if not (CONFIG_DIR / f"{config_name}.yaml").is_file():
        raise HarnessError(f"no {config_name}.yaml in the config folder {CONFIG_DIR}")
    overrides = [*session_overrides, *overrides]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as exc:
        raise HarnessError(f"invalid configuration override: {_hydra_message(exc)}") from exc
    values = [o for o in parsed if not _is_group(o.key_or_group) and not o.is_delete()]
    # The defaults the values are checked against: the same config groups, no value overrides.
    groups = [o.input_line for o in parsed if o not in values]
    base = _base_config(tuple(groups), config_name, str(CONFIG_DIR)) if values else None
    if base is not None:
        # Unknown keys first: Hydra's own message does not say what the key's parent holds.
        check_overrides(base, base, [o for o in values if not o.is_add()], {"types": {}})
    cfg = _compose_hydra(overrides, config_name)
    schema = load_schema(str(CONFIG_DIR))
    if base is not None:
        check_overrides(base, cfg, values, schema)
    check_ranges(cfg, {o.key_or_group for o in values}, schema)
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


def plain(cfg: DictConfig | None, key: str, default: Any = None) -> Any:
    """The value at dotted `key` as plain Python (containers resolved); `default` when absent."""
    if cfg is None:
        return default
    value = OmegaConf.select(cfg, key, default=default)
    if isinstance(value, DictConfig) or OmegaConf.is_list(value):
        return OmegaConf.to_container(value, resolve=True)
    return value
