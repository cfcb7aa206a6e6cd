"""Binary layers and the small per-channel units of the binary restoration family.

* :class:`BinaryConv2d` / :class:`BinaryLinear`: a convolution / linear layer composed from an
  ``input_quantizer`` and a ``kernel_quantizer`` (larq style). With both ``None`` it is an ordinary float
  layer; with both set it is a binary layer (``is_binary``), whose multiply-accumulates are XNOR-popcounts
  in the packed engine; with only a kernel quantizer (BiConnect) the weights are binary but the MACs are
  float.
* :class:`LearnableBias`, :class:`RSign`, :class:`ReDistribution`, :class:`RPReLU`: per-channel affine
  units on (B, C, H, W) activations.
* :func:`clip_latent_weights` / :func:`attach_latent_clipping`: latent weight clipping for quantizers that
  declare ``latent_clip`` (:class:`~binsharp.nn.quantizers.BNNWeight`).
* :func:`set_progress`: advance the training-progress schedules (EDE) of every module in a model.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from binsharp.errors import BinsharpError
from binsharp.nn import functional as BF
from binsharp.nn.quantizers import ApproxSign, get_quantizer

__all__ = [
    "BinaryConv2d",
    "BinaryLinear",
    "LearnableBias",
    "RSign",
    "ReDistribution",
    "RPReLU",
    "clip_latent_weights",
    "attach_latent_clipping",
    "set_progress",
]


def _is_binary(input_quantizer: nn.Module | None, kernel_quantizer: nn.Module | None) -> bool:
    return (
        input_quantizer is not None
        and kernel_quantizer is not None
        and bool(getattr(input_quantizer, "binary", True))
        and bool(getattr(kernel_quantizer, "binary", True))
    )


class BinaryConv2d(nn.Conv2d):
    """2-D convolution composed from an input quantizer and a kernel quantizer.

    ``y = conv2d(pad(q_in(x), padding_value), q_k(W)) + bias``.

    Padding is applied AFTER the input binarization: with the default ``padding_value = 0`` the padded
    taps contribute 0 (neither +1 nor -1), exactly like ``F.conv2d(q_in(x), q_k(W), padding=p)``; the packed
    engine corrects its XNOR-popcount for those taps to match. ``padding_value = 1.0`` gives "one padding"
    (padded taps are +1), which is free in the packed engine.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias: as
            :class:`torch.nn.Conv2d` (only zero-valued constant padding, ``padding_mode="zeros"``).
        input_quantizer: activation quantizer (module, name, or ``None`` for float activations).
        kernel_quantizer: weight quantizer (module, name, or ``None`` for float weights).
        padding_value: constant used for the padded border of the (binarized) input.

    Shapes: x (B, in_channels, H, W) -> (B, out_channels, Ho, Wo), Ho/Wo as :class:`torch.nn.Conv2d`.

    Attributes:
        is_binary: True iff both quantizers are set (both operands binarized -> BOPs).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = False,
        input_quantizer: nn.Module | str | None = None,
        kernel_quantizer: nn.Module | str | None = None,
        padding_value: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=bias,
            padding_mode="zeros",
            device=device,
            dtype=dtype,
        )
        self.input_quantizer = get_quantizer(input_quantizer)
        self.kernel_quantizer = get_quantizer(kernel_quantizer)
        self.padding_value = float(padding_value)
        if self.padding_value != 0.0 and isinstance(padding, str):
            raise BinsharpError("BinaryConv2d: padding_value != 0 needs an explicit integer padding")
        clip = _latent_clip_of(self.kernel_quantizer)
        if clip is not None:
            with torch.no_grad():
                self.weight.clamp_(*clip)

    @property
    def is_binary(self) -> bool:
        """True iff both the input and the kernel are binarized."""
        return _is_binary(self.input_quantizer, self.kernel_quantizer)

    def quantized_weight(self) -> Tensor:
        """The kernel as used in the convolution: ``q_k(W)`` (O, I/groups, kh, kw), or ``W`` in float mode."""
        return self.weight if self.kernel_quantizer is None else self.kernel_quantizer(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        if self.input_quantizer is not None:
            x = self.input_quantizer(x)
        w = self.quantized_weight()
        if self.padding_value != 0.0:
            ph, pw = self.padding  # type: ignore[misc]
            if ph or pw:
                x = F.pad(x, (pw, pw, ph, ph), value=self.padding_value)
            return F.conv2d(x, w, self.bias, self.stride, 0, self.dilation, self.groups)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        if self.padding_value != 0.0:
            s += f", padding_value={self.padding_value}"
        return s


class BinaryLinear(nn.Linear):
    """Linear layer composed from an input quantizer and a kernel quantizer: ``y = q_in(x) @ q_k(W).T + b``.

    Shapes: x (..., in_features) -> (..., out_features). ``is_binary`` as :class:`BinaryConv2d`.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = False,
        input_quantizer: nn.Module | str | None = None,
        kernel_quantizer: nn.Module | str | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.input_quantizer = get_quantizer(input_quantizer)
        self.kernel_quantizer = get_quantizer(kernel_quantizer)
        clip = _latent_clip_of(self.kernel_quantizer)
        if clip is not None:
            with torch.no_grad():
                self.weight.clamp_(*clip)

    @property
    def is_binary(self) -> bool:
        """True iff both the input and the kernel are binarized."""
        return _is_binary(self.input_quantizer, self.kernel_quantizer)

    def quantized_weight(self) -> Tensor:
        """``q_k(W)`` (out_features, in_features), or ``W`` in float mode."""
        return self.weight if self.kernel_quantizer is None else self.kernel_quantizer(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        if self.input_quantizer is not None:
            x = self.input_quantizer(x)
        return F.linear(x, self.quantized_weight(), self.bias)


# ---------------------------------------------------------------------------------- per-channel units
class LearnableBias(nn.Module):
    """Per-channel learnable shift: ``y = x + b_c`` (b initialised to 0).

    Shapes: x (B, C, H, W) -> (B, C, H, W); ``bias`` (1, C, 1, 1).
    """

    def __init__(self, channels: int, init: float = 0.0) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.full((1, int(channels), 1, 1), float(init)))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.bias


class RSign(nn.Module):
    """ReActNet RSign: ``y = q(x + b_c)`` with a learnable per-channel threshold ``b`` (init 0).

    Args:
        channels: C.
        quantizer: activation quantizer applied after the shift (default :class:`ApproxSign`).

    Shapes: x (B, C, H, W) -> +1/-1 (B, C, H, W); ``bias`` (1, C, 1, 1).
    """

    binary = True

    def __init__(self, channels: int, quantizer: nn.Module | str | None = None) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, int(channels), 1, 1))
        self.quantizer = get_quantizer(quantizer) if quantizer is not None else ApproxSign()

    def forward(self, x: Tensor) -> Tensor:
        return self.quantizer(x + self.bias)

    def export_form(self, channels: int) -> tuple[Tensor | None, Tensor | None]:
        """``(None, bias)``: the packed engine binarizes ``sign(x + bias[c])`` (the inner quantizer must be a
        plain sign); see :meth:`binsharp.nn.ActivationQuantizer.export_form`."""
        if self.quantizer.export_form(channels) != (None, None):
            raise BinsharpError("RSign with a non-sign inner quantizer cannot be exported")
        return None, self.bias.detach().to(torch.float32).reshape(-1)


class ReDistribution(nn.Module):
    """BiSR-Conv redistribution: per-channel affine ``y = k_c * x + b_c`` (k init 1, b init 0).

    Shapes: x (B, C, H, W) -> (B, C, H, W); ``scale`` and ``bias`` (1, C, 1, 1).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1, int(channels), 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, int(channels), 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return BF.channel_affine(x, self.scale, self.bias)


class RPReLU(nn.Module):
    """ReActNet RPReLU: ``y = PReLU_c(x - gamma_c) + zeta_c``.

    Args:
        channels: C.
        init: initial PReLU slope for negative inputs (0.25 as :class:`torch.nn.PReLU`).

    Shapes: x (B, C, H, W) -> (B, C, H, W); ``gamma``, ``zeta`` (1, C, 1, 1) init 0; ``slope`` (C,).
    Forward and backward are fused (:func:`binsharp.nn.functional.rprelu`).
    """

    def __init__(self, channels: int, init: float = 0.25) -> None:
        super().__init__()
        c = int(channels)
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.slope = nn.Parameter(torch.full((c,), float(init)))
        self.zeta = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return BF.rprelu(x, self.gamma, self.slope, self.zeta)


# ------------------------------------------------------------------------------------ training helpers
def _latent_clip_of(q: nn.Module | None) -> tuple[float, float] | None:
    """``latent_clip`` of a kernel quantizer, or of the first module declaring one inside a composed one."""
    if q is None:
        return None
    for m in q.modules():
        clip = getattr(m, "latent_clip", None)
        if clip is not None:
            return clip
    return None


def _latent_clipped(model: nn.Module) -> Iterator[tuple[nn.Parameter, tuple[float, float]]]:
    for m in model.modules():
        clip = _latent_clip_of(getattr(m, "kernel_quantizer", None))
        w = getattr(m, "weight", None)
        if clip is not None and isinstance(w, torch.Tensor):
            yield w, clip


@torch.no_grad()
def clip_latent_weights(model: nn.Module) -> int:
    """Clip, in place, the latent weights of every layer whose ``kernel_quantizer`` declares ``latent_clip``.

    Call it after each ``optimizer.step()`` (BNN: latent weights stay in [-1, 1]); the optimiser's own
    parameter tensors are modified, so its state stays consistent.

    Returns:
        The number of weight tensors clipped.
    """
    n = 0
    for w, (lo, hi) in _latent_clipped(model):
        w.clamp_(lo, hi)
        n += 1
    return n


def attach_latent_clipping(optimizer: torch.optim.Optimizer, model: nn.Module):
    """Register an optimiser step post-hook that runs :func:`clip_latent_weights` on ``model``.

    Returns:
        The hook handle (``handle.remove()`` detaches it).
    """

    def hook(opt: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        clip_latent_weights(model)

    return optimizer.register_step_post_hook(hook)


def set_progress(model: nn.Module, epoch: float, total: float) -> int:
    """Advance every training-progress schedule in ``model``: calls ``m.set_progress(epoch, total)`` on each
    submodule that has it (e.g. :class:`~binsharp.nn.quantizers.EDESign`,
    :class:`~binsharp.nn.quantizers.IRNetWeight`). ``epoch`` may be fractional.

    Returns:
        The number of modules updated.
    """
    n = 0
    for m in model.modules():
        fn = getattr(m, "set_progress", None)
        if callable(fn):
            fn(epoch, total)
            n += 1
    return n
