"""Shared machinery of the ablation scripts (``ablation_s2bnet.py``, ``ablation_bnnpan.py``).

Each variant is trained with :func:`binsharp.train.train` into ``OUT/<variant>/`` and evaluated on the
reduced-resolution test split (``test_rr``) with the indexes of :mod:`binsharp.metrics`, with the settings of
``binsharp evaluate`` (block 32, dim_cut 21).
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

INDEXES = ("q2n", "sam", "ergas", "psnr", "ssim")
ARROWS = {"q2n": "Q2n ↑", "sam": "SAM ↓", "ergas": "ERGAS ↓", "psnr": "PSNR ↑", "ssim": "SSIM ↑"}
CONFIGS = Path(__file__).resolve().parents[1] / "src" / "binsharp" / "configs"


def machine() -> str:
    """One line describing this machine and the torch build."""
    cpu = platform.processor() or platform.machine()
    return (
        f"{platform.node()} | {platform.system()} {platform.release()} | {cpu} | {os.cpu_count()} CPUs | "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads | "
        f"CUDA {'yes: ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no'}"
    )


def parse_args(
    description: str, variants: dict[str, dict[str, Any]], default_config: Path, argv: list[str] | None
) -> tuple[argparse.Namespace, list[str]]:
    """Parse the command line shared by the ablation scripts; return the arguments and the variant names."""
    from binsharp.errors import BinsharpError

    p = argparse.ArgumentParser(description=description)
    p.add_argument("--steps", type=int, required=True, help="total optimiser steps of every variant")
    p.add_argument("--out", required=True, help="output directory (one run directory per variant)")
    p.add_argument("--data", default="wv3-longmont", help="dataset name or directory (default wv3-longmont)")
    p.add_argument("--config", default=str(default_config), help="run configuration YAML shared by all")
    p.add_argument("--seed", type=int, default=0, help="seed of every run (default 0)")
    p.add_argument(
        "--variants", default=",".join(variants), help=f"comma-separated subset of {list(variants)}"
    )
    p.add_argument(
        "--batch-size", type=int, default=None, help="override the recipe's batch size (smoke runs)"
    )
    p.add_argument(
        "--warmup", type=int, default=None, help="linear warm-up steps of every stage (default: the recipe's)"
    )
    p.add_argument("--val-max-batches", type=int, default=None, help="limit validation batches (smoke runs)")
    p.add_argument("--num-workers", type=int, default=None, help="data loader workers")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N test tiles")
    p.add_argument("--count-size", type=int, default=256, help="input side for OPs counting (default 256)")
    p.add_argument("--resume", action="store_true", help="continue interrupted runs in --out")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in variants]
    if unknown or not names:
        raise BinsharpError(f"unknown variant(s) {unknown}; known: {', '.join(variants)}")
    if args.steps < 1:
        raise BinsharpError(f"--steps must be >= 1, got {args.steps}")
    return args, names


def variant_config(
    base: dict[str, Any], switches: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    """The shared run configuration with the variant's model switches, data, seed and a final validation."""
    cfg = json.loads(json.dumps(base))
    cfg.setdefault("model", {}).update(switches)
    cfg.setdefault("recipe", {})
    cfg["recipe"]["val_every"] = 0  # validate at the end of each stage only
    cfg["recipe"]["ckpt_every"] = max(1, min(int(cfg["recipe"].get("ckpt_every") or args.steps), args.steps))
    data = cfg.setdefault("data", {})
    data["name"] = args.data
    if args.val_max_batches is not None:
        data["val_max_batches"] = args.val_max_batches
    if args.num_workers is not None:
        data["num_workers"] = args.num_workers
    cfg["seed"] = args.seed
    return cfg


def train_variant(
    model: str, name: str, cfg: dict[str, Any], run_dir: Path, args: argparse.Namespace, expected_step: int
) -> dict[str, Any]:
    """Train one variant into ``run_dir``, or reuse its checkpoint when it was trained for ``expected_step``
    steps with the same seed."""
    from binsharp.errors import BinsharpError
    from binsharp.train import train
    from binsharp.weights import read_meta

    ckpt = run_dir / "model.safetensors"
    if ckpt.is_file():
        meta = read_meta(ckpt)
        if int(meta.get("step", -1)) != expected_step or meta.get("seed") != args.seed:
            raise BinsharpError(
                f"{ckpt} was trained for {meta.get('step')} steps with seed {meta.get('seed')}, not "
                f"{expected_step} steps with seed {args.seed}: use another --out"
            )
        print(f"[{name}] reusing {ckpt}", flush=True)
        return {
            "checkpoint": str(ckpt),
            "train_seconds": None,
            "steps": meta.get("stages"),
            "val": meta.get("val"),
        }
    overrides: dict[str, Any] = {}
    if args.batch_size:
        overrides["batch_size"] = args.batch_size
    if args.warmup is not None:
        overrides["warmup_steps"] = args.warmup
    t0 = time.perf_counter()
    result = train(
        model,
        args.data,
        out=run_dir,
        config=cfg,
        max_steps=args.steps,
        stage_overrides=overrides or None,
        seed=args.seed,
        resume=args.resume,
        progress=False,
    )
    return {
        "checkpoint": str(result.checkpoint),
        "train_seconds": time.perf_counter() - t0,
        "steps": result.steps,
        "val": result.val,
    }


def evaluate_rr(checkpoint: str, args: argparse.Namespace) -> dict[str, Any]:
    """Mean and std of :data:`INDEXES` of ``checkpoint`` on the dataset's ``test_rr`` split."""
    from binsharp.data.catalog import dataset_path
    from binsharp.evaluation.evaluate import evaluate_source, load_test_set
    from binsharp.inference import checkpoint_fuser

    path = dataset_path(args.data, "test_rr")
    ts = load_test_set(path, "rr", limit=args.limit)
    fuser = checkpoint_fuser(checkpoint, sensor=ts.sensor, ratio=ts.ratio)
    summary = evaluate_source(fuser, ts)
    return {
        "test_file": str(path),
        "n_images": ts.n_images,
        "mean": {k: float(summary["mean"][k]) for k in INDEXES},
        "std": {k: float(summary["std"][k]) for k in INDEXES},
        "settings": summary.get("settings"),
    }


def write_report(out: Path, table: str, report: dict[str, Any]) -> None:
    """Print ``table`` and write ``OUT/ablation.md`` and ``OUT/ablation.json``."""
    from binsharp.fileio import atomic_output

    print("\n" + table)
    with atomic_output(out / "ablation.json", overwrite=True) as tmp:
        tmp.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    with atomic_output(out / "ablation.md", overwrite=True) as tmp:
        tmp.write_text(table + "\n", encoding="utf-8")


def run_main(main, script: str) -> None:
    """Run ``main()`` and exit; bad input prints ``<script>: error: ...`` and exits with 2."""
    from binsharp.errors import BinsharpError

    try:
        sys.exit(main())
    except BinsharpError as exc:
        print(f"{script}: error: {exc}", file=sys.stderr)
        sys.exit(2)
