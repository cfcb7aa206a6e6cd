"""Recipe switches: two-step training (float twin first) and distillation from a full-precision teacher."""

from __future__ import annotations

import csv

import pytest
import torch
from test_train import make_h5

from binsharp.errors import BinsharpError
from binsharp.models import create, model_info
from binsharp.train.engine import train
from binsharp.train.recipe import RECIPE_VARIANTS, deep_merge, recipe_variant, resolve_stages

SMALL = {
    "model": {"dim": 8, "n_units": 2},
    "recipe": {"batch_size": 4, "lr": 2e-3},
    "validation": {"block": 16},
    "trainer": {"log_every": 1},
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny-recipes")
    return {"train": make_h5(d / "train.h5", 16), "val": make_h5(d / "val.h5", 4, seed=1)}


def _columns(path):
    with path.open() as f:
        return set(csv.DictReader(f).fieldnames or [])


def test_float_twin_stage_trains_the_shared_weights_only(tiny, tmp_path):
    torch.manual_seed(0)
    init = create("bbcu", bands=4, dim=8, n_units=2).state_dict()
    cfg = {**SMALL, "recipe": {**SMALL["recipe"], "float_twin": True}}
    res = train("bbcu", tiny["train"], out=tmp_path / "run", config=cfg, max_steps=3, progress=False)
    state = res.model.state_dict()
    assert set(state) == set(init)  # the binary network comes back whole
    rsign = [k for k in state if ".input_quantizer." in k]
    assert rsign and all(torch.equal(state[k], init[k]) for k in rsign)  # outside the float twin: untouched
    assert not torch.equal(state["body.units.0.conv.weight"], init["body.units.0.conv.weight"])
    assert res.model.body.units[0].conv.input_quantizer is not None


def test_two_step_recipe_float_then_binary_with_its_twin_as_teacher(tiny, tmp_path):
    recipe = {**SMALL["recipe"], "stages": [
        {"name": "float", "steps": 2, "float_twin": True},
        {"name": "binary", "steps": 2, "distill": {"teacher": "float_twin", "feature_weight": 0.5}},
    ]}  # fmt: skip
    res = train(
        "bbcu", tiny["train"], out=tmp_path / "run", config={**SMALL, "recipe": recipe}, progress=False
    )
    assert res.steps == {"float": 2, "binary": 2}
    cols = _columns(tmp_path / "run/stages/02-binary/logs/metrics.csv")
    assert {"train/distill", "train/distill_feature", "train/task_loss"} <= cols
    assert "train/distill" not in _columns(tmp_path / "run/stages/01-float/logs/metrics.csv")


def test_distillation_from_a_checkpoint_teacher_changes_the_result(tiny, tmp_path):
    pnn = {"model": {"channels": 8}, "recipe": {"batch_size": 4}, "validation": {"block": 16}}
    teacher = train("pnn", tiny["train"], out=tmp_path / "teacher", config=pnn, max_steps=2, progress=False)
    plain = train("bbcu", tiny["train"], out=tmp_path / "plain", config=SMALL, max_steps=2, progress=False)
    cfg = {
        **SMALL,
        "recipe": {**SMALL["recipe"], "distill": {"teacher": str(teacher.checkpoint), "weight": 2}},
    }
    kd = train("bbcu", tiny["train"], out=tmp_path / "kd", config=cfg, max_steps=2, progress=False)
    assert not torch.equal(kd.model.tail.weight, plain.model.tail.weight)
    with pytest.raises(BinsharpError, match="body"):  # pnn has no body to match features with
        cfg["recipe"]["distill"]["feature_weight"] = 1.0
        train("bbcu", tiny["train"], out=tmp_path / "kd2", config=cfg, max_steps=1, progress=False)


@pytest.mark.parametrize(
    "recipe, match",
    [
        ({"float_twin": "yes"}, "float_twin"),
        ({"distill": {"teacher": "float_twin", "alpha": 1}}, "unknown distill"),
        ({"distill": {"weight": -1}}, ">= 0"),
        ({"distill": 3}, "teacher name or a mapping"),
    ],
)
def test_bad_switches_are_refused(recipe, match):
    with pytest.raises(BinsharpError, match=match):
        resolve_stages(recipe)


def test_distill_spellings():
    assert resolve_stages({"distill": "zoo:fusionnet"})[0].distill == {
        "teacher": "zoo:fusionnet", "weight": 1.0, "feature_weight": 0.0}  # fmt: skip
    assert resolve_stages({})[0].distill is None and resolve_stages({})[0].float_twin is False


def test_recipe_variants_change_one_thing_and_refuse_what_a_recipe_cannot_take():
    base = recipe_variant("baseline", "bbcu", 400, warmup=40)
    assert base == {"recipe": {"warmup_steps": 40}, "data": {}}
    for variant in RECIPE_VARIANTS:
        if variant in ("distill-twin", "two-step"):
            with pytest.raises(BinsharpError, match="stages of its own"):
                recipe_variant(variant, "bnnpan", 400)
    # a multi-stage recipe's learning rates are scaled stage by stage (a top-level lr would be overridden)
    lr_high = recipe_variant("lr-high", "bnnpan", 400)["recipe"]
    merged = resolve_stages(deep_merge(model_info("bnnpan")["recipe"], lr_high))
    assert [s.lr for s in merged] == pytest.approx([8e-4, 8e-4, 2e-4])
    two = recipe_variant("two-step", "bbcu", 400)["recipe"]["stages"]
    assert [s["steps"] for s in two] == [200, 200] and two[0]["float_twin"] is True
    assert recipe_variant("augment", "bbcu", 400)["data"] == {"augment": True}
    with pytest.raises(BinsharpError, match="unknown recipe variant"):
        recipe_variant("warmup", "bbcu", 400)
