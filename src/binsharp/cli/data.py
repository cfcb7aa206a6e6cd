"""``binsharp data``: build and inspect datasets.

* ``binsharp data list`` -- the named datasets and whether they are built.
* ``binsharp data build NAME [--force]`` -- build a named dataset into the cache.
* ``binsharp data build --pan PAN.tif --ms MS.tif --sensor S -o DIR`` -- build from any registered PAN/MS
  GeoTIFF pair (``--sensor custom --bands N --bits B --gnyq-ms G [G ...] --gnyq-pan G`` for a sensor the
  table does not list).
* ``binsharp data info NAME|DIR|FILE.h5`` -- splits, counts, shapes and sensor.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from binsharp.errors import BinsharpError
from binsharp.names import resolve_name


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "data",
        help="build and inspect datasets",
        description=__doc__.replace("``", ""),  # the docstring's reST literals read as plain text
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")

    b = sub.add_parser("build", help="build a named dataset, or one from a PAN/MS GeoTIFF pair")
    b.add_argument("name", nargs="?", help="named dataset (see `binsharp data list`)")
    b.add_argument("--force", action="store_true", help="rebuild / replace an existing output")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = b.add_argument_group("custom PAN/MS pair")
    g.add_argument("--pan", type=Path, help="PAN GeoTIFF (1 band)")
    g.add_argument("--ms", type=Path, help="MS GeoTIFF, registered with the PAN")
    g.add_argument("--sensor", help="sensor name (WV3, WV2, QB, GF2, IKONOS, GeoEye1, WV4) or 'custom'")
    g.add_argument("-o", "--output", type=Path, help="output directory (must not exist)")
    g.add_argument("--ratio", type=int, default=4, help="PAN/MS resolution ratio (default 4)")
    g.add_argument("--bands", type=int, help="custom sensor: MS band count (default: the MS file's)")
    g.add_argument("--bits", type=int, default=11, help="custom sensor: bit depth (default 11)")
    g.add_argument(
        "--gnyq-ms", type=float, nargs="+", default=[0.3], help="custom sensor: MS Nyquist gain(s)"
    )
    g.add_argument("--gnyq-pan", type=float, default=0.15, help="custom sensor: PAN Nyquist gain")
    g.add_argument(
        "--splits",
        default="train=0.55,val=0.12,test=0.33",
        help="fractions of the scene, e.g. 'train=0.55,val=0.12,test=0.33' or 'test=1'",
    )
    g.add_argument("--patch", type=int, default=64, help="training patch size (gt pixels, default 64)")
    g.add_argument("--stride", type=int, default=16, help="training patch stride (default 16)")
    g.add_argument("--test-tile", type=int, help="reduced-resolution test tile (default: largest giving 9)")
    g.add_argument("--min-test-tiles", type=int, default=9, help="fewest reduced-resolution test tiles (9)")
    g.add_argument("--fr-tile", type=int, default=512, help="full-resolution test tile, PAN pixels (512)")
    g.add_argument("--margin", type=int, default=24, help="gap between regions, MS pixels (default 24)")
    g.add_argument("--seed", type=int, default=0, help="training patch shuffle seed")
    b.set_defaults(func=run_build)

    i = sub.add_parser("info", help="summary of a dataset: splits, counts, shapes, sensor")
    i.add_argument("target", help="named dataset, dataset directory, or h5 file")
    i.add_argument("--json", action="store_true", help="print the full manifest as JSON")
    i.set_defaults(func=run_info)

    ls = sub.add_parser("list", help="named datasets")
    ls.set_defaults(func=run_list)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _parse_splits(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in filter(None, (s.strip() for s in text.split(","))):
        key, sep, val = part.partition("=")
        try:
            out[key.strip()] = float(val)
        except ValueError:
            sep = ""
        if not sep:
            raise BinsharpError(f"--splits: expected NAME=FRACTION, got {part!r}")
    return out


def run_build(args: argparse.Namespace) -> int:
    from binsharp.data import catalog

    custom = any(getattr(args, k) is not None for k in ("pan", "ms", "output", "sensor"))
    if args.name and custom:
        raise BinsharpError("give either a dataset NAME or --pan/--ms/--sensor/-o, not both")
    if args.name:
        spec = catalog.CATALOG[resolve_name(args.name, list(catalog.CATALOG), what="dataset")]
        if catalog.is_built(spec.name) and not args.force:
            print(f"{spec.name}: already built at {catalog.dataset_dir(spec.name)} (use --force to rebuild)")
            return 0
        d = catalog.build(spec.name, force=args.force, progress=not args.no_progress)
        _print_summary(catalog.dataset_info(d), d)
        return 0
    missing = [f"--{k}" for k in ("pan", "ms", "sensor") if getattr(args, k) is None]
    if args.output is None:
        missing.append("-o")
    if missing:
        raise BinsharpError(
            f"give a dataset NAME, or all of --pan, --ms, --sensor, -o (missing {', '.join(missing)})"
        )

    from binsharp.data.builder import build_dataset, check_output
    from binsharp.data.io import read_pan_ms_pair
    from binsharp.sensors import check_ratio, sensor_from_options

    check_output(args.output, overwrite=args.force)
    check_ratio(args.ratio, "--ratio")
    pan, ms = read_pan_ms_pair(args.pan, args.ms, ratio=args.ratio)
    gains = args.gnyq_ms[0] if len(args.gnyq_ms) == 1 else tuple(args.gnyq_ms)
    sensor = sensor_from_options(
        args.sensor,
        n_bands=args.bands if args.bands is not None else ms.count,
        bits=args.bits,
        ratio=args.ratio,
        gnyq_ms=gains,
        gnyq_pan=args.gnyq_pan,
    )
    manifest = build_dataset(
        pan,
        ms,
        sensor=sensor,
        out_dir=args.output,
        ratio=args.ratio,
        splits=_parse_splits(args.splits),
        patch=args.patch,
        stride=args.stride,
        test_tile=args.test_tile,
        min_test_tiles=args.min_test_tiles,
        fr_tile=args.fr_tile,
        margin=args.margin,
        seed=args.seed,
        name=args.output.name,
        progress=not args.no_progress,
        overwrite=args.force,
    )
    _print_summary(manifest, args.output)
    return 0


def _print_summary(m: dict[str, Any], where: Path | None = None) -> None:
    s = m["sensor"]
    print(f"dataset   {m.get('name') or '-'}" + (f"  ({where})" if where else ""))
    print(f"sensor    {s['name']}  {len(s['bands'])} bands, {s['bits']} bits, ratio {m['ratio']}")
    src = m["sources"]
    for role in ("pan", "ms"):
        info = src[role]
        shape = "x".join(map(str, info["shape"]))
        print(f"source    {role:<4} {info.get('file') or '(array)'}  {shape} {info['dtype']}")
    box = m["valid_box"]
    print(
        f"regions   margin {m['margin']['ms_px']} MS px ({m['margin']['pan_px']} PAN px), valid box "
        f"{box['rows']}x{box['cols']} MS px"
    )
    for name, r in m["regions"].items():
        rows = f"{r['row0']}..{r['row0'] + r['rows']}"
        cols = f"{r['col0']}..{r['col0'] + r['cols']}"
        print(f"          {name:<6} rows {rows}  cols {cols}")
    print(f"{'split':<9} {'file':<12} {'N':>6}  shapes (H x W)")
    for name, sp in m["splits"].items():
        shapes = "  ".join(f"{k} {v[0]}x{v[1]}" for k, v in sp["shapes"].items())
        print(f"{name:<9} {sp['file']:<12} {sp['count']:>6}  {shapes}")


def run_info(args: argparse.Namespace) -> int:
    from binsharp.data import catalog
    from binsharp.data.io import read_h5_attrs

    target = Path(args.target)
    if target.is_file() and target.suffix.lower() in (".h5", ".hdf5"):
        import h5py

        attrs = read_h5_attrs(target)
        with h5py.File(target, "r") as f:
            shapes = {k: list(f[k].shape) for k in f.keys() if isinstance(f[k], h5py.Dataset)}
        if args.json:
            print(json.dumps({"file": str(target), "attrs": attrs, "shapes": shapes}, indent=2))
            return 0
        print(f"file      {target}")
        print("attrs     " + ", ".join(f"{k}={v}" for k, v in attrs.items()))
        for k, shp in shapes.items():
            print(f"{k:<9} {' x '.join(map(str, shp))}")
        return 0
    m = catalog.dataset_info(args.target)
    if args.json:
        print(json.dumps(m, indent=2))
    else:
        where = target if target.is_dir() else catalog.dataset_dir(args.target)
        _print_summary(m, where)
    return 0


def run_list(args: argparse.Namespace) -> int:
    from binsharp.data import catalog

    print(f"cache: {catalog.cache_dir() / 'datasets'}")
    for name, spec in catalog.CATALOG.items():
        state = "built" if catalog.is_built(name) else "not built"
        print(f"{name:<14} {spec.sensor:<4} {state:<10} {spec.description}")
    return 0
