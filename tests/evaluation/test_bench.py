"""``binsharp bench``: JSON and Markdown structure, skipped models, PanCollection h5 files, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from binsharp import zoo
from binsharp.cli import main
from binsharp.data.io import read_h5, write_h5
from binsharp.fileio import sha256_file
from tiny_zoo import DATASET, tiny_assets


@pytest.fixture
def assets(tmp_path_factory, monkeypatch):
    paths = tiny_assets(tmp_path_factory)
    monkeypatch.setenv(zoo.ZOO_ENV, str(paths["zoo"]))
    return paths


def test_bench_json_and_markdown(assets, tmp_path, capsys):
    js, md = tmp_path / "bench.json", tmp_path / "bench.md"
    rc = main(
        ["bench", "--data", str(assets["data"]), "--models", "pnn,bnn,fusionnet", "--classical", "exp,gsa",
         "--pretrained", DATASET, "--fr-limit", "2", "--size", "64", "--repeats", "1", "--no-progress",
         "--json", str(js), "--markdown", str(md)]
    )  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    report = json.loads(js.read_text())
    assert set(report["data"]) == {"rr", "fr"}
    assert report["data"]["rr"]["n_images"] == 2 and report["data"]["fr"]["n_images"] == 2
    assert report["data"]["rr"]["sensor"] == "WV3"
    methods = {m["name"]: m for m in report["methods"]}
    assert list(methods) == ["exp", "gsa", "pnn", "bnn", "fusionnet"]
    for name in ("exp", "gsa", "pnn", "bnn"):
        m = methods[name]
        assert m["status"] == "ok"
        rr, fr = m["results"]["rr"], m["results"]["fr"]
        assert set(rr["mean"]) >= {"q2n", "sam", "ergas", "scc", "psnr", "ssim"}
        assert set(fr["mean"]) >= {"d_lambda_k", "d_s", "hqnr"}
        assert len(rr["per_image"]) == 2 and len(fr["per_image"]) == 2
        assert all(np.isfinite(v) for v in rr["mean"].values())
    # classical methods: numpy latency, no complexity; networks: counts, sizes and latency
    assert methods["exp"]["latency"]["numpy_s"] > 0 and "complexity" not in methods["exp"]
    for name in ("pnn", "bnn"):
        m = methods[name]
        assert m["complexity"]["ops"] > 0 and m["complexity"]["params"] > 0
        ck = assets["zoo"] / DATASET / f"{name}.safetensors"
        assert m["size"]["checkpoint_bytes"] == ck.stat().st_size
        assert m["latency"]["torch_s"] > 0
        assert m["pretrained"]["sha256"] == sha256_file(ck)
    assert methods["bnn"]["complexity"]["bops"] > 0 and methods["pnn"]["complexity"]["bops"] == 0
    bnn = methods["bnn"]
    assert ("bsp_bytes" in bnn["size"] and bnn["latency"]["engine_s"] > 0) or "bsp_reason" in bnn["size"]
    if "bsp_bytes" in bnn["size"]:
        assert bnn["size"]["bsp_bytes"] < bnn["size"]["checkpoint_bytes"]
    # a model without pretrained weights is skipped with the reason, never evaluated
    fn = methods["fusionnet"]
    assert (
        fn["status"] == "skipped" and fn["reason"] == f"no pretrained weights for {DATASET} in the model zoo"
    )
    assert "no pretrained weights exist for model 'fusionnet'" in fn["detail"] and fn["zoo_holds"] == [
        "bnn",
        "pnn",
    ]
    assert fn["results"] == {} and fn["complexity"]["ops"] > 0
    # Markdown: one table per split, complexity and skipped lists, every row present
    text = md.read_text()
    assert text in printed or text.strip() in printed
    assert "### Reduced resolution" in text and "### Full resolution" in text
    assert "| Method | Type | Q2n ↑ | SAM ↓ | ERGAS ↓ | SCC ↑ | PSNR ↑ | SSIM ↑ |" in text
    assert "| Method | Type | D_λ^K ↓ | D_s ↓ | HQNR ↑ |" in text
    assert "### Complexity, size and speed" in text and "### Skipped" in text
    rr_table = text.split("### Reduced resolution")[1].split("###")[0]
    for name in ("exp", "gsa", "pnn", "bnn"):
        assert f"| {name} |" in rr_table
    assert "| fusionnet |" not in rr_table
    assert " ± " in rr_table and "**" in rr_table  # mean ± std, best values in bold


def test_bench_on_pancollection_h5_files(assets, tmp_path, capsys):
    rr = read_h5(assets["data"] / "test_rr.h5")
    fr = read_h5(assets["data"] / "test_fr.h5")
    with_gt = write_h5(tmp_path / "test_wv3_multiExm1.h5", rr)  # no attributes, like PanCollection
    no_gt = write_h5(tmp_path / "test_wv3_OrigScale.h5", {k: v[:2] for k, v in fr.items() if k != "gt"})
    base = ["bench", "--models", "pnn", "--classical", "exp", "--pretrained", DATASET, "--no-latency",
            "--no-engine", "--size", "64", "--no-progress"]  # fmt: skip
    assert main([*base, "--data", str(with_gt)]) == 2
    assert "pass --sensor" in capsys.readouterr().err
    js = tmp_path / "rr.json"
    cross = ["--cross", str(assets["data"]), "--fr-limit", "1"]
    assert main([*base, "--data", str(with_gt), "--sensor", "WV3", "--json", str(js), *cross]) == 0
    printed = capsys.readouterr().out
    report = json.loads(js.read_text())
    assert set(report["data"]) == {"rr", "cross_rr", "cross_fr"}
    assert report["data"]["rr"]["name"] == with_gt.name and report["data"]["cross_fr"]["n_images"] == 1
    assert set(report["methods"][1]["results"]) == {"rr", "cross_rr", "cross_fr"}
    assert (
        "### Cross-sensor, reduced resolution" in printed and "### Cross-sensor, full resolution" in printed
    )
    js = tmp_path / "fr.json"
    assert main([*base, "--data", str(no_gt), "--sensor", "WV3", "--json", str(js)]) == 0
    report = json.loads(js.read_text())
    assert set(report["data"]) == {"fr"}
    assert set(report["methods"][0]["results"]["fr"]["mean"]) >= {"d_lambda_k", "d_s", "hqnr"}
    assert "latency" not in report["methods"][1]


def test_bench_bad_input(assets, tmp_path, capsys):
    assert main(["bench", "--data", str(assets["data"]), "--models", "nope", "--no-progress"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    assert main(["bench", "--data", str(tmp_path / "missing.h5"), "--models", "none", "--no-progress"]) == 2
    assert "not found" in capsys.readouterr().err
    existing = tmp_path / "x.json"
    existing.write_text("{}")
    rc = main(["bench", "--data", str(assets["data"]), "--models", "none", "--json", str(existing)])
    assert rc == 2 and existing.read_text() == "{}"
