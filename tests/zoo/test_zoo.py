"""Model zoo: training script into a temporary zoo, pretrained loading round trip, missing/corrupt entries,
the --model/--pretrained fuser source (the tiny zoo of ``tests/tiny_zoo.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from binsharp import models, zoo
from binsharp.cli import main
from binsharp.errors import BinsharpError
from binsharp.fileio import sha256_file
from binsharp.nn.complexity import count
from tiny_zoo import DATASET, ROOT, ZOO_MODELS, load_train_zoo, make_scene, tiny_assets


@pytest.fixture
def assets(tmp_path_factory, monkeypatch) -> dict[str, Path]:
    paths = tiny_assets(tmp_path_factory)
    monkeypatch.setenv(zoo.ZOO_ENV, str(paths["zoo"]))
    return paths


def test_train_zoo_fills_the_zoo_with_checkpoint_log_manifest_and_provenance(assets):
    manifest = json.loads((assets["zoo"] / "manifest.json").read_text())
    assert manifest["format"] == zoo.FORMAT
    assert zoo.available() == {DATASET: sorted(ZOO_MODELS)}
    for name in ZOO_MODELS:
        e = manifest["checkpoints"][DATASET][name]
        ck = assets["zoo"] / e["checkpoint"]
        assert ck == assets["zoo"] / DATASET / f"{name}.safetensors" and ck.is_file()
        assert e["sha256"] == sha256_file(ck) and e["bytes"] == ck.stat().st_size
        assert (assets["zoo"] / e["meta"]).is_file()
        # budget, seed, command, wall time and machine are recorded
        stage = e["budget"]["stages"][0]
        assert e["budget"]["steps"] == 4 and stage["batch_size"] == 2 and stage["warmup_steps"] == 1
        assert e["seed"] == 0 and "--steps 4 --batch 2" in e["command"] and e["wall_time_s"] > 0
        assert e["machine"]["cpu_count"] >= 1 and "torch" in e["machine"]
        net = models.create(name)
        assert (
            e["complexity"]["size"] == 256
            and e["complexity"]["ops"] == count(net, net.example_inputs(256)).ops
        )
        assert e["kind"] == models.model_info(name)["kind"] and e["bands"] == 8 and e["sensor"] == "WV3"
        # the training log joins the stage logs with the global step; the data manifest is the dataset's
        log = (assets["zoo"] / e["log"]).read_text().splitlines()
        assert log[0].startswith("stage,global_step") and "val/q2n" in log[0] and len(log) >= 2
        dm = json.loads((assets["zoo"] / e["data_manifest"]).read_text())
        assert dm == json.loads((assets["data"] / "manifest.json").read_text())
    # the package's own zoo was not touched
    assert zoo.zoo_dir(ROOT / "src" / "binsharp" / "zoo" / "weights") != assets["zoo"]


def test_pretrained_round_trip_matches_the_checkpoint(assets):
    from binsharp.models import load_checkpoint

    net = models.create("pnn", pretrained=DATASET)
    assert not net.training and net.model_name == "pnn"
    ref, meta = load_checkpoint(assets["zoo"] / DATASET / "pnn.safetensors")
    x = net.example_inputs(32)
    with torch.no_grad():
        assert torch.equal(net(**x), ref(**x))
    # same through the zoo API, with the metadata
    net2, meta2 = models.load_pretrained("PNN", DATASET.upper())
    assert meta2["model"] == "pnn" and meta2["step"] == 4 and meta2["data_manifest"]["name"] == DATASET
    for k, v in net.state_dict().items():
        assert torch.equal(v, net2.state_dict()[k])


def test_missing_pretrained_names_what_exists(assets):
    with pytest.raises(
        BinsharpError, match=r"no pretrained weights exist for model 's2bnet'.*tiny: bnn, pnn"
    ):
        models.create("s2bnet", pretrained=DATASET)
    with pytest.raises(BinsharpError, match=r"dataset 'wv3-longmont'.*available: tiny: bnn, pnn"):
        models.create("pnn", pretrained="wv3-longmont")
    with pytest.raises(BinsharpError, match="unknown model"):
        models.create("nope", pretrained=DATASET)
    # architecture arguments must match the checkpoint
    with pytest.raises(BinsharpError, match="takes 8 bands, not 4"):
        models.create("pnn", bands=4, pretrained=DATASET)


def test_empty_zoo_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv(zoo.ZOO_ENV, str(tmp_path / "empty"))
    assert zoo.available() == {}
    with pytest.raises(BinsharpError, match="holds no pretrained checkpoints"):
        models.create("s2bnet", pretrained="wv3-longmont")


def test_corrupt_zoo_checkpoint_and_manifest_are_refused(assets, tmp_path, monkeypatch):
    import shutil

    copy = tmp_path / "zoo"
    shutil.copytree(assets["zoo"], copy)
    monkeypatch.setenv(zoo.ZOO_ENV, str(copy))
    ck = copy / DATASET / "pnn.safetensors"
    data = bytearray(ck.read_bytes())
    data[-1] ^= 0xFF
    ck.write_bytes(bytes(data))
    with pytest.raises(BinsharpError, match="corrupt"):
        models.create("pnn", pretrained=DATASET)
    ck.unlink()
    with pytest.raises(BinsharpError, match="missing"):
        zoo.checkpoint_path("pnn", DATASET)
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(BinsharpError, match="corrupt zoo manifest"):
        zoo.available()


def test_add_checkpoint_refuses_to_replace_without_overwrite(assets, tmp_path):
    ck = assets["zoo"] / DATASET / "pnn.safetensors"
    root = tmp_path / "z"
    e = zoo.add_checkpoint(ck, dataset=DATASET, root=root, info={"seed": 7})
    assert e["seed"] == 7 and zoo.available(root) == {DATASET: ["pnn"]}
    with pytest.raises(BinsharpError, match="already holds"):
        zoo.add_checkpoint(ck, dataset=DATASET, root=root)
    zoo.add_checkpoint(ck, dataset=DATASET, root=root, overwrite=True)


def test_cli_evaluate_and_fuse_with_model_and_pretrained(assets, tmp_path, capsys):
    out = tmp_path / "res.json"
    rc = main(
        ["evaluate", "--model", "pnn", "--pretrained", DATASET, "--data", str(assets["data"]),
         "--split", "rr", "--json", str(out)]
    )  # fmt: skip
    assert rc == 0
    report = json.loads(out.read_text())
    assert set(report["results"]["rr"]) == {"pnn"}
    assert np.isfinite(report["results"]["rr"]["pnn"]["mean"]["q2n"])
    rc = main(["evaluate", "--model", "s2bnet", "--pretrained", DATASET, "--data", str(assets["data"])])
    assert rc == 2
    assert "no pretrained weights exist for model 's2bnet'" in capsys.readouterr().err

    import rasterio

    pan, ms = make_scene(16, 16)
    for name, r in (("pan.tif", pan), ("ms.tif", ms)):
        with rasterio.open(
            tmp_path / name, "w", driver="GTiff", count=r.array.shape[0], height=r.array.shape[1],
            width=r.array.shape[2], dtype="uint16", crs="EPSG:32613", transform=r.transform,
        ) as dst:  # fmt: skip
            dst.write(r.array)
    fused = tmp_path / "fused.tif"
    rc = main(
        ["fuse", "--model", "pnn", "--pretrained", DATASET, "--pan", str(tmp_path / "pan.tif"), "--ms",
         str(tmp_path / "ms.tif"), "-o", str(fused), "--tile", "0"]
    )  # fmt: skip
    assert rc == 0
    with rasterio.open(fused) as src:
        assert (src.count, src.height, src.width) == (8, 64, 64)
        assert np.isfinite(src.read()).all()


# ---------------------------------------------------------------------------------- the shipped zoo
PACKAGE_ZOO = ROOT / "src" / "binsharp" / "zoo" / "weights"
SHIPPED = [(ds, m) for ds, names in zoo.available(PACKAGE_ZOO).items() for m in names]


@pytest.mark.skipif(not SHIPPED, reason="the package zoo holds no checkpoints")
@pytest.mark.parametrize("dataset,name", SHIPPED)
def test_shipped_checkpoints_load_and_carry_their_provenance(dataset, name):
    """Every checkpoint shipped in the package loads by name (checksum verified), rebuilds its registered
    architecture, runs, and comes with its training log, data manifest, command and budget."""
    e = zoo.entry(name, dataset, PACKAGE_ZOO)
    assert e["sha256"] == sha256_file(PACKAGE_ZOO / e["checkpoint"])
    net, meta = models.load_pretrained(name, dataset, root=PACKAGE_ZOO)
    assert not net.training and net.model_name == name
    # the checkpoint's configuration; arguments added to the factory since then take their defaults
    defaults = models.model_info(name)["defaults"]
    assert net.config == {**net.config, **meta["config"]}
    assert all(net.config[k] == defaults[k] for k in set(net.config) - set(meta["config"]))
    assert e["kind"] == models.model_info(name)["kind"]
    x = net.example_inputs(16)
    with torch.no_grad():
        y = net(**x)
    assert y.shape == x["lms"].shape and torch.isfinite(y).all()
    assert not torch.equal(y, x["lms"])  # trained: no longer the initial out = lms
    log = (PACKAGE_ZOO / e["log"]).read_text().splitlines()
    assert log[0].startswith("stage,global_step") and len(log) > 2
    assert json.loads((PACKAGE_ZOO / e["data_manifest"]).read_text())["name"] == dataset
    assert "train_zoo.py" in e["command"] and e["seed"] == meta["seed"]
    assert e["budget"]["steps"] == meta["step"]


def test_train_zoo_recipe_variant_applies_to_binary_networks_that_can_take_it():
    import argparse

    tz = load_train_zoo()
    args = argparse.Namespace(recipe_variant="two-step", steps=40, warmup=4)
    cfg, applied = tz.with_recipe_variant("bnn", None, args)
    assert applied == "two-step" and cfg["recipe"]["warmup_steps"] == 4
    assert [s["steps"] for s in cfg["recipe"]["stages"]] == [20, 20] and cfg["recipe"]["stages"][0][
        "float_twin"
    ]
    assert tz.with_recipe_variant("pnn", None, args) == (None, "baseline")  # full precision: its own recipe
    cfg, applied = tz.with_recipe_variant("bnnpan", None, args)  # three stages of its own
    assert cfg is None and applied.startswith("baseline (two-step: ") and "stages of its own" in applied
