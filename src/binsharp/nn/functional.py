"""Functional core of the binarization library.

Every binarizer has the same forward, :func:`sign` (``+1`` where ``x >= 0``, ``-1`` elsewhere, so
``sign(0) = +1``; this matches the packed engine where bit 1 <=> value < 0), and differs only in the
surrogate gradient used in the backward pass (straight-through estimators, STE). Each STE is a single
:class:`torch.autograd.Function` with one fused expression per pass, which keeps binary-emulated training
close to the cost of the same network in float.

All functions accept tensors of any shape and return a tensor of the same shape and dtype.

========================  =====================================================================
function                  backward ``d out / d x``
========================  =====================================================================
:func:`sign`              none (no gradient; use one of the STEs below for training)
:func:`sign_ste`          ``1[|x| <= 1]`` (clip STE; BNN, XNOR-Net, BTM)
:func:`approx_sign`       ``2 + 2x`` on ``[-1, 0)``, ``2 - 2x`` on ``[0, 1)``, else 0 (Bi-Real)
:func:`ede_sign`          ``k t (1 - tanh^2(t x))`` (IR-Net error decay estimator)
:func:`scalable_tanh_sign` ``beta (1 - tanh^2(beta x))``, ``beta`` learnable (BiSRNet)
:func:`identity_ste`      ``1`` (identity straight-through)
:func:`scaled_sign_ste`   weights: forward ``alpha_o sign(W)``, backward ``1[|W| <= 1]``
========================  =====================================================================
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from binsharp import native

__all__ = [
    "sign",
    "sign_ste",
    "approx_sign",
    "ede_sign",
    "ede_schedule",
    "scalable_tanh_sign",
    "identity_ste",
    "scaled_sign_ste",
    "rprelu",
]


#: elements below which an op stays in PyTorch: the call into the compiled kernels costs about 20 us
COMPILED_MIN_NUMEL = 1 << 14


def _compiled_cpu(x: Tensor, *others: Tensor) -> bool:
    """True when the compiled CPU kernels (:mod:`binsharp.native`) run an op on ``x`` and ``others``:
    float32, on the CPU, the kernels built, ``x`` contiguous (another layout, e.g. channels-last, keeps
    PyTorch's form and its layout) and large enough (:data:`COMPILED_MIN_NUMEL`) for the call to pay."""
    return (
        x.numel() >= COMPILED_MIN_NUMEL
        and x.is_contiguous()
        and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in (x, *others))
        and native.have_kernels()
    )


def _channel_values(t: Tensor) -> np.ndarray:
    """A per-channel parameter, (C,) or (1, C, 1, ...), as a (C,) float32 array (no copy when contiguous)."""
    return t.detach().reshape(-1).numpy()


def sign(x: Tensor) -> Tensor:
    """Binary sign with the project convention: ``+1`` where ``x >= 0``, ``-1`` elsewhere.

    Unlike :func:`torch.sign`, ``sign(0) = +1`` (and ``sign(-0.0) = +1``). NaN maps to ``+1`` (``NaN < 0``
    is false), exactly like the packed engine's bit test ``value < 0``. No gradient flows through it.

    Args:
        x: tensor of any shape (floating point).

    Returns:
        Tensor of the same shape and dtype holding ``+1`` / ``-1``.
    """
    x = x.detach()
    if _compiled_cpu(x):  # one pass
        return torch.from_numpy(native.sign(x.numpy(), threads=torch.get_num_threads()))
    # one comparison written straight into a float buffer, then 1 - 2*[x < 0] in place (several times faster
    # on CPU than masked_fill / where)
    return torch.lt(x, 0, out=torch.empty_like(x)).mul_(-2.0).add_(1.0)


_BOUNDS: dict[torch.dtype, float] = {}


def _outer_one(dtype: torch.dtype) -> float:
    """The largest representable value below -1 (for ``dtype``, or float32 for narrower types), so that the
    exclusive bounds of ``hardtanh_backward`` give the inclusive clip-STE mask ``|x| <= 1``."""
    b = _BOUNDS.get(dtype)
    if b is None:
        ref = torch.float64 if dtype == torch.float64 else torch.float32
        b = float(torch.nextafter(torch.tensor(-1.0, dtype=ref), torch.tensor(-2.0, dtype=ref)))
        _BOUNDS[dtype] = b
    return b


def _clip_grad(grad: Tensor, x: Tensor) -> Tensor:
    """``grad * 1[|x| <= 1]`` in one fused kernel."""
    lo = _outer_one(x.dtype)
    return torch.ops.aten.hardtanh_backward(grad, x, lo, -lo)


def _quarter_sech2_times(grad: Tensor, x: Tensor, two_t: float | Tensor) -> Tensor:
    """``grad * (1 - tanh^2(t x)) / 4``, computed as ``grad * s * (1 - s)`` with ``s = sigmoid(2 t x)``
    (the same function; sigmoid is several times cheaper than tanh on CPU and has no cancellation for large
    ``|t x|``). ``two_t`` is ``2 t`` (a float or a tensor broadcastable to ``x``). Callers fold the factor 4
    into their own scaling, which saves a pass over the tensor."""
    s = torch.mul(x, two_t).sigmoid_()
    return torch.ops.aten.sigmoid_backward(grad, s)


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return sign(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return _clip_grad(grad, x)


class _ApproxSign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return sign(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        if _compiled_cpu(x, grad) and grad.is_contiguous():  # one pass, the same float32 steps
            g = native.approx_sign_backward(
                x.detach().numpy(), grad.detach().numpy(), threads=torch.get_num_threads()
            )
            return torch.from_numpy(g)
        # 2 + 2x on [-1, 0), 2 - 2x on [0, 1), 0 elsewhere  ==  max(0, 2 - 2|x|)
        return x.abs().mul_(-2.0).add_(2.0).clamp_(min=0.0).mul_(grad)


class _EDESign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, t: float, k: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.t = t
        ctx.k = k
        return sign(x)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        t, k = ctx.t, ctx.k
        return _quarter_sech2_times(grad, x, 2.0 * t).mul_(4.0 * k * t), None, None


class _ScalableTanhSign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, beta: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, beta)
        return sign(x)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, beta = ctx.saved_tensors
        per_channel = x.dim() >= 2 and (
            beta.numel() == 1 or tuple(beta.shape) == (1, x.shape[1]) + (1,) * (x.dim() - 2)
        )
        if per_channel and _compiled_cpu(x, beta, grad):  # one pass: grad_x and the per-plane sums for beta
            g_x, sums = native.tanh_sign_backward(
                x.detach().numpy(),
                grad.detach().numpy(),
                _channel_values(beta),
                threads=torch.get_num_threads(),
            )
            grad_beta = None
            if ctx.needs_input_grad[1]:
                total = sums.sum() if beta.numel() == 1 else sums.sum(axis=0)
                grad_beta = torch.from_numpy(np.asarray(4.0 * total, dtype=np.float32)).reshape(beta.shape)
            return (torch.from_numpy(g_x) if ctx.needs_input_grad[0] else None), grad_beta
        e = _quarter_sech2_times(grad, x, 2.0 * beta)  # grad (1 - tanh^2(beta x)) / 4
        grad_beta = None
        if ctx.needs_input_grad[1]:
            if beta.numel() == 1:
                grad_beta = torch.dot(e.reshape(-1), x.reshape(-1)).mul_(4.0).reshape(beta.shape)
            else:
                g = e * x
                # reduce the broadcast dimensions back to beta's shape
                extra = g.dim() - beta.dim()
                if extra > 0:
                    g = g.sum(dim=tuple(range(extra)))
                dims = tuple(i for i, n in enumerate(beta.shape) if n == 1 and g.shape[i] != 1)
                grad_beta = (g.sum(dim=dims, keepdim=True) if dims else g).mul_(4.0)
        grad_x = e.mul_(4.0 * beta) if ctx.needs_input_grad[0] else None
        return grad_x, grad_beta


class _ScaledSignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w: Tensor, scale_grad: bool) -> Tensor:  # type: ignore[override]
        alpha = w.abs().mean(dim=tuple(range(1, w.dim())), keepdim=True)
        ctx.save_for_backward(w, alpha if scale_grad else None)
        return sign(w).mul_(alpha)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        w, alpha = ctx.saved_tensors
        g = _clip_grad(grad, w)
        return (g if alpha is None else g * alpha), None


class _IdentitySTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        return sign(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        return grad


def sign_ste(x: Tensor) -> Tensor:
    """Clip straight-through sign: forward :func:`sign`, backward ``1[|x| <= 1]`` (boundaries pass).

    Args:
        x: tensor of any shape.

    Returns:
        ``+1/-1`` tensor of the same shape and dtype.
    """
    return _SignSTE.apply(x)


def approx_sign(x: Tensor) -> Tensor:
    """Bi-Real ApproxSign: forward :func:`sign`, backward ``max(0, 2 - 2|x|)``.

    That is the derivative of the piecewise quadratic ``-1`` (x < -1), ``2x + x^2`` (-1 <= x < 0),
    ``2x - x^2`` (0 <= x < 1), ``1`` (x >= 1): ``2 + 2x`` on ``[-1, 0)``, ``2 - 2x`` on ``[0, 1)``,
    0 elsewhere.

    Args:
        x: tensor of any shape.
    """
    return _ApproxSign.apply(x)


def ede_schedule(progress: float, t_min: float = 0.1, t_max: float = 10.0) -> tuple[float, float]:
    """IR-Net error-decay-estimator schedule.

    ``t = t_min * 10^(progress * log10(t_max / t_min))`` and ``k = max(1/t, 1)``, with
    ``progress = epoch / total_epochs`` in ``[0, 1]``.

    Returns:
        ``(t, k)`` as Python floats.
    """
    progress = min(max(float(progress), 0.0), 1.0)
    t = t_min * 10.0 ** (progress * math.log10(t_max / t_min))
    return t, max(1.0 / t, 1.0)


def ede_sign(x: Tensor, t: float, k: float) -> Tensor:
    """IR-Net EDE sign: forward :func:`sign`, backward ``k t (1 - tanh^2(t x))``.

    Args:
        x: tensor of any shape.
        t, k: schedule values (see :func:`ede_schedule`).
    """
    return _EDESign.apply(x, float(t), float(k))


def scalable_tanh_sign(x: Tensor, beta: Tensor) -> Tensor:
    """Scalable-tanh sign (BiSRNet): forward :func:`sign`, backward ``beta (1 - tanh^2(beta x))``.

    ``beta`` receives the gradient ``sum(grad * x * (1 - tanh^2(beta x)))`` over the broadcast dimensions.

    Args:
        x: tensor of any shape, e.g. (B, C, H, W).
        beta: tensor broadcastable to ``x`` (a scalar, or (1, C, 1, 1) for per-channel beta).
    """
    return _ScalableTanhSign.apply(x, beta)


def scaled_sign_ste(w: Tensor, scale_grad: bool = False) -> Tensor:
    """Scaled weight sign: forward ``alpha_o * sign(W)`` with ``alpha_o = mean |W_o|`` over all dimensions but
    the first (detached); backward ``1[|W| <= 1]`` (clip STE as in the Bi-Real / ReActNet reference code), or
    ``alpha_o * 1[|W| <= 1]`` with ``scale_grad=True``.

    Args:
        w: weight (O, ...), e.g. (O, I/groups, kh, kw) or (O, I).
    """
    return _ScaledSignSTE.apply(w, bool(scale_grad))


def identity_ste(x: Tensor) -> Tensor:
    """Sign with an identity straight-through gradient (backward ``1`` everywhere)."""
    return _IdentitySTE.apply(x)


class _RPReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, gamma: Tensor, slope: Tensor, zeta: Tensor) -> Tensor:  # type: ignore[override]
        ctx.compiled = _compiled_cpu(x, gamma, slope, zeta)
        if ctx.compiled:  # one pass, the float32 steps of the form below; x is kept instead of x - gamma
            ctx.save_for_backward(x, gamma, slope)
            vals = [_channel_values(p) for p in (gamma, slope, zeta)]
            return torch.from_numpy(
                native.rprelu(x.detach().numpy(), *vals, keep_nan=True, threads=torch.get_num_threads())
            )
        s = x - gamma
        ctx.save_for_backward(s, slope)
        return F.prelu(s, slope).add_(zeta)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        need_x, need_gamma, need_slope, need_zeta = ctx.needs_input_grad
        if ctx.compiled and _compiled_cpu(grad):
            x, gamma, slope = ctx.saved_tensors
            g_x, sums = native.rprelu_backward(
                x.detach().numpy(),
                grad.detach().numpy(),
                _channel_values(gamma),
                _channel_values(slope),
                threads=torch.get_num_threads(),
            )
            per_channel = torch.from_numpy(sums.sum(axis=0).astype(np.float32))  # (C, 3)
            shape = gamma.shape
            g_gamma = per_channel[:, 0].neg().reshape(shape) if need_gamma else None
            g_slope = per_channel[:, 1].reshape(slope.shape) if need_slope else None
            g_zeta = per_channel[:, 2].reshape(shape) if need_zeta else None
            return (torch.from_numpy(g_x) if need_x else None), g_gamma, g_slope, g_zeta
        if ctx.compiled:  # a gradient the kernels cannot take (e.g. another dtype under autocast)
            x, gamma, slope = ctx.saved_tensors
            s = x - gamma
        else:
            s, slope = ctx.saved_tensors
        dims = (0,) + tuple(range(2, s.dim()))
        sl = slope.view((1, -1) + (1,) * (s.dim() - 2)).to(s.dtype)
        # one fused pass: g_s = grad * (1 if s > 0 else slope), g_w = grad * s where s <= 0 (0 elsewhere);
        # under autocast the incoming gradient may be narrower than the saved activation
        g_s, g_w = torch.ops.aten._prelu_kernel_backward(grad.to(s.dtype), s, sl)
        g_slope = g_w.sum(dim=dims).to(slope.dtype) if need_slope else None
        g_zeta = grad.sum(dim=dims, keepdim=True) if need_zeta else None
        g_gamma = g_s.sum(dim=dims, keepdim=True).neg_() if need_gamma else None
        return (g_s if need_x else None), g_gamma, g_slope, g_zeta


def _plane_scale(x: Tensor, scale: Tensor) -> bool:
    """True when ``x`` is (N, C, H, W) and ``scale`` one value per plane: (N, C, 1, 1) or (1, C, 1, 1)."""
    if x.dim() != 4 or scale.dim() != 4:
        return False
    return scale.shape[0] in (1, x.shape[0]) and tuple(scale.shape[1:]) == (x.shape[1], 1, 1)


class _ChannelAffine(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, scale: Tensor, bias: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, scale)
        ctx.bias_shape = bias.shape
        return torch.addcmul(bias, x, scale)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, scale = ctx.saved_tensors
        need_x, need_scale, need_bias = ctx.needs_input_grad
        if _plane_scale(x, scale) and _compiled_cpu(x, scale, grad):  # one pass
            n, c = x.shape[:2]
            k = scale.detach().reshape(scale.shape[0], c).expand(n, c).numpy()
            g_x, sums = native.affine_backward(
                x.detach().numpy(), grad.detach().numpy(), k, threads=torch.get_num_threads()
            )
            planes = torch.from_numpy(sums.astype(np.float32))  # (N, C, 2)
            g_scale = planes[..., 0, None, None].sum_to_size(scale.shape) if need_scale else None
            g_bias = planes[..., 1, None, None].sum_to_size(ctx.bias_shape) if need_bias else None
            return (torch.from_numpy(g_x) if need_x else None), g_scale, g_bias
        g_x = grad * scale if need_x else None
        g_scale = (grad * x).sum_to_size(scale.shape) if need_scale else None
        g_bias = grad.sum_to_size(ctx.bias_shape) if need_bias else None
        return g_x, g_scale, g_bias


def channel_affine(x: Tensor, scale: Tensor, bias: Tensor) -> Tensor:
    """``x * scale + bias`` per sample and channel (``torch.addcmul(bias, x, scale)``), with a one-pass
    backward on the CPU (the input gradient and the per-plane sums the scale and bias gradients are made of).

    Args:
        x: (B, C, H, W) activations.
        scale, bias: (B, C, 1, 1) or (1, C, 1, 1).

    Returns:
        (B, C, H, W).
    """
    return _ChannelAffine.apply(x, scale, bias)


def rprelu(x: Tensor, gamma: Tensor, slope: Tensor, zeta: Tensor) -> Tensor:
    """RPReLU ``PReLU_c(x - gamma_c) + zeta_c`` with a fused backward.

    Args:
        x: (B, C, ...) activations.
        gamma, zeta: (1, C, 1, ...) shifts before and after the PReLU.
        slope: (C,) negative slopes.

    Returns:
        (B, C, ...).
    """
    return _RPReLU.apply(x, gamma, slope, zeta)
