"""Common base class of every pan-sharpening network in :mod:`binsharp.models`.

One calling convention for all models (keyword-only, tensors normalised to ``[0, 1]``, i.e. DN divided by
``2**bits - 1``)::

    fused = model(ms=ms, lms=lms, pan=pan)

========  ==============  ==========================================================================
input     shape           meaning
========  ==============  ==========================================================================
``ms``    (B, C, h, w)    low-resolution multispectral image
``lms``   (B, C, H, W)    ``ms`` upsampled by the 23-tap interpolator (``H = ratio * h``)
``pan``   (B, 1, H, W)    panchromatic image
output    (B, C, H, W)    fused image, same normalisation as the inputs
========  ==============  ==========================================================================

A model ignores the inputs it does not use; the class attribute :attr:`PanModel.inputs` lists the ones it
needs. Missing or inconsistent inputs raise :class:`binsharp.errors.BinsharpError`.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from binsharp.errors import BinsharpError
from binsharp.models.recipes import default_recipe

if TYPE_CHECKING:
    from binsharp.nn import BinaryConv2d, BinaryLinear

__all__ = ["PanModel", "check_bands", "example_inputs", "strip_quantizers"]

_INPUT_NAMES = ("ms", "lms", "pan")


def check_bands(bands: Any) -> int:
    """Validate a band count (a positive integer) and return it as ``int``."""
    if isinstance(bands, bool) or not isinstance(bands, int) or bands < 1:
        raise BinsharpError(f"bands must be a positive integer, got {bands!r}")
    return int(bands)


def example_inputs(
    bands: int = 8, size: int = 64, *, batch: int = 1, ratio: int = 4, seed: int | None = 0
) -> dict[str, Tensor]:
    """Random normalised inputs in the model calling convention (for tests, benchmarks, counting).

    Args:
        bands: number of MS bands C.
        size: full-resolution side H = W (must be divisible by ``ratio``).
        batch: batch size B.
        ratio: resolution ratio between PAN and MS.
        seed: seed of a private generator (``None``: global RNG).

    Returns:
        ``{"ms": (B,C,H/r,W/r), "lms": (B,C,H,W), "pan": (B,1,H,W)}``, float32 in ``[0, 1)``; ``lms`` is the
        nearest-neighbour upsampling of ``ms`` (not the 23-tap interpolation; shapes are what matter here).
    """
    if size % ratio:
        raise BinsharpError(f"size {size} is not divisible by ratio {ratio}")
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    ms = torch.rand(batch, bands, size // ratio, size // ratio, generator=gen)
    lms = torch.nn.functional.interpolate(ms, scale_factor=ratio, mode="nearest")
    pan = torch.rand(batch, 1, size, size, generator=gen)
    return {"ms": ms, "lms": lms, "pan": pan}


def _quantized_layers(model: nn.Module) -> list[BinaryConv2d | BinaryLinear]:
    from binsharp.nn import BinaryConv2d, BinaryLinear

    return [m for m in model.modules() if isinstance(m, (BinaryConv2d, BinaryLinear))]


def strip_quantizers(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` with every quantizer removed: the same network in float.

    Sets ``input_quantizer`` and ``kernel_quantizer`` of every :class:`binsharp.nn.BinaryConv2d` /
    :class:`binsharp.nn.BinaryLinear` to ``None`` (the layer then runs as an ordinary convolution / linear
    layer on the latent weights); everything else (BN, RPReLU, redistribution, shortcuts) is kept. Used to
    measure the cost of binary emulation and as a distillation teacher. ``model`` itself is not modified.
    """
    twin = copy.deepcopy(model)
    for m in _quantized_layers(twin):
        m.input_quantizer = None
        m.kernel_quantizer = None
    return twin


@contextlib.contextmanager
def quantizers_removed(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` itself as its float twin inside the ``with`` block (the quantizers are detached from its
    binary layers and put back afterwards; the parameters are the model's own, so training inside the block
    trains the latent weights, BN, RPReLU, ... that the binary network then starts from). Parameters of the
    quantizers themselves (RSign thresholds, scalable-tanh beta) are outside the module tree meanwhile."""
    saved = [(m, m.input_quantizer, m.kernel_quantizer) for m in _quantized_layers(model)]
    for m, _, _ in saved:
        m.input_quantizer = None
        m.kernel_quantizer = None
    try:
        yield model
    finally:
        for m, iq, kq in saved:
            m.input_quantizer, m.kernel_quantizer = iq, kq


class PanModel(nn.Module):
    """Base class: band bookkeeping, input validation, binary-layer listing, schedule hooks.

    Subclasses set the class attributes :attr:`kind` and :attr:`inputs`, call ``super().__init__(bands)``
    and implement :meth:`forward` with the keyword-only signature ``forward(*, ms=None, lms=None,
    pan=None) -> (B, C, H, W)``.

    Attributes:
        kind: ``"fp"`` (full precision) or ``"binary"`` (binarized body).
        inputs: names of the inputs the model reads, a subset of ``("ms", "lms", "pan")``.
        bands: number of MS bands C the model was built for.
        model_name: registry name (set by :func:`binsharp.models.create`; class name otherwise).
        config: JSON-serialisable keyword arguments such that ``create(model_name, **config)`` rebuilds the
            same architecture (set by :func:`binsharp.models.create`).
        recipe: default training recipe (the registered one, set by :func:`binsharp.models.create`).
    """

    kind: ClassVar[str] = "fp"
    inputs: ClassVar[tuple[str, ...]] = ("lms", "pan")

    def __init__(self, bands: int) -> None:
        super().__init__()
        self.bands = check_bands(bands)
        self.model_name: str = type(self).__name__.lower()
        self.config: dict[str, Any] = {"bands": self.bands}
        self.recipe: dict[str, Any] = default_recipe(self.kind)

    # ------------------------------------------------------------------ inputs
    def check_inputs(
        self, ms: Tensor | None = None, lms: Tensor | None = None, pan: Tensor | None = None
    ) -> None:
        """Validate the inputs this model needs; raise :class:`BinsharpError` naming the problem.

        Checks presence of every name in :attr:`inputs`, 4-D float tensors, C = :attr:`bands` for ``ms`` and
        ``lms``, one PAN channel, equal batch sizes, ``lms`` and ``pan`` of equal spatial size, and that the
        PAN size is an integer multiple of the ``ms`` size.
        """
        given = {"ms": ms, "lms": lms, "pan": pan}
        for name in self.inputs:
            if given[name] is None:
                raise BinsharpError(
                    f"model {self.model_name!r} needs input {name!r} (it reads {', '.join(self.inputs)})"
                )
        batch = None
        for name in _INPUT_NAMES:
            t = given[name]
            if t is None or name not in self.inputs:
                continue
            if not isinstance(t, Tensor):
                raise BinsharpError(f"input {name!r} must be a torch.Tensor, got {type(t).__name__}")
            if t.dim() != 4:
                raise BinsharpError(f"input {name!r} must be 4-D (B, C, H, W), got shape {tuple(t.shape)}")
            if not t.is_floating_point():
                raise BinsharpError(f"input {name!r} must be floating point, got {t.dtype}")
            want = 1 if name == "pan" else self.bands
            if t.shape[1] != want:
                what = "1 channel" if name == "pan" else f"{self.bands} bands"
                raise BinsharpError(
                    f"input {name!r} has {t.shape[1]} channels but model {self.model_name!r} expects {what}"
                )
            if batch is None:
                batch = t.shape[0]
            elif t.shape[0] != batch:
                raise BinsharpError(
                    f"inputs have different batch sizes ({batch} and {t.shape[0]} for {name!r})"
                )
        if lms is not None and pan is not None and "lms" in self.inputs and "pan" in self.inputs:
            if lms.shape[-2:] != pan.shape[-2:]:
                raise BinsharpError(
                    f"lms {tuple(lms.shape[-2:])} and pan {tuple(pan.shape[-2:])} differ in spatial size"
                )
        if ms is not None and pan is not None and "ms" in self.inputs and "pan" in self.inputs:
            (h, w), (hp, wp) = ms.shape[-2:], pan.shape[-2:]
            if hp % h or wp % w or hp // h != wp // w:
                raise BinsharpError(f"pan size {(hp, wp)} is not an integer multiple of the ms size {(h, w)}")

    # ------------------------------------------------------------------ binary bookkeeping
    def quantized_layers(self) -> list[str]:
        """Names of every :class:`binsharp.nn.BinaryConv2d` with at least one quantizer (weights and/or
        activations binarized), in module order."""
        from binsharp.nn import BinaryConv2d

        return [
            name
            for name, m in self.named_modules()
            if isinstance(m, BinaryConv2d)
            and (m.input_quantizer is not None or m.kernel_quantizer is not None)
        ]

    def binary_layers(self) -> list[str]:
        """Names of the convolutions whose both operands are binarized (``BinaryConv2d.is_binary``): the
        layers that run as XNOR-popcount and that the complexity counter counts as BOPs. A weight-only
        binarized layer (BinaryConnect) is not listed (see :meth:`quantized_layers`)."""
        from binsharp.nn import BinaryConv2d

        return [name for name, m in self.named_modules() if isinstance(m, BinaryConv2d) and m.is_binary]

    # ------------------------------------------------------------------ training hooks
    def default_recipe(self) -> dict[str, Any]:
        """A copy of the default training recipe (see :mod:`binsharp.models.recipes`): the registered one
        for a model built by :func:`binsharp.models.create`, the kind's default otherwise."""
        return copy.deepcopy(self.recipe)

    def example_inputs(self, size: int = 64, *, batch: int = 1, ratio: int = 4) -> dict[str, Tensor]:
        """Random inputs for this model's band count (see :func:`example_inputs`)."""
        return example_inputs(self.bands, size, batch=batch, ratio=ratio)

    def extra_repr(self) -> str:
        return f"model_name={self.model_name!r}, bands={self.bands}, kind={self.kind!r}"
