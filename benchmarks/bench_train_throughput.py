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

Before / after (``--before REV``): the sources of git revision ``REV`` (``git archive REV src``, with its
compiled kernels built from its own C source) and the working tree's are timed side by side, each in its own
worker process holding the model, the batch and the optimiser; the workers are driven one step at a time,
alternately, so machine load hits both alike. Prints,
per model, the steps/s of both, ``speed-up = before s/step / after s/step`` and the after-step relative to
BBCU's (``x BBCU``). ``--precision bf16-mixed``, ``--channels-last`` and ``--compile`` apply to the "after"
side only (the first two are the training engine's ``trainer.precision`` / ``trainer.channels_last``;
``--compile`` wraps the forward in ``torch.compile``, and ``--warmup`` must then cover the compilation)::

    python benchmarks/bench_train_throughput.py --before 89a1fe0 --batch 8 --threads 2 --steps 7
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import torch

import binsharp
from binsharp import models
from binsharp.models import strip_quantizers
from binsharp.models.base import example_inputs


def _load_harness():
    """:mod:`binsharp.train.throughput` of this working tree, loaded by file path: the "before" worker
    imports binsharp from another revision, but both sides are stepped by this one harness (it needs only
    torch)."""
    path = Path(__file__).resolve().parents[1] / "src" / "binsharp" / "train" / "throughput.py"
    spec = importlib.util.spec_from_file_location("_binsharp_throughput", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


training_stepper = _load_harness().training_stepper


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def worker(a: argparse.Namespace) -> int:
    """Hidden ``--worker NAME`` mode: build NAME and its batch, then run one step per stdin line and print
    its duration in seconds (one line each)."""
    torch.manual_seed(0)
    m = models.create(a.worker, bands=a.bands)
    batch = example_inputs(a.bands, a.size, batch=a.batch, seed=0)
    step = training_stepper(
        m,
        batch,
        torch.rand_like(batch["lms"]),
        precision=a.precision,
        channels_last=a.channels_last,
        compile=a.compile,
    )
    print("ready", flush=True)
    for _ in sys.stdin:
        print(f"{step():.6f}", flush=True)
    return 0


def _extract(rev: str, dest: Path) -> Path:
    """``src/`` of git revision ``rev`` of this repository, extracted under ``dest``, with its compiled
    kernels built from its own C source (training ops run in them where a revision has them)."""
    root = Path(__file__).resolve().parents[1]
    paths = ["src"] + [
        name
        for name in ("setup.py", "pyproject.toml")
        if subprocess.run(["git", "-C", str(root), "cat-file", "-e", f"{rev}:{name}"]).returncode == 0
    ]
    tar = dest / "src.tar"
    with tar.open("wb") as f:
        subprocess.run(["git", "-C", str(root), "archive", rev, *paths], stdout=f, check=True)
    with tarfile.open(tar) as t:
        t.extractall(dest, filter="data")
    sources = [d for d in ("native", "deploy") if (dest / "src" / "binsharp" / d / "_bitkern.c").exists()]
    kernels = dest / "src" / "binsharp" / (sources[0] if sources else "native")
    if (dest / "setup.py").exists() and sources:
        subprocess.run(
            [sys.executable, "setup.py", "build_ext", "--inplace"], cwd=dest, capture_output=True, text=True
        )
        if not any(kernels.glob(f"_bitkern*{sfx}") for sfx in importlib.machinery.EXTENSION_SUFFIXES):
            print(f"note: the compiled kernels of {rev} did not build; that side runs without them")
    return dest / "src"


def _spawn(name: str, src: Path, a: argparse.Namespace, extra: list[str]) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(src))
    if a.threads > 0:
        env["OMP_NUM_THREADS"] = str(a.threads)
    cmd = [sys.executable, __file__, "--worker", name, "--batch", str(a.batch), "--size", str(a.size)]
    cmd += ["--bands", str(a.bands), "--threads", str(a.threads), *extra]
    p = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    if p.stdout.readline().strip() != "ready":
        raise RuntimeError(f"worker for {name} ({src}) did not start")
    return p


def _ask(p: subprocess.Popen) -> float:
    assert p.stdin is not None and p.stdout is not None
    p.stdin.write("\n")
    p.stdin.flush()
    return float(p.stdout.readline())


def before_after(name: str, before_src: Path, a: argparse.Namespace) -> dict:
    """Median s/step of ``name`` with the sources ``before_src`` and with the working tree, interleaved."""
    after_src = Path(binsharp.__file__).resolve().parents[1]
    extra = ["--precision", a.precision] + (["--channels-last"] if a.channels_last else [])
    extra += ["--compile"] if a.compile else []
    procs = {"before": _spawn(name, before_src, a, []), "after": _spawn(name, after_src, a, extra)}
    times: dict[str, list[float]] = {k: [] for k in procs}
    try:
        for i in range(a.warmup + a.steps):
            order = list(procs) if i % 2 == 0 else list(reversed(procs))
            for k in order:
                t = _ask(procs[k])
                if i >= a.warmup:
                    times[k].append(t)
    finally:
        for p in procs.values():
            p.stdin.close()  # type: ignore[union-attr]
            p.wait()
    tb, ta = statistics.median(times["before"]), statistics.median(times["after"])
    return {"model": name, "before": tb, "after": ta, "speedup": tb / ta}


def bench(name: str, a: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    m = models.create(name, bands=a.bands)
    batch = example_inputs(a.bands, a.size, batch=a.batch, seed=0)
    target = torch.rand_like(batch["lms"])
    steppers = {"model": training_stepper(m, batch, target)}
    if m.kind == "binary":
        steppers["float"] = training_stepper(strip_quantizers(m), batch, target)
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


def _header(a: argparse.Namespace, what: str) -> None:
    print("# Training throughput (CPU)\n")
    print(
        f"Settings: batch {a.batch}, {a.size} x {a.size} PAN patches, {a.bands} bands (ms {a.size // 4} x "
        f"{a.size // 4}), L1 loss, Adam step; median of {a.steps} timed steps after {a.warmup} warm-up "
        f"steps; {what}; device cpu."
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


def _footer() -> None:
    try:
        print(f"\nLoad average at end: {os.getloadavg()[0]:.2f}")
    except OSError:
        pass


def main_before_after(a: argparse.Namespace, names: list[str]) -> int:
    after = (
        f"{a.precision}"
        + (", channels_last" if a.channels_last else "")
        + (", compiled" if a.compile else "")
    )
    _header(
        a,
        f"before = sources of git revision {a.before} (float32), after = working tree ({after}), each in its "
        "own worker process, stepped alternately",
    )
    with tempfile.TemporaryDirectory() as tmp:
        before_src = _extract(a.before, Path(tmp))
        rows = []
        for n in names:
            rows.append(before_after(n, before_src, a))
            print(f"  {n}: speed-up {rows[-1]['speedup']:.2f}x", file=sys.stderr, flush=True)
    bbcu = next((r["after"] for r in rows if r["model"] == "bbcu"), None)
    print("| Model | before steps/s | after steps/s | speed-up | after step / BBCU's |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        rel = f"{r['after'] / bbcu:.2f}x" if bbcu else "-"
        print(
            f"| {r['model']} | {1 / r['before']:.3f} | {1 / r['after']:.3f} | {r['speedup']:.2f}x | {rel} |"
        )
    _footer()
    worst = min(rows, key=lambda r: r["speedup"])
    print(f"\nspeed-up: median {statistics.median(r['speedup'] for r in rows):.2f}x, "
          f"min {worst['speedup']:.2f}x ({worst['model']}); target >= 1.5x")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=64, help="PAN-resolution patch side (default 64)")
    p.add_argument("--bands", type=int, default=8)
    p.add_argument("--steps", type=int, default=5, help="timed steps per network (median reported)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--models", default="", help="comma-separated names (default: all registered)")
    p.add_argument("--before", default=None, help="git revision to time against the working tree")
    p.add_argument(
        "--precision", default="32-true", choices=("32-true", "bf16-mixed"), help="'after' side precision"
    )
    p.add_argument("--channels-last", action="store_true", help="'after' side in channels_last memory format")
    p.add_argument("--compile", action="store_true", help="'after' side through torch.compile (inductor)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    if a.worker:
        return worker(a)
    names = [n.strip() for n in a.models.split(",") if n.strip()] or models.list_models()
    if a.before:
        return main_before_after(a, names)

    _header(a, "binary-emulated and float twin interleaved step by step; float32")
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
    _footer()
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
