"""``binsharp quickstart`` end to end on a small generated dataset with a temporary zoo: printed table,
figures opened and checked, HTML report with its tables and embedded images."""

from __future__ import annotations

import base64
import json
import re

import matplotlib.image as mpimg
import numpy as np
import pytest

from binsharp import zoo
from binsharp.cli import main
from binsharp.report.figures import DPI
from tiny_zoo import DATASET, tiny_assets


@pytest.fixture
def assets(tmp_path_factory, monkeypatch):
    paths = tiny_assets(tmp_path_factory)
    monkeypatch.setenv(zoo.ZOO_ENV, str(paths["zoo"]))
    return paths


def _size(w_in: float, h_in: float) -> tuple[int, int]:
    """Pixel (height, width) of a figure of w_in x h_in inches at the report DPI."""
    return round(h_in * DPI), round(w_in * DPI)


def _check_png(path, expected_hw):
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    h, w = img.shape[:2]
    assert abs(h - expected_hw[0]) <= 1 and abs(w - expected_hw[1]) <= 1, (path.name, img.shape, expected_hw)
    rgb = img[..., :3]
    assert rgb.std() > 0.02  # not a blank canvas
    assert len(np.unique(rgb.reshape(-1, 3)[::7], axis=0)) > 20
    return img


def test_quickstart_end_to_end(assets, tmp_path, capsys):
    out = tmp_path / "qs"
    classical = ["exp", "gsa", "mtf-glp-fs"]
    rc = main(
        ["quickstart", "--out", str(out), "--data", str(assets["data"]), "--models", "pnn,s2bnet",
         "--classical", ",".join(classical), "--fr-limit", "1", "--no-progress"]
    )  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    # settings, the missing network named, the table printed
    assert "MISSING pretrained weights for: s2bnet" in printed
    assert f"trained on {DATASET}" in printed and "first 1 images" in printed
    assert "Reduced resolution" in printed and "Full resolution" in printed
    for name in (*classical, "pnn"):
        assert re.search(rf"^{re.escape(name)}\s", printed, re.M), name

    report = json.loads((out / "results.json").read_text())
    names = [m["name"] for m in report["methods"]]
    assert names == [*classical, "pnn", "s2bnet"]
    assert report["methods"][-1]["status"] == "skipped"
    assert report["data"]["rr"]["n_images"] == 2 and report["data"]["fr"]["n_images"] == 1

    figs = out / "figures"
    n_methods = len(classical) + 1  # networks with weights
    panel = 2.6
    _check_png(figs / "composites_rr.png", _size(panel * 5, panel + 0.4))  # GT + 4 methods
    _check_png(figs / "errors_rr.png", _size(panel * n_methods + 0.8, panel + 0.4))
    _check_png(figs / "sam_rr.png", _size(panel * n_methods + 0.8, panel + 0.4))
    _check_png(figs / "full_resolution.png", _size(panel * 5, panel * 2 + 0.4))  # PAN, MS + 4 methods
    _check_png(figs / "ops_vs_q2n.png", _size(6.0, 4.2))
    _check_png(figs / "training_curves.png", _size(3.6 * 4, 3.2))

    html = (out / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert html.count("<table>") >= 4  # reduced, full resolution, complexity, skipped
    assert "Q2n ↑" in html and "HQNR ↑" in html and "s2bnet" in html and "Missing pretrained weights" in html
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == 6
    for data in images:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "results.md").read_text()
    assert "| pnn |" in md and "### Skipped" in md

    # a second run into the same directory needs --overwrite
    assert main(["quickstart", "--out", str(out), "--data", str(assets["data"]), "--no-progress"]) == 2
    assert "exists" in capsys.readouterr().err
