"""Data: readers/writers, the dataset builder and the named datasets built from ``dgsamples``.

* :mod:`binsharp.data.io` -- PanCollection h5, toolbox ``.mat``, GeoTIFF, PAN/MS pair checks.
* :mod:`binsharp.data.builder` -- :func:`build_dataset`: one PAN/MS scene -> train/val/test_rr/test_fr h5.
* :mod:`binsharp.data.catalog` -- named datasets (``wv3-longmont``, ``wv2-longmont``) built on first use.
* :mod:`binsharp.data.torch` -- :class:`PanDataset`, a torch dataset over a PanCollection h5 file.
"""

from binsharp.data.io import (
    Raster,
    check_pair,
    read_fused_mat,
    read_geotiff,
    read_h5,
    read_h5_attrs,
    read_mat,
    read_pan_ms_pair,
    write_geotiff,
    write_h5,
    write_mat,
)

__all__ = [
    "Raster",
    "check_pair",
    "read_fused_mat",
    "read_geotiff",
    "read_h5",
    "read_h5_attrs",
    "read_mat",
    "read_pan_ms_pair",
    "write_geotiff",
    "write_h5",
    "write_mat",
]


def __getattr__(name: str):
    # torch-dependent and catalog helpers are imported on first use (keeps `binsharp data` fast)
    if name == "PanDataset":
        from binsharp.data.datasets import PanDataset

        return PanDataset
    if name in ("dataset_path", "dataset_info", "list_datasets", "build_dataset"):
        if name == "build_dataset":
            from binsharp.data import builder

            return builder.build_dataset
        from binsharp.data import catalog

        return getattr(catalog, name)
    raise AttributeError(f"module 'binsharp.data' has no attribute {name!r}")
