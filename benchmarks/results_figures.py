"""Cost-vs-quality figures of the results from two ``binsharp bench`` JSON files.

Usage::

    python benchmarks/results_figures.py --quality docs/results.json --latency docs/latency.json \\
        --out docs/figures

The quality run (all test images, ``--no-latency``) takes long; the latency run (``--limit 1 --fr-limit 1
--cross none``) is short and belongs on an idle machine. This script takes the mean reduced-resolution Q2n
of every method from the first and the complexity and latencies from the second, and writes
``ops_vs_q2n.png`` (counted OPs) and ``latency_vs_q2n.png`` (each method at its deployed latency: the
packed engine for binary networks, PyTorch float32 for full-precision ones, numpy for classical methods),
the same figures ``binsharp bench --report`` draws from one run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from binsharp.report import figures as F
from binsharp.report.tables import cost_quality_points


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quality", required=True, help="binsharp bench --json of the quality run")
    ap.add_argument("--latency", required=True, help="binsharp bench --json of the latency run")
    ap.add_argument("--out", required=True, help="folder of the figures")
    args = ap.parse_args()
    quality = json.loads(Path(args.quality).read_text())
    timed = {m["name"]: m for m in json.loads(Path(args.latency).read_text())["methods"]}
    for m in quality["methods"]:
        other = timed.get(m["name"], {})
        m["latency"] = other.get("latency", {})
        m["complexity"] = other.get("complexity") or m.get("complexity")
    points = cost_quality_points(quality)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for path in (
        F.plot_cost_vs_quality(points, out / "ops_vs_q2n.png", cost="ops", title="OPs vs Q2n"),
        F.plot_cost_vs_quality(points, out / "latency_vs_q2n.png", cost="latency_ms", title="Latency vs Q2n"),
    ):
        print(path)
    machine = json.loads(Path(args.latency).read_text()).get("machine", {})
    print(f"quality: {args.quality}; latency: {args.latency} (machine: {machine})")


if __name__ == "__main__":
    main()
