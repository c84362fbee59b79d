"""The wheel works outside this repository: built, installed into a fresh virtual environment,
run from an empty folder (`harness` commands and `pytest --pyargs harness.conformance`).

Takes ~3.5 min here (the install is ~2.7 min with pip's cache warm from scripts/setup.sh).
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.cli import COMMANDS
from harness.paths import ROOT

pytestmark = pytest.mark.integration


def _run(argv: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "HARNESS_"))}
    env["PATH"] = f"{Path(argv[0]).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert (
        proc.returncode == 0
    ), f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """bin/ of a fresh venv holding only the built wheel and its runtime dependencies."""
    base = tmp_path_factory.mktemp("wheel")
    _ok(
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                str(ROOT),
                "--no-deps",
                "-q",
                "-w",
                str(base / "dist"),
            ],
            cwd=base,
        )
    )
    (wheel,) = (base / "dist").glob("mlops_harness-*.whl")
    # the interpreter the project's venv was made from, not the venv itself
    base_python = str(Path(sys.base_prefix) / "bin" / "python3")
    _ok(_run([base_python, "-m", "venv", str(base / "venv")], cwd=base))
    pip = [
        str(base / "venv" / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
        "--no-compile",  # byte-compiling torch & co. is most of the install's CPU time
    ]
    _ok(_run(pip + ["-U", "pip>=25"], cwd=base))
    _ok(_run(pip + ["-c", str(ROOT / "constraints.txt"), str(wheel)], cwd=base, timeout=900))
    return base / "venv" / "bin"


@pytest.fixture
def empty(tmp_path) -> Path:
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder


def test_the_wheel_carries_configs_fixtures_and_the_plugin(installed, empty):
    py = str(installed / "python")
    out = _ok(
        _run(
            [
                py,
                "-c",
                (
                    "import harness, harness.paths as p, importlib.metadata as m\n"
                    "assert not p.CHECKOUT, p.ROOT\n"
                    "onnx = p.FIXTURES_DIR / 'triton' / 'model.onnx'\n"
                    "print(p.CONFIG_DIR.is_relative_to(p.PACKAGE_DIR), onnx.is_file())\n"
                    "eps = m.entry_points(group='pytest11')\n"
                    "print([e.value for e in eps if e.name == 'harness'])"
                ),
            ],
            cwd=empty,
        )
    ).stdout.split("\n")
    assert out[0] == "True True", out
    assert out[1] == "['harness.conformance.plugin']"
    # Loading the plugin stays cheap: no torch, tritonclient or boto3 on import.
    _ok(
        _run(
            [
                py,
                "-c",
                (
                    "import sys, harness.conformance.plugin\n"
                    "heavy = {'torch', 'tritonclient', 'boto3', 'onnxruntime'} & set(sys.modules)\n"
                    "assert not heavy, heavy"
                ),
            ],
            cwd=empty,
        )
    )


def test_every_command_answers_help_without_dev_extras(installed, empty):
    for name in COMMANDS:
        _ok(_run([str(installed / "harness"), name, "--help"], cwd=empty, timeout=120))


def test_files_build_from_an_empty_folder(installed, empty):
    proc = _ok(
        _run([str(installed / "harness"), "files", "build", "pool", "--count", "5"], cwd=empty)
    )
    assert "5 files" in proc.stdout
    assert len((empty / "pool" / "SHA256SUMS").read_text().splitlines()) == 5


def test_verify_inference_and_the_pytest_plugin_from_an_empty_folder(
    installed, empty, triton_server, triton_model, triton_golden
):
    onnx = empty / "model.onnx"
    onnx.write_bytes(triton_golden.model_path.read_bytes())
    common = ["--url", triton_server.url, "--model", triton_model, "--onnx", str(onnx)]
    proc = _run(
        [str(installed / "harness"), "verify", "inference", *common, "-k", "not latency"], cwd=empty
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASS outputs_match_reference[seeded]" in proc.stdout
    xml = empty / "checks.xml"
    proc = _run(
        [
            str(installed / "pytest"),
            "--pyargs",
            "harness.conformance.test_inference",
            f"--verify-url={triton_server.url}",
            f"--verify-model={triton_model}",
            f"--verify-onnx={onnx}",
            "-k",
            "not latency",
            f"--junitxml={xml}",
            "-q",
        ],
        cwd=empty,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    cases = ET.parse(xml).getroot().iter("testcase")
    names = {c.get("name") for c in cases}
    assert {"test_metadata_matches_reference", "test_batch_invariance"} <= names, names
