"""Conformance checks of any HTTP file server: every hash of its manifest, then security probes.

Run by `harness verify files --url URL [--manifest M] [--pool DIR]`, or directly with
`pytest --pyargs harness.conformance --verify-files-url URL [--verify-manifest M]
[--verify-pool DIR]`. A check's name is its test name without `test_`; the probes themselves live
in harness.verify.files.probes (one function per check), their settings in configs/verify.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from harness.conformance.plugin import option, require


@pytest.fixture(scope="module")
def files_target(pytestconfig: pytest.Config):
    """The server under test: base URL, manifest entries, settings, local pool if given."""
    from harness.verify.files import open_target

    url = require(pytestconfig, "verify-files-url", "file server")
    return open_target(
        url, option(pytestconfig, "verify-manifest"), option(pytestconfig, "verify-pool")
    )


def _no_findings(probe: Callable, target) -> None:
    from harness.verify.files import Unprobeable, first_lines

    try:
        findings = probe(target)
    except Unprobeable as exc:
        pytest.skip(str(exc))
    if findings:
        pytest.fail(first_lines(findings), pytrace=False)


def test_hashes(files_target, record_metric) -> None:
    """Every manifest file is served and its sha256 matches."""
    from harness.files.verify import ERROR, MISMATCH, MISSING, OK
    from harness.verify.files import check_hashes, hashes_message

    report = check_hashes(files_target)
    record_metric("files", report.total)
    for status in (OK, MISMATCH, MISSING, ERROR):
        record_metric(f"files {status}", report.counts.get(status, 0))
    record_metric("hash check s", round(report.seconds, 3))
    record_metric("files/s", round(report.files_per_s, 1))
    record_metric("MB", round(report.bytes / 1e6, 3))
    if not report.ok:
        pytest.fail(hashes_message(report), pytrace=False)


def test_traversal(files_target) -> None:
    """`../` in every encoded form never reaches /etc/passwd, /proc/self/status, ..."""
    from harness.verify.files.probes import traversal

    _no_findings(traversal, files_target)


def test_absolute_paths(files_target) -> None:
    """`//etc/passwd`, `/%2fetc/passwd`, absolute-form URLs: nothing outside the root."""
    from harness.verify.files.probes import absolute_paths

    _no_findings(absolute_paths, files_target)


def test_hidden_files(files_target) -> None:
    """.git/, .env, .htpasswd, ... (and hidden names found in --pool) are never served."""
    from harness.verify.files.probes import hidden_files

    _no_findings(hidden_files, files_target)


def test_directory_listing(files_target) -> None:
    """Neither the root nor a folder of the manifest lists its files."""
    from harness.verify.files.probes import directory_listing

    _no_findings(directory_listing, files_target)


def test_methods(files_target) -> None:
    """Only GET and HEAD: no write method accepted, no WebDAV, no TRACE echo."""
    from harness.verify.files.probes import methods

    _no_findings(methods, files_target)


def test_range_abuse(files_target) -> None:
    """Abusive Range headers: no 5xx, no hang, no amplified 206; the server still answers."""
    from harness.verify.files.probes import range_abuse

    _no_findings(range_abuse, files_target)


def test_oversized_headers(files_target) -> None:
    """Request headers beyond any sane limit are refused; the server still answers."""
    from harness.verify.files.probes import oversized_headers

    _no_findings(oversized_headers, files_target)


def test_symlink_escape(files_target) -> None:
    """With --pool: symlinks planted there that point outside are not followed (removed after)."""
    from harness.verify.files.probes import symlink_escape

    _no_findings(symlink_escape, files_target)
