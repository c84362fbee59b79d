"""`harness verify s3` run as a user runs it, against the local S3 service with authentication on.

Setups: the service itself (every check passes), the service behind a proxy that flips or drops
bytes of large bodies (the integrity checks fail by name), a bucket whose policy lets anyone read
(the anonymous-read check fails), and the usage errors (one line, non-zero exit).
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.integration._cli import conformance_pytest, harness
from tests.integration._corrupting_proxy import CorruptingProxy

pytestmark = pytest.mark.integration

CHECKS = [
    "round_trip_single_put",
    "round_trip_multipart",
    "checkpoint_resume_after_cut",
    "wrong_credentials_refused",
    "anonymous_read_refused",
    "throughput",
]
INTEGRITY = [
    "round_trip_single_put",
    "round_trip_multipart",
    "checkpoint_resume_after_cut",
    "throughput",
]
# The proxy damages only bodies this large: listings, errors and the 1 KiB probe pass untouched.
DAMAGE_FROM_BYTES = 64 * 1024
VERIFY_BUCKET = "harness-verify"
PUBLIC_BUCKET = "harness-verify-public"


def outcomes(stdout: str) -> dict[str, str]:
    """check name -> 'PASS: ...' / 'FAIL: message' from the summary lines."""
    found = {}
    for line in stdout.splitlines():
        m = re.match(r"\s+(PASS|FAIL|SKIP) (\S+)(?:: (.*))?$", line)
        if m:
            found[m.group(2)] = f"{m.group(1)}: {m.group(3) or ''}"
    return found


def verify(endpoint: str, bucket: str, env: dict[str, str], *extra: str):
    return harness("verify", "s3", "--endpoint", endpoint, "--bucket", bucket, *extra, env=env)


def assert_quiet_about_secrets(env: dict[str, str], *texts: str) -> None:
    secret = env["AWS_SECRET_ACCESS_KEY"]
    assert all(secret not in t for t in texts), "the secret key was printed"


@pytest.fixture(scope="module")
def verify_bucket(s3_service) -> str:
    s3_service.client(VERIFY_BUCKET)
    return VERIFY_BUCKET


def test_local_service_passes_every_check(s3_service, s3_env, verify_bucket, tmp_path):
    assert s3_service.authenticates, "the local S3 service should run with authentication on"
    report = tmp_path / "s3.md"
    r = verify(s3_env["S3_ENDPOINT_URL"], verify_bucket, s3_env, "--report", str(report))
    assert r.returncode == 0, r.stdout + r.stderr
    got = outcomes(r.stdout)
    assert list(got) == CHECKS and all(v.startswith("PASS") for v in got.values()), r.stdout
    text = report.read_text()
    assert "**PASS**: 6 passed" in text
    assert re.search(r"\| s3 put MB/s \| [\d,.]+ \|", text) and "s3 get MB/s" in text
    assert_quiet_about_secrets(s3_env, r.stdout, r.stderr, text)
    # the run cleaned up after itself
    assert s3_service.client(verify_bucket).list_keys("harness-verify/") == []


@pytest.mark.parametrize("mode", ["corrupt", "truncate"])
def test_damaging_proxy_fails_the_integrity_checks(s3_service, s3_env, verify_bucket, mode):
    with CorruptingProxy(s3_env["S3_ENDPOINT_URL"], mode, DAMAGE_FROM_BYTES) as proxy:
        r = verify(proxy.url, verify_bucket, s3_env)
        assert proxy.damaged > 0
    assert r.returncode == 1, r.stdout + r.stderr
    got = outcomes(r.stdout)
    assert set(got) == set(CHECKS), r.stdout
    for name in INTEGRITY:
        line = got[name]
        assert line.startswith("FAIL: "), (name, line)
        # one line naming the object and the endpoint it came from
        assert f"s3://{verify_bucket}/harness-verify/" in line and proxy.url in line, line
    expect = "sha256" if mode == "corrupt" else "short read"
    assert expect in got["round_trip_single_put"] and expect in got["round_trip_multipart"]
    assert "is corrupted" in got["checkpoint_resume_after_cut"] or mode == "truncate"
    assert got["wrong_credentials_refused"].startswith("PASS")
    assert got["anonymous_read_refused"].startswith("PASS")
    assert_quiet_about_secrets(s3_env, r.stdout, r.stderr)


def test_public_bucket_fails_the_anonymous_read_check(s3_service, s3_env):
    client = s3_service.client(PUBLIC_BUCKET)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": ["s3:GetObject", "s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{PUBLIC_BUCKET}", f"arn:aws:s3:::{PUBLIC_BUCKET}/*"],
            }
        ],
    }
    client.raw.put_bucket_policy(Bucket=PUBLIC_BUCKET, Policy=json.dumps(policy))
    r = verify(s3_env["S3_ENDPOINT_URL"], PUBLIC_BUCKET, s3_env)
    assert r.returncode == 1, r.stdout + r.stderr
    got = outcomes(r.stdout)
    line = got["anonymous_read_refused"]
    assert line.startswith("FAIL: ") and "readable without credentials" in line, line
    assert f"anonymous GET of s3://{PUBLIC_BUCKET}/" in line and s3_env["S3_ENDPOINT_URL"] in line
    assert [n for n, v in got.items() if v.startswith("FAIL")] == ["anonymous_read_refused"]


def _one_line_error(r: subprocess.CompletedProcess, *needles: str) -> str:
    assert r.returncode not in (0, 1), r.stdout + r.stderr  # 2: usage or unreachable target
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in r.stderr, r.stderr
    assert all(n in err[0] for n in needles), err[0]
    return err[0]


def test_wrong_bucket_is_one_line(s3_env):
    r = verify(s3_env["S3_ENDPOINT_URL"], "no-such-bucket-here", s3_env)
    _one_line_error(r, "no-such-bucket-here", "does not exist", s3_env["S3_ENDPOINT_URL"])
    assert_quiet_about_secrets(s3_env, r.stdout, r.stderr)


def test_unreachable_endpoint_is_one_line(s3_env):
    from harness.services.base import free_port

    url = f"http://127.0.0.1:{free_port('127.0.0.1')}"
    _one_line_error(verify(url, VERIFY_BUCKET, s3_env), "cannot reach", url)


def test_missing_credentials_are_one_line(s3_env):
    env = {**s3_env, "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
    _one_line_error(verify(s3_env["S3_ENDPOINT_URL"], VERIFY_BUCKET, env), "AWS_ACCESS_KEY_ID")


def test_wrong_credentials_are_one_line(s3_env, verify_bucket):
    env = {**s3_env, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    r = verify(s3_env["S3_ENDPOINT_URL"], verify_bucket, env)
    _one_line_error(r, "refused the credentials", s3_env["S3_ENDPOINT_URL"])
    assert_quiet_about_secrets(env, r.stdout, r.stderr)


def test_same_checks_from_pytest_pyargs(s3_env, verify_bucket, tmp_path):
    """`pytest --pyargs harness.conformance --verify-s3-...` runs the very same module."""
    r = conformance_pytest(
        "-rA",
        "-k",
        "test_s3",
        f"--verify-s3-endpoint={s3_env['S3_ENDPOINT_URL']}",
        f"--verify-s3-bucket={verify_bucket}",
        cwd=tmp_path,  # none of this repository's pytest settings apply
        env=s3_env,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    passed = set(re.findall(r"PASSED .*test_s3\.py::test_(\w+)", r.stdout))
    assert passed == set(CHECKS), r.stdout[-3000:]
