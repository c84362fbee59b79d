"""`harness verify embeddings` as a user runs it, against the project's served MiniLM ensembles.

One Triton for the module serves the fp32, fp16 and int8 ensembles (conversions come from the
cache after the first run); each ensemble must pass at its own precision, the int8 one must fail
the oracle check when judged as fp32, and bad targets are one line with a non-zero exit.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from harness.services.base import free_port
from harness.testing.fixtures_embeddings import embeddings_server
from tests.integration._cli import harness, ok

pytestmark = pytest.mark.integration

# format (configs/embed formats) -> the precision it is verified at
FORMATS = {"onnx": "fp32", "fp16": "fp16", "int8": "int8"}
CHECKS = {
    "server_live",
    "server_ready",
    "model_ready",
    "metadata",
    "embeddings_match_oracle",
    "normalised",
    "batch_invariance",
    "deterministic",
    "bad_input_is_refused[empty_batch]",
    "bad_input_is_refused[wrong_datatype]",
}
LINE = re.compile(r"^  (PASS|FAIL|SKIP) (\S+)(?:: (.*))?$")


@pytest.fixture(scope="module")
def server(
    embed_cfg, triton_backend, triton_url, triton_grpc_url, tmp_path_factory
) -> Iterator[Any]:
    """One Triton serving the tokenizer and the fp32, fp16 and int8 models with their ensembles."""
    from harness.embeddings.convert import convert_formats
    from harness.embeddings.repository import write_configs

    write_configs(embed_cfg.embed)
    convert_formats(embed_cfg, list(FORMATS))
    with embeddings_server(
        embed_cfg,
        list(FORMATS),
        triton_backend,
        http_url=triton_url,
        grpc_url=triton_grpc_url,
        work_dir=tmp_path_factory.mktemp("verify_embed_triton"),
    ) as srv:
        yield srv


def model(cfg: Any, fmt: str) -> str:
    """The text-in ensemble of a format."""
    from harness.embeddings.repository import ensemble_name

    return ensemble_name(cfg.embed, fmt)


def verify(server: Any, name: str, *args: str) -> Any:
    """`harness verify embeddings --url ... --model name ARGS` in a subprocess."""
    return harness("verify", "embeddings", "--url", server.http_address, "--model", name, *args)


def outcomes(stdout: str) -> dict[str, tuple[str, str]]:
    """check -> (PASS|FAIL|SKIP, message) from the one-line-per-check summary."""
    found = {}
    for line in stdout.splitlines():
        m = LINE.match(line)
        if m:
            found[m.group(2)] = (m.group(1), m.group(3) or "")
    return found


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_each_served_precision_passes(server, embed_cfg, fmt, tmp_path):
    report = tmp_path / "verify.md"
    proc = ok(
        verify(server, model(embed_cfg, fmt), "--precision", FORMATS[fmt], "--report", str(report))
    )
    got = outcomes(proc.stdout)
    assert set(got) == CHECKS, proc.stdout
    assert {o for o, _ in got.values()} == {"PASS"}, proc.stdout
    text = report.read_text()
    assert "**PASS**" in text and "| oracle_max_abs |" in text and "| sentences | 59 |" in text


def test_int8_judged_as_fp32_fails_the_oracle_check(server, embed_cfg):
    proc = verify(server, model(embed_cfg, "int8"), "--precision", "fp32")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    got = outcomes(proc.stdout)
    failed = {name: msg for name, (o, msg) in got.items() if o == "FAIL"}
    assert set(failed) == {"embeddings_match_oracle"}, proc.stdout
    # which sentence, which metric, the value against the threshold
    limit = f"{float(embed_cfg.embed.thresholds.exact_max_abs):g}"  # the fp32 threshold
    line = failed["embeddings_match_oracle"]
    assert re.search(rf"sentence \d+ .*max \|Δ\| \S+ > {re.escape(limit)}", line), line
    assert "Traceback" not in proc.stdout + proc.stderr


def test_a_users_sentences_file(server, embed_cfg, tmp_path):
    sentences = tmp_path / "mine.txt"
    sentences.write_text(
        "# my own queries\n"
        "The cat sleeps on the sofa.\n"
        "A kitten naps on the couch.\n"
        "Stock markets fell sharply today.\n"
        "Shares dropped steeply this morning.\n"
        "How do I reset my password?\n"
        "I forgot my password, how can I change it?\n",
        encoding="utf-8",
    )
    report = tmp_path / "verify.md"
    args = ["--precision", "int8", "--sentences", str(sentences), "--report", str(report)]
    proc = ok(verify(server, model(embed_cfg, "int8"), *args))
    assert {o for o, _ in outcomes(proc.stdout).values()} == {"PASS"}, proc.stdout
    assert "| sentences | 6 |" in report.read_text()


def test_model_that_does_not_exist(server):
    proc = verify(server, "minilm-does-not-exist")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    got = outcomes(proc.stdout)
    failed = [line for line in proc.stdout.splitlines() if line.startswith("  FAIL")]
    assert len(failed) == 1 and got["model_ready"][0] == "FAIL", proc.stdout
    assert "minilm-does-not-exist" in got["model_ready"][1]
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--url", "127.0.0.1:{port}", "--model", "m"], "cannot reach"),
        (["--url", "127.0.0.1:{port}", "--model", "m", "--sentences", "/no/such.txt"], "sentences"),
    ],
)
def test_bad_target_is_one_line(args, message):
    proc = harness("verify", "embeddings", *[a.format(port=free_port()) for a in args])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
