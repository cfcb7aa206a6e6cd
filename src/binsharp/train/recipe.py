"""Run configurations: a recipe plus data, validation and trainer settings, merged in layers.

The recipe schema, its validator (:func:`~binsharp.models.recipes.resolve_stages`), :class:`Stage` and the
merging rule (:func:`~binsharp.models.recipes.deep_merge`) are those of :mod:`binsharp.models.recipes`.

A *run configuration* (a YAML file given with ``--config``, or the packaged
``src/binsharp/configs/<model>-<dataset>.yaml``, see :func:`packaged_config`) holds ``recipe`` (merged over
the model's default recipe), ``model`` (constructor keyword overrides), ``data`` (``name``, ``val`` h5 file,
``bits``, ``sensor``, ``num_workers``, ``augment``, ``val_batch_size``, ``val_max_batches``, ``pin_memory``:
page-locked batches for a GPU, default on for any accelerator but ``cpu``), ``validation`` (``metrics``,
``block``, ``dim_cut``), ``seed`` and ``trainer`` (``log_every``, ``accelerator``, ``devices``,
``num_nodes``, ``strategy``, ``precision``: Lightning's, e.g. ``32-true`` or ``bf16-mixed`` for bf16
autocast; ``channels_last``: model and batches in the channels-last memory format; ``deterministic``:
Lightning's switch, default ``true`` on CPU and ``"warn"`` on other accelerators, where some kernels, e.g.
the bilinear upsampling backward on CUDA, have no deterministic implementation).

Layers, lowest first: the engine defaults (:data:`~binsharp.models.recipes.DEFAULT_STAGE`,
:data:`DEFAULT_RUN`), the model's default recipe, the packaged configuration of the model and dataset,
``--config FILE``, the command-line options.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from binsharp import models
from binsharp.errors import BinsharpError
from binsharp.models.recipes import DEFAULT_STAGE, Stage, deep_merge, resolve_stages

__all__ = [
    "DEFAULT_RUN",
    "DEFAULT_STAGE",
    "RECIPE_VARIANTS",
    "RunConfig",
    "Stage",
    "build_run_config",
    "deep_merge",
    "packaged_config",
    "read_config",
    "recipe_variant",
    "resolve_stages",
    "scale_steps",
]

#: Default run configuration (everything except the recipe).
DEFAULT_RUN: dict[str, Any] = {
    "seed": 0,
    "model": {},
    "data": {
        "name": None,
        "val": None,
        "bits": None,
        "sensor": None,
        "num_workers": 0,
        "augment": False,
        "val_batch_size": None,
        "val_max_batches": None,
        "pin_memory": None,
    },
    "validation": {"metrics": True, "block": 32, "dim_cut": 0},
    "trainer": {
        "log_every": 10,
        "accelerator": "cpu",
        "devices": 1,
        "num_nodes": 1,
        "strategy": "auto",
        "precision": "32-true",
        "channels_last": False,
        "deterministic": None,
    },
}


def scale_steps(stages: list[Stage], total: int) -> list[Stage]:
    """Return copies of ``stages`` whose steps sum to ``total``, in proportion to their own steps.

    Used for ``--max-steps``: one stage simply gets ``total`` steps; several stages share the budget by
    largest remainders, each keeping at least one step (so the sum is ``max(total, len(stages))``).
    """
    if total < 1:
        raise BinsharpError(f"max steps must be >= 1, got {total}")
    weights = [s.steps for s in stages]
    budget = max(total, len(stages))
    raw = [budget * w / sum(weights) for w in weights]
    steps = [max(1, int(math.floor(r))) for r in raw]
    order = sorted(range(len(stages)), key=lambda i: raw[i] - math.floor(raw[i]), reverse=True)
    k = 0
    while sum(steps) < budget:
        steps[order[k % len(order)]] += 1
        k += 1
    while sum(steps) > budget:
        i = max(range(len(steps)), key=lambda j: steps[j])
        steps[i] -= 1
    return [_replace(s, n) for s, n in zip(stages, steps, strict=False)]


def _replace(stage: Stage, steps: int) -> Stage:
    new = copy.deepcopy(stage)
    new.steps = steps
    return new


def dataset_name(data: str | Path | None) -> str | None:
    """The catalog name of ``data``: a named dataset (``"wv3-longmont"``), or a dataset directory whose
    ``manifest.json`` names one; None for anything else (an h5 file, an unnamed directory)."""
    from binsharp.data.catalog import CATALOG, dataset_info

    if data is None:
        return None
    key = str(data).strip().lower()
    if key in CATALOG and not Path(str(data)).exists():
        return key
    p = Path(str(data))
    if p.is_dir():
        try:
            name = str(dataset_info(p).get("name") or "").lower()
        except BinsharpError:
            return None
        return name if name in CATALOG else None
    return None


def packaged_config(model_name: str, data: str | Path | None) -> dict[str, Any]:
    """The packaged run configuration ``binsharp/configs/<model>-<dataset>.yaml`` of ``model_name`` trained on
    ``data`` (see :func:`dataset_name`); empty when there is none."""
    dataset = dataset_name(data)
    if dataset is None:
        return {}
    name = f"{model_name.strip().lower()}-{dataset}.yaml"
    ref = resources.files("binsharp.configs").joinpath(name)
    if not ref.is_file():
        return {}
    return _parse_yaml(ref.read_text(encoding="utf-8"), f"binsharp/configs/{name}")


def read_config(path: str | Path) -> dict[str, Any]:
    """Read a run configuration YAML file (see the module docstring); raises :class:`BinsharpError`."""
    p = Path(path)
    if not p.is_file():
        raise BinsharpError(f"config file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise BinsharpError(f"config file {p} is not a text (YAML) file") from None
    except OSError as exc:
        raise BinsharpError(f"cannot read config file {p}: {exc.strerror or exc}") from None
    return _parse_yaml(text, str(p))


_RUN_KEYS = ("recipe", "model", "data", "validation", "seed", "trainer")


def _parse_yaml(text: str, where: str) -> dict[str, Any]:
    try:
        cfg = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BinsharpError(f"{where}: not valid YAML ({exc})") from exc
    if cfg is None:
        return {}
    if not isinstance(cfg, dict):
        raise BinsharpError(f"{where}: a config must be a mapping with keys {', '.join(_RUN_KEYS)}")
    unknown = sorted(set(cfg) - set(_RUN_KEYS))
    if unknown:
        raise BinsharpError(f"{where}: unknown config key(s) {unknown} (known: {', '.join(_RUN_KEYS)})")
    return cfg


@dataclass
class RunConfig:
    """A resolved run: the merged recipe and its stages, plus data, validation, trainer settings and seed."""

    recipe: dict[str, Any]
    stages: list[Stage]
    model: dict[str, Any]
    data: dict[str, Any]
    validation: dict[str, Any]
    trainer: dict[str, Any]
    seed: int

    def to_dict(self) -> dict[str, Any]:
        """Serialisable form, with the resolved stages under ``stages``."""
        return {
            "recipe": copy.deepcopy(self.recipe),
            "stages": [s.to_dict() for s in self.stages],
            "model": copy.deepcopy(self.model),
            "data": copy.deepcopy(self.data),
            "validation": copy.deepcopy(self.validation),
            "trainer": copy.deepcopy(self.trainer),
            "seed": self.seed,
        }


def build_run_config(
    model_recipe: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
    *layers: Mapping[str, Any],
    max_steps: int | None = None,
    stage_overrides: Mapping[str, Any] | None = None,
) -> RunConfig:
    """Merge the model's default recipe and the config ``layers`` (lowest first) into a :class:`RunConfig`.

    ``model_recipe`` may be a mapping, or a bare list of stage mappings (then it is ``{"stages": [...]}``).
    Each layer is a run configuration mapping (keys ``recipe``, ``model``, ``data``, ``validation``, ``seed``,
    ``trainer``). ``stage_overrides`` (recipe keys, e.g. ``{"lr": 1e-4}``) are set in every stage after
    merging (command-line overrides); ``max_steps`` then rescales the stages so their steps sum to it (see
    :func:`scale_steps`).
    """
    if model_recipe is None:
        recipe: dict[str, Any] = {}
    elif isinstance(model_recipe, Mapping):
        recipe = copy.deepcopy(dict(model_recipe))
    elif isinstance(model_recipe, Sequence):
        recipe = {"stages": [dict(s) for s in model_recipe]}
    else:
        raise BinsharpError(f"model recipe must be a mapping or a list of stages, got {type(model_recipe)}")
    run = copy.deepcopy(DEFAULT_RUN)
    for layer in layers:
        if not layer:
            continue
        layer = dict(layer)
        if "recipe" in layer and layer["recipe"] is not None:
            r = layer.pop("recipe")
            if isinstance(r, list):
                r = {"stages": r}
            recipe = deep_merge(recipe, r)
        else:
            layer.pop("recipe", None)
        run = deep_merge(run, layer)
    if stage_overrides:
        over = dict(stage_overrides)
        recipe = deep_merge(recipe, over)
        if isinstance(recipe.get("stages"), list):
            recipe["stages"] = [
                deep_merge(s, over) if isinstance(s, Mapping) else s for s in recipe["stages"]
            ]
    stages = resolve_stages(recipe)
    if max_steps is not None:
        stages = scale_steps(stages, int(max_steps))
    try:
        seed = int(run["seed"])
    except (TypeError, ValueError) as exc:
        raise BinsharpError(f"seed must be an integer, got {run['seed']!r}") from exc
    return RunConfig(
        recipe=recipe,
        stages=stages,
        model=dict(run["model"] or {}),
        data=dict(run["data"]),
        validation=dict(run["validation"]),
        trainer=dict(run["trainer"]),
        seed=seed,
    )


#: Training-recipe variants (:func:`recipe_variant`), compared by ``benchmarks/compare_recipes.py``.
RECIPE_VARIANTS = (
    "baseline",
    "no-warmup",
    "lr-low",
    "lr-high",
    "augment",
    "distill-fp",
    "distill-twin",
    "two-step",
)


def recipe_variant(
    variant: str, model: str, steps: int, *, warmup: int = 0, model_args: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The run-configuration layer (``{"recipe": ..., "data": ...}``) of a training-recipe variant.

    Each variant changes one thing against ``model``'s registered recipe with a linear warm-up over
    ``warmup`` steps (``baseline``): ``no-warmup`` (no warm-up), ``lr-low`` / ``lr-high`` (learning rate / 2
    or x 2, of every stage of a multi-stage recipe), ``augment`` (random flips and 90-degree rotations of the
    training patches), ``distill-fp`` (output-L1 distillation, weight 1, from the zoo's full-precision
    FusionNet), ``two-step`` (half the ``steps`` as the float twin, then half binarized) and
    ``distill-twin`` (two-step, the binarized half distilled from the float twin: output L1 + body-feature
    L1, weights 1 and 0.1).

    Raises:
        BinsharpError: an unknown variant, or one the model cannot take: two-step variants with a recipe of
            several stages of its own, distillation with a model's own training loss.
    """
    recipe: dict[str, Any] = {"warmup_steps": warmup}
    data: dict[str, Any] = {}
    registered = models.model_info(model)["recipe"]
    if variant == "no-warmup":
        recipe["warmup_steps"] = 0
    elif variant in ("lr-low", "lr-high"):
        factor = 0.5 if variant == "lr-low" else 2.0
        recipe["lr"] = float(registered.get("lr", 1e-3)) * factor
        if "stages" in registered:  # a stage's own learning rate overrides the top-level one
            recipe["stages"] = [
                {"name": st["name"], "lr": float(st.get("lr", recipe["lr"] / factor)) * factor}
                for st in registered["stages"]
            ]
    elif variant == "augment":
        data["augment"] = True
    elif variant == "distill-fp":
        recipe["distill"] = {"teacher": "zoo:fusionnet"}
    elif variant in ("distill-twin", "two-step"):
        if "stages" in registered:
            raise BinsharpError("its recipe has stages of its own")
        binary: dict[str, Any] = {"name": "binary", "steps": steps - steps // 2}
        if variant == "distill-twin":
            binary["distill"] = {"teacher": "float_twin", "feature_weight": 0.1}
        recipe["stages"] = [{"name": "float", "steps": max(1, steps // 2), "float_twin": True}, binary]
    elif variant != "baseline":
        raise BinsharpError(f"unknown recipe variant {variant!r} (known: {', '.join(RECIPE_VARIANTS)})")
    if "distill" in variant:
        net = models.create(model, **dict(model_args or {}))
        if callable(getattr(net, "training_loss", None)):
            raise BinsharpError("it has a training loss of its own")
    return {"recipe": recipe, "data": data}
