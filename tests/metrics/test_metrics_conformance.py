"""Quality indexes against the reference toolbox values in ../shared/conformance (1e-6 absolute)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from binsharp.metrics import evaluate_batch, full_resolution, reduced_resolution

TOL = 1e-6
METHODS = ("exp", "bt_h", "gs", "gsa", "bdsd_pc", "mtf_glp_hpm", "mtf_glp_fs", "awlp")


@pytest.mark.parametrize("case", ["rr_wv3", "rr_4b"])
def test_reduced_resolution_indexes(conformance_case, conformance_expected, case):
    z = conformance_case(case)
    exp = conformance_expected[case]
    assert set(exp["indexes"]) == {f"fused_{m}" for m in METHODS}
    for key, ref in exp["indexes"].items():
        got = reduced_resolution(
            z[key], z["gt"], ratio=exp["ratio"], bits=exp["bits"], block=exp["block"], dim_cut=exp["dim_cut"]
        )
        for name, value in ref.items():
            assert got[name] == pytest.approx(value, abs=TOL), (case, key, name)
        assert 0 < got["ssim"] <= 1 and 20 < got["psnr"] < 60


@pytest.mark.parametrize("case", ["fr_wv3", "fr_4b"])
def test_full_resolution_indexes(conformance_case, conformance_expected, case):
    z = conformance_case(case)
    exp = conformance_expected[case]
    for key, ref in exp["indexes"].items():
        kw = dict(sensor=exp["sensor"], ratio=exp["ratio"], bits=exp["bits"], block=exp["block"])
        h = full_resolution(z[key], z["ms_lr"], z["pan"], ms_up=z["ms_up"], **kw)
        q = full_resolution(z[key], z["ms_lr"], z["pan"], ms_up=z["ms_up"], variant="qnr", **kw)
        for name in ("d_lambda_k", "d_s", "hqnr"):
            assert h[name] == pytest.approx(ref[name], abs=TOL), (case, key, name)
        for name in ("d_lambda", "d_s", "qnr"):
            assert q[name] == pytest.approx(ref[name], abs=TOL), (case, key, name)
        # default ms_up = 23-tap interpolation of ms_lr, recomputed in float64
        d = full_resolution(z[key], z["ms_lr"], z["pan"], **kw)
        for name in ("d_lambda_k", "d_s", "hqnr"):
            assert d[name] == pytest.approx(ref[name], abs=TOL), (case, key, name, "default ms_up")


def test_torch_inputs_and_batch_mean(conformance_case, conformance_expected):
    z = conformance_case("rr_4b")
    exp = conformance_expected["rr_4b"]["indexes"]
    keys = ["fused_gs", "fused_awlp"]
    fused = torch.from_numpy(np.stack([z[k] for k in keys]))
    gt = torch.from_numpy(np.stack([z["gt"].astype(np.float32)] * 2))
    summary = evaluate_batch("rr", fused, gt)
    for name in ("q2n", "sam", "ergas"):
        values = [exp[k][name] for k in keys]
        assert summary["mean"][name] == pytest.approx(np.mean(values), abs=TOL)
        assert summary["std"][name] == pytest.approx(np.std(values, ddof=1), abs=TOL)
        assert [d[name] for d in summary["per_image"]] == pytest.approx(values, abs=TOL)
