"""Size of the ``.bsp`` files per storage mode of their float tensors, and what the storage costs in quality.

For every binary network of the zoo (zoo weights) and every storage switch of ``binsharp export --storage``
(``fp32``, ``fp16``, ``int8``; :mod:`binsharp.deploy.bsp`), it prints:

* the ``.bsp`` size, its ratio to the network's float32 checkpoint (safetensors of the state dict, as
  ``benchmarks/bench_engine.py`` measures it) and to FusionNet's float32 checkpoint;
* the change of the engine's mean Q2n, SAM and ERGAS against the fp32 export on the ``wv3-longmont``
  validation split (64 x 64 patches, no border cut, as the training recipe validates: the split to choose
  a storage by) and on the reduced-resolution test split (128 x 128 tiles, the ``binsharp evaluate``
  settings), and the largest change of one image's Q2n.

Usage::

    python benchmarks/bench_bsp_storage.py
    python benchmarks/bench_bsp_storage.py --models s2bnet,bnnpan

Builds the dataset on first use. Engine: one thread, the compiled kernels.
"""

from __future__ import annotations

import argparse
import platform

import numpy as np

SPLITS = {"val": {"block": 32, "dim_cut": 0}, "test_rr": None}  # None: binsharp evaluate's settings


def _checkpoint_bytes(model) -> int:
    from safetensors.torch import save as st_save

    return len(st_save({k: v.detach().float().contiguous() for k, v in model.state_dict().items()}))


def main() -> None:
    from binsharp import models, zoo
    from binsharp.data import catalog
    from binsharp.data.io import read_h5, read_h5_attrs
    from binsharp.deploy import bsp
    from binsharp.deploy.export import lower_model
    from binsharp.deploy.runtime import Engine
    from binsharp.evaluation.evaluate import BLOCK, DIM_CUT
    from binsharp.metrics import BatchEvaluator

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="wv3-longmont")
    ap.add_argument("--models", default="", help="comma-separated (default: every binary zoo network)")
    args = ap.parse_args()
    entries = zoo.read_manifest()["checkpoints"][args.dataset]
    names = (
        args.models.split(",")
        if args.models
        else sorted(m for m, e in entries.items() if e["kind"] == "binary")
    )
    data = {}
    for split, settings in SPLITS.items():
        path = catalog.dataset_path(args.dataset, split, progress=False)
        attrs = read_h5_attrs(path)
        bits, ratio = int(attrs["bits"]), int(attrs["ratio"])
        arrays = read_h5(path, dtype=np.float32)
        dn = np.float32(2**bits - 1)
        inputs = {k: arrays[k] / dn for k in ("ms", "lms", "pan")}
        data[split] = (
            inputs,
            arrays["gt"],
            dict(ratio=ratio, bits=bits, **(settings or {"block": BLOCK, "dim_cut": DIM_CUT})),
        )
    fusionnet = _checkpoint_bytes(models.create("fusionnet", pretrained=args.dataset))
    print(
        f"# bench_bsp_storage: dataset {args.dataset}, zoo weights, splits "
        + ", ".join(f"{s} ({d[1].shape[0]} images {d[1].shape[-1]} px, {d[2]})" for s, d in data.items())
        + f"; engine 1 thread; {platform.machine()}, numpy {np.__version__}"
    )
    print(f"# FusionNet float32 checkpoint: {fusionnet / 1024:.1f} KiB")
    print(
        "| model | storage | .bsp KiB | vs own fp32 checkpoint | vs FusionNet fp32 "
        "| val dQ2n / dSAM / dERGAS "
        "| test dQ2n / dSAM / dERGAS | max image dQ2n val / test |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name in names:
        m = models.create(name, pretrained=args.dataset)
        ckpt = _checkpoint_bytes(m)
        lowered = lower_model(m)
        ref: dict[str, dict] = {}
        for storage in ("fp32", "fp16", "int8"):
            blob = bsp.to_bytes(lowered, storage)
            eng = Engine(bsp.from_bytes(blob), threads=1)
            cells, worst = [], []
            for split, (inputs, gt, settings) in data.items():
                out = eng(**{k: v for k, v in inputs.items() if k in m.inputs})
                ev = BatchEvaluator("rr", **settings)
                for i in range(out.shape[0]):
                    ev.add(out[i].astype(np.float64) * (2 ** settings["bits"] - 1), gt[i])
                res = ev.result()
                ref.setdefault(split, res)
                d = {k: res["mean"][k] - ref[split]["mean"][k] for k in ("q2n", "sam", "ergas")}
                cells.append(f"{d['q2n']:+.1e} / {d['sam']:+.1e} / {d['ergas']:+.1e}")
                per = [
                    abs(a["q2n"] - b["q2n"])
                    for a, b in zip(res["per_image"], ref[split]["per_image"], strict=True)
                ]
                worst.append(f"{max(per):.1e}")
            print(
                f"| {name} | {storage} | {len(blob) / 1024:.1f} | {ckpt / len(blob):.1f}x | "
                f"{fusionnet / len(blob):.2f}x | {cells[0]} | {cells[1]} | {' / '.join(worst)} |",
                flush=True,
            )
    print("(d = engine with this storage - engine with fp32 storage, mean over the split; SAM in degrees)")


if __name__ == "__main__":
    main()
