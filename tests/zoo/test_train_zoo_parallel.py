"""``benchmarks/train_zoo.py --time-limit``: the concurrent, time-limited zoo training of a GPU lease, run on
CPU with a few steps (inputs from a scene pack file, measured budget, resumable runs, merge into a zoo)."""

from __future__ import annotations

import json

from binsharp import zoo
from binsharp.data.pack import pack_scene
from tiny_zoo import load_train_zoo, make_scene

BUILD = {"splits": {"train": 0.35, "val": 0.15, "test": 0.5}, "patch": 32, "stride": 16, "test_tile": 96,
         "min_test_tiles": 2, "fr_tile": 64, "margin": 20}  # fmt: skip


def test_time_limited_parallel_run_from_a_pack_and_merge(tmp_path):
    pan, ms = make_scene()
    pack_scene(pan, ms, tmp_path / "scene.npz", name="tiny", sensor="WV3", build_kwargs=BUILD)
    out, runs = tmp_path / "gpu-zoo", tmp_path / "runs"
    args = ["--inputs", str(tmp_path / "scene.npz"), "--models", "pnn,bnn", "--time-limit", "300",
            "--measure", "0.2", "--steps", "4", "--batch", "2", "--val-every", "2", "--accelerator", "cpu",
            "--out", str(out), "--runs", str(runs)]  # fmt: skip
    assert load_train_zoo().main(args) == 0
    plan = json.loads((out / "budget.json").read_text())
    assert plan["steps"] == 4 and set(plan["steps_per_s"]) == {"pnn", "bnn"}
    assert all(r > 0 for r in plan["steps_per_s"].values())
    assert plan["outcome"] == {"pnn": "done", "bnn": "done"}
    entries = zoo.read_manifest(out)["checkpoints"]["tiny"]
    assert {m: e["step"] for m, e in entries.items()} == {"pnn": 4, "bnn": 4}
    assert (runs / "logs" / "bnn.log").is_file() and (runs / "data" / "scene" / "train.h5").is_file()
    # one command merges the folder into another zoo
    target = tmp_path / "zoo"
    assert load_train_zoo().main(["--merge", str(out), "--out", str(target)]) == 0
    merged = zoo.read_manifest(target)["checkpoints"]["tiny"]
    assert {m: e["sha256"] for m, e in merged.items()} == {m: e["sha256"] for m, e in entries.items()}
    assert merged["bnn"]["budget"] == entries["bnn"]["budget"] and (target / merged["bnn"]["log"]).is_file()
    # a rerun with --resume keeps the recorded budget instead of measuring again
    assert load_train_zoo().main([*args, "--resume"]) == 0
    assert json.loads((out / "budget.json").read_text())["steps"] == 4
