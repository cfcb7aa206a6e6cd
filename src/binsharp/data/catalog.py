"""Named datasets built from the real imagery of the ``dgsamples`` package, on first use.

============== ====== ===================== ===========================================================
name           sensor source                splits
============== ====== ===================== ===========================================================
wv3-longmont   WV3    ``wv3_longmont_1k``   train (1127 patches), val (98), test_rr (12 x 128 px),
                                            test_fr (12 x 512 px PAN)
wv2-longmont   WV2    ``wv2_longmont_1k``   test_rr (9 x 160 px), test_fr (9 x 512 px PAN), for
                                            cross-sensor evaluation
============== ====== ===================== ===========================================================

Both are one ~1 km scene of Longmont, Colorado (PAN 0.3 m / MS 1.2 m for WV3; 0.5 m / 2 m for WV2).
The WV3 training stride (16 MS pixels, a quarter of the 64-pixel patch) gives about a thousand patches,
which keeps the build to a few seconds and the cache under 1 GB.

Datasets are built into ``$BINSHARP_CACHE/datasets/NAME`` (default cache:
``platformdirs.user_cache_dir("binsharp")``) under a temporary name and renamed into place, so an
interrupted build leaves nothing half-made (the partials of killed builds are removed by the next one).
The imagery is never copied anywhere else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from binsharp.data.builder import MANIFEST, MANIFEST_FORMAT, SPLIT_FILES, build_dataset, read_manifest
from binsharp.data.io import read_pan_ms_pair
from binsharp.errors import BinsharpError
from binsharp.names import resolve_name, suggestions

SPLITS: tuple[str, ...] = tuple(SPLIT_FILES)


@dataclass(frozen=True)
class DatasetSpec:
    """How a named dataset is made: sensor, ``dgsamples`` folder and builder settings."""

    name: str
    sensor: str
    folder: str
    description: str
    build_kwargs: dict[str, Any] = field(default_factory=dict)


CATALOG: dict[str, DatasetSpec] = {
    s.name: s
    for s in (
        DatasetSpec(
            "wv3-longmont",
            "WV3",
            "wv3_longmont_1k",
            "WorldView-3 Longmont (CO) 2014-10-06, 8-band 1.2 m + PAN 0.3 m: train, val, test_rr, test_fr",
            {"splits": {"train": 0.55, "val": 0.12, "test": 0.33}, "stride": 16},
        ),
        DatasetSpec(
            "wv2-longmont",
            "WV2",
            "wv2_longmont_1k",
            "WorldView-2 Longmont (CO) 2014-06-20, 8-band 2 m + PAN 0.5 m: test_rr, test_fr (cross-sensor)",
            {"splits": {"test": 1.0}},
        ),
    )
}


def list_datasets() -> list[str]:
    """Names of the catalog's datasets."""
    return list(CATALOG)


def cache_dir() -> Path:
    """Root of binsharp's cache: ``$BINSHARP_CACHE`` or ``platformdirs.user_cache_dir("binsharp")``."""
    env = os.environ.get("BINSHARP_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("binsharp"))


def _spec(name: str) -> DatasetSpec:
    return CATALOG[resolve_name(name, list(CATALOG), what="dataset")]


def dgsamples_dir() -> Path:
    """Directory of the installed ``dgsamples`` package (the source imagery)."""
    try:
        import dgsamples
    except ImportError as exc:
        raise BinsharpError("the named datasets need the 'dgsamples' package: pip install dgsamples") from exc
    return Path(dgsamples.__file__).resolve().parent


def source_files(name: str) -> tuple[Path, Path]:
    """``(pan_tif, ms_tif)`` of a named dataset inside the ``dgsamples`` package."""
    spec = _spec(name)
    root = dgsamples_dir() / spec.folder
    found = []
    for kind in ("PAN", "MUL"):
        files = sorted(root.glob(f"*_{kind}/*.TIF"))
        if len(files) != 1:
            raise BinsharpError(f"expected one *_{kind}/*.TIF in {root}, found {len(files)}")
        found.append(files[0])
    return found[0], found[1]


def dataset_dir(name: str) -> Path:
    """Where a named dataset lives (built or not)."""
    return cache_dir() / "datasets" / _spec(name).name


def is_built(name: str) -> bool:
    """True if the named dataset's directory holds a complete build of the current format."""
    d = dataset_dir(name)
    try:
        m = read_manifest(d)
    except BinsharpError:
        return False
    return m.get("format") == MANIFEST_FORMAT and all((d / s["file"]).is_file() for s in m["splits"].values())


def build(name: str, *, force: bool = False, progress: bool = True) -> Path:
    """Build a named dataset into the cache (no-op if built, unless ``force``); returns its directory."""
    spec = _spec(name)
    out = dataset_dir(spec.name)
    if is_built(spec.name) and not force:
        return out
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BinsharpError(f"cannot create the dataset cache {out.parent}: {exc.strerror or exc}") from None
    pan_path, ms_path = source_files(spec.name)
    pan, ms = read_pan_ms_pair(pan_path, ms_path, ratio=4)
    try:
        build_dataset(
            pan,
            ms,
            sensor=spec.sensor,
            out_dir=out,
            name=spec.name,
            progress=progress,
            overwrite=force or out.exists(),
            **spec.build_kwargs,
        )
    except BinsharpError:
        if is_built(spec.name):  # another process finished the same build first
            return out
        raise
    return out


def ensure_built(name: str, *, progress: bool = True) -> Path:
    """Directory of a named dataset, building it on first use."""
    return build(name, force=False, progress=progress)


def dataset_path(name_or_path: str | os.PathLike, split: str = "test_rr", *, progress: bool = True) -> Path:
    """h5 file of one split of a dataset.

    Args:
        name_or_path: a catalog name (built on first use), a dataset directory holding ``manifest.json``,
            or an h5 file (returned as is; ``split`` is then ignored).
        split: ``"train"``, ``"val"``, ``"test_rr"`` or ``"test_fr"``.
    """
    if split not in SPLITS:
        raise BinsharpError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
    p = Path(name_or_path)
    if p.is_file():
        return p
    if p.is_dir():
        m = read_manifest(p)
        if split not in m["splits"]:
            raise BinsharpError(f"dataset {p} has no split {split!r} (has: {', '.join(m['splits'])})")
        return p / m["splits"][split]["file"]
    if str(name_or_path).strip().lower() not in CATALOG:
        close = suggestions(str(name_or_path), list(CATALOG))
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise BinsharpError(
            f"no such file or dataset: {name_or_path}{hint} (known datasets: {', '.join(CATALOG)}; "
            "or an h5 path)"
        )
    d = ensure_built(str(name_or_path), progress=progress)
    m = read_manifest(d)
    if split not in m["splits"]:
        raise BinsharpError(f"dataset {m['name']} has no split {split!r} (has: {', '.join(m['splits'])})")
    return d / m["splits"][split]["file"]


def dataset_info(name_or_path: str | os.PathLike, *, progress: bool = True) -> dict[str, Any]:
    """The manifest of a named dataset (built on first use) or of a dataset directory."""
    p = Path(name_or_path)
    if p.is_dir():
        return read_manifest(p)
    if p.is_file() and p.name == MANIFEST:
        return read_manifest(p)
    return read_manifest(ensure_built(str(name_or_path), progress=progress))
