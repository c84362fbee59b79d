"""Per-layer FLOPs (PyTorch's FlopCounterMode) and bytes (a no-cache op-level model).

A *layer* is a module's own work: the aten ops that run while that module is the innermost one
executing. For leaf modules (Conv2d, Linear, LayerNorm, ...) that is the whole module; for a
container it is what its forward does itself (e.g. the attention matmuls and softmax of a BERT
self-attention block, whose query/key/value Linear children are their own layers).

Bytes follow a no-cache model: every op reads each of its tensor inputs from memory and writes
each of its outputs, once; nothing is reused from a cache between ops. View ops move nothing.
Floating tensors are counted in the analysed dtype (fp32 = 4 bytes, fp16 = 2); integer/bool
tensors (token ids, masks, pooling indices) at their own size.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from harness.errors import HarnessError

DTYPE_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}


def dtype_bytes(dtype: str) -> int:
    """Bytes per element of a dtype name; unknown names raise HarnessError."""
    if dtype not in DTYPE_BYTES:
        raise HarnessError(f"unknown dtype {dtype!r}: expected one of {sorted(DTYPE_BYTES)}")
    return DTYPE_BYTES[dtype]


@dataclasses.dataclass
class LayerCount:
    """One layer's work for one forward pass at one batch size."""

    name: str
    kind: str
    flops: int = 0
    weight_elems: int = 0  # floating elements read from parameters
    in_elems: int = 0  # floating activation elements read
    out_elems: int = 0  # floating elements written
    other_bytes: int = 0  # integer/bool traffic (ids, masks, indices), fixed size

    def bytes(self, itemsize: int) -> int:
        """Total bytes moved with floating tensors stored at `itemsize` bytes per element."""
        return (self.weight_elems + self.in_elems + self.out_elems) * itemsize + self.other_bytes

    def weight_bytes(self, itemsize: int) -> int:
        """Bytes of parameters read."""
        return self.weight_elems * itemsize

    def intensity(self, itemsize: int) -> float:
        """Arithmetic intensity in FLOP/byte (0 for layers that only move data)."""
        b = self.bytes(itemsize)
        return self.flops / b if b else 0.0


_FIELDS = ("flops", "weight_elems", "in_elems", "out_elems", "other_bytes")


def _qualname(func: Any) -> str:
    """`aten.addmm` for the overload `aten.addmm.default`."""
    return str(func.overloadpacket)


class _TrafficRecorder(TorchDispatchMode):
    """Attributes every aten op's bytes to the innermost running module."""

    def __init__(
        self,
        stack: list[str],
        params: Iterable[torch.Tensor],
        free_ops: set[str],
        gather_ops: set[str],
    ) -> None:
        super().__init__()
        self.stack = stack
        self.param_ids = {id(p) for p in params}
        self.keep: list[torch.Tensor] = []  # param views stay alive so their ids stay unique
        self.free_ops = free_ops
        self.gather_ops = gather_ops
        self.counts: dict[str, LayerCount] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: D105
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        ins = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        outs = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        name = _qualname(func)
        if func.is_view or name in self.free_ops:
            # An alias moves no data; remember views of weights so a later op sees a weight.
            if any(id(t) in self.param_ids for t in ins):
                for t in outs:
                    self.param_ids.add(id(t))
                    self.keep.append(t)
            return out
        rec = self.counts.setdefault(self.stack[-1], LayerCount(self.stack[-1], ""))
        out_numel = sum(t.numel() for t in outs if t.is_floating_point())
        seen: set[int] = set()
        for t in ins:
            if id(t) in seen:
                continue
            seen.add(id(t))
            if not t.is_floating_point():
                rec.other_bytes += t.numel() * t.element_size()
            elif id(t) in self.param_ids:
                # A gather (embedding) reads only the rows it returns, not the whole table.
                rec.weight_elems += (
                    min(t.numel(), out_numel) if name in self.gather_ops else t.numel()
                )
            else:
                rec.in_elems += t.numel()
        for t in outs:
            if t.is_floating_point():
                rec.out_elems += t.numel()
            else:
                rec.other_bytes += t.numel() * t.element_size()
        return out


def module_names(model: nn.Module) -> dict[nn.Module, str]:
    """Names as FlopCounterMode writes them: root class name, then the dotted path."""
    root = type(model).__name__
    return {m: (f"{root}.{n}" if n else root) for n, m in model.named_modules()}


def count_layers(
    model: nn.Module,
    inputs: dict[str, Any],
    free_ops: Iterable[str] = (),
    gather_ops: Iterable[str] = (),
) -> list[LayerCount]:
    """Run one forward pass and return each layer's FLOPs and traffic (in execution order)."""
    names = module_names(model)
    kinds = {names[m]: type(m).__name__ for m in names}
    stack = ["(outside)"]
    order: list[str] = []

    def pre(mod: nn.Module, _args: Any) -> None:
        stack.append(names[mod])
        if names[mod] not in order:
            order.append(names[mod])

    def post(_mod: nn.Module, _args: Any, _out: Any) -> None:
        stack.pop()

    handles = []
    for m in names:
        handles.append(m.register_forward_pre_hook(pre))
        handles.append(m.register_forward_hook(post))
    recorder = _TrafficRecorder(stack, model.parameters(), set(free_ops), set(gather_ops))
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter, recorder:
            model(**inputs)
    finally:
        for h in handles:
            h.remove()
    totals = {k: int(sum(v.values())) for k, v in counter.get_flop_counts().items()}
    children = _executed_children(names, set(order))
    layers: list[LayerCount] = []
    if "(outside)" in recorder.counts:  # ops of the call itself, outside every module's forward
        order.insert(0, "(outside)")
        kinds["(outside)"] = "(outside)"
    for name in order:
        own = totals.get(name, 0) - sum(totals.get(c, 0) for c in children.get(name, []))
        rec = recorder.counts.get(name)
        if own == 0 and rec is None:
            continue
        rec = rec or LayerCount(name, "")
        rec.flops = own
        leaf = not children.get(name)
        rec.kind = kinds[name] if leaf else f"{kinds[name]} (own ops)"
        layers.append(rec)
    total = totals.get("Global", 0)
    if sum(layer.flops for layer in layers) != total:
        raise HarnessError(
            f"per-layer FLOPs ({sum(layer.flops for layer in layers)}) do not add up to the "
            f"counter's total ({total})"
        )
    return layers


def _executed_children(names: dict[nn.Module, str], ran: set[str]) -> dict[str, list[str]]:
    """Each executed module's nearest executed descendants (a ModuleList never runs itself)."""
    out: dict[str, list[str]] = defaultdict(list)
    for name in ran:
        parts = name.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            parent = ".".join(parts[:cut])
            if parent in ran:
                out[parent].append(name)
                break
    return out


@dataclasses.dataclass
class LayerProfile:
    """A layer's counts by batch: exact where counted, else base + per_sample x batch."""

    name: str
    kind: str
    base: dict[str, int]
    per_sample: dict[str, int]
    exact: dict[int, LayerCount] = dataclasses.field(default_factory=dict)

    def at(self, batch: int) -> LayerCount:
        """The layer's counts at batch size `batch`."""
        if batch in self.exact:
            return dataclasses.replace(self.exact[batch])
        vals = {f: self.base[f] + self.per_sample[f] * batch for f in _FIELDS}
        return LayerCount(self.name, self.kind, **vals)


# Batch sizes profile_model counts at: exactly, as the two points of the linear extension, and
# where the extension is checked against a real count (the report's method section reads these).
PROFILE_EXACT: tuple[int, ...] = (1,)
PROFILE_FIT: tuple[int, int] = (2, 3)
PROFILE_CHECK = 4


def profile_model(
    model: nn.Module,
    make_inputs: Callable[[int], dict[str, Any]],
    free_ops: Iterable[str] = (),
    gather_ops: Iterable[str] = (),
    fit: tuple[int, int] = PROFILE_FIT,
    check: int = PROFILE_CHECK,
    exact: Iterable[int] = PROFILE_EXACT,
) -> list[LayerProfile]:
    """Count at the `fit` batches, extend linearly, verify the extension exactly at `check`.

    FLOPs and activation traffic grow exactly linearly with the batch once the batch is > 1
    (sequence length fixed) and weights do not grow, so two counts fix every layer and the third
    is a check: large batches never have to be run just to be counted. Batch 1 is counted
    exactly on its own: some kernels skip a contiguity copy there (BERT attention) and
    broadcasts cost the same as an add (position embeddings).
    """
    batches = sorted({*fit, check, *exact})
    runs = {b: count_layers(model, make_inputs(b), free_ops, gather_ops) for b in batches}
    names = [layer.name for layer in runs[fit[0]]]
    for b in batches:
        if [layer.name for layer in runs[b]] != names:
            raise HarnessError(f"the model runs different layers at batch {b} than at {fit[0]}")
    profiles = []
    step = fit[1] - fit[0]
    for i, name in enumerate(names):
        la, lb = runs[fit[0]][i], runs[fit[1]][i]
        per = {f: (getattr(lb, f) - getattr(la, f)) // step for f in _FIELDS}
        base = {f: getattr(la, f) - per[f] * fit[0] for f in _FIELDS}
        prof = LayerProfile(name, la.kind, base, per)
        for b in (fit[1], check):
            if dataclasses.astuple(prof.at(b)) != dataclasses.astuple(runs[b][i]):
                raise HarnessError(f"layer {name} does not scale linearly with the batch size")
        prof.exact = {b: runs[b][i] for b in exact}
        profiles.append(prof)
    return profiles


def totals(layers: Iterable[LayerCount], itemsize: int) -> tuple[int, int]:
    """(total FLOPs, total bytes) of a list of layers."""
    layers = list(layers)
    return sum(layer.flops for layer in layers), sum(layer.bytes(itemsize) for layer in layers)


# --- analytic formulas (independent of the counter) ---------------------------------------


def conv2d_flops(
    batch: int,
    c_in: int,
    c_out: int,
    kernel: tuple[int, int],
    out_hw: tuple[int, int],
    groups: int = 1,
) -> int:
    """2 x multiply-accumulates of a Conv2d (bias adds not counted, as FlopCounterMode)."""
    return 2 * batch * c_out * out_hw[0] * out_hw[1] * (c_in // groups) * kernel[0] * kernel[1]


def linear_flops(rows: int, in_features: int, out_features: int) -> int:
    """2 x multiply-accumulates of a Linear over `rows` input vectors (bias not counted)."""
    return 2 * rows * in_features * out_features


def matmul_flops(m: int, k: int, n: int, batch: int = 1) -> int:
    """FLOPs of a (batched) matmul (batch, m, k) @ (batch, k, n)."""
    return 2 * batch * m * k * n


def attention_flops(batch: int, heads: int, seq: int, head_dim: int) -> int:
    """QK^T plus PV of multi-head attention: two batched (S x d)(d x S) and (S x S)(S x d)."""
    return 2 * matmul_flops(seq, head_dim, seq, batch * heads)


def analytic_layer_flops(
    model: nn.Module, inputs: dict[str, Any], attention: dict[str, int] | None = None
) -> dict[str, tuple[str, int]]:
    """Analytic FLOPs of every Conv2d/Linear leaf (and attention block) from recorded shapes.

    `attention` = {"class": ..., "heads": H, "head_dim": d, "seq": S, "batch": B} adds the
    attention matmuls of each module of that class.
    """
    names = module_names(model)
    out: dict[str, tuple[str, int]] = {}
    handles = []

    def hook(mod: nn.Module, args: Any, result: Any) -> None:
        x = args[0]
        if isinstance(mod, nn.Conv2d):
            flops = conv2d_flops(
                x.shape[0],
                mod.in_channels,
                mod.out_channels,
                tuple(mod.kernel_size),
                tuple(result.shape[-2:]),
                mod.groups,
            )
            out[names[mod]] = ("Conv2d", flops)
        elif isinstance(mod, nn.Linear):
            rows = x.numel() // mod.in_features
            out[names[mod]] = ("Linear", linear_flops(rows, mod.in_features, mod.out_features))

    for m in names:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            handles.append(m.register_forward_hook(hook))
        elif attention and type(m).__name__ == attention["class"]:
            a = attention
            out[names[m]] = (
                "attention",
                attention_flops(a["batch"], a["heads"], a["seq"], a["head_dim"]),
            )
    _forward_with_hooks(model, inputs, handles)
    return out


def _forward_with_hooks(model: nn.Module, inputs: dict[str, Any], handles: list) -> None:
    """One no-grad forward pass for the registered hooks, which are removed afterwards."""
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        for h in handles:
            h.remove()


def thop_layer_flops(model: nn.Module, inputs: dict[str, Any]) -> dict[str, int]:
    """FLOPs (2 x MACs) that thop's per-module counters give for the layer types it supports.

    Uses thop's own counting functions on the model's leaves; only Conv2d and Linear are kept
    (thop counts ReLU/pooling as comparisons, not multiply-adds, and knows no attention).
    """
    from thop.profile import register_hooks

    names = module_names(model)
    out: dict[str, int] = {}
    handles = []
    for m in names:
        fn = register_hooks.get(type(m))
        if fn is None or not isinstance(m, (nn.Conv2d, nn.Linear)):
            continue

        def hook(mod: nn.Module, x: Any, y: Any, fn: Any = fn) -> None:
            mod.total_ops = torch.zeros(1, dtype=torch.float64)
            fn(mod, x, y)
            out[names[mod]] = int(round(2 * float(mod.total_ops)))
            del mod.total_ops

        handles.append(m.register_forward_hook(hook))
    _forward_with_hooks(model, inputs, handles)
    return out


def merge_by_kind(layers: Iterable[LayerCount]) -> dict[str, int]:
    """FLOPs summed per layer kind (for summaries)."""
    acc: dict[str, int] = defaultdict(int)
    for layer in layers:
        acc[layer.kind] += layer.flops
    return dict(acc)
