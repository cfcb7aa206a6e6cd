"""Exactness of the bit-packed kernels against the float emulation, on every dispatch path of this CPU."""

from __future__ import annotations

import ctypes
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from binsharp import native
from binsharp.deploy import kernels as K
from binsharp.errors import BinsharpError
from binsharp.nn import functional as BF

pytestmark = pytest.mark.skipif(not K.have_kernels(), reason="compiled kernels not built")

PATHS = K.available_paths() if K.have_kernels() else []

# (Ci, Co, k, stride, padding, groups, H, W): borders, odd channel counts, strides, groups, depthwise
CASES = [
    (64, 64, 3, 1, 1, 1, 9, 13),
    (70, 33, 3, 2, 1, 1, 10, 11),
    (130, 64, 1, 1, 0, 1, 5, 7),
    (129, 40, 1, 2, 0, 1, 6, 9),
    (8, 16, 3, 1, 1, 2, 7, 70),
    (96, 96, 3, 1, 1, 96, 9, 75),
    (100, 100, 3, 2, 1, 100, 12, 13),
    (64, 64, 3, 2, 1, 1, 17, 71),
    (3, 5, 3, 1, 0, 1, 6, 6),
    (64, 32, 5, 1, 2, 1, 8, 9),
    (200, 200, 3, 1, 1, 4, 4, 4),
    (1, 7, 3, 1, 1, 1, 1, 1),
    (32, 32, 3, 1, 1, 1, 5, 83),  # at most 32 channels per group: dword-lane kernels, partial tiles
    (32, 24, 3, 2, 1, 1, 9, 77),
    (128, 128, 3, 1, 1, 32, 6, 40),
    (20, 40, 1, 1, 0, 1, 3, 100),
    (2000, 3, 1, 1, 0, 1, 2, 9),  # 1x1 over 32 words: the byte counters are widened on the way
    (20, 10, 5, 1, 2, 5, 7, 70),  # groups of 4 input channels: packed densely, 16 groups per word
    (16, 16, 3, 2, 1, 4, 9, 13),
    (256, 256, 3, 1, 1, 64, 5, 66),
    (32, 16, 7, 1, 3, 1, 9, 40),  # more than 31 taps: the dword-lane kernels widen their byte counters
    (256, 8, 3, 1, 1, 1, 6, 20),  # 9 taps x 4 words: the wide kernels widen theirs
]


def _sign(t: torch.Tensor) -> torch.Tensor:
    return BF.sign(t)


def _emulate(x: np.ndarray, w: np.ndarray, stride: int, padding: int, groups: int) -> np.ndarray:
    xt, wt = _sign(torch.from_numpy(x)), _sign(torch.from_numpy(w))
    return F.conv2d(xt.double(), wt.double(), stride=stride, padding=padding, groups=groups).numpy()


def _inputs(ci, co, k, g, h, w, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, ci, h, w)).astype(np.float32)
    x[0, 0, 0, : min(3, w)] = 0.0  # +1 at zero
    x[1, -1, -1, -1] = -0.0
    wt = rng.standard_normal((co, ci // g, k, k)).astype(np.float32)
    return x, wt


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)))
def test_integer_accumulator_equals_float_emulation(case, path):
    ci, co, k, s, p, g, h, w = case
    x, wt = _inputs(ci, co, k, g, h, w, seed=hash(case) % 2**32)
    ref = _emulate(x, wt, s, p, g)
    depthwise = g > 1 and g == ci == co
    # the fastest packing and the one with each group in words of its own (accepted by every grouped layer)
    for pg in {K.packing_groups(ci, co, k, g), 1 if depthwise else g}:
        pk = K.pack_activations(x, groups=pg, halo=max(p, 1), path=path)
        r = K.binary_conv2d(
            pk,
            K.pack_weights(wt, g),
            out_channels=co,
            kernel_size=k,
            stride=s,
            padding=p,
            groups=g,
            int_out=True,
            float_out=False,
            path=path,
        )
        assert r["y"].shape == ref.shape
        np.testing.assert_array_equal(r["y"], ref.astype(np.int32))


@pytest.mark.parametrize("path", PATHS)
def test_pack_roundtrip_and_threshold(path):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 70, 5, 9)).astype(np.float32)
    scale = rng.uniform(0.5, 2, 70).astype(np.float32)
    bias = rng.standard_normal(70).astype(np.float32)
    wide = rng.standard_normal((1, 70, 2, 600)).astype(np.float32)  # tiles of 64 in blocks of 512 pixels
    pw = K.pack_activations(wide, scale=scale, bias=bias, halo=1, path=path)
    np.testing.assert_array_equal(
        pw.signs(), np.where((wide * scale[:, None, None] + bias[:, None, None]) < 0, -1, 1)
    )
    x[0, 3, 2, 2] = -bias[3] / scale[3]
    pk = K.pack_activations(x, scale=scale, bias=bias, halo=2, path=path)
    expect = np.where((x * scale[:, None, None] + bias[:, None, None]) < 0, -1, 1)
    np.testing.assert_array_equal(pk.signs(), expect)
    assert not pk.data[:, :, :2].any() and not pk.data[:, :, :, -2:].any()  # halo stays zero
    nhwc = K.pack_activations(
        np.ascontiguousarray(x.transpose(0, 2, 3, 1)),
        scale=scale,
        bias=bias,
        halo=2,
        layout="NHWC",
        path=path,
    )
    np.testing.assert_array_equal(nhwc.data, pk.data)
    nan = x.copy()
    nan[0, 0, 0, 0] = np.nan
    assert K.pack_activations(nan, path=path).signs()[0, 0, 0, 0] == 1  # NaN < 0 is false, as nn.sign


@pytest.mark.parametrize("path", PATHS)
def test_pack_per_sample_threshold(path, monkeypatch):
    """Scale and bias of shape (N, C, 1, 1) threshold each sample with its own row, in one call (S2BNet's
    dynamic thresholds): the same bits as packing the samples one by one, and as the numpy reference."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 40, 6, 70)).astype(np.float32)
    scale = rng.uniform(0.5, 2, (3, 40, 1, 1)).astype(np.float32)
    bias = rng.standard_normal((3, 40, 1, 1)).astype(np.float32)
    pk = K.pack_activations(x, scale=scale, bias=bias, groups=4, halo=1, path=path, threads=2)
    for i in range(3):
        one = K.pack_activations(x[i : i + 1], scale=scale[i], bias=bias[i], groups=4, halo=1, path=path)
        np.testing.assert_array_equal(pk.data[i : i + 1], one.data)
    swapped = K.pack_activations(x, scale=scale[::-1], bias=bias[::-1], groups=4, halo=1, path=path)
    assert (swapped.data != pk.data).any()
    shared = K.pack_activations(x, scale=scale[:1], bias=bias[:1], groups=4, halo=1, path=path)
    np.testing.assert_array_equal(
        shared.data[1:2],
        K.pack_activations(x[1:2], scale=scale[0], bias=bias[0], groups=4, halo=1, path=path).data,
    )
    monkeypatch.setattr(K, "_lib", lambda: None)
    monkeypatch.setattr(K, "_warned_reference", True)
    np.testing.assert_array_equal(
        K.pack_activations(x, scale=scale, bias=bias, groups=4, halo=1).data, pk.data
    )


@pytest.mark.parametrize("path", PATHS)
def test_epilogue_special_values_bitwise(path):
    """NaN, infinities and zeros of either sign through the residual add and RPReLU, on interior tiles
    (read straight off the accumulators) and border tiles alike: bitwise the scalar form
    ``(max(t, 0) + slope * min(t, 0)) + zeta`` with ``t = v - gamma`` and 0 for NaN in both halves."""
    rng = np.random.default_rng(5)
    ci, co, h, w = 32, 16, 3, 200
    x = rng.standard_normal((1, ci, h, w)).astype(np.float32)
    wt = rng.standard_normal((co, ci, 3, 3)).astype(np.float32)
    alpha = np.full(co, 0.5, np.float32)
    gamma = np.zeros(co, np.float32)
    slope = rng.uniform(-0.5, 0.5, co).astype(np.float32)
    zeta = np.where(np.arange(co) % 2 == 0, 0.0, 0.25).astype(np.float32)
    res = rng.standard_normal((1, co, h, w)).astype(np.float32)
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], np.float32)
    res.reshape(-1)[::7] = np.resize(special, res.size)[: len(res.reshape(-1)[::7])]
    pk = K.pack_activations(x, halo=1, path=path)
    kw = {"out_channels": co, "kernel_size": 3, "padding": 1, "alpha": alpha, "residual": res, "path": path}
    kw |= {"act": (gamma, slope, zeta), "act_first": False}
    y = K.binary_conv2d(pk, K.pack_weights(wt), float_out=False, int_out=True, **kw)["y"]
    out = K.binary_conv2d(pk, K.pack_weights(wt), **kw)["out"]
    c = lambda a: a.reshape(1, -1, 1, 1)  # noqa: E731
    with np.errstate(invalid="ignore", over="ignore"):
        t = (y.astype(np.float32) * c(alpha) + res) - c(gamma)
        zero = np.float32(0)
        want = (np.where(t > 0, t, zero) + c(slope) * np.where(t < 0, t, zero)) + c(zeta)
    assert np.isnan(want).sum() == 0 and np.isnan(out).sum() == 0
    np.testing.assert_array_equal(out.view(np.uint32), want.astype(np.float32).view(np.uint32))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("act_first", [True, False])
def test_fused_epilogue_and_packed_output(path, act_first):
    rng = np.random.default_rng(2)
    ci, co, h, w = 40, 72, 11, 19
    x = rng.standard_normal((2, ci, h, w)).astype(np.float32)
    wt = rng.standard_normal((co, ci, 3, 3)).astype(np.float32)
    alpha = np.abs(wt).mean(axis=(1, 2, 3)).astype(np.float32)
    gamma, zeta = (rng.standard_normal(co).astype(np.float32) * 0.1 for _ in range(2))
    slope = rng.uniform(0.05, 0.3, co).astype(np.float32)
    res = rng.standard_normal((2, co, h, w)).astype(np.float32)
    nb = rng.standard_normal(co).astype(np.float32) * 0.5
    pk = K.pack_activations(x, halo=1, path=path)
    r = K.binary_conv2d(
        pk,
        K.pack_weights(wt),
        out_channels=co,
        kernel_size=3,
        padding=1,
        alpha=alpha,
        act=(gamma, slope, zeta),
        act_first=act_first,
        residual=res,
        pack_out={"halo": 1, "bias": nb},
        int_out=True,
        path=path,
    )
    c = lambda a: torch.from_numpy(a).view(1, -1, 1, 1)  # noqa: E731
    v = torch.from_numpy(r["y"].astype(np.float32)) * c(alpha)

    def act(t):
        return F.prelu(t - c(gamma), torch.from_numpy(slope)) + c(zeta)

    v = act(v) + torch.from_numpy(res) if act_first else act(v + torch.from_numpy(res))
    np.testing.assert_allclose(r["out"], v.numpy(), rtol=1e-6, atol=1e-6)
    expect_bits = np.where(r["out"] + nb[:, None, None] < 0, -1, 1)
    np.testing.assert_array_equal(r["packed"].signs(), expect_bits)


@pytest.mark.parametrize("path", PATHS)
def test_second_activation_addend_scaling_and_channel_sums(path):
    """``act2`` is a second RPReLU after the residual add (a fused rprelu op), then ``residual2`` is added
    and the sum scaled by ``mul`` (a fused add and mul_scalar, in that order); ``sums`` are the per-channel
    sums of the float output in double, equal to the numpy reference's order bitwise on any thread count and
    to a float64 sum of the output to rounding; they also come without a float output."""
    rng = np.random.default_rng(4)
    ci, co, h, w = 36, 24, 9, 150  # three tiles per row, the last one partial
    x = rng.standard_normal((2, ci, h, w)).astype(np.float32)
    wt = rng.standard_normal((co, ci, 3, 3)).astype(np.float32)
    alpha = np.abs(wt).mean(axis=(1, 2, 3)).astype(np.float32)
    gamma, zeta, gamma2, zeta2 = (rng.standard_normal(co).astype(np.float32) * 0.1 for _ in range(4))
    slope, slope2 = (rng.uniform(0.05, 0.3, co).astype(np.float32) for _ in range(2))
    res, res2 = rng.standard_normal((2, 2, co, h, w)).astype(np.float32)
    pk = K.pack_activations(x, halo=1, path=path)
    kw = {"out_channels": co, "kernel_size": 3, "padding": 1, "alpha": alpha, "path": path}
    kw.update(act=(gamma, slope, zeta), residual=res, act2=(gamma2, slope2, zeta2), residual2=res2, mul=0.5)
    r = K.binary_conv2d(pk, K.pack_weights(wt), int_out=True, sums=True, threads=1, **kw)
    c = lambda a: torch.from_numpy(a).view(1, -1, 1, 1)  # noqa: E731
    v = torch.from_numpy(r["y"].astype(np.float32)) * c(alpha)
    v = F.prelu(v - c(gamma), torch.from_numpy(slope)) + c(zeta) + torch.from_numpy(res)
    v = F.prelu(v - c(gamma2), torch.from_numpy(slope2)) + c(zeta2)
    v = (torch.from_numpy(res2) + v) * 0.5
    np.testing.assert_allclose(r["out"], v.numpy(), rtol=1e-6, atol=1e-6)
    assert r["sums"].shape == (2, co) and r["sums"].dtype == np.float64
    np.testing.assert_array_equal(r["sums"], K._sums_reference(r["out"]))
    np.testing.assert_allclose(r["sums"], r["out"].sum(axis=(2, 3), dtype=np.float64), rtol=1e-12, atol=1e-9)
    only = K.binary_conv2d(pk, K.pack_weights(wt), float_out=False, sums=True, threads=2, **kw)
    assert "out" not in only
    np.testing.assert_array_equal(only["sums"], r["sums"])


@pytest.mark.parametrize(
    "case",
    [
        (256, 256, 3, 1, 1, 64, 5, 2100),  # one output row per band (2 MiB of input rows), 4-channel groups
        (64, 64, 3, 1, 1, 1, 10, 2100),  # three rows per band, a partial last band
        (64, 32, 3, 2, 1, 1, 9, 2200),  # stride 2
        (48, 48, 1, 1, 0, 1, 7, 3000),
        (40, 40, 3, 1, 1, 40, 12, 6000),  # depthwise
        (20, 10, 5, 1, 2, 5, 9, 70),  # padding 2, one band
    ],
    ids=lambda c: "x".join(map(str, c)),
)
def test_float_input_packed_band_by_band(case, monkeypatch):
    """A float input with a per-sample threshold, packed by the kernels a band of rows at a time, gives the
    integer accumulators, outputs and sums of the input packed beforehand, on 1 and 2 threads, on the best
    path (every path for one case with a band per output row) and in the numpy reference."""
    ci, co, k, s, p, g, h, w = case
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, ci, h, w)).astype(np.float32)
    scale = rng.uniform(0.5, 2, (2, ci, 1, 1)).astype(np.float32)
    bias = rng.standard_normal((2, ci, 1, 1)).astype(np.float32) * 0.3
    wb = K.pack_weights(rng.standard_normal((co, ci // g, k, k)).astype(np.float32), g)
    kw = {"out_channels": co, "kernel_size": k, "stride": s, "padding": p, "groups": g}
    kw.update(alpha=rng.random(co).astype(np.float32), int_out=True, sums=True)
    pk = K.pack_activations(x, scale=scale, bias=bias, groups=K.packing_groups(ci, co, k, g), halo=max(1, p))
    ref = K.binary_conv2d(pk, wb, threads=1, **kw)
    for path in PATHS if g == 64 else PATHS[-1:]:
        for threads in (1, 2):
            got = K.binary_conv2d(x, wb, in_scale=scale, in_bias=bias, threads=threads, path=path, **kw)
            for key in ("y", "out", "sums"):
                np.testing.assert_array_equal(got[key], ref[key])
    wrong = K.binary_conv2d(x, wb, in_scale=scale[::-1], in_bias=bias[::-1], threads=1, **kw)
    assert (wrong["y"] != ref["y"]).any()
    monkeypatch.setattr(K, "_lib", lambda: None)
    monkeypatch.setattr(K, "_warned_reference", True)
    got = K.binary_conv2d(x[:, :, :, :80], wb, in_scale=scale, in_bias=bias, **kw)
    pk = K.pack_activations(x[:, :, :, :80], scale=scale, bias=bias, groups=pk.groups, halo=pk.halo)
    np.testing.assert_array_equal(got["y"], K.binary_conv2d(pk, wb, **kw)["y"])


def test_paths_agree_bitwise_on_float_output():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 64, 16, 40)).astype(np.float32)
    wt = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
    alpha = np.abs(wt).mean(axis=(1, 2, 3))
    outs = []
    for path in PATHS:
        pk = K.pack_activations(x, halo=1, path=path)
        outs.append(
            K.binary_conv2d(
                pk,
                K.pack_weights(wt),
                out_channels=64,
                kernel_size=3,
                stride=2,
                padding=1,
                alpha=alpha,
                act=(alpha, alpha, alpha),
                path=path,
                threads=2,
            )["out"]
        )
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])


def test_cpu_features_and_path_override(monkeypatch):
    feats = K.cpu_features()
    assert feats["compiled"] and feats["path"] in feats["paths"]
    assert "generic" in feats["paths"]
    monkeypatch.setenv(K.ENV_PATH, "generic")
    assert K.resolve_path() == "generic"
    assert K.cpu_features()["path"] == "generic"
    monkeypatch.setenv(K.ENV_PATH, "nonsense")
    with pytest.raises(BinsharpError, match="unknown kernel path"):
        K.resolve_path()


def test_bad_arguments_raise():
    x = np.zeros((1, 8, 4, 4), np.float32)
    pk = K.pack_activations(x, halo=0)
    with pytest.raises(BinsharpError, match="halo"):
        K.binary_conv2d(pk, K.pack_weights(np.ones((8, 8, 3, 3))), out_channels=8, kernel_size=3, padding=1)
    with pytest.raises(BinsharpError, match="packed weights"):
        K.binary_conv2d(pk, np.zeros((8, 3, 3, 2), np.uint64), out_channels=8, kernel_size=3)
    with pytest.raises(BinsharpError, match="4-D"):
        K.pack_activations(np.zeros((8, 4, 4), np.float32))


# (N, Ci, H, W, Co, k, padding): the last one in the kernel's own layout (Co % 4 == 0, 32 | Wo)
# (N, Ci, H, W, Co, k, padding): odd sizes, Co not a multiple of 4 or of 8, the kernel's own layout (the last)
FLOAT_CONVS = [
    (1, 9, 37, 45, 32, 3, 1),
    (2, 32, 8, 70, 8, 3, 1),
    (1, 5, 6, 6, 3, 1, 0),
    (1, 6, 7, 40, 12, 3, 1),
    (1, 4, 5, 64, 8, 3, 1),
]


@pytest.mark.parametrize("shape", FLOAT_CONVS)
def test_float_conv_matches_torch(shape):
    """The compiled float convolution (every path bitwise the same) and the engine's numpy one (one GEMM for
    1 x 1) equal PyTorch's."""
    from binsharp.deploy.runtime import conv2d

    n, ci, h, w, co, k, p = shape
    rng = np.random.default_rng(4)
    x = rng.standard_normal((n, ci, h, w)).astype(np.float32)
    wt = rng.standard_normal((co, ci, k, k)).astype(np.float32)
    b = rng.standard_normal(co).astype(np.float32)
    ref = F.conv2d(torch.from_numpy(x), torch.from_numpy(wt), torch.from_numpy(b), padding=p).numpy()
    out = K.float_conv2d(x, wt, b, padding=p, threads=2)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(conv2d(x, wt, b, 1, p, 1), ref, rtol=1e-5, atol=1e-4)
    buf = np.empty_like(ref)  # a given output buffer, whether the kernel's padded layout fits it or not
    assert K.float_conv2d(x, wt, b, padding=p, out=buf) is buf
    np.testing.assert_array_equal(buf, out)
    for path in PATHS:  # every path, whatever its blocks of output channels: the same results
        np.testing.assert_array_equal(K.float_conv2d(x, wt, b, padding=p, path=path), out)


def test_elementwise_kernels_match_torch():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 5, 7, 9)).astype(np.float32)
    g, z = rng.standard_normal(5).astype(np.float32), rng.standard_normal(5).astype(np.float32)
    s = rng.uniform(0.05, 0.5, 5).astype(np.float32)
    ref = F.prelu(torch.from_numpy(x) - torch.from_numpy(g).view(1, -1, 1, 1), torch.from_numpy(s))
    ref = (ref + torch.from_numpy(z).view(1, -1, 1, 1)).numpy()
    np.testing.assert_array_equal(K.rprelu(x, g, s, z), ref)
    var, mu = torch.var_mean(torch.from_numpy(x), dim=(2, 3), correction=0, keepdim=True)
    m, sd = K.plane_stats(x, 1e-5)
    np.testing.assert_allclose(m, mu.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sd, torch.sqrt(var + 1e-5).numpy(), rtol=1e-5)
    np.testing.assert_allclose(K.plane_mean(x), mu.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(K.plane_mean(x), m)
    xi = x.copy()
    out = K.rprelu(xi, g, s, z, inplace=True)
    assert out is xi
    np.testing.assert_array_equal(xi, ref)


@pytest.mark.parametrize("shape", [(2, 5, 3, 7), (1, 33, 17, 19)])
def test_layernorm_kernel_equals_numpy_and_torch(shape):
    from binsharp.deploy.runtime import layernorm_c

    rng = np.random.default_rng(6)
    x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    w, b = rng.standard_normal(shape[1]).astype(np.float32), rng.standard_normal(shape[1]).astype(np.float32)
    out = K.layernorm_c(x, w, b, 1e-5, threads=2)
    np.testing.assert_array_equal(out, layernorm_c(x, w, b, 1e-5))
    ref = F.layer_norm(
        torch.from_numpy(x).permute(0, 2, 3, 1), (shape[1],), torch.from_numpy(w), torch.from_numpy(b)
    )
    np.testing.assert_allclose(out, ref.permute(0, 3, 1, 2).numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 3, 10, 14), (1, 2, 4, 38)])  # the second: vectors of 8 and a remainder
def test_haar_kernels_equal_numpy_bitwise(shape):
    from binsharp.deploy.runtime import haar_dwt, haar_idwt

    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape).astype(np.float32)
    y = K.haar_dwt(x, threads=2)
    np.testing.assert_array_equal(y, haar_dwt(x))
    bands = K.haar_dwt_bands(x, threads=2)  # one array per band, the same values
    for b in range(4):
        np.testing.assert_array_equal(bands[b], y[:, b::4])
    np.testing.assert_array_equal(K.haar_idwt_bands(bands), K.haar_idwt(y))
    np.testing.assert_array_equal(K.haar_idwt(y, threads=2), haar_idwt(y))
    np.testing.assert_allclose(K.haar_idwt(y), x, rtol=1e-5, atol=1e-6)
    with pytest.raises(BinsharpError):
        K.haar_dwt(x[..., :13])


@pytest.mark.parametrize("shape", [(2, 3, 6, 10), (1, 4, 5, 7), (1, 2, 1, 1), (1, 1, 1, 3)])
def test_upsample_and_avgpool_kernels_equal_numpy_bitwise(shape):
    from binsharp.deploy.runtime import upsample_bilinear2

    rng = np.random.default_rng(8)
    x = (rng.standard_normal(shape) * rng.uniform(1e-3, 1e3, (1, shape[1], 1, 1))).astype(np.float32)
    up = K.upsample2(x, threads=2)
    np.testing.assert_array_equal(up, upsample_bilinear2(x))
    ref = F.interpolate(torch.from_numpy(x), scale_factor=2, mode="bilinear", align_corners=False).numpy()
    np.testing.assert_allclose(up, ref, rtol=1e-5, atol=1e-6 * np.abs(x).max())
    n, c, h, w = shape
    if h >= 2 and w >= 2:
        v = x[:, :, : h // 2 * 2, : w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2)
        np.testing.assert_array_equal(K.avgpool2(x, threads=2), v.sum(axis=(3, 5), dtype=np.float32) / 4)


@pytest.mark.parametrize("act,residual", [(True, True), (False, False)])
def test_restd_kernel_equals_numpy_and_the_nbc_tail(act, residual):
    """The fused re-standardisation (op ``restd``) equals its numpy form (the same float32 steps, statistics
    summed in another order: to rounding), itself in place, and the PyTorch NBC tail
    ``RPReLU(restd(xb, xf)) + xf``; dropping a step (eta, the activation, the residual) does not pass."""
    from binsharp.deploy.runtime import restd
    from binsharp.models.bnnpan import StatisticsRestandardization
    from binsharp.nn import RPReLU

    rng = np.random.default_rng(9)
    xb = (rng.standard_normal((2, 5, 6, 11)) * 7 + 3).astype(np.float32)  # a binary branch: wide range
    xf = (rng.standard_normal((2, 5, 6, 11)) * 0.2 - 0.1).astype(np.float32)
    mod, rp = StatisticsRestandardization(5), RPReLU(5)
    with torch.no_grad():
        for p in (mod.lam, mod.eta, rp.gamma, rp.slope, rp.zeta):
            p.copy_(torch.from_numpy(rng.uniform(0.3, 1.5, p.shape).astype(np.float32)))
        ref = mod(torch.from_numpy(xb), torch.from_numpy(xf))
        ref = (rp(ref) if act else ref) + (torch.from_numpy(xf) if residual else 0)
    lam, eta = mod.lam.detach().numpy().reshape(-1), mod.eta.detach().numpy().reshape(-1)
    terms = tuple(p.detach().numpy().reshape(-1) for p in (rp.gamma, rp.slope, rp.zeta)) if act else None
    out = K.restd(xb, xf, lam, eta, mod.eps, act=terms, residual=residual, threads=2)
    np.testing.assert_allclose(out, restd(xb, xf, lam, eta, mod.eps, terms, residual), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-5, atol=1e-5)
    wrong = K.restd(xb, xf, lam, eta * 0, mod.eps, act=terms, residual=not residual)
    assert np.abs(wrong - ref.numpy()).max() > 1e-2
    inplace = xb.copy()
    assert K.restd(inplace, xf, lam, eta, mod.eps, act=terms, residual=residual, out=inplace) is inplace
    np.testing.assert_array_equal(inplace, out)


@pytest.mark.parametrize("modulated", [True, False])
def test_calibrate_kernels_equal_numpy_and_ldpc_cdc(modulated):
    """Channel calibration of the modulated features (op ``calibrate``): the compiled statistics and output
    pass give the numpy form (to the rounding of the statistics) and PyTorch's ``CDC(LDPC(y, z), y)``
    (per-sample modulation, batch 2); without the modulation terms the statistics differ."""
    from binsharp.deploy.runtime import calibrate, calibration_weights
    from binsharp.models.bnnpan import ChannelCalibration, LatentPriorModulation

    rng = np.random.default_rng(10)
    y = (rng.standard_normal((2, 6, 8, 10)) * 2 + 0.5).astype(np.float32)
    torch.manual_seed(0)
    ldpc, cdc = LatentPriorModulation(4, 6, "offset"), ChannelCalibration(6)
    z = torch.randn(2, 4)
    with torch.no_grad():
        yt = torch.from_numpy(y)
        ref = cdc(ldpc(yt, z) if modulated else yt, yt).numpy()
        zw, zb = ldpc.linear(z).reshape(2, 12, 1, 1).chunk(2, dim=1)
    zw, zb = ((zw + 1).numpy(), zb.numpy()) if modulated else (None, None)
    wt, bias = cdc.linear.weight.detach().numpy(), cdc.linear.bias.detach().numpy()
    mu, sd, am = K.affine_stats(y, zw, zb, cdc.eps, threads=2)
    out = K.calibrate(y, zw, zb, calibration_weights(wt, bias, mu, sd, am), threads=2)
    np.testing.assert_allclose(out, calibrate(y, zw, zb, wt, bias, cdc.eps), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    if modulated:
        assert np.abs(K.affine_stats(y, None, None, cdc.eps)[0] - mu).max() > 1e-3
    with pytest.raises(BinsharpError):
        K.calibrate(y, mu, None, mu)  # scale without bias


@pytest.mark.parametrize("modulated", [True, False])
def test_haar_calibrate_kernels_equal_the_transforms_and_calibrate(modulated):
    """Calibration of features given by their Haar bands (inverse transform on the fly, output as it is or as
    its Haar bands) equals ``haar_idwt``, ``affine_stats``/``calibrate`` and ``haar_dwt`` one after the
    other, bitwise, for separate and interleaved bands."""
    rng = np.random.default_rng(11)
    n, c, h, w = 2, 3, 5, 12  # vectors of 8 band columns and a remainder
    bands = [(rng.standard_normal((n, c, h, w)) * 3 + 1).astype(np.float32) for _ in range(4)]
    inter = np.ascontiguousarray(np.stack(bands, axis=2).reshape(n, 4 * c, h, w))
    zw, zb = (rng.standard_normal((2, n, c, 1, 1)).astype(np.float32)) if modulated else (None, None)
    wt = rng.uniform(0, 1, (n, c, 1, 1)).astype(np.float32)
    y = K.haar_idwt(inter)
    stats = K.affine_stats(y, zw, zb, 1e-5)
    ref = K.calibrate(y, zw, zb, wt)
    for given in (bands, inter):
        for got, want in zip(K.haar_affine_stats(given, zw, zb, 1e-5, threads=2), stats, strict=True):
            np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(K.haar_calibrate(given, zw, zb, wt, threads=2), ref)
        np.testing.assert_array_equal(K.haar_calibrate(given, zw, zb, wt, dwt=True), K.haar_dwt(ref))
    outs = [np.empty_like(bands[0]) for _ in range(4)]
    K.haar_calibrate(bands, zw, zb, wt, dwt=True, out=outs)
    for b in range(4):
        np.testing.assert_array_equal(outs[b], K.haar_dwt(ref)[:, b::4])
    with pytest.raises(BinsharpError, match="divisible by 4"):
        K.haar_affine_stats([np.ascontiguousarray(b[..., :6]) for b in bands], zw, zb, 1e-5)


def test_c_api_table_matches_the_c_source():
    """The ctypes signatures come from ``native.C_API``: the same prototypes as the C source, and the
    epilogue struct has the C struct's fields in order with the same types."""
    src = Path(native.__file__).with_name("_bitkern.c").read_text()
    norm = [" ".join(p.split()) for p in re.findall(r"BS_API\s+([^{;]*?\))\s*\{", src)]
    assert sorted(norm) == sorted(" ".join(p.split()) for p in native.C_API)
    body = re.sub(r"/\*.*?\*/", "", re.search(r"typedef struct \{(.*?)\} bs_epi;", src, re.S).group(1))
    fields = []
    for decl in filter(None, (d.strip() for d in body.split(";"))):
        base, names = re.match(r"(?:const\s+)?(\w+)\s+(.*)", decl).groups()
        scalar = {"float": ctypes.c_float, "int": ctypes.c_int, "double": ctypes.c_double}[base]
        for item in names.split(","):
            fields.append((item.strip(" *"), ctypes.POINTER(scalar) if "*" in item else scalar))
    assert fields == list(native.Epilogue._fields_)
    for proto in native.C_API:
        name, _, argtypes = native.c_signature(proto)
        assert len(argtypes) == (0 if "(void)" in proto else proto.count(",") + 1), name


@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c)))
def test_numpy_reference_equals_compiled_kernels(case, monkeypatch):
    """Without the compiled kernels (``_lib()`` is None) packing, the integer accumulator, the fused
    epilogue and the packed output come from the numpy reference, equal to the kernels; one warning."""
    ci, co, k, s, p, g, h, w = case
    x, wt = _inputs(ci, co, k, g, h, w, seed=5)
    rng = np.random.default_rng(6)
    ho, wo = K.conv_output_size(h, k, s, p), K.conv_output_size(w, k, s, p)
    vec = [rng.standard_normal(co).astype(np.float32) for _ in range(6)]
    res = rng.standard_normal((2, co, ho, wo)).astype(np.float32)

    def run():
        pk = K.pack_activations(x, bias=rng_bias, groups=K.packing_groups(ci, co, k, g), halo=max(1, p))
        return K.binary_conv2d(
            pk,
            K.pack_weights(wt, g),
            out_channels=co,
            kernel_size=k,
            stride=s,
            padding=p,
            groups=g,
            alpha=vec[0],
            bias=vec[1],
            affine=(vec[2], vec[3]),
            act=(vec[4], np.abs(vec[5]), vec[1]),
            act_first=bool(ci % 2),
            residual=res,
            clamp=(-1.5, 2.0) if k == 3 else None,
            act2=(vec[3], np.abs(vec[2]), vec[0]) if k == 3 else None,
            residual2=res[:, ::-1].copy() if k == 3 else None,
            mul=0.5 if k == 3 else None,
            int_out=True,
            pack_out={"halo": 1, "groups": 1, "scale": vec[2], "bias": vec[3]},
            sums=True,
        )

    rng_bias = rng.standard_normal(ci).astype(np.float32) * 0.1
    ref = run()
    monkeypatch.setattr(K, "_lib", lambda: None)
    monkeypatch.setattr(K, "_warned_reference", False)
    with pytest.warns(RuntimeWarning, match="numpy reference") as rec:
        got = run()
        run()
    assert len(rec) == 1
    np.testing.assert_array_equal(got["y"], ref["y"])
    np.testing.assert_array_equal(got["out"], ref["out"])
    np.testing.assert_array_equal(got["packed"].data, ref["packed"].data)
    np.testing.assert_array_equal(got["sums"], ref["sums"])
