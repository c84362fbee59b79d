"""The README's commands: read from its code blocks, classified, mapped onto local servers.

tests/unit/test_readme.py checks every command against the real CLI (a README that drifts from
the CLI fails the build); tests/integration/test_readme_commands.py runs those that can run here,
as written but for the server addresses, which are mapped onto servers the tests start.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"

# Commands not run by the README test, each with the reason (a regular expression each).
NOT_RUN: dict[str, str] = {
    r"^make test$": "it is the suite itself (CI's .ci/run)",
    r"^make demo$": "runs end to end in CI's make target / the demo tests (minutes)",
    r"^pip install mlops-harness$": "not on PyPI: test_wheel_install.py builds and installs "
    "the wheel",
    r"^docker ": "no Docker engine on these machines (the compose file is validated offline)",
    r"^pytest -m integration --backend docker$": "no Docker engine",
    r"^harness (export|convert)$": "the Docker flow's first step; covered by test_pipeline / "
    "test_embeddings_convert",
    r"^harness files build \.work/files/pool --count 300$": "the Docker flow's pool; covered by "
    "test_files_pool",
    r"^harness verify inference --targets targets\.yaml": "the README's targets name remote "
    "hosts; test_verify_inference runs a targets file on local servers, and the README's YAML "
    "is loaded by tests/unit/test_readme.py",
    r"^harness verify embeddings ": "needs the MiniLM conversions: test_verify_embeddings runs it "
    "against the served ensembles",
}


def bash_blocks(text: str | None = None) -> list[str]:
    """The bodies of the README's ```bash blocks."""
    text = README.read_text() if text is None else text
    return [body for lang, body in re.findall(r"```(\w*)\n(.*?)```", text, re.S) if lang == "bash"]


def yaml_blocks(text: str | None = None) -> list[str]:
    """The bodies of the README's ```yaml blocks."""
    text = README.read_text() if text is None else text
    return [body for lang, body in re.findall(r"```(\w*)\n(.*?)```", text, re.S) if lang == "yaml"]


def commands(text: str | None = None) -> list[str]:
    """Every command of the bash blocks: continuations joined, comments dropped, `&&` split."""
    out = []
    for body in bash_blocks(text):
        for line in body.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].split("# ", 1)[0] if not line.startswith("#") else ""
            for part in line.split("&&"):
                part = " ".join(part.split())
                if part:
                    out.append(part)
    return out


def without_optional(command: str) -> str:
    """`a [--b c] d` -> `a --b c d`: optional parts written in brackets, used."""
    return re.sub(r"\[([^\]]*)\]", r"\1", command)


def not_run_reason(command: str) -> str | None:
    """Why the README test does not run `command`, or None when it does."""
    for pattern, reason in NOT_RUN.items():
        if re.search(pattern, command):
            return reason
    return None


def argv(command: str, hosts: dict[str, str] | None = None) -> list[str]:
    """The command's words with README addresses (`triton:8000`, `/srv/pool`) replaced."""
    text = without_optional(command)
    for name, real in (hosts or {}).items():
        text = text.replace(name, real)
    return shlex.split(text)
