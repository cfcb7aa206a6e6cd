"""Training recipes: the one schema, its validator, and the default recipe of every registered model.

A *recipe* describes how a model is trained. It is a mapping of stage settings (flat keys, no aliases);
the optional ``stages`` list splits training into consecutive stages (BNNPan's stages I-III, for example),
each inheriting the top-level settings and overriding any of them::

    steps: 1000            # optimiser steps of the stage (for a multi-stage recipe: per stage, unless given)
    batch_size: 16         # patches per optimisation step (64 x 64 PAN-resolution training patches)
    optimizer: adam        # adam | adamw
    lr: 1.0e-3
    weight_decay: 0.0      # decoupled (AdamW) or L2 (Adam)
    betas: [0.9, 0.999]
    scheduler: step        # none | step | multistep | cosine
    step_size: 500         #   step: multiply the lr by ``gamma`` every ``step_size`` steps
    gamma: 0.5             #   step, multistep
    milestones: [600, 900] #   multistep
    eta_min: 0.0           #   cosine: final lr (cosine annealing over the stage's steps)
    warmup_steps: 0        # linear warm-up before the schedule (all schedulers)
    loss: l1               # l1 | mse | charbonnier | smooth_l1 (on the normalised [0, 1] images)
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

:func:`resolve_stages` validates a recipe and resolves it into :class:`Stage` objects (the one validator;
:func:`check_recipe` applies it at model registration). Merging (:func:`deep_merge`): mappings merge key by
key, anything else replaces; a ``stages`` list whose entries all name existing stages updates those stages
in place, any other ``stages`` list replaces the stages. Run configurations, which hold a recipe besides
data and trainer settings, are :mod:`binsharp.train.recipe`.

The numbers
-----------
*Binary models* all share one recipe so that only the binary unit differs in comparisons: Adam
(0.9, 0.999), lr 4e-4, no weight decay (weight decay pulls latent binary weights towards zero and makes their
signs flip at random), cosine annealing to 1e-6, batch 16, 100 000 steps. Learning rate, optimiser and
schedule are those of the BiSRNet reference training (Cai et al., NeurIPS 2023: Adam, lr 4e-4,
CosineAnnealingLR, 300 epochs of 5 000 samples = 1.5 M samples); 100 000 steps of 16 patches is the same
number of samples.

*Full-precision baselines* follow the learning rates of the DLPan-Toolbox / PanCollection PyTorch
configurations (Deng et al., IEEE GRSM 2022): PNN 1e-3, PanNet 1e-3, DiCNN 2e-4, FusionNet 3e-4 (MSDCNN:
1e-4, the toolbox only ships a 1e-6 fine-tuning value), with Adam, batch 32, no weight decay, and a step
schedule halving the rate every 25 000 steps over 100 000 steps (the toolbox's FusionNet run, 400 epochs over
the ~9 700 WV3 training patches at batch 32, is ~120 000 steps).
"""

from __future__ import annotations

import copy
import fnmatch
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch

from binsharp.errors import BinsharpError
from binsharp.names import unknown_name_message

__all__ = [
    "BINARY_RECIPE",
    "DEFAULT_STAGE",
    "DISTILL_DEFAULTS",
    "FP_RECIPE",
    "Stage",
    "check_recipe",
    "deep_merge",
    "default_recipe",
    "fp_recipe",
    "resolve_stages",
]

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
        raise BinsharpError(f"{where}: {unknown_name_message(stage.optimizer, OPTIMIZERS, 'optimizer')}")
    if stage.scheduler not in SCHEDULERS:
        raise BinsharpError(f"{where}: {unknown_name_message(stage.scheduler, SCHEDULERS, 'scheduler')}")
    if stage.scheduler == "step" and stage.step_size < 1:
        raise BinsharpError(f"{where}: scheduler 'step' needs step_size >= 1")
    if stage.loss not in LOSSES:
        raise BinsharpError(f"{where}: {unknown_name_message(stage.loss, LOSSES, 'loss')}")
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
    top = dict(recipe)
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
        entry = dict(entry)
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


BINARY_RECIPE: dict[str, Any] = {
    "optimizer": "adam",
    "lr": 4e-4,
    "betas": [0.9, 0.999],
    "weight_decay": 0.0,
    "scheduler": "cosine",
    "eta_min": 1e-6,
    "batch_size": 16,
    "steps": 100_000,
    "loss": "l1",
    "source": "BiSRNet training (Cai et al., NeurIPS 2023): Adam 4e-4, cosine to 1e-6, 1.5 M samples",
}

FP_RECIPE: dict[str, Any] = {
    "optimizer": "adam",
    "lr": 1e-3,
    "betas": [0.9, 0.999],
    "weight_decay": 0.0,
    "scheduler": "step",
    "step_size": 25_000,
    "gamma": 0.5,
    "batch_size": 32,
    "steps": 100_000,
    "loss": "l1",
    "source": "DLPan-Toolbox PyTorch configurations (Deng et al., IEEE GRSM 2022) learning rates",
}


def default_recipe(kind: str) -> dict[str, Any]:
    """A fresh copy of the default recipe for ``kind`` (``"fp"`` or ``"binary"``)."""
    if kind == "binary":
        return copy.deepcopy(BINARY_RECIPE)
    if kind == "fp":
        return copy.deepcopy(FP_RECIPE)
    raise BinsharpError(f"unknown model kind {kind!r} (expected 'fp' or 'binary')")


def fp_recipe(lr: float, **overrides: Any) -> dict[str, Any]:
    """The full-precision recipe with another learning rate (and optional other overrides)."""
    r = default_recipe("fp")
    r["lr"] = float(lr)
    r.update(overrides)
    return check_recipe(r)


def check_recipe(recipe: dict[str, Any]) -> dict[str, Any]:
    """Validate ``recipe`` with :func:`resolve_stages`; return it unchanged. Raises BinsharpError."""
    resolve_stages(recipe)
    return recipe
