"""Overrides are typed: a wrong type, an unknown key or a value out of range names the key."""

from __future__ import annotations

import pytest
from omegaconf import DictConfig

from harness.config import compose, load_schema, range_problem
from harness.errors import HarnessError
from harness.paths import CONFIG_DIR

# override -> what the one-line error must also say (besides the key and the value)
BAD = {
    # train
    "train.epochs=abc": "expects int",
    "train.epochs=1.5": "expects int",
    "train.epochs=true": "expects int",
    "train.epochs=0": ">= 1",
    "train.lr=abc": "expects float",
    "train.lr=0": "> 0",
    "train.momentum=1.5": "<= 1",
    "train.optimizer=rmsprop": "one of adam, sgd",
    "train.progress=yes": "expects bool",
    "train.stop_after_epoch=abc": "a number",
    "model.dropout=1": "< 1",
    "model.channels=[16]": "expects int",
    # files build / verify
    "files.pool.count=-1": ">= 0",
    "files.pool.count=many": "expects int",
    "files.pool.fanout=[8,x]": "list of int",
    "files.verify.jobs=0": ">= 1",
    "files.server.port=70000": "<= 65535",
    # tune
    "triton.tune.concurrency=0": ">= 1",
    "triton.tune.concurrency_sweep=8": "expects list",
    "triton.tune.concurrency_sweep=[1,a]": "list of int",
    "triton.tune.batching=[yes]": "list of bool",
    "triton.tune.min_gain=-0.1": ">= 0",
    "triton.backend=podman": "one of local, docker, external",
    # unknown keys
    "train.epoch=3": "train has: epochs",
    "model.no_such_key=1": "+model.no_such_key=1",
    "no_such_group=foo": "top-level keys",
    "train.epochs.x=1": "not a mapping",
}


@pytest.mark.parametrize("override", list(BAD))
def test_bad_override_names_key_value_and_expectation(override: str) -> None:
    key, value = override.split("=", 1)
    with pytest.raises(HarnessError) as info:
        compose([override])
    msg = str(info.value)
    assert "\n" not in msg
    assert key in msg and value.strip("[]").split(",")[-1] in msg
    assert BAD[override] in msg, msg


@pytest.mark.parametrize(
    "override",
    [
        "train.lr=1",  # an int is a float
        "train.epochs=3",
        "resume=true",
        "resume=20250101T000000-epoch0003.ckpt",  # schema: bool or a checkpoint key
        "train.stop_after_epoch=2",  # default null: any type
        "train.stop_after_epoch=null",
        "model.name=123",  # a number where a string is meant
        "triton.tune.concurrency_sweep=[1,2]",
        "train.scheduler=none",
        "+brand_new.key=1",  # explicit additions are not checked against a default
        "data=mnist",  # a group choice
        "paths.work_dir=${oc.env:HOME}/w",  # an interpolation, checked once resolved
    ],
)
def test_good_overrides_pass(override: str) -> None:
    assert isinstance(compose([override]), DictConfig)


def test_types_follow_the_selected_group() -> None:
    """Defaults come from the same group selection as the override (data=mnist here)."""
    cfg = compose(["data=mnist", "data.val_fraction=0.2"])
    assert cfg.data.val_fraction == 0.2
    with pytest.raises(HarnessError, match=r"data.val_fraction=1.0: expected a value >= 0 and < 1"):
        compose(["data=mnist", "data.val_fraction=1.0"])


def test_bad_group_choice_lists_the_options() -> None:
    with pytest.raises(HarnessError, match="Could not find 'model/nope'.*options in 'model': cnn"):
        compose(["model=nope"])


def test_every_schema_key_exists_with_a_value_in_range() -> None:
    """A key renamed in configs/ must not silently drop its range; the defaults obey them."""
    schema = load_schema(str(CONFIG_DIR))
    cfg = compose()
    assert schema["ranges"] and schema["types"]
    for key in [*schema["ranges"], *schema["types"]]:
        node = cfg
        for part in key.split("."):
            assert (
                isinstance(node, DictConfig) and part in node
            ), f"schema key {key} not in configs/"
            node = node[part]
    for key, bounds in schema["ranges"].items():
        assert set(bounds) <= {"min", "max", "gt", "lt", "choices"}, key


@pytest.mark.parametrize(
    "value,bounds,problem",
    [
        (1, {"min": 1}, None),
        (0, {"min": 1}, "expected a value >= 1"),
        (0, {"gt": 0, "max": 100}, "expected a value > 0 and <= 100"),
        (100, {"gt": 0, "max": 100}, None),
        (1.0, {"min": 0, "lt": 1}, "expected a value >= 0 and < 1"),
        ("x", {"min": 0}, "expected a number"),
        (True, {"min": 0}, "expected a number"),
        (None, {"min": 0}, None),
        ("c", {"choices": ["a", "b"]}, "expected one of a, b"),
    ],
)
def test_range_problem(value: object, bounds: dict, problem: str | None) -> None:
    assert range_problem(value, bounds) == problem


def test_int_value_against_float_bound() -> None:
    assert range_problem(1, {"min": 1.5}) == "expected a value >= 1.5"
    assert range_problem(2, {"min": 1.5}) is None
