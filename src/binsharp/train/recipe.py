"""Training recipes and run configurations.

A *recipe* describes how a model is trained. It is a mapping of stage settings; the optional ``stages``
list splits training into consecutive stages (BNNPan's stages I-III, for example), each inheriting the
top-level settings and overriding any of them::

    steps: 1000            # optimiser steps of the stage (for a multi-stage recipe: per stage, unless given)
    batch_size: 16
    optimizer: adam        # adam | adamw
    lr: 1.0e-3
    weight_decay: 0.0
    betas: [0.9, 0.999]
    scheduler: step        # none (or constant) | step | multistep | cosine; may also be a mapping
                           # {name: cosine, min_lr: 1.0e-6} / {name: step, step_size: .., gamma: ..}
    step_size: 500         #   step: multiply the lr by ``gamma`` every ``step_size`` steps
    gamma: 0.5             #   step, multistep
    milestones: [600, 900] #   multistep
    eta_min: 0.0           #   cosine: final lr (cosine annealing over the stage's steps)
    warmup_steps: 0        # linear warm-up before the schedule (all schedulers)
    loss: l1               # l1 | mse | charbonnier | smooth_l1
    grad_clip: null        # clip the global gradient norm to this value (null: no clipping)
    val_every: 250         # validate every N steps (0: only at the end of the stage)
    ckpt_every: 250        # write a resumable checkpoint every N steps
    trainable: ["*"]       # glob patterns of parameter names trained in this stage
    frozen: []             # glob patterns of parameter names kept fixed (applied after ``trainable``)
    eval_modules: []       # glob patterns of module names kept in eval mode (frozen BatchNorm statistics)
    hooks: {}              # event -> model method names (dotted), see binsharp.train.task
    options: {}            # free-form settings the model's hooks read from ``stage.options``
    float_twin: false      # train the network's float twin: quantizers removed, the same latent weights,
                           # BN, RPReLU, ...; a later binary stage starts from them (two-step training)
    distill: null          # distillation from a full-precision teacher, or a mapping
                           # {teacher: float_twin | zoo:<model>[/<dataset>] | <checkpoint.safetensors>,
                           #  weight: 1.0, feature_weight: 0.0}: loss += weight * L1(out, teacher out)
                           # + feature_weight * L1(body features, teacher body features); float_twin = the
                           # network itself with its quantizers removed, frozen at the start of the stage
    source: "..."          # informational (also description, notes): recorded, not used
    stages:
      - {name: I, steps: 300, lr: 2.0e-4}
      - {name: II, steps: 300, trainable: ["prior.denoiser.*"]}

A *run configuration* (a YAML file given with ``--config``, or ``src/binsharp/configs/<model>.yaml``) holds
``recipe`` (merged over the model's default recipe), ``model`` (constructor keyword overrides), ``data``
(``name``, ``val`` h5 file, ``bits``, ``sensor``, ``num_workers``, ``augment``, ``val_batch_size``,
``val_max_batches``, ``pin_memory``: page-locked batches for a GPU, default on for any accelerator but
``cpu``), ``validation`` (``metrics``, ``block``, ``dim_cut``), ``seed`` and ``trainer`` (``log_every``,
``accelerator``, ``devices``, ``num_nodes``, ``strategy``, ``precision``: Lightning's, e.g. ``32-true`` or
``bf16-mixed`` for bf16 autocast; ``channels_last``: model and batches in the channels-last memory format;
``deterministic``: Lightning's switch, default ``true`` on CPU and ``"warn"`` on other accelerators, where
some kernels, e.g. the bilinear upsampling backward on CUDA, have no deterministic implementation).

Merging: mappings merge key by key, anything else replaces. A ``stages`` list whose entries all name
existing stages updates those stages in place; any other ``stages`` list replaces the stages.
"""

from __future__ import annotations

import copy
import fnmatch
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import yaml

from binsharp.errors import BinsharpError

#: Engine defaults: the lowest layer of every recipe.
DEFAULT_STAGE: dict[str, Any] = {
    "steps": 1000,
    "batch_size": 16,
    "optimizer": "adam",
    "lr": 1.0e-3,
    "weight_decay": 0.0,
    "betas": [0.9, 0.999],
    "scheduler": "none",
    "step_size": 0,
    "gamma": 0.5,
    "milestones": [],
    "eta_min": 0.0,
    "warmup_steps": 0,
    "loss": "l1",
    "grad_clip": None,
    "val_every": 0,
    "ckpt_every": 100,
    "trainable": ["*"],
    "frozen": [],
    "eval_modules": [],
    "hooks": {},
    "options": {},
    "float_twin": False,
    "distill": None,
}

#: Spellings accepted for recipe keys (model recipes written in other conventions).
KEY_ALIASES: dict[str, str] = {
    "max_steps": "steps",
    "min_lr": "eta_min",
    "iterations": "steps",
    "iters": "steps",
    "learning_rate": "lr",
    "batch": "batch_size",
    "optim": "optimizer",
    "schedule": "scheduler",
    "lr_scheduler": "scheduler",
    "gradient_clip": "grad_clip",
    "clip_grad_norm": "grad_clip",
    "freeze": "frozen",
}

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

HOOK_EVENTS = ("on_stage_start", "on_stage_end", "after_optimizer_step")
OPTIMIZERS = ("adam", "adamw")
SCHEDULERS = ("none", "step", "multistep", "cosine")
LOSSES = ("l1", "mse", "charbonnier", "smooth_l1")


def _charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    return torch.sqrt((pred - target) ** 2 + eps * eps).mean()


_LOSS_FUNCTIONS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "l1": torch.nn.functional.l1_loss,
    "mse": torch.nn.functional.mse_loss,
    "charbonnier": _charbonnier,
    "smooth_l1": torch.nn.functional.smooth_l1_loss,
}


@dataclass
class Stage:
    """One training stage, fully resolved (every field set).

    ``index`` is the 0-based position of the stage in the recipe; ``name`` is unique within the recipe.
    The other fields are documented in the module docstring.
    """

    name: str
    index: int = 0
    steps: int = 1000
    batch_size: int = 16
    optimizer: str = "adam"
    lr: float = 1.0e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    scheduler: str = "none"
    step_size: int = 0
    gamma: float = 0.5
    milestones: list[int] = field(default_factory=list)
    eta_min: float = 0.0
    warmup_steps: int = 0
    loss: str = "l1"
    grad_clip: float | None = None
    val_every: int = 0
    ckpt_every: int = 100
    trainable: list[str] = field(default_factory=lambda: ["*"])
    frozen: list[str] = field(default_factory=list)
    eval_modules: list[str] = field(default_factory=list)
    hooks: dict[str, list[str]] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    float_twin: bool = False
    distill: dict[str, Any] | None = None

    @property
    def dirname(self) -> str:
        """Directory name of the stage inside a run directory, e.g. ``"01-I"``."""
        return f"{self.index + 1:02d}-{self.name}"

    def criterion(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The stage's loss function ``(pred, target) -> scalar`` (mean over all elements)."""
        return _LOSS_FUNCTIONS[self.loss]

    def is_trainable(self, param_name: str) -> bool:
        """Whether the parameter called ``param_name`` is trained in this stage."""
        if not any(fnmatch.fnmatchcase(param_name, p) for p in self.trainable):
            return False
        return not any(fnmatch.fnmatchcase(param_name, p) for p in self.frozen)

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-serialisable form (``betas`` as a list)."""
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d


#: Informational recipe keys (kept in the recipe record, not used by the engine).
INFO_KEYS = ("source", "description", "notes")

#: Keys of a ``scheduler`` mapping (``{"name": "cosine", "min_lr": 1e-6}``) and the recipe keys they set.
_SCHEDULE_KEYS = {
    "name": "scheduler",
    "min_lr": "eta_min",
    "eta_min": "eta_min",
    "step_size": "step_size",
    "gamma": "gamma",
    "milestones": "milestones",
    "warmup_steps": "warmup_steps",
}


def _normalise_keys(d: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Resolve key aliases and flatten a ``scheduler`` mapping into the flat recipe keys."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        key = KEY_ALIASES.get(key, key)
        if key == "scheduler" and isinstance(value, Mapping):
            for k, v in value.items():
                if k not in _SCHEDULE_KEYS:
                    raise BinsharpError(
                        f"{where}: unknown scheduler setting {k!r} (known: {', '.join(_SCHEDULE_KEYS)})"
                    )
                flat = _SCHEDULE_KEYS[k]
                if flat in out:
                    raise BinsharpError(f"{where}: {flat!r} given twice")
                out[flat] = v
            continue
        if key in out:
            raise BinsharpError(f"{where}: key {key!r} given twice (under two spellings)")
        out[key] = value
    if out.get("scheduler") == "constant":
        out["scheduler"] = "none"
    return out


def _normalise_recipe(recipe: Mapping[str, Any], where: str) -> dict[str, Any]:
    """:func:`_normalise_keys` on a recipe and on each of its stage entries (so layers merge key by key)."""
    out = _normalise_keys(recipe, where)
    if isinstance(out.get("stages"), list):
        out["stages"] = [
            _normalise_keys(s, f"{where}, stage {i + 1}") if isinstance(s, Mapping) else s
            for i, s in enumerate(out["stages"])
        ]
    return out


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``override`` over ``base``: mappings key by key, other values replaced (inputs untouched).

    A ``stages`` list in ``override`` whose entries all carry the ``name`` of a stage of ``base`` updates
    those stages; any other ``stages`` list replaces the base list.
    """
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if key == "stages" and isinstance(value, list) and isinstance(out.get("stages"), list):
            names = [s.get("name") for s in out["stages"] if isinstance(s, Mapping)]
            if value and all(isinstance(s, Mapping) and s.get("name") in names for s in value):
                merged = copy.deepcopy(out["stages"])
                for s in value:
                    i = names.index(s["name"])
                    merged[i] = deep_merge(merged[i], s)
                out["stages"] = merged
                continue
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) and key not in ("hooks",):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _as_patterns(value: Any, key: str, where: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return list(value)
    raise BinsharpError(f"{where}: {key} must be a glob pattern or a list of them, got {value!r}")


def _as_hooks(value: Any, where: str) -> dict[str, list[str]]:
    if value is None:
        return {}
    if isinstance(value, str):
        value = [value]
    if isinstance(value, Sequence) and not isinstance(value, Mapping):
        value = {"on_stage_start": list(value)}
    if not isinstance(value, Mapping):
        raise BinsharpError(f"{where}: hooks must map an event to method names, got {value!r}")
    hooks: dict[str, list[str]] = {}
    for event, names in value.items():
        if event not in HOOK_EVENTS:
            raise BinsharpError(f"{where}: unknown hook event {event!r} (known: {', '.join(HOOK_EVENTS)})")
        hooks[event] = _as_patterns(names, f"hooks.{event}", where)
    return hooks


def _as_bool(value: Any, key: str, where: str) -> bool:
    if not isinstance(value, bool):
        raise BinsharpError(f"{where}: {key} must be true or false, got {value!r}")
    return value


#: Keys of a ``distill`` mapping and their defaults.
DISTILL_DEFAULTS: dict[str, Any] = {"teacher": "float_twin", "weight": 1.0, "feature_weight": 0.0}


def _as_distill(value: Any, where: str) -> dict[str, Any] | None:
    """``None``/``false`` -> None; a teacher string -> the default mapping with it; a mapping -> checked."""
    if value is None or value is False:
        return None
    if isinstance(value, str):
        value = {"teacher": value}
    if not isinstance(value, Mapping):
        raise BinsharpError(f"{where}: distill must be a teacher name or a mapping, got {value!r}")
    unknown = sorted(set(value) - set(DISTILL_DEFAULTS))
    if unknown:
        raise BinsharpError(
            f"{where}: unknown distill key(s) {unknown} (known: {', '.join(DISTILL_DEFAULTS)})"
        )
    d = {**DISTILL_DEFAULTS, **value}
    try:
        d["weight"], d["feature_weight"] = float(d["weight"]), float(d["feature_weight"])
    except (TypeError, ValueError):
        raise BinsharpError(f"{where}: distill weights must be numbers, got {dict(value)}") from None
    if not isinstance(d["teacher"], str) or not d["teacher"]:
        raise BinsharpError(f"{where}: distill teacher must be a name, got {d['teacher']!r}")
    if min(d["weight"], d["feature_weight"]) < 0 or not math.isfinite(d["weight"] + d["feature_weight"]):
        raise BinsharpError(f"{where}: distill weights must be finite and >= 0, got {dict(value)}")
    return d


def _build_stage(settings: Mapping[str, Any], index: int, where: str) -> Stage:
    known = {f.name for f in fields(Stage)} - {"index"}
    settings = {k: v for k, v in settings.items() if k not in INFO_KEYS}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise BinsharpError(
            f"{where}: unknown recipe key(s) {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(sorted(known))})"
        )
    s = dict(settings)
    name = str(s.pop("name", None) or ("main" if index == 0 else f"stage{index + 1}"))
    try:
        stage = Stage(
            name=name,
            index=index,
            steps=int(s["steps"]),
            batch_size=int(s["batch_size"]),
            optimizer=str(s["optimizer"]).lower(),
            lr=float(s["lr"]),
            weight_decay=float(s["weight_decay"]),
            betas=(float(s["betas"][0]), float(s["betas"][1])),
            scheduler=str(s["scheduler"] or "none").lower(),
            step_size=int(s["step_size"] or 0),
            gamma=float(s["gamma"]),
            milestones=[int(m) for m in (s["milestones"] or [])],
            eta_min=float(s["eta_min"]),
            warmup_steps=int(s["warmup_steps"] or 0),
            loss=str(s["loss"]).lower(),
            grad_clip=None if s["grad_clip"] in (None, 0, 0.0) else float(s["grad_clip"]),
            val_every=int(s["val_every"] or 0),
            ckpt_every=int(s["ckpt_every"] or 0),
            trainable=_as_patterns(s["trainable"], "trainable", where),
            frozen=_as_patterns(s["frozen"] or [], "frozen", where),
            eval_modules=_as_patterns(s["eval_modules"] or [], "eval_modules", where),
            hooks=_as_hooks(s["hooks"], where),
            options=dict(s["options"] or {}),
            float_twin=_as_bool(s["float_twin"], "float_twin", where),
            distill=_as_distill(s["distill"], where),
        )
    except (TypeError, ValueError, IndexError) as exc:
        if isinstance(exc, BinsharpError):
            raise
        raise BinsharpError(f"{where}: bad recipe value ({exc})") from exc
    if stage.steps < 1:
        raise BinsharpError(f"{where}: steps must be >= 1, got {stage.steps}")
    if stage.batch_size < 1:
        raise BinsharpError(f"{where}: batch_size must be >= 1, got {stage.batch_size}")
    if stage.optimizer not in OPTIMIZERS:
        raise BinsharpError(
            f"{where}: unknown optimizer {stage.optimizer!r} (known: {', '.join(OPTIMIZERS)})"
        )
    if stage.scheduler not in SCHEDULERS:
        raise BinsharpError(
            f"{where}: unknown scheduler {stage.scheduler!r} (known: {', '.join(SCHEDULERS)})"
        )
    if stage.scheduler == "step" and stage.step_size < 1:
        raise BinsharpError(f"{where}: scheduler 'step' needs step_size >= 1")
    if stage.loss not in LOSSES:
        raise BinsharpError(f"{where}: unknown loss {stage.loss!r} (known: {', '.join(LOSSES)})")
    if not math.isfinite(stage.lr) or stage.lr <= 0:
        raise BinsharpError(f"{where}: lr must be a positive number, got {stage.lr}")
    return stage


def resolve_stages(recipe: Mapping[str, Any], *, where: str = "recipe") -> list[Stage]:
    """Turn a recipe mapping into the list of fully resolved :class:`Stage` objects.

    Top-level settings (over :data:`DEFAULT_STAGE`) are inherited by every stage. Raises
    :class:`BinsharpError` for unknown keys, bad values or duplicate stage names.
    """
    if not isinstance(recipe, Mapping):
        raise BinsharpError(f"{where}: a recipe must be a mapping, got {type(recipe).__name__}")
    top = _normalise_keys(recipe, where)
    stage_list = top.pop("stages", None)
    base = deep_merge(DEFAULT_STAGE, top)
    if stage_list is None:
        stage_list = [{}]
    if not isinstance(stage_list, list) or not stage_list:
        raise BinsharpError(f"{where}: stages must be a non-empty list of mappings")
    stages = []
    for i, entry in enumerate(stage_list):
        if not isinstance(entry, Mapping):
            raise BinsharpError(f"{where}: stage {i + 1} must be a mapping, got {entry!r}")
        entry = _normalise_keys(entry, f"{where}, stage {i + 1}")
        if "stages" in entry:
            raise BinsharpError(f"{where}: stage {i + 1} may not contain stages")
        settings = deep_merge(base, entry)
        if "name" in entry:
            settings["name"] = entry["name"]
        elif len(stage_list) > 1:
            settings["name"] = f"stage{i + 1}"
        stages.append(_build_stage(settings, i, f"{where}, stage {entry.get('name', i + 1)}"))
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise BinsharpError(f"{where}: stage names must be unique, got {names}")
    for s in stages:
        if not s.name.replace("_", "").replace("-", "").isalnum():
            raise BinsharpError(f"{where}: stage name {s.name!r} must be letters, digits, '-' or '_'")
    return stages


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


def packaged_config(model_name: str) -> dict[str, Any]:
    """The packaged overrides ``binsharp/configs/<model_name>.yaml`` (empty when there is none)."""
    ref = resources.files("binsharp.configs").joinpath(f"{model_name}.yaml")
    if not ref.is_file():
        return {}
    return _parse_yaml(ref.read_text(encoding="utf-8"), f"binsharp/configs/{model_name}.yaml")


def read_config(path: str | Path) -> dict[str, Any]:
    """Read a run configuration YAML file (see the module docstring); raises :class:`BinsharpError`."""
    p = Path(path)
    if not p.is_file():
        raise BinsharpError(f"config file not found: {p}")
    return _parse_yaml(p.read_text(encoding="utf-8"), str(p))


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
        recipe = _normalise_recipe(model_recipe, "model recipe")
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
            recipe = deep_merge(recipe, _normalise_recipe(r, "config recipe"))
        else:
            layer.pop("recipe", None)
        run = deep_merge(run, layer)
    if stage_overrides:
        over = _normalise_keys(stage_overrides, "overrides")
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
