"""`harness files search`: its ranking equals sentence-transformers + numpy on the committed
sentences (fixtures/embeddings/sentences.txt), through the library and the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from harness.cli import main
from harness.config import compose
from harness.embeddings.fixtures_gen import read_sentences
from harness.embeddings.model import model_path
from harness.errors import HarnessError
from harness.files.search import search_pool, write_sentence_pool

ROOT = Path(__file__).resolve().parents[2]
SENTENCES = read_sentences(ROOT / "fixtures/embeddings/sentences.txt")
QUERIES = [
    "my computer's battery dies quickly",
    "a musician plays guitar outdoors",
    "plants make energy from sunlight",
    "I forgot my password",
]
CFG = compose()["kernels"]["index"]["files_search"]


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """The committed sentences, one file each."""
    root = tmp_path_factory.mktemp("pool")
    return root, write_sentence_pool(root, SENTENCES)


@pytest.fixture(scope="module")
def oracle() -> np.ndarray:
    """sentence-transformers' own embeddings of sentences + queries, float64, unit length."""
    model = SentenceTransformer(str(model_path()), device="cpu")
    emb = model.encode(SENTENCES + QUERIES, convert_to_numpy=True).astype(np.float64)
    return emb / np.linalg.norm(emb, axis=1, keepdims=True)


@pytest.mark.parametrize("qi", range(len(QUERIES)))
def test_ranking_equals_sentence_transformers_and_numpy(
    pool, oracle, qi: int
) -> None:  # noqa: ANN001
    root, paths = pool
    hits, skipped = search_pool(root, QUERIES[qi], 10, CFG)
    assert skipped == []
    cos = oracle[: len(SENTENCES)] @ oracle[len(SENTENCES) + qi]
    want = np.argsort(-cos, kind="stable")[:10]
    assert [h.path for h in hits] == [paths[i] for i in want]
    np.testing.assert_allclose([h.score for h in hits], cos[want], atol=1e-5)


def test_command_prints_the_k_nearest_files(pool, oracle, capsys) -> None:  # noqa: ANN001
    root, paths = pool
    assert main(["files", "search", QUERIES[0], "--k", "3", "--pool", str(root)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    cos = oracle[: len(SENTENCES)] @ oracle[len(SENTENCES)]
    want = np.argsort(-cos, kind="stable")[:3]
    assert [ln.split()[1] for ln in lines] == [paths[i] for i in want]
    assert [float(ln.split()[0]) for ln in lines] == pytest.approx(cos[want], abs=1e-4)


def test_k_beyond_the_pool_prints_every_file(pool) -> None:  # noqa: ANN001
    root, paths = pool
    hits, _ = search_pool(root, "anything", 1000, CFG)
    assert sorted(h.path for h in hits) == sorted(paths)


def test_binary_and_empty_files_are_skipped(tmp_path: Path) -> None:
    write_sentence_pool(tmp_path, SENTENCES[:3])
    (tmp_path / "blob.bin").write_bytes(b"\xff\xfe\x00\x81")
    (tmp_path / "empty.txt").write_text("   \n")
    hits, skipped = search_pool(tmp_path, "guitar", 2, CFG)
    assert sorted(skipped) == ["blob.bin (not UTF-8 text)", "empty.txt (empty)"]
    assert {h.path for h in hits} == {"sentence-000.txt", "sentence-001.txt"}  # the two guitars


@pytest.mark.parametrize(
    "query, k, where, words",
    [
        ("guitar", 3, "missing", "is not a folder"),
        ("   ", 3, "pool", "query text is empty"),
        ("guitar", 0, "pool", "--k must be at least 1"),
        ("guitar", 3, "empty", "no non-empty UTF-8 text files"),
    ],
)
def test_errors_are_one_line(
    pool, tmp_path: Path, query: str, k: int, where: str, words: str
) -> None:  # noqa: ANN001, E501
    root = {"missing": tmp_path / "nope", "pool": pool[0], "empty": tmp_path}[where]
    with pytest.raises(HarnessError, match=words):
        search_pool(root, query, k, CFG)
