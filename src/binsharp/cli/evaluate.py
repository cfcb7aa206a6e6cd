"""``binsharp evaluate``: quality indexes of pan-sharpening methods on a test set.

Examples::

    binsharp evaluate --method all --data wv3-longmont --json results.json
    binsharp evaluate --method mtf-glp-fs --data test_wv3_OrigScale.h5 --sensor WV3
    binsharp evaluate --fused outputs/ --data wv3-longmont --split rr

A named dataset is evaluated on its reduced-resolution test split (``test_rr``) and its full-resolution test
split (``test_fr``); a PanCollection h5 path is a reduced-resolution set if it holds ``gt`` and a
full-resolution one otherwise. ``--fused`` evaluates images produced elsewhere. The table shows mean +- std
per method and index; ``--json`` adds per-image values and the settings, ``--csv`` writes one row per
(split, method, image, index). The evaluation itself is :mod:`binsharp.evaluation.evaluate`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from binsharp.cli.fusers import add_fuser_arguments, method_names, resolve_fusers, selected_source
from binsharp.errors import BinsharpError
from binsharp.evaluation.evaluate import (
    build_report,
    evaluate_source,
    format_table,
    fused_reader,
    load_test_sets,
    looks_like_path,
    write_csv,
)
from binsharp.fileio import check_output_path, write_json
from binsharp.inference import check_bands


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` subcommand."""
    p = subparsers.add_parser(
        "evaluate",
        help="quality indexes (reduced and full resolution) of methods on a test set",
        description="Evaluate pan-sharpening on a dataset's reduced-resolution (test_rr) and full-resolution "
        "(test_fr) test splits, or on a PanCollection h5 file. --method all runs every classical method.",
    )
    add_fuser_arguments(p, required=False)
    p.add_argument(
        "--fused",
        metavar="PATH",
        help="evaluate images fused elsewhere: a directory of .mat (sr, H x W x C) / .npy (C,H,W) / .tif "
        "files in name order, or an h5 with dataset sr or fused (N,C,H,W), in DN",
    )
    p.add_argument(
        "--data", required=True, metavar="NAME|PATH", help="dataset name (e.g. wv3-longmont) or h5 path"
    )
    p.add_argument("--sensor", default=None, help="sensor when the data does not record it (or custom)")
    p.add_argument("--bits", type=int, default=None, help="bit depth for --sensor custom (default 11)")
    p.add_argument(
        "--split",
        choices=("rr", "fr", "both"),
        default=None,
        help="reduced (rr), full resolution (fr) or both (default: both for a dataset, what an h5 holds)",
    )
    p.add_argument(
        "--variant",
        choices=("hqnr", "qnr"),
        default="hqnr",
        help="full-resolution index family: hqnr (D_lambda^K, D_s, HQNR; default) or qnr",
    )
    p.add_argument("--limit", type=int, default=None, metavar="N", help="evaluate the first N images only")
    p.add_argument(
        "--json", default=None, metavar="FILE", help="write per-image values, mean/std and settings"
    )
    p.add_argument(
        "--csv", default=None, metavar="FILE", help="write a flat table split,method,image,index,value"
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing --json/--csv files")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``binsharp evaluate``; returns the exit status (bad input raises BinsharpError)."""
    for out in (args.json, args.csv):
        if out:
            check_output_path(out, overwrite=args.overwrite, inputs=(args.data, args.fused))
    picked = selected_source(args)
    if args.fused and picked is not None:
        raise BinsharpError(f"give either --fused or --{picked[0].option}, not both")
    if picked is not None and picked[0].option == "method":
        method_names(picked[1])  # unknown names fail before any data is loaded or built
    if not args.fused and picked is None:
        raise BinsharpError("nothing to evaluate: pass --method NAME|all (or --fused PATH)")
    if args.fused and args.split == "both":
        raise BinsharpError("--fused images belong to one test split: choose --split rr or --split fr")
    split = args.split
    if args.fused and split is None and not looks_like_path(str(args.data)):
        split = "rr"

    sets = load_test_sets(str(args.data), split, sensor=args.sensor, bits=args.bits, limit=args.limit)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for ts in sets:
        if args.fused:
            sources: list[Any] = [fused_reader(Path(args.fused), int(ts.info["n_total"]))]
        else:
            sources = resolve_fusers(args, sensor=ts.sensor, ratio=ts.ratio)
            for f in sources:
                check_bands(f, ts.n_bands, where=f"test set {ts.path.name}")
        results[ts.split] = {}
        for source in sources:
            name = source[0] if isinstance(source, tuple) else source.name
            results[ts.split][name] = evaluate_source(source, ts, variant=args.variant)
    print(format_table(results, sets), end="")
    if args.json:
        report = build_report(results, sets, data=str(args.data), limit=args.limit)
        write_json(args.json, report, overwrite=args.overwrite)
    if args.csv:
        write_csv(args.csv, results, args.overwrite)
    return 0
