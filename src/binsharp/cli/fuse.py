"""``binsharp fuse``: pan-sharpen a PAN/MS GeoTIFF pair into a georeferenced GeoTIFF, tile by tile.

Example::

    binsharp fuse --method mtf-glp-hpm --sensor WV3 --pan PAN.tif --ms MS.tif -o OUT.tif

The output has the PAN grid (size, CRS, transform) and the MS bands, in DN (float32 unless ``--dtype``;
an integer type refuses values outside the sensor's range unless ``--clip``). Large scenes are processed in
tiles of ``--tile`` PAN pixels with a halo of context, so memory stays bounded; the scene is mirrored at its
borders (``--border circular``: the toolbox's wrap-around), so a tiled result equals the untiled one for
local fusers; methods with global statistics estimate them per tile (``--tile 0``: one piece).
"""

from __future__ import annotations

import argparse

from binsharp.cli.fusers import add_fuser_arguments, resolve_fuser, selected_source, sensor_from_args
from binsharp.fileio import check_output_path
from binsharp.inference.tiling import BORDERS, OUTPUT_DTYPES, fuse_geotiff, open_raster
from binsharp.sensors import check_ratio


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``fuse`` subcommand."""
    p = subparsers.add_parser(
        "fuse",
        help="pan-sharpen a PAN/MS GeoTIFF pair (tiled, georeferenced)",
        description="Pan-sharpen a PAN GeoTIFF and an MS GeoTIFF into a GeoTIFF on the PAN grid, in DN. "
        "The scene is processed in tiles of --tile PAN pixels, each fused with --halo pixels of context; "
        "methods with global statistics (GS, GSA, BT-H, BDSD-PC, MTF-GLP-HPM/FS, AWLP) estimate them "
        "per tile, and --tile 0 fuses the scene in one piece (the toolbox result, at the cost of memory).",
    )
    add_fuser_arguments(p)
    p.add_argument("--pan", required=True, metavar="PAN.tif", help="single-band PAN GeoTIFF (H x W)")
    p.add_argument("--ms", required=True, metavar="MS.tif", help="multispectral GeoTIFF (H/ratio x W/ratio)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.tif", help="output GeoTIFF")
    p.add_argument(
        "--sensor", default=None, help="sensor (WV3, WV2, QB, GF2, ... or custom); needed by --method"
    )
    p.add_argument("--bits", type=int, default=None, help="bit depth for --sensor custom (default 11)")
    p.add_argument("--ratio", type=int, default=None, help="PAN/MS ratio (default: the sensor's, 4)")
    p.add_argument(
        "--tile", type=int, default=1024, help="tile size in PAN pixels, 0 for none (default 1024)"
    )
    p.add_argument(
        "--halo", type=int, default=None, help="context per tile side in PAN pixels (default: fuser's)"
    )
    p.add_argument(
        "--dtype", default="float32", choices=OUTPUT_DTYPES, help="output data type (default float32)"
    )
    p.add_argument(
        "--clip",
        action="store_true",
        help="clip integer outputs to the sensor's range (default: refuse values outside it, with a count)",
    )
    p.add_argument(
        "--border",
        default=BORDERS[0],
        choices=BORDERS,
        help="scene borders: mirror the scene (default; tiled = untiled) or circular (the toolbox's rule)",
    )
    p.add_argument(
        "--nodata", type=float, default=None, help="no-data value of the inputs (default: as declared)"
    )
    p.add_argument(
        "--allow-nodata",
        action="store_true",
        help="mask no-data/NaN input pixels in the output instead of refusing",
    )
    p.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``binsharp fuse``; returns the exit status (bad input raises BinsharpError)."""
    picked = selected_source(args)
    check_output_path(
        args.output, overwrite=args.overwrite, inputs=(args.pan, args.ms, picked[1] if picked else None)
    )
    if args.ratio is not None:
        check_ratio(args.ratio, "--ratio")
    sensor = None
    if args.sensor:
        with open_raster(args.ms, "MS") as ds:
            n_bands = ds.count
        sensor = sensor_from_args(args, n_bands=n_bands)
        sensor.check_bands(n_bands)  # before a fuser (e.g. a checkpoint) compares itself with the sensor
    ratio = args.ratio if args.ratio is not None else (sensor.ratio if sensor is not None else None)
    fuser = resolve_fuser(args, sensor=sensor, ratio=ratio)
    out = fuse_geotiff(
        fuser,
        args.pan,
        args.ms,
        args.output,
        tile=args.tile,
        halo=args.halo,
        dtype=args.dtype,
        max_value=float(sensor.max_value) if sensor is not None else None,
        clip=args.clip,
        border=args.border,
        overwrite=args.overwrite,
        nodata=args.nodata,
        allow_nodata=args.allow_nodata,
        progress=True,
    )
    print(f"wrote {out} ({fuser.name})")
    return 0
