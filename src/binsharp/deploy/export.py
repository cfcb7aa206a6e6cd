"""Export of binsharp networks to the ``.bsp`` engine format (see :mod:`binsharp.deploy.bsp`).

The network is lowered module by module: a module whose type has a registered lowering
(:mod:`binsharp.nn.lowering`) maps to engine ops through it; any other module is traced with
:mod:`torch.fx` and its functions (``+``, ``*``, ``cat``, ``chunk``, ...) map to ops, its children lowered in
turn. The lowerings of :mod:`torch.nn` and :mod:`binsharp.nn` leaf modules (binary and float convolutions,
the per-channel units, norms, activations, pooling, upsampling, Haar transforms) are registered here; model
modules with shape-dependent control flow (the backbone, the U body, the wavelet body, S2BNet's SRM, BNNPan's
units) register theirs next to their definitions. Then a fusion pass folds, into each binary convolution, the
per-channel affine (batch norm), RPReLU/PReLU/LeakyReLU, the residual add and Hardtanh that follow it (the
kernel's fused epilogue), and lets it write the packed input of the next binary convolution.

Binary convolutions: the activation quantizer states its binarization ``sign(x * scale + bias)``
(``export_form``, :class:`binsharp.nn.ActivationQuantizer`; a preceding :class:`~binsharp.nn.ReDistribution`
folds into it); the quantized weights must be ``alpha_o * sign`` per output channel (checked): stored as
packed sign bits + ``alpha``. Weights-only binary convolutions (BiConnect) are float convolutions whose
kernel is stored the same way.
"""

from __future__ import annotations

import json
import operator
import os

import numpy as np
import torch
import torch.fx as fx
from torch import nn

from binsharp.deploy import bsp
from binsharp.deploy.kernels import dense_sign_bits, packing_groups
from binsharp.errors import BinsharpError
from binsharp.nn import BinaryConv2d, HaarDWT, HaarIDWT, LearnableBias, ReDistribution, RPReLU
from binsharp.nn.lowering import as_array, lowering_for, register_lowering


class Builder:
    """Accumulates ops and tensors while lowering."""

    def __init__(self) -> None:
        self.ops: list[dict] = []
        self.tensors: dict[str, np.ndarray] = {}
        self._n = 0

    def name(self, hint: str = "t") -> str:
        self._n += 1
        return f"{hint}{self._n}"

    def tensor(self, arr: np.ndarray, hint: str = "p") -> str:
        n = self.name(hint + ".")
        self.tensors[n] = arr
        return n

    def op(
        self,
        kind: str,
        ins: list[str],
        nout: int = 1,
        attrs: dict | None = None,
        params: dict[str, np.ndarray] | None = None,
    ) -> list[str]:
        outs = [self.name("v") for _ in range(nout)]
        entry = {"op": kind, "in": list(ins), "out": outs, "attrs": attrs or {}, "params": {}}
        for role, arr in (params or {}).items():
            if arr is not None:
                entry["params"][role] = self.tensor(np.ascontiguousarray(arr), f"{kind}.{role}")
        self.ops.append(entry)
        return outs


# ------------------------------------------------------------------------------------- quantizer analysis
def _input_transform(q: nn.Module | None, channels: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(scale, bias) of the binarization ``sign(x * scale + bias)`` done by the activation quantizer ``q``, as
    the quantizer declares it (``export_form``, see :class:`binsharp.nn.ActivationQuantizer`)."""
    if q is None:
        raise BinsharpError("cannot export a convolution with float activations and binary weights as binary")
    form = getattr(q, "export_form", None)
    if form is None:
        raise BinsharpError(
            f"activation quantizer {type(q).__name__} cannot be exported to the packed engine"
        )
    return tuple(None if v is None else as_array(v).reshape(-1) for v in form(channels))  # type: ignore[return-value]


def _binary_weights(conv: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """(sign weights float32 (Co, Ci/g, k, k) in {+1,-1}, alpha (Co,)) from the layer's quantized kernel."""
    with torch.no_grad():
        qw = conv.quantized_weight().detach().to(torch.float32)
    a = qw.abs().flatten(1)
    alpha = a.amax(dim=1)
    if not torch.allclose(a, alpha[:, None].expand_as(a), rtol=1e-5, atol=0):
        raise BinsharpError(
            f"{type(conv).__name__}: quantized kernel is not alpha * sign(W) per output channel"
        )
    signs = torch.where(qw < 0, -1.0, 1.0)
    return as_array(signs), as_array(alpha)


# ---------------------------------------------------------------------------------------------- lowering
class Lowerer:
    """Lowers torch modules to engine ops (see the module docstring)."""

    def __init__(self, builder: Builder) -> None:
        self.b = builder

    # -- dispatch
    def emit(self, module: nn.Module, ins: list[str], name: str = "") -> list[str]:
        """Lower one call of ``module`` on the tensors named ``ins``: its registered lowering
        (:mod:`binsharp.nn.lowering`), else a trace of its forward pass."""
        fn = lowering_for(module)
        if fn is not None:
            return fn(self, module, ins)
        return self.trace(module, ins, name)

    def is_leaf(self, m: nn.Module) -> bool:
        return lowering_for(m) is not None

    def trace(self, module: nn.Module, ins: list[str], name: str = "") -> list[str]:
        lowerer = self

        class _Tracer(fx.Tracer):
            def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:  # noqa: D102
                return lowerer.is_leaf(m)

        try:
            graph = _Tracer().trace(module)
        except Exception as exc:  # noqa: BLE001
            raise BinsharpError(f"cannot export module {name or type(module).__name__}: {exc}") from None
        gm = fx.GraphModule(module, graph)
        env: dict[fx.Node, object] = {}
        placeholders = iter(ins)
        result = None
        for node in graph.nodes:
            if node.op == "placeholder":
                env[node] = next(placeholders)
            elif node.op == "get_attr":
                env[node] = _fetch_attr(gm, node.target)
            elif node.op == "call_module":
                sub = gm.get_submodule(node.target)
                args = [env[a] for a in node.args]
                outs = self.emit(sub, [self._as_name(a) for a in args], f"{name}.{node.target}")
                env[node] = outs[0] if len(outs) == 1 else tuple(outs)
            elif node.op in ("call_function", "call_method"):
                env[node] = self.function(node, env)
            elif node.op == "output":
                result = fx.node.map_arg(node.args[0], lambda n: env[n])
        if isinstance(result, (tuple, list)):
            return [self._as_name(r) for r in result]
        return [self._as_name(result)]

    def _as_name(self, v) -> str:
        if isinstance(v, str):
            return v
        if isinstance(v, torch.Tensor):
            return self.b.op("const", [], params={"value": as_array(v)})[0]
        raise BinsharpError(f"cannot export a value of type {type(v).__name__}")

    # -- functions
    def function(self, node: fx.Node, env: dict):
        t = node.target
        args = fx.node.map_arg(node.args, lambda n: env[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
        if node.op == "call_method":
            t = getattr(torch.Tensor, t)
        if t is operator.getitem:
            obj, idx = args
            if isinstance(obj, (tuple, list)):
                return obj[idx]
            if isinstance(obj, torch.Tensor):
                return obj[idx]
            raise BinsharpError(f"cannot export indexing of a feature map ({node.format_node()})")
        if not _has_name((args, kwargs)):  # constant folding (parameters, scalars)
            return t(*args, **kwargs)
        if t in (
            operator.add,
            torch.add,
            torch.Tensor.add,
            operator.mul,
            torch.mul,
            torch.Tensor.mul,
            operator.truediv,
            torch.div,
            torch.Tensor.div,
            operator.sub,
            torch.sub,
        ):
            return self._binary(t, args[0], args[1])
        if t in (torch.cat, torch.concat):
            seq = args[0]
            dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
            if dim not in (1, -3):
                raise BinsharpError("only channel concatenation can be exported")
            return self.b.op("cat", [self._as_name(s) for s in seq])[0]
        if t in (torch.chunk, torch.Tensor.chunk):
            chunks = kwargs.get("chunks", args[1])
            dim = kwargs.get("dim", args[2] if len(args) > 2 else 0)
            if dim not in (1, -3):
                raise BinsharpError("only channel chunking can be exported")
            return tuple(self.b.op("chunk", [args[0]], nout=int(chunks), attrs={"chunks": int(chunks)}))
        fname = getattr(t, "__name__", str(t))
        if fname == "split_bands":
            return tuple(self.b.op("split_bands", [args[0]], nout=4))
        if fname == "merge_bands":
            return self.b.op("merge_bands", [self._as_name(a) for a in args])[0]
        raise BinsharpError(f"cannot export function {fname} ({node.format_node()})")

    def _binary(self, t, a, b) -> str:
        name = getattr(t, "__name__", "")
        if isinstance(a, str) and isinstance(b, str):
            if "add" in name:
                return self.b.op("add", [a, b])[0]
            if "mul" in name:
                return self.b.op("mul", [a, b])[0]
            if "sub" in name:
                nb = self.b.op("mul_scalar", [b], attrs={"value": -1.0})[0]
                return self.b.op("add", [a, nb])[0]
            raise BinsharpError(f"cannot export elementwise {name} of two feature maps")
        x, c = (a, b) if isinstance(a, str) else (b, a)
        cval = c.detach().cpu() if isinstance(c, torch.Tensor) else torch.tensor(float(c))
        scalar = cval.numel() == 1
        if "truediv" in name or name == "div":
            if not isinstance(a, str) or not scalar:
                raise BinsharpError("only division of a feature map by a scalar can be exported")
            return self.b.op("div_scalar", [x], attrs={"value": float(cval)})[0]
        if "sub" in name:
            if not isinstance(a, str):
                raise BinsharpError("cannot export constant - feature map")
            cval = -cval
            name = "add"
        if scalar:
            kind = "add_scalar" if "add" in name else "mul_scalar"
            return self.b.op(kind, [x], attrs={"value": float(cval)})[0]
        vec = cval.to(torch.float32).reshape(-1).numpy()
        role = "bias" if "add" in name else "scale"
        return self.b.op("affine", [x], params={role: vec})[0]


# ------------------------------------------------------------------- lowerings of torch.nn and binsharp.nn
def _lower_conv(lw: Lowerer, m: nn.Conv2d, ins: list[str], weight: np.ndarray | None = None) -> list[str]:
    _check_conv(m)
    return lw.b.op(
        "conv2d",
        ins,
        attrs={"stride": m.stride[0], "padding": m.padding[0], "groups": m.groups},
        params={
            "weight": as_array(m.weight) if weight is None else weight,
            "bias": None if m.bias is None else as_array(m.bias),
        },
    )


def _lower_binary_conv(lw: Lowerer, m: BinaryConv2d, ins: list[str]) -> list[str]:
    _check_conv(m)
    if m.input_quantizer is None and m.kernel_quantizer is None:
        return _lower_conv(lw, m, ins)
    if not m.is_binary:
        # weights-only binarization (BinaryConnect): a float convolution whose kernel alpha * sign is
        # stored as sign bits + alpha (expanded at load)
        try:
            signs, alpha = _binary_weights(m)
        except BinsharpError:  # not alpha * sign per output channel: the float kernel
            return _lower_conv(lw, m, ins, as_array(m.quantized_weight()))
        return lw.b.op(
            "conv2d",
            ins,
            attrs={
                "stride": m.stride[0],
                "padding": m.padding[0],
                "groups": m.groups,
                "wshape": [int(v) for v in signs.shape],
            },
            params={
                "wsign": dense_sign_bits(signs),
                "alpha": alpha,
                "bias": None if m.bias is None else as_array(m.bias),
            },
        )
    if float(getattr(m, "padding_value", 0.0)) != 0.0:
        raise BinsharpError("binary convolutions with one-padding are not supported by the engine yet")
    signs, alpha = _binary_weights(m)
    scale, bias = _input_transform(m.input_quantizer, m.in_channels)
    k = m.kernel_size[0]
    if m.stride[0] not in (1, 2) or m.padding[0] > 1 and k <= 3 or m.padding[0] > k // 2:
        raise BinsharpError(f"binary convolution stride {m.stride} padding {m.padding} not supported")
    attrs = {
        "cin": m.in_channels,
        "cout": m.out_channels,
        "k": k,
        "stride": m.stride[0],
        "padding": m.padding[0],
        "groups": m.groups,
        "act_first": 1,
        "clamp": None,
        "outputs": [True, False],
        "packed_input": False,
        "pack_groups": 1,
        "wshape": [int(v) for v in signs.shape],
    }
    params = {
        "wsign": dense_sign_bits(signs),
        "alpha": alpha,
        "in_scale": scale,
        "in_bias": bias,
        "bias": None if m.bias is None else as_array(m.bias),
    }
    out = lw.b.op("bconv", ins, nout=2, attrs=attrs, params=params)
    lw.b.ops[-1]["out"][1] = ""
    return [out[0]]


def _lower_bn(lw: Lowerer, m: nn.BatchNorm2d, ins: list[str]) -> list[str]:
    if m.running_mean is None or m.running_var is None:
        raise BinsharpError("BatchNorm without running statistics cannot be exported")
    inv = torch.rsqrt(m.running_var.double() + m.eps)
    w = m.weight.double() if m.weight is not None else torch.ones_like(inv)
    b = m.bias.double() if m.bias is not None else torch.zeros_like(inv)
    s = w * inv
    return lw.b.op(
        "affine", ins, params={"scale": as_array(s), "bias": as_array(b - m.running_mean.double() * s)}
    )


def _lower_avgpool(lw: Lowerer, m: nn.AvgPool2d, ins: list[str]) -> list[str]:
    k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
    s = m.stride if isinstance(m.stride, int) else m.stride[0]
    if s != k or m.padding not in (0, (0, 0)):
        raise BinsharpError("only non-overlapping average pooling can be exported")
    return lw.b.op("avgpool", ins, attrs={"k": int(k)})


def _lower_upsample(lw: Lowerer, m: nn.Upsample, ins: list[str]) -> list[str]:
    sf = m.scale_factor
    sf = sf[0] if isinstance(sf, tuple) else sf
    if m.mode != "bilinear" or float(sf or 0) != 2.0 or m.align_corners:
        raise BinsharpError("only x2 bilinear upsampling (align_corners=False) can be exported")
    return lw.b.op("upsample_bilinear", ins)


def _lower_adaptive_pool(lw: Lowerer, m: nn.AdaptiveAvgPool2d, ins: list[str]) -> list[str]:
    if m.output_size not in (1, (1, 1)):
        raise BinsharpError("only global average pooling (output size 1) can be exported")
    return lw.b.op("mean_hw", ins)


def _vec(t: torch.Tensor) -> np.ndarray:
    return as_array(t).reshape(-1)


for _type, _fn in (
    (nn.Conv2d, _lower_conv),
    (BinaryConv2d, _lower_binary_conv),
    (nn.BatchNorm2d, _lower_bn),
    (nn.AvgPool2d, _lower_avgpool),
    (nn.Upsample, _lower_upsample),
    (nn.AdaptiveAvgPool2d, _lower_adaptive_pool),
    (
        RPReLU,
        lambda lw, m, i: lw.b.op(
            "rprelu", i, params={"gamma": _vec(m.gamma), "slope": _vec(m.slope), "zeta": _vec(m.zeta)}
        ),
    ),
    (nn.PReLU, lambda lw, m, i: lw.b.op("prelu", i, params={"slope": _vec(m.weight)})),
    (nn.LeakyReLU, lambda lw, m, i: lw.b.op("leaky_relu", i, attrs={"slope": float(m.negative_slope)})),
    (nn.ReLU, lambda lw, m, i: lw.b.op("relu", i)),
    (
        nn.Hardtanh,
        lambda lw, m, i: lw.b.op("hardtanh", i, attrs={"lo": float(m.min_val), "hi": float(m.max_val)}),
    ),
    (nn.Identity, lambda lw, m, i: list(i)),
    (LearnableBias, lambda lw, m, i: lw.b.op("affine", i, params={"bias": _vec(m.bias)})),
    (
        ReDistribution,
        lambda lw, m, i: lw.b.op(
            "affine", i, params={"scale": _vec(m.scale), "bias": _vec(m.bias)}, attrs={"redistribution": True}
        ),
    ),
    (HaarDWT, lambda lw, m, i: lw.b.op("haar_dwt", i)),
    (HaarIDWT, lambda lw, m, i: lw.b.op("haar_idwt", i)),
    (
        nn.Linear,
        lambda lw, m, i: lw.b.op(
            "linear",
            i,
            params={"weight": as_array(m.weight), "bias": None if m.bias is None else as_array(m.bias)},
        ),
    ),
    (nn.Sigmoid, lambda lw, m, i: lw.b.op("sigmoid", i)),
    (nn.Tanh, lambda lw, m, i: lw.b.op("tanh", i)),
    (nn.PixelUnshuffle, lambda lw, m, i: lw.b.op("pixel_unshuffle", i, attrs={"r": int(m.downscale_factor)})),
):
    register_lowering(_type, _fn)


def _has_name(obj) -> bool:
    """True when ``obj`` (nested tuples/lists/dicts) holds a feature-map name."""
    if isinstance(obj, str):
        return True
    if isinstance(obj, (tuple, list)):
        return any(_has_name(o) for o in obj)
    if isinstance(obj, dict):
        return any(_has_name(o) for o in obj.values())
    return False


def _fetch_attr(gm: nn.Module, target: str):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj.detach() if isinstance(obj, torch.Tensor) else obj


def _check_conv(m: nn.Conv2d) -> None:
    if m.dilation not in ((1, 1), 1) or m.padding_mode != "zeros" or isinstance(m.padding, str):
        raise BinsharpError("only zero-padded, undilated convolutions with integer padding can be exported")
    if m.kernel_size[0] != m.kernel_size[1] or m.stride[0] != m.stride[1] or m.padding[0] != m.padding[1]:
        raise BinsharpError("only square kernels, strides and paddings can be exported")


# ------------------------------------------------------------------------------------------------- folding
def fold_epilogues(ops: list[dict], tensors: dict[str, np.ndarray], outputs: list[str]) -> list[dict]:
    """Fold per-channel epilogues into binary convolutions and hand packed activations between them."""

    def consumers() -> dict[str, list[int]]:
        c: dict[str, list[int]] = {}
        for i, op in enumerate(ops):
            for n in op["in"]:
                c.setdefault(n, []).append(i)
        for o in outputs:
            c.setdefault(o, []).append(-1)
        return c

    cons = consumers()
    dead: set[int] = set()
    # 1. a ReDistribution / learnable-bias affine feeding only binary convs (with plain sign) becomes their
    #    input transform (the kernel binarizes x * scale + bias exactly as the float graph does)
    for i, op in enumerate(ops):
        bias_only = set(op["params"]) == {"bias"}
        if op["op"] != "affine" or not (op["attrs"].get("redistribution") or bias_only):
            continue
        users = cons.get(op["out"][0], [])
        if users and all(
            u >= 0
            and ops[u]["op"] == "bconv"
            and ops[u]["in"][0] == op["out"][0]
            and not ops[u]["params"].get("in_scale")
            and not ops[u]["params"].get("in_bias")
            for u in users
        ):
            for u in users:
                ops[u]["in"][0] = op["in"][0]
                ops[u]["params"]["in_scale"] = op["params"].get("scale")
                ops[u]["params"]["in_bias"] = op["params"]["bias"]
            dead.add(i)
    ops = [op for i, op in enumerate(ops) if i not in dead]
    # 1b. a per-sample affine ``b + x * k`` (k, b of shape (N, C, 1, 1), e.g. S2BNet's dynamic SRM) feeding
    #     only binary convs becomes their per-sample input transform
    cons = consumers()
    producer = {o: i for i, op in enumerate(ops) for o in op["out"] if o}
    dead = set()
    for i, op in enumerate(ops):
        if op["op"] != "add" or len(op["in"]) != 2:
            continue
        for bi in (0, 1):
            b4, mo = op["in"][bi], op["in"][1 - bi]
            pm, pb = producer.get(mo), producer.get(b4)
            if pm is None or pb is None or ops[pm]["op"] != "mul" or ops[pb]["op"] != "unflatten":
                continue
            if cons.get(mo) != [i]:
                continue
            x, k4 = ops[pm]["in"]
            if producer.get(k4) is None or ops[producer[k4]]["op"] != "unflatten":
                x, k4 = k4, x
                if producer.get(k4) is None or ops[producer[k4]]["op"] != "unflatten":
                    continue
            users = cons.get(op["out"][0], [])
            if not users or not all(
                u >= 0
                and ops[u]["op"] == "bconv"
                and ops[u]["in"][0] == op["out"][0]
                and not ops[u]["params"].get("in_scale")
                and not ops[u]["params"].get("in_bias")
                for u in users
            ):
                continue
            for u in users:
                ops[u]["in"][0] = x
                _set_input(ops[u], "scale_t", k4)
                _set_input(ops[u], "bias_t", b4)
            dead.update((i, pm))
            break
    ops = [op for i, op in enumerate(ops) if i not in dead]
    # 2. epilogue folding
    changed = True
    while changed:
        changed = False
        cons = consumers()
        for i, op in enumerate(ops):
            if op["op"] != "bconv" or op.get("_sealed"):
                continue
            out = op["out"][0]
            users = cons.get(out, [])
            if len(users) != 1 or users[0] < 0:
                op["_sealed"] = True
                continue
            j = users[0]
            nxt = ops[j]
            st = op.setdefault("_stage", 0)  # 0 conv, 1 affine, 2 act, 3 res, 4 clamp, 5 act2, 6 res2, 7 mul
            has_act, has_res = "gamma" in op["params"], "res" in _roles(op)
            ok = False
            if nxt["op"] == "affine" and st < 1 and not nxt["attrs"].get("redistribution"):
                s = nxt["params"].get("scale")
                b = nxt["params"].get("bias")
                co = op["attrs"]["cout"]
                if s is None:
                    s = tensor_of(tensors, np.ones(co, np.float32), "ones")
                if b is None:
                    b = tensor_of(tensors, np.zeros(co, np.float32), "zeros")
                op["params"]["aff_s"], op["params"]["aff_b"] = s, b
                op["_stage"], ok = 1, True
            elif nxt["op"] in ("rprelu", "prelu", "leaky_relu") and not has_act and st < 4:
                co = op["attrs"]["cout"]
                p = nxt["params"]
                if nxt["op"] == "rprelu":
                    g, sl, z = p["gamma"], p["slope"], p["zeta"]
                else:
                    g = tensor_of(tensors, np.zeros(co, np.float32), "zeros")
                    z = g
                    if nxt["op"] == "prelu":
                        sv = tensors[p["slope"]]
                        sl = (
                            p["slope"]
                            if sv.size == co
                            else tensor_of(tensors, np.full(co, sv.reshape(-1)[0], np.float32), "slope")
                        )
                    else:
                        sl = tensor_of(tensors, np.full(co, nxt["attrs"]["slope"], np.float32), "slope")
                op["params"].update(gamma=g, slope=sl, zeta=z)
                op["attrs"]["act_first"] = int(not has_res)
                op["_stage"], ok = 2, True
            elif nxt["op"] == "add" and not has_res and st < 4 and out in nxt["in"]:
                other = nxt["in"][1] if nxt["in"][0] == out else nxt["in"][0]
                if other != out and _defined_before(ops, other, i):
                    _set_input(op, "res", other)
                    op["_stage"], ok = 3, True
            elif nxt["op"] == "hardtanh" and st < 4:
                op["attrs"]["clamp"] = [nxt["attrs"]["lo"], nxt["attrs"]["hi"]]
                op["_stage"], ok = 4, True
            elif nxt["op"] == "rprelu" and has_act and st < 5:  # the second activation
                p = nxt["params"]
                op["params"].update(gamma2=p["gamma"], slope2=p["slope"], zeta2=p["zeta"])
                op["_stage"], ok = 5, True
            elif nxt["op"] == "add" and has_res and st < 6 and out in nxt["in"]:  # a second addend
                other = nxt["in"][1] if nxt["in"][0] == out else nxt["in"][0]
                if other != out and _defined_before(ops, other, i):
                    _set_input(op, "res2", other)
                    op["_stage"], ok = 6, True
            elif nxt["op"] == "mul_scalar" and st < 7:  # then a scaling, last
                op["attrs"]["mul"] = float(nxt["attrs"]["value"])
                op["_stage"], ok = 7, True
            if ok:
                op["out"][0] = nxt["out"][0]
                ops.pop(j)
                changed = True
                break
            op["_sealed"] = True
    # 2b. an RPReLU of a concatenation of binary convolutions' float outputs (read only there, as the
    #     concatenation) becomes the second activation of each convolution, with its channels' parameters
    cons = consumers()
    producer = {o: i for i, op in enumerate(ops) for o in op["out"] if o}
    dead = set()
    for j, cat in enumerate(ops):
        users = cons.get(cat["out"][0], []) if cat["op"] == "cat" else []
        if len(users) != 1 or users[0] < 0 or ops[users[0]]["op"] != "rprelu":
            continue
        parts = [producer.get(n, -1) for n in cat["in"]]
        if len(set(cat["in"])) != len(cat["in"]) or not all(
            k >= 0
            and ops[k]["op"] == "bconv"
            and ops[k]["out"][0] == n
            and cons.get(n) == [j]
            and "gamma2" not in ops[k]["params"]
            for k, n in zip(parts, cat["in"], strict=True)
        ):
            continue
        act = ops[users[0]]
        off = 0
        for k in parts:
            co = ops[k]["attrs"]["cout"]
            for role in ("gamma", "slope", "zeta"):
                v = tensors[act["params"][role]].reshape(-1)[off : off + co].copy()
                ops[k]["params"][role + "2"] = tensor_of(tensors, v, role + "2")
            off += co
        cat["out"][0] = act["out"][0]
        dead.add(users[0])
    ops = [op for i, op in enumerate(ops) if i not in dead]
    # 3. packed hand-over: a bconv whose float output feeds binary convs packs it for the first of them
    cons = consumers()
    for op in ops:
        if op["op"] != "bconv":
            continue
        out = op["out"][0]
        users = [u for u in cons.get(out, []) if u >= 0]
        bus = [
            u
            for u in users
            if ops[u]["op"] == "bconv"
            and ops[u]["in"][0] == out
            and ops[u]["attrs"]["padding"] <= 1
            and "scale_t" not in _roles(ops[u])
        ]
        if not bus:
            continue
        tgt = ops[bus[0]]
        ta = tgt["attrs"]
        pname = out + ".packed"
        op["out"][1] = pname
        op["attrs"]["outputs"][1] = True
        op["attrs"]["pack_groups"] = packing_groups(ta["cin"], ta["cout"], ta["k"], ta["groups"])
        for role, prole in (("in_scale", "pack_scale"), ("in_bias", "pack_bias")):
            if tgt["params"].get(role):
                op["params"][prole] = tgt["params"].pop(role)
        tgt["in"][0] = pname
        ta["packed_input"] = True
        others = [u for u in cons.get(out, []) if u != bus[0]]
        if not others and out not in tgt["in"][1:]:
            op["attrs"]["outputs"][0] = False
            op["out"][0] = ""
    for op in ops:
        op.pop("_sealed", None)
        op.pop("_stage", None)
        for k in [k for k, v in op["params"].items() if v is None]:
            del op["params"][k]
    return ops


def fuse_means(ops: list[dict], outputs: list[str]) -> list[dict]:
    """Take every global mean (``mean_hw``) of a binary convolution's float output, of a concatenation of
    such outputs or of chunks of them from the sums the convolutions' epilogues accumulate (their third
    output, attr ``outputs[2]``) rather than from another pass over the tensor: the mean of a concatenation
    is the concatenation of the means, the mean of a chunk the chunk of the mean (small ops on (N, C, 1, 1)
    tensors, placed before the mean they replace). ``outputs`` is renamed in place."""
    producer = {o: i for i, op in enumerate(ops) for o in op["out"] if o}

    def source(name: str) -> dict:
        i = producer.get(name, -1)
        return ops[i] if i >= 0 else {"op": None}

    def fusable(name: str) -> bool:
        op = source(name)
        if op["op"] == "chunk":
            return fusable(op["in"][0])
        if op["op"] == "cat":
            return all(fusable(n) for n in op["in"])
        return op["op"] == "bconv" and op["out"][0] == name

    memo: dict[str, str] = {}
    kept: list[dict] = []

    def mean_of(name: str) -> str:
        if name not in memo:
            op = source(name)
            if op["op"] == "bconv":
                if len(op["out"]) < 3:
                    op["out"] += [""] * (2 - len(op["out"])) + [name + ".mean"]
                    op["attrs"]["outputs"] = [*op["attrs"].get("outputs", [True, False])[:2], True]
                memo[name] = op["out"][2]
            elif op["op"] == "chunk":
                outs = [o + ".mean" if o else "" for o in op["out"]]
                src = mean_of(op["in"][0])
                kept.append({"op": "chunk", "in": [src], "out": outs, "attrs": {**op["attrs"]}, "params": {}})
                memo.update({o: m for o, m in zip(op["out"], outs, strict=True) if o})
            else:
                parts = [mean_of(n) for n in op["in"]]
                kept.append({"op": "cat", "in": parts, "out": [name + ".mean"], "attrs": {}, "params": {}})
                memo[name] = name + ".mean"
        return memo[name]

    rename: dict[str, str] = {}
    for op in ops:
        op["in"] = [rename.get(n, n) for n in op["in"]]
        if op["op"] == "mean_hw" and fusable(op["in"][0]):
            rename[op["out"][0]] = mean_of(op["in"][0])
        else:
            kept.append(op)
    outputs[:] = [rename.get(n, n) for n in outputs]
    return kept


def _roles(op: dict) -> list[str]:
    """Roles of a bconv's inputs: ``x`` first, then any of ``res``, ``scale_t``, ``bias_t``, ``res2``."""
    return list(op["attrs"].get("in_roles") or ["x", "res"][: len(op["in"])])


def _set_input(op: dict, role: str, name: str) -> None:
    roles = _roles(op)
    if role in roles:
        op["in"][roles.index(role)] = name
    else:
        op["in"].append(name)
        roles.append(role)
    op["attrs"]["in_roles"] = roles


def _defined_before(ops: list[dict], name: str, i: int) -> bool:
    """True when ``name`` is a graph input or produced by an op before index ``i``."""
    for k, op in enumerate(ops):
        if name in op["out"]:
            return k < i
    return True


def tensor_of(tensors: dict[str, np.ndarray], arr: np.ndarray, hint: str) -> str:
    name = f"{hint}.{len(tensors)}"
    while name in tensors:
        name += "_"
    tensors[name] = arr
    return name


def merge_duplicates(ops: list[dict], outputs: list[str]) -> list[dict]:
    """Drop every op that repeats an earlier one (same kind, inputs, attributes and parameters: the same
    results, e.g. a global mean taken twice of one tensor); its readers read the earlier op's outputs.
    ``outputs`` is renamed in place."""
    seen: dict[str, list[str]] = {}
    rename: dict[str, str] = {}
    kept: list[dict] = []
    for op in ops:
        ins = [rename.get(n, n) for n in op["in"]]
        op = {**op, "in": ins}
        key = json.dumps([op["op"], ins, op.get("attrs", {}), op.get("params", {})], sort_keys=True)
        first = seen.get(key)
        if (
            first is not None
            and len(first) == len(op["out"])
            and all(bool(a) == bool(b) for a, b in zip(op["out"], first, strict=True))
        ):
            rename.update({b: a for a, b in zip(first, op["out"], strict=True) if b})
            continue
        seen.setdefault(key, op["out"])
        kept.append(op)
    outputs[:] = [rename.get(n, n) for n in outputs]
    return kept


def _prune(ops: list[dict], tensors: dict[str, np.ndarray], outputs: list[str]) -> tuple[list[dict], dict]:
    """Drop ops whose outputs are unused and tensors no op references."""
    needed = set(outputs)
    kept: list[dict] = []
    for op in reversed(ops):
        if any(o and o in needed for o in op["out"]):
            kept.append(op)
            needed.update(op["in"])
    kept.reverse()
    used = {t for op in kept for t in op["params"].values()}
    return kept, {k: v for k, v in tensors.items() if k in used}


# -------------------------------------------------------------------------------------------------- API
def lower_model(model: nn.Module, *, fold: bool = True) -> bsp.BspModel:
    """Lower a binsharp model (in eval mode) to a :class:`~binsharp.deploy.bsp.BspModel`."""
    model = model.eval()
    b = Builder()
    inputs = list(getattr(model, "inputs", ("lms", "pan")))
    with torch.no_grad():
        lw = Lowerer(b)
        if not lw.is_leaf(model):
            raise BinsharpError(
                f"model {getattr(model, 'model_name', type(model).__name__)!r} cannot be exported "
                "to the engine yet"
            )
        outs = lw.emit(model, inputs, "model")
    outputs = [outs[0]]
    ops, tensors = b.ops, b.tensors
    for op in ops:
        op["params"] = {k: v for k, v in op["params"].items() if v is not None}
    if fold:
        ops = fold_epilogues(ops, tensors, outputs)
        ops = fuse_means(ops, outputs)
    ops = merge_duplicates(ops, outputs)
    ops, tensors = _prune(ops, tensors, outputs)
    bands = int(model.bands)
    meta = {
        "name": str(getattr(model, "model_name", type(model).__name__)),
        "bands": bands,
        "inputs": inputs,
        "config": dict(getattr(model, "config", {}) or {}),
        "kind": str(getattr(model, "kind", "binary")),
    }
    if isinstance(getattr(model, "halo", None), int):
        meta["halo"] = int(model.halo)  # tile context the model asks for (PAN pixels)
    return bsp.BspModel(meta, ops, outputs, tensors)


def export_model(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    meta: dict | None = None,
    storage: str = bsp.DEFAULT_STORAGE,
    overwrite: bool = False,
) -> bsp.BspModel:
    """Export ``model`` to the ``.bsp`` file ``path``; ``meta`` (e.g. checkpoint metadata: ``bits``,
    ``ratio``, ``sensor``) is merged into the file's model metadata; ``storage`` (``fp16``, ``fp32``,
    ``int8``) is the storage of the float tensors (:mod:`binsharp.deploy.bsp`)."""
    m = lower_model(model)
    for key in ("bits", "ratio", "sensor", "dataset"):
        if meta and meta.get(key) is not None:
            m.model[key] = meta[key]
    m.storage = storage
    bsp.save(m, path, overwrite=overwrite)
    return m
