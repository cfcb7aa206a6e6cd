"""Wald protocol: conformance with the reference toolbox and exact properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from binsharp.errors import BinsharpError
from binsharp.protocol import (
    decimate,
    gen_mtf,
    imresize,
    interp23tap,
    kernel23,
    mtf_filter,
    reduced_resolution_triplet,
    resize_images,
)
from binsharp.protocol.resize import resize_matrix
from binsharp.sensors import get_sensor

RNG = np.random.default_rng(1234)

# ------------------------------------------------------------------------------------------------ conformance


@pytest.mark.parametrize("case,sensor", [("rr_wv3", "WV3"), ("rr_4b", "QB")])
def test_resize_images_matches_reference(conformance_case, case, sensor):
    z = conformance_case(case)
    ms_lr, pan_lr = resize_images(z["gt"].astype(np.float64), z["pan_hr"].astype(np.float64), sensor)
    assert ms_lr.shape == z["ms_lr"].shape and pan_lr.shape == z["pan"].shape
    # stored references are float32-rounded values of ~1e3 DN: half an ulp is ~3e-5
    np.testing.assert_allclose(ms_lr, z["ms_lr"], rtol=0, atol=1e-3)
    np.testing.assert_allclose(pan_lr, z["pan"], rtol=0, atol=1e-3)
    assert np.abs(ms_lr - z["ms_lr"]).max() < 1.2e-4


@pytest.mark.parametrize("case", ["rr_wv3", "rr_4b", "fr_wv3", "fr_4b"])
def test_interp23tap_matches_reference(conformance_case, case):
    z = conformance_case(case)
    up = interp23tap(z["ms_lr"].astype(np.float64), 4)
    np.testing.assert_allclose(up, z["ms_up"], rtol=0, atol=1e-3)
    np.testing.assert_array_equal(z["fused_exp"], z["ms_up"])


def test_triplet_matches_reference(conformance_case):
    z = conformance_case("rr_wv3")
    t = reduced_resolution_triplet(z["gt"], z["pan_hr"], "WV3")
    assert set(t) == {"gt", "ms", "lms", "pan"}
    np.testing.assert_array_equal(t["gt"], z["gt"].astype(np.float64))
    np.testing.assert_allclose(t["lms"], z["ms_up"], rtol=0, atol=1e-3)


# ------------------------------------------------------------------------------------------------ MTF design


def test_gen_mtf_reference_properties():
    h = gen_mtf(0.325, 4)
    assert h.shape == (41, 41)
    assert h.sum() == pytest.approx(0.99882266, abs=1e-7)  # not renormalised
    np.testing.assert_allclose(h, h.T, atol=1e-16)
    np.testing.assert_allclose(h, h[::-1, ::-1], atol=1e-16)
    assert np.unravel_index(np.argmax(h), h.shape) == (20, 20)
    # zero outside the unit circle of the rotated window: the corners vanish
    assert h[0, 0] == 0 and h[-1, -1] == 0
    hs = gen_mtf([0.3, 0.2], 4)
    assert hs.shape == (2, 41, 41)
    # a lower Nyquist gain is a stronger low-pass: smaller centre tap
    assert hs[1, 20, 20] < hs[0, 20, 20]


def test_gen_mtf_frequency_response_at_nyquist():
    # the designed filter's gain at the MS Nyquist frequency (1/(2*ratio) cycles/pixel) is about GNyq
    for g in (0.2, 0.3, 0.35):
        h = gen_mtf(g, 4)
        n = np.arange(-20, 21)
        resp = (h.sum(axis=0) * np.cos(2 * np.pi * 0.125 * n)).sum()
        assert resp == pytest.approx(g, abs=0.02)


def test_gen_mtf_bad_gain():
    with pytest.raises(BinsharpError, match="Nyquist gain"):
        gen_mtf(1.5)
    with pytest.raises(BinsharpError, match="odd"):
        gen_mtf(0.3, n=40)


# ------------------------------------------------------------------------------------------------ MTF filter


def test_mtf_filter_dc_gain_equals_kernel_sum():
    img = np.full((3, 50, 60), 1000.0)
    out = mtf_filter(img, [0.3, 0.25, 0.35])
    for c, g in enumerate([0.3, 0.25, 0.35]):
        np.testing.assert_allclose(out[c], 1000.0 * gen_mtf(g).sum(), rtol=1e-12)


def test_mtf_filter_is_correlation_with_replicate_borders():
    from scipy.ndimage import correlate

    img = RNG.uniform(0, 2047, size=(2, 37, 45))
    out = mtf_filter(img, [0.3, 0.2])
    for c, g in enumerate([0.3, 0.2]):
        ref = correlate(img[c], gen_mtf(g), mode="nearest")
        np.testing.assert_allclose(out[c], ref, rtol=0, atol=1e-9)


def test_mtf_filter_accepts_torch_and_batches():
    img = RNG.uniform(0, 100, size=(2, 3, 16, 16))
    out = mtf_filter(torch.from_numpy(img), 0.3)
    assert out.shape == img.shape and out.dtype == np.float64
    np.testing.assert_allclose(out[1], mtf_filter(img[1], [0.3] * 3), atol=1e-10)
    with pytest.raises(BinsharpError, match="3 bands"):
        mtf_filter(img[0], [0.3, 0.3])
    with pytest.raises(BinsharpError, match="NaN"):
        mtf_filter(np.full((1, 8, 8), np.nan), 0.3)


# ------------------------------------------------------------------------------------------------ imresize


def test_imresize_constant_is_constant():
    img = np.full((2, 64, 48), 517.25)
    for scale in (0.25, 0.5, 2.0, 4.0, 1 / 3):
        out = imresize(img, scale)
        np.testing.assert_allclose(out, 517.25, rtol=1e-13)
    assert imresize(img, 0.25).shape == (2, 16, 12)
    assert imresize(img, 1 / 3).shape == (2, 22, 16)


def test_imresize_weights_normalised_and_symmetric_border():
    m = resize_matrix(1024, 256, 0.25, "bicubic")
    np.testing.assert_allclose(m.sum(axis=1), 1.0, rtol=1e-14)
    # antialiased kernel is 16 input pixels wide when shrinking by 4: 17 non-zero taps at most
    assert (m != 0).sum(axis=1).max() <= 18
    # first output pixel (u = 2.5, 1-based) reflects indices 0, -1, ... onto 1, 2, ...: weights fold
    assert m[0, :10].sum() > 0.9
    # a linear ramp is reproduced exactly away from the borders (cubic kernel has linear precision)
    ramp = np.arange(1024, dtype=float)
    out = m @ ramp
    centre = np.arange(1, 257) * 4 - 2.5  # 0-based input coordinate of each output pixel
    np.testing.assert_allclose(out[4:-4], centre[4:-4], atol=1e-9)


def test_imresize_large_path_equals_dense(monkeypatch):
    from binsharp.protocol import resize

    img = RNG.uniform(0, 2047, size=(2, 40, 36))
    dense = imresize(img, 0.25)
    up = imresize(img, 2.0)
    monkeypatch.setattr(resize, "_DENSE_MAX", 0)  # force the tap-by-tap path used for large scenes
    np.testing.assert_allclose(imresize(img, 0.25), dense, rtol=0, atol=1e-10)
    np.testing.assert_allclose(imresize(img, 2.0), up, rtol=0, atol=1e-10)


def test_imresize_nearest_equals_decimate():
    img = RNG.uniform(0, 2047, size=(3, 32, 40))
    for r in (2, 3, 4, 8):
        if 32 % r == 0 and 40 % r == 0:
            np.testing.assert_array_equal(imresize(img, 1 / r, "nearest"), decimate(img, r))
    np.testing.assert_array_equal(decimate(img, 4), img[:, 2::4, 2::4])


def test_imresize_bad_input():
    with pytest.raises(BinsharpError, match="method"):
        imresize(np.ones((1, 8, 8)), 0.5, "lanczos")
    with pytest.raises(BinsharpError, match="positive"):
        imresize(np.ones((1, 8, 8)), -1)
    with pytest.raises(BinsharpError, match="dimensions"):
        imresize(np.ones(8), 0.5)


# ------------------------------------------------------------------------------------------------ decimation


def test_decimate_phase_and_errors():
    img = np.arange(16 * 16, dtype=float).reshape(1, 16, 16)
    out = decimate(img, 4)
    assert out.shape == (1, 4, 4)
    assert out[0, 0, 0] == img[0, 2, 2] and out[0, 1, 3] == img[0, 6, 14]
    assert decimate(img, 2)[0, 0, 0] == img[0, 1, 1]
    with pytest.raises(BinsharpError, match="multiple"):
        decimate(np.ones((1, 10, 12)), 4)
    with pytest.raises(BinsharpError, match="ratio"):
        decimate(img, 0)


# ------------------------------------------------------------------------------------------------ 23-tap


def test_kernel23_taps():
    k = kernel23()
    assert k.shape == (23,) and k[11] == 1.0
    np.testing.assert_array_equal(k, k[::-1])
    assert np.all(k[11 + 2 : 23 : 2] == 0)
    assert k[12] == pytest.approx(0.610668182370)
    assert k[14] == pytest.approx(-0.145397186478)
    # interpolation filter: the odd taps sum to one (DC gain 2 after zero insertion)
    assert k.sum() == pytest.approx(2.0, abs=1e-9)


def test_interp23tap_constant_stays_constant():
    img = decimate(np.full((2, 64, 64), 733.0), 4)
    up = interp23tap(img, 4)
    assert up.shape == (2, 64, 64)
    # the published taps are rounded to 12 decimals: the inserted samples see a DC gain of 1 - 4e-10
    np.testing.assert_allclose(up, 733.0, rtol=1e-8)
    np.testing.assert_array_equal(up[:, 2::4, 2::4], 733.0)


def test_interp23tap_phase_impulse():
    for r in (2, 4):
        lr = np.zeros((1, 16, 16))
        lr[0, 3, 5] = 1.0
        up = interp23tap(lr, r)
        off = r // 2 if r == 4 else 1
        assert up[0, r * 3 + off, r * 5 + off] == pytest.approx(1.0)
        # the other LR sample positions stay exactly zero
        grid = up[0, off::r, off::r]
        assert grid[3, 5] == pytest.approx(1.0) and np.abs(np.delete(grid.ravel(), 3 * 16 + 5)).max() < 1e-15
        # the response is symmetric about the sample position
        row = up[0, r * 3 + off]
        c = r * 5 + off
        np.testing.assert_allclose(row[c - 5 : c], row[c + 1 : c + 6][::-1], atol=1e-15)


def test_interp23tap_linear_ramp_phase():
    # a linear function of the LR index k is reproduced as a function of the HR index (k = (j - 2) / 4)
    k = np.arange(32, dtype=float)
    lr = np.broadcast_to(10.0 * k, (1, 32, 32)).copy()
    up = interp23tap(lr, 4)[0, 0]
    j = np.arange(128)
    inner = slice(48, 80)  # away from the circular wrap-around
    np.testing.assert_allclose(up[inner], 10.0 * (j[inner] - 2) / 4, atol=2e-3)


def test_interp23tap_matches_zero_insertion_filter():
    from scipy.ndimage import correlate1d

    lr = RNG.uniform(0, 2047, size=(2, 12, 10))
    x, first = lr, True
    for _ in range(2):
        up = np.zeros((2, x.shape[1] * 2, x.shape[2] * 2))
        if first:
            up[:, 1::2, 1::2] = x
            first = False
        else:
            up[:, 0::2, 0::2] = x
        up = correlate1d(up, kernel23(), axis=1, mode="wrap")
        x = correlate1d(up, kernel23(), axis=2, mode="wrap")
    np.testing.assert_allclose(interp23tap(lr, 4), x, rtol=0, atol=1e-9)


def test_interp23tap_bad_ratio():
    with pytest.raises(BinsharpError, match="power of 2"):
        interp23tap(np.ones((1, 4, 4)), 3)


# ------------------------------------------------------------------------------------------------ Wald


def test_resize_images_checks_inputs():
    ms = RNG.uniform(0, 2047, size=(8, 32, 32))
    pan = RNG.uniform(0, 2047, size=(1, 128, 128))
    ms_lr, pan_lr = resize_images(ms, pan, "WV3")
    assert ms_lr.shape == (8, 8, 8) and pan_lr.shape == (1, 32, 32)
    np.testing.assert_allclose(ms_lr, decimate(mtf_filter(ms, get_sensor("WV3").gnyq_ms), 4))
    with pytest.raises(BinsharpError, match="band count"):
        resize_images(ms[:4], pan, "WV3")
    with pytest.raises(BinsharpError, match="PAN size"):
        resize_images(ms, pan[:, :100], "WV3")
    with pytest.raises(BinsharpError, match="multiple"):
        resize_images(ms[:, :30, :30], pan[:, :120, :120], "WV3")


@pytest.mark.parametrize("n", [1, 3, 7])
def test_interp23tap_circular_on_tiny_images(n):
    # images smaller than the kernel wrap around periodically (MATLAB 'circular' padding)
    lr = RNG.uniform(0, 1, size=(1, n, n + 1))
    x = lr
    for phase in (1, 0):
        up = np.zeros((1, x.shape[1] * 2, x.shape[2] * 2))
        up[:, phase::2, phase::2] = x
        for ax in (1, 2):
            up = sum(c * np.roll(up, 11 - j, axis=ax) for j, c in enumerate(kernel23()))
        x = up
    np.testing.assert_allclose(interp23tap(lr, 4), x, rtol=0, atol=1e-13)
