"""Choice of OpenBLAS kernel family for the cosine kernel (harness.kernels.coretype)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.kernels import blas_info
from harness.kernels.coretype import ENV, coretype_env, preferred_coretype

ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
flags\t\t: fpu sse2 avx2 fma avx512f avx512bw

processor\t: 1
vendor_id\t: GenuineIntel
"""


def cpu(vendor: str, family: int, flags: str) -> str:
    return f"vendor_id\t: {vendor}\ncpu family\t: {family}\nflags\t\t: {flags}\n"


@pytest.mark.parametrize(
    "text, want",
    [
        (ZEN4, "Zen"),  # AVX-512 on two 256-bit halves: OpenBLAS would pick SkylakeX
        (cpu("AuthenticAMD", 25, "avx2 fma"), None),  # Zen 3: OpenBLAS already picks Zen
        (cpu("AuthenticAMD", 26, "avx2 avx512f"), None),  # Zen 5: full-width AVX-512
        (cpu("GenuineIntel", 6, "avx2 avx512f"), None),  # Intel: OpenBLAS's own pick
        (cpu("AuthenticAMD", 21, "avx fma"), None),  # older AMD: never forced
        ("garbage", None),
        ("", None),
    ],
)
def test_preferred_coretype(text: str, want: str | None) -> None:
    assert preferred_coretype(text) == want


def test_env_is_set_while_loading_and_restored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(ZEN4)
    monkeypatch.delenv(ENV, raising=False)
    with coretype_env(info) as core:
        assert core == "Zen" and os.environ[ENV] == "Zen"
    assert ENV not in os.environ
    monkeypatch.setenv(ENV, "Haswell")  # the user's choice wins and is left alone
    with coretype_env(info) as core:
        assert core is None and os.environ[ENV] == "Haswell"
    assert os.environ[ENV] == "Haswell"
    monkeypatch.delenv(ENV)
    with coretype_env(tmp_path / "missing") as core:
        assert core is None and ENV not in os.environ


def test_loaded_library_follows_the_choice() -> None:
    """The OpenBLAS the extension uses runs the kernel family chosen for this CPU."""
    if ENV in os.environ:
        pytest.skip(f"{ENV} is set by the user: OpenBLAS follows it")
    want = preferred_coretype(Path("/proc/cpuinfo").read_text(errors="replace"))
    if want is None:
        pytest.skip("this CPU keeps OpenBLAS's own choice")
    family = {"Zen": "Haswell"}.get(want, want)  # OpenBLAS reports Zen's kernels as Haswell
    assert family in str(blas_info()["config"]).split()
    assert ENV not in os.environ  # restored after loading
