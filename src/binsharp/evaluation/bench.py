"""The benchmark behind ``binsharp bench`` and ``binsharp quickstart``: quality, complexity, size, latency.

:func:`run_benchmark` evaluates classical methods and pretrained networks (from :mod:`binsharp.zoo`) on a
reduced-resolution test set, a full-resolution test set and optionally cross-sensor test sets, with the
evaluation functions of ``binsharp evaluate`` (:func:`binsharp.evaluation.evaluate.load_test_set`,
:func:`binsharp.evaluation.evaluate.evaluate_source`); counts Params/OPs with
:func:`binsharp.nn.complexity.count`; measures checkpoint and ``.bsp`` sizes and CPU latency (PyTorch, and
the packed engine of :mod:`binsharp.deploy` where the model exports). Networks without pretrained weights
are listed as skipped with the reason; nothing is estimated in their place.

The report (JSON-serialisable)::

    {"binsharp_version", "settings": {...}, "machine": {...},
     "data": {"rr" | "fr" | "cross_rr" | "cross_fr": {"name", "file", "n_images", "sensor", "size", ...}},
     "methods": [{"name", "kind": "classical" | "fp" | "binary", "status": "ok" | "skipped", "reason",
                  "pretrained": {...}, "results": {split: {"mean", "std", "per_image", "settings"}},
                  "fuse_seconds": {split: float}, "complexity": {"params", "ops", "bops", "flops", ...},
                  "size": {"checkpoint_bytes", "bsp_bytes", "bsp_reason"},
                  "latency": {"torch_s" | "numpy_s", "engine_s", "engine_reason"}}],
     "paired_tests": {"test", "alpha", "featured", "indexes": {split: [index, ...]},
                      "pairs": [{"split", "method", "against", "n", "reason"?,
                                 "indexes": {index: {"mean_diff", "wins", "statistic", "p_value",
                                                     "significant"}}}]}}

With a dozen test images a difference of means can be luck: ``paired_tests`` holds, for each featured
network (:data:`FEATURED`, S2BNet and BNNPan) against every other method evaluated on the same split, the
paired Wilcoxon signed-rank test of the per-image values of each index (:func:`paired_tests`).
"""

from __future__ import annotations

import functools
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from binsharp import __version__
from binsharp.errors import BinsharpError
from binsharp.evaluation.evaluate import TestSet, evaluate_source, load_test_set
from binsharp.inference import CheckpointFuser, Fuser, method_fuser
from binsharp.metrics import WILCOXON_TEST, paired_wilcoxon
from binsharp.progress import show_progress
from binsharp.sensors import max_dn

__all__ = [
    "FEATURED",
    "PAIRED_INDEXES",
    "BenchResult",
    "BenchSettings",
    "machine_info",
    "paired_tests",
    "run_benchmark",
]

#: The networks :func:`paired_tests` compares with every other method.
FEATURED = ("s2bnet", "bnnpan")
#: Indexes of the paired tests, per kind of split.
PAIRED_INDEXES = {"rr": ("q2n", "sam", "ergas"), "fr": ("d_lambda_k", "d_s", "hqnr")}


@dataclass
class BenchSettings:
    """What :func:`run_benchmark` runs.

    Attributes:
        data: dataset name (``wv3-longmont``), dataset directory or PanCollection h5 file (reduced resolution
            when it holds ``gt``, full resolution otherwise).
        models: network names to run from the zoo (``[]``: none).
        classical: classical method names (``[]``: none).
        pretrained: zoo dataset of the network weights.
        cross: cross-sensor dataset names/paths (their ``test_rr``/``test_fr`` splits).
        sensor: sensor for data that does not record it.
        limit, fr_limit: evaluate the first N reduced- / full-resolution images only (None: all).
        latency: measure CPU latency; engine: also export and time the packed engine.
        complexity_size: PAN-resolution side of the OPs count and of the latency input.
        latency_repeats: timed runs (median reported) after one warm-up run.
        count_skipped: count Params/OPs of networks without pretrained weights too.
        keep: image indexes (per split) whose fused outputs are kept for figures.
        progress: show progress bars on stderr.
        featured: networks tested against every other method, per image (:func:`paired_tests`).
        alpha: significance level of those tests.
    """

    data: str = "wv3-longmont"
    models: list[str] = field(default_factory=list)
    classical: list[str] = field(default_factory=list)
    pretrained: str = "wv3-longmont"
    cross: list[str] = field(default_factory=list)
    sensor: str | None = None
    limit: int | None = None
    fr_limit: int | None = None
    latency: bool = True
    engine: bool = True
    complexity_size: int = 256
    latency_repeats: int = 3
    count_skipped: bool = True
    keep: tuple[int, ...] = (0,)
    progress: bool = True
    featured: tuple[str, ...] = FEATURED
    alpha: float = 0.05


@dataclass
class BenchResult:
    """Outcome of :func:`run_benchmark`: ``report`` (JSON-serialisable) and ``samples`` (for figures).

    ``samples[split]``: ``{"index": i, "inputs": {"gt"?, "ms", "lms", "pan"}, "fused": {method: (C,H,W)},
    "sensor": Sensor}`` for the first kept image of each split (DN arrays).
    """

    report: dict[str, Any]
    samples: dict[str, dict[str, Any]]


#: glibc's allocator settings that change PyTorch's timings: with the defaults, large float32 tensors are
#: mapped afresh (and page-faulted in) on every call; raising both keeps freed memory for reuse, as jemalloc
#: or tcmalloc would
MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def allocator_info() -> str:
    """The allocator settings of this process, as ``NAME=value`` pairs of :data:`MALLOC_ENV`, or
    ``"defaults"`` when none is set."""
    set_ = [f"{k}={os.environ[k]}" for k in MALLOC_ENV if k in os.environ]
    return " ".join(set_) if set_ else "defaults"


def machine_info() -> dict[str, Any]:
    """CPU model, cores, platform, python/numpy/torch versions and torch threads."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return info


def paired_tests(
    methods: Sequence[dict[str, Any]], featured: Sequence[str] = FEATURED, *, alpha: float = 0.05
) -> dict[str, Any]:
    """Per-image paired tests of each ``featured`` method against every other method, per split and index.

    Args:
        methods: method records of a benchmark report (``results[split]["per_image"]``: one dict of index
            values per test image, the same images in the same order for every method).
        featured: names of the methods tested against the others (those without results are left out).
        alpha: significance level; ``significant`` is ``p_value < alpha``.

    Returns:
        The report's ``paired_tests`` record (see the module docstring): the test's name, ``alpha``, the
        indexes per split (:data:`PAIRED_INDEXES`; cross-sensor splits as their base split), and one entry
        per (split, featured method, other method) with the test of each index, or a ``reason`` where no
        test could be made (e.g. non-finite per-image values).
    """
    out: dict[str, Any] = {
        "test": WILCOXON_TEST,
        "alpha": alpha,
        "featured": list(featured),
        "indexes": {},
        "pairs": [],
    }
    done = [m for m in methods if m.get("results")]
    for name in featured:
        a = next((m for m in done if m["name"] == name), None)
        if a is None:
            continue
        for split, res_a in a["results"].items():
            indexes = [i for i in PAIRED_INDEXES[split.removeprefix("cross_")] if i in res_a["mean"]]
            out["indexes"][split] = indexes
            for b in done:
                if b["name"] == name or split not in b["results"]:
                    continue
                per_a, per_b = res_a["per_image"], b["results"][split]["per_image"]
                pair: dict[str, Any] = {"split": split, "method": name, "against": b["name"], "n": len(per_a)}
                try:
                    tests = paired_wilcoxon(
                        {i: [d[i] for d in per_a] for i in indexes},
                        {i: [d[i] for d in per_b] for i in indexes},
                        indexes,
                    )
                except (BinsharpError, KeyError) as exc:
                    pair["reason"] = str(exc)
                else:
                    pair["indexes"] = {
                        i: {
                            "mean_diff": t.mean_diff,
                            "wins": t.wins,
                            "statistic": t.statistic,
                            "p_value": t.p_value,
                            "significant": t.significant(alpha),
                        }
                        for i, t in tests.items()
                    }
                out["pairs"].append(pair)
    return out


# ------------------------------------------------------------------------------------------ data
def _looks_like_h5(data: str) -> bool:
    p = Path(data)
    return p.is_file() or p.suffix.lower() in (".h5", ".hdf5")


def _load(path: Path, split: str, settings: BenchSettings, limit: int | None) -> TestSet:
    return load_test_set(path, split, sensor=settings.sensor, limit=limit)


def load_sets(data: str, settings: BenchSettings, *, prefix: str = "") -> dict[str, TestSet]:
    """Test sets of ``data``: ``{prefix+"rr": TestSet, prefix+"fr": TestSet}`` (what exists)."""
    from binsharp.data.catalog import dataset_path

    if _looks_like_h5(data):
        import h5py

        path = Path(data)
        if not path.is_file():
            raise BinsharpError(f"data file not found: {path}")
        try:
            with h5py.File(path, "r") as f:
                has_gt = "gt" in f
        except OSError as exc:
            raise BinsharpError(f"cannot read {path} (truncated or not HDF5): {exc}") from None
        split = "rr" if has_gt else "fr"
        return {prefix + split: _load(path, split, settings, settings.limit if has_gt else settings.fr_limit)}
    sets: dict[str, TestSet] = {}
    for split, name, limit in (("rr", "test_rr", settings.limit), ("fr", "test_fr", settings.fr_limit)):
        try:
            path = Path(dataset_path(data, name))
        except BinsharpError as exc:
            if "has no split" in str(exc):
                continue
            raise
        sets[prefix + split] = _load(path, split, settings, limit)
    if not sets:
        raise BinsharpError(f"dataset {data} has no test split (test_rr or test_fr)")
    return sets


def _data_record(ts: TestSet, name: str) -> dict[str, Any]:
    h, w = ts.arrays["pan"].shape[-2:]
    return {
        "name": name,
        "file": str(ts.path),
        "n_images": ts.n_images,
        "n_total": int(ts.info.get("n_total", ts.n_images)),
        "sensor": ts.sensor.name,
        "bands": ts.n_bands,
        "ratio": ts.ratio,
        "bits": ts.bits,
        "size": f"{h} x {w}",
        "manifest_id": ts.manifest_id,
    }


# ------------------------------------------------------------------------------------------ fusers
class _Recorder:
    """Wraps a fuser: keeps the outputs of chosen images and the fusing time."""

    def __init__(self, inner: Fuser, keep: Sequence[int]) -> None:
        self.inner = inner
        self.name = inner.name
        self.bands = inner.bands
        self.ratio = inner.ratio
        self.sensor = inner.sensor
        self.bits = inner.bits
        self.halo = inner.halo
        self.keep = set(keep)
        self.kept: dict[int, np.ndarray] = {}
        self.seconds = 0.0
        self._i = 0

    def __call__(self, ms_lr: np.ndarray, pan: np.ndarray, lms: np.ndarray | None = None) -> np.ndarray:
        t0 = time.perf_counter()
        out = self.inner(ms_lr, pan, lms)
        self.seconds += time.perf_counter() - t0
        if self._i in self.keep:
            self.kept[self._i] = np.asarray(out, dtype=np.float64)
        self._i += 1
        return out


def _median_time(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(statistics.median(times))


def _torch_latency(model: Any, size: int, repeats: int) -> float:
    import torch

    inputs = model.example_inputs(size)
    model.eval()

    def run() -> None:
        with torch.no_grad():
            model(**inputs)

    return _median_time(run, repeats)


def _engine(model: Any, meta: dict[str, Any], size: int, repeats: int, latency: bool) -> dict[str, Any]:
    """Export ``model`` to a temporary ``.bsp``; its size and (``latency``) engine latency, or the reason."""
    out: dict[str, Any] = {}
    try:
        from binsharp.deploy.export import export_model
        from binsharp.deploy.runtime import Engine
    except ImportError as exc:  # pragma: no cover - deploy is part of the package
        return {"bsp_reason": f"engine unavailable: {exc}"}
    with tempfile.TemporaryDirectory(prefix="binsharp-bench-") as tmp:
        path = Path(tmp) / "model.bsp"
        try:
            export_model(model, path, meta=meta)
        except (BinsharpError, NotImplementedError) as exc:
            return {"bsp_reason": str(exc)}
        out["bsp_bytes"] = path.stat().st_size
        if latency:
            engine = Engine(path)
            ex = model.example_inputs(size)
            arrays = {k: v.numpy().astype(np.float32) for k, v in ex.items() if k in engine.inputs}
            out["engine_s"] = _median_time(lambda: engine(**arrays), repeats)
    return out


def _complexity(model: Any, size: int) -> dict[str, Any]:
    from binsharp.nn.complexity import count

    r = count(model, model.example_inputs(size))
    keys = ("ops", "params", "bops", "flops", "elementwise", "params_binary", "params_float", "weight_bytes")
    return {k: getattr(r, k) for k in keys}


# ------------------------------------------------------------------------------------------ main
def run_benchmark(settings: BenchSettings) -> BenchResult:
    """Run the benchmark described by ``settings``; see the module docstring for the report layout."""
    from tqdm.auto import tqdm

    sets = load_sets(settings.data, settings)
    for cross in settings.cross:
        sets.update(load_sets(cross, settings, prefix="cross_"))
    data_names = {
        k: (Path(settings.data).name if _looks_like_h5(settings.data) else settings.data) for k in sets
    }
    for k in sets:
        if k.startswith("cross_"):
            data_names[k] = ", ".join(settings.cross)
    report: dict[str, Any] = {
        "binsharp_version": __version__,
        "settings": {
            **{k: v for k, v in asdict(settings).items() if k not in ("progress", "keep")},
            "latency": {},
        },
        "machine": machine_info(),
        "data": {k: _data_record(ts, data_names[k]) for k, ts in sets.items()},
        "methods": [],
    }
    if settings.latency:
        import torch

        report["settings"]["latency"] = {
            "repeats": settings.latency_repeats,
            "threads": torch.get_num_threads(),
            "cpu": report["machine"].get("cpu", platform.machine()),
            "allocator": allocator_info(),
        }
    samples: dict[str, dict[str, Any]] = {}
    keep = tuple(settings.keep)
    for split, ts in sets.items():
        if keep and keep[0] < ts.n_images:
            i = keep[0]
            samples[split] = {
                "index": i,
                "inputs": {k: v[i] for k, v in ts.arrays.items()},
                "fused": {},
                "sensor": ts.sensor,
            }

    # one task per (method, split) for the progress bar, plus one per network for complexity/latency
    methods: list[dict[str, Any]] = []
    for name in settings.classical:
        methods.append({"name": name, "kind": "classical", "status": "ok", "results": {}})
    networks: dict[str, Any] = {}
    for name in settings.models:
        from binsharp import zoo
        from binsharp.models import model_info

        info = model_info(name)
        rec: dict[str, Any] = {"name": info["name"], "kind": info["kind"], "status": "ok", "results": {}}
        try:
            path = zoo.checkpoint_path(info["name"], settings.pretrained)
            entry = zoo.entry(info["name"], settings.pretrained)
        except BinsharpError as exc:
            have = zoo.available().get(settings.pretrained.strip().lower(), [])
            reason = f"no pretrained weights for {settings.pretrained} in the model zoo"
            if "corrupt" in str(exc) or "missing" in str(exc):
                reason = str(exc)
            rec.update(status="skipped", reason=reason, detail=str(exc), zoo_holds=have)
        else:
            fuser = CheckpointFuser(path)
            networks[info["name"]] = fuser
            rec["pretrained"] = {
                "dataset": settings.pretrained,
                "checkpoint": str(path),
                "sha256": entry.get("sha256"),
                "steps": (entry.get("budget") or {}).get("steps", entry.get("step")),
                "seed": entry.get("seed"),
                "command": entry.get("command"),
                "log": str(zoo.zoo_dir() / entry["log"]) if entry.get("log") else None,
                "complexity": entry.get("complexity"),
            }
            rec["size"] = {"checkpoint_bytes": path.stat().st_size}
        methods.append(rec)
    report["methods"] = methods

    tasks = [(m, split) for m in methods if m["status"] == "ok" for split in sets]
    extra = [
        m for m in methods if m["kind"] != "classical" and (m["status"] == "ok" or settings.count_skipped)
    ]
    extra_cls = [m for m in methods if m["kind"] == "classical" and settings.latency]
    total = len(tasks) + len(extra) + len(extra_cls)
    bar = tqdm(
        total=total, desc="bench", unit="task", disable=not show_progress(settings.progress), file=sys.stderr
    )
    try:
        for m, split in tasks:
            ts = sets[split]
            bar.set_postfix_str(f"{m['name']} {split}")
            if m["kind"] == "classical":
                inner: Any = method_fuser(m["name"], ts.sensor, ts.ratio)
            else:
                inner = networks[m["name"]]
                mismatch = None
                if inner.bands != ts.n_bands:
                    mismatch = f"{inner.bands}-band model, {ts.n_bands}-band data"
                elif inner.bits != ts.bits:
                    mismatch = f"trained on {inner.bits}-bit data, the test data is {ts.bits}-bit"
                if mismatch:
                    m.setdefault("notes", []).append(f"{split}: not run ({mismatch})")
                    bar.update(1)
                    continue
            rec_fuser = _Recorder(inner, keep[:1])
            res = evaluate_source(rec_fuser, ts)
            m["results"][split] = {k: res[k] for k in ("mean", "std", "per_image", "settings")}
            m.setdefault("fuse_seconds", {})[split] = round(rec_fuser.seconds, 4)
            if split in samples and samples[split]["index"] in rec_fuser.kept:
                samples[split]["fused"][m["name"]] = rec_fuser.kept[samples[split]["index"]]
            bar.update(1)
        size = settings.complexity_size
        for m in extra:
            bar.set_postfix_str(f"{m['name']} complexity")
            if m["status"] == "ok":
                fuser = networks[m["name"]]
                model, meta = fuser.model, fuser.meta
            else:
                from binsharp import models

                model, meta = models.create(m["name"]).eval(), {}
            stored = m.get("pretrained", {}).get("complexity") or {}
            if stored.get("size") == size and stored.get("ops") is not None:
                m["complexity"] = {k: v for k, v in stored.items() if k != "size"}  # counted by train_zoo
            else:
                try:
                    m["complexity"] = _complexity(model, size)
                except BinsharpError as exc:  # a layer the counter does not know: say so, count nothing
                    m["complexity"] = {}
                    m["complexity_reason"] = str(exc)
            if m["status"] == "ok":
                if settings.latency:
                    m.setdefault("latency", {})["torch_s"] = _torch_latency(
                        model, size, settings.latency_repeats
                    )
                if settings.engine and m["kind"] == "binary":
                    eng = _engine(model, meta, size, settings.latency_repeats, settings.latency)
                    m.setdefault("size", {}).update({k: v for k, v in eng.items() if k.startswith("bsp")})
                    if "engine_s" in eng:
                        m.setdefault("latency", {})["engine_s"] = eng["engine_s"]
                    elif "bsp_reason" in eng:
                        m.setdefault("latency", {})["engine_reason"] = eng["bsp_reason"]
                elif settings.engine:
                    m.setdefault("size", {})["bsp_reason"] = "full-precision network: no packed engine"
            bar.update(1)
        if extra_cls:
            first = next(iter(sets.values()))
            sensor = first.sensor
            r = first.ratio
            rng = np.random.default_rng(0)
            hi = float(max_dn(first.bits))
            ms = rng.uniform(0.1 * hi, 0.5 * hi, (first.n_bands, size // r, size // r))
            pan = rng.uniform(0.1 * hi, 0.5 * hi, (1, size, size))
            for m in extra_cls:
                bar.set_postfix_str(f"{m['name']} latency")
                f = method_fuser(m["name"], sensor, r)
                m["latency"] = {
                    "numpy_s": _median_time(functools.partial(f, ms, pan), settings.latency_repeats)
                }
                bar.update(1)
    finally:
        bar.close()
    report["paired_tests"] = paired_tests(methods, settings.featured, alpha=settings.alpha)
    return BenchResult(report=report, samples=samples)
