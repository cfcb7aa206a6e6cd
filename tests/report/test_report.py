"""Figures and HTML of :mod:`binsharp.report`: one stretch for every method, error maps, scatter, curves."""

from __future__ import annotations

import csv
import re

import matplotlib.image as mpimg
import numpy as np
import pytest

from binsharp.errors import BinsharpError
from binsharp.report import figures as F
from binsharp.report.html import render_html
from binsharp.report.tables import Table, format_value

RGB = (4, 2, 1)


def _img(seed: int = 0, bands: int = 8, size: int = 48) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    base = 500 + 300 * np.sin(x / 5.0) * np.cos(y / 7.0)
    return np.stack([base * (1 + 0.1 * b) + rng.normal(0, 10, base.shape) for b in range(bands)])


def test_stretch_uses_reference_percentiles_and_is_shared():
    ref = _img(0)
    lo, hi = F.stretch_limits(ref, RGB)
    for k, b in enumerate(RGB):
        assert lo[k] == pytest.approx(np.percentile(ref[b], 2))
        assert hi[k] == pytest.approx(np.percentile(ref[b], 98))
    comp = F.rgb_composite(ref, RGB, (lo, hi))
    assert comp.shape == (48, 48, 3) and comp.min() == 0.0 and comp.max() == 1.0
    # about 2 % of the pixels clip at each end of each band
    assert 0.01 < (comp[..., 0] == 0).mean() < 0.04 and 0.01 < (comp[..., 0] == 1).mean() < 0.04
    # the same limits applied to a brighter image give a brighter composite (no per-image stretch)
    brighter = F.rgb_composite(ref * 1.2, RGB, (lo, hi))
    assert brighter.mean() > comp.mean() + 0.05
    flat = np.ones((8, 4, 4))
    lo, hi = F.stretch_limits(flat, RGB)
    assert np.all(hi > lo)
    with pytest.raises(BinsharpError):
        F.stretch_limits(flat[0], RGB)


def test_error_maps():
    ref = _img(0)
    assert np.allclose(F.sam_map(ref, ref), 0, atol=1e-5)
    assert np.allclose(F.sam_map(2.5 * ref, ref), 0, atol=1e-5)  # angle ignores brightness
    other = ref.copy()
    other[0] += 100
    assert F.sam_map(other, ref).mean() > 0
    rms = F.error_map(ref + 3.0, ref, "abs")
    assert rms.shape == (48, 48) and np.allclose(rms, 3.0)
    with pytest.raises(BinsharpError):
        F.error_map(ref, ref, "nope")


def test_figures_have_the_expected_size_and_content(tmp_path):
    ref = _img(0)
    images = {"a": _img(1), "b": _img(2) * 1.05, "c": ref + 40}
    p = F.plot_composites(images, ref, RGB, tmp_path / "c.png", title="t")
    img = mpimg.imread(p)
    assert img.shape[:2] == (round((2.6 + 0.4) * F.DPI), round(2.6 * 4 * F.DPI))
    assert img[..., :3].std() > 0.05
    p = F.plot_error_maps(images, ref, tmp_path / "e.png", kind="sam")
    assert mpimg.imread(p).shape[:2] == (300, round((2.6 * 3 + 0.8) * F.DPI))
    pan = ref.mean(axis=0, keepdims=True)
    p = F.plot_full_resolution(pan, ref, images, RGB, tmp_path / "f.png")
    assert mpimg.imread(p).shape[:2] == (300, 1300)  # PAN, MS, 3 methods
    pts = [
        {"name": "x", "kind": "fp", "ops": 5e9, "q2n": 0.9},
        {"name": "y", "kind": "binary", "ops": 4e8, "q2n": 0.85},
        {"name": "z", "kind": "classical", "ops": None, "q2n": 0.8},  # no OPs: not plotted
    ]
    p = F.plot_cost_vs_quality(pts, tmp_path / "s.png", cost="ops")
    assert mpimg.imread(p).shape[:2] == (420, 600)
    assert not list(tmp_path.glob(".*part*"))  # no partial files left


def test_latency_vs_quality_plots_every_method_at_its_deployed_latency(tmp_path):
    from binsharp.report.tables import deployed_latency_ms

    methods = [
        {"name": "bt-h", "kind": "classical", "latency": {"numpy_s": 0.018}},
        {"name": "fusionnet", "kind": "fp", "latency": {"torch_s": 0.128}},
        {"name": "bbcu", "kind": "binary", "latency": {"torch_s": 0.345, "engine_s": 0.152}},
        {"name": "bnn", "kind": "binary", "latency": {"torch_s": 0.3}},  # no engine time: not placed
    ]
    lat = [deployed_latency_ms(m) for m in methods]
    assert lat[:3] == pytest.approx([18.0, 128.0, 152.0]) and lat[3] is None
    pts = [
        {"name": m["name"], "kind": m["kind"], "latency_ms": v, "q2n": 0.9}
        for m, v in zip(methods, lat, strict=True)
    ]
    p = F.plot_cost_vs_quality(pts, tmp_path / "l.png", cost="latency_ms")
    img = mpimg.imread(p)
    assert img.shape[:2] == (420, 600) and img[..., :3].std() > 0.02
    with pytest.raises(ValueError, match="cost must be one of"):
        F.plot_cost_vs_quality(pts, tmp_path / "x.png", cost="bops")


def test_training_curves_from_logs(tmp_path):
    logs = {}
    for name, scale in (("m1", 1.0), ("m2", 2.0)):
        path = tmp_path / f"{name}.csv"
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["stage", "global_step", "epoch", "step", "train/loss", "val/q2n"])
            for s in range(10):
                w.writerow(["I", s, 0, s, scale / (s + 1), ""])
            for s in range(0, 10, 3):
                w.writerow(["I", s, 0, s, "", 0.5 + 0.04 * s])
        logs[name] = path
    series = F.read_log(logs["m1"])
    assert set(series) == {"train/loss", "val/q2n"}
    assert list(series["val/q2n"][0]) == [0, 3, 6, 9] and series["train/loss"][1][0] == 1.0
    p = F.plot_training_curves(logs, tmp_path / "t.png", metrics=("train/loss", "val/q2n"))
    img = mpimg.imread(p)
    assert img.shape[:2] == (320, 720) and img[..., :3].std() > 0.02


def test_tables_and_html(tmp_path):
    assert format_value("q2n", 0.91234, 0.01) == "0.9123 ± 0.0100"
    assert format_value("sam", 3.14159, None) == "3.142"
    assert format_value("psnr", float("nan"), 1.0) == "n/a"
    t = Table("Reduced", ["Method", "Type", "Q2n ↑"], [["a", "fp", "0.9"], ["b", "binary", "0.8"]],
              notes=["mean ± std"], bold=[[False, False, True], [False, False, False]])  # fmt: skip
    md = t.to_markdown()
    assert "| a | fp | **0.9** |" in md and "|---|---|---:|" in md and "- mean ± std" in md
    assert "\na       fp        0.9\n" in t.to_text()
    png = F.plot_cost_vs_quality([{"name": "x", "kind": "fp", "ops": 1e9, "q2n": 0.9}], tmp_path / "p.png")
    page = render_html("R <1>", [t], [("caption & more", png)], settings={"data": "x"})
    assert "<title>R &lt;1&gt;</title>" in page and "<td><b>0.9</b></td>" in page
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 1
    assert "caption &amp; more" in page and "&quot;data&quot;" in page


def test_summary_states_ranking_gap_and_ratios():
    from binsharp.report.tables import summary_lines

    def m(name, kind, q2n, sam, ergas, ops=None, size=None):
        rec = {
            "name": name,
            "kind": kind,
            "status": "ok",
            "results": {"rr": {"mean": {"q2n": q2n, "sam": sam, "ergas": ergas}, "std": {}}},
        }
        if ops:
            rec["complexity"] = {"ops": ops}
        if size:
            rec["size"] = {"checkpoint_bytes": size}
        return rec  # fmt: skip

    report = {
        "methods": [
            m("gsa", "classical", 0.90, 4.0, 3.0),
            m("fusionnet", "fp", 0.95, 3.0, 2.0, ops=5e9, size=400_000),
            m("pnn", "fp", 0.92, 3.5, 2.5, ops=6e9, size=300_000),
            m("bnn", "binary", 0.85, 5.0, 3.5),
            m("s2bnet", "binary", 0.93, 3.6, 2.4, ops=5e8, size=1_000_000),
            m("bnnpan", "binary", 0.89, 3.9, 3.1),
            {"name": "reactnet", "kind": "binary", "status": "skipped", "results": {}},
        ]
    }
    lines = summary_lines(report)
    assert (
        lines[0]
        == "s2bnet is ahead of every evaluated binary and classical method on Q2n, SAM and ERGAS (2 methods)."
    )
    assert "fusionnet" in lines[1] and "Q2n 0.93 vs 0.95" in lines[1] and "OPs 0.1x" in lines[1]
    assert "checkpoint 2.5x" in lines[1]
    assert lines[2] == "bnnpan is not ahead of: gsa (Q2n, ERGAS)." and len(lines) == 4
