"""``binsharp bench``: the results table -- classical methods and pretrained networks, quality and cost.

Examples::

    binsharp bench                                          # wv3-longmont, every method, wv2-longmont cross
    binsharp bench --models s2bnet,bnnpan,fusionnet --classical mtf-glp-fs,bdsd-pc --markdown table.md
    binsharp bench --data test_wv3_multiExm1.h5 --sensor WV3 --json results.json    # a PanCollection file

Rows: classical methods (``--classical``) and networks (``--models``) with their weights from the model zoo
(``--pretrained``, default ``wv3-longmont``); networks without pretrained weights are listed as skipped with
the reason. Columns: reduced-resolution Q2n, SAM, ERGAS, SCC, PSNR, SSIM and full-resolution D_lambda^K, D_s,
HQNR (mean +- std over the test images), the same on the cross-sensor sets (``--cross``), Params and OPs
(:mod:`binsharp.nn.complexity` at 256 x 256), checkpoint and ``.bsp`` size, and CPU latency per 256 x 256
image (PyTorch; the packed engine where the network exports). An h5 file is a reduced-resolution set when
it holds ``gt`` and a full-resolution one otherwise.
"""

from __future__ import annotations

import argparse
import sys

from binsharp.fileio import check_output_path
from binsharp.names import resolve_name


def _names(value: str, known: list[str], what: str) -> list[str]:
    v = value.strip().lower()
    if v in ("", "none"):
        return []
    if v == "all":
        return list(known)
    return [resolve_name(n, known, what=what) for n in v.split(",") if n.strip()]


#: Networks shown last, in this order (the methods of this package); the others come full precision first.
FEATURED = ("s2bnet", "bnnpan")


def table_order(names: list[str]) -> list[str]:
    """Networks in table order: full-precision baselines, binary baselines, then S2BNet and BNNPan."""
    from binsharp.models import model_info

    def key(n: str) -> tuple[int, int, str]:
        if n in FEATURED:
            return (2, FEATURED.index(n), n)
        return (0 if model_info(n)["kind"] == "fp" else 1, 0, n)

    return sorted(names, key=key)


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}")
    return v


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bench`` subcommand."""
    p = subparsers.add_parser(
        "bench",
        help="results table: classical methods and pretrained networks, quality, OPs, size, latency",
        description="Benchmark classical methods and pretrained networks (model zoo) on reduced- and "
        "full-resolution test sets, cross-sensor sets, with Params/OPs, model size and CPU latency.",
    )
    p.add_argument("--data", default="wv3-longmont", metavar="NAME|PATH", help="dataset or h5 (wv3-longmont)")
    p.add_argument("--models", default="all", help="networks: all (default), none, or a,b,c")
    p.add_argument("--classical", default="all", help="classical methods: all (default), none, or a,b,c")
    p.add_argument(
        "--pretrained", default="wv3-longmont", metavar="DATASET", help="zoo weights (wv3-longmont)"
    )
    p.add_argument(
        "--cross",
        default=None,
        metavar="NAME[,NAME]",
        help="cross-sensor datasets (default wv2-longmont for --data wv3-longmont; 'none' to skip)",
    )
    p.add_argument("--sensor", default=None, help="sensor of an h5 file that does not record it (e.g. WV3)")
    p.add_argument("--limit", type=_positive, default=None, metavar="N", help="first N reduced-res. images")
    p.add_argument("--fr-limit", type=_positive, default=None, metavar="N", help="first N full-res. images")
    p.add_argument("--markdown", default=None, metavar="FILE", help="write the tables as Markdown")
    p.add_argument("--json", default=None, metavar="FILE", help="write every value (per image) as JSON")
    p.add_argument("--report", default=None, metavar="DIR", help="also write figures and an HTML report")
    p.add_argument("--latency", action=argparse.BooleanOptionalAction, default=True, help="time CPU latency")
    p.add_argument(
        "--engine", action=argparse.BooleanOptionalAction, default=True, help="export/time the packed engine"
    )
    p.add_argument("--repeats", type=_positive, default=3, help="timed runs per latency (median; default 3)")
    p.add_argument(
        "--size",
        type=_positive,
        default=256,
        help="PAN side of the OPs count and latency input (default 256)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace) -> object:
    """The :class:`~binsharp.evaluation.bench.BenchSettings` of a parsed ``bench`` command line."""
    from binsharp.evaluation.bench import BenchSettings
    from binsharp.inference.fuser import classical_methods
    from binsharp.models import list_models

    if args.cross is None:
        cross = ["wv2-longmont"] if str(args.data).strip().lower() == "wv3-longmont" else []
    else:
        cross = [c.strip() for c in args.cross.split(",") if c.strip() and c.strip().lower() != "none"]
    return BenchSettings(
        data=str(args.data),
        models=table_order(_names(args.models, list_models(), "model"))
        if args.models.strip().lower() == "all"
        else _names(args.models, list_models(), "model"),
        classical=_names(args.classical, list(classical_methods()), "classical method"),
        pretrained=args.pretrained,
        cross=cross,
        sensor=args.sensor,
        limit=args.limit,
        fr_limit=args.fr_limit,
        latency=args.latency,
        engine=args.engine,
        latency_repeats=args.repeats,
        complexity_size=args.size,
        progress=not args.no_progress,
    )


def run(args: argparse.Namespace) -> int:
    """Run ``binsharp bench``; returns the exit status (bad input raises BinsharpError)."""
    for out in (args.markdown, args.json):
        if out:
            check_output_path(out, overwrite=args.overwrite)
    from binsharp.evaluation.bench import run_benchmark
    from binsharp.report import markdown_report, write_json, write_markdown, write_report

    settings = settings_from_args(args)
    result = run_benchmark(settings)  # type: ignore[arg-type]
    print(markdown_report(result.report), end="")
    if args.markdown:
        write_markdown(args.markdown, result.report, overwrite=args.overwrite)
    if args.json:
        write_json(args.json, result.report, overwrite=args.overwrite)
    if args.report:
        paths = write_report(result, args.report, overwrite=args.overwrite)
        print(f"report: {paths['html']}", file=sys.stderr)
    return 0
