"""binsharp.nn.complexity: figures on hand-computed small models, refusal of uncounted layers."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import binsharp.nn as bn
from binsharp.errors import BinsharpError
from binsharp.nn import complexity
from binsharp.nn.complexity import count, register_counter


class Wrap(nn.Module):
    """Calls one layer on the keyword input ``x``."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, *, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


def _count(layer: nn.Module, *shape: int, **kw):
    return count(Wrap(layer), {"x": torch.rand(*shape)}, **kw)


def test_binary_conv():
    r = _count(
        bn.BinaryConv2d(4, 8, 3, padding=1, input_quantizer="ste_sign", kernel_quantizer="scaled_sign"),
        1,
        4,
        10,
        10,
    )
    assert r.bops == 10 * 10 * 8 * 4 * 9 == 28_800
    assert r.flops == 0
    assert r.params_binary == 8 * 4 * 9 and r.params_float == 0
    assert r.elementwise == 8 * 100 + 4 * 100  # alpha scale per output + sign per input element
    assert r.weight_bytes == 36
    assert r.ops == pytest.approx(28_800 / 64)
    assert r.params == pytest.approx(288 / 32)


def test_float_conv_strided_with_bias():
    r = _count(nn.Conv2d(4, 8, 3, stride=2, padding=1, bias=True), 1, 4, 10, 10)
    assert r.bops == 0 and r.flops == 5 * 5 * 8 * 4 * 9 == 7_200
    assert r.elementwise == 8 * 25  # bias
    assert r.params_float == 296 and r.params_binary == 0
    assert r.weight_bytes == 296 * 4 and r.ops == 7_200 and r.params == 296


def test_grouped_dilated_conv_and_batch():
    conv = nn.Conv2d(8, 16, 3, padding=2, dilation=2, groups=4, bias=False)
    r = _count(conv, 2, 8, 6, 6)
    assert r.flops == 2 * 6 * 6 * 16 * (8 // 4) * 9 == 20_736
    depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
    assert _count(depthwise, 1, 8, 6, 6).flops == 36 * 8 * 1 * 9


def test_transposed_conv():
    r = _count(nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1, bias=False), 1, 8, 5, 5)
    assert r.per_layer[0].output_shape == (1, 4, 10, 10)
    assert r.flops == 5 * 5 * 8 * 4 * 16 == 12_800  # Hin*Win*Cin*(Cout/g)*k*k
    rg = _count(nn.ConvTranspose2d(8, 4, 3, stride=2, groups=2, bias=True), 1, 8, 5, 5)
    assert rg.flops == 5 * 5 * 8 * (4 // 2) * 9
    assert rg.elementwise == 4 * 11 * 11  # bias on the 11x11 output
    assert rg.params_float == 8 * 2 * 9 + 4


def test_linear_layers():
    r = _count(nn.Linear(10, 3), 2, 10)
    assert r.flops == 2 * 10 * 3 and r.elementwise == 2 * 3 and r.params_float == 33
    r3 = _count(nn.Linear(10, 3, bias=False), 1, 5, 10)
    assert r3.flops == 5 * 10 * 3 and r3.elementwise == 0
    rb = _count(bn.BinaryLinear(64, 16, input_quantizer="ste_sign", kernel_quantizer="scaled_sign"), 1, 64)
    assert rb.bops == 64 * 16 and rb.flops == 0 and rb.params_binary == 1024
    assert rb.weight_bytes == 128


def test_biconnect_and_float_mode_binary_conv():
    bic = _count(bn.BinaryConv2d(4, 4, 3, padding=1, kernel_quantizer="scaled_sign"), 1, 4, 8, 8)
    assert bic.bops == 0 and bic.flops == 64 * 4 * 4 * 9
    assert bic.params_binary == 144  # signs stored as bits
    fl = _count(bn.BinaryConv2d(4, 4, 3, padding=1, bias=True), 1, 4, 8, 8)
    assert fl.bops == 0 and fl.flops == 64 * 4 * 4 * 9
    assert fl.params_binary == 0 and fl.params_float == 148


def test_haar_counted_as_float_convs():
    m = nn.Sequential(bn.HaarDWT(), bn.HaarIDWT())
    r = _count(m, 1, 3, 8, 8)
    assert r.flops == 2 * (4 * 3 * 8 * 8)  # each output element of the DWT is 4 MACs, and vice versa
    assert r.params_binary == r.params_float == 0


class Mixed(nn.Module):
    """Float head, ReActNet-style binary unit, functional residual add, float tail, global residual."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(9, 16, 3, padding=1, bias=True)
        self.rsign = bn.RSign(16)
        self.conv = bn.BinaryConv2d(
            16, 16, 3, padding=1, input_quantizer=None, kernel_quantizer="scaled_sign"
        )
        self.bconv = bn.BinaryConv2d(16, 16, 1, input_quantizer="approx_sign", kernel_quantizer="scaled_sign")
        self.bnorm = nn.BatchNorm2d(16)
        self.act = bn.RPReLU(16)
        self.tail = nn.Conv2d(16, 8, 3, padding=1, bias=False)
        self.unused = nn.Linear(3, 3)

    def forward(self, *, lms, pan, ms=None):
        x = self.head(torch.cat([lms, pan], dim=1))
        y = self.conv(self.rsign(x))  # BiConnect-style float MACs on binarized input -> still float here
        x = self.act(self.bnorm(self.bconv(y)) + x)
        return self.tail(x) + lms


def test_mixed_model_totals_and_rows():
    h = w = 16
    hw = h * w
    inputs = {"lms": torch.rand(1, 8, h, w), "pan": torch.rand(1, 1, h, w)}
    model = Mixed()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r = count(model, inputs)
    assert model.training and model.bnorm.training  # restored
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # no BN update
    head = hw * 16 * 9 * 9
    conv = hw * 16 * 16 * 9  # only the kernel is quantized -> float MACs
    bconv = hw * 16 * 16
    tail = hw * 8 * 16 * 9
    assert r.bops == bconv
    assert r.flops == head + conv + tail
    ew = {
        "head": 16 * hw,  # bias
        "rsign": 16 * hw,  # shift
        "rsign.quantizer": 16 * hw,  # sign
        "conv": 16 * hw,  # alpha
        "bconv": 16 * hw,  # alpha
        "bconv.input_quantizer": 16 * hw,
        "bnorm": 2 * 16 * hw,
        "act": 3 * 16 * hw,
        "(model)": 16 * hw + 8 * hw,  # residual add + global residual (functional)
    }
    rows = {(row.name, row.type): row for row in r.per_layer}
    assert rows[("(model)", "functional")].elementwise == ew["(model)"]
    assert rows[("act", "RPReLU")].elementwise == ew["act"]
    assert r.elementwise == sum(ew.values())
    assert r.params_binary == 16 * 16 * 9 + 16 * 16
    assert r.params_float == (16 * 9 * 9 + 16) + 16 + 32 + 48 + 8 * 16 * 9
    assert r.unused == ["unused"]
    assert r.ops == pytest.approx(bconv / 64 + head + conv + tail)
    assert r.params == pytest.approx(r.params_binary / 32 + r.params_float)
    assert r.weight_bytes == (r.params_binary + 7) // 8 + 4 * r.params_float
    assert r.inputs == {"lms": (1, 8, h, w), "pan": (1, 1, h, w)}
    text = r.table()
    assert "bconv" in text and "OPs = BOPs/64 + FLOPs" in text and "BinaryConv2d (binary)" in text
    assert rows[("conv", "BinaryConv2d")].note == "binary weights"
    assert rows[("bconv", "BinaryConv2d")].note == "binary"
    assert str(r) == text
    d = json.loads(json.dumps(r.to_dict()))
    assert d["bops"] == r.bops and len(d["per_layer"]) == len(r.per_layer)


def test_shared_module_called_twice():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)

        def forward(self, *, x):
            return self.conv(self.conv(x))

    r = count(Twice(), {"x": torch.rand(1, 4, 6, 6)})
    assert r.flops == 2 * 36 * 4 * 4 * 9
    assert r.params_float == 144  # once
    assert r.per_layer[0].calls == 2


def test_norms_activations_pooling_upsampling():
    m = nn.Sequential(
        nn.LayerNorm([4, 6, 6]),
        nn.GroupNorm(2, 4, affine=False),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Upsample(scale_factor=2, mode="bilinear"),
        nn.PixelUnshuffle(2),
    )
    r = _count(m, 1, 4, 6, 6)
    n = 4 * 36
    assert r.elementwise == 6 * n + 4 * n + n + 4 * (4 * 9) + 4 * n
    assert r.flops == 0 and r.params_float == 2 * n


class OwnParam(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return x * self.w


class BufferConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("k", torch.ones(2, 2, 3, 3))

    def forward(self, x):
        return F.conv2d(x, self.k, padding=1)


def test_refuses_unknown_module_with_parameters():
    model = nn.Sequential(nn.Conv2d(2, 2, 1), nn.Sequential(OwnParam()))
    with pytest.raises(BinsharpError, match=r"'layer\.1\.0' \(OwnParam; parameters w\)"):
        _count(model, 1, 2, 4, 4)


def test_register_counter_for_new_type():
    class Scale(OwnParam):
        pass

    register_counter(Scale, lambda m, inputs, y: complexity.OpCount(elementwise=y.numel()), binary_params=())
    try:
        r = _count(nn.Sequential(nn.Conv2d(2, 2, 1, bias=False), Scale()), 1, 2, 4, 4)
        assert r.elementwise == 2 * 16 and r.params_float == 4 + 1
    finally:
        complexity._RULES.pop(Scale)


def test_refuses_functional_convolution():
    with pytest.raises(BinsharpError, match="functionally inside 'layer.1'"):
        _count(nn.Sequential(nn.Identity(), BufferConv()), 1, 2, 4, 4)
    r = _count(nn.Sequential(nn.Identity(), BufferConv()), 1, 2, 4, 4, strict=False)
    assert r.flops == 16 * 2 * 2 * 9
    assert any(row.type == "functional" and row.flops == r.flops for row in r.per_layer)


def test_refuses_undercounting_rule():
    class Hidden(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(3, 3))

        def forward(self, x):
            return x @ self.w

    register_counter(Hidden, lambda m, inputs, y: complexity.OpCount())
    try:
        with pytest.raises(BinsharpError, match="its counting rule reports 0"):
            _count(Hidden(), 1, 3)
    finally:
        complexity._RULES.pop(Hidden)


def test_inputs_must_be_a_dict():
    with pytest.raises(BinsharpError, match="dict"):
        count(nn.Identity(), torch.zeros(1))  # type: ignore[arg-type]


class Gate(nn.Module):
    """Parameter-free helper with functional work, used inside a counted module's input quantizer."""

    def forward(self, x):
        return x * torch.sigmoid(x.mean(dim=(2, 3), keepdim=True))


def test_functional_work_inside_uncounted_children_of_counted_modules():
    quantizer = nn.Sequential(Gate(), bn.SignSTE())
    conv = bn.BinaryConv2d(4, 4, 3, padding=1, input_quantizer=quantizer, kernel_quantizer="scaled_sign")
    r = _count(conv, 1, 4, 8, 8)
    n = 4 * 64
    rows = {(row.name, row.type): row for row in r.per_layer}
    gate = rows[("layer.input_quantizer.0", "functional")]
    assert gate.elementwise == n + 4 + n  # mean (reduction over inputs) + sigmoid on (1,4,1,1) + product
    assert r.bops == 64 * 4 * 4 * 9
    assert r.elementwise == gate.elementwise + n + n  # + sign + alpha (scale found inside composition)


def test_hooks_removed_and_mode_restored_after_errors():
    class Boom(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 1)

        def forward(self, *, x):
            self.conv(x)
            raise RuntimeError("boom")

    model = Boom().train()
    with pytest.raises(RuntimeError, match="boom"):
        count(model, {"x": torch.rand(1, 2, 3, 3)})
    assert model.training and model.conv.training
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
    ok = Wrap(nn.Conv2d(2, 2, 1))
    count(ok, {"x": torch.rand(1, 2, 3, 3)})
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in ok.modules())
