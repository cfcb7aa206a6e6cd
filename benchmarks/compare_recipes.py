"""Compare training-recipe switches at one fixed budget, on the validation split: quality per CPU-second.

Usage::

    python benchmarks/compare_recipes.py --models bbcu,s2bnet,bnnpan --steps 800 --batch 8 --threads 1
    python benchmarks/compare_recipes.py --models bbcu --steps 4 --variants baseline,augment \\
        --data DIR --model-args '{"dim": 8, "n_units": 2}' --out /tmp/r.md --runs /tmp/runs   # smoke test

Every variant changes one thing against ``baseline`` (the model's registered recipe with ``--batch``,
``--warmup`` and the same seed), and is applied alike to every model:

==================  ==========================================================================================
variant             change
==================  ==========================================================================================
``baseline``        none
``no-warmup``       no learning-rate warm-up (the baseline warms up linearly over ``--warmup`` steps)
``lr-low``          learning rate / 2 (of every stage, for a multi-stage recipe)
``lr-high``         learning rate x 2 (of every stage, for a multi-stage recipe)
``augment``         random flips and 90-degree rotations of the training patches (``data.augment``)
``distill-fp``      distillation (output L1, weight 1) from the zoo's full-precision FusionNet
``distill-twin``    distillation (output L1 + body-feature L1, weights 1 and 0.1) from the network's own
                    float twin, after a float-twin stage (two-step training: half the steps in float, half
                    binarized; ``float_twin`` and ``distill`` recipe keys)
``two-step``        the same two stages without distillation
==================  ==========================================================================================

A finished run leaves ``row.json`` in its run directory (under ``--runs``) and is not trained again by a
later invocation with the same settings, so the runs can be spread over several processes (one per model,
``--models``) and a last invocation over all of them (``--report-only``: without training the runs not
finished) writes the whole report; an interrupted run starts again from step 0, so that its CPU time is
whole. The budget is ``--steps`` optimiser steps per run; the CPU time each run took (process time, one
thread) is recorded, so quality is reported per CPU-second too. Variants that a model's recipe cannot take
(a multi-stage recipe or a model with its own training loss for the two-step and distillation variants, a
missing zoo teacher) are listed as not applicable with the reason. Indexes are the last validation Q2n, SAM
and ERGAS (``val`` split; the test split is never read). Writes a Markdown report (``--out``, default
``docs/recipes.md``) with the settings, the machine, the table and a figure of validation Q2n against CPU
seconds (``docs/figures/recipes-curves.png``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

import binsharp
from binsharp.errors import BinsharpError
from binsharp.train.recipe import RECIPE_VARIANTS, recipe_variant

VARIANTS = RECIPE_VARIANTS


def variant_config(variant: str, model: str, steps: int, warmup: int, model_args: dict) -> dict[str, Any]:
    """Run configuration (model arguments, recipe and data keys) of ``variant`` for ``model``."""
    return {
        "model": dict(model_args),
        **recipe_variant(variant, model, steps, warmup=warmup, model_args=model_args),
    }


def val_curve(run_dir: Path) -> list[tuple[int, float]]:
    """``(global step, val/q2n)`` of every validation of a run, over its stages in order."""
    points: list[tuple[int, float]] = []
    offset = 0
    for stage in sorted((run_dir / "stages").iterdir()):
        path = stage / "logs" / "metrics.csv"
        last = 0
        if path.is_file():
            with path.open(newline="", encoding="utf-8") as f:
                for row in csv.DictReader(f):
                    step = int(float(row.get("step") or 0))
                    last = max(last, step)
                    if row.get("val/q2n"):
                        points.append((offset + step, float(row["val/q2n"])))
        meta = stage / "weights.json"
        offset += int(json.loads(meta.read_text()).get("stage_steps", last)) if meta.is_file() else last
    return points


def run_variant(model: str, variant: str, a: argparse.Namespace) -> dict[str, Any]:
    from binsharp.train import train

    row: dict[str, Any] = {"model": model, "variant": variant}
    try:
        cfg = variant_config(variant, model, a.steps, a.warmup, a.model_args)
    except BinsharpError as exc:
        return {**row, "skipped": str(exc)}
    cfg["recipe"].update({"batch_size": a.batch, "val_every": a.val_every, "ckpt_every": a.val_every})
    cfg["data"]["val_max_batches"] = a.val_batches
    run_dir = Path(a.runs) / f"{model}-{variant}"
    done = run_dir / "row.json"
    if done.is_file():
        saved = json.loads(done.read_text(encoding="utf-8"))
        if saved.get("settings") == run_settings(a):
            return {k: v for k, v in saved.items() if k != "settings"}
    if a.report_only:
        return {**row, "skipped": "not run at this budget"}
    if run_dir.exists():  # an interrupted run: its CPU time is lost, so it starts again
        shutil.rmtree(run_dir)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    try:
        res = train(model, a.data, out=run_dir, config=cfg, max_steps=a.steps, seed=a.seed, progress=False)
    except BinsharpError as exc:
        return save_row({**row, "skipped": str(exc)}, done, a)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    last = next(reversed(res.val.values()), {})
    indexes = {k: last.get(k) for k in ("q2n", "sam", "ergas")}
    steps = sum(res.steps.values())
    row = {**row, "cpu_s": cpu, "wall_s": wall, "steps": steps, "curve": val_curve(run_dir), **indexes}
    return save_row(row, done, a)


def save_row(row: dict[str, Any], path: Path, a: argparse.Namespace) -> dict[str, Any]:
    """Write ``row`` with the run settings to ``path`` (a finished run's ``row.json``); return ``row``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**row, "settings": run_settings(a)}), encoding="utf-8")
    return row


def run_settings(a: argparse.Namespace) -> dict[str, Any]:
    """The options a finished run's ``row.json`` must match to be reused instead of trained again."""
    keys = ("data", "steps", "batch", "warmup", "val_every", "val_batches", "seed", "threads", "model_args")
    return {k: getattr(a, k) for k in keys}


def write_report(rows: list[dict[str, Any]], a: argparse.Namespace, command: str) -> None:
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig = out.parent / "figures" / f"{out.stem}-curves.png"
    lines = [
        "# Training recipes compared at one budget (validation split)",
        "",
        f"Command: `{command}`",
        "",
        f"Settings: {a.steps} steps per run, batch {a.batch}, seed {a.seed}, warm-up {a.warmup} steps unless "
        f"the variant sets it, validation every {a.val_every} steps on {a.val_batches or 'all'} batches of "
        f"the `val` split of {a.data}; torch threads {torch.get_num_threads()}; binsharp "
        f"{binsharp.__version__}, torch {torch.__version__}; load average at the end "
        f"{os.getloadavg()[0]:.1f}. CPU s = process time of the run.",
        "",
        "| model | variant | Q2n | SAM | ERGAS | CPU s | Q2n gain over baseline per CPU-minute |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    base = {r["model"]: r for r in rows if r["variant"] == "baseline" and "skipped" not in r}
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['model']} | {r['variant']} | n/a: {r['skipped']} | | | | |")
            continue
        b = base.get(r["model"])
        gain = (
            f"{(r['q2n'] - b['q2n']) / (r['cpu_s'] / 60):+.4f}" if b and r["variant"] != "baseline" else "-"
        )
        lines.append(
            f"| {r['model']} | {r['variant']} | {r['q2n']:.4f} | {r['sam']:.3f} | {r['ergas']:.3f} | "
            f"{r['cpu_s']:.0f} | {gain} |"
        )
    done = [r for r in rows if "skipped" not in r and r["curve"]]
    if done:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = sorted({r["model"] for r in done})
        f, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4), squeeze=False)
        for ax, name in zip(axes[0], names, strict=True):
            for r in (r for r in done if r["model"] == name):
                x = [s * r["cpu_s"] / max(1, r["steps"]) for s, _ in r["curve"]]
                ax.plot(x, [q for _, q in r["curve"]], marker=".", label=r["variant"])
            ax.set(title=name, xlabel="CPU seconds", ylabel="validation Q2n")
            ax.legend(fontsize=7)
        fig.parent.mkdir(parents=True, exist_ok=True)
        f.tight_layout()
        f.savefig(fig, dpi=100)
        lines += ["", f"![validation Q2n against CPU seconds](figures/{fig.name})"]
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {out}" + (f" and {fig}" if done else ""))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="bbcu,s2bnet,bnnpan")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--data", default="wv3-longmont", help="dataset name or directory (its val split is used)")
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--warmup", type=int, default=40)
    p.add_argument("--val-every", type=int, default=100)
    p.add_argument("--val-batches", type=int, default=None, help="validation batches (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--model-args", type=json.loads, default={}, help="JSON architecture overrides")
    p.add_argument("--runs", default="runs/recipes")
    p.add_argument("--out", default="docs/recipes.md")
    p.add_argument("--report-only", action="store_true", help="write the report of the finished runs only")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    command = shlex.join(
        ["python", "benchmarks/compare_recipes.py", *(sys.argv[1:] if argv is None else argv)]
    )
    rows = []
    for model in [m.strip() for m in a.models.split(",") if m.strip()]:
        for variant in [v.strip() for v in a.variants.split(",") if v.strip()]:
            rows.append(run_variant(model, variant, a))
            r = rows[-1]
            print(f"{model} {variant}: " + (f"n/a ({r['skipped']})" if "skipped" in r else
                  f"Q2n {r['q2n']:.4f} in {r['cpu_s']:.0f} CPU s"), flush=True)  # fmt: skip
    write_report(rows, a, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
