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

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

VARIANTS: dict[str, dict[str, str]] = {
    "full": {"srm": "dynamic", "gsfa": "weight"},
    "no-srm": {"srm": "off", "gsfa": "weight"},
    "no-gsfa": {"srm": "dynamic", "gsfa": "off"},
    "static-srm": {"srm": "static", "gsfa": "weight"},
    "gsfa-init": {"srm": "dynamic", "gsfa": "init"},
    "gsfa-activation": {"srm": "dynamic", "gsfa": "activation"},
    "bisr": {"srm": "static", "gsfa": "off"},
}
INDEXES = ("q2n", "sam", "ergas", "psnr", "ssim")
ARROWS = {"q2n": "Q2n ↑", "sam": "SAM ↓", "ergas": "ERGAS ↓", "psnr": "PSNR ↑", "ssim": "SSIM ↑"}
DEFAULT_CONFIG = (
    Path(__file__).resolve().parents[1] / "src" / "binsharp" / "configs" / "s2bnet-wv3-longmont.yaml"
)


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    return (
        f"{platform.node()} | {platform.system()} {platform.release()} | {cpu} | {os.cpu_count()} CPUs | "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads | "
        f"CUDA {'yes: ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no'}"
    )


def _variant_config(
    base: dict[str, Any], switches: dict[str, str], args: argparse.Namespace
) -> dict[str, Any]:
    cfg = json.loads(json.dumps(base))
    cfg.setdefault("model", {}).update(switches)
    cfg.setdefault("recipe", {})
    cfg["recipe"]["val_every"] = 0  # validate once, at the end
    cfg["recipe"]["ckpt_every"] = max(1, min(int(cfg["recipe"].get("ckpt_every") or args.steps), args.steps))
    data = cfg.setdefault("data", {})
    data["name"] = args.data
    if args.val_max_batches is not None:
        data["val_max_batches"] = args.val_max_batches
    if args.num_workers is not None:
        data["num_workers"] = args.num_workers
    cfg["seed"] = args.seed
    return cfg


def _train_variant(name: str, cfg: dict[str, Any], run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    from binsharp.errors import BinsharpError
    from binsharp.train import read_meta, train

    ckpt = run_dir / "model.safetensors"
    if ckpt.is_file():
        meta = read_meta(ckpt)
        if int(meta.get("step", -1)) != args.steps or meta.get("seed") != args.seed:
            raise BinsharpError(
                f"{ckpt} was trained for {meta.get('step')} steps with seed {meta.get('seed')}, not "
                f"{args.steps} steps with seed {args.seed}: use another --out"
            )
        print(f"[{name}] reusing {ckpt}", flush=True)
        return {"checkpoint": str(ckpt), "train_seconds": None, "val": meta.get("val")}
    overrides = {"batch_size": args.batch_size} if args.batch_size else None
    t0 = time.perf_counter()
    result = train(
        "s2bnet",
        args.data,
        out=run_dir,
        config=cfg,
        max_steps=args.steps,
        stage_overrides=overrides,
        seed=args.seed,
        resume=args.resume,
        progress=False,
    )
    return {
        "checkpoint": str(result.checkpoint),
        "train_seconds": time.perf_counter() - t0,
        "val": result.val,
    }


def _evaluate(checkpoint: str, args: argparse.Namespace) -> dict[str, Any]:
    from binsharp.cli.evaluate import evaluate_source, load_test_set
    from binsharp.data.catalog import dataset_path
    from binsharp.train.fuser import checkpoint_fuser

    path = dataset_path(args.data, "test_rr")
    ts = load_test_set(path, "rr", argparse.Namespace(limit=args.limit, sensor=None))
    fuser = checkpoint_fuser(checkpoint, sensor=ts.sensor, ratio=ts.ratio)
    summary = evaluate_source(fuser, ts)
    return {
        "test_file": str(path),
        "n_images": ts.n_images,
        "mean": {k: float(summary["mean"][k]) for k in INDEXES},
        "std": {k: float(summary["std"][k]) for k in INDEXES},
        "settings": summary.get("settings"),
    }


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
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, required=True, help="total optimiser steps of every variant")
    p.add_argument("--out", required=True, help="output directory (one run directory per variant)")
    p.add_argument("--data", default="wv3-longmont", help="dataset name or directory (default wv3-longmont)")
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="run configuration YAML shared by all")
    p.add_argument("--seed", type=int, default=0, help="seed of every run (default 0)")
    p.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {list(VARIANTS)}"
    )
    p.add_argument(
        "--batch-size", type=int, default=None, help="override the recipe's batch size (smoke runs)"
    )
    p.add_argument("--val-max-batches", type=int, default=None, help="limit validation batches (smoke runs)")
    p.add_argument("--num-workers", type=int, default=None, help="data loader workers")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N test tiles")
    p.add_argument("--count-size", type=int, default=256, help="input side for OPs counting (default 256)")
    p.add_argument("--resume", action="store_true", help="continue interrupted runs in --out")
    a = p.parse_args(argv)

    from binsharp.errors import BinsharpError
    from binsharp.fileio import atomic_output
    from binsharp.models.recipes import default_recipe
    from binsharp.train import read_meta
    from binsharp.train.recipe import read_config

    names = [n.strip() for n in a.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not names:
        raise BinsharpError(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    if a.steps < 1:
        raise BinsharpError(f"--steps must be >= 1, got {a.steps}")
    base = read_config(a.config)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)

    from binsharp import models

    recipe = models.model_info("s2bnet")["recipe"]
    print("# S2BNet ablation\n")
    print(f"Machine: {_machine()}")
    print(f"Python {sys.version.split()[0]}; command: {' '.join(sys.argv)}")
    print(
        f"Settings: data {a.data}, config {a.config}, seed {a.seed}, steps {a.steps} per variant "
        f"(recipe: {recipe['optimizer']} lr {recipe['lr']}, {recipe['schedule']}, batch "
        f"{a.batch_size or recipe['batch_size']}, loss {recipe['loss']}; registered recipe steps "
        f"{recipe['steps']}; binary default lr {default_recipe('binary')['lr']}), variants {names}, "
        f"OPs counted at {a.count_size} x {a.count_size} PAN, out {out}",
        flush=True,
    )

    rows: list[dict[str, Any]] = []
    for name in names:
        switches = VARIANTS[name]
        cfg = _variant_config(base, switches, a)
        print(f"\n[{name}] {switches}: training", flush=True)
        trained = _train_variant(name, cfg, out / name, a)
        print(f"[{name}] evaluating {trained['checkpoint']} on test_rr", flush=True)
        test = _evaluate(trained["checkpoint"], a)
        meta = read_meta(trained["checkpoint"])
        model_cfg = dict(meta["config"])
        bands = int(meta["bands"])
        comp = _complexity(model_cfg, bands, a.count_size)
        row = {"variant": name, **switches, "train": trained, "test": test, "complexity": comp}
        rows.append(row)
        print(f"[{name}] " + ", ".join(f"{k} {test['mean'][k]:.4f}" for k in INDEXES), flush=True)

    table = markdown(rows, a.count_size)
    print("\n" + table)
    report = {"settings": vars(a), "machine": _machine(), "recipe": recipe, "rows": rows}
    with atomic_output(out / "ablation.json", overwrite=True) as tmp:
        tmp.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    with atomic_output(out / "ablation.md", overwrite=True) as tmp:
        tmp.write_text(table + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    from binsharp.errors import BinsharpError

    try:
        sys.exit(main())
    except BinsharpError as exc:
        print(f"ablation_s2bnet: error: {exc}", file=sys.stderr)
        sys.exit(2)
