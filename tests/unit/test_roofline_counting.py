"""Roofline counting: FLOPs equal analytic formulas exactly; no-cache bytes on toy layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from harness.config import compose
from harness.models.cnn import build_model
from harness.roofline import counting

RC = compose([]).roofline  # the op lists the command uses (views/gathers)


def _count(model: nn.Module, inputs: dict) -> list[counting.LayerCount]:
    return counting.count_layers(model, inputs, RC.free_ops, RC.gather_ops)


def _one(model: nn.Module, **inputs) -> list[counting.LayerCount]:
    return _count(model, inputs)


@pytest.mark.parametrize(
    "c_in,c_out,k,stride,groups,hw",
    [(3, 8, 3, 1, 1, 10), (4, 6, 5, 2, 2, 13), (1, 16, 1, 1, 1, 7)],
)
def test_conv2d_flops_equal_analytic(c_in, c_out, k, stride, groups, hw):
    conv = nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, groups=groups)
    x = torch.rand(2, c_in, hw, hw)
    (layer,) = _one(nn.Sequential(conv), input=x)
    out_hw = (hw + 2 * (k // 2) - k) // stride + 1
    expected = 2 * 2 * c_out * out_hw * out_hw * (c_in // groups) * k * k
    assert layer.flops == expected
    assert layer.flops == counting.conv2d_flops(2, c_in, c_out, (k, k), (out_hw, out_hw), groups)


def test_linear_flops_and_bytes_on_a_toy_layer():
    lin = nn.Linear(8, 4)
    x = torch.rand(3, 8)
    (layer,) = _one(nn.Sequential(lin), input=x)
    assert layer.flops == 2 * 3 * 8 * 4
    # no-cache model: weight 8x4 + bias 4 read, input 3x8 read, output 3x4 written
    assert (layer.weight_elems, layer.in_elems, layer.out_elems, layer.other_bytes) == (
        36,
        24,
        12,
        0,
    )
    assert layer.bytes(4) == (36 + 24 + 12) * 4
    assert layer.bytes(2) == (36 + 24 + 12) * 2
    assert layer.intensity(4) == pytest.approx(2 * 3 * 8 * 4 / ((36 + 24 + 12) * 4))


def test_linear_over_a_sequence_counts_every_row():
    lin = nn.Linear(7, 11, bias=False)
    (layer,) = _one(nn.Sequential(lin), input=torch.rand(2, 5, 7))
    assert layer.flops == counting.linear_flops(10, 7, 11) == 2 * 10 * 7 * 11
    assert layer.weight_elems == 77 and layer.in_elems == 70 and layer.out_elems == 110


class _Attention(nn.Module):
    """Explicit QK^T, softmax, PV: the container's own ops."""

    def __init__(self, heads: int, dim: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = torch.softmax(torch.matmul(q, k.transpose(-1, -2)), dim=-1)
        return torch.matmul(att, v)


def test_matmul_and_attention_flops_equal_analytic():
    a, b = torch.rand(3, 5, 7), torch.rand(3, 7, 2)

    class MM(nn.Module):
        def forward(self, a, b):
            return torch.matmul(a, b)

    (layer,) = _count(MM(), {"a": a, "b": b})
    assert layer.flops == counting.matmul_flops(5, 7, 2, batch=3) == 2 * 3 * 5 * 7 * 2
    assert layer.in_elems == a.numel() + b.numel() and layer.out_elems == 3 * 5 * 2

    att = _Attention(heads=4, dim=16)
    layers = _count(att, {"x": torch.rand(2, 9, 16)})
    own = next(x for x in layers if x.kind == "_Attention (own ops)")
    assert own.flops == counting.attention_flops(2, 4, 9, 4) == 2 * (2 * 2 * 4 * 9 * 4 * 9)
    qkv = next(x for x in layers if x.kind == "Linear")
    assert qkv.flops == 2 * 18 * 16 * 48


def test_embedding_reads_only_the_gathered_rows():
    emb = nn.Embedding(1000, 16)
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    layers = _count(nn.Sequential(emb), {"input": ids})
    (layer,) = layers
    assert layer.weight_elems == 5 * 16  # not the 16,000-element table
    assert layer.other_bytes == 5 * 8  # int64 ids read
    assert layer.out_elems == 5 * 16


def test_inplace_relu_reads_and_writes_once_and_views_are_free():
    layers = _count(
        nn.Sequential(nn.ReLU(inplace=True), nn.Flatten()), {"input": torch.rand(2, 3, 4)}
    )
    assert [(x.kind, x.in_elems, x.out_elems, x.flops) for x in layers] == [("ReLU", 24, 24, 0)]


def test_cnn_total_flops_equal_an_independent_count():
    cfg = compose([]).model
    model = build_model(cfg).eval()
    batch = 3
    layers = _count(
        model, {"x": torch.rand(batch, cfg.in_channels, cfg.image_size, cfg.image_size)}
    )
    # Independent count from the config alone: same-padded convs, each block halves the size.
    expected, c_in, size = 0, cfg.in_channels, cfg.image_size
    for i in range(cfg.blocks):
        c_out = cfg.channels * 2**i
        expected += 2 * size * size * cfg.kernel_size**2 * c_in * c_out
        c_in, size = c_out, size // 2
    expected += 2 * c_in * size * size * cfg.hidden + 2 * cfg.hidden * cfg.num_classes
    assert sum(x.flops for x in layers) == batch * expected
    # and the per-layer split adds up to what FlopCounterMode counts for the whole model
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(torch.rand(batch, cfg.in_channels, cfg.image_size, cfg.image_size))
    assert sum(x.flops for x in layers) == fc.get_total_flops()


def test_profile_extends_exactly_to_unseen_batches():
    cfg = compose(["model.channels=4", "model.hidden=8"]).model
    model = build_model(cfg).eval()

    def make(b):
        return {"x": torch.rand(b, cfg.in_channels, cfg.image_size, cfg.image_size)}

    profiles = counting.profile_model(model, make, RC.free_ops, RC.gather_ops)
    assert [p.at(7) for p in profiles] == _count(model, make(7))
    assert [p.at(1) for p in profiles] == _count(model, make(1))


def test_flops_match_thop_for_conv_and_linear():
    model = nn.Sequential(nn.Conv2d(2, 5, 3, padding=1), nn.Flatten(), nn.Linear(5 * 6 * 6, 3))
    x = torch.rand(2, 2, 6, 6)
    counted = {x.name: x.flops for x in _count(model, {"input": x})}
    thop = counting.thop_layer_flops(model, {"input": x})
    assert thop == {k: v for k, v in counted.items() if k in thop}
    assert len(thop) == 2


def test_unknown_dtype_is_a_one_line_error():
    from harness.errors import HarnessError

    with pytest.raises(HarnessError, match="unknown dtype 'int3'"):
        counting.dtype_bytes("int3")
