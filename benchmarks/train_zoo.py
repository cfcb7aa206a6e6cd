"""Train the model zoo: every registered model on one dataset with one budget and seed, into the zoo.

Usage::

    python benchmarks/train_zoo.py                         # all models, wv3-longmont, 20 000 steps, seed 0
    python benchmarks/train_zoo.py --models s2bnet,bnnpan --steps 20000 --accelerator gpu
    python benchmarks/train_zoo.py --models pnn --steps 5 --out /tmp/zoo --runs /tmp/runs   # smoke test
    python benchmarks/train_zoo.py --models NAMES --steps 400 --batch 8 --warmup 40 --val-every 100 \
        --threads 1 --seed 0                          # the CPU budget of the shipped zoo

The budget (documented, the same for every model):

* ``--steps N`` optimiser steps per model (default 20 000). Single-stage recipes run N steps; BNNPan's
  three-stage recipe (I: 50 000, II: 20 000, III: 30 000 in its registered form) is scaled to the same total
  N in proportion to its stages (the training engine's ``max_steps``: 10 000 / 4 000 / 6 000 for N = 20 000).
* batch size, optimiser, learning rate and schedule: each model's registered recipe
  (:func:`binsharp.models.model_info`; binary models: Adam 4e-4, cosine to 1e-6 over the run's steps,
  batch 16; full-precision: the PanCollection learning rates, batch 32, step decay every 25 000 steps),
  merged with ``binsharp/configs/<model>-<dataset>.yaml`` when that file exists (architecture switches,
  logging cadence);
* ``--batch B`` replaces the recipes' batch sizes in every stage (the CPU budget of the shipped zoo uses it so
  that every model sees the same number of samples);
* ``--warmup W`` linear learning-rate warm-up over the first W steps of every stage (default: the recipe's,
  none);
* validation (Q2n, SAM, ERGAS on the dataset's ``val`` split) and a resumable checkpoint every
  ``--val-every`` steps (default N/20);
* seed ``--seed`` (default 0) for initialisation, data order and every stage;
* ``--threads T`` torch intra-op threads (default: torch's; use 1 per process when several run at once).

Several processes may train different models into one zoo at the same time (the manifest is locked while
it is written).

The zoo entry also stores the network's Params/OPs at 256 x 256 (:func:`binsharp.nn.complexity.count`), which
``binsharp bench`` and ``binsharp quickstart`` reuse instead of counting again.

Each model is trained with the engine's Python API (:func:`binsharp.train.train`) into
``<runs>/<model>-<dataset>`` (``--resume`` continues an interrupted run there), then its final checkpoint,
the joined CSV log of its stages and the dataset manifest are copied into the zoo (``--out``, default the
package's ``binsharp/zoo/weights``) and the zoo manifest records the exact command, budget, seed, wall time
and machine (:func:`binsharp.zoo.add_checkpoint`). An existing zoo entry is replaced only with
``--overwrite``. Prints the settings and the machine first.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

import binsharp
from binsharp import models, zoo
from binsharp.errors import BinsharpError

DEFAULT_STEPS = 20_000
DEFAULT_SEED = 0
DEFAULT_DATA = "wv3-longmont"
#: PAN-resolution side of the Params/OPs count stored in the zoo manifest (read by ``binsharp bench``).
COMPLEXITY_SIZE = 256


def machine() -> dict[str, Any]:
    """The machine record of ``binsharp bench`` (:func:`binsharp.evaluation.bench.machine_info`: CPU, cores,
    platform, python/numpy/torch versions, torch threads), with the binsharp version and the GPU name (when
    CUDA is available)."""
    from binsharp.evaluation.bench import machine_info

    info = machine_info()
    info["binsharp"] = binsharp.__version__
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def dataset_key(data: str) -> str:
    """Zoo key of the training data: the dataset's manifest name (or the catalog name / file stem)."""
    from binsharp.data.catalog import CATALOG, dataset_info

    if data.strip().lower() in CATALOG:
        return data.strip().lower()
    p = Path(data)
    if p.is_dir():
        name = dataset_info(p).get("name")
        return str(name or p.name).lower()
    return p.stem.lower()


def config_for(model: str, dataset: str) -> Path | None:
    """The packaged run configuration ``binsharp/configs/<model>-<dataset>.yaml`` when it exists."""
    path = Path(binsharp.__file__).resolve().parent / "configs" / f"{model}-{dataset}.yaml"
    return path if path.is_file() else None


def stage_logs(run_dir: Path, stages: list[Any], steps: dict[str, int]) -> list[tuple[str, Path, int]]:
    """``(stage name, metrics.csv, steps before the stage)`` of a finished run, in stage order (existing
    files only); ``steps``: optimiser steps run per stage name."""
    out = []
    offset = 0
    for s in stages:
        csv_path = run_dir / "stages" / s.dirname / "logs" / "metrics.csv"
        if csv_path.is_file():
            out.append((s.name, csv_path, offset))
        offset += int(steps.get(s.name, s.steps))
    return out


def train_one(name: str, args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Train model ``name`` with the budget of ``args`` and add it to the zoo; returns the zoo entry."""
    from binsharp.data.catalog import dataset_info
    from binsharp.train import train

    ds = dataset_key(args.data)
    run_dir = Path(args.runs) / f"{name}-{ds}"
    cfg = config_for(name, ds)
    every = args.val_every or max(1, args.steps // 20)
    overrides: dict[str, Any] = {"val_every": every, "ckpt_every": every}
    if args.batch:
        overrides["batch_size"] = args.batch
    if args.warmup is not None:
        overrides["warmup_steps"] = args.warmup
    t0 = time.perf_counter()
    result = train(
        name,
        args.data,
        out=run_dir,
        config=cfg,
        max_steps=args.steps,
        stage_overrides=overrides,
        seed=args.seed,
        resume=args.resume,
        accelerator=args.accelerator,
        devices=args.devices,
        progress=not args.no_progress,
    )
    wall = time.perf_counter() - t0
    log_path = run_dir / "training-log.csv"
    logs = stage_logs(run_dir, result.stages, result.steps)
    if logs:
        zoo.merge_logs(logs, log_path)
    try:
        data_manifest = dataset_info(args.data, progress=False)
    except BinsharpError:
        data_manifest = result.meta.get("data_manifest") or None
    budget = {
        "steps": int(sum(result.steps.values())),
        "requested_steps": int(args.steps),
        "stages": [
            {
                "name": s.name,
                "steps": s.steps,
                "batch_size": s.batch_size,
                "warmup_steps": s.warmup_steps,
                "optimizer": s.optimizer,
                "lr": s.lr,
                "scheduler": s.scheduler,
                "eta_min": s.eta_min,
            }
            for s in result.stages
        ],
        "config": str(cfg.relative_to(Path(binsharp.__file__).resolve().parent)) if cfg else None,
    }
    from binsharp.nn.complexity import count

    net = result.model.eval()
    r = count(net, net.example_inputs(COMPLEXITY_SIZE))
    complexity = {
        "size": COMPLEXITY_SIZE,
        **{k: getattr(r, k) for k in ("ops", "params", "bops", "flops", "elementwise", "params_binary",
                                      "params_float", "weight_bytes")},
    }  # fmt: skip
    info = {
        "complexity": complexity,
        "command": command,
        "budget": budget,
        "seed": int(args.seed),
        "wall_time_s": round(wall, 1),
        "machine": machine(),
        "accelerator": args.accelerator,
        "run_dir": str(run_dir),
    }
    return zoo.add_checkpoint(
        result.checkpoint,
        dataset=ds,
        log=log_path if logs else None,
        data_manifest=data_manifest,
        info=info,
        root=args.out,
        overwrite=args.overwrite,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="all", help="'all' (default) or comma-separated registered names")
    p.add_argument(
        "--data", default=DEFAULT_DATA, help=f"training dataset name or directory ({DEFAULT_DATA})"
    )
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"steps per model ({DEFAULT_STEPS})")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"seed ({DEFAULT_SEED})")
    p.add_argument(
        "--batch", type=int, default=None, help="batch size of every stage (default: the recipe's)"
    )
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps of every stage (default: none)")
    p.add_argument("--val-every", type=int, default=None, help="validation/checkpoint period (steps/20)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--out", default=None, help="zoo directory (default: the package's binsharp/zoo/weights)")
    p.add_argument("--runs", default="runs/zoo", help="parent of the run directories (default runs/zoo)")
    p.add_argument("--accelerator", default="cpu", help="Lightning accelerator: cpu (default), gpu, auto")
    p.add_argument("--devices", default=None, help="devices (default 1)")
    p.add_argument("--resume", action="store_true", help="continue interrupted runs in --runs")
    p.add_argument("--overwrite", action="store_true", help="replace existing zoo entries")
    p.add_argument("--keep-going", action="store_true", help="continue with the next model after a failure")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error("--steps must be >= 1")
    if args.warmup is not None and args.warmup < 0:
        p.error("--warmup must be >= 0")
    for opt in ("batch", "val_every", "threads"):
        if getattr(args, opt) is not None and getattr(args, opt) < 1:
            p.error(f"--{opt.replace('_', '-')} must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    names = (
        models.list_models()
        if args.models.strip().lower() == "all"
        else [n.strip().lower() for n in args.models.split(",") if n.strip()]
    )
    unknown = sorted(set(names) - set(models.list_models()))
    if unknown:
        p.error(f"unknown model(s) {', '.join(unknown)}; registered: {', '.join(models.list_models())}")
    command = shlex.join(["python", "benchmarks/train_zoo.py", *(sys.argv[1:] if argv is None else argv)])
    zoo_root = zoo.zoo_dir(args.out)
    print("# train_zoo settings")
    print(f"models: {', '.join(names)}")
    print(
        f"data: {args.data} (zoo key {dataset_key(args.data)}); "
        f"budget: {args.steps} steps per model, batch {args.batch or 'of the recipe'}, "
        f"warm-up {args.warmup or 0} steps, seed {args.seed}"
    )
    print(
        "recipes: each model's registered recipe (batch size, optimiser, lr, schedule); multi-stage recipes"
    )
    print(
        "         scaled to the same total steps; validation and checkpoints every "
        f"{args.val_every or 'steps/20'} steps; torch threads {torch.get_num_threads()}"
    )
    print(f"zoo: {zoo_root}; runs: {args.runs}; accelerator: {args.accelerator}")
    print(f"machine: {machine()}")
    failed = []
    for name in names:
        print(f"\n## {name}", flush=True)
        try:
            e = train_one(name, args, command)
        except BinsharpError as exc:
            print(f"{name}: failed: {exc}", file=sys.stderr)
            failed.append(name)
            if not args.keep_going:
                return 2
            continue
        val = e.get("val") or {}
        last = next(reversed(val.values()), {}) if isinstance(val, dict) and val else {}
        print(
            f"{name}: {e['budget']['steps']} steps in {e['wall_time_s']:.1f} s -> "
            f"{zoo_root / e['checkpoint']} ({e['bytes']} bytes); last validation {last}"
        )
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
