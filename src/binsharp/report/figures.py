"""Figures of a benchmark: RGB composites, zoomed insets, error maps, full-resolution view, OPs vs quality,
training curves. matplotlib with the Agg backend; every function writes one PNG and returns its path.

Images are channel-first arrays (C, H, W) in DN. Display uses one stretch per figure: per-band 2-98 %
percentiles of the *reference* (the ground truth at reduced resolution, the upsampled MS at full
resolution), applied identically to every method, so that colours and brightness are comparable.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from binsharp.errors import BinsharpError
from binsharp.fileio import atomic_output

__all__ = [
    "error_map",
    "COST_AXES",
    "plot_composites",
    "plot_cost_vs_quality",
    "plot_error_maps",
    "plot_full_resolution",
    "plot_training_curves",
    "rgb_composite",
    "sam_map",
    "stretch_limits",
]

#: Default percentiles of the display stretch.
PERCENTILES = (2.0, 98.0)
DPI = 100


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def stretch_limits(
    reference: np.ndarray, rgb: Sequence[int], percentiles: tuple[float, float] = PERCENTILES
) -> tuple[np.ndarray, np.ndarray]:
    """Per-band display limits ``(lo (3,), hi (3,))`` in DN: percentiles of the bands ``rgb`` of
    ``reference`` (C, H, W). A flat band gets ``hi = lo + 1``."""
    ref = np.asarray(reference, dtype=np.float64)
    if ref.ndim != 3:
        raise BinsharpError(f"reference must be (C, H, W), got shape {ref.shape}")
    bands = ref[list(rgb)]
    lo = np.percentile(bands.reshape(3, -1), percentiles[0], axis=1)
    hi = np.percentile(bands.reshape(3, -1), percentiles[1], axis=1)
    hi = np.where(hi > lo, hi, lo + 1.0)
    return lo, hi


def rgb_composite(image: np.ndarray, rgb: Sequence[int], limits: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """(H, W, 3) float in [0, 1]: bands ``rgb`` of ``image`` (C, H, W) stretched linearly by ``limits``."""
    img = np.asarray(image, dtype=np.float64)
    lo, hi = limits
    out = (img[list(rgb)] - lo[:, None, None]) / (hi - lo)[:, None, None]
    return np.clip(out, 0.0, 1.0).transpose(1, 2, 0)


def sam_map(fused: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-pixel spectral angle in degrees, (H, W), between ``fused`` and ``reference`` (C, H, W)."""
    f = np.asarray(fused, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    num = (f * r).sum(axis=0)
    den = np.sqrt((f * f).sum(axis=0) * (r * r).sum(axis=0))
    cos = np.where(den > 0, num / np.where(den > 0, den, 1.0), 1.0)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def error_map(fused: np.ndarray, reference: np.ndarray, kind: str = "abs") -> np.ndarray:
    """(H, W) error of ``fused`` against ``reference`` (C, H, W): ``"abs"`` = root-mean-square over bands of
    the difference (DN), ``"sam"`` = spectral angle (degrees)."""
    if kind == "sam":
        return sam_map(fused, reference)
    if kind == "abs":
        d = np.asarray(fused, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
        return np.sqrt((d * d).mean(axis=0))
    raise BinsharpError(f"unknown error map kind {kind!r} (abs or sam)")


def _grid(n: int, max_cols: int = 5) -> tuple[int, int]:
    cols = min(n, max_cols)
    return int(math.ceil(n / cols)), cols


def _save(fig: Any, path: str | os.PathLike) -> Path:
    plt = _plt()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_output(out, overwrite=True) as tmp:
            fig.savefig(tmp, dpi=DPI, format="png")
    finally:
        plt.close(fig)
    return out


def _default_inset(h: int, w: int) -> tuple[int, int, int]:
    size = max(8, min(h, w) // 4)
    return (h - size) // 2, (w - size) // 2, size


def _panels_with_inset(
    named: Sequence[tuple[str, np.ndarray]],
    inset: tuple[int, int, int] | None,
    path: str | os.PathLike,
    title: str,
    panel: float,
) -> Path:
    """Grid of RGB panels ``(name, (H, W, 3) in [0, 1])``, each with the inset square ``(row, col, size)``
    (default: central, a quarter side) outlined and magnified in its lower-right corner; saved as PNG."""
    plt = _plt()
    from matplotlib.patches import Rectangle

    h, w = named[0][1].shape[:2]
    r0, c0, size = inset if inset is not None else _default_inset(h, w)
    rows, cols = _grid(len(named))
    fig, axes = plt.subplots(rows, cols, figsize=(panel * cols, panel * rows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (name, comp) in zip(axes.ravel(), named, strict=False):
        ax.imshow(comp, interpolation="nearest")
        ax.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), size, size, fill=False, ec="yellow", lw=1.0))
        zoom = ax.inset_axes((0.6, 0.0, 0.4, 0.4))
        zoom.imshow(comp[r0 : r0 + size, c0 : c0 + size], interpolation="nearest")
        zoom.set_xticks([])
        zoom.set_yticks([])
        for spine in zoom.spines.values():
            spine.set_edgecolor("yellow")
        ax.set_title(name, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_composites(
    images: Mapping[str, np.ndarray],
    reference: np.ndarray,
    rgb: Sequence[int],
    path: str | os.PathLike,
    *,
    reference_name: str = "GT",
    inset: tuple[int, int, int] | None = None,
    title: str = "",
    panel: float = 2.6,
) -> Path:
    """RGB composites of the reference and of every method with one stretch, and a zoomed inset.

    Args:
        images: method name -> fused image (C, H, W), DN.
        reference: image the stretch is computed on (ground truth; upsampled MS at full resolution), shown
            first under ``reference_name``.
        rgb: 0-based band indexes of red, green, blue (``Sensor.rgb``).
        path: PNG file written.
        inset: ``(row, col, size)`` of the zoomed square (default: a central square of a quarter side),
            outlined in every panel and magnified (nearest neighbour) in its lower-right corner.
        title: figure title.
        panel: panel side in inches.
    """
    limits = stretch_limits(reference, rgb)
    named = [
        (name, rgb_composite(img, rgb, limits))
        for name, img in [(reference_name, reference), *images.items()]
    ]
    return _panels_with_inset(named, inset, path, title, panel)


def plot_error_maps(
    images: Mapping[str, np.ndarray],
    reference: np.ndarray,
    path: str | os.PathLike,
    *,
    kind: str = "abs",
    title: str = "",
    panel: float = 2.6,
) -> Path:
    """Per-pixel error maps of every method against ``reference`` (C, H, W) with one shared colour scale.

    The scale runs from 0 to the median over methods of each map's 99th percentile (a method much worse than
    the others saturates instead of flattening everyone else's map); each panel states its mean error.
    ``kind``: ``"abs"`` (RMS over bands, DN) or ``"sam"`` (degrees).
    """
    plt = _plt()
    if not images:
        raise BinsharpError("no images to plot")
    maps = {name: error_map(img, reference, kind) for name, img in images.items()}
    vmax = float(np.median([np.percentile(m, 99) for m in maps.values()]))
    vmax = vmax if vmax > 0 else 1.0
    rows, cols = _grid(len(maps))
    fig, axes = plt.subplots(rows, cols, figsize=(panel * cols + 0.8, panel * rows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    im = None
    for ax, (name, m) in zip(axes.ravel(), maps.items(), strict=False):
        im = ax.imshow(m, cmap="magma", vmin=0.0, vmax=vmax, interpolation="nearest")
        ax.set_title(f"{name}\nmean {m.mean():.3g}", fontsize=9)
    label = "spectral angle (deg)" if kind == "sam" else "RMS error over bands (DN)"
    fig.tight_layout()
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label=label)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_full_resolution(
    pan: np.ndarray,
    lms: np.ndarray,
    images: Mapping[str, np.ndarray],
    rgb: Sequence[int],
    path: str | os.PathLike,
    *,
    inset: tuple[int, int, int] | None = None,
    title: str = "",
    panel: float = 2.6,
) -> Path:
    """Full-resolution view: PAN (grey, 2-98 % stretch), the upsampled MS and every method's output, RGB
    with the stretch of the upsampled MS ``lms`` (C, H, W), with a zoomed inset."""
    p = np.asarray(pan, dtype=np.float64)[0]
    lo, hi = np.percentile(p, PERCENTILES)
    pan_img = np.clip((p - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    limits = stretch_limits(lms, rgb)
    named: list[tuple[str, np.ndarray]] = [
        ("PAN", np.repeat(pan_img[:, :, None], 3, axis=2)),
        ("MS (upsampled)", rgb_composite(lms, rgb, limits)),
    ]
    named += [(n, rgb_composite(img, rgb, limits)) for n, img in images.items()]
    return _panels_with_inset(named, inset, path, title, panel)


#: x axes of :func:`plot_cost_vs_quality`: the key a point carries, and the axis label
COST_AXES: dict[str, str] = {
    "ops": "OPs per image (BOPs/64 + FLOPs, log scale)",
    "latency_ms": "CPU latency per image, ms (log scale)",
}


def plot_cost_vs_quality(
    points: Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    *,
    cost: str = "ops",
    quality: str = "q2n",
    title: str = "",
) -> Path:
    """Scatter of a cost (log scale, x) against a quality index (y), one labelled point per method.

    ``cost``: a key of :data:`COST_AXES`, ``"ops"`` (counted operations per image) or ``"latency_ms"``
    (measured milliseconds per image). ``points``: mappings with ``name``, the cost (> 0), the value under
    ``quality`` and optionally ``kind`` (``"fp"``, ``"binary"``, ``"classical"``; colours the points).
    Points without both values are left out (classical methods have no OPs, so no place on the OPs plot).
    """
    if cost not in COST_AXES:
        raise ValueError(f"cost must be one of {sorted(COST_AXES)}, got {cost!r}")
    plt = _plt()
    pts = [p for p in points if p.get(cost) and p.get(quality) is not None and np.isfinite(p[quality])]
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    colours = {"fp": "tab:blue", "binary": "tab:red", "classical": "tab:green"}
    labels = {"fp": "full precision", "binary": "binary", "classical": "classical"}
    for kind in (*colours, None):
        sel = [p for p in pts if p.get("kind") == kind or (kind is None and p.get("kind") not in colours)]
        if sel:
            ax.scatter(
                [p[cost] for p in sel],
                [p[quality] for p in sel],
                c=colours.get(kind or "", "tab:gray"),
                label=labels.get(kind or "", "other"),
                zorder=3,
            )
    for p in pts:
        ax.annotate(p["name"], (p[cost], p[quality]), textcoords="offset points", xytext=(4, 3), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel(COST_AXES[cost])
    ax.set_ylabel(quality.upper() if quality != "q2n" else "Q2n")
    ax.grid(True, which="both", alpha=0.3)
    if pts:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no method with both values", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title or f"{cost} vs {quality}", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def read_log(path: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Series of a training-log CSV: ``{column: (steps, values)}`` for every numeric metric column.

    The step is ``global_step`` when present (zoo logs), else ``step``; empty cells are skipped.
    """
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return {}
    step_key = "global_step" if "global_step" in rows[0] else "step"
    series: dict[str, tuple[list[float], list[float]]] = {}
    for row in rows:
        try:
            step = float(row.get(step_key) or "nan")
        except ValueError:
            continue
        for k, v in row.items():
            if k in ("stage", "epoch", "step", "global_step") or v in ("", None):
                continue
            try:
                val = float(v)
            except (TypeError, ValueError):
                continue
            xs, ys = series.setdefault(k, ([], []))
            xs.append(step)
            ys.append(val)
    return {k: (np.asarray(x), np.asarray(y)) for k, (x, y) in series.items()}


def plot_training_curves(
    logs: Mapping[str, str | os.PathLike],
    path: str | os.PathLike,
    *,
    metrics: Sequence[str] = ("train/loss", "val/q2n", "val/sam", "val/ergas"),
    title: str = "",
) -> Path:
    """Training curves of several models: one panel per metric (``train/loss``, ``val/q2n``, ...), one line
    per model, from their CSV logs (``logs``: model name -> CSV path)."""
    plt = _plt()
    data = {name: read_log(p) for name, p in logs.items()}
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        drawn = False
        for name, series in data.items():
            if metric in series and len(series[metric][0]):
                x, y = series[metric]
                ax.plot(x, y, marker="." if len(x) < 30 else None, lw=1.0, label=name)
                drawn = True
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
        if metric.endswith("loss") and drawn:
            ax.set_yscale("log")
        if not drawn:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes[0][1:]:
        h, lab = ax.get_legend_handles_labels()
        for hh, ll in zip(h, lab, strict=True):
            if ll not in labels:
                handles.append(hh)
                labels.append(ll)
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.1 if handles else 0, 1, 1))
    return _save(fig, path)
