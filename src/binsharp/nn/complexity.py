"""Complexity counter that knows which layers are binary.

``count(model, inputs)`` runs ONE forward pass ``model(**inputs)`` (in eval mode, without gradients; the
training flags are restored afterwards) and reports, per layer and in total, for the inputs as given (pass
a batch of one image to get per-image figures):

* ``bops``: binary multiply-accumulates, i.e. MACs of convolutions / linear layers whose BOTH operands are
  binarized (:class:`~binsharp.nn.layers.BinaryConv2d` / :class:`~binsharp.nn.layers.BinaryLinear` with
  ``is_binary``).
* ``flops``: full-precision MACs (the convention of the binary-network papers: one MAC = one "FLOP"):
  ``nn.Conv*``, ``nn.ConvTranspose*``, ``nn.Linear``, non-binary ``BinaryConv2d`` (float or BiConnect), the
  Haar DWT/IDWT convolutions. Convolution MACs = ``Ho*Wo*Co*(Ci/g)*kh*kw`` per image (any stride, dilation,
  groups); transposed convolution MACs = ``Hin*Win*Ci*(Co/g)*kh*kw``; linear MACs = ``rows * in * out``.
* ``elementwise``: float elementwise work, one op per output element per arithmetic step, reported
  separately from the MACs (the papers omit it). Per module type: bias add 1; per-channel scale ``alpha`` of a
  scaled binary kernel (ScaledSignWeight, IRNetWeight) 1; activation binarization 1; activations (ReLU,
  PReLU, Hardtanh, Sigmoid, Tanh, GELU, ...) 1; softmax 3; LearnableBias 1; RSign 1 (+1 for its sign);
  ReDistribution 2; RPReLU 3; BatchNorm 2 (inference scale + shift); LayerNorm / GroupNorm / InstanceNorm
  4, +2 with an affine transform (mean and variance accumulation, normalisation, affine); pooling
  ``prod(kernel)`` per output element (adaptive pooling: one per input element); interpolation
  (nn.Upsample) nearest 0, (bi/tri)linear 2/4/8, bicubic 16 per output element; reshaping, padding,
  pixel (un)shuffle, dropout and identity 0. Weight quantizers cost 0 (weights are binarized once, offline).
  Function-level work (``x + y`` residual adds, ``torch.sigmoid(x)``, ``x * w``, ``F.interpolate``,
  reductions) cannot be seen by module hooks; it is captured at the ATen level and attributed to the
  innermost running module. When that module has a counting rule, the rule accounts for it; otherwise
  (containers such as ``nn.Sequential`` or a model's own ``forward``, parameter-free helper modules) it is
  reported in a row of type ``functional`` named after that module: pointwise ATen ops count one per
  output element, reductions one per input element, interpolation/pooling/normalisation as above; copies,
  views, concatenation and tensor creation count 0. Work done on weights by parameter-free helper modules
  inside a kernel quantizer is counted the same way (register a zero rule for such a module to treat it
  as offline weight preprocessing).
* ``params_binary`` / ``params_float``: parameters of the modules that ran (each tensor once, even if
  shared). The weight of a layer with a kernel quantizer is binary (1 bit each; BiConnect weights too, as
  they are stored as signs); its bias and every quantizer parameter (``beta``, ...) are float. Buffers
  (Haar filters, Gabor banks, BatchNorm running statistics, EDE schedule) are not parameters and are not
  counted. Parameters of modules that did not run (e.g. a training-only encoder) are not counted; their
  names are listed in ``Report.unused``.
* ``ops = bops / 64 + flops``; ``params = params_binary / 32 + params_float``;
  ``weight_bytes = ceil(params_binary / 8) + 4 * params_float``.

Refusal of silently-uncounted work: every module that owns parameters must have a counting rule (by its
type or a base class), otherwise :class:`~binsharp.errors.BinsharpError` names it. Convolutions and matrix
products executed at the ATen level are compared with the MACs that the rule of the innermost running
module reports; work that no rule accounts for (a functional ``F.conv2d`` in a container, a rule that
undercounts) raises as well (``strict=False`` reports functional convolutions/matrix products as float MACs
in a ``functional`` row instead).
New module types plug in with :func:`register_counter`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.conv import _ConvNd, _ConvTransposeNd
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from binsharp.errors import BinsharpError
from binsharp.nn.layers import (
    BinaryConv2d,
    BinaryLinear,
    LearnableBias,
    ReDistribution,
    RPReLU,
    RSign,
)
from binsharp.nn.quantizers import ActivationQuantizer, WeightQuantizer
from binsharp.nn.wavelets import HaarDWT, HaarIDWT

__all__ = ["OpCount", "LayerRow", "Report", "count", "register_counter", "conv_macs", "linear_macs"]

aten = torch.ops.aten


@dataclass
class OpCount:
    """Work of one call of a module: binary MACs, float MACs, float elementwise ops."""

    bops: int = 0
    flops: int = 0
    elementwise: int = 0


CounterFn = Callable[[nn.Module, tuple, Any], OpCount]
BinaryParamsSpec = Iterable[str] | Callable[[nn.Module], Iterable[str]]


@dataclass
class _Rule:
    fn: CounterFn
    binary_params: BinaryParamsSpec


_RULES: dict[type, _Rule] = {}


def register_counter(module_type: type, fn: CounterFn, *, binary_params: BinaryParamsSpec = ()) -> None:
    """Register (or replace) the counting rule of a module type (applies to its subclasses too).

    Args:
        module_type: an ``nn.Module`` subclass.
        fn: ``fn(module, inputs: tuple, output) -> OpCount`` for one call; ``inputs`` are the positional
            arguments of the call. It accounts for the module's OWN work: child modules are counted by their
            own rules.
        binary_params: names of the module's own parameters that are stored as 1 bit each, or a callable
            ``module -> names``; all other own parameters count as float.
    """
    if not (isinstance(module_type, type) and issubclass(module_type, nn.Module)):
        raise BinsharpError(f"register_counter needs an nn.Module subclass, got {module_type!r}")
    _RULES[module_type] = _Rule(fn, binary_params)


def _rule_for(m: nn.Module) -> _Rule | None:
    for cls in type(m).__mro__:
        rule = _RULES.get(cls)
        if rule is not None:
            return rule
    return None


# -------------------------------------------------------------------------------------- MAC formulas
def _first_tensor(obj: Any) -> Tensor | None:
    if isinstance(obj, Tensor):
        return obj
    if isinstance(obj, (tuple, list)):
        for o in obj:
            t = _first_tensor(o)
            if t is not None:
                return t
    if isinstance(obj, dict):
        for o in obj.values():
            t = _first_tensor(o)
            if t is not None:
                return t
    return None


def conv_macs(m: _ConvNd, x: Tensor, y: Tensor) -> int:
    """MACs of one call of a (transposed) convolution with input ``x`` and output ``y`` (batched or not).

    Convolution: ``N * prod(out_spatial) * Co * (Ci/g) * prod(kernel)``; transposed convolution:
    ``N * prod(in_spatial) * Ci * (Co/g) * prod(kernel)``.
    """
    nd = len(m.kernel_size)
    k = math.prod(m.kernel_size)
    if isinstance(m, _ConvTransposeNd):
        spatial = math.prod(x.shape[-nd:])
        n = x.numel() // (m.in_channels * spatial)
        return n * spatial * m.in_channels * (m.out_channels // m.groups) * k
    spatial = math.prod(y.shape[-nd:])
    n = y.numel() // (m.out_channels * spatial)
    return n * spatial * m.out_channels * (m.in_channels // m.groups) * k


def linear_macs(m: nn.Linear, y: Tensor) -> int:
    """MACs of one call of a linear layer: ``rows * in_features * out_features``."""
    return (y.numel() // m.out_features) * m.in_features * m.out_features


def _scaled(q: nn.Module | None) -> bool:
    """Whether a kernel quantizer (or any module inside a composed one) applies a per-channel scale."""
    return q is not None and any(bool(getattr(m, "scaled", False)) for m in q.modules())


def _count_conv(m: nn.Module, inputs: tuple, y: Any) -> OpCount:
    x, out = _first_tensor(inputs), _first_tensor(y)
    macs = conv_macs(m, x, out)  # type: ignore[arg-type]
    ew = out.numel() if m.bias is not None else 0  # type: ignore[union-attr]
    return OpCount(flops=macs, elementwise=ew)


def _count_binary_layer(m: nn.Module, inputs: tuple, y: Any) -> OpCount:
    x, out = _first_tensor(inputs), _first_tensor(y)
    if isinstance(m, BinaryLinear):
        macs = linear_macs(m, out)  # type: ignore[arg-type]
    else:
        macs = conv_macs(m, x, out)  # type: ignore[arg-type]
    ew = out.numel() * ((m.bias is not None) + _scaled(m.kernel_quantizer))  # type: ignore[union-attr]
    if m.is_binary:  # type: ignore[union-attr]
        return OpCount(bops=macs, elementwise=ew)
    return OpCount(flops=macs, elementwise=ew)


def _binary_layer_params(m: nn.Module) -> tuple[str, ...]:
    return ("weight",) if getattr(m, "kernel_quantizer", None) is not None else ()


def _count_linear(m: nn.Module, inputs: tuple, y: Any) -> OpCount:
    out = _first_tensor(y)
    return OpCount(flops=linear_macs(m, out), elementwise=out.numel() if m.bias is not None else 0)  # type: ignore


def _count_haar(m: nn.Module, inputs: tuple, y: Any) -> OpCount:
    x, out = _first_tensor(inputs), _first_tensor(y)
    # depthwise 2x2 filters, one input channel per output channel (DWT) / per input channel (IDWT)
    n = out.numel() if isinstance(m, HaarDWT) else x.numel()  # type: ignore[union-attr]
    return OpCount(flops=4 * n)


def _per_output(k: int) -> CounterFn:
    def fn(m: nn.Module, inputs: tuple, y: Any) -> OpCount:
        out = _first_tensor(y)
        return OpCount(elementwise=k * (out.numel() if out is not None else 0))

    return fn


def _per_input(k: int) -> CounterFn:
    def fn(m: nn.Module, inputs: tuple, y: Any) -> OpCount:
        x = _first_tensor(inputs)
        return OpCount(elementwise=k * (x.numel() if x is not None else 0))

    return fn


def _count_norm(m: nn.Module, inputs: tuple, y: Any) -> OpCount:
    out = _first_tensor(y)
    affine = bool(getattr(m, "affine", False) or getattr(m, "elementwise_affine", False))
    return OpCount(elementwise=(6 if affine else 4) * out.numel())  # type: ignore[union-attr]


def _count_pool(m: nn.Module, inputs: tuple, y: Any) -> OpCount:
    out = _first_tensor(y)
    ks = m.kernel_size  # type: ignore[attr-defined]
    nd = out.dim() - 2 if out.dim() > 2 else 1  # type: ignore[union-attr]
    k = math.prod(ks) if isinstance(ks, (tuple, list)) else int(ks) ** nd
    return OpCount(elementwise=k * out.numel())  # type: ignore[union-attr]


_INTERP_COST = {"nearest": 0, "nearest-exact": 0, "linear": 2, "bilinear": 4, "trilinear": 8, "bicubic": 16}


def _count_upsample(m: nn.Module, inputs: tuple, y: Any) -> OpCount:
    out = _first_tensor(y)
    return OpCount(elementwise=_INTERP_COST.get(m.mode, 4) * out.numel())  # type: ignore


def _zero(m: nn.Module, inputs: tuple, y: Any) -> OpCount:
    return OpCount()


def _register_defaults() -> None:
    register_counter(_ConvNd, _count_conv)
    register_counter(BinaryConv2d, _count_binary_layer, binary_params=_binary_layer_params)
    register_counter(BinaryLinear, _count_binary_layer, binary_params=_binary_layer_params)
    register_counter(nn.Linear, _count_linear)
    register_counter(HaarDWT, _count_haar)
    register_counter(HaarIDWT, _count_haar)
    register_counter(ActivationQuantizer, _per_output(1))
    register_counter(WeightQuantizer, _zero)
    register_counter(LearnableBias, _per_output(1))
    register_counter(RSign, _per_output(1))
    register_counter(ReDistribution, _per_output(2))
    register_counter(RPReLU, _per_output(3))
    for t in (
        nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
        nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus, nn.Softsign,
        nn.Tanhshrink, nn.Threshold, nn.LogSigmoid,
    ):  # fmt: skip
        register_counter(t, _per_output(1))
    for t in (nn.Softmax, nn.LogSoftmax, nn.Softmax2d):
        register_counter(t, _per_output(3))
    register_counter(nn.modules.batchnorm._BatchNorm, _per_output(2))
    for t in (nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm):
        register_counter(t, _count_norm)
    for t in (nn.modules.pooling._AvgPoolNd, nn.modules.pooling._MaxPoolNd):
        register_counter(t, _count_pool)
    for t in (nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd):
        register_counter(t, _per_input(1))
    register_counter(nn.Upsample, _count_upsample)
    for t in (
        nn.Identity, nn.Flatten, nn.Unflatten, nn.PixelShuffle, nn.PixelUnshuffle, nn.ChannelShuffle,
        nn.modules.dropout._DropoutNd, nn.modules.padding._ConstantPadNd, nn.modules.padding._ReflectionPadNd,
        nn.modules.padding._ReplicationPadNd, nn.ZeroPad2d,
    ):  # fmt: skip
        register_counter(t, _zero)


_register_defaults()


# ------------------------------------------------------------------------------------------- report
@dataclass
class LayerRow:
    """One row of the per-layer table (totals over all calls of the module).

    ``type`` is the module's class name, or ``functional`` for ATen-level work attributed to a module
    without a rule; ``note`` says for binary layers whether they run ``binary``, with ``binary weights``
    only (BiConnect) or in ``float``.
    """

    name: str
    type: str
    calls: int
    output_shape: tuple[int, ...] | None
    bops: int = 0
    flops: int = 0
    elementwise: int = 0
    params_binary: int = 0
    params_float: int = 0
    note: str = ""


@dataclass
class Report:
    """Complexity of one forward pass (see the module docstring for the conventions).

    Integer fields: ``bops``, ``flops``, ``elementwise``, ``params_binary``, ``params_float``,
    ``weight_bytes``; float fields: ``ops = bops/64 + flops``, ``params = params_binary/32 + params_float``.
    ``per_layer``: list of :class:`LayerRow`; ``inputs``: name -> shape of the inputs used; ``unused``:
    modules that own parameters but did not run (not counted).
    """

    bops: int
    flops: int
    elementwise: int
    params_binary: int
    params_float: int
    weight_bytes: int
    ops: float
    params: float
    per_layer: list[LayerRow] = field(default_factory=list)
    inputs: dict[str, tuple[int, ...]] = field(default_factory=dict)
    unused: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-serialisable) of all fields, ``per_layer`` as a list of dicts."""
        d = asdict(self)
        d["inputs"] = {k: list(v) for k, v in self.inputs.items()}
        for row in d["per_layer"]:
            if row["output_shape"] is not None:
                row["output_shape"] = list(row["output_shape"])
        return d

    def table(self, *, max_name: int = 40) -> str:
        """Per-layer table and totals as printable text (like larq's model summary)."""
        head = ("Layer", "Type", "Output shape", "BOPs", "FLOPs", "Elementwise", "Bin params", "FP params")
        rows = []
        for r in self.per_layer:
            name = r.name if len(r.name) <= max_name else "..." + r.name[-(max_name - 3) :]
            shape = "x".join(map(str, r.output_shape)) if r.output_shape is not None else "-"
            if r.calls > 1:
                shape += f" (x{r.calls})"
            rows.append(
                (name, f"{r.type} ({r.note})" if r.note else r.type, shape)
                + tuple(f"{v:,}" for v in (r.bops, r.flops, r.elementwise, r.params_binary, r.params_float))
            )
        total = ("Total", "", "") + tuple(
            f"{v:,}" for v in (self.bops, self.flops, self.elementwise, self.params_binary, self.params_float)
        )
        widths = [max(len(str(c)) for c in col) for col in zip(head, *rows, total, strict=True)]
        align = ["<", "<", "<", ">", ">", ">", ">", ">"]

        def fmt(cells: tuple) -> str:
            return "  ".join(f"{c:{a}{w}}" for c, a, w in zip(cells, align, widths, strict=True))

        sep = "-" * len(fmt(head))
        lines = [fmt(head), sep, *(fmt(r) for r in rows), sep, fmt(total), sep]
        ins = ", ".join(f"{k}={'x'.join(map(str, v))}" for k, v in self.inputs.items())
        lines += [
            f"Inputs: {ins}",
            f"OPs = BOPs/64 + FLOPs = {self.ops:,.0f} ({self.ops / 1e9:.4f} G)",
            f"Elementwise float ops (not in OPs): {self.elementwise:,} ({self.elementwise / 1e9:.4f} G)",
            f"Params = binary/32 + float = {self.params:,.1f} ({self.params / 1e3:.2f} K); "
            f"binary {self.params_binary:,}, float {self.params_float:,}",
            f"Weight memory: {self.weight_bytes:,} bytes ({self.weight_bytes / 1024:.2f} KiB; "
            f"1 bit per binary weight, 4 bytes per float parameter)",
        ]
        if self.unused:
            lines.append(f"Not run (not counted): {', '.join(self.unused)}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


# ------------------------------------------------------------------------------------- ATen tracking
_IGNORED_POINTWISE = {aten.clone, aten.copy_, aten._to_copy, aten.lift_fresh, aten.detach}
_EXPLICIT_FUNCTIONAL: dict[Any, int] = {
    aten._prelu_kernel: 1,
    aten._softmax: 3,
    aten._log_softmax: 3,
    aten.native_layer_norm: 6,
    aten.native_group_norm: 6,
    aten._native_batch_norm_legit_no_training: 2,
    aten.native_batch_norm: 2,
    aten.upsample_nearest2d: 0,
    aten.upsample_linear1d: 2,
    aten.upsample_bilinear2d: 4,
    aten.upsample_trilinear3d: 8,
    aten.upsample_bicubic2d: 16,
}


def _numel(obj: Any) -> int:
    t = _first_tensor(obj)
    return t.numel() if t is not None else 0


class _Tracker(TorchDispatchMode):
    """Attributes ATen-level MACs and functional elementwise ops to the innermost running module."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, bool]] = []  # (module name, has a rule)
        self.macs: dict[str, int] = {}  # innermost counted module (or uncounted innermost module) -> MACs
        self.func_elementwise: dict[str, int] = {}
        self.func_macs: dict[str, int] = {}

    def _owner(self) -> tuple[str, bool]:
        """The innermost running module and whether it has a counting rule."""
        return self.stack[-1] if self.stack else ("", False)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func.overloadpacket
        owner, counted = self._owner()
        formula = flop_registry.get(packet)
        if formula is not None:
            macs = int(formula(*args, **kwargs, out_val=out)) // 2
            if counted:
                self.macs[owner] = self.macs.get(owner, 0) + macs
            else:
                self.func_macs[owner] = self.func_macs.get(owner, 0) + macs
            return out
        if counted:
            return out
        ew = 0
        if packet in _EXPLICIT_FUNCTIONAL:
            ew = _EXPLICIT_FUNCTIONAL[packet] * _numel(out)
        elif packet in _IGNORED_POINTWISE:
            ew = 0
        elif torch.Tag.pointwise in func.tags:
            ew = _numel(out)
        elif torch.Tag.reduction in func.tags:
            ew = _numel(args[0]) if args else 0
        elif packet in (aten.avg_pool2d, aten.max_pool2d_with_indices, aten._adaptive_avg_pool2d):
            ew = _numel(args[0])
        if ew:
            self.func_elementwise[owner] = self.func_elementwise.get(owner, 0) + ew
        return out


# -------------------------------------------------------------------------------------------- count
def _is_descendant(name: str, ancestor: str) -> bool:
    return ancestor == "" or name == ancestor or name.startswith(ancestor + ".")


def _binary_names(rule: _Rule, m: nn.Module) -> set[str]:
    spec = rule.binary_params
    return set(spec(m) if callable(spec) else spec)


def count(model: nn.Module, inputs: dict[str, Any], *, strict: bool = True) -> Report:
    """Count BOPs, FLOPs, elementwise ops and binary/float parameters of one forward pass.

    Args:
        model: the network; called as ``model(**inputs)`` (binsharp models: ``ms``, ``lms``, ``pan``).
        inputs: keyword inputs, e.g. ``{"lms": (1, 8, 256, 256) tensor, "pan": (1, 1, 256, 256) tensor}``.
            Figures are for the inputs as given: use a batch of one for per-image figures.
        strict: raise when convolution / matrix-product MACs are executed outside the modules whose rules
            account for them; with ``False`` they are reported as float MACs in ``functional`` rows.

    Returns:
        :class:`Report`.

    Raises:
        BinsharpError: a module owning parameters has no counting rule (the message names it), or
            convolution / matrix work is not accounted for (``strict``), or ``inputs`` is not a dict.
    """
    if not isinstance(inputs, dict):
        raise BinsharpError(
            f"count(model, inputs): inputs must be a dict of keyword tensors, not {type(inputs).__name__}"
        )
    named = list(model.named_modules())
    rules: dict[str, _Rule | None] = {}
    refused = []
    for name, m in named:
        rule = _rule_for(m)
        rules[name] = rule
        own = [n for n, _ in m.named_parameters(recurse=False)]
        if rule is None and own:
            refused.append(f"'{name or '(model)'}' ({type(m).__name__}; parameters {', '.join(own)})")
    if refused:
        raise BinsharpError(
            "complexity.count: no counting rule for module(s) "
            + "; ".join(refused)
            + ". Register one with binsharp.nn.complexity.register_counter(ModuleType, fn)."
        )

    tracker = _Tracker()
    calls: dict[str, int] = {}
    work: dict[str, OpCount] = {}
    shapes: dict[str, tuple[int, ...] | None] = {}
    handles = []

    def make_hooks(name: str, m: nn.Module, rule: _Rule | None):
        def pre(mod: nn.Module, args: tuple) -> None:
            tracker.stack.append((name, rule is not None))

        def post(mod: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            tracker.stack.pop()
            if output is None:  # also reached when the forward raised (always_call)
                return
            calls[name] = calls.get(name, 0) + 1
            out = _first_tensor(output)
            shapes[name] = tuple(out.shape) if out is not None else None
            if rule is not None:
                c = rule.fn(mod, args if args else tuple(kwargs.values()), output)
                w = work.setdefault(name, OpCount())
                w.bops += int(c.bops)
                w.flops += int(c.flops)
                w.elementwise += int(c.elementwise)

        return pre, post

    for name, m in named:
        pre, post = make_hooks(name, m, rules[name])
        handles.append(m.register_forward_pre_hook(pre))
        handles.append(m.register_forward_hook(post, with_kwargs=True, always_call=True))

    modes = {m: m.training for _, m in named}
    try:
        model.eval()
        with torch.no_grad(), tracker:
            model(**inputs)
    finally:
        for h in handles:
            h.remove()
        for m, t in modes.items():
            m.train(t)

    # compare ATen-level MACs with what the rules report
    problems = []
    for name, macs in tracker.macs.items():
        w = work.get(name, OpCount())
        if macs > w.bops + w.flops:
            problems.append(
                f"'{name or '(model)'}' executed {macs:,} convolution/matrix MACs but its counting rule "
                f"reports {w.bops + w.flops:,}"
            )
    for name, macs in tracker.func_macs.items():
        if macs and strict:
            problems.append(
                f"{macs:,} convolution/matrix MACs executed functionally inside '{name or '(model)'}' "
                "(not by a counted module)"
            )
    if problems:
        raise BinsharpError(
            "complexity.count: uncounted work: "
            + "; ".join(problems)
            + ". Wrap the computation in a counted module or register a counter (register_counter)"
            + ("" if not tracker.func_macs else ", or pass strict=False to count functional MACs as float")
            + "."
        )

    # parameters: own parameters of modules that ran, each tensor once
    seen: set[int] = set()
    rows: list[LayerRow] = []
    unused: list[str] = []
    # functional rows are emitted after the module's subtree (named_modules is pre-order)
    pending: list[tuple[str, LayerRow]] = []

    def flush(upto: str | None) -> None:
        while pending and (upto is None or not _is_descendant(upto, pending[-1][0])):
            rows.append(pending.pop()[1])

    for name, m in named:
        flush(name)
        own = list(m.named_parameters(recurse=False))
        ran = calls.get(name, 0) > 0
        pb = pf = 0
        if own and not ran:
            unused.append(name or "(model)")
        rule = rules[name]
        if ran and own:
            binary = _binary_names(rule, m) if rule is not None else set()
            for pname, p in own:
                if id(p) in seen:
                    continue
                seen.add(id(p))
                if pname in binary:
                    pb += p.numel()
                else:
                    pf += p.numel()
        label = name or "(model)"
        if ran and rule is not None:
            w = work.get(name, OpCount())
            row = LayerRow(label, type(m).__name__, calls[name], shapes.get(name))
            row.bops, row.flops, row.elementwise = w.bops, w.flops, w.elementwise
            row.params_binary, row.params_float = pb, pf
            if isinstance(m, (BinaryConv2d, BinaryLinear)):
                weights_only = m.kernel_quantizer is not None
                row.note = "binary" if m.is_binary else ("binary weights" if weights_only else "float")
            rows.append(row)
        fe = tracker.func_elementwise.get(name, 0)
        fm = tracker.func_macs.get(name, 0)
        if fe or fm:
            pending.append((name, LayerRow(label, "functional", calls.get(name, 0), None, 0, fm, fe, 0, 0)))
    flush(None)

    bops = sum(r.bops for r in rows)
    flops = sum(r.flops for r in rows)
    elementwise = sum(r.elementwise for r in rows)
    params_binary = sum(r.params_binary for r in rows)
    params_float = sum(r.params_float for r in rows)
    in_shapes = {k: tuple(v.shape) for k, v in inputs.items() if isinstance(v, Tensor)}
    return Report(
        bops=bops,
        flops=flops,
        elementwise=elementwise,
        params_binary=params_binary,
        params_float=params_float,
        weight_bytes=(params_binary + 7) // 8 + 4 * params_float,
        ops=bops / 64 + flops,
        params=params_binary / 32 + params_float,
        per_layer=rows,
        inputs=in_shapes,
        unused=unused,
    )
