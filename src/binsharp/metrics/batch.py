"""Evaluation over a test set: per-image indexes, mean and standard deviation, and the settings used.

The standard deviation is the sample standard deviation over images (``ddof=1``, MATLAB's ``std``, as in
the toolbox demos that report mean +- std); it is 0 for a single image (as MATLAB's ``std`` of a scalar).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from binsharp.errors import BinsharpError
from binsharp.metrics.full import full_resolution
from binsharp.metrics.reduced import reduced_resolution
from binsharp.sensors import Sensor, get_sensor

_KINDS = ("rr", "fr")
_ALIASES = {"rr": "rr", "reduced": "rr", "reduced_resolution": "rr", "fr": "fr", "full": "fr",
            "full_resolution": "fr"}  # fmt: skip


def _kind(kind: str) -> str:
    try:
        return _ALIASES[kind.lower()]
    except (KeyError, AttributeError):
        raise BinsharpError(f"unknown evaluation kind {kind!r} (use 'rr' or 'fr')") from None


class BatchEvaluator:
    """Accumulate per-image indexes and summarise them.

    Reduced resolution (``kind="rr"``): ``add(fused, gt)``; settings ``ratio``, ``bits``, ``block``,
    ``dim_cut``, ``clip`` as in :func:`~binsharp.metrics.reduced_resolution`.
    Full resolution (``kind="fr"``): ``add(fused, ms_lr, pan, ms_up=None)``; settings ``sensor`` (required),
    ``ratio``, ``bits``, ``block``, ``variant``, ``clip`` as in :func:`~binsharp.metrics.full_resolution`.
    All images (C, H, W) in DN, numpy or torch.

    Example::

        ev = BatchEvaluator("rr", ratio=4, bits=11)
        for fused, gt in pairs:
            ev.add(fused, gt)
        summary = ev.result()  # {"mean": {...}, "std": {...}, "per_image": [...], "settings": {...}}
    """

    def __init__(self, kind: str = "rr", *, ddof: int = 1, **settings: Any) -> None:
        self.kind = _kind(kind)
        self.ddof = int(ddof)
        if self.kind == "rr":
            allowed: dict[str, Any] = {"ratio": 4, "bits": 11, "block": 32, "dim_cut": 21, "clip": False}
        else:
            allowed = {"sensor": None, "ratio": 4, "bits": 11, "block": 32, "variant": "hqnr", "clip": False}
        unknown = set(settings) - set(allowed)
        if unknown:
            raise BinsharpError(f"unknown {self.kind} evaluation setting(s): {', '.join(sorted(unknown))}")
        self.settings = {**allowed, **settings}
        if self.kind == "fr":
            if self.settings["sensor"] is None:
                raise BinsharpError("full-resolution evaluation needs a sensor (MTF gains)")
            self._sensor: Sensor = get_sensor(self.settings["sensor"])
        self.per_image: list[dict[str, float]] = []

    def add(self, fused: Any, *refs: Any, ms_up: Any = None) -> dict[str, float]:
        """Evaluate one image, store and return its indexes."""
        if self.kind == "rr":
            if len(refs) != 1 or ms_up is not None:
                raise BinsharpError("reduced-resolution evaluation takes add(fused, gt)")
            s = self.settings
            values = reduced_resolution(
                fused, refs[0], ratio=s["ratio"], bits=s["bits"], block=s["block"], dim_cut=s["dim_cut"],
                clip=s["clip"],
            )  # fmt: skip
        else:
            if len(refs) != 2:
                raise BinsharpError("full-resolution evaluation takes add(fused, ms_lr, pan, ms_up=None)")
            s = self.settings
            values = full_resolution(
                fused, refs[0], refs[1], sensor=self._sensor, ratio=s["ratio"], bits=s["bits"],
                block=s["block"], ms_up=ms_up, variant=s["variant"], clip=s["clip"],
            )  # fmt: skip
        self.per_image.append(values)
        return values

    def __len__(self) -> int:
        return len(self.per_image)

    def result(self) -> dict[str, Any]:
        """``{"mean": {index: float}, "std": {index: float}, "per_image": [dict], "settings": dict}``."""
        if not self.per_image:
            raise BinsharpError("no image evaluated")
        names = list(self.per_image[0])
        table = np.array([[d[k] for k in names] for d in self.per_image], dtype=np.float64)
        mean = table.mean(axis=0)
        n = len(self.per_image)
        with np.errstate(invalid="ignore"):  # an infinite index (PSNR of a perfect fusion) has no spread: NaN
            std = table.std(axis=0, ddof=self.ddof) if n > self.ddof else np.zeros(len(names))
        settings = dict(self.settings)
        if self.kind == "fr":
            settings["sensor"] = self._sensor.name
        settings.update(kind=self.kind, n_images=n, std_ddof=self.ddof)
        return {
            "mean": {k: float(v) for k, v in zip(names, mean, strict=True)},
            "std": {k: float(v) for k, v in zip(names, std, strict=True)},
            "per_image": [dict(d) for d in self.per_image],
            "settings": settings,
        }


def _as_list(x: Any, name: str) -> list[Any] | None:
    if x is None:
        return None
    if isinstance(x, (list, tuple)):
        return list(x)
    if hasattr(x, "ndim") and x.ndim == 4:
        return [x[i] for i in range(x.shape[0])]
    raise BinsharpError(f"{name}: expected a list of (C, H, W) images or an (N, C, H, W) array")


def evaluate_batch(
    kind: str,
    fused: Sequence[Any] | np.ndarray | Iterable[Any],
    *refs: Sequence[Any] | np.ndarray,
    ms_up: Sequence[Any] | np.ndarray | None = None,
    ddof: int = 1,
    **settings: Any,
) -> dict[str, Any]:
    """Evaluate a whole test set at once.

    Args:
        kind: ``"rr"`` (refs: ``gt``) or ``"fr"`` (refs: ``ms_lr``, ``pan``; optional ``ms_up``).
        fused, refs, ms_up: (N, C, H, W) arrays/tensors or lists of (C, H, W) images, in DN.
        ddof: delta degrees of freedom of the reported std (1: sample std, MATLAB's default).
        settings: passed to :func:`reduced_resolution` / :func:`full_resolution` (``sensor`` for "fr").

    Returns:
        ``{"mean", "std", "per_image", "settings"}`` (see :meth:`BatchEvaluator.result`).
    """
    ev = BatchEvaluator(kind, ddof=ddof, **settings)
    f_list = _as_list(fused, "fused")
    given = [_as_list(r, f"reference {i + 1}") for i, r in enumerate(refs)]
    ref_lists = [r for r in given if r is not None]
    if f_list is None or len(ref_lists) != len(given):
        raise BinsharpError("the fused images and every reference are required")
    up_list = _as_list(ms_up, "ms_up")
    for name, lst in [("reference", r) for r in ref_lists] + [("ms_up", up_list)]:
        if lst is not None and len(lst) != len(f_list):
            raise BinsharpError(f"{len(f_list)} fused images but {len(lst)} {name} images")
    for i, f in enumerate(f_list):
        extra = {} if up_list is None else {"ms_up": up_list[i]}
        try:
            ev.add(f, *(r[i] for r in ref_lists), **extra)
        except BinsharpError as err:
            raise BinsharpError(f"image {i}: {err}") from None
    return ev.result()


def format_mean_std(summary: dict[str, Any], digits: int = 4) -> dict[str, str]:
    """``{"q2n": "0.9012 ± 0.0123", ...}`` from a :meth:`BatchEvaluator.result` summary.

    A mean that is not finite (PSNR of a perfect fusion) is shown alone, ``inf``: no spread is defined.
    """
    out = {}
    for k, m in summary["mean"].items():
        s = summary["std"][k]
        out[k] = f"{m:.{digits}f} ± {s:.{digits}f}" if math.isfinite(m) else f"{m}"
    return out
