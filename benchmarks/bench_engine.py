"""Benchmark of the bit-packed engine (binsharp.deploy) against PyTorch float32 on this CPU.

(a) one binary 3x3 convolution, 64 -> 64 channels on 256 x 256, one thread: the packed kernel (integer
    accumulator only, and with the fused epilogue alpha + RPReLU + residual + packed output) on every dispatch
    path of this CPU vs ``torch.conv2d`` in float32;
(b) end-to-end inference on a 512 x 512, 8-band (WV3) tile: the exported network in the engine vs the same
    network in PyTorch float32 with binarization removed (same shapes), and vs the PyTorch binary emulation;
(c) model file size (.bsp) vs the float32 checkpoint (safetensors), and peak resident memory of one inference
    (engine in a fresh process without torch; PyTorch emulation in a fresh process).

Usage::

    python benchmarks/bench_engine.py                       # everything, default models
    python benchmarks/bench_engine.py --part a --repeat 20
    python benchmarks/bench_engine.py --models bbcu,bisrnet --size 512 --threads 2

Times are the minimum over ``--repeat`` runs after one warm-up run. Inputs are random (timings depend on
shapes only); weights are random initialisations.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np


def _timeit(fn, repeat: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def machine_report() -> dict:
    from binsharp.deploy import cpu_features

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return {
        "cpu": model or platform.processor(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "engine": cpu_features(),
    }


def part_a(repeat: int) -> list[dict]:
    import torch
    import torch.nn.functional as F

    from binsharp.deploy import kernels as K

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    c, hw = 64, 256
    x = rng.standard_normal((1, c, hw, hw)).astype(np.float32)
    w = rng.standard_normal((c, c, 3, 3)).astype(np.float32)
    alpha = np.abs(w).mean(axis=(1, 2, 3)).astype(np.float32)
    xt, wt = torch.from_numpy(x), torch.from_numpy(w)
    t_torch = _timeit(lambda: F.conv2d(xt, wt, padding=1), repeat)
    print(
        f"(a) binary 3x3 conv {c}->{c} on {hw}x{hw}, 1 thread; torch.conv2d float32: {t_torch * 1e3:.2f} ms"
    )
    wb = K.pack_weights(w)
    rows = []
    for path in K.available_paths():
        rows.append(_part_a_path(K, path, x, w, wb, alpha, c, t_torch, repeat))
    return rows


def _part_a_path(K, path: str, x, w, wb, alpha, c: int, t_torch: float, repeat: int) -> dict:
    pk = K.pack_activations(x, halo=1, path=path, threads=1)
    t_pack = _timeit(lambda: K.pack_activations(x, halo=1, path=path, threads=1, out=pk), repeat)

    def conv_int():
        K.binary_conv2d(
            pk,
            wb,
            out_channels=c,
            kernel_size=3,
            padding=1,
            float_out=False,
            int_out=True,
            path=path,
            threads=1,
        )

    buf = np.empty((1, c, x.shape[2], x.shape[3]), np.float32)  # preallocated outputs: kernel time only
    pbuf = K.Packed.empty(1, c, x.shape[2], x.shape[3], halo=1)

    def conv_fused():
        K.binary_conv2d(
            pk,
            wb,
            out_channels=c,
            kernel_size=3,
            padding=1,
            alpha=alpha,
            act=(alpha, alpha, alpha),
            residual=x,
            pack_out={"halo": 1, "out": pbuf},
            out_buffer=buf,
            path=path,
            threads=1,
        )

    t_int, t_fused = _timeit(conv_int, repeat), _timeit(conv_fused, repeat)
    print(
        f"    {path:8s} packed conv {t_int * 1e3:7.2f} ms ({t_torch / t_int:5.1f}x)   "
        f"fused epilogue + packed out {t_fused * 1e3:7.2f} ms ({t_torch / t_fused:5.1f}x)   "
        f"input packing {t_pack * 1e3:.2f} ms"
    )
    return {
        "path": path,
        "pack_ms": t_pack * 1e3,
        "conv_int_ms": t_int * 1e3,
        "conv_fused_ms": t_fused * 1e3,
        "torch_ms": t_torch * 1e3,
        "speedup_int": t_torch / t_int,
        "speedup_fused": t_torch / t_fused,
    }


def _exportable(name: str) -> bool:
    from binsharp import models

    return name in models.list_models()


def part_bc(names: list[str], size: int, threads: int, repeat: int, do_b: bool, do_c: bool) -> list[dict]:
    import torch
    from safetensors.torch import save as st_save

    from binsharp import models
    from binsharp.deploy import bsp
    from binsharp.deploy.export import lower_model

    torch.set_num_threads(threads)
    rows = []
    print(f"(b/c) end-to-end on a {size}x{size} 8-band tile, {threads} thread(s)")
    for name in names:
        if not _exportable(name):
            print(f"    {name}: not registered, skipped")
            continue
        torch.manual_seed(0)
        m = models.create(name, bands=8).eval()
        try:
            model = lower_model(m)
        except Exception as exc:  # noqa: BLE001
            print(f"    {name}: cannot be exported: {exc}")
            continue
        inp = m.example_inputs(size)
        npi = {k: v.numpy() for k, v in inp.items()}
        row: dict = {"model": name, "size": size, "threads": threads}
        if do_b:
            row.update(_part_b_model(m, model, inp, npi, threads, repeat))
            print(
                f"    {name:10s} engine {row['engine_s']:7.3f} s | PyTorch float32 "
                f"{row['torch_float_s']:7.3f} s ({row['speedup_vs_float']:4.1f}x) | PyTorch binary emulation "
                f"{row['torch_emulation_s']:7.3f} s ({row['speedup_vs_emulation']:4.1f}x)"
            )
        if do_c:
            blob = bsp.to_bytes(model)
            ckpt = st_save({k: v.detach().contiguous() for k, v in m.state_dict().items()})
            with tempfile.TemporaryDirectory() as td:
                mp = Path(td) / "m.bsp"
                mp.write_bytes(blob)
                np.savez(Path(td) / "in.npz", **npi)
                rss_eng = _peak_rss_engine(mp, Path(td) / "in.npz", threads)
                rss_torch = _peak_rss_torch(name, size, threads)
            row.update(
                bsp_bytes=len(blob),
                float_checkpoint_bytes=len(ckpt),
                size_ratio=len(ckpt) / len(blob),
                engine_peak_rss_mib=rss_eng,
                torch_emulation_peak_rss_mib=rss_torch,
            )
            kib, ck = len(blob) / 1024, len(ckpt) / 1024
            print(
                f"    {'':10s} file {kib:8.1f} KiB vs float checkpoint {ck:8.1f} KiB "
                f"({ck / kib:4.1f}x smaller) | peak RSS engine {rss_eng:6.0f} MiB, "
                f"PyTorch emulation {rss_torch:6.0f} MiB"
            )
        rows.append(row)
    return rows


def _part_b_model(m, model, inp: dict, npi: dict, threads: int, repeat: int) -> dict:
    import torch

    from binsharp.deploy.runtime import Engine
    from binsharp.models.base import strip_quantizers

    fp = strip_quantizers(m).eval()
    eng = Engine(model, threads=threads)
    with torch.no_grad():
        t_fp = _timeit(lambda: fp(**inp), repeat)
        t_emu = _timeit(lambda: m(**inp), repeat)
    t_eng = _timeit(lambda: eng(**npi), repeat)
    return {
        "engine_s": t_eng,
        "torch_float_s": t_fp,
        "torch_emulation_s": t_emu,
        "speedup_vs_float": t_fp / t_eng,
        "speedup_vs_emulation": t_emu / t_eng,
    }


_HWM = """
def _hwm():
    # peak resident set of this process image (VmHWM; ru_maxrss would include the parent before exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
"""


def _run_rss(code: str) -> float:
    """Peak resident memory (MiB) of ``code`` run in a fresh interpreter (it prints ``_hwm()`` last)."""
    r = subprocess.run([sys.executable, "-c", _HWM + code], capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    return float(r.stdout.strip().splitlines()[-1])


def _peak_rss_engine(model: Path, inputs: Path, threads: int) -> float:
    return _run_rss(
        textwrap.dedent(f"""
        import numpy as np
        from binsharp.deploy.runtime import Engine
        inp = dict(np.load({str(inputs)!r}))
        Engine({str(model)!r}, threads={threads})(**inp)
        print(_hwm())
    """)
    )


def _peak_rss_torch(name: str, size: int, threads: int) -> float:
    return _run_rss(
        textwrap.dedent(f"""
        import torch
        from binsharp import models
        torch.set_num_threads({threads})
        m = models.create({name!r}, bands=8).eval()
        with torch.no_grad():
            m(**m.example_inputs({size}))
        print(_hwm())
    """)
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", default="abc", help="which parts to run: any of a, b, c (default abc)")
    ap.add_argument(
        "--models",
        default="bbcu,bisrnet,fabnet,reactnet,s2bnet,bnnpan",
        help="models for (b)/(c), comma separated (unregistered ones are skipped)",
    )
    ap.add_argument("--size", type=int, default=512, help="tile side for (b)/(c) (default 512)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for (b)/(c)")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per measurement (minimum reported)")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args(argv)

    # PyTorch first: its OpenMP runtime then keeps its own default wait policy (the engine's kernels set
    # OMP_WAIT_POLICY=PASSIVE for their runtime when it is not set)
    import torch  # noqa: F401

    from binsharp.deploy import have_kernels

    if not have_kernels():
        print("the compiled kernels are not built: pip install -e . (or python setup.py build_ext --inplace)")
        return 2
    info = machine_report()
    print("binsharp engine benchmark")
    print(f"  command : {' '.join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])}")
    print(
        f"  machine : {info['cpu']} ({info['machine']}, {info['cores']} cores), python {info['python']}, "
        f"numpy {info['numpy']}, torch {info['torch']}"
    )
    e = info["engine"]
    print(
        f"  CPU flags seen by the kernels: {', '.join(e['flags'])}; paths: {', '.join(e['paths'])}; "
        f"default path: {e['path']}; OpenMP threads: {e['openmp_threads']}"
    )
    print(f"  settings: part={args.part} size={args.size} threads={args.threads} repeat={args.repeat}")
    results: dict = {"machine": info, "settings": vars(args)}
    if "a" in args.part:
        results["a"] = part_a(args.repeat)
    if "b" in args.part or "c" in args.part:
        names = [n.strip() for n in args.models.split(",") if n.strip()]
        results["bc"] = part_bc(
            names, args.size, args.threads, max(1, min(args.repeat, 3)), "b" in args.part, "c" in args.part
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
