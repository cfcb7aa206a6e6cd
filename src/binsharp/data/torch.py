"""Alias of :mod:`binsharp.data.datasets` (``from binsharp.data.torch import PanDataset``)."""

from binsharp.data.datasets import DEFAULT_BITS, PanDataset

__all__ = ["DEFAULT_BITS", "PanDataset"]
