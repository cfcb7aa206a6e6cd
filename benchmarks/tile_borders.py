"""Tiled against untiled fusion on a real scene, per scene-border rule (``binsharp fuse --border``).

A ``SIZE x SIZE`` PAN window (default 256, top-left corner of the scene) and its MS window are cut from the
WorldView-3 Longmont scene of ``dgsamples`` and fused with ``binsharp fuse`` twice per border rule: in one
piece (``--tile 0``) and in tiles (``--tile TILE``, default 128). The script prints, per rule, the largest
difference between the two results, the share of pixels (band values) more than 1 DN apart, and the largest
difference at least ``BAND`` PAN pixels away from the scene border.

    python benchmarks/tile_borders.py                                  # bbcu, model-zoo weights
    python benchmarks/tile_borders.py --source --method exp --sensor WV3
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from binsharp.cli import main as cli
from binsharp.data.catalog import source_files


def crop(src: Path, dst: Path, size: int) -> Path:
    """Write the top-left ``size x size`` window of ``src`` to ``dst`` with its georeferencing."""
    with rasterio.open(src) as ds:
        window = Window(0, 0, size, size)
        profile = {**ds.profile, "width": size, "height": size, "transform": ds.window_transform(window)}
        profile.pop("blockxsize", None), profile.pop("blockysize", None), profile.pop("tiled", None)
        with rasterio.open(dst, "w", **profile) as out:
            out.write(ds.read(window=window))
    return dst


def run(args: argparse.Namespace) -> None:
    pan_src, ms_src = source_files("wv3-longmont")
    with tempfile.TemporaryDirectory(prefix="binsharp-borders-") as tmp:
        t = Path(tmp)
        pan, ms = crop(pan_src, t / "pan.tif", args.size), crop(ms_src, t / "ms.tif", args.size // 4)
        common = ["fuse", *args.source, "--pan", str(pan), "--ms", str(ms)]
        print(f"scene: {pan_src.name} top-left {args.size} x {args.size} PAN; fuser: {' '.join(args.source)}")
        print(f"tiles: --tile {args.tile} against --tile 0; interior: >= {args.band} PAN px from the border")
        print(f"{'border':<9} {'max |diff| DN':>14} {'> 1 DN':>8} {'interior max DN':>16}")
        for border in ("circular", "mirror"):
            results = []
            for tile in (0, args.tile):
                out = t / f"{border}-{tile}.tif"
                code = cli([*common, "-o", str(out), "--tile", str(tile), "--border", border])
                if code:
                    raise SystemExit(code)
                with rasterio.open(out) as d:
                    results.append(d.read().astype(np.float64))
            diff = np.abs(results[1] - results[0])
            b = args.band
            print(
                f"{border:<9} {diff.max():>14.3g} {100 * (diff > 1).mean():>7.2f}% "
                f"{diff[:, b:-b, b:-b].max():>16.3g}"
            )


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=256, help="PAN window size (multiple of 4)")
    p.add_argument("--tile", type=int, default=128, help="tile size of the tiled run")
    p.add_argument("--band", type=int, default=32, help="width of the border band left out of 'interior'")
    p.add_argument(
        "--source",
        nargs=argparse.REMAINDER,
        default=["--model", "bbcu", "--pretrained", "wv3-longmont"],
        help="fuser options passed to binsharp fuse (last on the command line)",
    )
    run(p.parse_args())
