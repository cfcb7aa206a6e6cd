"""The GeoTIFF writer of the tests: generated (bands, rows, cols) arrays as north-up, georeferenced files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import Affine


def write_tif(
    path: str | os.PathLike,
    a: np.ndarray,
    pixel: float,
    *,
    x0: float = 490000.0,
    y0: float = 4450000.0,
    crs: str | None = "EPSG:32613",
    dtype: str | None = None,
    **profile,
) -> Path:
    """Write ``a`` (C, H, W) to ``path`` as a GeoTIFF of ``dtype`` (default: ``a``'s own), its upper-left
    corner at (``x0``, ``y0``) and square pixels of ``pixel`` metres in ``crs``; ``profile``: further
    rasterio creation options (``nodata``, ...)."""
    a = np.asarray(a)
    dtype = dtype or a.dtype.name
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=a.shape[2],
        height=a.shape[1],
        count=a.shape[0],
        dtype=dtype,
        crs=crs,
        transform=Affine.translation(x0, y0) @ Affine.scale(pixel, -pixel),
        **profile,
    ) as d:
        d.write(a.astype(dtype))
    return Path(path)
