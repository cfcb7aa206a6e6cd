"""``benchmarks/compare_recipes.py`` with tiny settings: every variant runs or says why it cannot."""

from __future__ import annotations

import importlib.util
import json

from binsharp.data.builder import build_dataset
from tiny_zoo import ROOT, make_scene


def test_compare_recipes_writes_table_and_curves(tmp_path, monkeypatch):
    pan, ms = make_scene()
    splits = {"train": 0.35, "val": 0.15, "test": 0.5}
    opts = {"patch": 32, "stride": 16, "test_tile": 96, "min_test_tiles": 2, "fr_tile": 64, "margin": 20}
    out_dir = tmp_path / "data"
    build_dataset(pan, ms, sensor="WV3", out_dir=out_dir, name="tiny", splits=splits, progress=False, **opts)
    spec = importlib.util.spec_from_file_location(
        "compare_recipes", ROOT / "benchmarks" / "compare_recipes.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "docs" / "recipes.md"
    args = ["--models", "bbcu", "--variants", "baseline,augment,distill-fp,distill-twin",
                      "--data", str(tmp_path / "data"), "--steps", "4", "--batch", "2", "--val-every", "2",
                      "--model-args", json.dumps({"dim": 8, "n_units": 2}), "--runs", str(tmp_path / "runs"),
                      "--out", str(out)]  # fmt: skip
    assert module.main(args) == 0
    text = out.read_text()
    rows = {line.split("|")[2].strip(): line for line in text.splitlines() if line.startswith("| bbcu")}
    assert set(rows) == {"baseline", "augment", "distill-fp", "distill-twin"}
    assert "n/a" in rows["distill-fp"] and "tiny" in rows["distill-fp"]  # no FusionNet in the zoo for it
    assert "n/a" not in rows["distill-twin"] and "n/a" not in rows["augment"]
    assert (tmp_path / "docs" / "figures" / "recipes-curves.png").is_file()
    assert len(module.val_curve(tmp_path / "runs" / "bbcu-distill-twin")) == 2  # steps 2 and 4 over 2 stages

    # a second invocation with the same settings reuses the finished runs instead of training again
    first = text
    import binsharp.train

    def no_training(*_a, **_k):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(binsharp.train, "train", no_training)
    assert module.main(args) == 0
    assert [x for x in out.read_text().splitlines() if x.startswith("| bbcu")] == [
        x for x in first.splitlines() if x.startswith("| bbcu")
    ]

    # --report-only reports the finished runs and lists a variant not run, without training it
    assert module.main([*args[:3], "baseline,lr-high", *args[4:], "--report-only"]) == 0
    rows = {x.split("|")[2].strip(): x for x in out.read_text().splitlines() if x.startswith("| bbcu")}
    assert "not run" in rows["lr-high"] and "n/a" not in rows["baseline"]
