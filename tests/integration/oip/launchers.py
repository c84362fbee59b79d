"""Launchers of real Open Inference Protocol (KServe v2) servers serving the golden classifier.

Every launcher has the project's service shape (start/ready/url/grpc_url/stop) and serves the
fixture model `fixtures/triton/model.onnx` as `mnist-onnx`, correct or with one deliberate fault:

- `triton`: the harness's own embedded tritonserver deployment (`make_triton`, local backend);
- `pytriton`: PyTriton binding a Python function (onnxruntime) to the same tritonserver binary;
- `mlserver`: MLServer 1.7.1 with a custom runtime, in its own venv (.work/venvs/mlserver);
- `kserve`: KServe 0.21 `ModelServer` with a `kserve.Model`, in its own venv (.work/venvs/kserve).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from harness.errors import ServiceError
from harness.paths import ROOT
from harness.services.base import LocalProcess, http_ok
from harness.services.triton import free_ports, triton_env

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
GOLDEN_MODEL = ROOT / "fixtures" / "triton" / "model.onnx"
MODEL_NAME = "mnist-onnx"
VENVS_DIR = ROOT / ".work" / "venvs"


def _pins(name: str) -> dict[str, str]:
    """{distribution: version} of requirements-<name>.txt (the one place the pins live)."""
    pins = {}
    for line in (HERE / f"requirements-{name}.txt").read_text().splitlines():
        dist, sep, version = line.split("#", 1)[0].strip().partition("==")
        if sep:
            pins[dist.strip()] = version.strip()
    return pins


# The distributions each own venv must hold, as scripts/setup.sh installs them.
VENV_PACKAGES = {name: _pins(name) for name in ("mlserver", "kserve")}
# Which faults each kind can really show: Triton (and so PyTriton) rejects wrong datatypes and
# shapes against the model config before any Python runs (seen: 400 from the core), and PyTriton
# binds its outputs with a declared datatype (strict=True checks the callable's answers).
FAULTS_BY_KIND = {
    "triton": frozenset(),
    "pytriton": frozenset({"wrong_weights", "swapped_rows", "slow"}),
    "mlserver": frozenset(
        {"wrong_weights", "swapped_rows", "wrong_dtype", "dies_on_bad_input", "slow"}
    ),
    "kserve": frozenset(
        {"wrong_weights", "swapped_rows", "wrong_dtype", "dies_on_bad_input", "slow"}
    ),
}
WRONG_WEIGHTS_SEED = 0
WRONG_WEIGHTS_SCALE = 0.5  # noise std relative to each initializer's own std


def venv_python(name: str) -> Path:
    """Path of the python of the own venv `name` (.work/venvs/<name>/bin/python)."""
    return VENVS_DIR / name / "bin" / "python"


def _venv_problem(name: str) -> str | None:
    """What is missing in the own venv `name`, or None when it is complete."""
    python = venv_python(name)
    if not python.exists():
        return f"{python} does not exist"
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for d in json.loads(sys.argv[1]):\n"
        "    try: out[d] = m.version(d)\n"
        "    except m.PackageNotFoundError: out[d] = None\n"
        "print(json.dumps(out))\n"
    )
    wanted = VENV_PACKAGES[name]
    try:
        res = subprocess.run(
            [str(python), "-c", code, json.dumps(list(wanted))],
            capture_output=True,
            text=True,
            timeout=60,
        )
        found = json.loads(res.stdout)
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        return f"{python} does not run ({exc})"
    missing = [f"{dist}=={pin}" for dist, pin in wanted.items() if found.get(dist) != pin]
    if missing:
        return f"{python} lacks {', '.join(missing)}"
    return None


_venv_checked: dict[str, str | None] = {}


def ensure_venv(name: str) -> Path:
    """The python of the own venv `name`, or pytest.skip naming what is missing."""
    if name not in VENV_PACKAGES:
        raise ValueError(f"unknown venv {name!r} (choose from {', '.join(VENV_PACKAGES)})")
    if name not in _venv_checked:
        _venv_checked[name] = _venv_problem(name)
    problem = _venv_checked[name]
    if problem is not None:
        pytest.skip(f"{name} venv incomplete: {problem}; run scripts/setup.sh to create it")
    return venv_python(name)


def make_wrong_weights(src: Path, dst: Path) -> Path:
    """Copy of the ONNX model `src` with deterministic noise added to every float initializer."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    rng = np.random.default_rng(WRONG_WEIGHTS_SEED)
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype.kind != "f" or arr.size == 0:
            continue
        scale = WRONG_WEIGHTS_SCALE * (float(arr.std()) or 1e-2)
        noisy = (arr + rng.normal(0.0, scale, arr.shape)).astype(arr.dtype)
        init.CopyFrom(numpy_helper.from_array(noisy, init.name))
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return dst


class OipServer:
    """Base launcher: one OIP server in a managed child process, correct or with one fault."""

    kind = "?"
    has_grpc = True
    startup_timeout = 120.0
    start_attempts = 3

    def __init__(
        self,
        fault: str | None = None,
        *,
        work_dir: Path,
        model_path: Path = GOLDEN_MODEL,
        host: str = "127.0.0.1",
    ) -> None:
        if fault is not None and fault not in FAULTS_BY_KIND[self.kind]:
            allowed = ", ".join(sorted(FAULTS_BY_KIND[self.kind])) or "none"
            raise ValueError(f"{self.kind} cannot show fault {fault!r} (it can: {allowed})")
        self.fault = fault
        self.work_dir = Path(work_dir)
        self.model_path = Path(model_path)
        self.host = host
        self.model = MODEL_NAME
        self.name = f"oip-{self.kind}" + (f"-{fault}" if fault else "")
        self.http_port = 0
        self.grpc_port = 0
        self.startup_s: float | None = None
        self.process: LocalProcess | None = None

    # -- service shape --------------------------------------------------------------------
    @property
    def url(self) -> str:
        """HTTP base URL, http://127.0.0.1:PORT (valid after start)."""
        if not self.http_port:
            raise ServiceError(f"{self.name} is not started")
        return f"http://{self.host}:{self.http_port}"

    @property
    def http_address(self) -> str:
        """host:port of the HTTP endpoint (what tritonclient.http takes)."""
        return self.url.split("://", 1)[1]

    @property
    def grpc_url(self) -> str | None:
        """host:port of the gRPC endpoint, None when the server has none."""
        return f"{self.host}:{self.grpc_port}" if self.has_grpc and self.grpc_port else None

    def ready(self) -> bool:
        """True when the process is alive and the model answers its v2 ready endpoint."""
        return self.process is not None and self.process.ready()

    def running(self) -> bool:
        """True while the server process is alive."""
        return self.process is not None and self.process.running()

    def returncode(self) -> int | None:
        """Exit code of the server process once it exited (e.g. `dies_on_bad_input`), else None."""
        proc = self.process.proc if self.process is not None else None
        return proc.poll() if proc is not None else None

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server log."""
        return self.process.log_tail(lines) if self.process is not None else ""

    def start(self) -> None:
        """Start on free ports, block until the model is ready; ServiceError with the log tail."""
        if self.running():
            return
        self.work_dir.mkdir(parents=True, exist_ok=True)
        model_path = self._model_file()
        t0 = time.monotonic()
        for attempt in range(1, self.start_attempts + 1):
            self.stop()
            self.http_port, self.grpc_port, aux = free_ports(3, self.host)
            self.process = LocalProcess(
                self.name,
                self.argv(model_path, aux),
                url=f"http://{self.host}:{self.http_port}",
                ready_check=self._model_ready,
                log_path=self.work_dir / f"{self.name}.log",
                env=self.env(),
                cwd=self.work_dir,
                startup_timeout=self.startup_timeout,
            )
            try:
                self.process.start()
                break
            except ServiceError as exc:
                self.http_port = self.grpc_port = 0
                # Free ports are only free until another job binds them: retry on new ones.
                taken = re.search(r"address already in use|port .* in use", exc.detail or "", re.I)
                if not taken or attempt == self.start_attempts:
                    raise
                log.warning("%s: a port was taken meanwhile, retrying", self.name)
        self.startup_s = time.monotonic() - t0
        log.info("%s ready at %s in %.1fs", self.name, self.url, self.startup_s)

    def stop(self) -> None:
        """Stop the process group (SIGTERM, then SIGKILL); always safe."""
        process, self.process = self.process, None
        if process is not None:
            process.stop()

    def __enter__(self) -> OipServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- per kind -------------------------------------------------------------------------
    def argv(self, model_path: Path, aux_port: int) -> list[str]:
        """Command line of the server (aux_port: a third free port, e.g. for metrics)."""
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        """Environment of the server process."""
        env = dict(os.environ)
        for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
            env.pop(var, None)
        env["PYTHONPATH"] = str(HERE)  # oip_model and the runtimes live next to this file
        env["PYTHONUNBUFFERED"] = "1"
        env.setdefault("OMP_NUM_THREADS", "1")
        return env

    def _model_file(self) -> Path:
        if self.fault != "wrong_weights":
            return self.model_path
        return make_wrong_weights(self.model_path, self.work_dir / "wrong_weights.onnx")

    def _model_ready(self) -> bool:
        return http_ok(f"http://{self.host}:{self.http_port}/v2/models/{self.model}/ready")


class PyTritonLauncher(OipServer):
    """PyTriton (nvidia-pytriton 0.7.0, the project's venv) binding onnxruntime; max batch 64."""

    kind = "pytriton"

    def argv(self, model_path: Path, aux_port: int) -> list[str]:
        """pytriton_server.py with the ports and a fresh workspace (it must not exist yet)."""
        workspace = self.work_dir / "workspace"
        shutil.rmtree(workspace, ignore_errors=True)
        argv = [sys.executable, str(HERE / "pytriton_server.py"), "--model", str(model_path)]
        argv += ["--host", self.host, "--http-port", str(self.http_port)]
        argv += ["--grpc-port", str(self.grpc_port), "--metrics-port", str(aux_port)]
        argv += ["--workspace", str(workspace)]
        return argv + (["--fault", self.fault] if self.fault else [])

    def env(self) -> dict[str, str]:
        """triton_env(): the stub must load this interpreter's libpython (see ENVIRONMENT.md)."""
        env = triton_env()
        env.update({k: v for k, v in super().env().items() if k.startswith("PYTHON")})
        return env

    def stop(self) -> None:
        """Stop, then drop the workspace (PyTriton keeps an explicit one)."""
        super().stop()
        shutil.rmtree(self.work_dir / "workspace", ignore_errors=True)


class MLServerLauncher(OipServer):
    """MLServer 1.7.1 (own venv) with the `oip_mlserver.OnnxClassifierRuntime` custom runtime.

    HTTP takes JSON tensors only: MLServer has no binary tensor extension (tritonclient.http
    needs binary_data=False on inputs and outputs).
    """

    kind = "mlserver"

    def argv(self, model_path: Path, aux_port: int) -> list[str]:
        """`mlserver start DIR` after writing settings.json and model-settings.json into DIR."""
        python = ensure_venv("mlserver")
        root = self.work_dir / "mlserver"
        shutil.rmtree(root, ignore_errors=True)
        (root / "models" / self.model).mkdir(parents=True)
        settings = {
            "host": self.host,
            "http_port": self.http_port,
            "grpc_port": self.grpc_port,
            # 0: inference in the server process itself (no worker pool), so one process.
            "parallel_workers": 0,
            "metrics_endpoint": None,
            "debug": False,
            "model_repository_root": str(root / "models"),
            "load_models_at_startup": True,
        }
        model_settings = {
            "name": self.model,
            "implementation": "oip_mlserver.OnnxClassifierRuntime",
            "parameters": {"uri": str(model_path), "extra": {"fault": self.fault}},
            # Declared so that model metadata lists them (MLServer does not infer them).
            "inputs": [{"name": "images", "datatype": "FP32", "shape": [-1, 1, 28, 28]}],
            "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}],
        }
        (root / "settings.json").write_text(json.dumps(settings, indent=2))
        (root / "models" / self.model / "model-settings.json").write_text(
            json.dumps(model_settings, indent=2)
        )
        return [str(python.parent / "mlserver"), "start", str(root)]


class KServeLauncher(OipServer):
    """KServe 0.21 `ModelServer` (own venv, numpy 2) with `kserve_server.OnnxClassifierModel`.

    KServe's HTTP endpoint reads a body without `Content-Type: application/json` as binary
    tensors: JSON requests must carry that header (tritonclient.http binary requests work as is).
    """

    kind = "kserve"

    def argv(self, model_path: Path, aux_port: int) -> list[str]:
        """kserve_server.py with kserve's own port flags."""
        python = ensure_venv("kserve")
        argv = [str(python), str(HERE / "kserve_server.py"), "--model-file", str(model_path)]
        argv += ["--http_port", str(self.http_port), "--grpc_port", str(self.grpc_port)]
        return argv + (["--fault", self.fault] if self.fault else [])


class EmbeddedTriton(OipServer):
    """The harness's own deployment: `make_triton(cfg, "local", ...)` on the fixture repository."""

    kind = "triton"

    def __init__(self, fault: str | None = None, *, work_dir: Path, **kwargs: object) -> None:
        super().__init__(fault, work_dir=work_dir, **kwargs)
        self.server = None

    @property
    def url(self) -> str:
        """HTTP base URL of the embedded tritonserver."""
        if self.server is None:
            raise ServiceError(f"{self.name} is not started")
        return self.server.url

    @property
    def grpc_url(self) -> str | None:
        """host:port of its gRPC endpoint."""
        return self.server.grpc_url if self.server is not None else None

    def ready(self) -> bool:
        """True when tritonserver reports the model ready."""
        return self.server is not None and self.server.ready() and self._model_ready()

    def running(self) -> bool:
        """True while tritonserver runs."""
        proc = getattr(self.server, "process", None)
        return proc is not None and proc.running()

    def returncode(self) -> int | None:
        """Exit code of tritonserver once it exited, else None."""
        proc = getattr(getattr(self.server, "process", None), "proc", None)
        return proc.poll() if proc is not None else None

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the tritonserver log."""
        return self.server.log_tail(lines) if self.server is not None else ""

    def start(self) -> None:
        """Materialize the fixture repository and start tritonserver (blocks until ready)."""
        if self.running():
            return
        from harness.config import compose
        from harness.services.triton import make_triton
        from harness.testing.fixtures_triton import make_fixture_repository

        cfg = compose([])
        t0 = time.monotonic()
        repo = make_fixture_repository(cfg, self.work_dir / "repo", self.model_path)
        self.server = make_triton(cfg, "local", repo, work_dir=self.work_dir / "triton")
        try:
            self.server.start()
        except ServiceError:
            self.server = None
            raise
        self.http_port = self.server.http_port
        self.grpc_port = self.server.grpc_port
        self.startup_s = time.monotonic() - t0

    def stop(self) -> None:
        """Stop tritonserver; always safe."""
        server, self.server = self.server, None
        if server is not None:
            server.stop()


LAUNCHERS: dict[str, type[OipServer]] = {
    "triton": EmbeddedTriton,
    "pytriton": PyTritonLauncher,
    "mlserver": MLServerLauncher,
    "kserve": KServeLauncher,
}


def make_server(kind: str, fault: str | None = None, *, work_dir: Path) -> OipServer:
    """A launcher (not started) for `kind` serving mnist-onnx with `fault` (None: correct)."""
    if kind not in LAUNCHERS:
        raise ValueError(f"unknown OIP server {kind!r} (choose from {', '.join(LAUNCHERS)})")
    return LAUNCHERS[kind](fault, work_dir=work_dir)
