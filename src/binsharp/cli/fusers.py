"""Fuser options of the command line: each option maps to a factory of :mod:`binsharp.inference`.

=====================================  ==========================================================
option                                 fuser
=====================================  ==========================================================
``--method NAME``                      :func:`binsharp.inference.method_fuser` (needs ``--sensor``)
``--checkpoint CKPT``                  :func:`binsharp.inference.checkpoint_fuser`
``--engine MODEL.bsp``                 :func:`binsharp.inference.engine_fuser`
``--model NAME [--pretrained DATA]``   :func:`binsharp.inference.pretrained_fuser`
=====================================  ==========================================================

``binsharp evaluate`` and ``binsharp fuse`` add one mutually exclusive option per entry of
:data:`FUSER_SOURCES`; :func:`register_fuser_source` adds or replaces an entry. The factories read the
parsed command line here and call the library with explicit arguments.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from binsharp.errors import BinsharpError
from binsharp.inference import Fuser, classical_methods, method_fuser
from binsharp.inference.pretrained import DEFAULT_PRETRAINED
from binsharp.names import resolve_name
from binsharp.sensors import Sensor, sensor_from_options

#: ``factory(value, args, sensor=..., ratio=...) -> Fuser``: ``value`` is the option's argument, ``args`` the
#: parsed command line (for companion options such as ``--pretrained``), ``sensor``/``ratio`` those of the
#: data when the command knows them (``None`` otherwise).
FuserFactory = Callable[..., Fuser]


@dataclass(frozen=True)
class FuserSource:
    """How one command-line option (e.g. ``--checkpoint``) turns into a :class:`~binsharp.inference.Fuser`.

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


def fuser_sources() -> dict[str, FuserSource]:
    """The registered fuser sources."""
    return dict(FUSER_SOURCES)


def _method_factory(value: str, args: Any, *, sensor: Sensor | None, ratio: int | None) -> Fuser:
    if value.strip().lower() == "all" or "," in value:
        raise BinsharpError(f"--method {value}: this command runs one method at a time")
    if sensor is None:
        raise BinsharpError("--method needs a sensor: pass --sensor (e.g. --sensor WV3)")
    return method_fuser(value, sensor, ratio)


def _checkpoint_factory(value: str, args: Any, *, sensor: Sensor | None, ratio: int | None) -> Fuser:
    from binsharp.inference.checkpoint import checkpoint_fuser

    device = getattr(args, "device", None) or "cpu"
    return checkpoint_fuser(value, sensor=sensor, ratio=ratio, device=str(device))


def _engine_factory(value: str, args: Any, *, sensor: Sensor | None, ratio: int | None) -> Fuser:
    from binsharp.inference.engine import engine_fuser

    return engine_fuser(value, sensor=sensor, ratio=ratio, threads=getattr(args, "threads", None))


def _model_factory(value: str, args: Any, *, sensor: Sensor | None, ratio: int | None) -> Fuser:
    from binsharp.inference.pretrained import pretrained_fuser

    dataset = getattr(args, "pretrained", None) or DEFAULT_PRETRAINED
    device = getattr(args, "device", None) or "cpu"
    if not value or not value.strip():
        raise BinsharpError("--model needs a model name (e.g. --model s2bnet)")
    return pretrained_fuser(value.strip().lower(), dataset, sensor=sensor, ratio=ratio, device=str(device))


def _add_pretrained(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pretrained",
        metavar="DATASET",
        default=None,
        help=f"training dataset of the --model weights in the model zoo (default {DEFAULT_PRETRAINED})",
    )


register_fuser_source(
    "method",
    _method_factory,
    metavar="NAME",
    help="classical method: exp, bt-h, gs, gsa, bdsd-pc, mtf-glp-hpm, mtf-glp-fs, awlp "
    "(evaluate also takes 'all' or a comma-separated list)",
    needs_sensor=True,
)
register_fuser_source(
    "checkpoint",
    _checkpoint_factory,
    metavar="CKPT",
    help="trained network: a binsharp checkpoint (model.safetensors written by 'binsharp train')",
)
register_fuser_source(
    "engine",
    _engine_factory,
    metavar="MODEL.bsp",
    help="exported binary network (a .bsp file written by 'binsharp export'), run by the packed engine",
)
register_fuser_source(
    "model",
    _model_factory,
    metavar="NAME",
    help="pretrained network from the model zoo (with --pretrained DATASET, default wv3-longmont)",
    add_arguments=_add_pretrained,
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
    chosen: list[tuple[FuserSource, str]] = []
    for s in fuser_sources().values():
        value = getattr(args, s.option, None)
        if value is not None:
            chosen.append((s, str(value)))
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
    """Build the fuser selected on the command line (``--method``, ``--checkpoint``, ...).

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
    """Like :func:`resolve_fuser`, expanding ``--method all`` or a comma-separated list of methods."""
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
