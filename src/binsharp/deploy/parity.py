"""Parity of the packed engine with PyTorch, with rounding ties told apart from export errors.

A binary network is a discontinuous function of its activations: a pre-activation within rounding error of
the binarization threshold takes either sign depending on the summation order, and the layers after it
(a U body, a global mean) can spread that one flip over the image. So "engine output == PyTorch output" is
the wrong test on real weights; these three are the right ones:

(a) decision-forced parity: the engine, fed PyTorch's binarization decisions at every binary convolution,
    reproduces PyTorch's output (what is left is float rounding only);
(b) first-generation flips: in that forced run, every decision the engine would have taken differently
    from PyTorch (where everything upstream was forced, so the inputs of the layer agree up to rounding)
    has a PyTorch pre-activation inside a tie band around the threshold;
(c) the quality indexes of the engine's own (unforced) output equal PyTorch's.

:func:`record` runs the PyTorch model and keeps, per binary convolution in call order, the decisions and
the pre-activation ``x * scale + bias`` whose sign is taken (the quantizer's ``export_form``);
:func:`forced_run` runs an :class:`~binsharp.deploy.runtime.Engine` with those decisions forced and lists
the first-generation flips. Arrays are normalised (DN / (2**bits - 1)), (N, C, H, W) float32.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from binsharp.deploy import kernels as K
from binsharp.deploy.runtime import Engine
from binsharp.errors import BinsharpError
from binsharp.nn import BinaryConv2d

__all__ = ["TIE_BAND", "Flips", "Parity", "Recording", "compare", "forced_run", "record"]

#: tie band of a first-generation flip: ``|pre-activation| <= TIE_BAND * max |pre-activation of the layer|``,
#: i.e. 8 float32 ulps at the layer's scale (what two summation orders of the same float32 values differ by)
TIE_BAND = 2.0**-20
#: quality indexes compared by :func:`compare`
INDEXES = ("q2n", "sam", "ergas")


@dataclass
class Recording:
    """PyTorch's output and, per binary convolution in call order, its decisions and pre-activations."""

    output: np.ndarray
    negative: list[np.ndarray] = field(default_factory=list)  # bool (N, C, H, W): decision -1
    pre: list[np.ndarray] = field(default_factory=list)  # float32 (N, C, H, W): x * scale + bias


@dataclass
class Flips:
    """First-generation sign flips of one binary convolution (index in call order)."""

    layer: int
    count: int
    max_abs_pre: float  # largest |pre-activation| (PyTorch) among the flipped decisions
    scale: float  # largest |pre-activation| of the layer (the magnitude its rounding acts on)

    @property
    def in_tie_band(self) -> bool:
        """True when every flipped decision lies within :data:`TIE_BAND` of the threshold."""
        return self.max_abs_pre <= TIE_BAND * self.scale


@dataclass
class Parity:
    """Engine against PyTorch on one input (:func:`compare`); differences in DN."""

    max_diff: float  # free-running engine: max |engine - PyTorch|
    frac_over_1dn: float  # free-running engine: fraction of values more than 1 DN apart
    forced_max_diff: float  # (a) decision-forced engine: max |engine - PyTorch|
    flips: list[Flips]  # (b) first-generation flips
    torch_indexes: dict[str, float]  # (c) PyTorch's Q2n, SAM, ERGAS
    engine_indexes: dict[str, float]  # (c) the free-running engine's


def record(model: nn.Module, inputs: dict[str, torch.Tensor]) -> Recording:
    """Run ``model`` (eval mode, no gradients) on ``inputs`` and record every binary convolution's input
    binarization: the decisions its quantizer takes and the pre-activations (the quantizer's
    ``export_form`` applied to the input, in the input's dtype)."""
    negative: list[np.ndarray] = []
    pre: list[np.ndarray] = []

    def hook(mod: BinaryConv2d, args: tuple, out: torch.Tensor) -> None:
        if not mod.is_binary:
            return
        x = args[0]
        q = mod.input_quantizer
        scale, bias = q.export_form(x.shape[1])  # type: ignore[union-attr, operator]
        p = x if scale is None else x * scale.to(x.dtype).reshape(1, -1, 1, 1)
        p = p if bias is None else p + bias.to(x.dtype).reshape(1, -1, 1, 1)
        negative.append((q(x) < 0).numpy())  # type: ignore[misc]
        pre.append(p.to(torch.float32).numpy())

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, BinaryConv2d)]
    try:
        with torch.no_grad():
            out = model.eval()(**inputs)
    finally:
        for h in handles:
            h.remove()
    return Recording(out.to(torch.float32).numpy(), negative, pre)


def forced_run(
    engine: Engine, inputs: dict[str, np.ndarray], rec: Recording
) -> tuple[np.ndarray, list[Flips]]:
    """Run ``engine`` with the decisions of ``rec`` forced at every binary convolution.

    Returns the output and, per binary convolution whose own decisions differ from PyTorch's, its
    first-generation :class:`Flips`. Raises :class:`BinsharpError` when the engine's binary convolutions do
    not match the recorded ones in number and shape.
    """
    flips: list[Flips] = []
    seen = 0

    def force(at: dict, packed: K.Packed) -> K.Packed:
        nonlocal seen
        i = seen
        seen += 1
        if i >= len(rec.negative) or rec.negative[i].shape != packed.shape:
            raise BinsharpError(f"binary convolution {i} of the engine does not match the PyTorch model")
        want = rec.negative[i]
        diff = (packed.signs() < 0) != want
        if diff.any():
            p = np.abs(rec.pre[i])
            flips.append(Flips(i, int(diff.sum()), float(p[diff].max()), float(p.max())))
        return K.pack_activations(
            np.where(want, np.float32(-1), np.float32(1)), groups=packed.groups, halo=packed.halo
        )

    previous = engine.on_binary_input
    engine.on_binary_input = force
    try:
        out = engine(**inputs)
    finally:
        engine.on_binary_input = previous
    if seen != len(rec.negative):
        raise BinsharpError(
            f"the engine ran {seen} binary convolutions, the PyTorch model {len(rec.negative)}"
        )
    return out, flips


def compare(
    model: nn.Module,
    engine: Engine,
    inputs: dict[str, np.ndarray],
    gt: np.ndarray,
    *,
    bits: int = 11,
    ratio: int = 4,
) -> Parity:
    """Run ``model`` (PyTorch) and ``engine`` on the normalised ``inputs`` of one image (batch 1) and compare
    them: free-running and decision-forced outputs, first-generation flips, and the reduced-resolution
    Q2n, SAM and ERGAS of both against ``gt`` (C, H, W) in DN."""
    from binsharp.metrics import reduced_resolution

    dn = float(2**bits - 1)
    rec = record(model, {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.items()})
    free = engine(**inputs)
    forced, flips = forced_run(engine, inputs, rec)
    d = np.abs(free - rec.output) * dn

    def indexes(out: np.ndarray) -> dict[str, float]:
        q = reduced_resolution(out[0].astype(np.float64) * dn, gt, ratio=ratio, bits=bits)
        return {k: float(q[k]) for k in INDEXES}

    return Parity(
        max_diff=float(d.max()),
        frac_over_1dn=float((d > 1).mean()),
        forced_max_diff=float(np.abs(forced - rec.output).max() * dn),
        flips=flips,
        torch_indexes=indexes(rec.output),
        engine_indexes=indexes(free),
    )
