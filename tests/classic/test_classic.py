"""Classical methods: interface, bad input and properties on synthetic images (no shared data needed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from binsharp import classic, protocol
from binsharp.classic._common import lp_gauss_gnyq, nonneg_lstsq, starck_murtagh_lowpass
from binsharp.errors import BinsharpError
from binsharp.sensors import custom_sensor, get_sensor

FUSING = tuple(m for m in classic.CLASSICAL_METHODS if m != "exp")


def _smooth_ms(c: int, h: int, seed: int = 0) -> np.ndarray:
    """(c, h, h) periodic, band-limited MS in DN (no content the interpolator cannot represent)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:h] / h
    bands = []
    for b in range(c):
        f = sum(
            rng.uniform(20, 60)
            * np.cos(2 * np.pi * (rng.integers(0, 3) * x + rng.integers(0, 3) * y) + rng.uniform(0, 6))
            for _ in range(3)
        )
        bands.append(400.0 + 60.0 * b + f)
    return np.stack(bands)


def _textured(c: int, h: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Random textured (ms_lr (c, h, h), pan (1, 4h, 4h)) pair in 11-bit DN."""
    rng = np.random.default_rng(seed)
    pan = 600.0 + 300.0 * rng.random((1, 4 * h, 4 * h))
    ms_lr = 300.0 + 500.0 * rng.random((c, h, h))
    return ms_lr, pan


@pytest.mark.parametrize("method", classic.CLASSICAL_METHODS)
@pytest.mark.parametrize(("bands", "sensor"), [(8, "WV3"), (4, "QB"), (4, "GF2")])
def test_shape_dtype_and_finite(method, bands, sensor):
    ms_lr, pan = _textured(bands, 16)
    out = classic.fuse(method, ms_lr.astype(np.float32), pan.astype(np.uint16), sensor=sensor)
    assert out.shape == (bands, 64, 64)
    assert out.dtype == np.float64
    assert np.isfinite(out).all()


def test_methods_table_and_per_method_functions():
    expected = ("exp", "bt-h", "gs", "gsa", "bdsd-pc", "mtf-glp-hpm", "mtf-glp-fs", "awlp")
    assert classic.CLASSICAL_METHODS == expected
    ms_lr, pan = _textured(4, 8)
    for name in classic.CLASSICAL_METHODS:
        func = getattr(classic, name.replace("-", "_"))
        assert func.__doc__ and "(C, H, W)" in func.__doc__
        np.testing.assert_array_equal(
            func(ms_lr, pan, sensor="QB"), classic.fuse(name, ms_lr, pan, sensor="QB")
        )
    assert classic.get_method("MTF_GLP_FS") is classic.mtf_glp_fs


def test_exp_equals_interp23tap():
    ms_lr, pan = _textured(8, 16)
    np.testing.assert_array_equal(
        classic.fuse("exp", ms_lr, pan, sensor="WV3"), protocol.interp23tap(ms_lr, 4)
    )


def test_explicit_ms_up_is_used():
    ms_lr, pan = _textured(4, 16)
    ms_up = protocol.interp23tap(ms_lr, 4) + 5.0
    np.testing.assert_array_equal(classic.fuse("exp", ms_lr, pan, sensor="QB", ms_up=ms_up), ms_up)
    a = classic.fuse("mtf-glp-fs", ms_lr, pan, sensor="QB", ms_up=ms_up)
    b = classic.fuse("mtf-glp-fs", ms_lr, pan, sensor="QB")
    assert np.abs(a - b).max() > 1.0


def test_torch_and_sensor_object_inputs():
    ms_lr, pan = _textured(8, 16)
    ref = classic.fuse("gsa", ms_lr, pan, sensor="WV3")
    out = classic.fuse("gsa", torch.from_numpy(ms_lr), torch.from_numpy(pan), sensor=get_sensor("wv3"))
    np.testing.assert_allclose(out, ref, rtol=1e-12)
    custom = custom_sensor(5, gnyq_ms=0.3)
    assert classic.fuse("mtf-glp-hpm", *_textured(5, 8), sensor=custom).shape == (5, 32, 32)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "pca"}, "unknown classical method"),
        ({"sensor": "QB"}, "band count 8 does not match sensor QB"),
        ({"sensor": "nope"}, "unknown sensor"),
        ({"pan": np.ones((1, 60, 64))}, "not 4 x the MS size"),
        ({"pan": np.ones((2, 64, 64))}, "single band"),
        ({"ratio": 3}, "power of two"),
        ({"ms_up": np.ones((8, 32, 32))}, "ms_up: expected shape"),
        ({"ms_lr": np.ones((1, 8, 16, 16))}, "ms_lr: expected a (C, H, W)"),
        ({"ms_lr": np.full((8, 16, 16), np.nan)}, "NaN"),
        ({"ms_lr": np.full((8, 16, 16), "a")}, "numeric"),
    ],
)
def test_bad_input(kwargs, message):
    ms_lr, pan = _textured(8, 16)
    args = {"method": "gs", "ms_lr": ms_lr, "pan": pan, "sensor": "WV3", **kwargs}
    with pytest.raises(BinsharpError, match=message.replace("(", r"\(").replace(")", r"\)")):
        classic.fuse(args.pop("method"), args.pop("ms_lr"), args.pop("pan"), **args)


@pytest.mark.parametrize(("bands", "sensor"), [(8, "WV3"), (4, "QB")])
def test_pan_equal_to_intensity_leaves_ms_nearly_unchanged(bands, sensor):
    """A PAN with nothing beyond the MS intensity: GS injects exactly nothing, GSA and BT-H almost nothing,
    and the MRA/BDSD methods little (their low-pass filters are not ideal)."""
    ms_lr = _smooth_ms(bands, 32)
    ms_up = protocol.interp23tap(ms_lr, 4)
    pan = ms_up.mean(axis=0, keepdims=True)
    dev = {m: np.abs(classic.fuse(m, ms_lr, pan, sensor=sensor) - ms_up).max() / ms_up.max() for m in FUSING}
    assert dev["gs"] < 1e-12
    assert dev["gsa"] < 1e-2 and dev["bt-h"] < 1e-2, dev
    assert max(dev.values()) < 0.1, dev


@pytest.mark.parametrize("method", FUSING)
def test_invariant_to_pan_gain(method):
    """Every method normalises or regresses the PAN, so scaling it changes nothing."""
    ms_lr, pan = _textured(4, 16)
    a = classic.fuse(method, ms_lr, pan, sensor="QB")
    b = classic.fuse(method, ms_lr, 3.7 * pan, sensor="QB")
    np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("method", ["gs", "gsa", "mtf-glp-hpm", "awlp"])
def test_invariant_to_pan_offset(method):
    """Methods that match the PAN's mean and spread (or remove its mean) ignore a PAN offset."""
    ms_lr, pan = _textured(8, 16)
    a = classic.fuse(method, ms_lr, pan, sensor="WV3")
    b = classic.fuse(method, ms_lr, pan + 250.0, sensor="WV3")
    np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-8)


def test_mtf_glp_fs_gain_follows_ms_pan_covariance():
    """An MS band uncorrelated with the PAN (constant but one pixel) gets (almost) no PAN detail in FS."""
    ms_lr = np.full((4, 16, 16), 500.0)
    ms_lr[:, 0, 0] += 1.0
    _, pan = _textured(4, 16)
    fs = classic.fuse("mtf-glp-fs", ms_lr, pan, sensor="QB")
    assert np.abs(fs - protocol.interp23tap(ms_lr, 4)).max() < 0.5
    # a band that is the PAN's own low-pass gets the full detail back: it reproduces the PAN
    pan_lp = protocol.interp23tap(protocol.decimate(protocol.mtf_filter(pan, [0.3], 4), 4), 4)
    ms_lr2 = protocol.decimate(protocol.mtf_filter(np.repeat(pan, 4, axis=0), [0.3] * 4, 4), 4)
    ms_up2 = np.repeat(pan_lp, 4, axis=0)
    fused = classic.fuse("mtf-glp-fs", ms_lr2, pan, sensor="GF2", ms_up=ms_up2)
    np.testing.assert_allclose(fused, np.repeat(pan, 4, axis=0), rtol=1e-10)


def test_starck_murtagh_lowpass_is_an_undilated_b3_cascade():
    """Away from the borders the toolbox's zero-detail undecimated wavelet equals four passes of the
    [1 4 6 4 1]/16 kernel per axis (no dilation between levels); constants are preserved everywhere."""
    rng = np.random.default_rng(3)
    img = rng.random((2, 40, 48))
    out = starck_murtagh_lowpass(img, 4)
    k = np.array([1.0, 4, 6, 4, 1]) / 16
    k4 = np.convolve(np.convolve(k, k), np.convolve(k, k))  # 17 taps
    kernel = np.outer(k4, k4)
    for y, x in [(8, 8), (20, 30), (31, 39)]:
        np.testing.assert_allclose(out[:, y, x], (img[:, y - 8 : y + 9, x - 8 : x + 9] * kernel).sum((1, 2)))
    np.testing.assert_allclose(starck_murtagh_lowpass(np.full((1, 20, 20), 7.0), 4), 7.0, rtol=1e-14)


def test_lp_gauss_gain_reproduces_the_toolbox_sigma():
    """LPfilterGauss: sigma = N fcut/2 / sqrt(-2 ln 0.3); genMTF uses (N - 1): equal for the mapped gain."""
    n, fcut, g = 41, 0.25, lp_gauss_gnyq()
    sigma_toolbox = n * fcut / 2 / np.sqrt(-2 * np.log(0.3))
    sigma_genmtf = (n - 1) * fcut / 2 / np.sqrt(-2 * np.log(g))
    assert sigma_genmtf == pytest.approx(sigma_toolbox, rel=1e-14)


def test_nonneg_lstsq_against_enumeration():
    rng = np.random.default_rng(5)
    for _ in range(20):
        a = rng.normal(size=(60, 5)) * rng.uniform(0.1, 100, size=5)
        b = rng.normal(size=60) * 10
        x = nonneg_lstsq(a, b)
        assert (x >= 0).all()
        best = np.inf
        for mask in range(1 << 5):  # brute force over the free sets
            idx = [i for i in range(5) if mask >> i & 1]
            z = np.zeros(5)
            if idx:
                z[idx] = np.linalg.lstsq(a[:, idx], b, rcond=None)[0]
            if (z >= 0).all():
                best = min(best, np.sum((a @ z - b) ** 2))
        assert np.sum((a @ x - b) ** 2) == pytest.approx(best, rel=1e-10)


@pytest.mark.parametrize(
    "case", ["constant pan", "constant ms", "zero ms", "all zero"], ids=lambda c: c.replace(" ", "-")
)
def test_degenerate_images_give_finite_results(case):
    """No division by a zero spread: a constant PAN returns ``ms_up``; flat MS bands stay finite."""
    ms_lr, pan = _textured(4, 16)
    if "pan" in case or case == "all zero":
        pan = np.full_like(pan, 0.0 if case == "all zero" else 700.0)
    if "ms" in case or case == "all zero":
        ms_lr = np.full_like(ms_lr, 500.0 if case == "constant ms" else 0.0)
    ms_up = protocol.interp23tap(ms_lr, 4)
    with np.errstate(all="raise"):
        for method in classic.CLASSICAL_METHODS:
            out = classic.fuse(method, ms_lr, pan, sensor="QB")
            assert np.isfinite(out).all(), method
            if case in ("constant pan", "all zero"):
                np.testing.assert_array_equal(out, ms_up)
    ms_up_in = ms_up.copy()
    out = classic.fuse("gs", ms_lr, np.full_like(pan, 3.0), sensor="QB", ms_up=ms_up_in)
    assert out is not ms_up_in
