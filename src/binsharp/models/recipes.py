"""Default training recipes, one per registered model (consumed by the training engine).

A recipe is a JSON-serialisable dict:

================  ==================================================================================
key               meaning
================  ==================================================================================
``optimizer``     ``"adam"`` or ``"adamw"``
``lr``            initial learning rate
``betas``         Adam betas ``[beta1, beta2]``
``weight_decay``  decoupled (AdamW) or L2 (Adam) weight decay
``schedule``      ``{"name": "cosine", "min_lr": float}`` (cosine annealing from ``lr`` to ``min_lr``
                  over ``steps``) or ``{"name": "step", "step_size": int, "gamma": float}`` (multiply
                  the rate by ``gamma`` every ``step_size`` steps) or ``{"name": "constant"}``
``batch_size``    patches per optimisation step (64 x 64 PAN-resolution training patches)
``steps``         total optimisation steps
``loss``          ``"l1"`` (mean absolute error on the normalised [0, 1] images)
``source``        where the numbers come from
================  ==================================================================================

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
from typing import Any

from binsharp.errors import BinsharpError

__all__ = ["BINARY_RECIPE", "FP_RECIPE", "default_recipe", "fp_recipe", "check_recipe"]

BINARY_RECIPE: dict[str, Any] = {
    "optimizer": "adam",
    "lr": 4e-4,
    "betas": [0.9, 0.999],
    "weight_decay": 0.0,
    "schedule": {"name": "cosine", "min_lr": 1e-6},
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
    "schedule": {"name": "step", "step_size": 25_000, "gamma": 0.5},
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


_REQUIRED = ("optimizer", "lr", "weight_decay", "schedule", "batch_size", "steps", "loss")


def check_recipe(recipe: dict[str, Any]) -> dict[str, Any]:
    """Validate a recipe dict (keys, types, schedule); return it unchanged. Raises BinsharpError."""
    if not isinstance(recipe, dict):
        raise BinsharpError(f"a recipe must be a dict, got {type(recipe).__name__}")
    missing = [k for k in _REQUIRED if k not in recipe]
    if missing:
        raise BinsharpError(f"recipe is missing {', '.join(missing)}")
    if recipe["optimizer"] not in ("adam", "adamw"):
        raise BinsharpError(f"recipe optimizer must be 'adam' or 'adamw', got {recipe['optimizer']!r}")
    if not float(recipe["lr"]) > 0:
        raise BinsharpError(f"recipe lr must be > 0, got {recipe['lr']!r}")
    for key in ("batch_size", "steps"):
        if not isinstance(recipe[key], int) or recipe[key] < 1:
            raise BinsharpError(f"recipe {key} must be a positive integer, got {recipe[key]!r}")
    sched = recipe["schedule"]
    name = sched.get("name") if isinstance(sched, dict) else None
    if name == "cosine":
        if "min_lr" not in sched:
            raise BinsharpError("cosine schedule needs 'min_lr'")
    elif name == "step":
        if not all(k in sched for k in ("step_size", "gamma")):
            raise BinsharpError("step schedule needs 'step_size' and 'gamma'")
    elif name != "constant":
        raise BinsharpError(f"unknown schedule {sched!r} (expected cosine, step or constant)")
    if recipe["loss"] != "l1":
        raise BinsharpError(f"unknown loss {recipe['loss']!r} (expected 'l1')")
    return recipe
