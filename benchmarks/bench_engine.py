"""Benchmark of the bit-packed engine (binsharp.deploy) on this CPU, with the zoo weights, in one run.

Printed, with the command, the machine, its load, the CPU flags and the kernel paths:

(a) ceiling: a bare XOR + popcount loop over L1-resident data (binary multiply-accumulates per second) on each
    vector path of the kernels, and one binary 3x3 convolution 32 -> 32 on 512 x 512 (the layer of the plain
    backbones; with alpha and packed output only, and with the fused epilogue: alpha, RPReLU, residual,
    float and packed outputs), as a share of that ceiling (median of the rounds' ratios);
(b) end to end, per model, a 512 x 512 PAN tile (8 bands), for each instruction-set setting (``--isa``; each
    in a fresh process): the engine on 1 and 2 threads, FusionNet in PyTorch float32, FusionNet quantized to
    int8 (PyTorch's FX x86 int8 path, oneDNN/fbgemm kernels), the model's own PyTorch emulation; all on one
    thread unless stated, measured interleaved round by round (times: the minimum over the rounds; ratios:
    the median of the rounds' ratios, each round's times taken seconds apart), and the
    achieved throughput of the model's binary convolutions (their binary MACs / their time in a profiled
    call) against the ceiling of the path measured in the same process;
(c) the ``.bsp`` size against the float32 checkpoint, and the peak resident memory of one inference (engine in
    a fresh process without torch, PyTorch emulation in a fresh process).

Allocator (``--malloc``, (b) only): ``keep`` (default) runs (b) with glibc's ``MALLOC_MMAP_THRESHOLD_`` and
``MALLOC_TRIM_THRESHOLD_`` raised, so that freed memory is kept for reuse, as a tuned PyTorch deployment gets
it from jemalloc or tcmalloc: with glibc's defaults PyTorch maps FusionNet's large float32 tensors afresh on
every call (about 250 000 page faults per 512 x 512 call, roughly half of its time, and how much of it
depends on what the process freed before), while the engine reuses its own arrays. ``default`` keeps the C
library's defaults.

``--isa avx2`` runs (b) with the engine's kernels on their AVX2 path and PyTorch and numpy restricted to AVX2
(``ATEN_CPU_CAPABILITY=avx2``, ``ONEDNN_MAX_CPU_ISA=AVX2``, ``NPY_DISABLE_CPU_FEATURES``): a machine without
AVX-512 as far as these libraries are concerned (the engine's float convolution follows the kernel path;
its small elementwise kernels still use the CPU's best instructions). ``native`` lets every library use
what the CPU has.

Usage::

    python benchmarks/bench_engine.py                        # defaults: about 5 minutes on 2 idle cores
    python benchmarks/bench_engine.py --models all --rounds 5 --profile
    python benchmarks/bench_engine.py --part b --isa avx2 --models bbcu,bnnpan

Inputs are random (timings depend on shapes only); weights are the zoo's (``wv3-longmont``).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

from binsharp.evaluation.bench import MALLOC_ENV

ZOO = "wv3-longmont"
DEFAULT_MODELS = "bbcu,reactnet,fabnet,bnnpan,s2bnet,bisrnet"
#: environment of an AVX2-only run (read by PyTorch, oneDNN, numpy and the engine when they load)
AVX2_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "NPY_DISABLE_CPU_FEATURES": "AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR",
    "BINSHARP_KERNEL_PATH": "avx2",
}
#: environment of ``--malloc keep``: glibc keeps freed memory (no fresh pages for every large tensor)
KEEP_MALLOC_ENV = dict.fromkeys(MALLOC_ENV, str(1 << 32))


def _time_into(fn, seconds: list[float]) -> None:
    """Append the wall time of one call of ``fn``."""
    t = time.perf_counter()
    fn()
    seconds.append(time.perf_counter() - t)


# ------------------------------------------------------------------------------------------- (a) ceiling
def part_a(repeat: int) -> list[dict]:
    from binsharp.deploy import kernels as K

    rng = np.random.default_rng(0)
    c, hw = 32, 512
    x = rng.standard_normal((1, c, hw, hw)).astype(np.float32)
    w = rng.standard_normal((c, c, 3, 3)).astype(np.float32)
    alpha = np.abs(w).mean(axis=(1, 2, 3)).astype(np.float32)
    wb = K.pack_weights(w)
    macs = c * c * 9 * hw * hw
    buf = np.empty_like(x)
    pbuf = K.Packed.empty(1, c, hw, hw, halo=1)
    paths = [p for p in ("avx2", "avx512") if p in K.available_paths()] or K.available_paths()[-1:]
    print(f"(a) XOR + popcount ceiling and one binary 3x3 conv {c}->{c} on {hw}x{hw}, 1 thread")
    rows = []
    for path in paths:
        pk = K.pack_activations(x, halo=1, path=path, threads=1)

        layer = functools.partial(
            K.binary_conv2d,
            pk,
            wb,
            out_channels=c,
            kernel_size=3,
            padding=1,
            alpha=alpha,
            pack_out={"halo": 1, "out": pbuf},
            path=path,
            threads=1,
        )
        conv_packed = functools.partial(layer, float_out=False)
        conv_fused = functools.partial(layer, act=(alpha, alpha, alpha), residual=x, out_buffer=buf)

        ceil, t_pk, t_fused = [], [], []
        conv_packed(), conv_fused()
        for _ in range(repeat):  # interleaved
            ceil.append(K.xor_popcount_rate(path, seconds=0.1))
            _time_into(conv_packed, t_pk)
            _time_into(conv_fused, t_fused)
        ce = np.array(ceil)
        row = {
            "path": path,
            "ceiling_gmacs": float(np.median(ce)) / 1e9,
            "conv_packed_ms": min(t_pk) * 1e3,
            "conv_fused_ms": min(t_fused) * 1e3,
            "conv_packed_of_ceiling": float(np.median(macs / np.array(t_pk) / ce)),
            "conv_fused_of_ceiling": float(np.median(macs / np.array(t_fused) / ce)),
        }
        rows.append(row)
        print(
            f"    {path:7s} ceiling {row['ceiling_gmacs']:6.1f} G binary MAC/s | conv with packed output "
            f"{row['conv_packed_ms']:6.2f} ms ({100 * row['conv_packed_of_ceiling']:3.0f} % of ceiling) | "
            f"with float, residual and packed outputs {row['conv_fused_ms']:6.2f} ms "
            f"({100 * row['conv_fused_of_ceiling']:3.0f} %)"
        )
    return rows


# ------------------------------------------------------------------------------------- (b) end to end
def _fusionnet_int8(fp):
    """FusionNet with its convolutions quantized to int8 by PyTorch's FX x86 path (calibrated on the
    example input); the input difference and the residual add stay in float32."""
    import warnings

    import torch
    from torch import nn
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    class Body(nn.Module):
        def __init__(self, m: nn.Module) -> None:
            super().__init__()
            self.conv1, self.relu, self.blocks, self.conv3 = m.conv1, m.relu, m.blocks, m.conv3

        def forward(self, x):
            return self.conv3(self.blocks(self.relu(self.conv1(x))))

    def diff(lms, pan):
        return pan.expand_as(lms) - lms

    torch.backends.quantized.engine = "x86"
    calib = fp.example_inputs(64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the torch.ao deprecation notice
        prep = prepare_fx(Body(fp), get_default_qconfig_mapping("x86"), example_inputs=(diff(**_lp(calib)),))
        with torch.no_grad():
            prep(diff(**_lp(calib)))
        q = convert_fx(prep)

    def run(lms, pan, ms=None):
        return lms + q(diff(lms, pan))

    return run


def _lp(d: dict) -> dict:
    return {"lms": d["lms"], "pan": d["pan"]}


def _bconv_macs(engine, inputs: dict) -> int:
    """Binary multiply-accumulates of the binary convolutions of one call."""
    from binsharp.deploy import kernels as K

    macs = [0]

    def count(at, packed):
        n, c, h, w = packed.shape
        k, s, p = int(at["k"]), int(at.get("stride", 1)), int(at.get("padding", 0))
        ho, wo = K.conv_output_size(h, k, s, p), K.conv_output_size(w, k, s, p)
        macs[0] += n * int(at["cout"]) * (c // int(at.get("groups", 1))) * k * k * ho * wo

    engine.on_binary_input = count
    engine(**inputs)
    engine.on_binary_input = None
    return macs[0]


def _profiled_call(engine, inputs: dict, bconv_s: list[float]) -> None:
    """One call of a profiling engine; appends the time of its binary convolutions (packing excluded)."""
    engine.profile.clear()
    engine._profile_calls = 0
    engine(**inputs)
    bconv_s.append(next((r["ms"] for r in engine.profile_table() if r["op"] == "bconv"), 0.0) / 1e3)


def part_b(names: list[str], size: int, rounds: int, profile: bool) -> dict:
    """Runs in the process of one instruction-set setting."""
    import torch

    from binsharp import models
    from binsharp.deploy import kernels as K
    from binsharp.deploy.export import lower_model
    from binsharp.deploy.runtime import Engine

    torch.set_num_threads(1)
    path = K.resolve_path()
    fn = models.create("fusionnet", bands=8, pretrained=ZOO).eval()
    fn_in = fn.example_inputs(size)
    fn8 = _fusionnet_int8(fn)
    print(
        f"(b) end to end, {size}x{size} PAN, zoo weights; kernel path {path}, PyTorch CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}; {rounds} interleaved rounds: times are minima, ratios "
        "medians of the rounds' ratios (the ceiling: XOR + popcount of this path, measured in each round)"
    )
    print(
        f"    {'model':9s} {'engine':>8s} {'2 thr':>8s} {'scale':>6s} | {'fp32':>7s} {'int8':>7s} "
        f"{'emul.':>8s} | "
        f"{'vs fp32':>7s} {'vs int8':>7s} {'vs emul':>7s} | bconv G/s (% ceiling, share of time)"
    )
    rows = []
    for name in names:
        m = models.create(name, bands=8, pretrained=ZOO).eval()
        inp = m.example_inputs(size)
        npi = {k: v.numpy() for k, v in inp.items()}
        model = lower_model(m)
        e1, e2 = Engine(model, threads=1, profile=True), Engine(model, threads=2)
        npi = {k: npi[k] for k in e1.inputs}
        macs = _bconv_macs(Engine(model, threads=1), npi)
        t_bconv: list[float] = []
        timed = {
            "engine": lambda e1=e1, npi=npi, tb=t_bconv: _profiled_call(e1, npi, tb),
            "engine_2t": lambda e2=e2, npi=npi: e2(**npi),
            "fusionnet_fp32": lambda: fn(**fn_in),
            "fusionnet_int8": lambda: fn8(**fn_in),
            "emulation": lambda m=m, inp=inp: m(**inp),
        }
        ts: dict[str, list[float]] = {k: [] for k in timed}
        ceil: list[float] = []
        with torch.no_grad():
            for f in timed.values():  # warm-up
                f()
            t_bconv.clear()
            for _ in range(rounds):
                for k, f in timed.items():
                    _time_into(f, ts[k])
                ceil.append(K.xor_popcount_rate(path, seconds=0.1))
        r = {k: np.array(v) for k, v in ts.items()}  # per round; ratios are taken round by round (median)
        eng, rate = r["engine"], macs / np.array(t_bconv)
        row = {
            "model": name,
            "path": path,
            **{f"{k}_ms": float(v.min()) * 1e3 for k, v in r.items()},
            "speed_vs_fp32": float(np.median(r["fusionnet_fp32"] / eng)),
            "speed_vs_int8": float(np.median(r["fusionnet_int8"] / eng)),
            "speed_vs_emulation": float(np.median(r["emulation"] / eng)),
            "two_thread_scaling": float(np.median(eng / r["engine_2t"])),
            "bconv_gmacs": float(rate.max()) / 1e9,
            "bconv_of_ceiling": float(np.median(rate / np.array(ceil))),
            "bconv_share": float(np.median(np.array(t_bconv) / eng)),
            "ceiling_gmacs": float(np.median(ceil)) / 1e9,
        }
        rows.append(row)
        print(
            f"    {name:9s} {row['engine_ms']:6.0f}ms {row['engine_2t_ms']:6.0f}ms "
            f"{row['two_thread_scaling']:5.2f}x | {row['fusionnet_fp32_ms']:5.0f}ms "
            f"{row['fusionnet_int8_ms']:5.0f}ms {row['emulation_ms']:6.0f}ms | "
            f"{row['speed_vs_fp32']:6.2f}x {row['speed_vs_int8']:6.2f}x {row['speed_vs_emulation']:6.2f}x | "
            f"{row['bconv_gmacs']:6.1f} ({100 * row['bconv_of_ceiling']:3.0f} %, "
            f"{100 * row['bconv_share']:3.0f} %)"
        )
        if profile:
            pe = Engine(model, threads=1, profile=True)
            pe(**npi)
            pe.profile, pe._profile_calls = {}, 0
            pe(**npi)
            print(textwrap.indent(pe.format_profile(), "        "))
    return {"path": path, "models": rows}


# ---------------------------------------------------------------------------------- (c) size and memory
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


def part_c(names: list[str], size: int) -> list[dict]:
    from binsharp import models, zoo
    from binsharp.deploy import bsp
    from binsharp.deploy.export import lower_model

    print(f"(c) file size and peak resident memory of one {size}x{size} inference, 1 thread")
    rows = []
    for name in names:
        m = models.create(name, bands=8, pretrained=ZOO).eval()
        blob = bsp.to_bytes(lower_model(m))
        ckpt = zoo.checkpoint_path(name, ZOO).stat().st_size
        with tempfile.TemporaryDirectory() as td:
            mp, ip = Path(td) / "m.bsp", Path(td) / "in.npz"
            mp.write_bytes(blob)
            np.savez(ip, **{k: v.numpy() for k, v in m.example_inputs(size).items()})
            rss_eng = _run_rss(
                textwrap.dedent(f"""
                import numpy as np
                from binsharp.deploy.runtime import Engine
                e = Engine({str(mp)!r}, threads=1)
                inp = dict(np.load({str(ip)!r}))
                e(**{{k: inp[k] for k in e.inputs}})
                print(_hwm())
            """)
            )
        rss_torch = _run_rss(
            textwrap.dedent(f"""
            import torch
            from binsharp import models
            torch.set_num_threads(1)
            m = models.create({name!r}, bands=8, pretrained={ZOO!r}).eval()
            with torch.no_grad():
                m(**m.example_inputs({size}))
            print(_hwm())
        """)
        )
        row = {
            "model": name,
            "bsp_bytes": len(blob),
            "checkpoint_bytes": ckpt,
            "smaller": ckpt / len(blob),
            "engine_peak_rss_mib": rss_eng,
            "torch_peak_rss_mib": rss_torch,
        }
        rows.append(row)
        print(
            f"    {name:9s} .bsp {len(blob) / 1024:7.1f} KiB, float32 checkpoint {ckpt / 1024:7.1f} KiB "
            f"({row['smaller']:4.1f}x smaller) | peak RSS engine {rss_eng:5.0f} MiB, PyTorch emulation "
            f"{rss_torch:5.0f} MiB"
        )
    return rows


# ----------------------------------------------------------------------------------------------- main
def _child(args: argparse.Namespace, isa: str, names: list[str]) -> dict:
    """Part (b) in a fresh process with the environment of ``isa``."""
    env = dict(os.environ)
    if isa == "avx2":
        env.update(AVX2_ENV)
    if args.malloc == "keep":
        env.update(KEEP_MALLOC_ENV)
    with tempfile.TemporaryDirectory() as td:
        out = Path(td) / "b.json"
        cmd = [sys.executable, __file__, "--_child", str(out), "--models", ",".join(names)]
        cmd += ["--size", str(args.size), "--rounds", str(args.rounds)] + (
            ["--profile"] if args.profile else []
        )
        subprocess.run(cmd, env=env, check=True)
        return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", default="abc", help="parts to run: any of a, b, c (default abc)")
    ap.add_argument("--models", default=DEFAULT_MODELS, help="zoo models, comma separated, or 'all'")
    ap.add_argument("--isa", default="native,avx2", help="settings of (b): native, avx2 (default both)")
    ap.add_argument("--size", type=int, default=512, help="PAN side (default 512)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved timing rounds (default 2)")
    ap.add_argument("--profile", action="store_true", help="print each model's per-op profile in (b)")
    ap.add_argument(
        "--malloc",
        choices=("keep", "default"),
        default="keep",
        help="allocator setting of (b): keep freed memory for reuse (default) or glibc's defaults",
    )
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    # PyTorch first: its OpenMP runtime then keeps its own default wait policy (the engine's kernels set
    # OMP_WAIT_POLICY=PASSIVE for their runtime when it is not set)
    import torch  # noqa: F401

    from binsharp import zoo
    from binsharp.deploy import cpu_features, have_kernels

    names = [n.strip() for n in args.models.split(",") if n.strip()]
    if names == ["all"]:
        manifest = zoo.read_manifest()["checkpoints"][ZOO]
        names = sorted(n for n, e in manifest.items() if e.get("kind") == "binary")
    if args._child:
        Path(args._child).write_text(json.dumps(part_b(names, args.size, args.rounds, args.profile)))
        return 0
    if not have_kernels():
        print("the compiled kernels are not built: pip install -e . (or python setup.py build_ext --inplace)")
        return 2
    from binsharp.evaluation.bench import machine_info

    info, feats = machine_info(), cpu_features()
    t0 = time.perf_counter()
    print("binsharp engine benchmark")
    print(f"  command : {' '.join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])}")
    print(
        f"  machine : {info.get('cpu', '?')} ({info['machine']}, {info['cpu_count']} cores), python "
        f"{info['python']}, numpy {info['numpy']}, torch {info.get('torch')}"
    )
    print(f"  load    : {' '.join(f'{v:.2f}' for v in os.getloadavg())} (1, 5, 15 min averages, at start)")
    print(
        f"  CPU flags seen by the kernels: {', '.join(feats['flags'])}; paths: {', '.join(feats['paths'])}; "
        f"default path: {feats['path']}; OpenMP threads: {feats['openmp_threads']}"
    )
    print(
        f"  settings: part={args.part} models={','.join(names)} isa={args.isa} size={args.size} "
        f"rounds={args.rounds} malloc={args.malloc}"
    )
    if args.malloc == "keep":
        print(f"  allocator of (b): {' '.join(f'{k}={v}' for k, v in KEEP_MALLOC_ENV.items())}")
    results: dict = {"machine": info, "engine": feats, "settings": vars(args)}
    if "a" in args.part:
        results["a"] = part_a(max(5, args.rounds))
    if "b" in args.part:
        results["b"] = {}
        for isa in (s.strip() for s in args.isa.split(",") if s.strip()):
            if isa == "avx2" and "avx2" not in feats["paths"]:
                print("(b) avx2: not available on this CPU, skipped")
                continue
            print(f"--- isa setting: {isa}")
            sys.stdout.flush()
            results["b"][isa] = _child(args, isa, names)
    if "c" in args.part:
        results["c"] = part_c(names, args.size)
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"  load    : {load} (at end); {time.perf_counter() - t0:.0f} s in all")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
