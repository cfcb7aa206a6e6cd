"""S2BNet ablation: train every switch variant with one recipe, seed and budget; evaluate; tabulate.

Usage::

    python benchmarks/ablation_s2bnet.py --steps 100000 --out runs/ablation-s2bnet
    python benchmarks/ablation_s2bnet.py --steps 2 --batch-size 2 --val-max-batches 1 --out /tmp/abl  # smoke

Variants (all ``s2bnet`` with the registered recipe, ``configs/s2bnet-wv3-longmont.yaml`` and one seed):

===================  =================================  ===========================================
variant              switches                           question
===================  =================================  ===========================================
full                 srm=dynamic, gsfa=weight           the reconstruction's default
no-srm               srm=off                            w/o SRM
no-gsfa              gsfa=off                           w/o GSFA
static-srm           srm=static                         dynamic vs static (BiSR-Conv) redistribution
gsfa-init            gsfa=init                          Gabor initialisation instead of modulation
gsfa-activation      gsfa=activation                    Gabor filter on the activation path
bisr                 srm=static, gsfa=off               the unit reduced to BiSR-Conv (= BiSRNet)
===================  =================================  ===========================================

Each variant is trained with :func:`binsharp.train.train` (``--steps`` total optimiser steps; the cosine
schedule is compressed to them) into ``OUT/<variant>/`` and evaluated on the reduced-resolution test split
(``test_rr``) with the indexes of :mod:`binsharp.metrics` (Q2n, SAM, ERGAS, PSNR, SSIM; mean over the test
tiles, the same settings as ``binsharp evaluate``: block 32, dim_cut 21). OPs/Params come from
:func:`binsharp.nn.complexity.count` on one ``--count-size`` x ``--count-size`` input (OPs = BOPs/64 +
FLOPs, Params = binary/32 + float). A variant whose ``OUT/<variant>/model.safetensors`` already exists with
the same step count is evaluated without retraining (``--resume`` continues interrupted runs). The table is
printed as Markdown and written to ``OUT/ablation.md`` and ``OUT/ablation.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from _ablation import (
    ARROWS,
    CONFIGS,
    INDEXES,
    evaluate_rr,
    machine,
    parse_args,
    run_main,
    train_variant,
    variant_config,
    write_report,
)

VARIANTS: dict[str, dict[str, str]] = {
    "full": {"srm": "dynamic", "gsfa": "weight"},
    "no-srm": {"srm": "off", "gsfa": "weight"},
    "no-gsfa": {"srm": "dynamic", "gsfa": "off"},
    "static-srm": {"srm": "static", "gsfa": "weight"},
    "gsfa-init": {"srm": "dynamic", "gsfa": "init"},
    "gsfa-activation": {"srm": "dynamic", "gsfa": "activation"},
    "bisr": {"srm": "static", "gsfa": "off"},
}
DEFAULT_CONFIG = CONFIGS / "s2bnet-wv3-longmont.yaml"


def _complexity(model_cfg: dict[str, Any], bands: int, size: int) -> dict[str, Any]:
    from binsharp import models
    from binsharp.nn.complexity import count

    kw = {k: v for k, v in model_cfg.items() if k != "bands"}
    net = models.create("s2bnet", bands=bands, **kw)
    r = count(net, net.example_inputs(size))
    return {
        "size": size,
        "bops": r.bops,
        "flops": r.flops,
        "ops": r.ops,
        "elementwise": r.elementwise,
        "params_binary": r.params_binary,
        "params_float": r.params_float,
        "params": r.params,
    }


def markdown(rows: list[dict[str, Any]], size: int) -> str:
    head = (
        "| Variant | SRM | GSFA | "
        + " | ".join(ARROWS[k] for k in INDEXES)
        + f" | OPs (G, {size}²) | Params (K) |"
    )
    lines = [head, "|---|---|---|" + "---:|" * (len(INDEXES) + 2)]
    for r in rows:
        m, c = r["test"]["mean"], r["complexity"]
        vals = " | ".join(f"{m[k]:.4f}" for k in INDEXES)
        lines.append(
            f"| {r['variant']} | {r['srm']} | {r['gsfa']} | {vals} | {c['ops'] / 1e9:.4f} | "
            f"{c['params'] / 1e3:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    a, names = parse_args(__doc__.splitlines()[0], VARIANTS, DEFAULT_CONFIG, argv)

    from binsharp.models.recipes import default_recipe
    from binsharp.train.recipe import read_config
    from binsharp.weights import read_meta

    base = read_config(a.config)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)

    from binsharp import models

    recipe = models.model_info("s2bnet")["recipe"]
    print("# S2BNet ablation\n")
    print(f"Machine: {machine()}")
    print(f"Python {sys.version.split()[0]}; command: {' '.join(sys.argv)}")
    print(
        f"Settings: data {a.data}, config {a.config}, seed {a.seed}, steps {a.steps} per variant "
        f"(recipe: {recipe['optimizer']} lr {recipe['lr']}, {recipe['scheduler']}, batch "
        f"{a.batch_size or recipe['batch_size']}, warm-up {a.warmup or 0} steps, loss {recipe['loss']}; "
        f"registered recipe steps "
        f"{recipe['steps']}; binary default lr {default_recipe('binary')['lr']}), variants {names}, "
        f"OPs counted at {a.count_size} x {a.count_size} PAN, out {out}",
        flush=True,
    )

    rows: list[dict[str, Any]] = []
    for name in names:
        switches = VARIANTS[name]
        cfg = variant_config(base, switches, a)
        print(f"\n[{name}] {switches}: training", flush=True)
        trained = train_variant("s2bnet", name, cfg, out / name, a, a.steps)
        print(f"[{name}] evaluating {trained['checkpoint']} on test_rr", flush=True)
        test = evaluate_rr(trained["checkpoint"], a)
        meta = read_meta(trained["checkpoint"])
        model_cfg = dict(meta["config"])
        bands = int(meta["bands"])
        comp = _complexity(model_cfg, bands, a.count_size)
        row = {"variant": name, **switches, "train": trained, "test": test, "complexity": comp}
        rows.append(row)
        print(f"[{name}] " + ", ".join(f"{k} {test['mean'][k]:.4f}" for k in INDEXES), flush=True)

    table = markdown(rows, a.count_size)
    write_report(out, table, {"settings": vars(a), "machine": machine(), "recipe": recipe, "rows": rows})
    return 0


if __name__ == "__main__":
    run_main(main, "ablation_s2bnet")
