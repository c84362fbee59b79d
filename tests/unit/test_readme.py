"""The README's commands match the CLI: every `harness` command parses with the real parser,
every pytest option exists, every make target exists, every YAML example loads."""

from __future__ import annotations

import re

import pytest
import yaml

from harness.cli import build_parser
from harness.conformance.plugin import OPTIONS
from harness.paths import ROOT
from tests import readme


def test_the_readme_has_commands_to_check():
    assert len(readme.commands()) >= 15


@pytest.mark.parametrize("command", readme.commands())
def test_every_readme_command_matches_the_cli(command):
    words = readme.argv(command)
    if words[0] == "harness":
        parser, _ = build_parser(words[1:])
        try:
            parser.parse_args(words[1:])
        except SystemExit as exc:
            pytest.fail(f"README command does not parse: {command} (exit {exc.code})")
    elif words[0] == "pytest":
        for word in words[1:]:
            if word.startswith("--verify-"):
                assert word[2:].split("=")[0] in OPTIONS, f"{word}: no such plugin option"
    elif words[0] == "make":
        targets = re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M)
        assert words[1] in targets, f"make {words[1]}: no such target"
    else:
        assert readme.not_run_reason(command), f"unclassified README command: {command}"


def test_every_command_not_run_has_a_reason_and_every_reason_a_command():
    cmds = readme.commands()
    for pattern in readme.NOT_RUN:
        assert any(re.search(pattern, c) for c in cmds), f"stale NOT_RUN entry: {pattern}"


def test_the_targets_example_loads(tmp_path):
    from harness.verify.inference import load_targets

    (example,) = [b for b in readme.yaml_blocks() if b.startswith("defaults:")]
    path = tmp_path / "targets.yaml"
    path.write_text(example)
    targets = load_targets(path)
    assert [t.name for t in targets] == [t["name"] for t in yaml.safe_load(example)["targets"]]
