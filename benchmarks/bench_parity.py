"""Parity of the packed engine with PyTorch, and how sensitive each binary network is, on real WV3 tiles.

For every binary network of the zoo (zoo weights, ``wv3-longmont``) and every chosen reduced-resolution
test tile (128 x 128 PAN), it prints the worst case over the tiles of:

* engine vs PyTorch float32: max |difference| (DN) and the fraction of values more than 1 DN apart;
* decision-forced engine vs PyTorch (PyTorch's binarization decisions fed to the engine), max DN;
* first-generation sign flips (decisions that differ where the layer inputs agree up to rounding): their
  number and their largest |pre-activation| relative to the layer's largest (the tie band is 2^-20);
* sensitivity of PyTorch itself: output change when the inputs move by one float32 ulp (``nextafter``
  towards +inf), and float32 against float64 (the model and inputs in double), max DN;
* |Q2n|, |SAM|, |ERGAS| differences engine - PyTorch float32 and PyTorch float64 - float32.

Usage::

    python benchmarks/bench_parity.py                        # every binary zoo network, all 12 test tiles
    python benchmarks/bench_parity.py --models s2bnet,bbcu --tiles 0,1

Builds the dataset on first use (``binsharp data build wv3-longmont``). One thread.
"""

from __future__ import annotations

import argparse
import platform

import numpy as np
import torch


def main() -> None:
    from binsharp import models, zoo
    from binsharp.data import catalog
    from binsharp.data.io import read_h5, read_h5_attrs
    from binsharp.deploy.export import lower_model
    from binsharp.deploy.parity import INDEXES, compare
    from binsharp.deploy.runtime import Engine
    from binsharp.metrics import reduced_resolution

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="wv3-longmont")
    ap.add_argument("--models", default="", help="comma-separated (default: every binary zoo network)")
    ap.add_argument("--tiles", default="all", help="comma-separated test tile indexes, or 'all'")
    args = ap.parse_args()
    torch.set_num_threads(1)
    zoo_models = zoo.read_manifest()["checkpoints"][args.dataset]
    names = (
        args.models.split(",")
        if args.models
        else sorted(m for m, e in zoo_models.items() if e["kind"] == "binary")
    )
    path = catalog.dataset_path(args.dataset, "test_rr", progress=False)
    attrs = read_h5_attrs(path)
    bits, ratio = int(attrs["bits"]), int(attrs["ratio"])
    dn = float(2**bits - 1)
    data = read_h5(path, dtype=np.float32)
    tiles = range(data["pan"].shape[0]) if args.tiles == "all" else [int(t) for t in args.tiles.split(",")]
    print(
        f"# bench_parity: dataset {args.dataset} test_rr tiles {list(tiles)} "
        f"({data['pan'].shape[-2]} x {data['pan'].shape[-1]} PAN), zoo weights, 1 thread, "
        f"{platform.machine()}, torch {torch.__version__}, numpy {np.__version__}"
    )
    print(
        "| model | engine max DN | > 1 DN | forced max DN | 1st-gen flips | max flip |x|/scale "
        "| 1-ulp input max DN | fp32 vs fp64 max DN | engine dQ2n / dSAM / dERGAS "
        "| fp64 dQ2n / dSAM / dERGAS |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in names:
        m = models.create(name, pretrained=args.dataset)
        m64 = models.create(name, pretrained=args.dataset).double()
        eng = Engine(lower_model(m), threads=1)
        w: dict[str, float] = {}

        def worst(key: str, v: float, w: dict[str, float] = w) -> None:
            w[key] = max(w.get(key, 0.0), v)

        for t in tiles:
            x = {k: data[k][t : t + 1] / np.float32(dn) for k in m.inputs}
            gt = data["gt"][t].astype(np.float64)
            p = compare(m, eng, x, gt, bits=bits, ratio=ratio)
            with torch.no_grad():
                ref = m(**{k: torch.from_numpy(v) for k, v in x.items()}).numpy()
                ulp = {k: torch.from_numpy(np.nextafter(v, np.float32(np.inf))) for k, v in x.items()}
                p_out = m(**ulp).numpy()
                out64 = m64(**{k: torch.from_numpy(v.astype(np.float64)) for k, v in x.items()}).numpy()
            q64 = reduced_resolution(out64[0] * dn, gt, ratio=ratio, bits=bits)
            worst("max", p.max_diff)
            worst("over", p.frac_over_1dn)
            worst("forced", p.forced_max_diff)
            worst("flips", sum(f.count for f in p.flips))
            worst("band", max((f.max_abs_pre / f.scale for f in p.flips), default=0.0))
            worst("ulp", float(np.abs(p_out - ref).max() * dn))
            worst("fp64", float(np.abs(out64 - ref).max() * dn))
            for k in INDEXES:
                worst("e" + k, abs(p.engine_indexes[k] - p.torch_indexes[k]))
                worst("d" + k, abs(float(q64[k]) - p.torch_indexes[k]))
        print(
            f"| {name} | {w['max']:.3g} | {100 * w['over']:.2f} % | {w['forced']:.2g} | {int(w['flips'])} "
            f"| {w['band']:.2g} | {w['ulp']:.3g} | {w['fp64']:.3g} "
            f"| {w['eq2n']:.1e} / {w['esam']:.1e} / {w['eergas']:.1e} "
            f"| {w['dq2n']:.1e} / {w['dsam']:.1e} / {w['dergas']:.1e} |",
            flush=True,
        )
    print("(worst case over the tiles; flips: most first-generation flips in one tile; SAM in degrees)")


if __name__ == "__main__":
    main()
