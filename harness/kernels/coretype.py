"""Which OpenBLAS kernel family to load on this CPU, when OpenBLAS's own pick is slower.

OpenBLAS (DYNAMIC_ARCH) picks its kernels from the CPU's instruction sets. On AMD Zen 4, which
runs AVX-512 as two 256-bit halves, that pick is SkylakeX, whose sgemm measured slower here than
the Zen (Haswell) family: 4096x4096x512 on two threads 85.3 vs 81.2 ms, 200 vs 207 GFLOP/s over
two runs; 64x64x128 on one thread 54-55 vs 56-57 GFLOP/s. Other CPUs keep OpenBLAS's choice, and
so does anyone who set OPENBLAS_CORETYPE.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

ENV = "OPENBLAS_CORETYPE"
# (vendor_id, cpu family) -> OpenBLAS core type, applied only where the CPU has AVX-512
# (where OpenBLAS would otherwise choose its SkylakeX/Cooperlake kernels).
PREFERRED: dict[tuple[str, int], str] = {("AuthenticAMD", 25): "Zen"}


def preferred_coretype(cpuinfo: str) -> str | None:
    """The core type to ask OpenBLAS for on the CPU `cpuinfo` describes, or None for its own."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            break  # the first processor is enough
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    try:
        family = int(fields.get("cpu family", ""))
    except ValueError:
        return None
    if "avx512f" not in fields.get("flags", "").split():
        return None
    return PREFERRED.get((fields.get("vendor_id", ""), family))


@contextlib.contextmanager
def coretype_env(cpuinfo_path: str | os.PathLike[str] = "/proc/cpuinfo") -> Iterator[str | None]:
    """Set OPENBLAS_CORETYPE while OpenBLAS loads (unless the user set it); restore it after."""
    if ENV in os.environ:
        yield None
        return
    try:
        core = preferred_coretype(Path(cpuinfo_path).read_text(errors="replace"))
    except OSError:
        core = None
    if core is not None:
        os.environ[ENV] = core
    try:
        yield core
    finally:
        if core is not None:
            os.environ.pop(ENV, None)
