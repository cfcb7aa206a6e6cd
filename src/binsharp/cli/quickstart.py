"""``binsharp quickstart``: pretrained S2BNet and BNNPan against the classical methods, in minutes.

Example::

    binsharp quickstart --out quickstart/

Builds ``wv3-longmont`` on first use, runs the pretrained networks of the model zoo (``--models``, default
``s2bnet,bnnpan``; those without weights are named as missing) and the classical methods on the
reduced-resolution test split (all tiles) and the first ``--fr-limit`` full-resolution tiles, prints the
table and writes ``results.json``, ``results.md``, ``figures/*.png`` and the self-contained ``report.html``
into ``--out``. Cross-sensor sets and latency are left to ``binsharp bench``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from binsharp.cli.bench import _names, _positive
from binsharp.errors import BinsharpError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``quickstart`` subcommand."""
    p = subparsers.add_parser(
        "quickstart",
        help="pretrained S2BNet/BNNPan vs classical methods on wv3-longmont: table, figures, HTML report",
        description="Run the pretrained networks of the model zoo and the classical methods on a test set, "
        "print the table and write figures and an HTML report.",
    )
    p.add_argument("--out", default="binsharp-quickstart", metavar="DIR", help="output directory")
    p.add_argument("--data", default="wv3-longmont", metavar="NAME|DIR|PATH", help="test data (wv3-longmont)")
    p.add_argument("--models", default="s2bnet,bnnpan", help="networks from the zoo (default s2bnet,bnnpan)")
    p.add_argument("--classical", default="all", help="classical methods: all (default), none, or a,b,c")
    p.add_argument("--pretrained", default=None, metavar="DATASET", help="zoo weights (default: the data's)")
    p.add_argument("--sensor", default=None, help="sensor of an h5 file that does not record it")
    p.add_argument("--limit", type=_positive, default=None, metavar="N", help="reduced-res. images (all)")
    p.add_argument("--fr-limit", type=_positive, default=2, metavar="N", help="full-res. images (default 2)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.add_argument("--overwrite", action="store_true", help="replace the files of an earlier run in --out")
    p.set_defaults(func=run)


def _pretrained_default(data: str) -> str:
    """Zoo dataset matching ``data``: its catalog/manifest name, else ``wv3-longmont``."""
    from binsharp.data.catalog import CATALOG, dataset_info

    key = data.strip().lower()
    if key in CATALOG:
        return key
    p = Path(data)
    if p.is_dir():
        try:
            return str(dataset_info(p).get("name") or p.name).lower()
        except BinsharpError:
            return p.name.lower()
    return "wv3-longmont"


def run(args: argparse.Namespace) -> int:
    """Run ``binsharp quickstart``; returns the exit status (bad input raises BinsharpError)."""
    from binsharp import zoo
    from binsharp.evaluation.bench import BenchSettings, run_benchmark
    from binsharp.fileio import check_output_dir, check_output_path
    from binsharp.inference.fuser import classical_methods
    from binsharp.models import list_models
    from binsharp.report import write_report
    from binsharp.report.tables import benchmark_tables, summary_lines

    t0 = time.perf_counter()
    out = check_output_dir(args.out, replace=True, create_parents=True)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("results.json", "results.md", "report.html"):
        check_output_path(out / name, overwrite=args.overwrite)
    pretrained = args.pretrained or _pretrained_default(str(args.data))
    wanted = _names(args.models, list_models(), "model")
    have = zoo.available().get(pretrained, [])
    missing = [m for m in wanted if m not in have]
    settings = BenchSettings(
        data=str(args.data),
        models=wanted,
        classical=_names(args.classical, list(classical_methods()), "classical method"),
        pretrained=pretrained,
        cross=[],
        sensor=args.sensor,
        limit=args.limit,
        fr_limit=args.fr_limit,
        latency=False,
        engine=False,
        count_skipped=False,
        progress=not args.no_progress,
    )
    print("binsharp quickstart")
    print(f"  data: {settings.data} (reduced-resolution test: {args.limit or 'all'} images; full-resolution "
          f"test: first {args.fr_limit} images, limited to keep the run short)")  # fmt: skip
    print(f"  networks: {', '.join(wanted) or 'none'} (weights: model zoo, trained on {pretrained}; "
          f"zoo {zoo.zoo_dir()})")  # fmt: skip
    if missing:
        print(f"  MISSING pretrained weights for: {', '.join(missing)} -- not run "
              f"(zoo holds for {pretrained}: {', '.join(have) or 'nothing'}; "
              "train them with benchmarks/train_zoo.py)")  # fmt: skip
    print(f"  classical: {', '.join(settings.classical) or 'none'}")
    print("  no cross-sensor sets, no latency (see binsharp bench)", flush=True)
    result = run_benchmark(settings)
    print()
    for t in benchmark_tables(result.report):
        print(t.to_text())
    for line in summary_lines(result.report):
        print(f"* {line}")
    intro = (
        f"Pretrained networks ({', '.join(w for w in wanted if w not in missing) or 'none'}) against "
        f"classical methods on {settings.data}."
        + (f" Missing pretrained weights: {', '.join(missing)}." if missing else "")
    )
    paths = write_report(result, out, title="binsharp quickstart", intro=intro, overwrite=args.overwrite)
    print(f"wrote {paths['html']}, {paths['markdown']}, {paths['json']}")
    for _, p in paths["figures"]:
        print(f"  figure {p}")
    print(f"done in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0
