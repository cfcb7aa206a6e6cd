"""Turn one PAN/MS scene into reduced- and full-resolution datasets in the PanCollection layout.

How a scene is cut (all sizes below in MS pixels unless stated; one MS pixel = ``ratio`` x ``ratio`` PAN
pixels):

1. **Pair check** (:func:`binsharp.data.io.check_pair`): integer ratio, registration, dtype, NaN.
2. **No-data**: a pixel is invalid where any MS band or any PAN pixel of its ``ratio x ratio`` block is 0,
   the declared no-data value, or NaN. The frame of invalid pixels around the scene is trimmed greedily
   (at most 10 % of each side); any invalid pixel left is handled per patch (below).
3. **Regions**: the trimmed scene is cut into strips along its longer axis, in the order train, val, test,
   with sizes proportional to ``splits`` and separated by ``margin`` pixels (default 24, at least the MTF
   filter radius of 20 pixels at the MS scale where the filter is applied). The protocol is applied to each
   region (train/val) or each tile (test) on its own pixels only, so no pixel of one split influences another.
4. **train / val**: Wald reduced-resolution simulation of the whole region
   (:func:`binsharp.protocol.reduced_resolution_triplet`), then ``patch x patch`` patches (64: ``gt``/``lms``/
   ``pan`` 64 x 64, ``ms`` 16 x 16) every ``stride`` pixels. A patch is dropped if an invalid pixel lies
   within ``guard`` pixels of it (MTF radius + 23-tap support; circular, as the interpolation wraps), so no
   patch sees no-data. Training patches are shuffled with ``seed``.
5. **test_rr**: a grid of ``T x T`` tiles over the test region, ``T`` the largest multiple of 32 and of the
   ratio (at least 128) giving at least ``min_test_tiles`` tiles free of invalid pixels; each tile is
   degraded on its own (exactly what the reference toolbox does to a test image).
6. **test_fr**: full-resolution tiles of the same test region: ``fr_tile x fr_tile`` PAN (default 512) with
   the original MS (128 x 128), ``lms`` = 23-tap interpolation of the tile's MS; no ``gt``.

Outputs (``out_dir``): ``train.h5``, ``val.h5``, ``test_rr.h5``, ``test_fr.h5`` (those requested by
``splits``) with attributes ``sensor``, ``bits``, ``ratio``, ``gnyq_ms``, ``gnyq_pan``, ``split``, and
``manifest.json`` (sources with SHA-256, regions, margins, patch sizes, strides, counts, version, protocol
settings, SHA-256 of every output, and the top-left corner of every patch/tile in file order, in MS pixels
of the source grid: ``positions_ms_px`` / ``tiles_ms_px``). The directory is built under a temporary name
and renamed into place (:func:`binsharp.fileio.atomic_output_dir`), so an interrupted or terminated build
leaves nothing half-made. Identical inputs give identical bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from binsharp import __version__
from binsharp.data.io import Raster, check_pair, write_h5_stream
from binsharp.errors import BinsharpError
from binsharp.fileio import atomic_output_dir, check_output_dir, sha256_file
from binsharp.metrics.reduced import min_image_size
from binsharp.progress import show_progress
from binsharp.sensors import Sensor, get_sensor

#: Default split fractions (of the trimmed scene's long axis, after margins).
DEFAULT_SPLITS: dict[str, float] = {"train": 0.55, "val": 0.12, "test": 0.33}
SPLIT_FILES: dict[str, str] = {
    "train": "train.h5",
    "val": "val.h5",
    "test_rr": "test_rr.h5",
    "test_fr": "test_fr.h5",
}
MTF_TAPS = 41
MTF_RADIUS = MTF_TAPS // 2
INTERP_HALF_TAPS = 11
MANIFEST = "manifest.json"
#: Training/validation patches assembled and written per block of this many (bounds memory).
PATCH_BLOCK = 256
MANIFEST_FORMAT = "binsharp-dataset/1"


def _protocol():
    from binsharp import protocol

    return protocol


def guard_radius(ratio: int) -> int:
    """Pixels (MS scale) around a patch that influence its ``ms``/``lms``: MTF radius + 23-tap support."""
    return MTF_RADIUS + INTERP_HALF_TAPS * (ratio - 1) + ratio // 2


def valid_mask(pan: Raster, ms: Raster, ratio: int) -> np.ndarray:
    """(h, w) bool on the MS grid: True where all MS bands and the whole PAN block hold data."""
    h, w = ms.height, ms.width
    pv = pan.valid_mask()[: h * ratio, : w * ratio].reshape(h, ratio, w, ratio).all(axis=(1, 3))
    return ms.valid_mask() & pv


def trim_box(valid: np.ndarray, max_frac: float = 0.1) -> tuple[int, int, int, int]:
    """Greedily trim border rows/columns holding invalid pixels; returns ``(row0, col0, rows, cols)``.

    The border line with the largest invalid fraction goes first; at most ``max_frac`` of each dimension is
    removed from each side.
    """
    h, w = valid.shape
    inv = ~valid
    top, bottom, left, right = 0, h, 0, w
    lim_r, lim_c = int(max_frac * h), int(max_frac * w)
    while bottom - top > 0 and right - left > 0:
        cands = []
        if top < lim_r:
            cands.append((inv[top, left:right].mean(), 0))
        if h - bottom < lim_r:
            cands.append((inv[bottom - 1, left:right].mean(), 1))
        if left < lim_c:
            cands.append((inv[top:bottom, left].mean(), 2))
        if w - right < lim_c:
            cands.append((inv[top:bottom, right - 1].mean(), 3))
        cands = [c for c in cands if c[0] > 0]
        if not cands:
            break
        side = max(cands, key=lambda c: (c[0], -c[1]))[1]
        if side == 0:
            top += 1
        elif side == 1:
            bottom -= 1
        elif side == 2:
            left += 1
        else:
            right -= 1
    return top, left, bottom - top, right - left


def layout_regions(
    box: tuple[int, int, int, int], splits: Mapping[str, float], margin: int, ratio: int
) -> dict[str, tuple[int, int, int, int]]:
    """Cut ``box`` (row0, col0, rows, cols) into strips train/val/test along its longer axis.

    Strip lengths are proportional to ``splits`` (after removing the margins), multiples of ``ratio``; the
    cross size is the box's, floored to a multiple of ``ratio``. Returns name -> (row0, col0, rows, cols).
    """
    names = [n for n in ("train", "val", "test") if splits.get(n, 0) > 0]
    r0, c0, R, C = box
    along_rows = R >= C
    length, cross = (R, C) if along_rows else (C, R)
    cross -= cross % ratio
    usable = length - margin * (len(names) - 1)
    total = sum(float(splits[n]) for n in names)
    sizes = [int(float(splits[n]) / total * usable) // ratio * ratio for n in names]
    sizes[-1] = (usable - sum(sizes[:-1])) // ratio * ratio
    if min(sizes, default=0) <= 0:
        raise BinsharpError(f"scene too small for splits {dict(splits)} with margin {margin}: strips {sizes}")
    out, pos = {}, 0
    for n, s in zip(names, sizes, strict=True):
        out[n] = (r0 + pos, c0, s, cross) if along_rows else (r0, c0 + pos, cross, s)
        pos += s + margin
    return out


def _window_sum(mask: np.ndarray) -> np.ndarray:
    """Summed-area table with a zero first row/column: sum of mask[a:b, c:d] = S[b,d]-S[a,d]-S[b,c]+S[a,c]."""
    s = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int64)
    s[1:, 1:] = mask.astype(np.int64).cumsum(0).cumsum(1)
    return s


def _clean(sat: np.ndarray, r: int, c: int, size: int) -> bool:
    return int(sat[r + size, c + size] - sat[r, c + size] - sat[r + size, c] + sat[r, c]) == 0


def _tile_grid(rows: int, cols: int, tile: int) -> list[tuple[int, int]]:
    return [(i * tile, j * tile) for i in range(rows // tile) for j in range(cols // tile)]


def _source_info(r: Raster, role: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "shape": list(r.array.shape),
        "dtype": str(r.array.dtype),
        "crs": r.crs.to_string() if r.crs is not None else None,
        "transform": [float(v) for v in tuple(r.transform)[:6]] if r.transform is not None else None,
        "nodata": r.nodata,
    }
    if r.path is not None and Path(r.path).is_file():
        info["file"] = Path(r.path).name
        info["sha256"] = sha256_file(r.path)
    else:
        info["file"] = None
        info["array_sha256"] = hashlib.sha256(np.ascontiguousarray(r.array).tobytes()).hexdigest()
    return info


def _region_dict(reg: tuple[int, int, int, int]) -> dict[str, int]:
    return dict(zip(("row0", "col0", "rows", "cols"), map(int, reg), strict=True))


def build_dataset(
    pan: Raster,
    ms: Raster,
    *,
    sensor: str | Sensor,
    out_dir: str | os.PathLike,
    ratio: int | None = None,
    splits: Mapping[str, float] | None = None,
    patch: int = 64,
    stride: int = 16,
    val_stride: int | None = None,
    test_tile: int | None = None,
    min_test_tiles: int = 9,
    fr_tile: int = 512,
    margin: int = 24,
    seed: int = 0,
    name: str | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Build train/val/test_rr/test_fr h5 files and ``manifest.json`` from one PAN/MS scene.

    Args:
        pan: PAN raster (1, H, W), DN.
        ms: MS raster (C, H/ratio, W/ratio), DN, registered with ``pan``.
        sensor: sensor name or :class:`Sensor` (Nyquist gains for the MTF filters, bit depth).
        out_dir: output directory; must not exist unless ``overwrite``, and is then replaced only if it holds
            a binsharp dataset and nothing else (:func:`check_output`).
        ratio: PAN/MS resolution ratio (default: the sensor's).
        splits: fractions of the scene for ``train``, ``val``, ``test`` (omit or 0 to skip a split; ``test``
            yields both ``test_rr`` and ``test_fr``). Default :data:`DEFAULT_SPLITS`.
        patch: training/validation patch size at the reference (``gt``) scale; ``ms`` is ``patch/ratio``.
        stride: step between training patches (multiple of ``ratio``); ``val_stride`` defaults to it.
        test_tile: reduced-resolution test tile size (``gt`` pixels); default: the largest multiple of 32,
            at least 128, giving ``min_test_tiles`` tiles.
        min_test_tiles: fewest reduced-resolution test tiles accepted.
        fr_tile: full-resolution test tile size in PAN pixels (multiple of ``32`` and ``ratio``).
        margin: gap in MS pixels between regions (at least the MTF filter radius, 20).
        seed: seed of the training patch shuffle.
        name: dataset name recorded in the manifest.
        progress: show a progress bar (on stderr, and only when it is a terminal).

    Returns:
        The manifest (also written to ``out_dir/manifest.json``).
    """
    from tqdm.auto import tqdm

    sensor = get_sensor(sensor)
    ratio = sensor.ratio_or(ratio)
    sensor.check_bands(ms.count)
    splits = dict(DEFAULT_SPLITS if splits is None else splits)
    unknown = set(splits) - {"train", "val", "test"}
    if unknown or not any(v > 0 for v in splits.values()):
        raise BinsharpError(f"splits must give positive fractions for train/val/test, got {splits}")
    val_stride = stride if val_stride is None else val_stride
    for label, v in (("patch", patch), ("stride", stride), ("val_stride", val_stride)):
        if v <= 0 or v % ratio:
            raise BinsharpError(f"{label} must be a positive multiple of the ratio {ratio}, got {v}")
    if fr_tile <= 0 or fr_tile % (ratio * 8) or fr_tile % 32:
        raise BinsharpError(f"fr_tile must be a positive multiple of 32 and of {ratio * 8}, got {fr_tile}")
    if test_tile is not None and (test_tile <= 0 or test_tile % ratio):
        raise BinsharpError(f"test_tile must be a positive multiple of the ratio {ratio}, got {test_tile}")
    smallest = min_image_size()
    if test_tile is not None and test_tile < smallest:
        raise BinsharpError(
            f"test tile {test_tile} is too small to evaluate: the reduced-resolution indexes (border cut 21, "
            f"block 32) need at least {smallest} pixels; use {-(-smallest // 32) * 32} or more"
        )
    if margin < MTF_RADIUS:
        raise BinsharpError(f"margin {margin} is below the MTF filter radius ({MTF_RADIUS} pixels)")
    out = check_output(out_dir, overwrite=overwrite)

    pan, ms = check_pair(pan, ms, ratio)
    proto = _protocol()
    valid = valid_mask(pan, ms, ratio)
    box = trim_box(valid)
    regions = layout_regions(box, splits, margin, ratio)
    guard = guard_radius(ratio)
    attrs_base = {
        "sensor": sensor.name,
        "bits": int(sensor.bits),
        "ratio": int(ratio),
        "gnyq_ms": np.asarray(sensor.gnyq_ms, dtype=np.float64),
        "gnyq_pan": float(sensor.gnyq_pan),
    }

    def cut(reg: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r0, c0, R, C = reg
        return (
            ms.array[:, r0 : r0 + R, c0 : c0 + C].astype(np.float64),
            pan.array[:, r0 * ratio : (r0 + R) * ratio, c0 * ratio : (c0 + C) * ratio].astype(np.float64),
            valid[r0 : r0 + R, c0 : c0 + C],
        )

    # ---- plan the test tiles first (cheap), so the progress bar knows the total -------------------------
    rr_tiles: list[tuple[int, int]] = []
    fr_tiles: list[tuple[int, int]] = []
    rr_size = fr_ms = 0
    if "test" in regions:
        _, _, tvalid = cut(regions["test"])
        sat = _window_sum(~tvalid)
        R, C = tvalid.shape
        step = math.lcm(32, ratio)  # tile sizes: multiples of 32 (index blocks) and of the ratio
        sizes = [test_tile] if test_tile is not None else list(range(min(R, C) // step * step, 127, -step))
        for size in sizes:
            cand = [(r, c) for r, c in _tile_grid(R, C, size) if _clean(sat, r, c, size)]
            if len(cand) >= min_test_tiles:
                rr_tiles, rr_size = cand, size
                break
        if not rr_tiles:
            raise BinsharpError(
                f"test region {R}x{C} (MS pixels) holds fewer than {min_test_tiles} valid reduced-resolution "
                f"tiles of {test_tile or 128}+ pixels; enlarge the test split or pass a smaller test tile"
            )
        fr_ms = fr_tile // ratio
        fr_tiles = [(r, c) for r, c in _tile_grid(R, C, fr_ms) if _clean(sat, r, c, fr_ms)]
        if not fr_tiles:
            raise BinsharpError(
                f"test region {R}x{C} (MS pixels) holds no valid full-resolution tile of {fr_tile} PAN pixels"
            )

    n_steps = sum(1 for n in ("train", "val") if n in regions) + len(rr_tiles) + len(fr_tiles)
    n_steps += sum(1 for n in ("train", "val") if n in regions) + (2 if "test" in regions else 0)
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "name": name,
        "binsharp_version": __version__,
        "sensor": {
            "name": sensor.name,
            "bands": list(sensor.bands),
            "bits": sensor.bits,
            "gnyq_ms": list(sensor.gnyq_ms),
            "gnyq_pan": sensor.gnyq_pan,
        },
        "ratio": ratio,
        "sources": {"pan": _source_info(pan, "pan"), "ms": _source_info(ms, "ms")},
        "no_data": {
            "rule": "0 in any MS band or PAN pixel, the declared no-data value, or NaN",
            "invalid_ms_pixels": int((~valid).sum()),
        },
        "valid_box": _region_dict(box),
        "margin": {
            "ms_px": margin,
            "pan_px": margin * ratio,
            "mtf_radius_ms_px": MTF_RADIUS,
            "rule": "regions separated by at least the MTF filter radius; protocol applied per region/tile",
        },
        "guard_ms_px": guard,
        "regions": {k: _region_dict(v) for k, v in regions.items()},
        "protocol": {
            "reduced_resolution": "Wald: MTF low-pass (41 taps, sensor GNyq, replicate borders) + decimation "
            f"x[{ratio // 2}::{ratio}] of MS; bicubic imresize 1/{ratio} of PAN; lms = 23-tap interpolation",
            "train_val": "applied to each region as a whole, then patches cut",
            "test_rr": "applied to each tile on its own",
            "test_fr": "original-resolution tiles; lms = 23-tap interpolation of each tile's MS",
            "units": "DN (float64)",
        },
        "seed": seed,
        "splits": {},
    }

    bar = tqdm(
        total=n_steps, disable=not show_progress(progress), desc=f"building {name or out.name}", unit="step"
    )
    with contextlib.closing(bar), atomic_output_dir(out, replace=overwrite, replaceable=_replaceable) as tmp:
        for split in ("train", "val"):
            if split not in regions:
                continue
            step = stride if split == "train" else val_stride
            rms, rpan, rvalid = cut(regions[split])
            R, C = rvalid.shape
            trip = proto.reduced_resolution_triplet(rms, rpan, sensor, ratio=ratio)
            bar.update(1)
            bad = (
                ndimage.maximum_filter(~rvalid, size=2 * guard + 1, mode="wrap")
                if (~rvalid).any()
                else ~rvalid
            )
            sat = _window_sum(bad)
            pos = [
                (r, c)
                for r in range(0, R - patch + 1, step)
                for c in range(0, C - patch + 1, step)
                if _clean(sat, r, c, patch)
            ]
            if not pos:
                raise BinsharpError(f"{split} region {R}x{C} holds no valid {patch}x{patch} patch")
            if split == "train":
                order = np.random.default_rng(seed).permutation(len(pos))
                pos = [pos[i] for i in order]
            q = patch // ratio
            shapes = {"gt": (ms.count, patch, patch), "ms": (ms.count, q, q), "lms": (ms.count, patch, patch)}
            shapes["pan"] = (1, patch, patch)

            def blocks(pos=pos, trip=trip, q=q):
                for i in range(0, len(pos), PATCH_BLOCK):
                    chunk = pos[i : i + PATCH_BLOCK]
                    yield {
                        "gt": np.stack([trip["gt"][:, r : r + patch, c : c + patch] for r, c in chunk]),
                        "ms": np.stack(
                            [
                                trip["ms"][:, r // ratio : r // ratio + q, c // ratio : c // ratio + q]
                                for r, c in chunk
                            ]
                        ),
                        "lms": np.stack([trip["lms"][:, r : r + patch, c : c + patch] for r, c in chunk]),
                        "pan": np.stack([trip["pan"][:, r : r + patch, c : c + patch] for r, c in chunk]),
                    }

            fname = SPLIT_FILES[split]
            write_h5_stream(tmp / fname, len(pos), shapes, blocks(), {**attrs_base, "split": split})
            del trip
            bar.update(1)
            manifest["splits"][split] = {
                "file": fname,
                "count": len(pos),
                "shapes": {
                    k: [patch // ratio if k == "ms" else patch] * 2 for k in ("gt", "ms", "lms", "pan")
                },
                "patch": patch,
                "stride": step,
                "shuffled": split == "train",
                "positions_ms_px": [[regions[split][0] + r, regions[split][1] + c] for r, c in pos],
            }

        if "test" in regions:
            t0, c0t = regions["test"][:2]
            tms, tpan, _ = cut(regions["test"])
            C = ms.count

            def rr_blocks():
                for r, c in rr_tiles:
                    gt = tms[:, r : r + rr_size, c : c + rr_size]
                    p = tpan[:, r * ratio : (r + rr_size) * ratio, c * ratio : (c + rr_size) * ratio]
                    trip = proto.reduced_resolution_triplet(gt, p, sensor, ratio=ratio)
                    bar.update(1)
                    yield {k: v[None] for k, v in trip.items()}

            q = rr_size // ratio
            rr_shapes = {"gt": (C, rr_size, rr_size), "ms": (C, q, q), "lms": (C, rr_size, rr_size)}
            rr_shapes["pan"] = (1, rr_size, rr_size)
            write_h5_stream(
                tmp / SPLIT_FILES["test_rr"],
                len(rr_tiles),
                rr_shapes,
                rr_blocks(),
                {**attrs_base, "split": "test_rr"},
            )
            bar.update(1)
            manifest["splits"]["test_rr"] = {
                "file": SPLIT_FILES["test_rr"],
                "count": len(rr_tiles),
                "tile": rr_size,
                "shapes": {
                    "gt": [rr_size] * 2,
                    "ms": [rr_size // ratio] * 2,
                    "lms": [rr_size] * 2,
                    "pan": [rr_size] * 2,
                },
                "tiles_ms_px": [[t0 + r, c0t + c] for r, c in rr_tiles],
            }

            def fr_blocks():
                for r, c in fr_tiles:
                    m = tms[:, r : r + fr_ms, c : c + fr_ms]
                    p = tpan[:, r * ratio : (r + fr_ms) * ratio, c * ratio : (c + fr_ms) * ratio]
                    bar.update(1)
                    yield {"ms": m[None], "lms": proto.interp23tap(m, ratio)[None], "pan": p[None]}

            fr_shapes = {"ms": (C, fr_ms, fr_ms), "lms": (C, fr_tile, fr_tile), "pan": (1, fr_tile, fr_tile)}
            write_h5_stream(
                tmp / SPLIT_FILES["test_fr"],
                len(fr_tiles),
                fr_shapes,
                fr_blocks(),
                {**attrs_base, "split": "test_fr"},
            )
            bar.update(1)
            manifest["splits"]["test_fr"] = {
                "file": SPLIT_FILES["test_fr"],
                "count": len(fr_tiles),
                "tile_pan": fr_tile,
                "tile_ms": fr_ms,
                "shapes": {"ms": [fr_ms] * 2, "lms": [fr_tile] * 2, "pan": [fr_tile] * 2},
                "tiles_ms_px": [[t0 + r, c0t + c] for r, c in fr_tiles],
            }
        for info in manifest["splits"].values():
            info["sha256"] = sha256_file(tmp / info["file"])
        (tmp / MANIFEST).write_text(_dump_manifest(manifest), encoding="utf-8")
    return manifest


def _dump_manifest(manifest: dict[str, Any]) -> str:
    """JSON with short numeric lists (positions, shapes) kept on one line."""
    text = json.dumps(manifest, indent=2)
    return re.sub(r"\[\s+(-?[\d.]+),\s+(-?[\d.]+)\s+\]", r"[\1, \2]", text) + "\n"


def _replaceable(folder: Path) -> None:
    """Raise :class:`BinsharpError` unless ``folder`` holds a binsharp dataset and nothing else.

    ``--force`` replaces a dataset directory: one with a binsharp ``manifest.json`` whose entries are the
    manifest and the split files. Any other content (or a directory without a manifest) is refused, so a
    rebuild never deletes files binsharp did not write.
    """
    manifest = folder / MANIFEST
    try:
        fmt = json.loads(manifest.read_text(encoding="utf-8")).get("format", "")
    except (OSError, ValueError, AttributeError):
        fmt = ""
    if not str(fmt).startswith(MANIFEST_FORMAT.split("/")[0] + "/"):
        raise BinsharpError(
            f"{folder} is not a binsharp dataset directory (no binsharp {MANIFEST}); "
            "--force replaces only a dataset that binsharp built: choose another output directory"
        )
    others = sorted(p.name for p in folder.iterdir() if p.name not in {MANIFEST, *SPLIT_FILES.values()})
    if others:
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        raise BinsharpError(
            f"dataset directory {folder} also holds files binsharp did not write ({shown}); "
            "--force would delete them: move them away or choose another output directory"
        )


def check_output(out_dir: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Check that a dataset may be built at ``out_dir`` (before any work); returns it as a :class:`Path`.

    A new directory needs a writable parent; an existing one is replaced only with ``overwrite`` and only
    when it holds a binsharp dataset and nothing else (see :func:`_replaceable`).
    """
    return check_output_dir(out_dir, replace=overwrite, replaceable=_replaceable)


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """Load ``manifest.json`` from a dataset directory (or the file itself)."""
    p = Path(path)
    if p.is_dir():
        p = p / MANIFEST
    if not p.is_file():
        raise BinsharpError(f"no dataset manifest at {p}")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BinsharpError(f"cannot read manifest {p}: {exc}") from None
