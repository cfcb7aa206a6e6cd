"""Time the quality-index suites on one CPU core.

Reduced resolution: 20 images of 8 x 256 x 256 (DN, 11 bits), all indexes of
``binsharp.metrics.reduced_resolution`` (Q2n, Q_avg, SAM, ERGAS, SCC, PSNR, SSIM), toolbox settings
(ratio 4, block 32, border cut 21). Full resolution: 20 images of 8 x 512 x 512 with MS 8 x 128 x 128 and
PAN 1 x 512 x 512, ``binsharp.metrics.full_resolution`` (HQNR: D_lambda^K, D_s), ``ms_up`` computed by
the 23-tap interpolator inside the timed call. Targets: under 3 s and under 10 s in total.

Usage: ``python benchmarks/bench_metrics.py [--images 20] [--repeat 1]``
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS", "BLIS_NUM_THREADS"):  # fmt: skip
    os.environ[_var] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

from binsharp.metrics import full_resolution, reduced_resolution  # noqa: E402
from binsharp.protocol import decimate, imresize, mtf_filter  # noqa: E402
from binsharp.sensors import get_sensor  # noqa: E402


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _loadavg() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "n/a"


def _texture(rng: np.random.Generator, c: int, h: int, w: int) -> np.ndarray:
    """Spatially correlated, band-correlated DN texture in 0..2047 (11 bits)."""
    f = np.fft.rfftfreq(w)[None, :] ** 2 + np.fft.fftfreq(h)[:, None] ** 2
    shape = 1.0 / np.maximum(f, 1.0 / (h * w)) ** 0.9
    common = np.fft.irfft2(np.fft.rfft2(rng.normal(size=(h, w))) * np.sqrt(shape), s=(h, w))
    common = (common - common.mean()) / common.std()
    gains = rng.uniform(120, 260, size=(c, 1, 1))
    offsets = rng.uniform(250, 700, size=(c, 1, 1))
    img = offsets + gains * (common[None] + 0.25 * rng.normal(size=(c, h, w)))
    return np.clip(np.round(img), 0, 2047)


def make_rr(rng: np.random.Generator, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for _ in range(n):
        gt = _texture(rng, 8, 256, 256)
        fused = gt + rng.normal(0, 25, size=gt.shape)
        out.append((fused, gt))
    return out


def make_fr(rng: np.random.Generator, n: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    wv3 = get_sensor("WV3")
    out = []
    for _ in range(n):
        scene = _texture(rng, 8, 512, 512)
        pan = scene.mean(axis=0, keepdims=True)
        ms_lr = decimate(mtf_filter(scene, wv3.gnyq_ms), 4)
        fused = scene + rng.normal(0, 15, size=scene.shape)
        out.append((fused, ms_lr, pan))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=1, help="repeat each suite and keep the best time")
    args = ap.parse_args()

    print("binsharp metrics benchmark")
    print(f"  cpu: {cpu_model()} (os.cpu_count() = {os.cpu_count()})")
    print(f"  threads: OMP/MKL/OPENBLAS=1, torch {torch.get_num_threads()}; CPU time = process_time()")
    print(f"  python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}")
    print(f"  reduced resolution: {args.images} images 8x256x256, ratio 4, bits 11, block 32, dim_cut 21")
    print(f"  full resolution:    {args.images} images 8x512x512 (MS 8x128x128, PAN 1x512x512), WV3, HQNR")

    rng = np.random.default_rng(0)
    rr = make_rr(rng, args.images)
    fr = make_fr(rng, args.images)
    imresize(fr[0][2], 0.25)  # warm the cached resize weights outside the timing as a user session would

    best_rr = best_fr = cpu_rr = cpu_fr = float("inf")
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        res_rr = [reduced_resolution(f, g) for f, g in rr]
        best_rr = min(best_rr, time.perf_counter() - t0)
        cpu_rr = min(cpu_rr, time.process_time() - c0)
        t0, c0 = time.perf_counter(), time.process_time()
        res_fr = [full_resolution(f, lr, p, sensor="WV3") for f, lr, p in fr]
        best_fr = min(best_fr, time.perf_counter() - t0)
        cpu_fr = min(cpu_fr, time.process_time() - c0)

    q8 = np.mean([r["q2n"] for r in res_rr])
    hq = np.mean([r["hqnr"] for r in res_fr])
    print(f"  load average before timing: {_loadavg()} (wall time exceeds CPU time on a busy machine)")
    print(f"reduced-resolution suite: {best_rr:.2f} s total wall, {cpu_rr:.2f} s CPU "
          f"({cpu_rr / args.images * 1e3:.0f} ms CPU/image; target < 3 s) [mean Q8 {q8:.4f}]")  # fmt: skip
    print(f"full-resolution suite:    {best_fr:.2f} s total wall, {cpu_fr:.2f} s CPU "
          f"({cpu_fr / args.images * 1e3:.0f} ms CPU/image; target < 10 s) [mean HQNR {hq:.4f}]")  # fmt: skip


if __name__ == "__main__":
    main()
