"""OPs / Params table of every registered model, produced by the complexity counter.

Usage::

    python benchmarks/complexity_table.py [--size 256] [--bands 8] [--models bnn,bisrnet] [--json out.json]

Settings: one image (batch 1), PAN-resolution input ``size x size``, ``bands`` MS bands, ratio 4 (``ms`` is
``size/4``); models built with their registered defaults. Conventions (:mod:`binsharp.nn.complexity`):
BOPs = MACs of convolutions whose both operands are binary; FLOPs = full-precision MACs;
``OPs = BOPs / 64 + FLOPs``; ``Params = binary / 32 + float``; weight memory = 1 bit per binary weight and
4 bytes per float parameter; elementwise float work (BN, RPReLU, shortcuts, ...) is reported separately and
is not part of OPs. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys

import torch

import binsharp
from binsharp import models
from binsharp.nn.complexity import count


def _row(name: str, size: int, bands: int) -> dict:
    m = models.create(name, bands=bands)
    r = count(m, m.example_inputs(size))
    return {
        "model": name,
        "kind": m.kind,
        "bops": r.bops,
        "flops": r.flops,
        "ops": r.ops,
        "elementwise": r.elementwise,
        "params_binary": r.params_binary,
        "params_float": r.params_float,
        "params": r.params,
        "weight_bytes": r.weight_bytes,
        "binary_layers": len(m.binary_layers()),
        "config": m.config,
    }


def markdown(rows: list[dict]) -> str:
    head = (
        "| Model | Kind | BOPs (G) | FLOPs (G) | **OPs (G)** | Elementwise (G) | Binary params (K) "
        "| Float params (K) | **Params (K)** | Weights (KB) |"
    )
    sep = "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    lines = [head, sep]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['kind']} | {r['bops'] / 1e9:.3f} | {r['flops'] / 1e9:.3f} | "
            f"**{r['ops'] / 1e9:.3f}** | {r['elementwise'] / 1e9:.3f} | {r['params_binary'] / 1e3:.1f} | "
            f"{r['params_float'] / 1e3:.2f} | **{r['params'] / 1e3:.2f}** | {r['weight_bytes'] / 1024:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=256, help="PAN-resolution side H = W (default 256)")
    p.add_argument("--bands", type=int, default=8, help="MS bands (default 8)")
    p.add_argument("--models", default="", help="comma-separated names (default: all registered)")
    p.add_argument("--json", default="", help="also write the rows as JSON to this path")
    a = p.parse_args(argv)
    names = [n.strip() for n in a.models.split(",") if n.strip()] or models.list_models()
    fp = [n for n in names if models.model_info(n)["kind"] == "fp"]
    rows = [_row(n, a.size, a.bands) for n in fp + [n for n in names if n not in fp]]

    print("# OPs / Params of the registered models\n")
    print(
        f"Settings: input {a.size} x {a.size} PAN, {a.bands} MS bands at {a.size // 4} x {a.size // 4} "
        "(ratio 4), batch 1, registered default architectures; OPs = BOPs/64 + FLOPs, "
        "Params = binary/32 + float; elementwise float work reported separately (not in OPs)."
    )
    print(
        f"binsharp {binsharp.__version__}, torch {torch.__version__}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}\n"
    )
    print(markdown(rows))
    print()
    for r in rows:
        cfg = {k: v for k, v in r["config"].items() if k != "bands"}
        print(f"- {r['model']}: {json.dumps(cfg)}; binary convolutions: {r['binary_layers']}")
    if a.json:
        with open(a.json, "x", encoding="utf-8") as f:
            json.dump({"size": a.size, "bands": a.bands, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
