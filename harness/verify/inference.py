"""What the inference checks need: the reference (ONNX or golden), wires, tolerances, targets.

A *reference* says what the deployed model must answer: the user's ONNX file run in-process by
onnxruntime (any input), or a golden `.npz` (fixed inputs and their expected outputs). A *wire*
sends one request over one of the Open Inference Protocol's transports: HTTP with JSON tensors
(every server has it), HTTP with the binary tensor extension (Triton), or gRPC.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import HarnessError
from harness.urls import base_url, grpc_address

# Open Inference Protocol datatype <-> numpy.
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(bool),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
_ONNX_TYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


def datatype_of(dtype: np.dtype) -> str:
    """The protocol's datatype name for a numpy dtype."""
    dtype = np.dtype(dtype)
    if dtype.kind in "OSU":
        return "BYTES"
    for name, dt in DATATYPES.items():
        if dt == dtype:
            return name
    raise HarnessError(f"numpy dtype {dtype} has no Open Inference Protocol datatype")


@dataclass(frozen=True)
class Spec:
    """One tensor as declared: name, datatype, shape (-1 for a variable dimension)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def show(self) -> str:
        """`images FP32 [-1, 1, 28, 28]`."""
        return f"{self.name} {self.datatype} {list(self.shape)}"


def specs_from_metadata(items: Sequence[Mapping[str, Any]]) -> tuple[Spec, ...]:
    """Specs from a model-metadata answer's `inputs`/`outputs` list."""
    return tuple(
        Spec(str(t["name"]), str(t["datatype"]), tuple(int(d) for d in t.get("shape", [])))
        for t in items
    )


# ------------------------------------------------------------------------------ tolerances
@dataclass(frozen=True)
class Tolerance:
    """|served - expected| <= atol + rtol * |expected|, elementwise."""

    atol: float
    rtol: float

    def show(self) -> str:
        """`atol 1e-05, rtol 1e-05`."""
        return f"atol {self.atol:g}, rtol {self.rtol:g}"


def tolerance_for(
    datatype: str,
    table: Mapping[str, Mapping[str, float]],
    atol: float | None = None,
    rtol: float | None = None,
) -> Tolerance:
    """The tolerance for a datatype from the configured table; explicit values win."""
    row = table.get(datatype) or table["exact"]
    return Tolerance(
        float(row["atol"]) if atol is None else float(atol),
        float(row["rtol"]) if rtol is None else float(rtol),
    )


def mismatch(name: str, served: np.ndarray, expected: np.ndarray, tol: Tolerance) -> str | None:
    """None when equal within `tol`, else one line naming the first differing element."""
    served, expected = np.asarray(served), np.asarray(expected)
    if served.shape != expected.shape:
        return f"output '{name}' has shape {list(served.shape)}, expected {list(expected.shape)}"
    if expected.dtype == object or served.dtype == object:
        bad = np.argwhere(served.astype(object) != expected.astype(object))
        if not len(bad):
            return None
        idx = tuple(int(i) for i in bad[0])
        return (
            f"output '{name}'{list(idx)} = {served[idx]!r}, expected {expected[idx]!r} "
            f"({len(bad)} of {expected.size} elements differ)"
        )
    s, e = served.astype(np.float64), expected.astype(np.float64)
    with np.errstate(invalid="ignore"):
        ok = np.abs(s - e) <= tol.atol + tol.rtol * np.abs(e)
    ok |= (np.isnan(s) & np.isnan(e)) | ((s == e) & np.isinf(e))
    if ok.all():
        return None
    bad = np.argwhere(~ok)
    idx = tuple(int(i) for i in bad[0])
    diff = np.abs(s - e)[~ok]
    worst = float(diff.max()) if np.isfinite(diff).all() else float("nan")
    return (
        f"output '{name}'{list(idx)} = {s[idx]:.7g}, expected {e[idx]:.7g} "
        f"(|diff| {abs(s[idx] - e[idx]):.3g} > {tol.show()}; {len(bad)} of {e.size} elements "
        f"differ, max |diff| {worst:.3g})"
    )


# ------------------------------------------------------------------------------- references
class Reference:
    """What the deployed model must answer: specs, golden data and (with ONNX) an oracle."""

    def __init__(
        self,
        inputs: tuple[Spec, ...],
        outputs: tuple[Spec, ...],
        *,
        source: str,
        golden_inputs: dict[str, np.ndarray] | None = None,
        golden_outputs: dict[str, np.ndarray] | None = None,
        session: Any = None,
    ) -> None:
        self.inputs = inputs
        self.outputs = outputs
        self.source = source
        self.golden_inputs = golden_inputs
        self.golden_outputs = golden_outputs
        self._session = session
        self._lock = threading.Lock()

    @property
    def has_oracle(self) -> bool:
        """True when any input can be answered (an ONNX file), not only the golden ones."""
        return self._session is not None

    @property
    def batched(self) -> bool:
        """True when every input's first axis is variable (the batch axis)."""
        return all(s.shape and s.shape[0] == -1 for s in self.inputs)

    def predict(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The oracle's outputs for `feed` (ONNX references only)."""
        if self._session is None:
            raise HarnessError(f"{self.source} is golden data: it answers only its own inputs")
        names = [s.name for s in self.outputs]
        with self._lock:  # one session, many checker threads
            values = self._session.run(names, dict(feed))
        return dict(zip(names, values))


def _onnx_dim(d: Any) -> int:
    return int(d) if isinstance(d, int) and d >= 0 else -1


def load_onnx(path: str | Path) -> Reference:
    """A reference from an ONNX file: onnxruntime in-process on the CPU is the oracle."""
    import onnxruntime as ort

    path = Path(path)
    try:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own unrelated types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HarnessError(f"{path}: not a loadable ONNX model: {first}") from exc

    def specs(items: Sequence[Any]) -> tuple[Spec, ...]:
        out = []
        for t in items:
            if t.type not in _ONNX_TYPES:
                raise HarnessError(f"{path}: tensor '{t.name}' has unsupported type {t.type}")
            out.append(Spec(t.name, _ONNX_TYPES[t.type], tuple(_onnx_dim(d) for d in t.shape)))
        return tuple(out)

    return Reference(
        specs(sess.get_inputs()), specs(sess.get_outputs()), source=str(path), session=sess
    )


GOLDEN_LAYOUT = (
    "a .npz with one array per tensor: 'inputs/<input name>' and 'outputs/<output name>', "
    "each with the batch axis first"
)


def load_golden(path: str | Path) -> Reference:
    """A reference from a golden .npz (see GOLDEN_LAYOUT); the batch axis is taken as variable."""
    path = Path(path)
    try:
        data = np.load(path, allow_pickle=False)
        arrays = {k: data[k] for k in data.files}
    except Exception as exc:  # zipfile/pickle/ValueError: all mean "not a golden file"
        raise HarnessError(f"{path}: not a readable .npz file ({type(exc).__name__})") from exc
    ins = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("inputs/")}
    outs = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("outputs/")}
    if not ins or not outs:
        raise HarnessError(f"{path}: expected {GOLDEN_LAYOUT}; found {sorted(arrays)}")
    rows = {len(v) for v in (*ins.values(), *outs.values())}
    if len(rows) != 1:
        raise HarnessError(f"{path}: arrays differ in their first (batch) axis: {sorted(rows)}")

    def specs(d: dict[str, np.ndarray]) -> tuple[Spec, ...]:
        return tuple(Spec(k, datatype_of(v.dtype), (-1, *v.shape[1:])) for k, v in d.items())

    return Reference(
        specs(ins), specs(outs), source=str(path), golden_inputs=ins, golden_outputs=outs
    )


def write_golden(path: str | Path, inputs: Mapping[str, Any], outputs: Mapping[str, Any]) -> Path:
    """Write a golden .npz in GOLDEN_LAYOUT (atomically)."""
    from harness.io import atomic_path

    arrays = {f"inputs/{k}": np.asarray(v) for k, v in inputs.items()}
    arrays.update({f"outputs/{k}": np.asarray(v) for k, v in outputs.items()})
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    return Path(path)


def seeded_inputs(
    specs: Sequence[Spec], batch: int, seed: int, dynamic_dim: int
) -> dict[str, np.ndarray]:
    """Deterministic inputs drawn from the specs: batch rows, -1 dims of size `dynamic_dim`."""
    rng = np.random.default_rng(seed)
    feed = {}
    for i, s in enumerate(specs):
        dims = [
            batch if (j == 0 and d == -1) else (dynamic_dim if d == -1 else d)
            for j, d in enumerate(s.shape)
        ]
        dt = DATATYPES[s.datatype]
        if s.datatype == "BYTES":
            arr = np.array(
                [f"harness {seed} {i} {k}".encode() for k in range(int(np.prod(dims)))],
                dtype=object,
            ).reshape(dims)
        elif dt.kind == "f":
            arr = rng.random(dims).astype(dt)  # [0, 1): the range of normalised inputs
        elif dt.kind == "b":
            arr = rng.random(dims) < 0.5
        else:
            arr = rng.integers(0, 100, size=dims).astype(dt)
        feed[s.name] = arr
    return feed


def take(feed: Mapping[str, np.ndarray], rows: Any) -> dict[str, np.ndarray]:
    """The given rows (an index, slice or list) of every array of a feed, batch axis kept."""
    if isinstance(rows, int):
        rows = slice(rows, rows + 1)
    return {k: np.ascontiguousarray(v[rows]) for k, v in feed.items()}


# ----------------------------------------------------------------------------------- wires
class WireError(Exception):
    """A request the server refused or could not answer: status (HTTP code or gRPC name)."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message

    @property
    def client_error(self) -> bool:
        """True for a 4xx answer or a gRPC status that blames the request."""
        s = self.status.upper()
        return (s.isdigit() and 400 <= int(s) < 500) or s in (
            "INVALID_ARGUMENT",
            "NOT_FOUND",
            "FAILED_PRECONDITION",
            "OUT_OF_RANGE",
            "UNIMPLEMENTED",
        )


@dataclass
class Served:
    """One output as answered: the datatype the answer declares and its values."""

    datatype: str
    array: np.ndarray


class HttpJson:
    """The Open Inference Protocol over HTTP with JSON tensors: what every server speaks."""

    name = "http-json"

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = base_url(url)
        self.timeout_s = timeout_s
        self._local = threading.local()

    def _session(self) -> Any:
        import requests

        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """(status, parsed JSON or text) of one request; connection failures raise WireError."""
        import requests

        try:
            resp = self._session().request(
                method,
                self.url + path,
                data=None if body is None else json.dumps(body),
                headers={"Content-Type": "application/json"} if body is not None else None,
                timeout=self.timeout_s,
            )
        except requests.RequestException as exc:
            raise WireError("unreachable", f"{self.url}{path}: {type(exc).__name__}") from exc
        try:
            return resp.status_code, resp.json()
        except ValueError:
            return resp.status_code, resp.text

    def get(self, path: str) -> Any:
        """GET a JSON document; a non-200 answer raises WireError."""
        status, data = self.request("GET", path)
        if status != 200:
            raise WireError(str(status), _error_text(data))
        return data

    def infer(
        self, model: str, feed: Mapping[str, np.ndarray], outputs: Sequence[str] = ()
    ) -> dict[str, Served]:
        """One inference with JSON tensors; outputs by name with their declared datatype."""
        body: dict[str, Any] = {"inputs": [_json_tensor(k, v) for k, v in feed.items()]}
        if outputs:
            body["outputs"] = [{"name": n} for n in outputs]
        return self.infer_body(model, body)

    def infer_body(self, model: str, body: Any) -> dict[str, Served]:
        """POST a raw request body to the model's infer endpoint."""
        status, data = self.request("POST", f"/v2/models/{model}/infer", body)
        if status != 200:
            raise WireError(str(status), _error_text(data))
        if not isinstance(data, dict) or not isinstance(data.get("outputs"), list):
            raise WireError("bad-answer", f"answer has no 'outputs' list: {str(data)[:120]}")
        out = {}
        for t in data["outputs"]:
            dt = str(t.get("datatype", ""))
            if dt not in DATATYPES:
                raise WireError("bad-answer", f"output '{t.get('name')}' has datatype '{dt}'")
            flat = t.get("data", [])
            arr = np.asarray(flat, dtype=DATATYPES[dt] if dt != "BYTES" else object)
            try:
                arr = arr.reshape([int(d) for d in t.get("shape", [])])
            except ValueError as exc:
                raise WireError(
                    "bad-answer",
                    f"output '{t.get('name')}': {arr.size} values for shape " f"{t.get('shape')}",
                ) from exc
            out[str(t.get("name"))] = Served(dt, arr)
        return out


def _json_tensor(name: str, arr: np.ndarray) -> dict[str, Any]:
    arr = np.asarray(arr)
    dt = datatype_of(arr.dtype)
    data = arr.ravel().tolist()
    if dt == "BYTES":
        data = [d.decode() if isinstance(d, bytes) else str(d) for d in data]
    return {"name": name, "shape": list(arr.shape), "datatype": dt, "data": data}


def _error_text(data: Any) -> str:
    if isinstance(data, dict):
        for key in ("error", "detail", "message"):
            if key in data:
                return str(data[key])[:300]
    return str(data).strip()[:300]


class TritonClientWire:
    """HTTP with the binary tensor extension, or gRPC: through NVIDIA's tritonclient."""

    def __init__(self, url: str, protocol: str, timeout_s: float) -> None:
        self.protocol = protocol
        self.name = "http-binary" if protocol == "http" else "grpc"
        self.timeout_s = timeout_s
        if protocol == "http":
            import tritonclient.http as module

            address = base_url(url).split("://", 1)[1]
            self.client = module.InferenceServerClient(
                address, connection_timeout=timeout_s, network_timeout=timeout_s, concurrency=8
            )
        else:
            import tritonclient.grpc as module

            self.client = module.InferenceServerClient(grpc_address(url))
        self.module = module

    def infer(
        self, model: str, feed: Mapping[str, np.ndarray], outputs: Sequence[str] = ()
    ) -> dict[str, Served]:
        """One inference; binary tensors over HTTP, protobuf over gRPC."""
        from tritonclient.utils import InferenceServerException

        binary = {"binary_data": True} if self.protocol == "http" else {}
        tensors = []
        for name, arr in feed.items():
            arr = np.ascontiguousarray(arr)
            t = self.module.InferInput(name, list(arr.shape), datatype_of(arr.dtype))
            t.set_data_from_numpy(arr, **binary)
            tensors.append(t)
        wanted = [self.module.InferRequestedOutput(n, **binary) for n in outputs] or None
        kwargs = {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}
        try:
            res = self.client.infer(model, tensors, outputs=wanted, **kwargs)
        except InferenceServerException as exc:
            status = str(exc.status() or "error").replace("StatusCode.", "")
            raise WireError(status, (exc.message() or str(exc)).strip().splitlines()[0]) from exc
        except (ConnectionError, OSError) as exc:
            raise WireError("unreachable", str(exc)) from exc
        response = res.get_response()
        items = response.outputs if self.protocol == "grpc" else response.get("outputs", [])
        out = {}
        for item in items:
            name = item.name if self.protocol == "grpc" else item["name"]
            dt = item.datatype if self.protocol == "grpc" else item["datatype"]
            out[name] = Served(dt, res.as_numpy(name))
        return out

    def close(self) -> None:
        """Close the connection."""
        try:
            self.client.close()
        except Exception:  # closing a dead connection is not worth reporting
            pass


# ---------------------------------------------------------------------------------- targets
@dataclass
class Target:
    """One deployed model to verify and what to verify it against."""

    url: str
    model: str
    name: str = ""
    grpc_url: str | None = None
    onnx: str | None = None
    golden: str | None = None
    protocol: str = "http"
    config: str | None = None
    concurrency: int | None = None
    duration_s: float | None = None
    p99_ms: float | None = None
    min_throughput: float | None = None
    atol: float | None = None
    rtol: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            self.name = self.model
        if self.protocol not in ("http", "grpc"):
            raise HarnessError(f"target '{self.name}': protocol must be http or grpc")
        if not (self.onnx or self.golden):
            raise HarnessError(f"target '{self.name}' needs a reference: onnx or golden")

    def reference(self) -> Reference:
        """The target's reference (ONNX oracle preferred; golden data added when both given)."""
        if self.onnx:
            ref = load_onnx(self.onnx)
            if self.golden:
                gold = load_golden(self.golden)
                ref.golden_inputs, ref.golden_outputs = gold.golden_inputs, gold.golden_outputs
            return ref
        return load_golden(self.golden)


_TARGET_KEYS = {f for f in Target.__dataclass_fields__ if f != "extra"}


def load_targets(path: str | Path) -> list[Target]:
    """Targets from a YAML file: `defaults:` (optional) and `targets:` (a list of entries).

    Relative file paths (onnx, golden, config) are taken from the YAML file's folder.
    """
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise HarnessError(f"{path}: cannot read the targets file: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("targets"), list) or not doc["targets"]:
        raise HarnessError(f"{path}: expected a mapping with a non-empty 'targets:' list")
    defaults = doc.get("defaults") or {}
    out = []
    for i, entry in enumerate(doc["targets"]):
        if not isinstance(entry, dict):
            raise HarnessError(f"{path}: target {i + 1} is not a mapping")
        merged = {**defaults, **entry}
        unknown = sorted(set(merged) - _TARGET_KEYS)
        if unknown:
            raise HarnessError(f"{path}: target {i + 1} has unknown keys {', '.join(unknown)}")
        for key in ("url", "model"):
            if not merged.get(key):
                raise HarnessError(f"{path}: target {i + 1} has no '{key}'")
        for key in ("onnx", "golden", "config"):
            if merged.get(key) and not Path(merged[key]).is_absolute():
                merged[key] = str((path.parent / merged[key]).resolve())
        out.append(Target(**merged))
    names = [t.name for t in out]
    if len(set(names)) != len(names):
        raise HarnessError(f"{path}: target names must be unique (give each a 'name:')")
    return out


def with_defaults(target: Target, **values: Any) -> Target:
    """A copy of `target` with unset fields filled from `values`."""
    filled = {k: v for k, v in values.items() if getattr(target, k) is None and v is not None}
    return replace(target, **filled)
