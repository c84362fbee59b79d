"""Conformance of one deployed model on any Open Inference Protocol server (KServe v2).

Every test is one named check. The reference is the user's ONNX file (onnxruntime in-process is
the oracle) or a golden .npz. Options: --verify-url, --verify-model, --verify-onnx |
--verify-golden, and more (see `pytest --help`, group "mlops-harness conformance checks");
--verify-targets FILE.yaml verifies many models, each check parametrized per target.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.conformance.plugin import option

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


# ------------------------------------------------------------------------------ the target
def _cli_target(config: pytest.Config):
    from harness.verify.inference import Target

    url, model = option(config, "verify-url"), option(config, "verify-model")
    if not (url and model):
        return None

    def num(name: str, kind: type) -> Any:
        value = option(config, name)
        return None if value is None else kind(value)

    return Target(
        url=url,
        model=model,
        grpc_url=option(config, "verify-grpc-url"),
        onnx=option(config, "verify-onnx"),
        golden=option(config, "verify-golden"),
        protocol=option(config, "verify-protocol") or "http",
        config=option(config, "verify-config"),
        concurrency=num("verify-concurrency", int),
        duration_s=num("verify-duration-s", float),
        p99_ms=num("verify-p99-ms", float),
        min_throughput=num("verify-min-throughput", float),
        atol=num("verify-atol", float),
        rtol=num("verify-rtol", float),
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """With --verify-targets, every check runs once per target (pytest-xdist spreads them)."""
    path = option(metafunc.config, "verify-targets")
    if path and "target" in metafunc.fixturenames:
        from harness.verify.inference import load_targets

        targets = load_targets(path)
        metafunc.parametrize(
            "target", targets, ids=[t.name for t in targets], indirect=True, scope="module"
        )


@pytest.fixture(scope="module")
def target(request: pytest.FixtureRequest):
    """The Target under test: one of --verify-targets, or the one given by --verify-url."""
    if hasattr(request, "param"):
        return request.param
    t = _cli_target(request.config)
    if t is None:
        pytest.skip("no inference server to verify: give --verify-url and --verify-model")
    return t


@dataclass
class Ctx:
    """Everything the checks of one target share."""

    target: Any
    ref: Any
    settings: Any
    http: Any
    wire: Any  # the main checks' wire: http-json or grpc
    server: dict
    metadata: dict
    config: dict | None  # the served config (Triton's config endpoint), else None
    user_config: Any  # the user's config.pbtxt (ModelConfig), else None
    full: Any  # the whole composed configuration (tools, perf settings)

    @property
    def model(self) -> str:
        return self.target.model

    @property
    def is_triton(self) -> bool:
        return str(self.server.get("name", "")).lower() == "triton"

    @property
    def max_batch(self) -> int | None:
        """max_batch_size from the user's config, else the served config, else unknown."""
        if self.user_config is not None:
            return int(self.user_config.max_batch_size)
        if self.config is not None and "max_batch_size" in self.config:
            return int(self.config["max_batch_size"])
        return None

    def tolerance(self, output: str):
        from harness.verify.inference import tolerance_for

        spec = next((s for s in self.ref.outputs if s.name == output), None)
        return tolerance_for(
            spec.datatype if spec else "exact",
            self.settings.tolerance,
            self.target.atol,
            self.target.rtol,
        )

    def seeded(self, batch: int, seed_offset: int = 0) -> dict[str, np.ndarray]:
        from harness.verify.inference import seeded_inputs

        return seeded_inputs(
            self.ref.inputs,
            batch,
            int(self.settings.seed) + seed_offset,
            int(self.settings.dynamic_dim),
        )

    def samples(self, n: int, seed_offset: int = 0) -> tuple[dict, dict | None]:
        """n input rows and, where known, their expected outputs (oracle, else golden rows)."""
        from harness.verify.inference import take

        if self.ref.has_oracle:
            feed = self.seeded(n, seed_offset)
            return feed, self.ref.predict(feed)
        gin, gout = self.ref.golden_inputs, self.ref.golden_outputs
        idx = [i % len(next(iter(gin.values()))) for i in range(n)]
        return take(gin, idx), take(gout, idx)

    def infer(self, feed: dict, wire: Any = None) -> dict:
        """Run `feed` through the model, in pieces of at most max_batch rows."""
        from harness.verify.inference import take

        wire = wire or self.wire
        n = len(next(iter(feed.values())))
        step = min(self.max_batch or n, n) if self.ref.batched else n
        parts = [wire.infer(self.model, take(feed, slice(i, i + step))) for i in range(0, n, step)]
        if len(parts) == 1:
            return parts[0]
        from harness.verify.inference import Served

        return {
            k: Served(parts[0][k].datatype, np.concatenate([p[k].array for p in parts]))
            for k in parts[0]
        }

    def compare(self, served: dict, expected: dict, where: str) -> list[str]:
        from harness.verify.inference import mismatch

        problems = []
        for name, exp in expected.items():
            if name not in served:
                problems.append(
                    f"{where}: output '{name}' missing from the answer "
                    f"(got {', '.join(served) or 'none'})"
                )
                continue
            bad = mismatch(name, served[name].array, exp, self.tolerance(name))
            if bad:
                problems.append(f"{where}: {bad}")
        return problems


def _fail(problems: list[str], more: str = "") -> None:
    if problems:
        extra = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        pytest.fail(problems[0] + extra + more, pytrace=False)


@pytest.fixture(scope="module")
def ctx(target) -> Any:
    """Connect to the target and read what every check needs; unreachable: fail in one line."""
    from harness.config import compose
    from harness.serving.repository import read_config
    from harness.verify.inference import HttpJson, TritonClientWire, WireError

    full = compose([])
    settings = full.verify.inference
    ref = target.reference()
    http = HttpJson(target.url, float(settings.timeout_s))
    try:
        server = http.get("/v2")
    except WireError as exc:
        pytest.fail(f"{target.url}: server metadata (GET /v2) failed: {exc}", pytrace=False)
    try:
        metadata = http.get(f"/v2/models/{target.model}")
    except WireError as exc:
        metadata = {"error": str(exc)}
    try:
        config = http.get(f"/v2/models/{target.model}/config")
        config = config.get("config", config) if isinstance(config, dict) else None
    except WireError:
        config = None  # only Triton has a config endpoint
    user_config = read_config(target.config) if target.config else None
    wire = http
    if target.protocol == "grpc":
        if not target.grpc_url:
            pytest.fail("--verify-protocol grpc needs --verify-grpc-url", pytrace=False)
        wire = TritonClientWire(target.grpc_url, "grpc", float(settings.timeout_s))
    return Ctx(target, ref, settings, http, wire, server, metadata, config, user_config, full)


# ------------------------------------------------------------------------------- the checks
def test_server_live_and_ready(ctx) -> None:
    """GET /v2/health/live and /v2/health/ready answer 200."""
    for path in ("/v2/health/live", "/v2/health/ready"):
        status, body = ctx.http.request("GET", path)
        assert status == 200, f"GET {path} answered {status}: {str(body)[:120]}"


def test_model_ready(ctx) -> None:
    """The model is known and ready (GET /v2/models/NAME/ready)."""
    status, body = ctx.http.request("GET", f"/v2/models/{ctx.model}/ready")
    assert status == 200, f"model '{ctx.model}' is not ready: GET ready answered {status}"


def test_metadata_matches_reference(ctx) -> None:
    """Input/output names, datatypes and shapes (batch axis included); config max_batch_size."""
    from harness.verify.inference import specs_from_metadata

    meta = ctx.metadata
    if "error" in meta and "inputs" not in meta:
        pytest.fail(f"model metadata of '{ctx.model}' unavailable: {meta['error']}", pytrace=False)
    problems = []
    for side, want in (("inputs", ctx.ref.inputs), ("outputs", ctx.ref.outputs)):
        got = {s.name: s for s in specs_from_metadata(meta.get(side) or [])}
        if not got:
            problems.append(
                f"metadata lists no {side} (the reference has "
                f"{', '.join(s.show() for s in want)})"
            )
            continue
        for spec in want:
            have = got.pop(spec.name, None)
            if have is None:
                problems.append(
                    f"{side[:-1]} '{spec.name}' missing from metadata "
                    f"(it lists {', '.join(s.show() for s in got.values())})"
                )
            elif have.datatype != spec.datatype or have.shape != spec.shape:
                problems.append(f"{side[:-1]} metadata {have.show()}, reference {spec.show()}")
        for extra in got.values():
            problems.append(f"metadata lists {side[:-1]} {extra.show()} the reference lacks")
    uc = ctx.user_config
    if uc is not None:
        if ctx.config is not None and int(ctx.config.get("max_batch_size", 0)) != uc.max_batch_size:
            problems.append(
                f"served max_batch_size {ctx.config.get('max_batch_size', 0)}, "
                f"config.pbtxt says {uc.max_batch_size}"
            )
        problems += _config_vs_reference(uc, ctx.ref)
    _fail(problems)


def _config_vs_reference(uc, ref) -> list[str]:
    """The user's config.pbtxt declares the reference's tensors (dims after the batch axis)."""
    from harness.serving.repository import dtype_name

    out = []
    batch = [-1] if uc.max_batch_size > 0 else []
    for side, declared, want in (
        ("input", uc.input, ref.inputs),
        ("output", uc.output, ref.outputs),
    ):
        specs = {s.name: s for s in want}
        for t in declared:
            s = specs.get(t.name)
            shape = tuple(batch + [int(d) for d in t.dims])
            if s is None:
                out.append(f"config.pbtxt declares {side} '{t.name}' the reference lacks")
            elif dtype_name(t.data_type) != s.datatype or shape != s.shape:
                out.append(
                    f"config.pbtxt {side} {t.name} {dtype_name(t.data_type)} "
                    f"{list(shape)}, reference {s.show()}"
                )
    return out


@pytest.mark.parametrize("inputs", ["seeded", "golden"])
def test_outputs_match_reference(ctx, inputs: str) -> None:
    """Answers equal the reference within the datatype's tolerance."""
    if inputs == "seeded":
        if not ctx.ref.has_oracle:
            pytest.skip("golden reference only: seeded inputs need an ONNX oracle (--verify-onnx)")
        feed = ctx.seeded(int(ctx.settings.seeded_batch))
        expected = ctx.ref.predict(feed)
    else:
        if ctx.ref.golden_inputs is None:
            pytest.skip("no golden data given (--verify-golden)")
        feed, expected = ctx.ref.golden_inputs, ctx.ref.golden_outputs
    _fail(ctx.compare(ctx.infer(feed), expected, f"{inputs} inputs"))


def test_response_datatypes_match_metadata(ctx) -> None:
    """Each answer declares the datatype the metadata (and the reference) declares."""
    feed, _ = ctx.samples(1)
    served = ctx.infer(feed)
    declared = {s["name"]: s["datatype"] for s in ctx.metadata.get("outputs") or []}
    problems = []
    for spec in ctx.ref.outputs:
        got = served.get(spec.name)
        if got is None:
            problems.append(f"output '{spec.name}' missing from the answer")
            continue
        want = declared.get(spec.name, spec.datatype)
        if got.datatype != want or got.datatype != spec.datatype:
            problems.append(
                f"output '{spec.name}' answered as {got.datatype}; metadata declares "
                f"{declared.get(spec.name, '?')}, the reference {spec.datatype}"
            )
    _fail(problems)


def test_batch_invariance(ctx) -> None:
    """A batch of k gives the rows that its k inputs give alone."""
    from harness.verify.inference import take

    if not ctx.ref.batched:
        pytest.skip("the model has no batch axis")
    limit = ctx.max_batch or max(ctx.settings.batch_sizes)
    sizes = [k for k in ctx.settings.batch_sizes if 1 < k <= limit] or [min(2, limit)]
    if max(sizes) < 2:
        pytest.skip(f"max_batch_size {limit}: no batch of 2 or more to compare")
    feed, _ = ctx.samples(max(sizes), seed_offset=1)
    alone = [ctx.infer(take(feed, i)) for i in range(max(sizes))]
    problems = []
    for k in sizes:
        together = ctx.infer(take(feed, slice(0, k)))
        for i in range(k):
            row = {n: s.array for n, s in alone[i].items()}
            problems += ctx.compare(
                {n: type(s)(s.datatype, s.array[i : i + 1]) for n, s in together.items()},
                row,
                f"row {i} of a batch of {k} vs sent alone",
            )
    _fail(problems)


def test_isolation_under_concurrency(ctx) -> None:
    """Concurrent requests with distinct inputs: every answer belongs to its own request."""
    from harness.verify.inference import take

    n, workers = int(ctx.settings.isolation_requests), int(ctx.settings.isolation_workers)
    feed, expected = ctx.samples(n, seed_offset=2)
    if not ctx.ref.has_oracle:
        # golden rows repeat when there are fewer than n: distinct inputs are what we need
        n = min(n, len(next(iter(ctx.ref.golden_inputs.values()))))

    def one(i: int) -> tuple[int, dict]:
        return i, ctx.infer(take(feed, i))

    with ThreadPoolExecutor(workers) as pool:
        answers = dict(pool.map(one, range(n)))
    problems = []
    for i in range(n):
        problems += ctx.compare(answers[i], take(expected, i), f"request {i} of {n} concurrent")
    _fail(problems)


@pytest.mark.parametrize("wire", ["http-json", "http-binary", "grpc"])
def test_wire_format(ctx, wire: str) -> None:
    """Each wire format the server offers answers the same (binary HTTP only where offered)."""
    from harness.verify.inference import TritonClientWire, WireError

    feed, expected = ctx.samples(4 if ctx.ref.batched else 1, seed_offset=3)
    if wire == "http-json":
        client = ctx.http
    elif wire == "http-binary":
        extensions = [str(e) for e in ctx.server.get("extensions") or []]
        if "binary_tensor_data" not in extensions:
            pytest.skip(
                f"server '{ctx.server.get('name', '?')}' does not offer the binary tensor "
                "extension (JSON tensors only)"
            )
        client = TritonClientWire(ctx.target.url, "http", float(ctx.settings.timeout_s))
    else:
        if not ctx.target.grpc_url:
            pytest.skip("no gRPC address given (--verify-grpc-url)")
        client = TritonClientWire(ctx.target.grpc_url, "grpc", float(ctx.settings.timeout_s))
    try:
        served = ctx.infer(feed, client)
    except WireError as exc:
        pytest.fail(f"{wire} inference failed: {exc}", pytrace=False)
    finally:
        if client is not ctx.http:
            client.close()
    _fail(ctx.compare(served, expected, wire))


def test_triton_dynamic_batching(ctx) -> None:
    """Triton with dynamic batching: concurrent requests are executed in fewer batches."""
    if not ctx.is_triton:
        pytest.skip(f"server '{ctx.server.get('name', '?')}' is not Triton")
    cfg = ctx.config or {}
    enabled = "dynamic_batching" in cfg or (
        ctx.user_config is not None and ctx.user_config.HasField("dynamic_batching")
    )
    if not enabled:
        pytest.skip("the config enables no dynamic batching")
    if "dynamic_batching" not in cfg:
        pytest.fail(
            "config.pbtxt enables dynamic batching, the served config does not", pytrace=False
        )
    from harness.verify.inference import take

    def stats() -> tuple[int, int]:
        s = ctx.http.get(f"/v2/models/{ctx.model}/stats")["model_stats"][0]
        return int(s.get("inference_count", 0)), int(s.get("execution_count", 0))

    from harness.verify.inference import WireError

    try:
        stats()
    except WireError as exc:
        if exc.status in ("401", "403"):  # PyTriton restricts it unless given its access token
            pytest.skip(f"the statistics API is restricted ({exc}): batching cannot be observed")
        raise

    n = int(ctx.settings.isolation_requests)
    feed, _ = ctx.samples(n, seed_offset=4)
    before = stats()
    with ThreadPoolExecutor(int(ctx.settings.isolation_workers) * 2) as pool:
        list(pool.map(lambda i: ctx.http.infer(ctx.model, take(feed, i)), range(n)))
    after = stats()
    inferences, executions = after[0] - before[0], after[1] - before[1]
    assert inferences >= n, f"statistics count {inferences} inferences for {n} requests"
    assert executions < inferences, (
        f"dynamic batching is configured but {n} concurrent requests ran as {executions} "
        f"executions for {inferences} inferences (no request was batched)"
    )


def test_triton_instance_count(ctx) -> None:
    """Triton: the served instance count equals the one config.pbtxt asks for."""
    if not ctx.is_triton:
        pytest.skip(f"server '{ctx.server.get('name', '?')}' is not Triton")
    if ctx.user_config is None:
        pytest.skip("no config.pbtxt given (--verify-config) to compare the instance count with")
    from harness.serving.repository import instance_count

    served = sum(int(g.get("count", 1) or 1) for g in (ctx.config or {}).get("instance_group", []))
    want = instance_count(ctx.user_config)
    assert served == want, f"served instance count {served}, config.pbtxt asks for {want}"


def test_latency_and_throughput(ctx, record_metric) -> None:
    """p50/p90/p99 and throughput at the given concurrency; budgets asserted when given."""
    from harness.errors import HarnessError
    from harness.perf.tools import perf_analyzer_problem
    from harness.verify import load

    t = ctx.target
    conc = int(t.concurrency or ctx.settings.load.concurrency)
    duration = float(t.duration_s or ctx.settings.load.duration_s)
    feed, _ = ctx.samples(1, seed_offset=5)
    load_cfg = ctx.settings.load
    result, note = None, ""
    if ctx.is_triton and perf_analyzer_problem(ctx.full) is None:
        # perf_analyzer draws its own inputs from the model's metadata
        try:
            result = load.run_perf_analyzer_load(
                ctx.full, t.url, t.model, concurrency=conc, duration_s=duration
            )
        except HarnessError as exc:  # e.g. a Triton whose statistics API is restricted
            note = f"perf_analyzer could not measure ({exc}); Locust measured instead"
    if result is None:
        from harness.urls import base_url
        from harness.verify.inference import _json_tensor

        body = {"inputs": [_json_tensor(k, v) for k, v in feed.items()]}
        result = load.run_locust(
            base_url(t.url),  # Locust needs the scheme: users type host:port too
            t.model,
            body,
            concurrency=conc,
            duration_s=duration,
            processes=int(load_cfg.locust_processes),
            timeout_s=float(ctx.settings.timeout_s),
            spawn_rate=load_cfg.spawn_rate,
            work_dir=Path(load_cfg.csv_dir) if load_cfg.csv_dir else None,
        )
    if note:
        record_metric(f"{t.name} load note", note)
    for key in ("throughput", "p50_ms", "p90_ms", "p99_ms"):
        record_metric(f"{t.name} {key} (c={conc}, {result.engine})", float(getattr(result, key)))
    problems = []
    if result.requests <= 0:
        problems.append(f"{result.engine}: no request completed in {duration:g}s")
    if result.failures:
        problems.append(
            f"{result.engine}: {result.failures} of {result.requests} requests "
            f"failed under load at concurrency {conc}"
        )
    if t.p99_ms is not None and result.p99_ms > t.p99_ms:
        problems.append(
            f"p99 {result.p99_ms:.1f} ms at concurrency {conc} exceeds the budget "
            f"{t.p99_ms:g} ms (p50 {result.p50_ms:.1f} ms, {result.engine})"
        )
    if t.min_throughput is not None and result.throughput < t.min_throughput:
        problems.append(
            f"throughput {result.throughput:.0f} infer/s at concurrency {conc} is "
            f"below the budget {t.min_throughput:g} ({result.engine})"
        )
    _fail(problems)


# ---------------------------------------------------------------- robustness (runs last)
BAD_REQUESTS = [
    "wrong_shape",
    "wrong_datatype",
    "unknown_input",
    "batch_above_max",
    "empty_batch",
    "unknown_model",
]


def _bad_request(ctx, case: str) -> tuple[str, dict]:
    """(model name, JSON body) of one malformed request."""
    from harness.verify.inference import _json_tensor

    feed, _ = ctx.samples(1, seed_offset=6)
    first = ctx.ref.inputs[0].name
    model = ctx.model
    if case == "wrong_shape":
        arr = feed[first]
        feed[first] = np.concatenate([arr, arr[..., :1]], axis=-1) if arr.ndim > 1 else arr[:0]
    elif case == "wrong_datatype":
        arr = feed[first]
        feed[first] = arr.astype(np.float64 if arr.dtype != np.float64 else np.float32)
    elif case == "unknown_input":
        feed = {("harness_no_such_input" if k == first else k): v for k, v in feed.items()}
    elif case == "batch_above_max":
        if not ctx.ref.batched:
            pytest.skip("the model has no batch axis")
        if not ctx.max_batch:
            pytest.skip("max_batch_size unknown: give --verify-config (config.pbtxt)")
        feed, _ = ctx.samples(ctx.max_batch + 1, seed_offset=6)
    elif case == "empty_batch":
        if not ctx.ref.batched:
            pytest.skip("the model has no batch axis")
        feed = {k: v[:0] for k, v in feed.items()}
    elif case == "unknown_model":
        model = f"harness-no-such-model-{uuid.uuid4().hex[:8]}"
    return model, {"inputs": [_json_tensor(k, v) for k, v in feed.items()]}


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_rejects_bad_request(ctx, case: str) -> None:
    """A malformed request gets a client error (4xx), and the server still answers correctly."""
    from harness.verify.inference import WireError

    model, body = _bad_request(ctx, case)
    try:
        status, answer = ctx.http.request("POST", f"/v2/models/{model}/infer", body)
    except WireError as exc:
        pytest.fail(f"{case.replace('_', ' ')} request: no answer ({exc.message})", pytrace=False)
    problems = []
    if status == 200:
        problems.append(f"accepted a {case.replace('_', ' ')} request (200)")
    elif not 400 <= status < 500:
        problems.append(
            f"answered {status} to a {case.replace('_', ' ')} request (a client "
            f"error, 4xx, was expected): {str(answer)[:100]}"
        )
    feed, expected = ctx.samples(1, seed_offset=7)
    try:
        problems += ctx.compare(
            ctx.infer(feed, ctx.http), expected, f"after a {case.replace('_', ' ')} request"
        )
    except WireError as exc:
        problems.append(
            f"server stopped answering after a {case.replace('_', ' ')} request: " f"{exc}"
        )
    _fail(problems)
