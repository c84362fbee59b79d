"""Session fixtures for the embeddings tests: config, cached conversions, a Triton server."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.services.base import running
from harness.testing.plugin import require_backend


@pytest.fixture(scope="session")
def embed_cfg() -> Any:
    """The composed configuration (defaults)."""
    from harness.config import compose

    return compose([])


@pytest.fixture(scope="session")
def embed_formats(embed_cfg) -> list[str]:
    """The CPU formats under test (embed.default_formats)."""
    return list(embed_cfg.embed.default_formats)


@pytest.fixture(scope="session")
def embed_conversions(embed_cfg, embed_formats) -> dict[str, Any]:
    """Every CPU format converted (from the cache after the first run), by format."""
    from harness.embeddings.convert import convert_formats
    from harness.embeddings.repository import write_configs

    write_configs(embed_cfg.embed)
    return {r.format: r for r in convert_formats(embed_cfg, embed_formats)}


@pytest.fixture(scope="session")
def embed_sentences(embed_cfg) -> list[str]:
    """The comparison sentences from fixtures/embeddings/sentences.txt."""
    from harness.embeddings.fixtures_gen import fixture, read_sentences

    return read_sentences(fixture(embed_cfg, embed_cfg.embed.compare.sentences_file))


@contextlib.contextmanager
def embeddings_server(
    cfg: Any,
    formats: list[str],
    backend: str,
    *,
    http_url: str | None = None,
    grpc_url: str | None = None,
    work_dir: Path | None = None,
) -> Iterator[Any]:
    """A ready Triton on `backend` serving the tokenizer, `formats` and their ensembles."""
    from harness.embeddings.serving import make_server

    require_backend(backend)
    server = make_server(
        cfg, formats, backend, work_dir=work_dir, http_url=http_url, grpc_url=grpc_url
    )
    with running(server):
        yield server


@pytest.fixture(scope="session")
def embed_work_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the local backend materializes the embeddings repository."""
    return tmp_path_factory.mktemp("embed_triton")


@pytest.fixture(scope="session")
def embed_server(
    triton_backend,
    triton_url,
    triton_grpc_url,
    embed_cfg,
    embed_formats,
    embed_conversions,
    embed_work_dir,
) -> Iterator[Any]:
    """A ready Triton serving the tokenizer, every CPU format and their ensembles.

    It runs on the Triton fixtures' backend and URLs (`triton_backend`, `triton_url`, ...).
    """
    with embeddings_server(
        embed_cfg,
        embed_formats,
        triton_backend,
        http_url=triton_url,
        grpc_url=triton_grpc_url,
        work_dir=embed_work_dir,
    ) as server:
        yield server


@pytest.fixture(scope="session")
def embed_client(embed_server, embed_cfg) -> Iterator[Any]:
    """An HTTP TritonClient of the embeddings server."""
    from harness.serving.client import TritonClient

    with TritonClient(embed_server.http_address, "http", timeout_s=120.0) as client:
        yield client


@pytest.fixture(scope="session")
def embed_comparison(embed_cfg, embed_client, embed_formats) -> Any:
    """The full served comparison (oracle, every format, every pair), run once per session."""
    from harness.embeddings.serving import compare_served

    return compare_served(embed_cfg, embed_client, embed_formats)
