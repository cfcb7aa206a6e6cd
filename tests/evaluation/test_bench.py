"""``binsharp bench``: JSON and Markdown structure, skipped models, PanCollection h5 files, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from binsharp import zoo
from binsharp.cli import main
from binsharp.data.io import read_h5, write_h5
from binsharp.evaluation import bench
from binsharp.fileio import sha256_file
from tiny_zoo import DATASET, tiny_assets


@pytest.fixture
def assets(tmp_path_factory, monkeypatch):
    paths = tiny_assets(tmp_path_factory)
    monkeypatch.setenv(zoo.ZOO_ENV, str(paths["zoo"]))
    return paths


def test_bench_json_and_markdown(assets, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "4096")
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
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
    # the allocator the latencies were measured with is recorded and printed
    assert report["settings"]["latency"]["allocator"] == "MALLOC_TRIM_THRESHOLD_=4096"
    assert "allocator: MALLOC_TRIM_THRESHOLD_=4096" in text


def test_allocator_info_names_the_glibc_settings_or_the_defaults(monkeypatch):
    for name in bench.MALLOC_ENV:
        monkeypatch.delenv(name, raising=False)
    assert bench.allocator_info() == "defaults"
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "1")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "2")
    assert bench.allocator_info() == "MALLOC_MMAP_THRESHOLD_=1 MALLOC_TRIM_THRESHOLD_=2"


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


def _method(name, rr=None, fr=None):
    results = {}
    for split, per_image in (("rr", rr), ("fr", fr)):
        if per_image is not None:
            keys = per_image[0]
            results[split] = {"mean": {k: float(np.mean([d[k] for d in per_image])) for k in keys},
                              "per_image": per_image}  # fmt: skip
    return {"name": name, "kind": "binary", "status": "ok", "results": results}


def test_paired_tests_of_the_featured_networks_per_split_and_index():
    """Each featured network against every other method, per index: scipy's Wilcoxon p-value on the
    per-image values, the images it wins, significance at alpha; a pair that cannot be tested says why."""
    from scipy.stats import wilcoxon

    from binsharp.evaluation.bench import PAIRED_INDEXES, paired_tests
    from binsharp.metrics import WILCOXON_TEST
    from binsharp.report.tables import paired_tables

    rng = np.random.default_rng(0)
    base = rng.uniform(0.8, 0.9, 10)
    # s2bnet better than bbcu on every image for Q2n and SAM; ERGAS mixed
    s2b = [
        {"q2n": q + 0.02, "sam": 2.0, "ergas": 2.0 + e}
        for q, e in zip(base, rng.normal(0, 0.1, 10), strict=True)
    ]
    bbcu = [{"q2n": q, "sam": 2.5 + 0.01 * i, "ergas": 2.0} for i, q in enumerate(base)]
    bad = [dict(d, q2n=float("inf") if i == 0 else d["q2n"]) for i, d in enumerate(bbcu)]
    methods = [_method("s2bnet", s2b), _method("bbcu", bbcu), _method("exp", bad), _method("pnn")]
    pt = paired_tests(methods, ("s2bnet", "bnnpan"), alpha=0.05)
    assert pt["test"] == WILCOXON_TEST and pt["indexes"] == {"rr": list(PAIRED_INDEXES["rr"])}
    pairs = {(p["method"], p["against"]): p for p in pt["pairs"]}
    assert set(pairs) == {("s2bnet", "bbcu"), ("s2bnet", "exp")}  # no bnnpan results, pnn has none
    t = pairs["s2bnet", "bbcu"]["indexes"]
    for idx in ("q2n", "sam", "ergas"):
        expected = wilcoxon([d[idx] for d in s2b], [d[idx] for d in bbcu]).pvalue
        assert t[idx]["p_value"] == pytest.approx(expected)
        assert t[idx]["significant"] == (expected < 0.05)
    assert t["q2n"]["wins"] == 10 and t["sam"]["wins"] == 10 and t["q2n"]["significant"]
    assert t["q2n"]["mean_diff"] == pytest.approx(0.02) and t["sam"]["mean_diff"] < 0
    assert "non-finite" in pairs["s2bnet", "exp"]["reason"]
    (table,) = paired_tables({"paired_tests": pt})
    md = table.to_markdown()
    assert "s2bnet against each method" in md and WILCOXON_TEST in md and "not tested" in md
    assert "10/10 better" in md and " *" in md


def test_bench_reports_paired_tests(assets, tmp_path):
    """``run_benchmark`` records the paired tests of its featured networks and the report renders them."""
    from binsharp.evaluation.bench import BenchSettings, run_benchmark
    from binsharp.report import markdown_report

    settings = BenchSettings(data=str(assets["data"]), models=["pnn", "bnn"], classical=["exp"],
                             pretrained=DATASET, fr_limit=2, latency=False, engine=False, progress=False,
                             count_skipped=False, featured=("bnn",))  # fmt: skip
    report = run_benchmark(settings).report
    pt = report["paired_tests"]
    assert {(p["split"], p["against"]) for p in pt["pairs"]} == {
        (s, m) for s in ("rr", "fr") for m in ("exp", "pnn")
    }
    for p in pt["pairs"]:
        assert p["method"] == "bnn" and p["n"] == 2 and set(p["indexes"]) == set(pt["indexes"][p["split"]])
        assert all(0 < t["p_value"] <= 1 for t in p["indexes"].values())
    md = markdown_report(report)
    assert "Paired tests, reduced resolution: bnn against each method" in md
    assert "Paired tests, full resolution" in md and pt["test"] in md
