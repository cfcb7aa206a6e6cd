"""Pretrained model zoo: checkpoints trained by binsharp, loadable by model name and dataset.

Usage::

    from binsharp import models, zoo

    zoo.available()                                   # {"wv3-longmont": ["bnnpan", "s2bnet", ...]}
    net = models.create("s2bnet", pretrained="wv3-longmont")    # eval mode, weights loaded
    net, meta = models.load_pretrained("s2bnet", "wv3-longmont")   # the same, with the checkpoint metadata

Layout of a zoo directory (the package's ``binsharp/zoo/weights`` unless ``$BINSHARP_ZOO`` names another)::

    manifest.json                         index of the checkpoints (see below)
    <dataset>/data-manifest.json          the training dataset's manifest.json (how the data was made)
    <dataset>/<model>.safetensors         weights + metadata (binsharp checkpoint, binsharp.weights)
    <dataset>/<model>.json                the checkpoint metadata, readable copy
    <dataset>/<model>.csv                 training log: the engine's per-stage metrics.csv files joined,
                                          with ``stage`` and ``global_step`` columns (train/loss,
                                          train/lr, val/loss, val/q2n, val/sam, val/ergas, ...)

``manifest.json``::

    {"format": "binsharp-zoo", "format_version": 1,
     "checkpoints": {"<dataset>": {"<model>": {
         "checkpoint": "<dataset>/<model>.safetensors", "meta": "...json", "log": "...csv",
         "data_manifest": "<dataset>/data-manifest.json",
         "sha256": "<hex of the .safetensors file>", "bytes": int, "kind": "fp" | "binary",
         "bands": int, "sensor": str, "bits": int, "ratio": int,
         "budget": {"steps": int, "stages": [{"name", "steps", "batch_size", "lr", "scheduler"}]},
         "seed": int, "command": str, "wall_time_s": float, "machine": {...},
         "val": {...}, "created": str, "binsharp_version": str}}}}

This package is the index only (it sits below :mod:`binsharp.models` and imports no model):
:func:`binsharp.models.load_pretrained` loads a checkpoint (safetensors: no code is executed) after
:func:`checkpoint_path` has checked its SHA-256 against the manifest. ``benchmarks/train_zoo.py`` trains the
models and fills the zoo with :func:`add_checkpoint`.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import json
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from binsharp.errors import BinsharpError
from binsharp.fileio import atomic_output, sha256_file

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "ZOO_ENV",
    "add_checkpoint",
    "available",
    "checkpoint_path",
    "entry",
    "merge_logs",
    "merge_zoo",
    "read_manifest",
    "zoo_dir",
]

FORMAT = "binsharp-zoo"
FORMAT_VERSION = 1
#: Environment variable naming another zoo directory (tests, private zoos).
ZOO_ENV = "BINSHARP_ZOO"
MANIFEST = "manifest.json"
DATA_MANIFEST = "data-manifest.json"


def zoo_dir(root: str | os.PathLike | None = None) -> Path:
    """The zoo directory: ``root`` if given, else ``$BINSHARP_ZOO``, else the package's ``zoo/weights``."""
    if root is not None:
        return Path(root)
    env = os.environ.get(ZOO_ENV)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parent / "weights"


def _empty_manifest() -> dict[str, Any]:
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "checkpoints": {}}


def read_manifest(root: str | os.PathLike | None = None) -> dict[str, Any]:
    """The zoo's ``manifest.json`` (an empty manifest when the directory has none).

    Raises :class:`BinsharpError` for a corrupt file or a format this binsharp does not read.
    """
    path = zoo_dir(root) / MANIFEST
    if not path.is_file():
        return _empty_manifest()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise BinsharpError(f"corrupt zoo manifest {path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BinsharpError(f"{path} is not a binsharp zoo manifest")
    if int(data.get("format_version", 0)) > FORMAT_VERSION:
        raise BinsharpError(
            f"zoo manifest {path} has format version {data['format_version']}; "
            f"this binsharp reads up to {FORMAT_VERSION}"
        )
    if not isinstance(data.get("checkpoints"), dict):
        raise BinsharpError(f"corrupt zoo manifest {path}: no 'checkpoints' mapping")
    return data


def available(root: str | os.PathLike | None = None) -> dict[str, list[str]]:
    """``{dataset: sorted model names}`` of the checkpoints in the zoo."""
    cks = read_manifest(root)["checkpoints"]
    return {ds: sorted(models) for ds, models in sorted(cks.items()) if models}


def _describe(avail: Mapping[str, Sequence[str]]) -> str:
    if not avail:
        return "the zoo holds no pretrained checkpoints yet (train them with benchmarks/train_zoo.py)"
    parts = [f"{ds}: {', '.join(models)}" for ds, models in avail.items()]
    return "available: " + "; ".join(parts)


def entry(model: str, dataset: str, root: str | os.PathLike | None = None) -> dict[str, Any]:
    """The manifest entry of ``model`` pretrained on ``dataset`` (names case-insensitive).

    Raises :class:`BinsharpError` naming what the zoo holds when the pair is missing.
    """
    if not isinstance(model, str) or not isinstance(dataset, str):
        raise BinsharpError(f"pretrained weights are named by strings, got {model!r} / {dataset!r}")
    m, d = model.strip().lower(), dataset.strip().lower()
    cks = read_manifest(root)["checkpoints"]
    found = cks.get(d, {}).get(m)
    if found is None:
        avail = available(root)
        raise BinsharpError(
            f"no pretrained weights exist for model {m!r} on dataset {d!r}; {_describe(avail)} "
            f"[zoo: {zoo_dir(root)}]"
        )
    return copy.deepcopy(found)


def checkpoint_path(
    model: str, dataset: str, root: str | os.PathLike | None = None, *, verify: bool = True
) -> Path:
    """Path of the ``.safetensors`` checkpoint of ``model`` pretrained on ``dataset``.

    With ``verify`` the file's SHA-256 is checked against the manifest (BinsharpError when it differs or the
    file is missing).
    """
    e = entry(model, dataset, root)
    path = zoo_dir(root) / e["checkpoint"]
    if not path.is_file():
        raise BinsharpError(f"zoo checkpoint {path} listed in the manifest is missing")
    if verify and e.get("sha256") and sha256_file(path) != e["sha256"]:
        raise BinsharpError(f"zoo checkpoint {path} is corrupt (SHA-256 differs from the manifest)")
    return path


# ------------------------------------------------------------------------------------------ writing
def merge_logs(
    stage_logs: Sequence[tuple[str, str | os.PathLike] | tuple[str, str | os.PathLike, int]],
    out: str | os.PathLike,
) -> Path:
    """Join per-stage CSV logs into one CSV at ``out`` with leading ``stage`` and ``global_step`` columns.

    ``stage_logs``: ``(stage name, metrics.csv path)`` or ``(stage name, path, steps before the stage)`` in
    stage order; ``global_step`` is the row's ``step`` plus that offset (the offset defaults to 0). Columns
    are the union of the stages' columns (first appearance order); missing values are empty.
    """
    rows: list[dict[str, str]] = []
    columns: list[str] = ["stage", "global_step"]
    for item in stage_logs:
        stage, path = item[0], item[1]
        offset = int(item[2]) if len(item) > 2 else 0  # type: ignore[misc]
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            for name in reader.fieldnames or []:
                if name not in columns:
                    columns.append(name)
            for row in reader:
                clean = {k: v for k, v in row.items() if k is not None}
                step = clean.get("step", "")
                gstep = str(int(float(step)) + offset) if step not in ("", None) else ""
                rows.append({"stage": stage, "global_step": gstep, **clean})
    out = Path(out)
    with atomic_output(out, overwrite=True) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=columns, restval="")
            w.writeheader()
            w.writerows(rows)
    return out


def _write_json(path: Path, data: Any) -> None:
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def add_checkpoint(
    checkpoint: str | os.PathLike,
    *,
    dataset: str,
    log: str | os.PathLike | None = None,
    data_manifest: Mapping[str, Any] | None = None,
    info: Mapping[str, Any] | None = None,
    root: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Copy a trained checkpoint into the zoo and record it in the manifest.

    Args:
        checkpoint: a binsharp ``.safetensors`` checkpoint (its ``.json`` sidecar is copied too when present).
        dataset: name of the training dataset (the zoo key, e.g. ``"wv3-longmont"``).
        log: training log CSV copied as ``<dataset>/<model>.csv`` (e.g. from :func:`merge_logs`).
        data_manifest: the training dataset's manifest (default: the one stored in the checkpoint).
        info: extra manifest fields (``command``, ``budget``, ``seed``, ``wall_time_s``, ``machine``, ...).
        root: zoo directory (default :func:`zoo_dir`).
        overwrite: replace an existing entry of the same model and dataset.

    Returns:
        The manifest entry written.
    """
    from binsharp.weights import read_meta

    src = Path(checkpoint)
    meta = read_meta(src)
    model = str(meta["model"]).lower()
    ds = dataset.strip().lower()
    base = zoo_dir(root)
    manifest = read_manifest(base)
    if model in manifest["checkpoints"].get(ds, {}) and not overwrite:
        raise BinsharpError(f"the zoo already holds {model!r} for {ds!r} (pass overwrite to replace it)")
    folder = base / ds
    folder.mkdir(parents=True, exist_ok=True)
    rel = f"{ds}/{model}"
    with atomic_output(base / f"{rel}.safetensors", overwrite=True) as tmp:
        shutil.copyfile(src, tmp)
    sidecar = src.with_suffix(".json")
    if sidecar.is_file():
        with atomic_output(base / f"{rel}.json", overwrite=True) as tmp:
            shutil.copyfile(sidecar, tmp)
    else:
        _write_json(base / f"{rel}.json", meta)
    record: dict[str, Any] = {
        "checkpoint": f"{rel}.safetensors",
        "meta": f"{rel}.json",
        "log": None,
        "data_manifest": None,
        "sha256": sha256_file(base / f"{rel}.safetensors"),
        "bytes": (base / f"{rel}.safetensors").stat().st_size,
        "model": model,
        "dataset": ds,
        "kind": meta.get("kind"),
        "bands": meta.get("bands"),
        "config": meta.get("config"),
        "sensor": meta.get("sensor"),
        "bits": meta.get("bits"),
        "ratio": meta.get("ratio"),
        "step": meta.get("step"),
        "seed": meta.get("seed"),
        "val": meta.get("val"),
        "created": meta.get("created"),
        "binsharp_version": meta.get("binsharp_version"),
    }
    if log is not None:
        with atomic_output(base / f"{rel}.csv", overwrite=True) as tmp:
            shutil.copyfile(log, tmp)
        record["log"] = f"{rel}.csv"
    dm = data_manifest if data_manifest is not None else meta.get("data_manifest")
    if dm:
        _write_json(folder / DATA_MANIFEST, dm)
        record["data_manifest"] = f"{ds}/{DATA_MANIFEST}"
    record.update(copy.deepcopy(dict(info or {})))
    with _manifest_lock(base):
        manifest = read_manifest(base)  # re-read: keep entries written meanwhile
        manifest["checkpoints"].setdefault(ds, {})[model] = json.loads(json.dumps(record, default=str))
        manifest["checkpoints"] = {
            d: dict(sorted(m.items())) for d, m in sorted(manifest["checkpoints"].items())
        }
        _write_json(base / MANIFEST, manifest)
    return record


#: Entry fields :func:`add_checkpoint` derives from the checkpoint (the others are carried as ``info``).
_DERIVED = ("checkpoint", "meta", "log", "data_manifest", "sha256", "bytes", "model", "dataset", "kind",
            "bands", "config", "sensor", "bits", "ratio", "step", "seed", "val", "created",
            "binsharp_version")  # fmt: skip


def merge_zoo(
    source: str | os.PathLike, root: str | os.PathLike | None = None, *, overwrite: bool = False
) -> list[dict[str, Any]]:
    """Add every entry of the zoo folder ``source`` (e.g. weights trained on another machine) to the zoo
    ``root``: checkpoints, sidecars, logs and data manifests are copied and verified against their recorded
    SHA-256, the entries' other fields (command, budget, machine, ...) carried over. All entries are checked
    before anything is copied. Returns the entries written."""
    src = Path(source)
    manifest = read_manifest(src)
    if not manifest["checkpoints"] and not (src / MANIFEST).is_file():
        raise BinsharpError(f"{src} holds no zoo manifest")
    base = read_manifest(root)
    jobs = []
    for ds, entries in manifest["checkpoints"].items():
        for model, e in entries.items():
            ckpt = src / e["checkpoint"]
            if not ckpt.is_file() or sha256_file(ckpt) != e.get("sha256"):
                raise BinsharpError(f"{ckpt} is missing or does not match its recorded SHA-256")
            if model in base["checkpoints"].get(ds, {}) and not overwrite:
                raise BinsharpError(
                    f"the zoo already holds {model!r} for {ds!r} (pass overwrite to replace it)"
                )
            jobs.append((ds, e, ckpt))
    written = []
    for ds, e, ckpt in jobs:
        dm_path = src / e["data_manifest"] if e.get("data_manifest") else None
        dm = json.loads(dm_path.read_text(encoding="utf-8")) if dm_path and dm_path.is_file() else None
        log = src / e["log"] if e.get("log") else None
        info = {k: v for k, v in e.items() if k not in _DERIVED}
        written.append(
            add_checkpoint(
                ckpt, dataset=ds, log=log, data_manifest=dm, info=info, root=root, overwrite=overwrite
            )
        )
    return written


@contextlib.contextmanager
def _manifest_lock(base: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``base/.manifest.lock`` (POSIX ``flock``; a no-op where it is missing), so
    that processes training different models into one zoo do not lose each other's manifest entries."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(base / ".manifest.lock", "a", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
