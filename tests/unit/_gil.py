"""Does a call release the GIL? Count the main thread's steps in the middle of its run."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

MIN_STEPS = 10  # held for the whole call, the main thread would take none in its middle half


def assert_gil_released(call: Callable[[], object]) -> None:
    """Run `call` in a thread; the main thread must keep taking steps in its middle half.

    Were the GIL held for the whole call, the main thread could take no step inside the
    middle half of the call's window; released, it takes many (ratios only, no timings).
    """
    window: dict[str, float] = {}
    started = threading.Event()

    def worker() -> None:
        started.set()
        window["t0"] = time.perf_counter()
        call()
        window["t1"] = time.perf_counter()

    steps: list[float] = []
    th = threading.Thread(target=worker)
    th.start()
    started.wait()
    while th.is_alive():
        steps.append(time.perf_counter())
    th.join()
    t0, t1 = window["t0"], window["t1"]
    lo, hi = t0 + 0.25 * (t1 - t0), t0 + 0.75 * (t1 - t0)
    inside = sum(lo <= s <= hi for s in steps)
    assert (
        inside >= MIN_STEPS
    ), f"main thread took {inside} steps in the middle of a {t1 - t0:.3f}s call"
