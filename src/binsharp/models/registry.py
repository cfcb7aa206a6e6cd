"""Model registry (timm-style): register factories by name, build models from a name and keyword arguments.

Usage::

    from binsharp import models

    models.list_models("binary")                 # ['bbcu', 'biconnect', ...]
    net = models.create("bisrnet", bands=4)      # random initialisation
    twin = models.create(net.model_name, **net.config)   # same architecture (a checkpoint does this)

Registering a model::

    @register_model("mynet", kind="binary", paper="Author et al., Venue 2024")
    def mynet(bands: int = 8, dim: int = 32) -> PanModel:
        return MyNet(bands, dim=dim)

The factory (a function or a :class:`~binsharp.models.base.PanModel` subclass) must take ``bands`` and only
explicit keyword arguments with JSON-serialisable defaults (no ``**kwargs``): :func:`create` binds the
caller's arguments to the factory signature, fills in the defaults and stores the complete set as
``model.config``, so that ``create(model.model_name, **model.config)`` rebuilds the same architecture.
"""

from __future__ import annotations

import copy
import inspect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from binsharp.errors import BinsharpError
from binsharp.models.base import PanModel, check_bands
from binsharp.models.recipes import check_recipe, default_recipe
from binsharp.names import resolve_name

__all__ = ["ModelEntry", "register_model", "create", "list_models", "model_info", "get_entry"]

_KINDS = ("fp", "binary")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_\-.]*$")


@dataclass(frozen=True)
class ModelEntry:
    """One registered model."""

    name: str
    kind: str
    factory: Callable[..., PanModel]
    recipe: dict[str, Any]
    paper: str = ""
    description: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, ModelEntry] = {}


def _factory_defaults(name: str, factory: Callable[..., Any]) -> dict[str, Any]:
    sig = inspect.signature(factory)
    params = sig.parameters
    if "bands" not in params:
        raise TypeError(f"factory of model {name!r} must take a 'bands' argument")
    out: dict[str, Any] = {}
    for p in params.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise TypeError(f"factory of model {name!r} must not take *args/**kwargs ({p})")
        if p.name == "self":
            continue
        if p.default is p.empty and p.name != "bands":
            raise TypeError(f"factory argument {name}.{p.name} needs a default")
        if p.default is not p.empty:
            try:
                json.dumps(p.default)
            except TypeError as e:
                raise TypeError(f"default of {name}.{p.name} is not JSON-serialisable: {e}") from None
            out[p.name] = p.default
    return out


def register_model(
    name: str,
    kind: str,
    *,
    recipe: dict[str, Any] | None = None,
    paper: str = "",
    description: str = "",
) -> Callable[[Callable[..., PanModel]], Callable[..., PanModel]]:
    """Decorator registering a model factory under ``name``.

    Args:
        name: registry name (lower case, ``[a-z][a-z0-9_-.]*``); must be unique.
        kind: ``"fp"`` or ``"binary"``; checked against the built model's ``kind``.
        recipe: default training recipe (see :mod:`binsharp.models.recipes`); the kind's default when omitted.
        paper: citation of the method.
        description: one line on the architecture.

    Returns:
        The decorator; it returns the factory unchanged.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"invalid model name {name!r}")
    if kind not in _KINDS:
        raise ValueError(f"model kind must be one of {_KINDS}, got {kind!r}")
    rec = check_recipe(copy.deepcopy(recipe)) if recipe is not None else default_recipe(kind)
    json.dumps(rec)

    def decorator(factory: Callable[..., PanModel]) -> Callable[..., PanModel]:
        if name in _REGISTRY and _REGISTRY[name].factory is not factory:
            raise ValueError(f"model name {name!r} is already registered")
        doc = (inspect.getdoc(factory) or "").strip().splitlines()
        _REGISTRY[name] = ModelEntry(
            name=name,
            kind=kind,
            factory=factory,
            recipe=rec,
            paper=paper,
            description=description or (doc[0] if doc else ""),
            defaults=_factory_defaults(name, factory),
        )
        return factory

    return decorator


def _ensure_loaded() -> None:
    # importing the package registers every model module
    import binsharp.models  # noqa: F401


def get_entry(name: str) -> ModelEntry:
    """The registry entry of ``name`` (case-insensitive); BinsharpError listing the names when unknown."""
    _ensure_loaded()
    if not isinstance(name, str):
        raise BinsharpError(f"model name must be a string, got {type(name).__name__}")
    return _REGISTRY[resolve_name(name, sorted(_REGISTRY), what="model")]


def list_models(kind: str | None = None) -> list[str]:
    """Sorted names of the registered models, optionally only those of ``kind`` (``"fp"`` or ``"binary"``)."""
    _ensure_loaded()
    if kind is not None and kind not in _KINDS:
        raise BinsharpError(f"kind must be one of {_KINDS} or None, got {kind!r}")
    return sorted(n for n, e in _REGISTRY.items() if kind is None or e.kind == kind)


def model_info(name: str) -> dict[str, Any]:
    """Description of a registered model.

    Returns:
        dict with ``name``, ``kind``, ``paper``, ``description``, ``defaults`` (factory keyword defaults),
        ``recipe`` (a copy of the default training recipe) and ``inputs`` (the inputs the model reads, when
        the factory is a class; otherwise taken from a model built with the defaults).
    """
    e = get_entry(name)
    factory = e.factory
    if isinstance(factory, type) and issubclass(factory, PanModel):
        inputs = list(factory.inputs)
    else:
        inputs = list(create(e.name).inputs)
    return {
        "name": e.name,
        "kind": e.kind,
        "paper": e.paper,
        "description": e.description,
        "defaults": copy.deepcopy(e.defaults),
        "recipe": copy.deepcopy(e.recipe),
        "inputs": inputs,
    }


def create(name: str, bands: int = 8, pretrained: str | None = None, **kwargs: Any) -> PanModel:
    """Build a registered model.

    Args:
        name: registry name (see :func:`list_models`), case-insensitive.
        bands: number of MS bands C (positive integer).
        pretrained: ``None`` (random initialisation), or the training dataset of a model-zoo checkpoint
            (e.g. ``"wv3-longmont"``, see :mod:`binsharp.zoo`): the model is then built from the checkpoint's
            configuration, its weights loaded, and returned in eval mode; a missing pair raises
            :class:`BinsharpError` naming the available ones.
        **kwargs: architecture arguments of the model's factory (see ``model_info(name)["defaults"]``).

    Returns:
        The model (train mode), with ``model_name``, ``bands`` and ``config`` set; ``config`` holds every
        factory argument (defaults filled in) including ``bands``, JSON-serialisable.
    """
    e = get_entry(name)
    if pretrained is not None:
        from binsharp.models.pretrained import load_pretrained

        return load_pretrained(e.name, pretrained, bands=bands, **kwargs)[0]
    check_bands(bands)
    sig = inspect.signature(e.factory)
    unknown = sorted(set(kwargs) - set(sig.parameters))
    if unknown:
        accepted = ", ".join(p for p in sig.parameters if p not in ("self", "bands"))
        raise BinsharpError(
            f"model {e.name!r} got unknown argument(s) {', '.join(unknown)}; accepted: {accepted or 'none'}"
        )
    bound = sig.bind_partial(bands=bands, **kwargs)
    bound.apply_defaults()
    args = dict(bound.arguments)
    args.pop("self", None)
    try:
        config = json.loads(json.dumps(args))
    except (TypeError, ValueError) as err:
        raise BinsharpError(f"arguments of model {e.name!r} must be JSON-serialisable: {err}") from None
    try:
        model = e.factory(**args)
    except BinsharpError:
        raise
    except (TypeError, ValueError) as err:
        raise BinsharpError(f"cannot build model {e.name!r} with {config}: {err}") from err
    if not isinstance(model, PanModel):
        raise TypeError(f"factory of {e.name!r} returned {type(model).__name__}, not a PanModel")
    if model.kind != e.kind:
        raise TypeError(f"model {e.name!r} is registered as {e.kind!r} but its class says {model.kind!r}")
    model.model_name = e.name
    model.config = config
    model.recipe = copy.deepcopy(e.recipe)
    return model
