"""CosineIndex top-k vs FAISS IndexFlatIP, numpy and torch, and vs the memory bandwidth bound.

Cases and floors come from configs/kernels/default.yaml (kernels.index.benchmark). Each case
runs interleaved rounds: every implementation once per round (`calls_per_round` calls, order
rotating), after a pause that lets other thread pools stop spinning. A floor is judged on the
median over rounds of the ratio measured within a round, so load from other processes slows
both sides of a ratio alike. A missed floor fails with the machine's load in its message; none
is skipped. The table is printed and written to the configured report.

The bandwidth bound is the time to stream a float32 buffer of the set's size once: numpy's sum
(one thread) and a plain threaded read with the search's thread count claiming rows in the
search's chunks (`_cosine.stream_sum`), whichever is faster. Within each round it is measured
in its own block, call by call alternating with the float32 search (`bound_calls` calls of
each, order rotating), and the round's ratio is the search's fastest call over the bound's
fastest call. Timed as separate batches seconds apart (as before), the two sides met different
load from the other processes on this shared 2-core VM: per-round ratios spread 0.5-1.7x and
medians of 7 rounds moved 0.94-1.29x between runs. Side by side, with the fastest call of
each, preemption during one call no longer decides a round. The bound is not made slower:
the same bytes, the same threads, the faster of two reads, and a bound read may still follow
the other bound read of the same array (the tail of its bytes possibly still in L3), where the
search always follows a read of another set: any head start is the bound's.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from harness.config import compose
from harness.kernels import CosineIndex, _cosine
from harness.roofline.roofs import cache_sizes

faiss = pytest.importorskip("faiss", reason="faiss-cpu is in the dev extra")
torch = pytest.importorskip("torch")

pytestmark = pytest.mark.perf

CFG = compose()["kernels"]["index"]["benchmark"]
# The stream-bound ceiling is defined at the memory bandwidth: it is asserted on sets larger than
# the last-level cache. A set that fits (1 x 10,000 x 384 = 15 MB; this host's L3 is 105 MiB)
# is read from cache by both sides, where a bare sum outruns a dot product: reported only.
LLC_BYTES = max(cache_sizes(dict(compose().roofline.cpu.cache_fallback_bytes)).values())
SEARCH = compose()["kernels"]["index"]["search"]
IMPLS = ("index_f32", "index_f16", "faiss", "numpy", "torch", "stream")
ROWS: dict[str, dict[str, object]] = {}


def _load() -> str:
    """The 1-minute load average and core count, for failure messages."""
    return f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def _numpy_topk(qn: np.ndarray, xn: np.ndarray, k: int) -> np.ndarray:
    """numpy: one matmul, argpartition, then the k sorted."""
    s = qn @ xn.T
    part = np.argpartition(-s, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(s, part, 1), axis=1, kind="stable")
    return np.take_along_axis(part, order, 1)


def _side_by_side(fns: dict[str, Callable[[], object]], calls: int, r: int) -> dict[str, float]:
    """Fastest of `calls` single calls of each function, alternating call by call (rotating)."""
    names = list(fns)
    best = {name: float("inf") for name in names}
    for c in range(calls):
        for name in names[(r + c) % len(names) :] + names[: (r + c) % len(names)]:
            t0 = time.perf_counter()
            fns[name]()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def _rounds(
    fns: dict[str, Callable[[], object]],
    calls: int,
    rounds: int,
    bound: dict[str, Callable[[], object]],
) -> dict[str, list]:
    """Seconds per call of each function in each round; rounds interleaved, order rotating.

    `bound` is one more entry of the rotation: its functions side by side (_side_by_side).
    """
    names = [*fns, "bound"]
    times: dict[str, list[float]] = {n: [] for n in [*fns, *bound]}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            time.sleep(CFG.settle_s)
            if name == "bound":
                for key, t in _side_by_side(bound, CFG.bound_calls, r).items():
                    times[key].append(t)
                continue
            t0 = time.perf_counter()
            for _ in range(calls):
                fns[name]()
            times[name].append((time.perf_counter() - t0) / calls)
    return times


def _median_ratio(num: list[float], den: list[float]) -> float:
    """Median over rounds of num/den measured within the same round."""
    return statistics.median(a / b for a, b in zip(num, den))


def _recall(ids: np.ndarray, ref: np.ndarray) -> float:
    """Mean fraction of the reference ids found, per query."""
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(ids, ref)]))


def _write_report() -> None:
    """Markdown table of every case measured so far."""
    head = (
        "| case (N x M, k) | CosineIndex f32 ms | f16 ms | FAISS ms | numpy ms | torch ms "
        "| stream bound ms | vs FAISS | f32 / bound | f16 speed-up | f16 recall@k |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = [
        f"| {name} (k={r['k']}) | {r['index_f32']:.3f} | {r['index_f16']:.3f} | {r['faiss']:.3f} "
        f"| {r['numpy']:.3f} | {r['torch']:.3f} | {r['stream']:.3f} | {r['vs_faiss']:.2f}x "
        f"| {r['vs_stream']:.2f} | {r['f16_speedup']:.2f}x | {r['recall']:.4f} |"
        for name, r in ROWS.items()
    ]
    text = head + "\n".join(lines) + "\n"
    path = Path(CFG.report)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print("\n" + text)


@pytest.mark.parametrize("name", list(CFG.cases))
def test_cosine_index_speed(name: str, capsys) -> None:  # noqa: ANN001 - pytest fixture
    case = CFG.cases[name]
    n, m, k, d = case.queries, case.size, case.k, CFG.dim
    rng = np.random.default_rng(CFG.seed)
    x = rng.standard_normal((m, d), dtype=np.float32)
    q = rng.standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)  # in place: one copy of a 1.5 GB set
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    f32 = CosineIndex(x)
    f16 = CosineIndex(x, dtype="float16")
    flat = faiss.IndexFlatIP(d)
    flat.add(x)
    xt, qt = torch.from_numpy(x), torch.from_numpy(qn)
    threads = f32.threads(n)
    chunk = SEARCH.chunk_rows * d  # floats: the rows a search thread claims at a time

    # correctness first: every implementation finds the same neighbours (ties aside)
    _, i32 = f32.search(q, k)
    _, i16 = f16.search(q, k)
    _, ifa = flat.search(qn, k)
    assert _recall(ifa, i32) >= 0.99 and _recall(_numpy_topk(qn, x, k), i32) >= 0.99
    recall = _recall(i16, i32)

    fns = {
        "index_f32": lambda: f32.search(q, k),
        "index_f16": lambda: f16.search(q, k),
        "faiss": lambda: flat.search(qn, k),
        "numpy": lambda: _numpy_topk(qn, x, k),
        "torch": lambda: torch.topk(qt @ xt.T, k, dim=1),
    }
    bound = {
        "bound_f32": fns["index_f32"],
        # read the set's bytes once, on one thread and on the search's threads
        "sum_numpy": lambda: x.sum(),
        "sum_threads": lambda: _cosine.stream_sum(x, threads, chunk),
    }
    load_before = _load()
    times = _rounds(fns, case.calls_per_round, CFG.rounds, bound)
    times["stream"] = [min(a, b) for a, b in zip(times["sum_numpy"], times["sum_threads"])]
    bound_ratio = _median_ratio(times["bound_f32"], times["stream"])
    vs_faiss = _median_ratio(times["faiss"], times["index_f32"])
    f16_speedup = _median_ratio(times["index_f32"], times["index_f16"])
    ROWS[name] = {
        "k": k,
        **{impl: min(times[impl]) * 1e3 for impl in IMPLS},
        "vs_faiss": vs_faiss,
        "vs_stream": bound_ratio,
        "f16_speedup": f16_speedup,
        "recall": recall,
    }
    with capsys.disabled():
        _write_report()
        print(
            f"({CFG.rounds} interleaved rounds, {threads} threads; {load_before} before, "
            f"{_load()} after)"
        )

    per_round = " ".join(f"{a / b:.2f}" for a, b in zip(times["bound_f32"], times["stream"]))
    from_memory = x.nbytes > LLC_BYTES
    if n == 1:
        judged = (
            f"ceiling {CFG.max_time_vs_stream}x"
            if from_memory
            else f"reported: the {x.nbytes / 2**20:.0f} MiB set fits the "
            f"{LLC_BYTES / 2**20:.0f} MiB last-level cache"
        )
        with capsys.disabled():
            print(f"{name}: {bound_ratio:.2f}x the stream bound ({judged}); per round: {per_round}")
    problems = []
    if vs_faiss < CFG.min_speedup_vs_faiss:
        problems.append(f"{vs_faiss:.2f}x FAISS (floor {CFG.min_speedup_vs_faiss}x)")
    if n == 1 and from_memory and bound_ratio > CFG.max_time_vs_stream:
        problems.append(
            f"{bound_ratio:.2f}x the time to stream the set (ceiling {CFG.max_time_vs_stream}x; "
            f"per round: {per_round})"
        )
    if name in CFG.float16_speedup_cases and f16_speedup < CFG.min_float16_speedup:
        problems.append(f"float16 {f16_speedup:.2f}x float32 (floor {CFG.min_float16_speedup}x)")
    if recall < CFG.min_float16_recall:
        problems.append(f"float16 recall@{k} {recall:.4f} (floor {CFG.min_float16_recall})")
    assert not problems, f"{name}: " + "; ".join(problems) + f" ({_load()}; see table above)"
