"""binsharp.nn: sign convention, binarizers (forward values and gradients against the formulas),
binary layers, per-channel units, latent clipping, schedules, Haar DWT/IDWT."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import binsharp.nn as bn
import binsharp.nn.functional as bnf
from binsharp import native
from binsharp.errors import BinsharpError

X = torch.tensor([-2.0, -1.0, -0.75, -0.25, -0.0, 0.0, 0.25, 0.75, 1.0, 2.0], dtype=torch.float64)
SIGN_X = torch.tensor([-1.0, -1, -1, -1, 1, 1, 1, 1, 1, 1], dtype=torch.float64)
G = torch.linspace(0.5, 1.4, X.numel(), dtype=torch.float64)  # upstream gradient


def _fwd_bwd(fn, x=X, g=G):
    x = x.clone().requires_grad_(True)
    y = fn(x)
    y.backward(g)
    return y.detach(), x.grad


# ------------------------------------------------------------------------------------------------ sign
def test_sign_convention_zero_is_plus_one():
    x = torch.tensor([0.0, -0.0, 1e-30, -1e-30, 3.0, -3.0])
    assert bn.sign(x).tolist() == [1.0, 1.0, 1.0, -1.0, 1.0, -1.0]
    assert torch.sign(torch.tensor(0.0)) == 0  # the reason for bn.sign
    assert bn.sign(X).dtype == torch.float64
    assert not bn.sign(X.clone().requires_grad_(True)).requires_grad


@pytest.mark.parametrize(
    "q",
    [bn.SignSTE(), bn.ApproxSign(), bn.EDESign(), bn.ScalableTanhSign(), bn.IdentitySTE(), bn.RSign(3)],
    ids=lambda q: type(q).__name__,
)
def test_activation_quantizers_map_zero_to_plus_one(q):
    x = torch.zeros(2, 3, 2, 2)
    x[0, 0, 0, 0] = -0.0
    x[1, 2, 1, 1] = -0.5
    y = q(x)
    expected = torch.ones_like(x)
    expected[1, 2, 1, 1] = -1
    assert torch.equal(y, expected)


@pytest.mark.parametrize("q", [bn.ScaledSignWeight(), bn.BNNWeight(), bn.IRNetWeight()], ids=str)
def test_weight_quantizers_never_output_zero(q):
    w = torch.tensor([[0.0, 0.5, -0.5, 1.0]], dtype=torch.float64)
    y = q(w)
    assert (y != 0).all()
    if not isinstance(q, bn.IRNetWeight):  # IR-Net standardises first
        assert y[0, 0] > 0


# ------------------------------------------------------------------------------------ activation STEs
@pytest.mark.skipif(not native.have_kernels(), reason="compiled kernels not built")
def test_sign_compiled_cpu_path_matches_convention(monkeypatch):
    """float32 on the CPU takes the compiled one-pass sign: the same values as the PyTorch form (0, -0.0 and
    NaN give +1), on a tensor split over several threads too."""
    x = torch.randn(3, 5, 700, 701, generator=torch.Generator().manual_seed(0))
    x.view(-1)[:4] = torch.tensor([0.0, -0.0, float("nan"), -1e-30])
    want = torch.lt(x, 0, out=torch.empty_like(x)).mul_(-2.0).add_(1.0)
    assert torch.equal(bn.sign(x), want)
    assert bn.sign(x).view(-1)[:4].tolist() == [1.0, 1.0, 1.0, -1.0]
    assert np.array_equal(native.sign(x.numpy(), threads=2), want.numpy())
    cl = x[:, :, :64, :64].contiguous(memory_format=torch.channels_last)  # another layout: PyTorch's form
    assert torch.equal(bn.sign(cl), want[:, :, :64, :64])
    assert bn.sign(cl).is_contiguous(memory_format=torch.channels_last)
    calls = []
    monkeypatch.setattr(native, "sign", lambda *a, **k: calls.append(1))
    small = torch.randn(bnf.COMPILED_MIN_NUMEL - 1)  # below the size where the call pays: PyTorch's form
    assert torch.equal(bn.sign(small), torch.where(small < 0, -1.0, 1.0)) and not calls


def test_sign_ste_values_and_gradient():
    y, gx = _fwd_bwd(bn.sign_ste)
    assert torch.equal(y, SIGN_X)
    mask = (X.abs() <= 1).double()  # boundaries +-1 pass
    assert torch.equal(gx, G * mask)
    assert gx[1] == G[1] and gx[8] == G[8] and gx[0] == 0 and gx[-1] == 0
    y2, gx2 = _fwd_bwd(bn.SignSTE())
    assert torch.equal(y2, y) and torch.equal(gx2, gx)


def test_approx_sign_values_and_gradient():
    y, gx = _fwd_bwd(bn.ApproxSign())
    assert torch.equal(y, SIGN_X)
    # 2 + 2x on [-1, 0), 2 - 2x on [0, 1), 0 elsewhere
    expected = torch.tensor(
        [0.0 if abs(v) >= 1 else (2 + 2 * v if v < 0 else 2 - 2 * v) for v in X.tolist()], dtype=torch.float64
    )
    assert expected.tolist() == [0, 0, 0.5, 1.5, 2, 2, 1.5, 0.5, 0, 0]
    torch.testing.assert_close(gx, G * expected, rtol=0, atol=1e-15)


def test_identity_ste():
    y, gx = _fwd_bwd(bn.IdentitySTE())
    assert torch.equal(y, SIGN_X) and torch.equal(gx, G)


def test_ede_schedule_formula():
    for e, total in [(0, 10), (3, 10), (5, 10), (7.5, 10), (10, 10)]:
        t, k = bn.ede_schedule(e / total)
        t_ref = 0.1 * 10 ** (e / total * math.log10(10.0 / 0.1))
        assert t == pytest.approx(t_ref, rel=1e-12)
        assert k == pytest.approx(max(1 / t_ref, 1.0), rel=1e-12)
    assert bn.ede_schedule(0.0) == pytest.approx((0.1, 10.0))
    assert bn.ede_schedule(0.5) == pytest.approx((1.0, 1.0))
    assert bn.ede_schedule(1.0) == pytest.approx((10.0, 1.0))


@pytest.mark.parametrize("epoch", [0, 2, 5, 9, 10])
def test_ede_sign_gradient_follows_schedule(epoch):
    q = bn.EDESign(t_min=0.1, t_max=10.0)
    q.set_progress(epoch, 10)
    t = 0.1 * 10 ** (epoch / 10 * 2.0)
    k = max(1 / t, 1.0)
    y, gx = _fwd_bwd(q)
    assert torch.equal(y, SIGN_X)
    # float64 rounding of 1 - tanh^2 for large |t x| limits the agreement to ~1e-9 relative there
    expected = G * k * t * (1 - torch.tanh(t * X) ** 2)
    torch.testing.assert_close(gx, expected, rtol=1e-9, atol=1e-14)


def test_ede_state_survives_state_dict():
    m = torch.nn.Sequential(bn.EDESign(), bn.BinaryConv2d(2, 2, 1, kernel_quantizer=bn.IRNetWeight()))
    assert bn.set_progress(m, 7, 10) == 2
    m2 = torch.nn.Sequential(bn.EDESign(), bn.BinaryConv2d(2, 2, 1, kernel_quantizer=bn.IRNetWeight()))
    m2.load_state_dict(m.state_dict())
    t, k = bn.ede_schedule(0.7)
    assert m2[0]._tk() == pytest.approx((t, k))
    assert m2[1].kernel_quantizer._tk() == pytest.approx((t, k))
    _, g1 = _fwd_bwd(m[0])
    _, g2 = _fwd_bwd(m2[0])
    assert torch.equal(g1, g2)


@pytest.mark.parametrize("beta0", [1.0, 1.7])
def test_scalable_tanh_sign_gradients(beta0):
    q = bn.ScalableTanhSign(init=beta0).double()
    assert bn.ScalableTanhSign().beta.item() == 1.0  # default init
    y, gx = _fwd_bwd(q)
    assert torch.equal(y, SIGN_X)
    beta = q.beta.detach()
    assert float(beta) == pytest.approx(beta0)
    th = torch.tanh(beta * X)
    torch.testing.assert_close(gx, G * beta * (1 - th**2), rtol=1e-9, atol=1e-14)
    torch.testing.assert_close(q.beta.grad, (G * X * (1 - th**2)).sum(), rtol=1e-9, atol=1e-14)


def test_scalable_tanh_sign_per_channel_beta():
    q = bn.ScalableTanhSign(channels=3).double()
    with torch.no_grad():
        q.beta.copy_(torch.tensor([0.5, 1.0, 2.0]).view(1, 3, 1, 1))
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    g = torch.randn_like(x)
    x.requires_grad_(True)
    q(x).backward(g)
    b = q.beta.detach()
    th = torch.tanh(b * x.detach())
    torch.testing.assert_close(x.grad, g * b * (1 - th**2))
    torch.testing.assert_close(q.beta.grad, (g * x.detach() * (1 - th**2)).sum(dim=(0, 2, 3), keepdim=True))


@pytest.mark.skipif(not native.have_kernels(), reason="compiled kernels not built")
@pytest.mark.parametrize("channels", [None, 3])
def test_scalable_tanh_sign_compiled_cpu_backward(channels, monkeypatch):
    """float32 on the CPU: the compiled one-pass backward agrees with the formula in float64 to float32
    precision (saturated |beta x| included, a plane's tail too) and is the same for any thread count."""
    monkeypatch.setattr(bnf, "COMPILED_MIN_NUMEL", 0)  # small test tensors take the compiled path too
    calls = []
    fn = native.tanh_sign_backward
    monkeypatch.setattr(native, "tanh_sign_backward", lambda *a, **k: calls.append(1) or fn(*a, **k))
    q = bn.ScalableTanhSign(channels=channels) if channels else bn.ScalableTanhSign(init=1.3)
    if channels:
        with torch.no_grad():
            q.beta.copy_(torch.tensor([0.5, 1.0, 2.0]).view(1, 3, 1, 1))
    x = torch.randn(2, 3, 5, 7, generator=torch.Generator().manual_seed(0)) * 3
    x[0, 0, 0, :3] = torch.tensor([60.0, -60.0, 0.0])
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    xa = x.clone().requires_grad_(True)
    q(xa).backward(g)
    assert calls == [1]
    b, xd, gd = q.beta.detach().double(), x.double(), g.double()
    sech2 = 1 - torch.tanh(b * xd) ** 2
    # float32 precision: sech^2 = 4 s (1 - s) with s = sigmoid(2 beta x) loses relative accuracy where s ~ 1
    torch.testing.assert_close(xa.grad.double(), gd * b * sech2, rtol=1e-5, atol=1e-5)
    want = gd * xd * sech2
    want = want.sum() if channels is None else want.sum(dim=(0, 2, 3), keepdim=True)
    torch.testing.assert_close(q.beta.grad.double(), want.reshape(q.beta.shape), rtol=1e-5, atol=1e-5)
    b32 = q.beta.detach().reshape(-1).expand(3).numpy()
    big = np.random.default_rng(0).normal(0, 2, (2, 2, 3, 400, 400)).astype(np.float32)  # several threads
    one = native.tanh_sign_backward(big[0], big[1], b32, threads=1)
    two = native.tanh_sign_backward(big[0], big[1], b32, threads=2)
    assert all(np.array_equal(u, v) for u, v in zip(one, two, strict=True))


@pytest.mark.skipif(not native.have_kernels(), reason="compiled kernels not built")
def test_approx_sign_compiled_cpu_backward_is_torch_bitwise(monkeypatch):
    """float32 on the CPU: the compiled one-pass ApproxSign backward is bitwise PyTorch's op-by-op form
    (|x| = 1 and beyond, signed zeros, NaN, infinities), and the same for any thread count."""
    x = torch.randn(2, 3, 9, 11, generator=torch.Generator().manual_seed(0))
    x.view(-1)[:9] = torch.tensor([1.0, -1.0, 0.0, -0.0, 0.5, -1e-8, float("nan"), float("inf"), 3.0])
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    g.view(-1)[9:11] = torch.tensor([float("inf"), -0.0])
    calls = []
    fn = native.approx_sign_backward
    monkeypatch.setattr(native, "approx_sign_backward", lambda *a, **k: calls.append(1) or fn(*a, **k))
    grads = []
    for threshold in (x.numel() + 1, 0):  # PyTorch's form, then the compiled one
        monkeypatch.setattr(bnf, "COMPILED_MIN_NUMEL", threshold)
        xa = x.clone().requires_grad_(True)
        bn.ApproxSign()(xa).backward(g)
        grads.append(xa.grad.numpy())
    assert calls == [1]
    np.testing.assert_array_equal(grads[1].view(np.uint32), grads[0].view(np.uint32))
    big = np.random.default_rng(0).normal(0, 1, (2, 3, 500, 500)).astype(np.float32)  # several threads
    one = native.approx_sign_backward(big[0], big[1], threads=1)
    assert np.array_equal(one, native.approx_sign_backward(big[0], big[1], threads=2))


# ------------------------------------------------------------------------------------ weight quantizers
W = torch.tensor(
    [
        [[[0.0, -0.5], [1.0, 1.5]], [[-1.0, 0.25], [-2.0, 0.5]]],
        [[[0.1, 0.2], [-0.3, -0.4]], [[0.0, 0.0], [0.9, -1.1]]],
    ],
    dtype=torch.float64,
)  # (O=2, I=2, 2, 2), includes 0, +-1 and |w| > 1
GW = torch.arange(1, W.numel() + 1, dtype=torch.float64).view_as(W) / 10


def test_scaled_sign_weight_values_and_gradient():
    y, gw = _fwd_bwd(bn.ScaledSignWeight(), W, GW)
    alpha = W.abs().mean(dim=(1, 2, 3), keepdim=True)
    assert alpha.flatten().tolist() == pytest.approx([6.75 / 8, 3.0 / 8])
    torch.testing.assert_close(y, alpha * bn.sign(W), rtol=0, atol=0)
    assert y[0, 0, 0, 0] == alpha[0, 0, 0, 0]  # sign(0) = +1
    # clip STE on W (alpha is detached and does not scale the surrogate gradient)
    assert torch.equal(gw, GW * (W.abs() <= 1).double())
    assert gw[0, 0, 1, 0] == GW[0, 0, 1, 0] and gw[0, 0, 1, 1] == 0  # w = 1 passes, w = 1.5 blocked
    y2, gw2 = _fwd_bwd(bn.ScaledSignWeight(scale_grad=True), W, GW)
    assert torch.equal(y2, y)
    torch.testing.assert_close(gw2, GW * (W.abs() <= 1).double() * alpha, rtol=0, atol=1e-15)


def test_scaled_sign_weight_linear_shape():
    w = torch.tensor([[1.0, -3.0], [0.0, 0.5]])
    y = bn.ScaledSignWeight()(w)
    assert torch.equal(y, torch.tensor([[2.0, -2.0], [0.25, 0.25]]))


def test_irnet_weight_values_and_gradient():
    q = bn.IRNetWeight().double()
    q.set_progress(3, 10)
    t, k = bn.ede_schedule(0.3)
    y, gw = _fwd_bwd(q, W, GW)
    # reference: standardise per out channel, power-of-two scale, EDE backward via the detach identity
    w = W.clone().requires_grad_(True)
    flat = w.view(2, -1)
    wh = (w - flat.mean(1).view(2, 1, 1, 1)) / (flat.std(1).view(2, 1, 1, 1) + 1e-8)
    scale = (2.0 ** torch.round(torch.log2(wh.detach().abs().mean(dim=(1, 2, 3), keepdim=True)))).detach()
    sur = k * torch.tanh(t * wh)
    ref = (bn.sign(wh) - sur).detach() + sur
    (ref * scale).backward(GW)
    torch.testing.assert_close(y, bn.sign(wh.detach()) * scale, rtol=0, atol=0)
    assert set(scale.flatten().tolist()) <= {0.5, 1.0, 2.0}
    torch.testing.assert_close(gw, w.grad, rtol=1e-10, atol=1e-12)


def test_bnn_weight_values_and_gradient():
    y, gw = _fwd_bwd(bn.BNNWeight(), W, GW)
    assert torch.equal(y, bn.sign(W))
    assert torch.equal(gw, GW * (W.abs() <= 1).double())


def test_bnn_latent_weights_updated_and_clipped():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        bn.BinaryConv2d(3, 4, 3, padding=1, input_quantizer="ste_sign", kernel_quantizer="bnn_weight"),
        bn.BinaryConv2d(4, 2, 3, padding=1, input_quantizer="ste_sign", kernel_quantizer="scaled_sign"),
    )
    conv = model[0]
    with torch.no_grad():
        conv.weight.copy_(torch.empty_like(conv.weight).uniform_(-0.99, 0.99))
        model[1].weight.mul_(5)  # no latent clipping declared for this one
    w0 = conv.weight.detach().clone()
    w1_before = model[1].weight.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=5.0)
    handle = bn.attach_latent_clipping(opt, model)
    x = torch.randn(4, 3, 8, 8)
    for _ in range(5):
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
    handle.remove()
    w = conv.weight.detach()
    assert not torch.equal(w, w0)  # the optimiser really updates the latent weights
    assert w.abs().max() <= 1.0
    assert (w.abs() == 1.0).any()  # the clip was active
    assert model[1].weight.abs().max() > 1.0  # untouched by clipping
    assert not torch.equal(model[1].weight.detach(), w1_before)
    # explicit form
    with torch.no_grad():
        conv.weight.mul_(3)
    assert bn.clip_latent_weights(model) == 1
    assert conv.weight.abs().max() <= 1.0


def test_get_quantizer():
    assert isinstance(bn.get_quantizer("approx_sign"), bn.ApproxSign)
    q = bn.SignSTE()
    assert bn.get_quantizer(q) is q and bn.get_quantizer(None) is None
    with pytest.raises(BinsharpError, match="unknown quantizer"):
        bn.get_quantizer("nope")


# ---------------------------------------------------------------------------------- per-channel units
def _randn(*shape, seed=0):
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def test_learnable_bias_redistribution_rprelu_formulas():
    x = _randn(2, 3, 4, 5)
    lb = bn.LearnableBias(3).double()
    rd = bn.ReDistribution(3).double()
    rp = bn.RPReLU(3).double()
    assert torch.equal(lb(x), x) and torch.equal(rd(x), x)
    assert torch.equal(rp(x), torch.where(x >= 0, x, 0.25 * x))
    b = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64).view(1, 3, 1, 1)
    k = torch.tensor([0.5, 2.0, -1.0], dtype=torch.float64).view(1, 3, 1, 1)
    a = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    with torch.no_grad():
        lb.bias.copy_(b)
        rd.scale.copy_(k)
        rd.bias.copy_(b)
        rp.gamma.copy_(b)
        rp.slope.copy_(a)
        rp.zeta.copy_(-k)
    torch.testing.assert_close(lb(x), x + b)
    torch.testing.assert_close(rd(x), k * x + b)
    s = x - b
    torch.testing.assert_close(rp(x), torch.where(s >= 0, s, a.view(1, 3, 1, 1) * s) - k)


def test_rsign_threshold_and_gradients():
    rs = bn.RSign(2).double()
    with torch.no_grad():
        rs.bias.copy_(torch.tensor([0.5, -0.5], dtype=torch.float64).view(1, 2, 1, 1))
    x = torch.tensor([[-0.5, 0.0, 0.4], [0.5, 0.0, 0.6]], dtype=torch.float64).view(1, 2, 1, 3)
    x.requires_grad_(True)
    y = rs(x)
    assert y.flatten().tolist() == [1, 1, 1, 1, -1, 1]  # sign(x + b), +1 at exactly 0
    y.sum().backward()
    z = (x + rs.bias).detach()
    dz = (2 - 2 * z.abs()).clamp(min=0)  # ApproxSign default
    torch.testing.assert_close(x.grad, dz)
    torch.testing.assert_close(rs.bias.grad, dz.sum(dim=(0, 2, 3), keepdim=True))


# ---------------------------------------------------------------------------------------- binary layers
@pytest.mark.parametrize(
    "kw",
    [
        dict(kernel_size=3, padding=1),
        dict(kernel_size=3, stride=2, padding=1, bias=True),
        dict(kernel_size=3, padding=2, dilation=2, groups=2),
        dict(kernel_size=(1, 3), padding=(0, 1), groups=4, bias=True),
    ],
)
def test_binary_conv_float_mode_equals_conv2d(kw):
    torch.manual_seed(1)
    kw = {"bias": False, **kw}
    ref = torch.nn.Conv2d(4, 8, **kw).double()
    bc = bn.BinaryConv2d(4, 8, **kw).double()
    bc.load_state_dict(ref.state_dict())
    assert not bc.is_binary
    x = _randn(2, 4, 9, 7)
    torch.testing.assert_close(bc(x), ref(x), rtol=0, atol=0)


def test_binary_conv_binary_mode_matches_reference_with_zero_padding():
    torch.manual_seed(2)
    bc = bn.BinaryConv2d(
        3, 5, 3, padding=1, input_quantizer="ste_sign", kernel_quantizer="scaled_sign"
    ).double()
    assert bc.is_binary
    x = _randn(2, 3, 6, 6)
    x[0, 0, 0, :3] = 0.0
    w = bc.weight.detach()
    alpha = w.abs().mean(dim=(1, 2, 3), keepdim=True)
    ref = F.conv2d(bn.sign(x), alpha * bn.sign(w), padding=1)
    torch.testing.assert_close(bc(x), ref, rtol=0, atol=1e-12)
    # border pixels see zero (not -1 / +1) contributions from the padding
    ref_pad_minus = F.conv2d(F.pad(bn.sign(x), (1, 1, 1, 1), value=-1.0), alpha * bn.sign(w))
    assert not torch.allclose(bc(x), ref_pad_minus)
    # "one padding"
    bc1 = bn.BinaryConv2d(
        3, 5, 3, padding=1, input_quantizer="ste_sign", kernel_quantizer="scaled_sign", padding_value=1.0
    ).double()
    bc1.load_state_dict(bc.state_dict())
    ref1 = F.conv2d(F.pad(bn.sign(x), (1, 1, 1, 1), value=1.0), alpha * bn.sign(w))
    torch.testing.assert_close(bc1(x), ref1, rtol=0, atol=1e-12)


def test_binary_conv_is_binary_flags_and_gradients():
    assert not bn.BinaryConv2d(2, 2, 3).is_binary
    assert not bn.BinaryConv2d(2, 2, 3, kernel_quantizer="scaled_sign").is_binary  # BiConnect
    assert not bn.BinaryConv2d(2, 2, 3, input_quantizer="approx_sign").is_binary
    bc = bn.BinaryConv2d(
        2, 3, 3, padding=1, input_quantizer=bn.ApproxSign(), kernel_quantizer=bn.ScaledSignWeight()
    )
    assert bc.is_binary
    x = _randn(1, 2, 5, 5).float().requires_grad_(True)
    bc(x).sum().backward()
    assert x.grad is not None and bc.weight.grad is not None
    assert x.grad.abs().sum() > 0 and bc.weight.grad.abs().sum() > 0


def test_binary_linear():
    torch.manual_seed(3)
    ref = torch.nn.Linear(6, 4, bias=True).double()
    bl = bn.BinaryLinear(6, 4, bias=True).double()
    bl.load_state_dict(ref.state_dict())
    x = _randn(3, 6)
    torch.testing.assert_close(bl(x), ref(x))
    bb = bn.BinaryLinear(6, 4, input_quantizer="ste_sign", kernel_quantizer="scaled_sign").double()
    assert bb.is_binary
    w = bb.weight.detach()
    ref_b = bn.sign(x) @ (w.abs().mean(1, keepdim=True) * bn.sign(w)).T
    torch.testing.assert_close(bb(x), ref_b)


# ----------------------------------------------------------------------------------------------- Haar
def test_haar_perfect_reconstruction_float64():
    x = _randn(2, 3, 16, 10)
    y = bn.haar_dwt(x)
    assert y.shape == (2, 12, 8, 5)
    torch.testing.assert_close(bn.haar_idwt(y), x, rtol=0, atol=1e-12)
    # orthonormal: energy preserved
    assert float(y.pow(2).sum()) == pytest.approx(float(x.pow(2).sum()), rel=1e-12)
    m, mi = bn.HaarDWT(), bn.HaarIDWT()
    torch.testing.assert_close(mi(m(x)), x, rtol=0, atol=1e-12)
    assert list(m.parameters()) == [] and m.state_dict() == {}


def test_haar_band_values_and_order():
    a, b, c, d = 1.0, 2.0, 4.0, 8.0
    x = torch.tensor([[[[a, b], [c, d]], [[-a, -b], [-c, -d]]]], dtype=torch.float64)  # (1, 2, 2, 2)
    y = bn.haar_dwt(x).flatten().tolist()
    band = [(a + b + c + d) / 2, (a + b - c - d) / 2, (a - b + c - d) / 2, (a - b - c + d) / 2]
    assert y == band + [-v for v in band]  # [LL, LH, HL, HH] of channel 0, then channel 1
    ll, lh, hl, hh = bn.split_bands(bn.haar_dwt(x))
    assert ll.flatten().tolist() == [band[0], -band[0]] and hh.flatten().tolist() == [band[3], -band[3]]
    torch.testing.assert_close(bn.merge_bands(ll, lh, hl, hh), bn.haar_dwt(x))


def test_haar_errors():
    with pytest.raises(BinsharpError, match="even"):
        bn.haar_dwt(torch.zeros(1, 1, 5, 4))
    with pytest.raises(BinsharpError, match="even"):
        bn.HaarDWT()(torch.zeros(1, 1, 4, 7))
    with pytest.raises(BinsharpError, match="divisible by 4"):
        bn.haar_idwt(torch.zeros(1, 6, 4, 4))
    with pytest.raises(BinsharpError, match=r"\(B, C, H, W\)"):
        bn.haar_dwt(torch.zeros(4, 4))


def test_haar_gradient_flows():
    x = _randn(1, 2, 4, 4).requires_grad_(True)
    bn.HaarIDWT()(bn.HaarDWT()(x)).sum().backward()
    torch.testing.assert_close(x.grad, torch.ones_like(x))


def test_irnet_weight_single_element_channels():
    w = torch.tensor([[[[0.3]]], [[[-0.2]]]]).requires_grad_(True)  # (2, 1, 1, 1): std undefined
    y = bn.IRNetWeight()(w)
    assert torch.isfinite(y).all() and torch.equal(y.abs() > 0, torch.ones_like(y, dtype=torch.bool))
    y.sum().backward()
    assert torch.isfinite(w.grad).all()


@pytest.mark.skipif(not native.have_kernels(), reason="compiled kernels not built")
def test_rprelu_compiled_cpu_path_matches_torch(monkeypatch):
    """float32 on the CPU runs the compiled one-pass forward and backward: the forward and the input gradient
    bitwise PyTorch's, the parameter gradients to float32 summation order; a NaN stays NaN."""
    monkeypatch.setattr(bnf, "COMPILED_MIN_NUMEL", 0)  # small test tensors take the compiled path too
    calls = []
    for name in ("rprelu", "rprelu_backward"):
        fn = getattr(native, name)
        monkeypatch.setattr(native, name, lambda *a, _fn=fn, _n=name, **k: calls.append(_n) or _fn(*a, **k))
    torch.manual_seed(0)
    c = 5
    gamma = (torch.randn(1, c, 1, 1) * 0.1).requires_grad_(True)
    slope = torch.rand(c).requires_grad_(True)
    zeta = (torch.randn(1, c, 1, 1) * 0.1).requires_grad_(True)
    x = torch.randn(3, c, 7, 9)  # 63 pixels per plane: vector blocks and a tail
    x[0, 0, 0, 0] = gamma[0, 0, 0, 0].item()  # exactly at the shift: the slope branch, like torch's PReLU
    g = torch.randn(3, c, 7, 9)
    xa = x.clone().requires_grad_(True)
    out = bn.rprelu(xa, gamma, slope, zeta)
    out.backward(g)
    assert calls == ["rprelu", "rprelu_backward"]
    params = [p.detach().clone().requires_grad_(True) for p in (gamma, slope, zeta)]
    xb = x.clone().requires_grad_(True)
    ref = F.prelu(xb - params[0], params[1]) + params[2]
    ref.backward(g)
    assert torch.equal(out.detach(), ref.detach())
    assert torch.equal(xa.grad, xb.grad)
    for p, q in zip((gamma, slope, zeta), params, strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-5)
    x[1, 2, 3, 4] = float("nan")
    assert torch.isnan(bn.rprelu(x, gamma, slope, zeta)[1, 2, 3, 4])


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("compiled", [False, True])
def test_channel_affine_gradients_match_addcmul(per_sample, compiled, monkeypatch):
    """``channel_affine`` (the SRMs' ``x * k + b``): the output of ``torch.addcmul`` and its gradients, on the
    compiled one-pass backward (float32 CPU) and on the PyTorch form."""
    if compiled and not native.have_kernels():
        pytest.skip("compiled kernels not built")
    monkeypatch.setattr(bnf, "COMPILED_MIN_NUMEL", 0 if compiled else 1 << 60)
    calls = []
    fn = native.affine_backward
    monkeypatch.setattr(native, "affine_backward", lambda *a, **k: calls.append(1) or fn(*a, **k))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 5, 7, generator=gen)
    g = torch.randn(3, 4, 5, 7, generator=gen)
    rows = 3 if per_sample else 1
    k = (1 + 0.3 * torch.randn(rows, 4, 1, 1, generator=gen)).requires_grad_(True)
    b = (0.2 * torch.randn(rows, 4, 1, 1, generator=gen)).requires_grad_(True)
    xa = x.clone().requires_grad_(True)
    out = bn.channel_affine(xa, k, b)
    out.backward(g)
    assert calls == ([1] if compiled else [])
    kr, br, xb = (t.detach().clone().requires_grad_(True) for t in (k, b, x))
    ref = torch.addcmul(br, xb, kr)
    ref.backward(g)
    assert torch.equal(out.detach(), ref.detach())
    assert torch.equal(xa.grad, xb.grad)
    torch.testing.assert_close(k.grad, kr.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b.grad, br.grad, rtol=1e-5, atol=1e-5)


def test_rprelu_gradients_match_autograd_reference():
    rp = bn.RPReLU(3).double()
    with torch.no_grad():
        rp.gamma.copy_(torch.tensor([0.1, -0.2, 0.0], dtype=torch.float64).view(1, 3, 1, 1))
        rp.slope.copy_(torch.tensor([0.25, -0.5, 1.5], dtype=torch.float64))
        rp.zeta.copy_(torch.tensor([0.3, 0.0, -0.1], dtype=torch.float64).view(1, 3, 1, 1))
    x = _randn(2, 3, 5, 4)
    x[0, 0, 0, 0] = 0.1  # exactly at the shift: s = 0 takes the slope branch, like torch's PReLU
    g = _randn(2, 3, 5, 4, seed=1)
    xa = x.clone().requires_grad_(True)
    rp(xa).backward(g)
    params = [p.detach().clone().requires_grad_(True) for p in (rp.gamma, rp.slope, rp.zeta)]
    xb = x.clone().requires_grad_(True)
    ref = F.prelu(xb - params[0], params[1]) + params[2]
    ref.backward(g)
    torch.testing.assert_close(rp(x), ref.detach())
    torch.testing.assert_close(xa.grad, xb.grad)
    for p, q in zip((rp.gamma, rp.slope, rp.zeta), params, strict=True):
        torch.testing.assert_close(p.grad, q.grad)
    x_smooth = _randn(2, 3, 5, 4, seed=2).requires_grad_(True)  # away from the kink
    assert torch.autograd.gradcheck(bn.rprelu, (x_smooth, *params))
