"""Torch dataset over a PanCollection h5 file, normalised for the networks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from binsharp.data.io import read_h5, read_h5_attrs
from binsharp.sensors import max_dn

#: Bit depth assumed when an h5 file does not say (PanCollection WV3/QB/WV2 are 11-bit).
DEFAULT_BITS = 11


class PanDataset(Dataset):
    """A PanCollection h5 file (or a split of a named dataset) loaded into memory.

    Items are dicts of float32 tensors divided by ``2**bits - 1`` (normalised, ~[0, 1]):
    ``ms`` (C, h, w), ``lms`` (C, H, W), ``pan`` (1, H, W), and ``gt`` (C, H, W) when the file has it.

    Args:
        h5_path: an h5 file, a dataset directory, or a catalog name (e.g. ``"wv3-longmont"``, with ``split``).
        bits: bit depth for the normalisation; default: the file's ``bits`` attribute, else 11.
        split: split of a named dataset / dataset directory (default ``"train"``); ignored for an h5 file.
        augment: apply a random flip/rot90 (one of the 8 dihedral transforms, the same for every key).
    """

    def __init__(
        self,
        h5_path: str | os.PathLike,
        bits: int | None = None,
        *,
        split: str | None = None,
        augment: bool = False,
    ) -> None:
        path = Path(h5_path)
        if not path.is_file():
            from binsharp.data.catalog import dataset_path

            path = dataset_path(h5_path, split or "train")
        self.path = path
        attrs = read_h5_attrs(path)
        self.bits = int(bits if bits is not None else attrs.get("bits", DEFAULT_BITS))
        self.sensor: str | None = attrs.get("sensor")
        self.max_value = float(max_dn(self.bits))
        arrays = read_h5(path, dtype=np.float32)
        self.ratio = arrays["pan"].shape[-1] // arrays["ms"].shape[-1]
        for v in arrays.values():
            v /= np.float32(self.max_value)  # in place: the file is held once, as float32
        self.data: dict[str, torch.Tensor] = {k: torch.from_numpy(v) for k, v in arrays.items()}
        self.keys = tuple(self.data)
        self.has_gt = "gt" in self.data
        self.bands = int(self.data["ms"].shape[1])
        self.augment = augment

    def __len__(self) -> int:
        return int(self.data["ms"].shape[0])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = {k: v[index] for k, v in self.data.items()}
        if self.augment:
            k = int(torch.randint(0, 4, ()).item())
            flip = bool(torch.randint(0, 2, ()).item())
            for key, t in item.items():
                if flip:
                    t = torch.flip(t, dims=(-1,))
                item[key] = torch.rot90(t, k, dims=(-2, -1)).contiguous() if k else t.contiguous()
        return item

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}={tuple(v.shape[1:])}" for k, v in self.data.items())
        return (
            f"PanDataset({self.path.name}: N={len(self)}, {shapes}, sensor={self.sensor}, bits={self.bits})"
        )
