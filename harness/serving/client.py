"""A Triton client over HTTP or gRPC: validated packing, chunking to max batch, clear errors.

`pack` checks numpy inputs against the model's metadata (names, dtype, shape, max batch size) and
splits large batches into max-batch chunks; `unpack` turns a result into numpy arrays;
`classify` into logits, probabilities and labels. Every failure is one line (HarnessError or,
for an unreachable server, ServiceError): server down, model unknown/not ready, wrong shape,
wrong dtype, empty batch.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tritonclient.utils import InferenceServerException, np_to_triton_dtype, triton_to_np_dtype

from harness.errors import HarnessError, ServiceError

PROTOCOLS = ("http", "grpc")


@dataclass(frozen=True)
class TensorSpec:
    """One input/output as the server declares it (shape includes -1 for the batch axis)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    @property
    def np_dtype(self) -> np.dtype:
        """The numpy dtype Triton expects for this tensor."""
        return np.dtype(object if self.datatype == "BYTES" else triton_to_np_dtype(self.datatype))


@dataclass(frozen=True)
class ModelInfo:
    """What the client needs to know about a served model."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int
    versions: tuple[str, ...] = field(default=())

    @property
    def batched(self) -> bool:
        """True when the first axis is Triton's batch axis."""
        return self.max_batch_size > 0


@dataclass(frozen=True)
class Classification:
    """Logits, softmax probabilities and argmax labels of a classifier's answers."""

    logits: np.ndarray
    probabilities: np.ndarray
    labels: np.ndarray


def _specs(items: list[dict]) -> tuple[TensorSpec, ...]:
    return tuple(
        TensorSpec(t["name"], t["datatype"], tuple(int(d) for d in t["shape"])) for t in items
    )


def model_info(metadata: dict, config: dict) -> ModelInfo:
    """ModelInfo from the metadata and config endpoints' JSON answers."""
    config = config.get("config", config)
    return ModelInfo(
        name=metadata["name"],
        inputs=_specs(metadata.get("inputs", [])),
        outputs=_specs(metadata.get("outputs", [])),
        max_batch_size=int(config.get("max_batch_size", 0)),
        versions=tuple(metadata.get("versions", [])),
    )


def _as_feed(info: ModelInfo, inputs: np.ndarray | dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if isinstance(inputs, dict):
        return dict(inputs)
    if len(info.inputs) != 1:
        names = ", ".join(s.name for s in info.inputs)
        raise HarnessError(f"model '{info.name}' has inputs {names}: pass a dict of arrays")
    return {info.inputs[0].name: inputs}


def validate_inputs(info: ModelInfo, inputs: np.ndarray | dict[str, np.ndarray]) -> dict:
    """Check names, dtypes and shapes against the model; return {name: array} or raise."""
    feed = _as_feed(info, inputs)
    declared = {s.name: s for s in info.inputs}
    unknown = sorted(set(feed) - set(declared))
    if unknown:
        raise HarnessError(
            f"model '{info.name}' has no input {', '.join(unknown)} "
            f"(inputs: {', '.join(declared)})"
        )
    missing = sorted(set(declared) - set(feed))
    if missing:
        raise HarnessError(f"model '{info.name}': missing input {', '.join(missing)}")
    batch_sizes = set()
    for name, arr in feed.items():
        spec = declared[name]
        if not isinstance(arr, np.ndarray):
            raise HarnessError(f"input '{name}' must be a numpy array, got {type(arr).__name__}")
        want = spec.np_dtype
        if spec.datatype == "BYTES":
            ok = arr.dtype == object or arr.dtype.kind in "SU"
        else:
            ok = arr.dtype == want
        if not ok:
            raise HarnessError(
                f"input '{name}' has dtype {arr.dtype}, model '{info.name}' expects "
                f"{spec.datatype} ({want})"
            )
        if arr.ndim != len(spec.shape) or any(
            w != -1 and w != g for w, g in zip(spec.shape, arr.shape)
        ):
            want_shape = ["N" if d == -1 else d for d in spec.shape]
            raise HarnessError(
                f"input '{name}' has shape {list(arr.shape)}, model '{info.name}' expects "
                f"[{', '.join(map(str, want_shape))}]"
            )
        if info.batched:
            if arr.shape[0] == 0:
                raise HarnessError(f"input '{name}' is an empty batch (0 samples)")
            batch_sizes.add(arr.shape[0])
    if len(batch_sizes) > 1:
        raise HarnessError(f"inputs of model '{info.name}' differ in batch size: {batch_sizes}")
    return feed


def chunks(info: ModelInfo, feed: dict[str, np.ndarray], batch: int | None = None) -> list[dict]:
    """Split a validated feed into pieces of at most max_batch_size (or `batch`) samples."""
    if not info.batched:
        return [feed]
    size = min(batch or info.max_batch_size, info.max_batch_size)
    total = next(iter(feed.values())).shape[0]
    return [{k: v[i : i + size] for k, v in feed.items()} for i in range(0, total, size)]


def pack(module: Any, feed: dict[str, np.ndarray]) -> list[Any]:
    """Triton InferInput objects (of tritonclient.http or .grpc `module`) for a feed."""
    out = []
    for name, arr in feed.items():
        if arr.dtype.kind in "SU":
            arr = arr.astype(object)
        arr = np.ascontiguousarray(arr)
        tensor = module.InferInput(name, list(arr.shape), np_to_triton_dtype(arr.dtype))
        tensor.set_data_from_numpy(arr)
        out.append(tensor)
    return out


def unpack(result: Any, outputs: tuple[TensorSpec, ...] | list[str]) -> dict[str, np.ndarray]:
    """The result's outputs as numpy arrays, by name."""
    names = [o.name if isinstance(o, TensorSpec) else o for o in outputs]
    return {name: result.as_numpy(name) for name in names}


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def classify(logits: np.ndarray) -> Classification:
    """Probabilities and labels for classifier logits."""
    return Classification(logits, softmax(logits), logits.argmax(axis=-1))


class TritonClient:
    """One connection to a Triton server over HTTP or gRPC, with timeouts and clear errors."""

    def __init__(
        self,
        address: str,
        protocol: str = "grpc",
        timeout_s: float = 30.0,
        connect_timeout_s: float = 10.0,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise HarnessError(f"unknown protocol '{protocol}' (choose http or grpc)")
        self.address = address.split("://", 1)[-1].rstrip("/")
        self.protocol = protocol
        self.timeout_s = float(timeout_s)
        if protocol == "http":
            import tritonclient.http as module

            self.client = module.InferenceServerClient(
                self.address,
                connection_timeout=float(connect_timeout_s),
                network_timeout=self.timeout_s,
            )
        else:
            import tritonclient.grpc as module

            self.client = module.InferenceServerClient(self.address)
        self.module = module
        self._info: dict[str, ModelInfo] = {}

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self.protocol == "grpc" and "client_timeout" not in kwargs:
            kwargs["client_timeout"] = self.timeout_s
        try:
            return fn(*args, **kwargs)
        except InferenceServerException as exc:
            raise self._error(what, exc) from exc
        except (ConnectionError, OSError, socket.timeout) as exc:
            raise ServiceError(
                f"Triton not reachable at {self.address} ({self.protocol}): {exc}"
            ) from exc

    def _error(self, what: str, exc: InferenceServerException) -> HarnessError:
        msg = (exc.message() or str(exc)).strip().splitlines()[0]
        low = msg.lower()
        status = str(exc.status() or "")
        if any(s in low for s in ("connect", "unavailable", "refused", "failed to")) or (
            "UNAVAILABLE" in status
        ):
            return ServiceError(f"Triton not reachable at {self.address} ({self.protocol}): {msg}")
        if "deadline" in low or "timed out" in low or "timeout" in low:
            return ServiceError(f"{what}: timed out after {self.timeout_s:g}s ({msg})")
        if "unknown model" in low or "not found" in low or "is not ready" in low:
            return HarnessError(f"{what}: model not known or not ready on {self.address}: {msg}")
        return HarnessError(f"{what}: {msg}")

    # -------------------------------------------------------------------- server / model state
    def server_ready(self) -> bool:
        """True when the server answers ready."""
        return bool(self._call("server ready", self.client.is_server_ready))

    def model_ready(self, model: str) -> bool:
        """True when `model` is loaded and ready."""
        return bool(self._call(f"model '{model}'", self.client.is_model_ready, model))

    def _json(self, what: str, fn: Any, *args: Any) -> dict:
        kwargs = {"as_json": True} if self.protocol == "grpc" else {}
        return self._call(what, fn, *args, **kwargs)

    def metadata(self, model: str) -> dict:
        """The model metadata endpoint's answer (JSON)."""
        return self._json(f"model '{model}'", self.client.get_model_metadata, model)

    def config(self, model: str) -> dict:
        """The model config endpoint's answer (JSON, the `config` object)."""
        data = self._json(f"model '{model}'", self.client.get_model_config, model)
        return data.get("config", data)

    def info(self, model: str, refresh: bool = False) -> ModelInfo:
        """Metadata and max batch size of `model` (cached)."""
        if refresh or model not in self._info:
            self._info[model] = model_info(self.metadata(model), self.config(model))
        return self._info[model]

    def statistics(self, model: str) -> dict:
        """Inference statistics of `model`: inference_count, execution_count, timings."""
        data = self._json(f"model '{model}'", self.client.get_inference_statistics, model)
        stats = data.get("model_stats", [])
        if not stats:
            raise HarnessError(f"no statistics for model '{model}'")
        s = stats[0]
        return {
            "inference_count": int(s.get("inference_count", 0)),
            "execution_count": int(s.get("execution_count", 0)),
            "inference_stats": s.get("inference_stats", {}),
            "batch_stats": s.get("batch_stats", []),
        }

    def load(
        self, model: str, config_json: str | None = None, files: dict[str, bytes] | None = None
    ) -> None:
        """(Re)load `model` (explicit model-control mode), optionally with a config override.

        `files` ("file:<version>/<name>" -> content) replaces the model's files on disk for this
        load; Triton then needs `config_json` too.
        """
        kwargs: dict[str, Any] = {"config": config_json} if config_json else {}
        if files:
            kwargs["files"] = files
        if self.protocol == "grpc":
            # Loading starts python stubs (imports onnxruntime): slower than one inference.
            kwargs["client_timeout"] = max(self.timeout_s, 120.0)
        self._call(f"load '{model}'", self.client.load_model, model, **kwargs)
        self._info.pop(model, None)

    # ------------------------------------------------------------------------------- inference
    def infer(
        self,
        model: str,
        inputs: np.ndarray | dict[str, np.ndarray],
        *,
        batch: int | None = None,
        validate: bool = True,
    ) -> dict[str, np.ndarray]:
        """Run `inputs` through `model` in max-batch chunks; outputs concatenated, by name."""
        info = self.info(model)
        feed = validate_inputs(info, inputs) if validate else _as_feed(info, inputs)
        pieces = chunks(info, feed, batch) if validate else [feed]
        results: dict[str, list[np.ndarray]] = {o.name: [] for o in info.outputs}
        for piece in pieces:
            kwargs = {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}
            try:
                res = self.client.infer(model, pack(self.module, piece), **kwargs)
            except InferenceServerException as exc:
                raise self._error(f"inference on '{model}'", exc) from exc
            except (ConnectionError, OSError) as exc:
                raise ServiceError(f"Triton not reachable at {self.address}: {exc}") from exc
            for name, arr in unpack(res, info.outputs).items():
                results[name].append(arr)
        return {k: v[0] if len(v) == 1 else np.concatenate(v) for k, v in results.items() if len(v)}

    def classify(self, model: str, images: np.ndarray, batch: int | None = None) -> Classification:
        """Logits, probabilities and labels of a classifier with one output."""
        out = self.infer(model, images, batch=batch)
        if len(out) != 1:
            raise HarnessError(f"model '{model}' has {len(out)} outputs; classify needs one")
        return classify(next(iter(out.values())))

    def close(self) -> None:
        """Close the connection."""
        try:
            self.client.close()
        except Exception:  # closing a dead connection is not an error worth reporting
            pass

    def __enter__(self) -> TritonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
