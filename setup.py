"""Build of the C++ cosine kernel (harness.kernels._cosine); all metadata is in pyproject.toml.

BLAS is chosen at build time with HARNESS_BLAS:
- ``scipy-openblas32`` (default): OpenBLAS from the scipy-openblas32 wheel, no root needed.
  The wheel is a build requirement and a runtime dependency; harness.kernels imports it (which
  loads libscipy_openblas.so globally) before the extension, so the extension needs no RPATH
  into pip's temporary build environment.
- ``system``: the system's libopenblas (pkg-config ``openblas``; HARNESS_BLAS_INCLUDE and
  HARNESS_BLAS_LIBDIR override the directories, e.g. for an unpacked Debian package).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import setup
from setuptools.command.build_py import build_py

CSRC = "harness/kernels/csrc"


def _pkg_config(flag: str, name: str) -> list[str]:
    """Flags from pkg-config, or [] when pkg-config or the package is missing."""
    try:
        res = subprocess.run(["pkg-config", flag, name], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return []
    return shlex.split(res.stdout)


def blas_options() -> dict[str, list]:
    """Compiler/linker options for the BLAS selected by HARNESS_BLAS."""
    choice = os.environ.get("HARNESS_BLAS", "scipy-openblas32").strip().lower()
    if choice in ("scipy-openblas32", "scipy", ""):
        import scipy_openblas32

        return {
            "include_dirs": [scipy_openblas32.get_include_dir()],
            "library_dirs": [scipy_openblas32.get_lib_dir()],
            "libraries": [scipy_openblas32.get_library()],
            "define_macros": [
                ("HARNESS_BLAS_SCIPY", "1"),
                ("HARNESS_BLAS_NAME", '"scipy-openblas32"'),
            ],
            "extra_link_args": [],
        }
    if choice in ("system", "openblas"):
        inc = os.environ.get("HARNESS_BLAS_INCLUDE")
        libdir = os.environ.get("HARNESS_BLAS_LIBDIR")
        cflags = [f"-I{inc}"] if inc else _pkg_config("--cflags", "openblas")
        if not inc and not cflags:
            deb = "/usr/include/x86_64-linux-gnu/openblas-pthread"
            cflags = [f"-I{deb}"] if os.path.isdir(deb) else []
        link = [f"-L{libdir}", f"-Wl,-rpath,{libdir}"] if libdir else []
        return {
            "include_dirs": [f[2:] for f in cflags if f.startswith("-I")],
            "library_dirs": [],
            "libraries": ["openblas"],
            "define_macros": [("HARNESS_BLAS_NAME", '"system-openblas"')],
            "extra_link_args": link,
        }
    raise SystemExit(f"HARNESS_BLAS={choice!r}: expected 'scipy-openblas32' or 'system'")


blas = blas_options()
ext = Pybind11Extension(
    "harness.kernels._cosine",
    [f"{CSRC}/module.cpp"],
    depends=[f"{CSRC}/cosine.hpp", f"{CSRC}/index.hpp", f"{CSRC}/blas.hpp"],
    include_dirs=[CSRC, *blas["include_dirs"]],
    library_dirs=blas["library_dirs"],
    libraries=blas["libraries"],
    define_macros=blas["define_macros"],
    extra_compile_args=["-O3", "-fopenmp-simd", "-pthread"],
    extra_link_args=["-pthread", *blas["extra_link_args"]],
    cxx_std=17,
)

# What an installed package needs outside harness/: the default configs and the fixtures.
DEFAULTS = ("configs", "fixtures")


class build_py_with_defaults(build_py):
    """build_py that also copies configs/ and fixtures/ into harness/_defaults/ of the build."""

    def run(self) -> None:
        super().run()
        here = Path(__file__).resolve().parent
        for name in DEFAULTS:
            src, dst = here / name, Path(self.build_lib) / "harness" / "_defaults" / name
            if src.is_dir():
                shutil.rmtree(dst, ignore_errors=True)
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(
    ext_modules=[ext],
    cmdclass={"build_ext": build_ext, "build_py": build_py_with_defaults},
)
