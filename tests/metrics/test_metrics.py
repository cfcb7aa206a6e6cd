"""Quality indexes: literal reference ports on small inputs, exact properties and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from binsharp.errors import BinsharpError
from binsharp.metrics import (
    BatchEvaluator,
    ergas,
    evaluate_batch,
    format_mean_std,
    full_resolution,
    q2n,
    q2n_map,
    q_avg,
    reduced_resolution,
    sam,
    scc,
    ssim,
    uqi_blocks,
)
from binsharp.metrics.hypercomplex import matlab_uint16, onion_mult, onion_table
from binsharp.protocol import interp23tap

RNG = np.random.default_rng(7)


def _pair(c=4, h=64, w=64, noise=40.0, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.uniform(200, 1500, size=(c, 1, 1)) + 150 * np.sin(np.arange(w) / 5.0)[None, None, :]
    gt = base + 100 * np.cos(np.arange(h) / 7.0)[None, :, None] + rng.normal(0, 30, size=(c, h, w))
    fused = gt + rng.normal(0, noise, size=gt.shape)
    return gt, fused


# ------------------------------------------------------------------------------------------------ Q2n


def test_matlab_uint16_cast():
    x = np.array([-3.0, -0.5, -0.4, 0.49999999999999994, 0.5, 1.5, 2.5, 2047.49, 70000.0])
    np.testing.assert_array_equal(matlab_uint16(x), [0, 0, 0, 0, 1, 2, 3, 2047, 65535])


def test_onion_product_is_cayley_dickson():
    a, b = RNG.normal(size=2), RNG.normal(size=2)
    z = complex(*a) * complex(*b)
    np.testing.assert_allclose(onion_mult(a, b), [z.real, z.imag])
    for n in (4, 8):  # quaternions and octonions are composition algebras: |xy| = |x||y|
        x, y = RNG.normal(size=n), RNG.normal(size=n)
        assert np.linalg.norm(onion_mult(x, y)) == pytest.approx(np.linalg.norm(x) * np.linalg.norm(y))
        t = onion_table(n)
        assert set(np.unique(t)) <= {-1.0, 0.0, 1.0} and np.all(np.abs(t).sum(axis=2) == 1)
        np.testing.assert_allclose(np.einsum("i,j,ijk->k", x, y, t), onion_mult(x, y), atol=1e-14)


def _onions_quality_literal(d1, d2, size):
    """Line-by-line port of onions_quality.m on one block (H, W, N3), MATLAB layout."""
    d1, d2 = d1.astype(float).copy(), d2.astype(float).copy()
    d2[:, :, 1:] = -d2[:, :, 1:]
    n3 = d1.shape[2]
    for i in range(n3):
        a = d1[:, :, i].mean()
        c = d1[:, :, i].std(ddof=1)
        c = np.finfo(float).eps if c == 0 else c
        d1[:, :, i] = (d1[:, :, i] - a) / c + 1
        s, t = a, c
        if s == 0:
            d2[:, :, i] = d2[:, :, i] - s + 1 if i == 0 else -(-d2[:, :, i] - s + 1)
        else:
            d2[:, :, i] = (d2[:, :, i] - s) / t + 1 if i == 0 else -(((-d2[:, :, i] - s) / t) + 1)
    m1 = d1.mean(axis=(0, 1))
    m2 = d2.mean(axis=(0, 1))
    mod_q1m, mod_q2m = np.sqrt((m1**2).sum()), np.sqrt((m2**2).sum())
    mod_q1, mod_q2 = np.sqrt((d1**2).sum(axis=2)), np.sqrt((d2**2).sum(axis=2))
    k = size * size / (size * size - 1)
    termine2 = mod_q1m * mod_q2m
    termine4 = mod_q1m**2 + mod_q2m**2
    termine3 = k * (mod_q1**2).mean() + k * (mod_q2**2).mean() - k * (mod_q1m**2 + mod_q2m**2)
    mean_bias = 2 * termine2 / termine4
    if termine3 == 0:
        q = np.zeros(n3)
        q[-1] = mean_bias
        return q
    qu = onion_mult(d1, d2)
    qm = onion_mult(m1, m2)
    qv = k * qu.mean(axis=(0, 1))
    return (qv - k * qm) * mean_bias * 2 / termine3


def _q2n_literal(gt, fused, block):
    """Port of q2n.m (MATLAB layout internally) with explicit loops over blocks."""
    g, f = np.moveaxis(gt, 0, -1), np.moveaxis(fused, 0, -1)
    n1, n2, n3 = g.shape
    e1, e2 = -(-n1 // block) * block - n1, -(-n2 // block) * block - n2
    pad = ((0, e1), (0, e2), (0, 0))
    g, f = matlab_uint16(np.pad(g, pad, "symmetric")), matlab_uint16(np.pad(f, pad, "symmetric"))
    n3p = 2 ** math.ceil(math.log2(n3))
    z = np.zeros((*g.shape[:2], n3p - n3))
    g, f = np.concatenate([g, z], 2), np.concatenate([f, z], 2)
    vals = []
    for j in range(g.shape[0] // block):
        for i in range(g.shape[1] // block):
            sl = (slice(j * block, (j + 1) * block), slice(i * block, (i + 1) * block))
            vals.append(np.sqrt((_onions_quality_literal(g[sl], f[sl], block) ** 2).sum()))
    return float(np.mean(vals))


@pytest.mark.parametrize("c,h,w", [(3, 40, 50), (8, 32, 32), (1, 16, 24), (4, 24, 16)])
def test_q2n_matches_literal_port(c, h, w):
    gt, fused = _pair(c, h, w, seed=c)
    fused[0, :3, :3] = -20.0  # negatives are cast to 0
    gt[-1, :8, :8] = 0.0  # a block band with zero mean (the +1-shift rule)
    assert q2n(gt, fused, 8) == pytest.approx(_q2n_literal(gt, fused, 8), abs=1e-12)


def test_q2n_identical_and_constant():
    gt, _ = _pair(8, 64, 64)
    assert q2n(gt, gt) == pytest.approx(1.0, abs=1e-12)
    flat = np.full((4, 32, 32), 500.0)
    assert q2n(flat, flat) == pytest.approx(1.0)  # termine3 == 0: mean bias only
    assert q2n_map(gt, gt + 10).shape == (2, 2)


# ------------------------------------------------------------------------------------------------ Q_avg


def _img_qi_literal(a, b, bs):
    n = bs * bs
    out = []
    for i in range(a.shape[0] - bs + 1):
        for j in range(a.shape[1] - bs + 1):
            x, y = a[i : i + bs, j : j + bs], b[i : i + bs, j : j + bs]
            s1, s2 = x.sum(), y.sum()
            num = 4 * (n * (x * y).sum() - s1 * s2) * s1 * s2
            den1 = n * ((x * x).sum() + (y * y).sum()) - (s1 * s1 + s2 * s2)
            den = den1 * (s1 * s1 + s2 * s2)
            q = 1.0
            if den1 == 0 and s1 * s1 + s2 * s2 != 0:
                q = 2 * s1 * s2 / (s1 * s1 + s2 * s2)
            if den != 0:
                q = num / den
            out.append(q)
    return np.mean(out)


def test_q_avg_matches_img_qi_with_flat_windows():
    gt, fused = _pair(2, 24, 20, seed=3)
    gt, fused = np.round(gt), np.round(fused)
    gt[0, :10, :10] = 300.0  # flat windows in both images: 2 mx my / (mx^2 + my^2)
    fused[0, :10, :10] = 280.0
    expected = np.mean([_img_qi_literal(gt[c], fused[c], 8) for c in range(2)])
    assert q_avg(gt, fused, 8) == pytest.approx(expected, abs=1e-12)
    assert q_avg(gt, gt, 8) == pytest.approx(1.0, abs=1e-12)


# ------------------------------------------------------------------------------------------ SAM, ERGAS, SCC


def test_sam_known_angles_and_zero_pixels():
    gt = np.zeros((2, 1, 3))
    fused = np.zeros((2, 1, 3))
    gt[:, 0, 0], fused[:, 0, 0] = [1, 0], [1, 1]  # 45 degrees
    gt[:, 0, 1], fused[:, 0, 1] = [2, 2], [3, 3]  # 0 degrees
    # pixel 2: zero vector in fused, excluded from sum and count
    gt[:, 0, 2] = [5, 1]
    assert sam(gt, fused) == pytest.approx(22.5)


def test_ergas_formula():
    gt, _ = _pair(4, 32, 32)
    fused = gt * 1.1
    mu = gt.mean(axis=(1, 2))
    expected = 100 / 4 * np.sqrt(np.mean(0.01 * (gt**2).mean(axis=(1, 2)) / mu**2))
    assert ergas(gt, fused, 4) == pytest.approx(expected, rel=1e-12)


def test_scc_identity_and_scale_invariance():
    gt, fused = _pair(3, 40, 40)
    assert scc(gt, gt) == pytest.approx(1.0)
    assert scc(gt, 3 * fused) == pytest.approx(scc(gt, fused), rel=1e-12)
    assert scc(gt, fused) < 1


def test_ssim_matches_direct_gaussian_window():
    from scipy.signal import correlate2d

    gt, fused = _pair(2, 30, 26, noise=80)
    g = np.exp(-(np.arange(-5, 6) ** 2) / 4.5)
    win = np.outer(g, g) / np.outer(g, g).sum()
    vals = []
    for c in range(2):
        a, b = np.clip(gt[c] / 2047, 0, 1), np.clip(fused[c] / 2047, 0, 1)

        def f(v):
            return correlate2d(v, win, mode="valid")

        mu1, mu2 = f(a), f(b)
        s11, s22, s12 = f(a * a) - mu1**2, f(b * b) - mu2**2, f(a * b) - mu1 * mu2
        m = ((2 * mu1 * mu2 + 1e-4) * (2 * s12 + 9e-4)) / ((mu1**2 + mu2**2 + 1e-4) * (s11 + s22 + 9e-4))
        vals.append(m.mean())
    assert ssim(gt, fused) == pytest.approx(np.mean(vals), abs=1e-12)
    assert ssim(gt, gt) == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------------ API


def test_reduced_resolution_api():
    gt, fused = _pair(8, 128, 128)
    r = reduced_resolution(fused, gt)
    assert set(r) == {"q2n", "q_avg", "sam", "ergas", "scc", "psnr", "ssim"}
    assert all(isinstance(v, float) for v in r.values())
    same = reduced_resolution(gt, gt)
    assert same["q2n"] == pytest.approx(1) and same["sam"] == pytest.approx(0, abs=1e-6)
    assert same["ergas"] == 0 and same["psnr"] == math.inf and same["ssim"] == pytest.approx(1)
    t = reduced_resolution(torch.from_numpy(fused).float(), torch.from_numpy(gt).float())
    r32 = reduced_resolution(fused.astype(np.float32), gt.astype(np.float32))
    assert t == r32
    # the border cut is X[dim_cut-1 : H-dim_cut]: only that region matters
    fused2 = fused.copy()
    fused2[:, :19, :] = 0
    fused2[:, -21:, :] = 0
    assert reduced_resolution(fused2, gt)["sam"] == r["sam"]
    # Q_avg keeps the toolbox's 32 x 32 window whatever the Q2n block
    r16 = reduced_resolution(fused, gt, block=16)
    assert r16["q_avg"] == r["q_avg"] and r16["q2n"] != r["q2n"]
    # clip: values above 2**bits are set to 2**bits, negatives to 0
    hot = fused.copy()
    hot[0, 60, 60] = 9000.0
    assert reduced_resolution(hot, gt, clip=True)["ergas"] == pytest.approx(
        reduced_resolution(np.clip(hot, 0, 2048.0), gt)["ergas"]
    )


def test_reduced_resolution_bad_input():
    gt, fused = _pair(4, 64, 64)
    with pytest.raises(BinsharpError, match="shape mismatch"):
        reduced_resolution(fused[:3], gt)
    with pytest.raises(BinsharpError, match="NaN"):
        bad = fused.copy()
        bad[0, 0, 0] = np.nan
        reduced_resolution(bad, gt)
    with pytest.raises(BinsharpError, match=r"\(C, H, W\)"):
        reduced_resolution(fused[0], gt[0])
    with pytest.raises(BinsharpError, match="too small"):
        reduced_resolution(fused[:, :40, :40], gt[:, :40, :40])
    with pytest.raises(BinsharpError, match="numeric"):
        reduced_resolution(np.array([["a"]]), gt)


def _fr_inputs(c=4, n=64, seed=1):
    rng = np.random.default_rng(seed)
    pan = 800 + 200 * np.sin(np.arange(n) / 3.0)[None, :] * np.cos(np.arange(n) / 5.0)[:, None]
    pan = (pan + rng.normal(0, 20, size=(n, n)))[None]
    ms_lr = rng.uniform(300, 900, size=(c, n // 4, n // 4))
    fused = interp23tap(ms_lr) + 0.3 * (pan - pan.mean())
    return fused, ms_lr, pan


def test_full_resolution_api_and_properties():
    fused, ms_lr, pan = _fr_inputs()
    r = full_resolution(fused, ms_lr, pan, sensor="QB")
    assert set(r) == {"d_lambda_k", "d_s", "hqnr"}
    assert r["hqnr"] == pytest.approx((1 - r["d_lambda_k"]) * (1 - r["d_s"]))
    q = full_resolution(fused, ms_lr, pan, sensor="QB", variant="qnr")
    assert set(q) == {"d_lambda", "d_s", "qnr"} and q["d_s"] == r["d_s"]
    # fused = upsampled MS: no spectral distortion in the QNR sense
    up = interp23tap(ms_lr)
    assert full_resolution(up, ms_lr, pan, sensor="QB", variant="qnr")["d_lambda"] == 0
    # explicit ms_up equal to the default gives the same values; torch accepted
    t = full_resolution(torch.from_numpy(fused), ms_lr, pan, sensor="QB", ms_up=up)
    assert t == pytest.approx(r, abs=1e-12)


def test_uqi_blocks_definition():
    x = RNG.uniform(0, 100, size=(64, 32))
    y = 0.5 * x + RNG.normal(0, 5, size=x.shape)
    vals = []
    for blk in (slice(0, 32), slice(32, 64)):
        a, b = x[blk].ravel(), y[blk].ravel()
        c = np.cov(a, b)
        vals.append(4 * c[0, 1] * a.mean() * b.mean() / (c[0, 0] + c[1, 1]) / (a.mean() ** 2 + b.mean() ** 2))
    assert uqi_blocks(x, y, 32) == pytest.approx(np.mean(vals), rel=1e-12)


def test_full_resolution_bad_input():
    fused, ms_lr, pan = _fr_inputs()
    with pytest.raises(BinsharpError, match="band count"):
        full_resolution(fused, ms_lr, pan, sensor="WV3")
    with pytest.raises(BinsharpError, match="ms_lr"):
        full_resolution(fused, ms_lr[:, :8], pan, sensor="QB")
    with pytest.raises(BinsharpError, match="pan"):
        full_resolution(fused, ms_lr, pan[:, :32], sensor="QB")
    with pytest.raises(BinsharpError, match="multiples of 32"):
        full_resolution(fused[:, :48, :48], ms_lr[:, :12, :12], pan[:, :48, :48], sensor="QB")
    with pytest.raises(BinsharpError, match="variant"):
        full_resolution(fused, ms_lr, pan, sensor="QB", variant="x")
    with pytest.raises(BinsharpError, match="unknown sensor"):
        full_resolution(fused, ms_lr, pan, sensor="nope")


# ------------------------------------------------------------------------------------------------ batch


def test_batch_evaluator_rr_and_fr():
    pairs = [_pair(4, 96, 96, seed=s) for s in range(3)]
    gts = np.stack([p[0] for p in pairs])
    fus = np.stack([p[1] for p in pairs])
    s = evaluate_batch("rr", fus, gts, ratio=4, bits=11)
    assert s["settings"]["kind"] == "rr" and s["settings"]["n_images"] == 3 and s["settings"]["std_ddof"] == 1
    q = [d["q2n"] for d in s["per_image"]]
    assert s["mean"]["q2n"] == pytest.approx(np.mean(q)) and s["std"]["q2n"] == pytest.approx(
        np.std(q, ddof=1)
    )
    assert " ± " in format_mean_std(s)["sam"]

    ev = BatchEvaluator("fr", sensor="QB")
    fr = [_fr_inputs(seed=k) for k in range(2)]
    for f, lr, p in fr:
        ev.add(f, lr, p)
    out = ev.result()
    assert len(out["per_image"]) == 2 and out["settings"]["sensor"] == "QB"
    assert out["settings"]["variant"] == "hqnr" and set(out["mean"]) == {"d_lambda_k", "d_s", "hqnr"}

    one = evaluate_batch("rr", [fus[0]], [gts[0]])
    assert all(v == 0 for v in one["std"].values())


def test_batch_bad_input():
    gt, fused = _pair(4, 96, 96)
    with pytest.raises(BinsharpError, match="sensor"):
        BatchEvaluator("fr")
    with pytest.raises(BinsharpError, match="kind"):
        BatchEvaluator("xx")
    with pytest.raises(BinsharpError, match="setting"):
        BatchEvaluator("rr", sensor="WV3")
    with pytest.raises(BinsharpError, match="2 fused images but 1"):
        evaluate_batch("rr", [fused, fused], [gt])
    with pytest.raises(BinsharpError, match="image 1"):
        evaluate_batch("rr", [fused, fused[:3]], [gt, gt])
    with pytest.raises(BinsharpError, match="no image"):
        BatchEvaluator("rr").result()


def test_single_indexes_validate_and_accept_torch():
    gt, fused = _pair(4, 64, 64)
    tg, tf = torch.from_numpy(gt), torch.from_numpy(fused)
    assert q2n(tg, tf) == q2n(gt, fused)
    assert sam(tg, tf) == sam(gt, fused) and ergas(tg, tf) == ergas(gt, fused)
    with pytest.raises(BinsharpError, match="shape mismatch"):
        q_avg(gt, fused[:, :32])
    with pytest.raises(BinsharpError, match="NaN"):
        scc(gt, np.where(fused > 1000, np.inf, fused))
    with pytest.raises(BinsharpError, match=r"\(C, H, W\)"):
        ssim(gt[0], fused[0])
    from binsharp.metrics import d_lambda, d_lambda_k, d_s

    f, lr, p = _fr_inputs()
    up = interp23tap(lr)
    r = full_resolution(f, lr, p, sensor="QB")
    assert d_lambda_k(f, up, "QB") == pytest.approx(r["d_lambda_k"], abs=1e-15)
    assert d_s(torch.from_numpy(f), up, p) == pytest.approx(r["d_s"], abs=1e-15)
    assert d_lambda(up, up) == 0
    with pytest.raises(BinsharpError, match="shape mismatch"):
        d_s(f, up, p[:, :32])
