"""S2BNet and its S2B-Conv unit: shapes, SRM bounds, Gabor banks, BiSR-Conv reduction, checkpoints, OPs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from binsharp import models
from binsharp.errors import BinsharpError
from binsharp.models.s2bnet import (
    GSFA_MODES,
    SRM_MODES,
    DynamicSRM,
    GaborActivationFilter,
    GaborModulatedWeight,
    S2BConv,
    S2BNet,
    draw_gabor_bank,
    gabor_kernels,
)
from binsharp.models.units import BiSRUnit
from binsharp.nn import ReDistribution
from binsharp.nn.complexity import count

SMALL = {"dim": 8}  # keeps model tests fast; every unit still has >= 8 channels
TINY = {"dim": 8, "stages": 1, "num_blocks": [1, 1]}  # one level: for the per-switch tests


def _randomise_(module: torch.nn.Module, seed: int = 0) -> None:
    """Give every parameter a random non-trivial value (float64 draws, reproducible)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype) + 0.1)


def _banks(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if k.endswith(".bank")}


# ------------------------------------------------------------------------------------------------ unit
@pytest.mark.parametrize("srm", SRM_MODES)
@pytest.mark.parametrize("gsfa", GSFA_MODES)
@pytest.mark.parametrize("kernel_size,groups", [(3, 1), (1, 1), (3, 16), (3, 4)])
def test_s2bconv_shapes(srm: str, gsfa: str, kernel_size: int, groups: int) -> None:
    unit = S2BConv(16, kernel_size, groups, srm=srm, gsfa=gsfa)
    x = torch.randn(2, 16, 9, 11)
    y = unit(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.isfinite(y).all()
    assert unit.conv.weight.shape == (16, 16 // groups, kernel_size, kernel_size)
    assert unit.conv.is_binary
    assert unit.gsfa_mode == (gsfa if kernel_size > 1 else "off")
    if gsfa == "weight" and kernel_size > 1:
        assert isinstance(unit.conv.kernel_quantizer, GaborModulatedWeight)
    if gsfa == "activation" and kernel_size > 1:
        assert isinstance(unit.gsfa, GaborActivationFilter)
    else:
        assert unit.gsfa is None
    expected_srm = {"dynamic": DynamicSRM, "static": ReDistribution, "off": torch.nn.Identity}[srm]
    assert isinstance(unit.redistribute, expected_srm)


def test_s2bconv_bad_arguments() -> None:
    with pytest.raises(BinsharpError, match="srm"):
        S2BConv(8, srm="adaptive")
    with pytest.raises(BinsharpError, match="gsfa"):
        S2BConv(8, gsfa="gabor")
    with pytest.raises(BinsharpError, match="kernel_size"):
        S2BConv(8, 5)
    with pytest.raises(BinsharpError, match="groups"):
        S2BConv(8, 3, 3)
    with pytest.raises(BinsharpError, match="freq"):
        S2BConv(8, gabor_freq=(0.5, 0.1))
    with pytest.raises(BinsharpError, match="sigma"):
        S2BConv(8, gabor_sigma=0.0)


# ------------------------------------------------------------------------------------------------- SRM
def test_dynamic_srm_starts_as_identity() -> None:
    srm = DynamicSRM(16)
    x = torch.randn(3, 16, 5, 5) * 100
    k, b = srm.coefficients(x)
    assert k.shape == (3, 16, 1, 1) and b.shape == (3, 16, 1, 1)
    assert torch.equal(k, torch.ones_like(k)) and torch.equal(b, torch.zeros_like(b))
    assert torch.equal(srm(x), x)
    assert srm.fc1.out_features == 4 and srm.fc2.out_features == 32


@pytest.mark.parametrize("scale", [1e3, 1e6, 1e12, -1e12])
def test_dynamic_srm_range_is_bounded(scale: float) -> None:
    torch.manual_seed(0)
    srm = DynamicSRM(16)
    with torch.no_grad():
        srm.fc1.weight.normal_(0, 3.0)
        srm.fc2.weight.normal_(0, 3.0)
        srm.fc2.bias.normal_(0, 3.0)
    x = torch.randn(4, 16, 6, 6) * scale + scale
    k, b = srm.coefficients(x)
    assert torch.isfinite(k).all() and torch.isfinite(b).all()
    assert (k >= 0).all() and (k <= 2).all()
    assert (b >= -1).all() and (b <= 1).all()
    assert k.max() > 1.99 and k.min() < 0.01  # tanh saturates: both ends are reached, nothing escapes
    y = srm(x)
    assert torch.allclose(y, k * x + b, rtol=1e-6, atol=0)


def test_dynamic_srm_range_is_open_for_moderate_inputs() -> None:
    torch.manual_seed(0)
    srm = DynamicSRM(16)
    with torch.no_grad():
        srm.fc2.weight.normal_(0, 0.5)
        srm.fc2.bias.normal_(0, 0.5)
    k, b = srm.coefficients(torch.randn(4, 16, 6, 6))
    assert (k > 0).all() and (k < 2).all() and (b > -1).all() and (b < 1).all()
    assert not torch.allclose(k, torch.ones_like(k))


def test_dynamic_srm_depends_on_each_sample() -> None:
    torch.manual_seed(1)
    srm = DynamicSRM(8, reduction=2)
    with torch.no_grad():
        srm.fc2.weight.normal_()
    x = torch.randn(2, 8, 4, 4)
    x[1] += 3.0
    k, b = srm.coefficients(x)
    assert not torch.allclose(k[0], k[1])
    k1, _ = srm.coefficients(x[1:])  # per-sample: the other sample of the batch does not matter
    assert torch.allclose(k1[0], k[1])


# ----------------------------------------------------------------------------------------------- Gabor
def test_gabor_kernel_formula() -> None:
    theta = torch.tensor([0.3, 1.2], dtype=torch.float64)
    freq = torch.tensor([0.25, 0.45], dtype=torch.float64)
    sigma = torch.tensor([1.0, 1.5], dtype=torch.float64)
    g = gabor_kernels(theta, freq, sigma, 3)
    r = np.arange(3) - 1.0
    y, x = np.meshgrid(r, r, indexing="ij")
    for n in range(2):
        t, f, s = float(theta[n]), float(freq[n]), float(sigma[n])
        xr = x * math.cos(t) + y * math.sin(t)
        yr = -x * math.sin(t) + y * math.cos(t)
        ref = np.exp(-(xr**2 + yr**2) / (2 * s**2)) * np.cos(2 * math.pi * f * xr)
        ref /= np.abs(ref).max()
        np.testing.assert_allclose(g[n].numpy(), ref, rtol=1e-12, atol=1e-12)
    # theta = 0 and f = 0.5: cos(pi x) alternates along the columns only
    g0 = gabor_kernels(torch.zeros(1, dtype=torch.float64), torch.full((1,), 0.5, dtype=torch.float64),
                       torch.ones(1, dtype=torch.float64), 3)[0]  # fmt: skip
    assert float(g0[1, 1]) == 1.0
    assert (g0[:, 0] < 0).all() and (g0[:, 2] < 0).all() and torch.allclose(g0[:, 0], g0[:, 2])


def test_gabor_bank_draws_inside_the_ranges() -> None:
    gen = torch.Generator().manual_seed(3)
    d = draw_gabor_bank(500, 3, freq=(0.2, 0.3), theta=(0.5, 1.0), sigma=(0.8, 1.6), generator=gen)
    assert d["bank"].shape == (500, 3, 3) and d["bank"].dtype == torch.float32
    assert (d["freq"] >= 0.2).all() and (d["freq"] < 0.3).all()
    assert (d["theta"] >= 0.5).all() and (d["theta"] < 1.0).all()
    assert (d["sigma"] >= 0.8).all() and (d["sigma"] < 1.6).all()
    assert torch.allclose(d["bank"].abs().amax(dim=(1, 2)), torch.ones(500))
    fixed = draw_gabor_bank(4, 3, sigma=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(fixed["sigma"], torch.ones(4, dtype=torch.float64))


def test_gabor_bank_reproducible_from_seed_and_saved() -> None:
    a = S2BConv(16, seed=7)
    b = S2BConv(16, seed=7)
    c = S2BConv(16, seed=8)
    key = "conv.kernel_quantizer.gabor.bank"
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert key in sa and sa[key].shape == (16, 1, 3, 3)
    for name in ("theta", "freq", "sigma"):
        assert f"conv.kernel_quantizer.gabor.{name}" in sa
    assert torch.equal(sa[key], sb[key])
    assert not torch.equal(sa[key], sc[key])
    # the bank is a buffer, not a trainable parameter
    assert all("gabor" not in n for n, _ in a.named_parameters())
    for gsfa in ("init", "activation"):
        keys = [k for k in S2BConv(8, gsfa=gsfa).state_dict() if k.endswith(".bank")]
        assert len(keys) == 1


def test_model_banks_reproducible_from_gabor_seed() -> None:
    a = models.create("s2bnet", bands=4, gabor_seed=5, **SMALL)
    b = models.create("s2bnet", bands=4, gabor_seed=5, **SMALL)
    c = models.create("s2bnet", bands=4, gabor_seed=6, **SMALL)
    ba, bb, bc = _banks(a), _banks(b), _banks(c)
    n3x3 = sum(1 for m in a.modules() if isinstance(m, S2BConv) and m.kernel_size == 3)
    assert len(ba) == n3x3 > 10
    assert all(torch.equal(ba[k], bb[k]) for k in ba)
    assert all(not torch.equal(ba[k], bc[k]) for k in ba)
    # units draw different kernels from the shared generator
    first = [v for k, v in ba.items() if v.shape[0] == 8]
    assert not torch.equal(first[0], first[1])


# ------------------------------------------------------------------------------------------------ GSFA
def test_weight_modulation_binarizes_the_modulated_kernel() -> None:
    unit = S2BConv(8, gsfa="weight", gabor_lambda=1.0)
    w = unit.conv.weight.detach()
    g = unit.conv.kernel_quantizer.gabor.bank
    wg = w * (1 + g)
    alpha = wg.abs().mean(dim=(1, 2, 3), keepdim=True)
    expected = alpha * torch.where(wg >= 0, 1.0, -1.0)
    assert torch.allclose(unit.conv.quantized_weight(), expected, rtol=1e-6, atol=0)
    # gradient: clip STE on Wg times (1 + lambda g)
    wq = unit.conv.kernel_quantizer(unit.conv.weight)
    (wq * torch.arange(wq.numel()).view_as(wq)).sum().backward()
    upstream = torch.arange(wq.numel(), dtype=torch.float32).view_as(wq)
    ref = upstream * (wg.abs() <= 1) * (1 + g)
    assert torch.allclose(unit.conv.weight.grad, ref)


def test_activation_filter_adds_the_depthwise_gabor_response() -> None:
    unit = S2BConv(8, srm="off", gsfa="activation", gabor_lambda=0.5)
    x = torch.randn(2, 8, 7, 7)
    g = unit.gsfa.gabor.bank
    ref = x + torch.nn.functional.conv2d(x, 0.5 * g, padding=1, groups=8)
    assert torch.allclose(unit.gsfa(x), ref, atol=1e-6)


def test_gabor_initialisation_pattern() -> None:
    plain = S2BConv(8, gsfa="off")
    unit = S2BConv(8, gsfa="init")
    w = unit.conv.weight.detach()
    g = unit.init_bank.bank
    ratio = w / g  # constant magnitude per (o, i), random sign
    flat = ratio.reshape(8, 8, 9)
    assert torch.allclose(flat, flat[..., :1].expand_as(flat), rtol=1e-5)
    mags = flat[..., 0].abs()
    assert torch.allclose(mags, mags[0, 0].expand_as(mags))
    assert (flat[..., 0] > 0).any() and (flat[..., 0] < 0).any()
    assert isinstance(unit.conv.kernel_quantizer, type(plain.conv.kernel_quantizer))


# ------------------------------------------------------------------------------------- BiSR reduction
@pytest.mark.parametrize("kernel_size,groups", [(3, 1), (1, 1), (3, 4)])
def test_reduces_to_bisr_conv(kernel_size: int, groups: int) -> None:
    s2b = S2BConv(16, kernel_size, groups, srm="static", gsfa="off")
    _randomise_(s2b, seed=kernel_size + groups)
    bisr = BiSRUnit(16, kernel_size, groups)
    bisr.load_state_dict(s2b.state_dict(), strict=True)
    x = torch.randn(2, 16, 8, 8)
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    y1, y2 = s2b(x1), bisr(x2)
    assert torch.equal(y1, y2)
    (y1**2).sum().backward()
    (y2**2).sum().backward()
    assert torch.equal(x1.grad, x2.grad)
    for (n1, p1), (n2, p2) in zip(s2b.named_parameters(), bisr.named_parameters(), strict=True):
        assert n1 == n2 and torch.equal(p1.grad, p2.grad)


def test_static_gsfa_off_model_counts_like_bisrnet() -> None:
    s2b = models.create("s2bnet", bands=8, srm="static", gsfa="off", **TINY)
    _randomise_(s2b, seed=7)  # a non-zero tail: the body reaches the output
    bisr = models.create("bisrnet", bands=8, **TINY)
    bisr.load_state_dict(s2b.state_dict(), strict=True)
    x = s2b.example_inputs(8)
    y = s2b(**x)
    assert torch.equal(y, bisr(**x)) and not torch.equal(y, x["lms"])
    r1, r2 = count(s2b, x), count(bisr, x)
    for f in ("bops", "flops", "elementwise", "params_binary", "params_float"):
        assert getattr(r1, f) == getattr(r2, f), f


# ---------------------------------------------------------------------------------------------- model
@pytest.mark.parametrize(
    "bands,switches,arch",
    [
        (8, {}, SMALL),
        (4, {}, SMALL),
        (4, {"srm": "static"}, TINY),
        (4, {"srm": "off"}, TINY),
        (8, {"gsfa": "off"}, TINY),
        (4, {"gsfa": "init"}, TINY),
        (8, {"gsfa": "activation"}, TINY),
    ],
)
def test_forward_backward(bands: int, switches: dict, arch: dict) -> None:
    torch.manual_seed(0)
    # a non-zero tail, so that the gradient reaches the body and head at the first step
    net = models.create("s2bnet", bands=bands, **arch, **switches, zero_tail=False)
    assert isinstance(net, S2BNet) and net.kind == "binary" and net.model_name == "s2bnet"
    x = net.example_inputs(8, batch=2)
    out = net(**x)
    assert out.shape == (2, bands, 8, 8)
    loss = (out - x["lms"]).abs().mean() + out.mean()
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert net.head.weight.grad.abs().sum() > 0 and net.tail.weight.grad.abs().sum() > 0
    assert net.body.embedding.conv.weight.grad.abs().sum() > 0
    assert len(net.binary_layers()) > 20


def test_odd_sizes_and_bad_inputs() -> None:
    net = models.create("s2bnet", bands=4, **SMALL).eval()
    x = net.example_inputs(20)
    with torch.no_grad():
        assert net(**x).shape == (1, 4, 20, 20)
    with pytest.raises(BinsharpError, match="bands"):
        net(lms=torch.rand(1, 8, 20, 20), pan=x["pan"])
    with pytest.raises(BinsharpError):
        models.create("s2bnet", bands=4, gsfa="gabor")
    with pytest.raises(BinsharpError):
        models.create("s2bnet", bands=4, srm="on")
    with pytest.raises(BinsharpError):
        models.create("s2bnet", bands=4, gabor_theta=(1.0, 0.0))


def test_config_registry_and_recipe() -> None:
    info = models.model_info("s2bnet")
    assert info["kind"] == "binary" and info["inputs"] == ["lms", "pan"]
    keys = ("srm", "gsfa", "gabor_freq", "gabor_theta", "gabor_sigma", "gabor_lambda", "gabor_seed")
    for key in (*keys, "dim", "num_blocks", "stages"):
        assert key in info["defaults"]
    assert info["defaults"]["srm"] == "dynamic" and info["defaults"]["gsfa"] == "weight"
    binary = models.model_info("bisrnet")["recipe"]
    for key in ("optimizer", "lr", "scheduler", "batch_size", "steps", "loss"):
        assert info["recipe"][key] == binary[key]
    net = models.create("s2bnet", bands=4, gsfa="activation", gabor_freq=[0.2, 0.4], **SMALL)
    cfg = json.loads(json.dumps(net.config))
    assert cfg["gabor_freq"] == [0.2, 0.4] and cfg["gsfa"] == "activation" and cfg["dim"] == 8
    twin = models.create(net.model_name, **cfg)
    twin.load_state_dict(net.state_dict(), strict=True)
    direct = S2BNet(4, dim=8, gsfa="activation", gabor_freq=(0.2, 0.4))
    assert direct.config == cfg


# -------------------------------------------------------------------------------------- checkpointing
def test_state_dict_round_trip_reproduces_outputs() -> None:
    a = models.create("s2bnet", bands=8, gabor_seed=1, **SMALL)
    _randomise_(a, seed=2)
    b = models.create("s2bnet", bands=8, gabor_seed=2, **SMALL)
    x = a.example_inputs(8)
    a.eval()
    b.eval()
    with torch.no_grad():
        ya = a(**x)
        assert not torch.equal(ya, b(**x))
        b.load_state_dict(a.state_dict(), strict=True)
        assert torch.equal(ya, b(**x))
    assert all(torch.equal(v, _banks(a)[k]) for k, v in _banks(b).items())


def test_safetensors_checkpoint_round_trip(tmp_path) -> None:
    ckpt = pytest.importorskip("binsharp.weights")
    a = models.create("s2bnet", bands=4, gabor_seed=3, gsfa="weight", **SMALL)
    _randomise_(a, seed=4)
    path = ckpt.save_checkpoint(tmp_path / "s2bnet.safetensors", a, {"bits": 11, "ratio": 4, "sensor": "WV3"})
    b, meta = models.load_checkpoint(path)
    assert meta["model"] == "s2bnet" and meta["config"]["gabor_seed"] == 3
    a.eval()
    x = a.example_inputs(8)
    with torch.no_grad():
        assert torch.equal(a(**x), b(**x))


# ------------------------------------------------------------------------------------------ complexity
def test_complexity_against_bisrnet() -> None:
    s2b = models.create("s2bnet", bands=8, **SMALL)
    bisr = models.create("bisrnet", bands=8, **SMALL)
    no_srm = models.create("s2bnet", bands=8, srm="off", **SMALL)
    x = s2b.example_inputs(8)
    r, rb, r0 = count(s2b, x), count(bisr, x), count(no_srm, x)
    assert r.bops > 0 and r.bops == rb.bops == r0.bops  # same body, same binary convolutions
    assert r.params > rb.params and r.params_binary == rb.params_binary
    # the dynamic SRM adds full-precision FC parameters and (per image, not per pixel) FC FLOPs
    srms = [m for m in s2b.modules() if isinstance(m, DynamicSRM)]
    assert len(srms) == sum(1 for m in s2b.modules() if isinstance(m, S2BConv))
    assert r.params_float == r0.params_float + sum(p.numel() for m in srms for p in m.parameters())
    assert r.flops == rb.flops + sum(fc.in_features * fc.out_features for m in srms for fc in (m.fc1, m.fc2))
    assert math.isclose(r.ops, r.bops / 64 + r.flops)
    assert any(row.type == "DynamicSRM" and row.elementwise > 0 for row in r.per_layer)
    # the activation-path Gabor filter is counted as k*k float MACs per element of each 3x3 unit
    tiny = models.create("s2bnet", bands=8, **TINY)
    act = models.create("s2bnet", bands=8, gsfa="activation", **TINY)
    rt, ra = count(tiny, x), count(act, x)
    filt = [row for row in ra.per_layer if row.type == "GaborActivationFilter"]
    assert len(filt) == sum(1 for m in act.modules() if isinstance(m, S2BConv) and m.kernel_size == 3)
    assert ra.bops == rt.bops and ra.params == rt.params
    assert ra.flops - rt.flops == sum(row.flops for row in filt)
    assert all(row.flops == 9 * math.prod(row.output_shape) * row.calls for row in filt)


def test_s2b_conv_in_the_plain_body_of_the_unit_models():
    """``body="plain"``: S2B-Conv units in the plain body of the unit models (unit-against-unit runs)."""
    from binsharp.models.bodies import PlainBody
    from binsharp.models.s2bnet import S2BConv

    net = models.create("s2bnet", bands=4, dim=8, body="plain", n_units=3)
    assert isinstance(net.body, PlainBody) and len(net.body.units) == 3
    assert all(isinstance(u, S2BConv) for u in net.body.units)
    x = net.example_inputs(16)
    assert net(**x).shape == x["lms"].shape
    # with the static SRM and no GSFA the unit is BiSR-Conv: BiSRNet's plain body, weight for weight
    ref = models.create("bisrnet", bands=4, dim=8, body="plain", n_units=3).eval()
    twin = models.create("s2bnet", bands=4, dim=8, body="plain", n_units=3, srm="static", gsfa="off").eval()
    twin.load_state_dict(ref.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.equal(twin(**x), ref(**x))
    assert models.create("s2bnet", body="unet").config["body"] == "unet"
    with pytest.raises(BinsharpError, match="body"):
        models.create("s2bnet", body="wavelet")
