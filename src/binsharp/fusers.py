"""Fusers: one calling convention for everything that pan-sharpens a single image.

A *fuser* is a callable ``fuser(ms_lr, pan, lms=None) -> fused`` with

* ``ms_lr``: (C, h, w) multispectral image in DN,
* ``pan``: (1, H, W) panchromatic image in DN, ``H = ratio * h``, ``W = ratio * w``,
* ``lms``: optional (C, H, W) upsampled MS in DN (23-tap interpolation of ``ms_lr``; computed when absent),
* ``fused``: (C, H, W) float64 in DN,

and the attributes ``name`` (str), ``bands`` (int, or None when any band count works) and ``ratio`` (int).
An optional attribute ``halo`` (int, PAN pixels) tells :mod:`binsharp.tiling` how much context a tile needs.

Fusers come from *sources*, one per command-line option (``--method NAME`` here; ``--checkpoint CKPT``,
``--engine MODEL.bsp`` and ``--model NAME --pretrained DATASET`` from the training and deployment packages).
A source is registered with :func:`register_fuser_source`; a package providing one ships a module listed in
:data:`FUSER_PLUGIN_MODULES` that calls it at import time, e.g. in ``binsharp/deploy/fuser.py``::

    from binsharp.fusers import register_fuser_source

    def _engine_factory(value, args, *, sensor, ratio):
        return engine_fuser(value)          # a Fuser: name, bands, ratio, __call__

    register_fuser_source("engine", _engine_factory, metavar="MODEL.bsp", help="packed binary model")

Only registered sources appear on the command line (``binsharp evaluate`` and ``binsharp fuse``).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from binsharp.errors import BinsharpError
from binsharp.names import resolve_name
from binsharp.sensors import Sensor, get_sensor, sensor_from_options

#: Default halo (PAN pixels) for tiles when a fuser does not state one: covers the 41-tap MTF filter and
#: the 23-tap interpolation (both applied at MS scale, i.e. about 4 x 20 PAN pixels for ratio 4).
DEFAULT_HALO = 96


@runtime_checkable
class Fuser(Protocol):
    """Pan-sharpen one image: ``(ms_lr (C,h,w), pan (1,H,W), lms (C,H,W) | None) -> (C,H,W) float64``, DN."""

    name: str
    bands: int | None
    ratio: int

    def __call__(self, ms_lr: np.ndarray, pan: np.ndarray, lms: np.ndarray | None = None) -> np.ndarray: ...


def check_fuser_inputs(
    ms_lr: np.ndarray, pan: np.ndarray, lms: np.ndarray | None, *, bands: int | None, ratio: int, name: str
) -> None:
    """Raise :class:`BinsharpError` unless the shapes follow the fuser convention.

    ``ms_lr`` must be (C, h, w) with ``C == bands`` (when ``bands`` is set), ``pan`` (1, ratio*h, ratio*w) and
    ``lms`` (when given) (C, ratio*h, ratio*w).
    """
    if ms_lr.ndim != 3:
        raise BinsharpError(f"{name}: MS must be a (C, h, w) array, got shape {tuple(ms_lr.shape)}")
    if pan.ndim != 3 or pan.shape[0] != 1:
        raise BinsharpError(f"{name}: PAN must be a (1, H, W) array, got shape {tuple(pan.shape)}")
    c, h, w = ms_lr.shape
    if bands is not None and c != bands:
        raise BinsharpError(f"{name} expects {bands} MS bands, got {c}")
    if pan.shape[1:] != (ratio * h, ratio * w):
        raise BinsharpError(
            f"{name}: PAN {pan.shape[1]} x {pan.shape[2]} and MS {h} x {w} are not in the ratio {ratio} "
            f"(PAN must be exactly {ratio} times the MS size in each dimension)"
        )
    if lms is not None and tuple(lms.shape) != (c, ratio * h, ratio * w):
        raise BinsharpError(
            f"{name}: upsampled MS must have shape {(c, ratio * h, ratio * w)}, got {lms.shape}"
        )


class MethodFuser:
    """A classical method of :mod:`binsharp.classic` as a :class:`Fuser`.

    Args:
        name: method name, one of :data:`binsharp.classic.CLASSICAL_METHODS`.
        sensor: sensor of the images (its MTF gains are used by the MTF-based methods).
        ratio: PAN/MS resolution ratio.
    """

    halo: int = DEFAULT_HALO

    def __init__(self, name: str, sensor: Sensor, ratio: int = 4) -> None:
        self.name = name
        self.sensor = sensor
        self.bands: int | None = sensor.n_bands
        self.ratio = int(ratio)

    def __call__(self, ms_lr: np.ndarray, pan: np.ndarray, lms: np.ndarray | None = None) -> np.ndarray:
        """Fuse ``ms_lr`` (C,h,w) and ``pan`` (1,H,W), both DN; returns (C,H,W) float64 DN."""
        from binsharp.classic import fuse

        check_fuser_inputs(ms_lr, pan, lms, bands=self.bands, ratio=self.ratio, name=self.name)
        out = fuse(self.name, ms_lr, pan, sensor=self.sensor, ratio=self.ratio, ms_up=lms)
        return np.asarray(out, dtype=np.float64)

    def __repr__(self) -> str:
        return f"MethodFuser({self.name!r}, sensor={self.sensor.name!r}, ratio={self.ratio})"


def classical_methods() -> tuple[str, ...]:
    """Names accepted by :func:`method_fuser` (those of :data:`binsharp.classic.CLASSICAL_METHODS`)."""
    from binsharp.classic import CLASSICAL_METHODS

    return tuple(CLASSICAL_METHODS)


def method_fuser(name: str, sensor: Sensor | str, ratio: int = 4) -> MethodFuser:
    """A :class:`Fuser` running the classical method ``name`` for ``sensor`` at ``ratio``.

    Raises :class:`BinsharpError` for an unknown method name.
    """
    key = resolve_name(name, classical_methods(), what="method")
    return MethodFuser(key, get_sensor(sensor), ratio)


# ----------------------------------------------------------------------------------------------------------
# Extension point: fuser sources, one per command-line option.
# ----------------------------------------------------------------------------------------------------------

#: ``factory(value, args, sensor=..., ratio=...) -> Fuser``: ``value`` is the option's argument, ``args`` the
#: parsed command line (for companion options such as ``--pretrained``), ``sensor``/``ratio`` those of the
#: data when the command knows them (``None`` otherwise).
FuserFactory = Callable[..., Fuser]


@dataclass(frozen=True)
class FuserSource:
    """How one command-line option (e.g. ``--checkpoint``) turns into a :class:`Fuser`.

    Attributes:
        option: option name without dashes (``"method"``, ``"checkpoint"``, ``"engine"``, ``"model"``).
        factory: ``factory(value: str, args: argparse.Namespace, *, sensor: Sensor | None,
            ratio: int | None) -> Fuser``.
        metavar: placeholder shown in ``--help``.
        help: help text of the option.
        add_arguments: optional ``add_arguments(parser)`` adding companion options (e.g. ``--pretrained``).
        needs_sensor: whether the factory needs ``sensor`` (the CLI then asks for ``--sensor``).
    """

    option: str
    factory: FuserFactory
    metavar: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    needs_sensor: bool = False


#: Registered sources keyed by option name, in registration order.
FUSER_SOURCES: dict[str, FuserSource] = {}

#: Modules imported (when they exist) before the command line is built, so that their packages can call
#: :func:`register_fuser_source`. Keep them light: import heavy dependencies inside the factory.
FUSER_PLUGIN_MODULES: tuple[str, ...] = (
    "binsharp.train.fuser",  # --checkpoint CKPT
    "binsharp.deploy.fuser",  # --engine MODEL.bsp
    "binsharp.zoo.fuser",  # --model NAME --pretrained DATASET
)

_plugins_loaded = False


def register_fuser_source(
    option: str,
    factory: FuserFactory,
    *,
    metavar: str,
    help: str,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    needs_sensor: bool = False,
) -> FuserSource:
    """Register ``factory`` as the fuser source behind the command-line option ``--<option>``.

    Re-registering an option replaces the previous entry. Returns the stored :class:`FuserSource`.
    """
    key = option.lstrip("-")
    source = FuserSource(key, factory, metavar, help, add_arguments, needs_sensor)
    FUSER_SOURCES[key] = source
    return source


def load_fuser_plugins() -> None:
    """Import every module of :data:`FUSER_PLUGIN_MODULES` that exists (once)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    root = Path(__file__).resolve().parent
    for module in FUSER_PLUGIN_MODULES:
        # look for the file first: importing a missing submodule would still import its (heavy) package
        rel = Path(*module.split(".")[1:])
        if module.startswith("binsharp.") and not any(
            (root / rel).with_suffix(sfx).is_file() for sfx in (".py", ".pyc")
        ):
            continue
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module.startswith(exc.name):
                raise


def fuser_sources() -> dict[str, FuserSource]:
    """The registered fuser sources (after loading the plugin modules)."""
    load_fuser_plugins()
    return dict(FUSER_SOURCES)


def _method_factory(value: str, args: Any, *, sensor: Sensor | None, ratio: int | None) -> Fuser:
    if value.strip().lower() == "all" or "," in value:
        raise BinsharpError(f"--method {value}: this command runs one method at a time")
    if sensor is None:
        raise BinsharpError("--method needs a sensor: pass --sensor (e.g. --sensor WV3)")
    return method_fuser(value, sensor, ratio or sensor.ratio)


register_fuser_source(
    "method",
    _method_factory,
    metavar="NAME",
    help="classical method: exp, bt-h, gs, gsa, bdsd-pc, mtf-glp-hpm, mtf-glp-fs, awlp "
    "(evaluate also takes 'all' or a comma-separated list)",
    needs_sensor=True,
)


def add_fuser_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """Add one mutually exclusive option per registered source (``--method``, ...) to ``parser``."""
    sources = fuser_sources()
    group = parser.add_mutually_exclusive_group(required=required)
    for source in sources.values():
        group.add_argument(f"--{source.option}", metavar=source.metavar, help=source.help, default=None)
    for source in sources.values():
        if source.add_arguments is not None:
            source.add_arguments(parser)


def selected_source(args: argparse.Namespace) -> tuple[FuserSource, str] | None:
    """The source whose option was given on the command line, with its value (None if none was given)."""
    chosen = [(s, getattr(args, s.option, None)) for s in fuser_sources().values()]
    chosen = [(s, v) for s, v in chosen if v is not None]
    if len(chosen) > 1:
        names = ", ".join(f"--{s.option}" for s, _ in chosen)
        raise BinsharpError(f"give only one of {names}")
    return chosen[0] if chosen else None


def resolve_fuser(
    args: argparse.Namespace,
    *,
    sensor: Sensor | None = None,
    ratio: int | None = None,
    value: str | None = None,
) -> Fuser:
    """Build the :class:`Fuser` selected on the command line (``--method``, ``--checkpoint``, ...).

    Args:
        args: parsed command line.
        sensor: sensor of the data when known (else ``args.sensor`` is used when present).
        ratio: PAN/MS ratio of the data when known.
        value: overrides the option's value (used to expand ``--method all``).
    """
    picked = selected_source(args)
    if picked is None:
        options = ", ".join(f"--{o}" for o in fuser_sources())
        raise BinsharpError(f"no fuser selected: pass one of {options}")
    source, given = picked
    name = getattr(args, "sensor", None)
    if sensor is None and name and str(name).strip().lower() != "custom":
        sensor = sensor_from_args(args, n_bands=None)
    return source.factory(value if value is not None else given, args, sensor=sensor, ratio=ratio)


def resolve_fusers(
    args: argparse.Namespace, *, sensor: Sensor | None = None, ratio: int | None = None
) -> list[Fuser]:
    """Like :func:`resolve_fuser`, expanding ``--method all`` into every classical method."""
    picked = selected_source(args)
    if picked is not None and picked[0].option == "method":
        return [resolve_fuser(args, sensor=sensor, ratio=ratio, value=m) for m in method_names(picked[1])]
    return [resolve_fuser(args, sensor=sensor, ratio=ratio)]


def method_names(value: str) -> list[str]:
    """The classical methods a ``--method`` value names (``all``, a name or a comma-separated list).

    Raises :class:`BinsharpError` (with suggestions) for an unknown name, so a command can check the names
    before it loads or builds any data.
    """
    if value.strip().lower() == "all":
        return list(classical_methods())
    return [resolve_name(m, classical_methods(), what="method") for m in value.split(",") if m.strip()]


def sensor_from_args(args: argparse.Namespace, *, n_bands: int | None) -> Sensor:
    """The sensor named by ``args.sensor`` (:func:`binsharp.sensors.sensor_from_options`)."""
    return sensor_from_options(
        str(args.sensor),
        n_bands=n_bands,
        bits=getattr(args, "bits", None),
        ratio=getattr(args, "ratio", None),
    )


def check_bands(fuser: Fuser, n_bands: int, where: str = "data") -> None:
    """Raise :class:`BinsharpError` if ``fuser`` cannot take ``n_bands``-band images."""
    bands = getattr(fuser, "bands", None)
    if bands is None or bands == n_bands:
        return
    sensor = getattr(fuser, "sensor", None)
    if isinstance(sensor, Sensor):
        raise BinsharpError(
            f"band count {n_bands} of the {where} does not match sensor {sensor.name} "
            f"({sensor.n_bands} bands: {', '.join(sensor.bands)})"
        )
    raise BinsharpError(f"{fuser.name} expects {bands} MS bands but the {where} has {n_bands}")


__all__: Sequence[str] = (
    "DEFAULT_HALO",
    "FUSER_PLUGIN_MODULES",
    "FUSER_SOURCES",
    "Fuser",
    "FuserFactory",
    "FuserSource",
    "MethodFuser",
    "add_fuser_arguments",
    "check_bands",
    "check_fuser_inputs",
    "classical_methods",
    "fuser_sources",
    "load_fuser_plugins",
    "method_fuser",
    "method_names",
    "register_fuser_source",
    "resolve_fuser",
    "resolve_fusers",
    "sensor_from_args",
)
