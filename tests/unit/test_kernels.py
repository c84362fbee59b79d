"""harness.kernels against independent oracles: numpy float64 (normalize + matmul) and sklearn.

Every semantic of docs/kernels.md has a test here: dtypes and promotion, layouts (C, F, strided,
negative strides), zero vectors, NaN/inf propagation, empty inputs, clipping, every error case,
and the GIL being released while the kernel runs.
"""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.metrics.pairwise import cosine_similarity as sk_cosine

from harness.kernels import blas_info, cosine_similarity, paired_cosine_similarity
from tests.unit._gil import assert_gil_released

TOL = {np.float32: 1e-5, np.float64: 1e-12}


def oracle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float64 normalize + matmul; zero vectors give 0."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    na = np.linalg.norm(a, axis=1, keepdims=True)
    nb = np.linalg.norm(b, axis=1, keepdims=True)
    an = np.divide(a, na, out=np.zeros_like(a), where=na > 0)
    bn = np.divide(b, nb, out=np.zeros_like(b), where=nb > 0)
    return np.clip(an @ bn.T, -1.0, 1.0)


def paired_oracle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise float64 cosine, 0 for zero vectors."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    num = np.einsum("ij,ij->i", a, b)
    return np.clip(np.divide(num, den, out=np.zeros_like(num), where=den > 0), -1.0, 1.0)


def rand(shape: tuple[int, int], dtype: type, seed: int) -> np.ndarray:
    """Standard-normal test data."""
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def test_blas_info_names_the_linked_library() -> None:
    info = blas_info()
    assert info["blas"] in ("scipy-openblas32", "system-openblas")
    assert "OpenBLAS" in info["config"]
    assert info["threads"] >= 1


# ---------------------------------------------------------------- oracles on fixed inputs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "n,m,d", [(1, 1, 1), (3, 5, 7), (17, 33, 65), (64, 64, 128), (1, 300, 384), (40, 1, 31)]
)
def test_matches_numpy_and_sklearn(dtype: type, n: int, m: int, d: int) -> None:
    a, b = rand((n, d), dtype, 1), rand((m, d), dtype, 2)
    got = cosine_similarity(a, b)
    assert got.dtype == dtype and got.shape == (n, m)
    np.testing.assert_allclose(got, oracle(a, b), rtol=0, atol=TOL[dtype])
    np.testing.assert_allclose(
        got, sk_cosine(a.astype(np.float64), b.astype(np.float64)), rtol=0, atol=TOL[dtype]
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_d_and_self_similarity(dtype: type) -> None:
    a = rand((37, 4096), dtype, 3)
    got = cosine_similarity(a)
    np.testing.assert_allclose(got, oracle(a, a), rtol=0, atol=TOL[dtype])
    np.testing.assert_allclose(np.diag(got), 1.0, rtol=0, atol=TOL[dtype])


@pytest.mark.parametrize("threaded", [False, True])
def test_blocked_output_matches(monkeypatch: pytest.MonkeyPatch, threaded: bool) -> None:
    """Output processed in many row blocks (one BLAS call each) gives the same cosines."""
    import harness.kernels as hk

    a, b = rand((101, 50), np.float32, 4), rand((77, 50), np.float32, 5)
    monkeypatch.setattr(hk, "BLOCK_BYTES", 7 * 77 * 4)
    monkeypatch.setattr(hk, "PARALLEL_MIN_ELEMENTS", 1 if threaded else 0)
    np.testing.assert_allclose(cosine_similarity(a, b), oracle(a, b), rtol=0, atol=1e-5)


@pytest.mark.parametrize("threaded", [False, True])
@pytest.mark.parametrize("order", ["C", "F"])
def test_single_vector_paths(monkeypatch: pytest.MonkeyPatch, threaded: bool, order: str) -> None:
    """One query against a set (and a set against one vector): the fused single-pass path."""
    import harness.kernels as hk

    monkeypatch.setattr(hk, "PARALLEL_MIN_ELEMENTS", 1 if threaded else 0)
    q = rand((1, 384), np.float32, 22)
    s = np.asarray(rand((1001, 384), np.float32, 23), order=order)
    s[5] = 0
    np.testing.assert_allclose(cosine_similarity(q, s), oracle(q, s), rtol=0, atol=1e-5)
    np.testing.assert_allclose(cosine_similarity(s, q), oracle(s, q), rtol=0, atol=1e-5)
    assert cosine_similarity(q, s)[0, 5] == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_paired_matches_oracle_and_diagonal(dtype: type) -> None:
    a, b = rand((129, 77), dtype, 6), rand((129, 77), dtype, 7)
    got = paired_cosine_similarity(a, b)
    assert got.dtype == dtype and got.shape == (129,)
    np.testing.assert_allclose(got, paired_oracle(a, b), rtol=0, atol=TOL[dtype])
    np.testing.assert_allclose(got, np.diag(cosine_similarity(a, b)), rtol=0, atol=TOL[dtype])


# ---------------------------------------------------------------- hypothesis

LAYOUTS = ["C", "F", "strided", "reversed", "transposed-view"]


def layout(x: np.ndarray, kind: str) -> np.ndarray:
    """The same values as `x` in another memory layout."""
    if kind == "F":
        return np.asfortranarray(x)
    if kind == "strided":  # every second row and column of a bigger array
        big = np.zeros((2 * x.shape[0] + 1, 2 * x.shape[1] + 1), x.dtype)
        big[1::2, 1::2] = x
        return big[1::2, 1::2]
    if kind == "reversed":
        return np.ascontiguousarray(x[::-1])[::-1]
    if kind == "transposed-view":
        return np.ascontiguousarray(x.T).T
    return np.ascontiguousarray(x)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.sampled_from([0, 1, 2, 3, 15, 16, 17, 33, 64]),
    m=st.sampled_from([0, 1, 5, 16, 31, 100]),
    d=st.sampled_from([0, 1, 7, 8, 15, 16, 17, 63, 384, 1023, 4096]),
    dtype=st.sampled_from([np.float32, np.float64]),
    la=st.sampled_from(LAYOUTS),
    lb=st.sampled_from(LAYOUTS),
    seed=st.integers(0, 2**16),
)
def test_hypothesis_shapes_layouts(
    n: int, m: int, d: int, dtype: type, la: str, lb: str, seed: int
) -> None:
    a = rand((n, d), dtype, seed)
    b = rand((m, d), dtype, seed + 1)
    got = cosine_similarity(layout(a, la), layout(b, lb))
    assert got.shape == (n, m) and got.dtype == dtype
    np.testing.assert_allclose(got, oracle(a, b), rtol=0, atol=TOL[dtype])
    pg = paired_cosine_similarity(layout(a, la), layout(rand((n, d), dtype, seed + 2), lb))
    np.testing.assert_allclose(
        pg, paired_oracle(a, rand((n, d), dtype, seed + 2)), rtol=0, atol=TOL[dtype]
    )


def _values(dtype: type) -> st.SearchStrategy[float]:
    """Finite values, zero or of magnitude >= 1e-6 so no product underflows in float32."""
    width = 32 if dtype == np.float32 else 64
    return st.floats(-1e3, 1e3, width=width, allow_subnormal=False).map(
        lambda v: v if abs(v) >= 1e-6 else 0.0
    )


@st.composite
def pair(draw: st.DrawFn, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """Two matrices sharing D, with values drawn element by element (zeros included)."""
    d = draw(st.integers(0, 24))
    a = draw(hnp.arrays(dtype, (draw(st.integers(0, 12)), d), elements=_values(dtype)))
    b = draw(hnp.arrays(dtype, (draw(st.integers(0, 12)), d), elements=_values(dtype)))
    return a, b


@settings(max_examples=80, deadline=None)
@given(data=st.data(), dtype=st.sampled_from([np.float32, np.float64]))
def test_hypothesis_values(data: st.DataObject, dtype: type) -> None:
    a, b = data.draw(pair(dtype))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division or invalid-value warning ever
        got = cosine_similarity(a, b)
    assert np.all(np.isfinite(got)) and np.all(np.abs(got) <= 1.0)
    np.testing.assert_allclose(got, oracle(a, b), rtol=0, atol=TOL[dtype])
    if a.shape[0] and b.shape[0]:
        k = min(a.shape[0], b.shape[0])
        np.testing.assert_allclose(
            paired_cosine_similarity(a[:k], b[:k]),
            paired_oracle(a[:k], b[:k]),
            rtol=0,
            atol=TOL[dtype],
        )


# ---------------------------------------------------------------- semantics


def test_zero_vectors_give_zero_without_warnings() -> None:
    a = rand((4, 6), np.float32, 8)
    b = rand((3, 6), np.float32, 9)
    a[1] = 0
    b[2] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = cosine_similarity(a, b)
        pg = paired_cosine_similarity(a[:3], b)
    assert np.all(got[1] == 0) and np.all(got[:, 2] == 0)
    assert not np.isnan(got).any()
    assert pg[1] == 0 and pg[2] == 0
    assert np.all(cosine_similarity(np.zeros((2, 5))) == 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_propagates_to_its_rows_and_columns_only(dtype: type, bad: float) -> None:
    a, b = rand((6, 9), dtype, 10), rand((5, 9), dtype, 11)
    a[2, 4] = bad
    b[3, 0] = bad
    b[0] = 0  # a zero vector meets the non-finite row: NaN wins there
    got = cosine_similarity(a, b)
    mask = np.zeros(got.shape, bool)
    mask[2, :] = True
    mask[:, 3] = True
    assert np.isnan(got[mask]).all()
    ok_a, ok_b = a.copy(), b.copy()
    ok_a[2] = 1
    ok_b[3] = 1
    np.testing.assert_allclose(got[~mask], oracle(ok_a, ok_b)[~mask], rtol=0, atol=TOL[dtype])
    pg = paired_cosine_similarity(a[:5], b)
    assert np.isnan(pg[[2, 3]]).all() and np.isfinite(pg[[0, 1, 4]]).all()
    gv = cosine_similarity(a[2:3], b)  # single-query (matrix-vector) path
    assert np.isnan(gv).all()


def test_empty_inputs_give_empty_results_of_the_right_shape() -> None:
    for n, m, d in [(0, 3, 4), (3, 0, 4), (0, 0, 4), (0, 0, 0)]:
        got = cosine_similarity(np.ones((n, d), np.float32), np.ones((m, d), np.float32))
        assert got.shape == (n, m) and got.dtype == np.float32
    got = cosine_similarity(np.ones((2, 0)), np.ones((3, 0)))  # D = 0: all zero vectors
    assert got.shape == (2, 3) and np.all(got == 0)
    assert paired_cosine_similarity(np.ones((0, 3)), np.ones((0, 3))).shape == (0,)
    assert np.all(paired_cosine_similarity(np.ones((2, 0)), np.ones((2, 0))) == 0)


def test_results_are_clipped_to_unit_interval() -> None:
    a = rand((257, 301), np.float32, 12)
    b = np.concatenate([a * 3.7, -a * 0.3])
    got = cosine_similarity(a, b)
    assert got.max() <= 1.0 and got.min() >= -1.0
    assert np.count_nonzero(got == 1.0) >= 1 and np.count_nonzero(got == -1.0) >= 1
    pg = paired_cosine_similarity(a, a * 1.1)
    assert pg.max() <= 1.0


@pytest.mark.parametrize(
    "da,db,want",
    [
        (np.float32, np.float32, np.float32),
        (np.float64, np.float64, np.float64),
        (np.float32, np.float64, np.float64),
        (np.float16, np.float32, np.float32),
        (np.int64, np.float32, np.float64),
        (np.int8, np.int16, np.float32),
        (np.int32, np.int32, np.float64),
        (np.bool_, np.bool_, np.float32),
    ],
)
def test_dtype_promotion(da: type, db: type, want: type) -> None:
    a = (rand((5, 8), np.float64, 13) * 10).astype(da)
    b = (rand((4, 8), np.float64, 14) * 10).astype(db)
    got = cosine_similarity(a, b)
    assert got.dtype == want
    np.testing.assert_allclose(got, oracle(a, b), rtol=0, atol=TOL[want])
    assert paired_cosine_similarity(a[:4], b).dtype == want


def test_layouts_and_views_need_no_copy_and_agree() -> None:
    base = rand((40, 30), np.float64, 15)
    ref = oracle(base, base[:13])
    for a in (base, np.asfortranarray(base), base[:, :], base.T.copy().T):
        np.testing.assert_allclose(cosine_similarity(a, a[:13]), ref, rtol=0, atol=1e-12)
    padded = np.zeros((40, 35))
    padded[:, :30] = base
    np.testing.assert_allclose(cosine_similarity(padded[:, :30], base[:13]), ref, atol=1e-12)
    np.testing.assert_allclose(cosine_similarity(base[::-1], base[:13]), ref[::-1], atol=1e-12)
    col = np.asfortranarray(rand((30, 5), np.float64, 16))  # a query that is a strided row
    np.testing.assert_allclose(
        cosine_similarity(col.T[2:3], base), oracle(col.T[2:3], base), atol=1e-12
    )
    be = base.astype(">f8")  # non-native byte order is converted
    np.testing.assert_allclose(cosine_similarity(be, base[:13]), ref, atol=1e-12)
    ro = base.copy()
    ro.flags.writeable = False
    np.testing.assert_allclose(cosine_similarity(ro, base[:13]), ref, atol=1e-12)
    lists = cosine_similarity([[1.0, 0.0], [1.0, 1.0]], [[0.0, 2.0]])
    np.testing.assert_allclose(lists, [[0.0], [np.sqrt(0.5)]], atol=1e-12)


def test_out_is_written_and_returned() -> None:
    a, b = rand((7, 5), np.float32, 17), rand((3, 5), np.float32, 18)
    out = np.full((7, 3), 9.0, np.float32)
    res = cosine_similarity(a, b, out=out)
    assert res is out
    np.testing.assert_allclose(out, oracle(a, b), atol=1e-5)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "a,b,exc,words",
    [
        (np.ones((3, 4)), np.ones((2, 5)), ValueError, ["(3, 4)", "(2, 5)"]),
        (np.ones(4), np.ones((2, 4)), ValueError, ["2-D", "(4,)"]),
        (np.ones((2, 2, 2)), None, ValueError, ["2-D", "(2, 2, 2)"]),
        (np.array([["a", "b"]]), None, TypeError, ["dtype", "(1, 2)"]),
        (np.ones((2, 2), complex), None, TypeError, ["complex128", "(2, 2)"]),
        (np.ones((2, 2), object), None, TypeError, ["object"]),
        (np.ones((2, 2), np.longdouble), None, TypeError, ["float128"]),
    ],
)
def test_bad_inputs_raise_naming_the_problem(
    a: np.ndarray, b: np.ndarray | None, exc: type, words: list[str]
) -> None:
    with pytest.raises(exc) as info:
        cosine_similarity(a, b)
    for w in words:
        assert w in str(info.value)


def test_paired_errors() -> None:
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(2, 4\)"):
        paired_cosine_similarity(np.ones((3, 4)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="2-D"):
        paired_cosine_similarity(np.ones(3), np.ones(3))
    with pytest.raises(TypeError, match="dtype"):
        paired_cosine_similarity(np.ones((1, 2), "U3"), np.ones((1, 2)))


def test_bad_out_raises_naming_shapes() -> None:
    a, b = np.ones((3, 4), np.float32), np.ones((2, 4), np.float32)
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        cosine_similarity(a, b, out=np.empty((2, 3), np.float32))
    with pytest.raises(TypeError, match="float64.*float32"):
        cosine_similarity(a, b, out=np.empty((3, 2), np.float64))
    with pytest.raises(ValueError, match="C-contiguous"):
        cosine_similarity(a, b, out=np.empty((2, 3), np.float32).T)
    ro = np.empty((3, 2), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        cosine_similarity(a, b, out=ro)
    with pytest.raises(TypeError, match="numpy array"):
        cosine_similarity(a, b, out=[[0.0] * 2] * 3)
    sq = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match="overlaps"):
        cosine_similarity(sq, sq, out=sq)


# ---------------------------------------------------------------- GIL


def test_gil_is_released_while_the_kernel_runs() -> None:
    """Python code in the main thread keeps running during a long call in another thread."""
    a = rand((1500, 1024), np.float64, 19)
    assert_gil_released(lambda: cosine_similarity(a))


def test_serial_small_problems_leave_blas_threads_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small products run on the calling thread; OpenBLAS's thread count is restored after.

    Four Python threads mix serial (small) and threaded (large) calls at once: every result
    matches the oracle and the process-wide thread count ends where it started.
    """
    import harness.kernels as hk

    before = blas_info()["threads"]
    small = rand((64, 128), np.float32, 30), rand((48, 128), np.float32, 31)
    large = rand((260, 130), np.float32, 32), rand((250, 130), np.float32, 33)
    assert np.prod([*small[0].shape, small[1].shape[0]]) <= hk.SERIAL_MAX_MNK
    assert np.prod([*large[0].shape, large[1].shape[0]]) > hk.SERIAL_MAX_MNK
    errors: list[str] = []

    def work(a: np.ndarray, b: np.ndarray) -> None:
        want = oracle(a, b)
        for _ in range(40):
            err = np.abs(cosine_similarity(a, b) - want).max()
            if err > 1e-5:
                errors.append(f"{a.shape}x{b.shape}: error {err:.3g}")

    threads = [threading.Thread(target=work, args=p) for p in (small, large, small, large)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert blas_info()["threads"] == before
    monkeypatch.setattr(hk, "SERIAL_MAX_MNK", 0)  # the threaded path gives the same cosines
    np.testing.assert_allclose(cosine_similarity(*small), oracle(*small), rtol=0, atol=1e-5)


def test_two_threads_compute_correctly_at_once() -> None:
    """Concurrent calls from two Python threads (GIL released) both give correct results."""
    a32, b32 = rand((300, 200), np.float32, 20), rand((250, 200), np.float32, 21)
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        for _ in range(5):
            results[i] = (
                cosine_similarity(a32, b32) if i == 0 else paired_cosine_similarity(a32[:250], b32)
            )

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_allclose(results[0], oracle(a32, b32), atol=1e-5)
    np.testing.assert_allclose(results[1], paired_oracle(a32[:250], b32), atol=1e-5)
