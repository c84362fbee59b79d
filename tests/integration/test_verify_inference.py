"""`harness verify inference`, run as a user types it, against real servers nobody here wrote.

Correct deployments (the embedded tritonserver, PyTriton, MLServer, KServe's ModelServer) must
pass every check; deliberately faulty ones (tests/integration/oip/) must fail with the right
check named. Servers come from tests/integration/oip/fixtures.py.
"""

from __future__ import annotations

import re

import pytest

from harness.paths import ROOT
from harness.serving.golden import GOLDEN_DIR, load_golden
from harness.verify.inference import write_golden
from tests.integration._cli import conformance_pytest, harness
from tests.integration.oip.fixtures import CORRECT, FAULTY

pytestmark = pytest.mark.integration

ONNX = GOLDEN_DIR / "model.onnx"
CONFIG = ROOT / "model_repository" / "mnist-onnx" / "config.pbtxt"
MODEL = "mnist-onnx"
# Short load runs: the point here is the verdict, not the number.
LOAD = ["--duration", "2", "--concurrency", "4"]
# Correct deployments get a budget far above what they need (p99 ~5-60 ms here under load) and
# far below what the slow fault gives (>= 50 ms per request, queued: >= 100 ms at c=4).
P99_CORRECT_MS = "400"
P99_SLOW_MS = "20"
# fault -> the check that must fail on it
CAUGHT_BY = {
    "wrong_weights": "outputs_match_reference[seeded]",
    "swapped_rows": "batch_invariance",
    "wrong_dtype": "response_datatypes_match_metadata",
    "dies_on_bad_input": "rejects_bad_request[wrong_shape]",
    "slow": "latency_and_throughput",
}
# checks a correct server may skip, and why it may
ALLOWED_SKIPS = {
    "wire_format[http-binary]",  # MLServer/KServe/PyTriton? only Triton has binary tensors
    "triton_dynamic_batching",  # not Triton, or its statistics API restricted (PyTriton)
    "triton_instance_count",  # not Triton / no --config
    "rejects_bad_request[batch_above_max]",  # max_batch_size unknown without a config endpoint
}


def outcomes(stdout: str) -> dict[str, tuple[str, str]]:
    """check name -> (PASS|FAIL|SKIP, message) from the command's summary lines."""
    out = {}
    for line in stdout.splitlines():
        m = re.match(r"\s+(PASS|FAIL|SKIP) (\S+?)(?:: (.*))?$", line)
        if m:
            out[m.group(2)] = (m.group(1), m.group(3) or "")
    return out


def verify(server, *extra: str, onnx=ONNX):
    args = ["verify", "inference", "--url", server.url, "--model", MODEL]
    if onnx:
        args += ["--onnx", str(onnx)]
    if server.grpc_url:
        args += ["--grpc-url", server.grpc_url]
    return harness(*args, *LOAD, *extra, timeout=300)


@pytest.fixture(scope="module")
def golden_npz(tmp_path_factory):
    """The committed golden fixture in the documented layout (inputs/NAME, outputs/NAME)."""
    g = load_golden()
    path = tmp_path_factory.mktemp("golden") / "golden.npz"
    return write_golden(path, {"images": g.images}, {"logits": g.logits})


@pytest.mark.parametrize("kind", CORRECT)
def test_a_correct_deployment_passes_every_check(kind, oip_server, tmp_path):
    server = oip_server(kind)
    extra = ["--p99-ms", P99_CORRECT_MS, "--report", str(tmp_path / "report.md")]
    if kind == "triton":
        extra += ["--config", str(CONFIG)]
    proc = verify(server, *extra)
    checks = outcomes(proc.stdout)
    failed = {k: v[1] for k, v in checks.items() if v[0] == "FAIL"}
    assert proc.returncode == 0 and not failed, f"{kind}: {failed}\n{proc.stdout}{proc.stderr}"
    skipped = {k for k, v in checks.items() if v[0] == "SKIP"} - {
        "outputs_match_reference[golden]"  # no --golden in this run
    }
    assert skipped <= ALLOWED_SKIPS, f"{kind} skipped {skipped - ALLOWED_SKIPS}"
    if kind == "triton":  # every Triton extra ran
        assert not skipped, skipped
    assert len([v for v in checks.values() if v[0] == "PASS"]) >= 14, proc.stdout
    report = (tmp_path / "report.md").read_text()
    assert "result: **PASS**" in report and "p99_ms" in report


@pytest.mark.parametrize("fault", sorted(FAULTY))
def test_a_faulty_deployment_fails_the_right_check(fault, oip_server):
    server = oip_server(FAULTY[fault], fault)
    p99 = P99_SLOW_MS if fault == "slow" else P99_CORRECT_MS
    proc = verify(server, "--p99-ms", p99)
    checks = outcomes(proc.stdout)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    want = CAUGHT_BY[fault]
    assert (
        checks.get(want, ("missing",))[0] == "FAIL"
    ), f"{fault}: {want} did not fail\n{proc.stdout}"
    # the server itself is up and the model is found: the failure is the fault, not the setup
    assert checks["server_live_and_ready"][0] == "PASS"
    assert checks["metadata_matches_reference"][0] == "PASS"
    assert "Traceback" not in proc.stdout + proc.stderr


def test_golden_reference_on_a_server_without_binary_tensors(oip_server, golden_npz):
    server = oip_server("mlserver")
    proc = harness(
        "verify", "inference", "--url", server.url, "--model", MODEL, "--golden",
        str(golden_npz), "-k", "not latency", timeout=300,
    )  # fmt: skip
    checks = outcomes(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert checks["outputs_match_reference[golden]"][0] == "PASS"
    assert checks["outputs_match_reference[seeded]"][0] == "SKIP"
    assert checks["wire_format[http-binary]"][0] == "SKIP"


def test_wrong_reference_fails_with_the_first_differing_element(oip_server, tmp_path):
    """A golden file whose expected outputs are off names element, index and both values."""
    g = load_golden()
    logits = g.logits.copy()
    logits[3, 7] += 0.5
    bad = write_golden(tmp_path / "bad.npz", {"images": g.images}, {"logits": logits})
    proc = harness(
        "verify", "inference", "--url", oip_server("triton").url, "--model", MODEL,
        "--golden", str(bad), "-k", "golden", timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1
    line = outcomes(proc.stdout)["outputs_match_reference[golden]"][1]
    assert line.startswith("golden inputs: output 'logits'[3, 7] = "), line
    assert "expected" in line and "1 of 320 elements differ" in line


def test_a_fleet_from_a_targets_file_in_parallel(oip_server, tmp_path):
    """Two servers, one targets file, pytest-xdist workers: every check per target."""
    triton, pytriton = oip_server("triton"), oip_server("pytriton")
    (tmp_path / "targets.yaml").write_text(
        f"defaults: {{model: {MODEL}, onnx: {ONNX}, p99_ms: {P99_CORRECT_MS}, duration_s: 2}}\n"
        "targets:\n"
        f"  - {{name: triton, url: '{triton.url}', grpc_url: '{triton.grpc_url}', "
        f"config: {CONFIG}}}\n"
        f"  - {{name: pytriton, url: '{pytriton.url}'}}\n"
    )
    proc = harness(
        "verify", "inference", "--targets", str(tmp_path / "targets.yaml"), "--jobs", "2",
        timeout=300,
    )  # fmt: skip
    checks = outcomes(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("triton", "pytriton"):
        assert checks[f"outputs_match_reference[{name}-seeded]"][0] == "PASS"
        assert checks[f"latency_and_throughput[{name}]"][0] == "PASS"


def test_the_pytest_plugin_runs_the_same_checks(oip_server, tmp_path):
    """`pytest --pyargs harness.conformance` from an empty folder, JUnit XML out."""
    server = oip_server("kserve")
    xml = tmp_path / "junit.xml"
    proc = conformance_pytest(
        f"--verify-url={server.url}",
        f"--verify-model={MODEL}",
        f"--verify-onnx={ONNX}",
        "-k",
        "test_inference and not latency",
        f"--junitxml={xml}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert 'name="test_batch_invariance"' in xml.read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--url", "127.0.0.1:9", "--model", MODEL, "--onnx", str(ONNX)], "cannot reach"),
        (["--url", "127.0.0.1:9", "--model", MODEL], "needs a reference"),
        (
            ["--url", "127.0.0.1:9", "--model", MODEL, "--onnx", "/nonexistent.onnx"],
            "does not exist",
        ),
        (["--url", "ftp://x", "--model", MODEL, "--onnx", str(ONNX)], "not an http"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message):
    proc = harness("verify", "inference", *args, timeout=60)
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_unknown_model_fails_ready_and_metadata_in_one_line_each(oip_server):
    server = oip_server("triton")
    proc = harness(
        "verify", "inference", "--url", server.url, "--model", "no-such-model", "--onnx",
        str(ONNX), "-k", "ready or metadata", timeout=120,
    )  # fmt: skip
    checks = outcomes(proc.stdout)
    assert proc.returncode == 1
    assert checks["model_ready"][0] == "FAIL" and "no-such-model" in checks["model_ready"][1]
    assert checks["metadata_matches_reference"][0] == "FAIL"
