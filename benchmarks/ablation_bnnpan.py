"""BNNPan ablation: train every switch variant with one recipe, seed and budget; evaluate; tabulate.

Usage::

    python benchmarks/ablation_bnnpan.py --steps 100000 --out runs/ablation-bnnpan
    python benchmarks/ablation_bnnpan.py --steps 3 --batch-size 2 --val-max-batches 1 --limit 2 \
        --out /tmp/abl  # smoke

Variants (all ``bnnpan`` with the registered recipe, ``configs/bnnpan-wv3-longmont.yaml`` and one seed):

==========  =======================  ================================================================
variant     switches                 question
==========  =======================  ================================================================
full        (defaults, 4 modules)    the reconstruction's default
no-dwt      dwt=false                w/o DWT: one NBC on the full-resolution features per PIBF
no-norm     norm=false               w/o the full-precision statistics re-standardisation
no-prior    prior=false              w/o LDPC (no latent, no prior networks; one training stage)
modules-2   n_modules=2              2 PIBF modules
modules-6   n_modules=6              6 PIBF modules
==========  =======================  ================================================================

Same budget: every variant is trained with :func:`binsharp.train.train` for ``--steps`` optimiser steps in
total (``max_steps``): with the prior they are shared by the stages I/II/III in proportion to the recipe
(50/20/30), without the prior the single stage gets them all. Same seed, same data, same batch size.
Evaluation on the reduced-resolution test split (``test_rr``) with :mod:`binsharp.metrics` (Q2n, SAM,
ERGAS, PSNR, SSIM; mean over the test tiles, the settings of ``binsharp evaluate``: block 32, dim_cut 21).
OPs/Params from :func:`binsharp.models.bnnpan.complexity_split` on one ``--count-size`` x ``--count-size``
input, with and without the prior networks (OPs = BOPs/64 + FLOPs, Params = binary/32 + float).
A variant whose ``OUT/<variant>/model.safetensors`` exists with the same step count and seed is evaluated
without retraining (``--resume`` continues interrupted runs). The table is printed as Markdown and written
to ``OUT/ablation.md`` and ``OUT/ablation.json``.
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

VARIANTS: dict[str, dict[str, Any]] = {
    "full": {},
    "no-dwt": {"dwt": False},
    "no-norm": {"norm": False},
    "no-prior": {"prior": False},
    "modules-2": {"n_modules": 2},
    "modules-6": {"n_modules": 6},
}
DEFAULT_CONFIG = CONFIGS / "bnnpan-wv3-longmont.yaml"


def _complexity(model_cfg: dict[str, Any], bands: int, size: int) -> dict[str, Any]:
    from binsharp import models
    from binsharp.models.bnnpan import complexity_split

    kw = {k: v for k, v in model_cfg.items() if k != "bands"}
    split = complexity_split(models.create("bnnpan", bands=bands, **kw), size)
    split.pop("report")
    return split


def markdown(rows: list[dict[str, Any]], size: int) -> str:
    head = (
        "| Variant | Switches | "
        + " | ".join(ARROWS[k] for k in INDEXES)
        + f" | OPs (G, {size}²) | OPs w/o prior (G) | Params (K) | Params w/o prior (K) |"
    )
    lines = [head, "|---|---|" + "---:|" * (len(INDEXES) + 4)]
    for r in rows:
        m, c = r["test"]["mean"], r["complexity"]
        vals = " | ".join(f"{m[k]:.4f}" for k in INDEXES)
        sw = ", ".join(f"{k}={v}" for k, v in r["switches"].items()) or "defaults"
        lines.append(
            f"| {r['variant']} | {sw} | {vals} | {c['total']['ops'] / 1e9:.4f} | "
            f"{c['network']['ops'] / 1e9:.4f} | {c['total']['params'] / 1e3:.2f} | "
            f"{c['network']['params'] / 1e3:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    a, names = parse_args(__doc__.splitlines()[0], VARIANTS, DEFAULT_CONFIG, argv)

    from binsharp import models
    from binsharp.train.recipe import read_config
    from binsharp.weights import read_meta

    base = read_config(a.config)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)

    recipe = models.model_info("bnnpan")["recipe"]
    stages = ", ".join(
        f"{s['name']} {s['steps']} steps lr {s.get('lr', recipe['lr'])}" for s in recipe["stages"]
    )
    print("# BNNPan ablation\n")
    print(f"Machine: {machine()}")
    print(f"Python {sys.version.split()[0]}; command: {' '.join(sys.argv)}")
    print(
        f"Settings: data {a.data}, config {a.config}, seed {a.seed}, {a.steps} steps in total per variant "
        f"(registered recipe: {recipe['optimizer']}, {recipe['scheduler']}, batch "
        f"{a.batch_size or recipe['batch_size']}, warm-up {a.warmup or 0} steps per stage, loss "
        f"{recipe['loss']}; stages {stages}, rescaled to the "
        f"budget; without prior one stage), variants {names}, OPs counted at {a.count_size} x "
        f"{a.count_size} PAN, test split test_rr{f' (first {a.limit} tiles)' if a.limit else ''}, out {out}",
        flush=True,
    )

    rows: list[dict[str, Any]] = []
    for name in names:
        switches = VARIANTS[name]
        cfg = variant_config(base, switches, a)
        print(f"\n[{name}] {switches or 'defaults'}: training", flush=True)
        trained = train_variant(
            "bnnpan", name, cfg, out / name, a, max(a.steps, 3 if cfg["model"].get("prior", True) else 1)
        )
        print(
            f"[{name}] stages {trained['steps']}; evaluating {trained['checkpoint']} on test_rr", flush=True
        )
        test = evaluate_rr(trained["checkpoint"], a)
        meta = read_meta(trained["checkpoint"])
        comp = _complexity(dict(meta["config"]), int(meta["bands"]), a.count_size)
        rows.append(
            {"variant": name, "switches": switches, "train": trained, "test": test, "complexity": comp}
        )
        print(
            f"[{name}] "
            + ", ".join(f"{k} {test['mean'][k]:.4f}" for k in INDEXES)
            + f"; OPs {comp['total']['ops'] / 1e9:.4f} G (w/o prior {comp['network']['ops'] / 1e9:.4f} G)"
            + f", Params {comp['total']['params'] / 1e3:.2f} K"
            + f" (w/o prior {comp['network']['params'] / 1e3:.2f} K)",
            flush=True,
        )

    table = markdown(rows, a.count_size)
    write_report(out, table, {"settings": vars(a), "machine": machine(), "recipe": recipe, "rows": rows})
    return 0


if __name__ == "__main__":
    run_main(main, "ablation_bnnpan")
