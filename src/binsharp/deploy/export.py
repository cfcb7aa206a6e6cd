"""Export of binsharp networks to the ``.bsp`` engine format (see :mod:`binsharp.deploy.bsp`).

The network is lowered module by module: known leaf modules (binary and float convolutions, the per-channel
units, norms, activations, pooling, upsampling, Haar transforms) map to engine ops; containers and blocks
are traced with :mod:`torch.fx` and their functions (``+``, ``*``, ``cat``, ``chunk``, ...) map to ops;
modules with shape-dependent control flow (the backbone, the U body, the wavelet body) have explicit
lowerings. Then a fusion pass folds, into each binary convolution, the per-channel affine (batch norm),
RPReLU/PReLU/LeakyReLU, the residual add and Hardtanh that follow it (the kernel's fused epilogue), and
lets it write the packed input of the next binary convolution.

Binary convolutions: the activation quantizer must be a sign (+1 at 0) of ``x``, ``x + b`` (RSign), or a
per-channel ``k x + b`` (a preceding :class:`~binsharp.nn.ReDistribution`); the quantized weights must be
``alpha_o * sign`` per output channel (checked): stored as packed sign bits + float32 ``alpha``.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable

import numpy as np
import torch
import torch.fx as fx
from torch import nn

from binsharp.deploy import bsp
from binsharp.deploy.kernels import dense_sign_bits
from binsharp.errors import BinsharpError


def _np(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().to(torch.float32).numpy())


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
    return tuple(None if v is None else _np(v).reshape(-1) for v in form(channels))  # type: ignore[return-value]


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
    return _np(signs), _np(alpha)


# ---------------------------------------------------------------------------------------------- lowering
class Lowerer:
    """Lowers torch modules to engine ops (see the module docstring)."""

    def __init__(self, builder: Builder) -> None:
        self.b = builder
        self.converters: dict[type, Callable] = {}
        self._register_defaults()

    # -- dispatch
    def emit(self, module: nn.Module, ins: list[str], name: str = "") -> list[str]:
        for cls in type(module).__mro__:
            fn = self.converters.get(cls)
            if fn is not None:
                return fn(module, ins)
        for cls in type(module).__mro__:
            by_name = self.converters.get(cls.__name__)  # type: ignore[call-overload]
            if by_name is not None:
                return by_name(module, ins)
        return self.trace(module, ins, name)

    def is_leaf(self, m: nn.Module) -> bool:
        return any(c in self.converters or c.__name__ in self.converters for c in type(m).__mro__)

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
            return self.b.op("const", [], params={"value": _np(v)})[0]
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

    # -- leaf converters
    def _register_defaults(self) -> None:
        from binsharp.nn import BinaryConv2d, HaarDWT, HaarIDWT, LearnableBias, ReDistribution, RPReLU

        c = self.converters
        c[BinaryConv2d] = self._binary_conv
        c[nn.Conv2d] = self._conv
        c[RPReLU] = lambda m, i: self.b.op(
            "rprelu",
            i,
            params={
                "gamma": _np(m.gamma).reshape(-1),
                "slope": _np(m.slope).reshape(-1),
                "zeta": _np(m.zeta).reshape(-1),
            },
        )
        c[nn.PReLU] = lambda m, i: self.b.op("prelu", i, params={"slope": _np(m.weight).reshape(-1)})
        c[nn.LeakyReLU] = lambda m, i: self.b.op("leaky_relu", i, attrs={"slope": float(m.negative_slope)})
        c[nn.ReLU] = lambda m, i: self.b.op("relu", i)
        c[nn.Hardtanh] = lambda m, i: self.b.op(
            "hardtanh", i, attrs={"lo": float(m.min_val), "hi": float(m.max_val)}
        )
        c[nn.Identity] = lambda m, i: list(i)
        c[LearnableBias] = lambda m, i: self.b.op("affine", i, params={"bias": _np(m.bias).reshape(-1)})
        c[ReDistribution] = lambda m, i: self.b.op(
            "affine",
            i,
            params={"scale": _np(m.scale).reshape(-1), "bias": _np(m.bias).reshape(-1)},
            attrs={"redistribution": True},
        )
        c[nn.BatchNorm2d] = self._bn
        c[nn.AvgPool2d] = self._avgpool
        c[nn.Upsample] = self._upsample
        c[HaarDWT] = lambda m, i: self.b.op("haar_dwt", i)
        c[HaarIDWT] = lambda m, i: self.b.op("haar_idwt", i)
        c["ChannelLayerNorm"] = lambda m, i: self.b.op(
            "layernorm_c",
            i,
            attrs={"eps": float(m.norm.eps)},
            params={"weight": _np(m.norm.weight), "bias": _np(m.norm.bias)},
        )
        c["BinaryPanBackbone"] = self._backbone
        c["BinaryUNetBody"] = self._unet
        c["WaveletBody"] = self._wavelet
        c["WeightedSum"] = lambda m, i: self._weighted_sum(m.weight, i)
        c[nn.Linear] = lambda m, i: self.b.op(
            "linear", i, params={"weight": _np(m.weight), "bias": None if m.bias is None else _np(m.bias)}
        )
        c[nn.Sigmoid] = lambda m, i: self.b.op("sigmoid", i)
        c[nn.Tanh] = lambda m, i: self.b.op("tanh", i)
        c[nn.PixelUnshuffle] = lambda m, i: self.b.op(
            "pixel_unshuffle", i, attrs={"r": int(m.downscale_factor)}
        )
        c[nn.AdaptiveAvgPool2d] = self._adaptive_pool
        c["DynamicSRM"] = self._dynamic_srm
        c["GaborActivationFilter"] = self._gabor_activation
        c["BNNPan"] = self._bnnpan
        c["PIBF"] = self._pibf
        c["BinaryWaveletConv"] = self._bwtc
        c["StatisticsRestandardization"] = self._restd
        c["LatentPriorModulation"] = self._ldpc
        c["ChannelCalibration"] = self._cdc
        c["LatentEncoder"] = self._latent_encoder
        c["LatentDiffusionPrior"] = self._prior

    def _conv(self, m: nn.Conv2d, ins, weight: np.ndarray | None = None):
        _check_conv(m)
        return self.b.op(
            "conv2d",
            ins,
            attrs={"stride": m.stride[0], "padding": m.padding[0], "groups": m.groups},
            params={
                "weight": _np(m.weight) if weight is None else weight,
                "bias": None if m.bias is None else _np(m.bias),
            },
        )

    def _binary_conv(self, m, ins):
        _check_conv(m)
        if m.input_quantizer is None and m.kernel_quantizer is None:
            return self._conv(m, ins)
        if not m.is_binary:
            # weights-only binarization (BinaryConnect): a float convolution whose kernel alpha * sign is
            # stored as sign bits + alpha (expanded at load)
            try:
                signs, alpha = _binary_weights(m)
            except BinsharpError:  # not alpha * sign per output channel: the float kernel
                return self._conv(m, ins, _np(m.quantized_weight()))
            return self.b.op(
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
                    "bias": None if m.bias is None else _np(m.bias),
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
            "bias": None if m.bias is None else _np(m.bias),
        }
        out = self.b.op("bconv", ins, nout=2, attrs=attrs, params=params)
        self.b.ops[-1]["out"][1] = ""
        return [out[0]]

    def _bn(self, m: nn.BatchNorm2d, ins):
        if m.running_mean is None:
            raise BinsharpError("BatchNorm without running statistics cannot be exported")
        inv = torch.rsqrt(m.running_var.double() + m.eps)
        w = m.weight.double() if m.weight is not None else torch.ones_like(inv)
        b = m.bias.double() if m.bias is not None else torch.zeros_like(inv)
        s = w * inv
        return self.b.op(
            "affine", ins, params={"scale": _np(s), "bias": _np(b - m.running_mean.double() * s)}
        )

    def _avgpool(self, m: nn.AvgPool2d, ins):
        k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
        s = m.stride if isinstance(m.stride, int) else m.stride[0]
        if s != k or m.padding not in (0, (0, 0)):
            raise BinsharpError("only non-overlapping average pooling can be exported")
        return self.b.op("avgpool", ins, attrs={"k": int(k)})

    def _upsample(self, m: nn.Upsample, ins):
        sf = m.scale_factor
        sf = sf[0] if isinstance(sf, tuple) else sf
        if m.mode != "bilinear" or float(sf or 0) != 2.0 or m.align_corners:
            raise BinsharpError("only x2 bilinear upsampling (align_corners=False) can be exported")
        return self.b.op("upsample_bilinear", ins)

    # -- structured modules
    def _backbone(self, m, ins):
        lms, pan = ins
        x = self.b.op("cat", [lms, pan])[0]
        if m.input_scale != 1.0:
            x = self.b.op("mul_scalar", [x], attrs={"value": float(m.input_scale)})[0]
        f0 = self.emit(m.head, [x], "head")[0]
        body = self.emit(m.body, [f0], "body")[0]
        f = self.b.op("add", [body, f0])[0]
        out = self.emit(m.tail, [f], "tail")[0]
        if m.input_scale != 1.0:
            out = self.b.op("div_scalar", [out], attrs={"value": float(m.input_scale)})[0]
        return self.b.op("add", [lms, out])

    def _unet(self, m, ins):
        x0 = ins[0]
        x = self.b.op("pad_to_multiple", [x0], attrs={"m": 2**m.stages})[0]
        fea = self.emit(m.embedding, [x], "embedding")[0]
        skips = []
        for i, (block, down) in enumerate(m.encoder):
            fea = self.emit(block, [fea], f"encoder{i}.block")[0]
            skips.append(fea)
            fea = self.emit(down, [fea], f"encoder{i}.down")[0]
        fea = self.emit(m.bottleneck, [fea], "bottleneck")[0]
        for i, (up, fuse, block) in enumerate(m.decoder):
            fea = self.emit(up, [fea], f"decoder{i}.up")[0]
            fea = self.b.op("cat", [fea, skips[m.stages - 1 - i]])[0]
            fea = self.emit(fuse, [fea], f"decoder{i}.fuse")[0]
            fea = self.emit(block, [fea], f"decoder{i}.block")[0]
        out = self.emit(m.mapping, [fea], "mapping")[0]
        return self.b.op("crop_like", [out, x0])

    def _adaptive_pool(self, m, ins):
        size = m.output_size
        if size not in (1, (1, 1)):
            raise BinsharpError("only global average pooling (output size 1) can be exported")
        return self.b.op("mean_hw", ins)

    def _dynamic_srm(self, m, ins):
        """``k(x) * x + b(x)``: per-sample coefficients from the global mean (S2BNet SRM)."""
        x = ins[0]
        s = self.b.op("flatten", self.b.op("mean_hw", [x]))[0]
        h = self.emit(m.act, self.emit(m.fc1, [s]))[0]
        kr, br = self.b.op("chunk", self.emit(m.fc2, [h]), nout=2, attrs={"chunks": 2})
        k = self.b.op("add_scalar", self.b.op("tanh", [kr]), attrs={"value": 1.0})[0]
        b = self.b.op("tanh", [br])[0]
        k4 = self.b.op("unflatten", [k])[0]
        b4 = self.b.op("unflatten", [b])[0]
        return self.b.op("add", [b4, self.b.op("mul", [x, k4])[0]])

    def _gabor_activation(self, m, ins):
        g = m.gabor.bank.to(torch.float32) * m.lam
        k = g.shape[-1]
        y = self.b.op(
            "conv2d",
            ins,
            attrs={"stride": 1, "padding": k // 2, "groups": int(g.shape[0])},
            params={"weight": _np(g)},
        )[0]
        return self.b.op("add", [ins[0], y])

    # -- BNNPan
    def _bnnpan(self, m, ins):
        lms, pan = ins
        lms_p = self.b.op("pad_to_multiple", [lms], attrs={"m": int(m.multiple), "mode": "replicate"})[0]
        pan_p = self.b.op("pad_to_multiple", [pan], attrs={"m": int(m.multiple), "mode": "replicate"})[0]
        z = self.emit(m.prior, [pan_p, lms_p], "prior")[0] if m.prior is not None else None
        f = self.emit(m.head, [self.b.op("cat", [pan_p, lms_p])[0]], "head")[0]
        for i, pibf in enumerate(m.body):
            f = self._pibf(pibf, [f] + ([z] if z is not None else []), f"body.{i}")[0]
        out = self.b.op("add", [self.emit(m.tail, [f], "tail")[0], lms_p])[0]
        return self.b.op("crop_like", [out, lms])

    def _pibf(self, m, ins, name: str = "pibf"):
        y = self.emit(m.bwtc, [ins[0]], f"{name}.bwtc")[0]
        y_mod = self._ldpc(m.ldpc, [y, ins[1]])[0] if m.ldpc is not None else y
        return self._cdc(m.cdc, [y_mod, y])

    def _bwtc(self, m, ins):
        if m.dwt is None:
            return self.emit(m.bands[0], ins, "band")
        sub = self.b.op("split_bands", [self.b.op("haar_dwt", ins)[0]], nout=4)
        outs = [
            self.emit(nbc, [s], f"band{i}")[0] for i, (nbc, s) in enumerate(zip(m.bands, sub, strict=True))
        ]
        return self.b.op("haar_idwt", self.b.op("merge_bands", outs))

    def _stats(self, x: str, eps: float) -> tuple[str, str]:
        mu, sd = self.b.op("stats", [x], nout=2, attrs={"eps": float(eps)})
        return mu, sd

    def _restd(self, m, ins):
        """``(sd_f / lam) * (xb - mu_b) / sd_b + mu_f + eta`` in the PyTorch evaluation order."""
        xb, xf = ins
        mu_b, sd_b = self._stats(xb, m.eps)
        mu_f, sd_f = self._stats(xf, m.eps)
        lam = self.b.op("const", [], params={"value": _np(m.lam)})[0]
        eta = self.b.op("const", [], params={"value": _np(m.eta)})[0]
        r = self.b.op("div", [sd_f, lam])[0]
        d = self.b.op("sub", [xb, mu_b])[0]
        t = self.b.op("div", [self.b.op("mul", [r, d])[0], sd_b])[0]
        return self.b.op("add", [self.b.op("add", [t, mu_f])[0], eta])

    def _ldpc(self, m, ins):
        y, z = ins
        zz = self.b.op("unflatten", self.emit(m.linear, [z]))[0]
        zw, zb = self.b.op("chunk", [zz], nout=2, attrs={"chunks": 2})
        if m.offset:
            zw = self.b.op("add_scalar", [zw], attrs={"value": float(m.offset)})[0]
        return self.b.op("add", [self.b.op("mul", [y, zw])[0], zb])

    def _cdc(self, m, ins):
        y_mod, y = ins
        mu, sd = self._stats(y_mod, m.eps)
        am = self.b.op("flatten", self.b.op("mean_hw", self.b.op("abs", [y_mod])))[0]
        stats = self.b.op("cat", [am, self.b.op("flatten", [mu])[0], self.b.op("flatten", [sd])[0]])[0]
        w = self.b.op("unflatten", self.emit(m.gate, self.emit(m.linear, [stats])))[0]
        return self.b.op("add", [self.b.op("mul", [w, y_mod])[0], y])

    def _latent_encoder(self, m, ins):
        x = self.emit(m.unshuffle, ins)[0]
        x = self.emit(m.features, [x])[0]
        x = self.b.op("flatten", self.emit(m.pool, [x]))[0]
        return self.emit(m.mlp, [x])

    def _prior(self, m, ins):
        """Inference path of the latent diffusion prior: seeded noise, T deterministic reverse steps."""
        pan, lms = ins
        c = self.emit(m.condition, [self.b.op("cat", [pan, lms])[0]], "prior.condition")[0]
        g = torch.Generator().manual_seed(m.noise_seed)
        noise = torch.randn(1, m.latent_dim, generator=g, dtype=torch.float32)
        z = self.b.op("broadcast_rows", [self.b.op("const", [], params={"value": _np(noise)})[0], c])[0]
        for i in reversed(range(m.timesteps)):
            t = self.b.op("fill_rows", [c], attrs={"value": float(np.float32((i + 1) / m.timesteps))})[0]
            x0 = self.emit(m.denoiser.net, [self.b.op("cat", [c, t, z])[0]], "prior.denoiser")[0]
            if i > 0:
                a = self.b.op("mul_scalar", [x0], attrs={"value": float(m._coef1[i])})[0]
                bb = self.b.op("mul_scalar", [z], attrs={"value": float(m._coef2[i])})[0]
                z = self.b.op("add", [a, bb])[0]
            else:
                z = x0
        return [z]

    def _weighted_sum(self, weight: torch.Tensor, ins: list[str]) -> list[str]:
        w = weight.detach().to(torch.float32).reshape(-1)
        if w.numel() != len(ins):
            raise BinsharpError("weighted sum: weight count does not match the inputs")
        acc = self.b.op("mul_scalar", [ins[0]], attrs={"value": float(w[0])})[0]
        for i in range(1, len(ins)):
            t = self.b.op("mul_scalar", [ins[i]], attrs={"value": float(w[i])})[0]
            acc = self.b.op("add", [acc, t])[0]
        return [acc]

    def _wavelet(self, m, ins):
        x0 = ins[0]
        x = self.b.op("pad_to_multiple", [x0], attrs={"m": 2})[0]
        ll, lh, hl, hh = self.b.op("split_bands", [self.b.op("haar_dwt", [x])[0]], nout=4)
        stages = [ll]
        for i, blk in enumerate(m.low):
            stages.append(self.emit(blk, [stages[-1]], f"low{i}")[0])
        if hasattr(m, "low_sum"):
            acc = self.emit(m.low_sum, stages, "low_sum")[0]
        else:
            acc = self._weighted_sum(m.low_weights, stages)[0]
        high = self.b.op("cat", [lh, hl, hh])[0]
        h2 = self.emit(m.high, [high], "high")[0]
        high = self.b.op("add", [h2, high])[0]
        lh2, hl2, hh2 = self.b.op("chunk", [high], nout=3, attrs={"chunks": 3})
        merged = self.b.op("merge_bands", [acc, lh2, hl2, hh2])[0]
        out = self.b.op("haar_idwt", [merged])[0]
        return self.b.op("crop_like", [out, x0])


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


# ------------------------------------------------------------------------------------------------- fusion
def fuse(ops: list[dict], tensors: dict[str, np.ndarray], outputs: list[str]) -> list[dict]:
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
            st = op.setdefault("_stage", 0)  # 0 conv, 1 affine, 2 act, 3 res, 4 clamp
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
            if ok:
                op["out"][0] = nxt["out"][0]
                ops.pop(j)
                changed = True
                break
            op["_sealed"] = True
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
        dw = ta["groups"] > 1 and ta["groups"] == ta["cin"] == ta["cout"]
        pname = out + ".packed"
        op["out"][1] = pname
        op["attrs"]["outputs"][1] = True
        op["attrs"]["pack_groups"] = 1 if dw else ta["groups"]
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


def _roles(op: dict) -> list[str]:
    """Roles of a bconv's inputs: ``x`` first, then any of ``res``, ``scale_t``, ``bias_t``."""
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
def lower_model(model: nn.Module, *, fuse_ops: bool = True) -> bsp.BspModel:
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
    if fuse_ops:
        ops = fuse(ops, tensors, outputs)
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
