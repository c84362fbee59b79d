"""harness.kernels.CosineIndex against an independent oracle: numpy float64 cosines + a stable sort.

The oracle ranks by (-score, id) with NaN last, as docs/kernels.md specifies. Every scan path is
exercised: register tiles of 1-4 queries (every remainder), tiny blocks and two or three threads
forced on small sets (block edges, threads claiming many small chunks and the merge of
per-thread selections), the AVX-512 / AVX2 / scalar loops (HARNESS_KERNELS_ISA, in
subprocesses), float32 and float16 storage, C/F/strided layouts, float32/float64/int inputs,
ties, zeros, NaN/inf and every error.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.kernels import CosineIndex, cosine_similarity
from tests.unit._gil import assert_gil_released

# Scan options that force each path on small inputs (the defaults only split large sets).
PATHS = {
    "default": None,
    "tiny_blocks_2_threads": {
        "block_rows": 3,
        "query_block": 5,
        "parallel_min_work": 0,
        "chunk_rows": 4,  # whole blocks: 6 rows a claim, many claims per thread
        "threads": 2,
    },
    "one_row_blocks": {"block_rows": 1, "query_block": 1, "threads": 1},
    "three_threads": {"parallel_min_work": 0, "chunk_rows": 1, "threads": 3},
}
TOL32 = 2e-6  # float32 storage: scores vs the float64 oracle
TOL16 = 2e-3  # float16 storage: ~2^-11 relative per element, accumulated in float32


def oracle_scores(queries: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """float64 cosines (N, M): 0 for a zero vector, NaN for a vector holding NaN/inf."""
    q = np.asarray(queries, np.float64)
    x = np.asarray(vectors, np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        nq = np.linalg.norm(q, axis=1, keepdims=True)
        nx = np.linalg.norm(x, axis=1, keepdims=True)
        qn = np.divide(q, nq, out=np.zeros_like(q), where=nq > 0)
        xn = np.divide(x, nx, out=np.zeros_like(x), where=nx > 0)
        qn[~np.isfinite(nq[:, 0])] = np.nan
        xn[~np.isfinite(nx[:, 0])] = np.nan
        return np.clip(qn @ xn.T, -1.0, 1.0)


def oracle_topk(scores: np.ndarray, k: int) -> np.ndarray:
    """(N, k) ids by descending score, smaller id first on ties, NaN after every number."""
    ids = np.arange(scores.shape[1])
    key = np.where(np.isnan(scores), -np.inf, scores)
    return np.stack([np.lexsort((ids, -row))[:k] for row in key])


def check_topk(
    scores: np.ndarray, ids: np.ndarray, ref: np.ndarray, k: int, tol: float, exact: bool
) -> None:
    """Scores/ids against the oracle; ids exactly where the oracle's ranking is unambiguous.

    With `exact`, every id must equal the oracle's; otherwise only where no other candidate's
    oracle score lies within 2 tol (near-ties may swap under float32 rounding, never more).
    """
    n = ref.shape[0]
    assert scores.shape == ids.shape == (n, k)
    assert scores.dtype == np.float32 and ids.dtype == np.int64
    want = oracle_topk(ref, k)
    for j in range(n):
        np.testing.assert_allclose(
            scores[j], ref[j, want[j]], atol=tol, rtol=0, equal_nan=True, err_msg=f"query {j}"
        )
        np.testing.assert_allclose(
            scores[j], ref[j, ids[j]], atol=tol, rtol=0, equal_nan=True, err_msg=f"query {j}"
        )
        assert len(set(ids[j].tolist())) == k, f"query {j}: repeated ids {ids[j]}"
        key = np.where(np.isnan(scores[j]), -np.inf, scores[j])
        for p in range(k - 1):  # our own order: descending, ties by smaller id
            assert key[p] > key[p + 1] or (key[p] == key[p + 1] and ids[j, p] < ids[j, p + 1])
        if exact:
            np.testing.assert_array_equal(ids[j], want[j], err_msg=f"query {j}")
            continue
        rkey = np.where(np.isnan(ref[j]), -np.inf, ref[j])
        for p in range(k):
            s = rkey[want[j, p]]
            if np.isfinite(s) and np.count_nonzero(np.abs(rkey - s) <= 2 * tol) == 1:
                assert ids[j, p] == want[j, p], f"query {j} rank {p}: {ids[j]} vs {want[j]}"


def rand(shape: tuple[int, int], seed: int, dtype: type = np.float32) -> np.ndarray:
    """Standard-normal test data."""
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# ---------------------------------------------------------------- oracles on fixed inputs


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("n", [1, 3, 40])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_search_equals_oracle(path: str, n: int, dtype: type) -> None:
    """Random data (well-separated scores): the oracle's exact ids, scores within float32."""
    x, q = rand((3000, 70), 1, dtype), rand((n, 70), 2, dtype)
    index = CosineIndex(x, options=PATHS[path])
    scores, ids = index.search(q, 10)
    check_topk(scores, ids, oracle_scores(q, x), 10, TOL32, exact=True)


@pytest.mark.parametrize("path", list(PATHS))
def test_similarity_equals_cosine_similarity(path: str) -> None:
    """similarity() is cosine_similarity(queries, set), within float32 rounding."""
    x, q = rand((500, 33), 3), rand((20, 33), 4)
    got = CosineIndex(x, options=PATHS[path]).similarity(q)
    assert got.shape == (20, 500) and got.dtype == np.float32
    np.testing.assert_allclose(got, cosine_similarity(q, x), atol=TOL32, rtol=0)
    np.testing.assert_allclose(got, oracle_scores(q, x), atol=TOL32, rtol=0)


def test_k_equal_to_the_set_is_the_full_ranking() -> None:
    x, q = rand((200, 16), 5), rand((2, 16), 6)
    scores, ids = CosineIndex(x).search(q, 200)
    check_topk(scores, ids, oracle_scores(q, x), 200, TOL32, exact=True)


def test_add_continues_the_ids() -> None:
    """Built in three add() calls or at once: the same results; ids follow insertion order."""
    x, q = rand((1000, 24), 7), rand((5, 24), 8)
    index = CosineIndex(x[:10])
    index.add(x[10:600])
    index.add(x[600:])
    assert len(index) == 1000
    whole = CosineIndex(x)
    for a, b in zip(index.search(q, 7), whole.search(q, 7)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(index.similarity(q), whole.similarity(q))


@pytest.mark.parametrize(
    "make",
    [
        lambda a: np.asfortranarray(a),
        lambda a: np.repeat(a, 2, axis=1)[:, ::2],
        lambda a: a[::-1][::-1],
        lambda a: np.ascontiguousarray(a[:, ::-1])[:, ::-1],
        lambda a: a.astype(">f4"),
    ],
    ids=["fortran", "column_stride_2", "reversed_twice", "negative_column_stride", "big_endian"],
)
def test_layouts_read_like_c_order(make) -> None:  # noqa: ANN001 - a layout builder
    x, q = rand((300, 20), 9), rand((4, 20), 10)
    want = CosineIndex(x).search(q, 5)
    got = CosineIndex(make(x)).search(make(q), 5)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_integer_and_float16_inputs_are_converted() -> None:
    x = np.random.default_rng(11).integers(-5, 6, (400, 12))
    q = np.random.default_rng(12).integers(-5, 6, (3, 12))
    scores, ids = CosineIndex(x).search(q, 6)
    check_topk(scores, ids, oracle_scores(q, x), 6, TOL32, exact=False)
    scores, ids = CosineIndex(x.astype(np.float16)).search(q.astype(np.float16), 6)
    check_topk(scores, ids, oracle_scores(q, x), 6, TOL32, exact=False)


def test_a_query_scores_the_same_alone_or_in_a_batch() -> None:
    """Every (query, vector) sum is formed one way: batch size, tile and block change no bit."""
    x, q = rand((999, 100), 32), rand((37, 100), 33)
    index = CosineIndex(x)
    scores, ids = index.search(q, 9)
    for j in range(37):
        alone = index.search(q[j : j + 1], 9)
        np.testing.assert_array_equal(alone[0][0], scores[j])
        np.testing.assert_array_equal(alone[1][0], ids[j])
    for path in PATHS.values():
        other = CosineIndex(x, options=path).search(q, 9)
        np.testing.assert_array_equal(other[0], scores)


ISA_CHECK = """
import numpy as np
from harness.kernels import CosineIndex, index
rng = np.random.default_rng(0)
x = rng.standard_normal((500, 40)).astype(np.float32)
x[7] = x[3] * 2
q = rng.standard_normal((11, 40)).astype(np.float32)
for dtype in ("float32", "float16"):
    s, i = CosineIndex(x, dtype=dtype, options={"threads": 2, "parallel_min_work": 0}).search(q, 20)
    np.save(f"{dtype}_s.npy", s); np.save(f"{dtype}_i.npy", i)
print(index.ISA)
"""


@pytest.mark.parametrize("isa", ["avx2", "scalar"])
def test_narrower_instruction_sets_agree(isa: str, tmp_path) -> None:  # noqa: ANN001
    """The AVX2 and portable loops (forced with HARNESS_KERNELS_ISA) match the oracle too."""
    env = {**os.environ, "HARNESS_KERNELS_ISA": isa}
    out = subprocess.run(
        [sys.executable, "-c", ISA_CHECK], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == isa
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 40)).astype(np.float32)
    x[7] = x[3] * 2
    q = rng.standard_normal((11, 40)).astype(np.float32)
    ref = oracle_scores(q, x)
    for dtype, tol in (("float32", TOL32), ("float16", TOL16)):
        s, i = np.load(tmp_path / f"{dtype}_s.npy"), np.load(tmp_path / f"{dtype}_i.npy")
        check_topk(s, i, ref, 20, tol, exact=False)
        for j in range(11):  # the exact duplicates 3 and 7 tie: 3 first wherever they appear
            where = list(i[j])
            if 3 in where and 7 in where:
                assert where.index(3) + 1 == where.index(7)


# ---------------------------------------------------------------- ties, zeros, NaN/inf


@pytest.mark.parametrize("path", list(PATHS))
def test_equal_scores_rank_by_smaller_id(path: str) -> None:
    """Duplicated vectors (bit-equal scores) come out in increasing id order, across blocks,
    register tiles and threads."""
    base = rand((7, 12), 13)
    order = np.random.default_rng(14).integers(0, 7, 300)
    # powers of two scale exactly, so every copy normalises to the same stored row
    x = base[order] * 2.0 ** np.random.default_rng(15).integers(-3, 4, (300, 1))
    q = rand((20, 12), 16)
    index = CosineIndex(x, options=PATHS[path])
    scores, ids = index.search(q, 60)
    for j in range(20):
        best = np.argmax(oracle_scores(q[j : j + 1], base)[0])
        copies = np.flatnonzero(order == best)
        n = min(60, copies.size)
        np.testing.assert_array_equal(ids[j, :n], copies[:n])  # the best vector's copies first
        key = scores[j]
        for p in range(59):
            if key[p] == key[p + 1]:
                assert ids[j, p] < ids[j, p + 1]


def test_scaled_copies_tie_exactly() -> None:
    """x and 2x normalise to the same stored row: an exact tie, smaller id first."""
    v = rand((1, 9), 17)
    x = np.concatenate([rand((50, 9), 18), 2 * v, rand((50, 9), 19), v, 4 * v])
    scores, ids = CosineIndex(x).search(v, 3)
    assert ids[0].tolist() == [50, 101, 102]
    assert scores[0, 0] == scores[0, 1] == scores[0, 2]


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_zero_vectors_score_zero(dtype: str) -> None:
    x = rand((40, 8), 20)
    x[[3, 17, 30]] = 0
    q = rand((2, 8), 21)
    q[1] = 0
    index = CosineIndex(x, dtype=dtype)
    sims = index.similarity(q)
    assert np.all(sims[:, [3, 17, 30]] == 0) and np.all(sims[1] == 0)
    scores, ids = index.search(q, 40)
    assert ids[1].tolist() == list(range(40)) and np.all(scores[1] == 0)  # all tie at 0
    zero_ranks = [ids[0].tolist().index(i) for i in (3, 17, 30)]
    assert all(scores[0, r] == 0 for r in zero_ranks)
    assert zero_ranks == sorted(zero_ranks)


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_nonfinite_vectors_score_nan_and_rank_last(path: str, dtype: str) -> None:
    """A stored vector with NaN/inf scores NaN and ranks after every number (smaller id first);
    a query with NaN/inf scores NaN everywhere, so its ranking is ids 0, 1, 2, ..."""
    x = rand((60, 10), 22)
    x[5, 2] = np.nan
    x[40, 0] = np.inf
    x[41, 9] = -np.inf
    q = rand((20, 10), 23)
    q[4, 1] = np.nan
    q[7, 3] = np.inf
    index = CosineIndex(x, dtype=dtype, options=PATHS[path])
    scores, ids = index.search(q, 60)
    for j in range(20):
        if j in (4, 7):
            assert ids[j].tolist() == list(range(60)) and np.all(np.isnan(scores[j]))
            continue
        assert ids[j, -3:].tolist() == [5, 40, 41] and np.all(np.isnan(scores[j, -3:]))
        assert np.all(np.isfinite(scores[j, :-3]))
    sims = index.similarity(q)
    want = cosine_similarity(q, x)
    np.testing.assert_array_equal(np.isnan(sims), np.isnan(want))
    tol = TOL32 if dtype == "float32" else TOL16
    np.testing.assert_allclose(sims, want, atol=tol, rtol=0, equal_nan=True)


def test_scores_are_clipped() -> None:
    """Rounding never reports a cosine above 1: a vector against itself is exactly 1."""
    x = rand((500, 384), 24) * 1e3
    scores, ids = CosineIndex(x).search(x[:50], 1)
    assert np.all(scores <= 1.0)
    np.testing.assert_array_equal(ids[:, 0], np.arange(50))


# ---------------------------------------------------------------- float16 storage


def test_float16_storage_recall_and_scores() -> None:
    """float16 storage: scores within 2e-3 of float64; recall@10 against float32 >= 0.99."""
    x, q = rand((20000, 64), 25), rand((64, 64), 26)
    half = CosineIndex(x, dtype="float16")
    assert half.nbytes * 2 == CosineIndex(x[:10]).nbytes * 2000
    scores, ids = half.search(q, 10)
    check_topk(scores, ids, oracle_scores(q, x), 10, TOL16, exact=False)
    _, full = CosineIndex(x).search(q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids.tolist(), full.tolist())])
    assert recall >= 0.99, recall


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "call, exc, words",
    [
        (lambda ix: ix.search(rand((1, 8), 0), 101), ValueError, "k = 101"),
        (lambda ix: ix.search(rand((1, 8), 0), 0), ValueError, "k = 0"),
        (lambda ix: ix.search(rand((1, 8), 0), 2.0), TypeError, "k must be an integer"),
        (lambda ix: ix.search(rand((1, 9), 0), 1), ValueError, "D = 8"),
        (lambda ix: ix.search(rand((0, 8), 0), 1), ValueError, "empty"),
        (lambda ix: ix.search(np.ones(8), 1), ValueError, "2-D"),
        (lambda ix: ix.search(np.ones((1, 8), complex), 1), TypeError, "complex"),
        (lambda ix: ix.search(np.array([["a"] * 8]), 1), TypeError, "dtype"),
        (lambda ix: ix.similarity(rand((2, 7), 0)), ValueError, "D = 8"),
        (lambda ix: ix.add(rand((3, 7), 0)), ValueError, "D = 8"),
        (lambda ix: ix.add(rand((0, 8), 0)), ValueError, "empty"),
        (lambda ix: ix.add(np.ones((2, 8), np.longdouble)), TypeError, "float64"),
        (lambda ix: CosineIndex(rand((0, 8), 0)), ValueError, "empty"),
        (lambda ix: CosineIndex(rand((3, 0), 0)), ValueError, "empty"),
        (lambda ix: CosineIndex(rand((3, 8), 0), dtype="int8"), ValueError, "dtype='int8'"),
        (lambda ix: CosineIndex(rand((3, 8), 0), options={"blocks": 1}), ValueError, "blocks"),
    ],
)
def test_errors_are_one_line(call, exc: type, words: str) -> None:  # noqa: ANN001
    index = CosineIndex(rand((100, 8), 27))
    with pytest.raises(exc) as info:
        call(index)
    msg = str(info.value)
    assert words in msg and "\n" not in msg, msg
    assert len(index) == 100  # a refused add leaves the index as it was


# ---------------------------------------------------------------- threads and the GIL


def test_threads_only_for_large_work() -> None:
    small = CosineIndex(rand((1000, 16), 28))
    assert small.threads(1) == 1
    assert CosineIndex(rand((10, 4), 29), options={"parallel_min_work": 0}).threads(1) >= 1


def test_gil_is_released_while_searching() -> None:
    """The main thread keeps taking steps in the middle of a long search in another thread."""
    index = CosineIndex(rand((200_000, 64), 30))
    q = rand((100, 64), 31)
    assert_gil_released(lambda: index.search(q, 10))


# ---------------------------------------------------------------- property-based


@st.composite
def problems(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int, str, str]:
    """A set, queries (some rows zero), k, a layout and a scan path."""
    m = draw(st.integers(1, 120))
    d = draw(st.integers(1, 40))
    n = draw(st.integers(1, 24))
    k = draw(st.integers(1, m))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["normal", "small_ints"]))
    if kind == "normal":
        x, q = rng.standard_normal((m, d)), rng.standard_normal((n, d))
    else:  # many exact and near ties
        x, q = rng.integers(-2, 3, (m, d)).astype(float), rng.integers(-2, 3, (n, d)).astype(float)
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    layout = draw(st.sampled_from(["C", "F", "strided"]))
    path = draw(st.sampled_from(list(PATHS)))
    storage = draw(st.sampled_from(["float32", "float16"]))
    x, q = x.astype(dtype), q.astype(dtype)
    if layout == "F":
        x, q = np.asfortranarray(x), np.asfortranarray(q)
    elif layout == "strided":
        x, q = np.repeat(x, 3, axis=0)[::3], np.repeat(q, 2, axis=1)[:, ::2]
    return x, q, k, path, storage


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_search_property(problem: tuple[np.ndarray, np.ndarray, int, str, str]) -> None:
    x, q, k, path, storage = problem
    index = CosineIndex(x, dtype=storage, options=PATHS[path])
    scores, ids = index.search(q, k)
    tol = TOL32 if storage == "float32" else TOL16
    check_topk(scores, ids, oracle_scores(q, x), k, tol, exact=False)
    sims = index.similarity(q)
    np.testing.assert_allclose(sims, oracle_scores(q, x), atol=tol, rtol=0)
    # the selection is the similarity matrix's own ranking, exactly (same scores, same rule)
    np.testing.assert_array_equal(ids, oracle_topk(sims.astype(np.float64), k))
