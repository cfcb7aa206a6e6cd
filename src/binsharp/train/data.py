"""Lightning data module over the splits of a binsharp dataset (or a single PanCollection h5 file)."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from binsharp.errors import BinsharpError

log = logging.getLogger(__name__)

_H5_SUFFIXES = (".h5", ".hdf5")


@dataclass
class DataInfo:
    """What the engine knows about the training data.

    Attributes:
        train: path of the training h5 file.
        val: path of the validation h5 file (None: no validation).
        bands: number of MS bands.
        bits: radiometric depth (inputs are DN / (2**bits - 1)).
        ratio: PAN/MS resolution ratio.
        sensor: sensor name (None when the files do not say).
        manifest: the dataset's ``manifest.json`` as a mapping (``{}`` when there is none), plus ``source``.
    """

    train: Path
    val: Path | None
    bands: int
    bits: int
    ratio: int
    sensor: str | None
    manifest: dict[str, Any] = field(default_factory=dict)
    datasets: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """Loaded datasets (``"train"``, ``"val"``), reused by every stage's data module."""


def _split_path(data: str | Path, split: str) -> Path:
    from binsharp.data.catalog import dataset_path

    return Path(dataset_path(str(data), split))


def _read_manifest(data: str | Path, train: Path) -> dict[str, Any]:
    """The dataset manifest: of the named dataset / directory ``data``, else a ``manifest.json`` beside
    the training file; ``{}`` when there is none."""
    from binsharp.data.builder import read_manifest

    p = Path(str(data))
    if p.suffix.lower() in _H5_SUFFIXES or p.is_file():
        candidate = train.parent / "manifest.json"
        return dict(read_manifest(candidate)) if candidate.is_file() else {}
    from binsharp.data.catalog import dataset_info

    manifest = dataset_info(str(data))
    return dict(manifest) if isinstance(manifest, dict) else {"manifest": manifest}


def _make_dataset(path: Path, bits: int | None, augment: bool = False) -> Dataset:
    from binsharp.data import PanDataset

    return PanDataset(path, bits=bits, augment=augment)


def resolve_data(
    data: str | Path,
    *,
    val: str | Path | None = None,
    bits: int | None = None,
    sensor: str | None = None,
    train_split: str = "train",
    val_split: str = "val",
) -> DataInfo:
    """Find the training/validation files and the data's bands, bits, ratio, sensor and manifest.

    ``data`` is a dataset name or directory known to :func:`binsharp.data.catalog.dataset_path` (built on
    first use), or a single PanCollection h5 file (then validation uses ``val`` if given, else none).
    ``bits``/``sensor`` override those of the h5 attributes (:class:`binsharp.data.PanDataset` assumes
    11 bits for files that do not state it).
    """
    p = Path(str(data))
    if p.suffix.lower() in _H5_SUFFIXES or p.is_file():
        if not p.is_file():
            raise BinsharpError(f"training file not found: {p}")
        train = p
        val_path = Path(val) if val is not None else None
    else:
        train = _split_path(data, train_split)
        if val is not None:
            val_path = Path(val)
        else:
            try:
                val_path = _split_path(data, val_split)
            except BinsharpError as exc:
                log.warning("no validation split (%s): training without validation", exc)
                val_path = None
    if val_path is not None and not val_path.is_file():
        raise BinsharpError(f"validation file not found: {val_path}")
    ds: Any = _make_dataset(train, bits)
    if len(ds) == 0:
        raise BinsharpError(f"training file {train} holds no images")
    if not getattr(ds, "has_gt", True):
        raise BinsharpError(f"training file {train} has no 'gt': train on a reduced-resolution split")
    if val_path is not None:
        vds: Any = _make_dataset(val_path, ds.bits)
        if vds.bands != ds.bands or vds.ratio != ds.ratio:
            raise BinsharpError(
                f"validation file {val_path} ({vds.bands} bands, ratio {vds.ratio}) does not match the "
                f"training data ({ds.bands} bands, ratio {ds.ratio})"
            )
        if not getattr(vds, "has_gt", True):
            raise BinsharpError(f"validation file {val_path} has no 'gt' (use a reduced-resolution split)")
    manifest = _read_manifest(data, train)
    manifest.setdefault("source", str(data))
    info = DataInfo(
        train, val_path, int(ds.bands), int(ds.bits), int(ds.ratio), sensor or ds.sensor, manifest
    )
    info.datasets["train"] = ds
    if val_path is not None:
        info.datasets["val"] = vds
    return info


class EpochSampler(Sampler[int]):
    """Shuffled indices whose order depends only on ``(seed, epoch)``: resumable at any step, DDP-sharded.

    Each epoch draws a permutation of the ``n`` items from a generator seeded with ``(seed, epoch)``; rank
    ``r`` of ``world_size`` takes every ``world_size``-th item starting at ``r`` and keeps
    ``batches_per_epoch`` full batches of it (the remainder is dropped, so every rank runs the same number of
    steps); the data loader batches them with :attr:`batch_size`.
    With ``start_step > 0`` (a resumed run) the first epoch iterated is positioned after the batches that
    ``start_step`` steps consumed, so that a resumed run sees the same batches as an uninterrupted one.
    Lightning calls :meth:`set_epoch` at the start of every epoch.

    Args:
        n: dataset size.
        batch_size: wanted batch size (reduced to the per-rank item count when that is smaller).
        seed: shuffling seed.
        rank, world_size: DDP rank and number of processes.
        start_step: optimiser steps already done (one batch per step).
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start_step: int = 0,
    ) -> None:
        per_rank = int(n) // int(world_size)
        if per_rank < 1:
            raise BinsharpError(f"{n} training images cannot be shared by {world_size} processes")
        self.n = int(n)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.batch_size = min(int(batch_size), per_rank)
        self.batches_per_epoch = per_rank // self.batch_size
        self.epoch = start_step // self.batches_per_epoch
        self._resume = (self.epoch, start_step % self.batches_per_epoch) if start_step else None

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose permutation the next iteration uses."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.batches_per_epoch * self.batch_size

    def __iter__(self) -> Iterator[int]:
        state = np.random.SeedSequence([self.seed, self.epoch]).generate_state(2, dtype=np.uint32)
        gen = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
        perm = torch.randperm(self.n, generator=gen).tolist()
        mine = perm[self.rank :: self.world_size]
        skip = 0
        if self._resume is not None and self._resume[0] == self.epoch:
            skip = self._resume[1]
            self._resume = None
        yield from mine[skip * self.batch_size : self.batches_per_epoch * self.batch_size]


class PanDataModule(L.LightningDataModule):
    """Training and validation loaders over :class:`binsharp.data.PanDataset` files.

    Args:
        info: the resolved data (see :func:`resolve_data`).
        batch_size: training batch size per process (see :class:`EpochSampler`).
        val_batch_size: validation batch size (default: ``batch_size``).
        num_workers: DataLoader worker processes (0: load in the main process).
        seed: seed of the shuffling generator (the order is reproducible for a given seed).
        val_max_batches: validate on at most this many batches (None: the whole split).
        augment: random flips/rotations of the training patches (:class:`binsharp.data.PanDataset`).
        pin_memory: page-locked batches (faster host-to-GPU copies).

    Batches are dicts of float32 tensors ``ms`` (B,C,h,w), ``lms`` (B,C,H,W), ``pan`` (B,1,H,W), ``gt``
    (B,C,H,W), normalised to [0, 1]. Under DDP each rank takes its own shard of every epoch.
    """

    def __init__(
        self,
        info: DataInfo,
        *,
        batch_size: int = 16,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        val_max_batches: int | None = None,
        augment: bool = False,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        self.info = info
        self.batch_size = int(batch_size)
        self.val_batch_size = int(val_batch_size or batch_size)
        self.num_workers = int(num_workers)
        self.seed = int(seed)
        self.val_max_batches = val_max_batches
        self.augment = bool(augment)
        self.pin_memory = bool(pin_memory)
        self._train: Dataset | None = None
        self._val: Dataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self._train is None:
            cached = self.info.datasets.get("train")
            if cached is None:
                self._train = _make_dataset(self.info.train, self.info.bits, self.augment)
            elif bool(getattr(cached, "augment", False)) != self.augment:
                self._train = copy.copy(cached)  # shares the loaded tensors
                self._train.augment = self.augment  # type: ignore[attr-defined]
            else:
                self._train = cached
        if self._val is None and self.info.val is not None:
            self._val = self.info.datasets.get("val") or _make_dataset(self.info.val, self.info.bits)

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches from an :class:`EpochSampler`, sharded over the DDP ranks and
        positioned at the trainer's (restored) global step."""
        self.setup()
        assert self._train is not None
        trainer = getattr(self, "trainer", None)
        rank = int(trainer.global_rank) if trainer is not None else 0
        world = int(trainer.world_size) if trainer is not None else 1
        start = int(trainer.global_step) if trainer is not None else 0
        sampler = EpochSampler(
            len(self._train),  # type: ignore[arg-type]
            self.batch_size,
            seed=self.seed,
            rank=rank,
            world_size=world,
            start_step=start,
        )
        return DataLoader(
            self._train,
            sampler=sampler,
            batch_size=sampler.batch_size,
            drop_last=True,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.pin_memory,
            generator=torch.Generator().manual_seed(self.seed),
        )

    def val_dataloader(self) -> DataLoader | list:
        self.setup()
        if self._val is None:
            return []
        return DataLoader(
            self._val,
            batch_size=self.val_batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.pin_memory,
        )
