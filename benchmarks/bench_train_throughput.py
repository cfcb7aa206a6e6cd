"""Training throughput on CPU: optimisation steps per second for every registered model.

Usage::

    python benchmarks/bench_train_throughput.py [--batch 16] [--size 64] [--bands 8] [--steps 5]
        [--warmup 2] [--threads N] [--models a,b]

One step = forward ``model(ms=, lms=, pan=)`` on a random batch (``batch`` patches of ``size x size`` PAN
pixels, ``bands`` MS bands, ratio 4), L1 loss against a random target, ``backward``, ``Adam.step``
(lr 1e-4). For every binary model the same network with its quantizers removed
(:func:`binsharp.models.strip_quantizers`: identical layers, BN, RPReLU and shortcuts, float convolutions) is
timed too, interleaved step by step with the binary-emulated one so that machine load affects both alike;
``ratio = time per step binary-emulated / time per step float`` (target <= 1.5). Times are medians over
``steps`` timed steps after ``warmup`` untimed ones. Prints the settings, the machine and a Markdown table.

On a shared machine use ``--threads 1``: with several busy processes, multi-threaded (OpenMP) kernels lose
far more to contention than they gain (measured 10-40x slower steps on a 2-core machine at load ~10).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import torch

import binsharp
from binsharp import models
from binsharp.models import strip_quantizers
from binsharp.models.base import example_inputs


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _stepper(model: torch.nn.Module, batch: dict, target: torch.Tensor):
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> float:
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.l1_loss(model(**batch), target)
        loss.backward()
        opt.step()
        return time.perf_counter() - t0

    return step


def bench(name: str, a: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    m = models.create(name, bands=a.bands)
    batch = example_inputs(a.bands, a.size, batch=a.batch, seed=0)
    target = torch.rand_like(batch["lms"])
    steppers = {"model": _stepper(m, batch, target)}
    if m.kind == "binary":
        steppers["float"] = _stepper(strip_quantizers(m), batch, target)
    times: dict[str, list[float]] = {k: [] for k in steppers}
    for _ in range(a.warmup):
        for s in steppers.values():
            s()
    for _ in range(a.steps):
        for k, s in steppers.items():
            times[k].append(s())
    t = statistics.median(times["model"])
    row = {"model": name, "kind": m.kind, "sec_per_step": t, "steps_per_sec": 1.0 / t}
    if "float" in times:
        tf = statistics.median(times["float"])
        row.update(float_sec_per_step=tf, float_steps_per_sec=1.0 / tf, ratio=t / tf)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=64, help="PAN-resolution patch side (default 64)")
    p.add_argument("--bands", type=int, default=8)
    p.add_argument("--steps", type=int, default=5, help="timed steps per network (median reported)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--models", default="", help="comma-separated names (default: all registered)")
    a = p.parse_args(argv)
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    names = [n.strip() for n in a.models.split(",") if n.strip()] or models.list_models()

    print("# Training throughput (CPU)\n")
    print(
        f"Settings: batch {a.batch}, {a.size} x {a.size} PAN patches, {a.bands} bands (ms {a.size // 4} x "
        f"{a.size // 4}), L1 loss, Adam step; median of {a.steps} timed steps after {a.warmup} warm-up "
        "steps; binary-emulated and float twin interleaved step by step; float32, device cpu."
    )
    print(
        f"Machine: {_cpu_name()}, {os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()}, "
        f"{platform.system()} {platform.release()} {platform.machine()}; torch {torch.__version__}, "
        f"binsharp {binsharp.__version__}, Python {platform.python_version()}"
    )
    try:
        print(f"Load average at start: {os.getloadavg()[0]:.2f}\n")
    except OSError:
        print()
    rows = []
    for n in names:
        rows.append(bench(n, a))
        print(f"  {n}: {rows[-1]['steps_per_sec']:.3f} steps/s", file=sys.stderr, flush=True)
    print("| Model | Kind | steps/s | s/step | float twin steps/s | binary / float |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        if "ratio" in r:
            extra = f"{r['float_steps_per_sec']:.3f} | {r['ratio']:.2f}x"
        else:
            extra = "- | -"
        print(
            f"| {r['model']} | {r['kind']} | {r['steps_per_sec']:.3f} | {r['sec_per_step']:.3f} | {extra} |"
        )
    try:
        print(f"\nLoad average at end: {os.getloadavg()[0]:.2f}")
    except OSError:
        pass
    ratios = [r["ratio"] for r in rows if "ratio" in r]
    if ratios:
        worst = max(rows, key=lambda r: r.get("ratio", 0))
        print(
            f"\nbinary-emulated / float: median {statistics.median(ratios):.2f}x, "
            f"max {worst['ratio']:.2f}x ({worst['model']}); target <= 1.5x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
