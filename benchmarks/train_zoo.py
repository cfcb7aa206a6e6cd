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
* ``--recipe-variant V`` one training-recipe variant for every binary network alike
  (:func:`binsharp.train.recipe.recipe_variant`). The default, ``lr-high`` (twice the registered learning
  rate of every stage), raised validation Q2n over the registered recipe for BBCU, S2BNet and BNNPan alike
  at 400 steps, and no other variant did (``benchmarks/compare_recipes.py``, ``docs/recipes.md``);
  ``baseline`` keeps the registered recipes. A network whose recipe cannot take a variant keeps its own,
  and the zoo manifest records which applied;
* validation (Q2n, SAM, ERGAS on the dataset's ``val`` split) and a resumable checkpoint every
  ``--val-every`` steps (default N/20);
* seed ``--seed`` (default 0) for initialisation, data order and every stage;
* ``--threads T`` torch intra-op threads (default: torch's; use 1 per process when several run at once).

Several processes may train different models into one zoo at the same time (the manifest is locked while
it is written).

One accelerator, a wall-clock limit (``--time-limit SECONDS``): every selected model trains concurrently in
its own process on the one device, with one step budget for all. First each process times its training step
for ``--measure`` seconds (all at once, so the contention is measured too) and prints its steps/s; the budget
is ``min(steps/s) x (limit - elapsed - reserve) x --safety``, rounded down to a multiple of 100 and capped by
an explicit ``--steps``; then all processes train that budget with ``--resume`` (an interrupted run continues
from its last checkpoint). Processes still running at the limit are stopped; ``budget.json`` in ``--out``
records the measured rates, the budget and each model's outcome, ``<runs>/logs/<model>.log`` each process's
output. Validation runs every ``--val-every`` steps (default here: a quarter of the budget, since it is
not part of the measured rate). ``--measure-only`` stops after the measurement (a one-minute throughput
check). Inputs on a machine without ``dgsamples``/``rasterio``: ``--pack FILE`` (on a machine with them)
writes the dataset's scene to one compact file (:mod:`binsharp.data.pack`, 18.8 MiB for wv3-longmont);
``--inputs FILE`` rebuilds the dataset from it under ``<runs>/data``. ``--merge FOLDER`` adds the weights
of such a run to the zoo (:func:`binsharp.zoo.merge_zoo`). The commands of a GPU lease are in
``benchmarks/GPU.md``::

    python benchmarks/train_zoo.py --pack wv3-longmont.npz                        # CPU machine
    python benchmarks/train_zoo.py --accelerator gpu --inputs wv3-longmont.npz --time-limit 540 \
        --batch 16 --precision bf16-mixed --out $OUT/zoo --runs $OUT/runs        # GPU machine
    python benchmarks/train_zoo.py --merge zoo-from-gpu --overwrite               # back on the CPU machine

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
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

import binsharp
from binsharp import models, zoo
from binsharp.errors import BinsharpError
from binsharp.train.recipe import RECIPE_VARIANTS

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


#: The recipe variant the zoo's binary networks are trained with (chosen on the validation split).
ZOO_RECIPE_VARIANT = "lr-high"


def run_config(model: str, dataset: str, args: argparse.Namespace) -> Path | dict[str, Any] | None:
    """The packaged run configuration of ``model`` on ``dataset``, with ``--precision``/``--channels-last``
    merged into its ``trainer`` settings when given."""
    from binsharp.train.recipe import deep_merge, read_config

    cfg = config_for(model, dataset)
    trainer: dict[str, Any] = {}
    if args.precision:
        trainer["precision"] = args.precision
    if args.channels_last:
        trainer["channels_last"] = True
    if not trainer:
        return cfg
    return deep_merge(read_config(cfg) if cfg else {}, {"trainer": trainer})


def with_recipe_variant(
    model: str, config: Path | dict[str, Any] | None, args: argparse.Namespace
) -> tuple[Path | dict[str, Any] | None, str]:
    """``config`` with the ``--recipe-variant`` layer (:func:`binsharp.train.recipe.recipe_variant`, with
    ``--warmup`` as the baseline warm-up) for a binary network, and the variant applied: ``"baseline"`` for
    full-precision networks, and ``"baseline (VARIANT: reason)"`` where the network's recipe cannot take
    it."""
    from binsharp.train.recipe import deep_merge, read_config, recipe_variant

    if args.recipe_variant == "baseline" or models.model_info(model)["kind"] != "binary":
        return config, "baseline"
    try:
        layer = recipe_variant(args.recipe_variant, model, args.steps, warmup=args.warmup or 0)
    except BinsharpError as exc:
        return config, f"baseline ({args.recipe_variant}: {exc})"
    base = read_config(config) if isinstance(config, Path) else dict(config or {})
    return deep_merge(base, layer), args.recipe_variant


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
    config, variant = with_recipe_variant(name, run_config(name, ds, args), args)
    if args.warmup is not None and variant == "baseline":
        overrides["warmup_steps"] = args.warmup
    t0 = time.perf_counter()
    result = train(
        name,
        args.data,
        out=run_dir,
        config=config,
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
        "recipe_variant": variant,
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
        "precision": args.precision or "32-true",
        "channels_last": bool(args.channels_last),
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


def _device(accelerator: str) -> str:
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return "cuda"
    return "cpu"


def measure_one(name: str, args: argparse.Namespace) -> int:
    """``--measure-child NAME``: time NAME's training step on a batch of the training split for
    ``--measure`` seconds on the accelerator; print ``{"model", "steps_per_s", "batch"}`` as a JSON line."""
    from torch.utils.data import default_collate

    from binsharp.data import PanDataset
    from binsharp.train.throughput import measure_steps_per_second, training_stepper

    ds = PanDataset(args.data, split="train")
    batch = default_collate([ds[i] for i in range(min(len(ds), args.batch or 16))])
    torch.manual_seed(args.seed)
    net = models.create(name, bands=int(batch["ms"].shape[1]))
    step = training_stepper(
        net,
        batch,
        batch["gt"],
        device=_device(args.accelerator),
        precision=args.precision or "32-true",
        channels_last=args.channels_last,
    )
    rate = measure_steps_per_second(step, args.measure)
    print(json.dumps({"model": name, "steps_per_s": rate, "batch": int(batch["gt"].shape[0])}), flush=True)
    return 0


def _child_command(args: argparse.Namespace) -> list[str]:
    """The options every child process of the parallel mode shares."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--data", str(args.data), "--seed", str(args.seed)]
    cmd += ["--accelerator", args.accelerator, "--threads", str(args.threads or 1), "--no-progress"]
    cmd += ["--runs", str(args.runs)] + (["--out", str(args.out)] if args.out else [])
    for opt in ("batch", "warmup", "val_every", "precision", "recipe_variant"):
        if getattr(args, opt) is not None:
            cmd += [f"--{opt.replace('_', '-')}", str(getattr(args, opt))]
    if args.channels_last:
        cmd.append("--channels-last")
    if args.measure:
        cmd += ["--measure", str(args.measure)]
    return cmd


def _stop(procs: dict[str, subprocess.Popen]) -> None:
    for p in procs.values():
        if p.poll() is None:
            p.terminate()
    end = time.monotonic() + 30
    for p in procs.values():
        try:
            p.wait(timeout=max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _measure_all(names: list[str], args: argparse.Namespace, deadline: float, logs: Path) -> dict[str, float]:
    """Steps/s of every model, measured concurrently (one child process each)."""
    base = _child_command(args)
    procs = {
        n: subprocess.Popen(base + ["--measure-child", n], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
        for n in names
    }  # fmt: skip
    rates: dict[str, float] = {}
    try:
        for n, p in procs.items():
            out, _ = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            (logs / f"{n}.measure.log").write_text(out, encoding="utf-8")
            lines = [ln for ln in out.splitlines() if ln.startswith("{")]
            if p.returncode or not lines:
                raise BinsharpError(f"measuring {n} failed (exit {p.returncode}); see {logs / n}.measure.log")
            rates[n] = float(json.loads(lines[-1])["steps_per_s"])
    except subprocess.TimeoutExpired:
        raise BinsharpError("the measurement did not finish inside the time limit") from None
    finally:
        _stop(procs)
    return rates


def run_parallel(names: list[str], args: argparse.Namespace, start: float) -> int:
    """Train ``names`` concurrently on one accelerator inside ``--time-limit`` (see the module docstring)."""
    out = zoo.zoo_dir(args.out)
    out.mkdir(parents=True, exist_ok=True)
    logs = Path(args.runs) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    deadline = start + args.time_limit
    budget_path = out / "budget.json"
    plan = json.loads(budget_path.read_text(encoding="utf-8")) if budget_path.is_file() else {}
    if args.resume and plan.get("started"):
        steps = int(plan["steps"])
        print(f"resuming the budget of {budget_path}: {steps} steps per model")
    else:
        rates = _measure_all(names, args, deadline, logs)
        print("\n| model | steps/s (all concurrently) |\n|---|---:|")
        for n, r in rates.items():
            print(f"| {n} | {r:.2f} |")
        remaining = deadline - time.monotonic() - args.reserve
        raw = min(rates.values()) * remaining * args.safety
        steps = int(raw) // 100 * 100 if raw >= 100 else int(raw)
        if args.steps is not None:
            steps = min(steps, args.steps)
        slowest = min(rates, key=lambda n: rates[n])
        plan = {
            "time_limit_s": args.time_limit,
            "measure_s": args.measure,
            "steps_per_s": rates,
            "slowest": slowest,
            "remaining_s": round(remaining, 1),
            "safety": args.safety,
            "steps": steps,
            "batch": args.batch,
            "precision": args.precision or "32-true",
            "channels_last": bool(args.channels_last),
            "accelerator": args.accelerator,
            "machine": machine(),
        }
        print(
            f"budget: {steps} steps per model (slowest {slowest} at {rates[slowest]:.2f} steps/s, "
            f"{remaining:.0f} s left after a {args.reserve:.0f} s reserve, safety {args.safety})"
        )
        budget_path.write_text(json.dumps(plan, indent=2) + "\n", encoding="utf-8")
    if args.measure_only:
        return 0
    if steps < 1:
        print("train_zoo: error: no time left for a single step", file=sys.stderr)
        return 2
    if args.val_every is None:  # validation is not in the measured rate: four validations per run
        args.val_every = max(1, steps // 4)
    plan["started"] = True
    budget_path.write_text(json.dumps(plan, indent=2) + "\n", encoding="utf-8")
    base = _child_command(args) + ["--steps", str(steps), "--resume", "--overwrite"]
    files = {n: (logs / f"{n}.log").open("a", encoding="utf-8") for n in names}
    procs = {
        n: subprocess.Popen(base + ["--models", n], stdout=files[n], stderr=subprocess.STDOUT) for n in names
    }
    while any(p.poll() is None for p in procs.values()) and time.monotonic() < deadline:
        time.sleep(1.0)
    stopped = [n for n, p in procs.items() if p.poll() is None]
    _stop(procs)
    for f in files.values():
        f.close()
    outcome = {
        n: "stopped at the time limit (continue with --resume)" if n in stopped
        else ("done" if p.returncode == 0 else f"failed (exit {p.returncode}, see {logs / n}.log)")
        for n, p in procs.items()
    }  # fmt: skip
    plan["outcome"] = outcome
    plan["wall_s"] = round(time.monotonic() - start, 1)
    budget_path.write_text(json.dumps(plan, indent=2) + "\n", encoding="utf-8")
    for n, o in outcome.items():
        print(f"{n}: {o}")
    return 0 if all(o == "done" for o in outcome.values()) else 2


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="all", help="'all' (default) or comma-separated registered names")
    p.add_argument(
        "--data", default=DEFAULT_DATA, help=f"training dataset name or directory ({DEFAULT_DATA})"
    )
    p.add_argument(
        "--steps", type=int, default=None, help=f"steps per model ({DEFAULT_STEPS}; a cap with --time-limit)"
    )
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"seed ({DEFAULT_SEED})")
    p.add_argument(
        "--batch", type=int, default=None, help="batch size of every stage (default: the recipe's)"
    )
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps of every stage (default: none)")
    p.add_argument(
        "--recipe-variant",
        default=ZOO_RECIPE_VARIANT,
        choices=RECIPE_VARIANTS,
        help="training-recipe variant of every binary network (binsharp.train.recipe.recipe_variant; "
        f"default: {ZOO_RECIPE_VARIANT}, chosen on the validation split, docs/recipes.md; "
        "baseline: the registered recipes)",
    )
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
    p.add_argument("--precision", default=None, help="trainer precision, e.g. bf16-mixed (default: 32-true)")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    p.add_argument("--pack", default=None, metavar="FILE", help="write the --data scene to FILE and exit")
    p.add_argument("--inputs", default=None, metavar="FILE", help="build the training data from a pack FILE")
    p.add_argument("--time-limit", type=float, default=None, help="train all models concurrently in SECONDS")
    p.add_argument("--measure", type=float, default=20.0, help="seconds of step timing per model (20)")
    p.add_argument("--measure-only", action="store_true", help="with --time-limit: print steps/s and stop")
    p.add_argument("--safety", type=float, default=0.8, help="fraction of the remaining time budgeted (0.8)")
    p.add_argument("--reserve", type=float, default=30.0, help="seconds kept for the final writes (30)")
    p.add_argument("--merge", default=None, metavar="FOLDER", help="add the zoo FOLDER to --out and exit")
    p.add_argument("--measure-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    start = time.monotonic()
    if args.steps is not None and args.steps < 1:
        p.error("--steps must be >= 1")
    if args.time_limit is not None and args.time_limit <= 0:
        p.error("--time-limit must be > 0")
    if not 0 < args.safety <= 1:
        p.error("--safety must be in (0, 1]")
    if args.warmup is not None and args.warmup < 0:
        p.error("--warmup must be >= 0")
    for opt in ("batch", "val_every", "threads"):
        if getattr(args, opt) is not None and getattr(args, opt) < 1:
            p.error(f"--{opt.replace('_', '-')} must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        if args.merge:
            for e in zoo.merge_zoo(args.merge, args.out, overwrite=args.overwrite):
                print(f"merged {e['dataset']}/{e['model']} ({e['step']} steps) into {zoo.zoo_dir(args.out)}")
            return 0
        if args.pack:
            from binsharp.data.pack import pack_dataset

            pack_dataset(args.data, args.pack)
            size = Path(args.pack).stat().st_size
            print(f"packed {args.data} into {args.pack} ({size / 2**20:.1f} MiB)")
            return 0
        if args.inputs:
            from binsharp.data.pack import build_from_pack

            data_dir = Path(args.runs) / "data" / Path(args.inputs).stem
            if not (data_dir / "manifest.json").is_file():
                data_dir.parent.mkdir(parents=True, exist_ok=True)
                build_from_pack(args.inputs, data_dir, progress=False, overwrite=data_dir.exists())
            args.data = str(data_dir)
        if args.measure_child:
            return measure_one(args.measure_child, args)
    except BinsharpError as exc:
        print(f"train_zoo: error: {exc}", file=sys.stderr)
        return 2
    if args.time_limit is None:
        args.steps = DEFAULT_STEPS if args.steps is None else args.steps
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
        f"budget: {args.steps or 'sized to --time-limit'} steps per model, "
        f"batch {args.batch or 'of the recipe'}, "
        f"warm-up {args.warmup or 0} steps, seed {args.seed}"
    )
    print(
        "recipes: each model's registered recipe (batch size, optimiser, lr, schedule); multi-stage recipes"
    )
    print(f"         binary networks: recipe variant {args.recipe_variant}")
    print(
        "         scaled to the same total steps; validation and checkpoints every "
        f"{args.val_every or 'steps/20'} steps; torch threads {torch.get_num_threads()}"
    )
    print(f"zoo: {zoo_root}; runs: {args.runs}; accelerator: {args.accelerator}")
    print(f"machine: {machine()}", flush=True)
    if args.time_limit is not None:
        try:
            return run_parallel(names, args, start)
        except BinsharpError as exc:
            print(f"train_zoo: error: {exc}", file=sys.stderr)
            return 2
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
