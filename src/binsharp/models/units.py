"""Binary units: the building blocks that distinguish the binary baselines.

Every unit maps (B, C, H, W) -> (B, C, H, W) (channel count and spatial size kept), so that any unit fits
any body (:mod:`binsharp.models.bodies`). A *unit factory* is a callable

    ``factory(channels: int, kernel_size: int = 3, groups: int = 1) -> nn.Module``

(``kernel_size`` 1 or 3 with "same" zero padding; ``groups`` divides ``channels``). :data:`UNITS` maps the
unit names to their factories; :func:`unit_factory` resolves a name.

Notation: ``conv`` is a :class:`binsharp.nn.BinaryConv2d` (no bias); ``BN`` batch normalisation.

Units (name: definition; reference):

* ``bnn``: ``Hardtanh(BN(conv(sign(x), sign(W))))``, clip STE, no weight scale, latent weights clipped to
  [-1, 1]; Hubara et al., NeurIPS 2016.
* ``biconnect``: ``Hardtanh(BN(conv(x, sign(W))))``, binary weights with float activations (float MACs);
  Courbariaux et al., NeurIPS 2015.
* ``bireal``: ``BN(conv(ApproxSign(x), alpha sign(W))) + x``; Liu et al., ECCV 2018.
* ``irnet``: ``Hardtanh(BN(conv(EDE(x), LibraPB(W))) + x)``; Qin et al., CVPR 2020.
* ``reactnet``: ``y = RPReLU(BN(conv_k(RSign(x))) + x)``, ``out = RPReLU(BN(conv_1x1(RSign(y))) + y)``,
  ApproxSign backward; Liu et al., ECCV 2020.
* ``btm``: ``PReLU(conv(sign(x), alpha sign(W)) + x)``, no BN, clip STE, Xavier-uniform latent weights;
  Jiang et al., AAAI 2021.
* ``bbcu``: ``RPReLU(conv(RSign(x), alpha sign(W))) + x``, ApproxSign backward, no BN; Xia et al., ICLR 2023.
* ``e2fif``: ``y = LeakyReLU_0.1(BN(conv(ApproxSign(x), W_b)) + x)``,
  ``out = BN(conv(ApproxSign(y), W_b)) + y``; Song et al., IEEE TIP 2023.
* ``bisr``: ``RPReLU(conv(sign_beta(k x + b), alpha sign(W))) + x``, scalable-tanh backward with learnable
  beta, no BN; Cai et al., NeurIPS 2023.
* ``fab`` / ``fab_high``: ``y = PReLU(conv(PA(x + b0)))``, ``out = PReLU(conv(PA(y + b1))) + x`` where PA is
  ApproxSign with a progressive interval (low- / high-frequency schedule); Jiang et al., IEEE TIP 2023.

``alpha sign(W)`` is :class:`~binsharp.nn.ScaledSignWeight` (alpha = per-output-channel mean |W|, detached).
Departures from the papers: E2FIF binarizes weights with ``alpha sign(W)`` and clip STE (the reference uses
``sign(W)`` with an identity STE; the per-channel ``alpha`` is absorbed by the following BN); the BTM input
normalisation by dataset mean/std is not applied (inputs are already normalised to [0, 1]).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from binsharp.errors import BinsharpError
from binsharp.names import unknown_name_message
from binsharp.nn import (
    ApproxSign,
    BinaryConv2d,
    BNNWeight,
    EDESign,
    IRNetWeight,
    LearnableBias,
    ReDistribution,
    RPReLU,
    RSign,
    ScalableTanhSign,
    ScaledSignWeight,
    SignSTE,
)
from binsharp.nn import functional as BF
from binsharp.nn.quantizers import ActivationQuantizer

__all__ = [
    "UnitFactory",
    "UNITS",
    "unit_factory",
    "BNNUnit",
    "BiRealUnit",
    "IRNetUnit",
    "ReActNetUnit",
    "BTMUnit",
    "BBCUUnit",
    "E2FIFUnit",
    "BiSRUnit",
    "FABBlock",
    "ProgressiveApproxSign",
]

UnitFactory = Callable[..., nn.Module]


def _check(channels: int, kernel_size: int, groups: int) -> None:
    if kernel_size not in (1, 3):
        raise BinsharpError(f"binary units support kernel_size 1 or 3, got {kernel_size}")
    if channels < 1 or groups < 1 or channels % groups:
        raise BinsharpError(f"groups ({groups}) must divide channels ({channels})")


def _bconv(
    channels: int,
    kernel_size: int,
    groups: int,
    input_quantizer: nn.Module | None,
    kernel_quantizer: nn.Module | None,
) -> BinaryConv2d:
    return BinaryConv2d(
        channels,
        channels,
        kernel_size,
        padding=kernel_size // 2,
        groups=groups,
        bias=False,
        input_quantizer=input_quantizer,
        kernel_quantizer=kernel_quantizer,
    )


class ProgressiveApproxSign(ActivationQuantizer):
    """ApproxSign with a progressive interval (FABNet): forward ``sign(x)``; backward
    ``max(0, v - v^2 |x| / 2)`` where ``v`` is the current interval, i.e. the derivative of
    ``ApproxSign(v x / 2)`` (support ``[-2/v, 2/v]``; ``v = 2`` is the plain ApproxSign).

    ``v`` takes ``intervals[i]`` while the training progress is below ``milestones[i]`` (and the last
    interval afterwards), so the surrogate sharpens during training. FABNet: low-frequency branch 1, 2, 4
    (until epoch 50, 200 of 300), high-frequency branch 2, 4 (until epoch 200 of 300).

    Args:
        intervals: interval values, one more than ``milestones``.
        milestones: increasing progress fractions in (0, 1).

    Schedule: ``set_progress(epoch, total)`` (called by :func:`binsharp.nn.set_progress`); the current
    interval is a persistent buffer ``interval`` (saved in checkpoints).
    """

    def __init__(
        self, intervals: Sequence[float] = (1.0, 2.0, 4.0), milestones: Sequence[float] = (1 / 6, 2 / 3)
    ) -> None:
        super().__init__()
        if len(intervals) != len(milestones) + 1 or any(v <= 0 for v in intervals):
            raise BinsharpError("ProgressiveApproxSign needs len(intervals) == len(milestones) + 1, all > 0")
        self.intervals = tuple(float(v) for v in intervals)
        self.milestones = tuple(float(m) for m in milestones)
        self._v = self.intervals[0]
        self.register_buffer("interval", torch.tensor(self._v, dtype=torch.float64))
        self.register_load_state_dict_post_hook(ProgressiveApproxSign._refresh)

    @staticmethod
    def _refresh(module: nn.Module, incompatible_keys: object) -> None:
        module._v = float(module.interval)

    def set_progress(self, epoch: float, total: float) -> None:
        """Select the interval for training progress ``epoch / total``."""
        if total <= 0:
            raise BinsharpError(f"set_progress needs total > 0, got {total}")
        p = float(epoch) / float(total)
        i = sum(1 for m in self.milestones if p >= m)
        self._v = self.intervals[i]
        self.interval.fill_(self._v)

    def forward(self, x: Tensor) -> Tensor:
        # sign(v x / 2) == sign(x) for v > 0; the chain rule gives the scaled surrogate
        return BF.approx_sign(x * (0.5 * self._v))

    def export_form(self, channels: int) -> tuple[Tensor | None, Tensor | None]:
        """``sign(x * v / 2)``: no transform when ``v / 2`` is a power of two (the product only shifts the
        exponent), else the per-channel scale ``v / 2``."""
        s = 0.5 * self._v
        if math.frexp(s)[0] == 0.5:
            return None, None
        return torch.full((channels,), s, dtype=torch.float32), None

    def extra_repr(self) -> str:
        return f"intervals={self.intervals}, milestones={self.milestones}, interval={self._v}"


class BNNUnit(nn.Module):
    """BNN unit (Hubara et al., NeurIPS 2016): ``Hardtanh(BN(conv(sign(x), sign(W))))``.

    ``binary_activations=False`` gives the BinaryConnect unit (Courbariaux et al., NeurIPS 2015): the same
    layer with float activations, ``Hardtanh(BN(conv(x, sign(W))))`` (float MACs, 1-bit weights).
    No identity path. Shapes (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, kernel_size: int = 3, groups: int = 1, binary_activations: bool = True):
        super().__init__()
        _check(channels, kernel_size, groups)
        self.conv = _bconv(
            channels, kernel_size, groups, SignSTE() if binary_activations else None, BNNWeight()
        )
        self.bn = nn.BatchNorm2d(channels)
        self.act = nn.Hardtanh()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class BiRealUnit(nn.Module):
    """Bi-Real unit (Liu et al., ECCV 2018): ``BN(conv(ApproxSign(x), alpha sign(W))) + x``.

    Shapes (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, kernel_size: int = 3, groups: int = 1):
        super().__init__()
        _check(channels, kernel_size, groups)
        self.conv = _bconv(channels, kernel_size, groups, ApproxSign(), ScaledSignWeight())
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x)) + x


class IRNetUnit(nn.Module):
    """IR-Net unit (Qin et al., CVPR 2020): ``Hardtanh(BN(conv(EDE(x), LibraPB(W))) + x)``.

    EDE schedule advanced by :func:`binsharp.nn.set_progress`. Shapes (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, kernel_size: int = 3, groups: int = 1):
        super().__init__()
        _check(channels, kernel_size, groups)
        self.conv = _bconv(channels, kernel_size, groups, EDESign(), IRNetWeight())
        self.bn = nn.BatchNorm2d(channels)
        self.act = nn.Hardtanh()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)) + x)


class ReActNetUnit(nn.Module):
    """ReActNet block (Liu et al., ECCV 2020), two binary convolutions with their own shortcuts.

    ``y = RPReLU(BN(conv_k(RSign(x))) + x)``; ``out = RPReLU(BN(conv_1x1(RSign(y))) + y)``; RSign with
    ApproxSign backward, ``alpha sign(W)`` weights. Shapes (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, kernel_size: int = 3, groups: int = 1):
        super().__init__()
        _check(channels, kernel_size, groups)
        self.conv1 = _bconv(channels, kernel_size, groups, RSign(channels), ScaledSignWeight())
        self.bn1 = nn.BatchNorm2d(channels)
        self.act1 = RPReLU(channels)
        self.conv2 = _bconv(channels, 1, groups, RSign(channels), ScaledSignWeight())
        self.bn2 = nn.BatchNorm2d(channels)
        self.act2 = RPReLU(channels)

    def forward(self, x: Tensor) -> Tensor:
        y = self.act1(self.bn1(self.conv1(x)) + x)
        return self.act2(self.bn2(self.conv2(y)) + y)


class BTMUnit(nn.Module):
    """BTM unit (Jiang et al., "Training binary neural network without batch normalization for image
    super-resolution", AAAI 2021): ``PReLU(conv(sign(x), alpha sign(W)) + x)``, no BN, clip STE,
    Xavier-uniform initialisation of the latent weights. Shapes (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, kernel_size: int = 3, groups: int = 1):
        super().__init__()
        _check(channels, kernel_size, groups)
        self.conv = _bconv(channels, kernel_size, groups, SignSTE(), ScaledSignWeight())
        nn.init.xavier_uniform_(self.conv.weight)
        self.act = nn.PReLU(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv(x) + x)


class BBCUUnit(nn.Module):
    """BBCU (Xia et al., "Basic binary convolution unit for binarized image restoration network", ICLR 2023):
    ``RPReLU(conv(RSign(x), alpha sign(W))) + x``, ApproxSign backward, no BN.

    The "residual alignment" (input image times ``k``, output divided by ``k``) belongs to the network, see
    ``input_scale`` of :class:`binsharp.models.binary_baselines.BinaryPanBackbone`.
    Shapes (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, kernel_size: int = 3, groups: int = 1):
        super().__init__()
        _check(channels, kernel_size, groups)
        self.conv = _bconv(channels, kernel_size, groups, RSign(channels), ScaledSignWeight())
        self.act = RPReLU(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv(x)) + x


class E2FIFUnit(nn.Module):
    """E2FIF residual block (Song et al., "E2FIF: push the limit of binarized deep imagery super-resolution
    using end-to-end full-precision information flow", IEEE TIP 2023): a full-precision skip over every
    binary convolution.

    ``y = BN(conv(ApproxSign(x))) + x``; ``y = LeakyReLU_0.1(y)``; ``out = BN(conv(ApproxSign(y))) + y``.
    Shapes (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, kernel_size: int = 3, groups: int = 1):
        super().__init__()
        _check(channels, kernel_size, groups)
        self.conv1 = _bconv(channels, kernel_size, groups, ApproxSign(), ScaledSignWeight())
        self.bn1 = nn.BatchNorm2d(channels)
        self.act = nn.LeakyReLU(0.1)
        self.conv2 = _bconv(channels, kernel_size, groups, ApproxSign(), ScaledSignWeight())
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        y = self.act(self.bn1(self.conv1(x)) + x)
        return self.bn2(self.conv2(y)) + y


class BiSRUnit(nn.Module):
    """BiSR-Conv (Cai et al., "Binarized spectral compressive imaging", NeurIPS 2023).

    ``RPReLU(conv(sign_beta(k x + b), alpha sign(W))) + x``: per-channel redistribution ``k x + b``
    (:class:`~binsharp.nn.ReDistribution`), sign with the scalable-tanh backward ``beta (1 - tanh^2(beta x))``
    (learnable scalar beta), ``alpha sign(W)`` weights, no BN. Shapes (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, kernel_size: int = 3, groups: int = 1):
        super().__init__()
        _check(channels, kernel_size, groups)
        self.redistribute = ReDistribution(channels)
        self.conv = _bconv(channels, kernel_size, groups, ScalableTanhSign(), ScaledSignWeight())
        self.act = RPReLU(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv(self.redistribute(x))) + x


class FABBlock(nn.Module):
    """FABNet residual block (Jiang et al., "FABNet: frequency-aware binarized network for single image
    super-resolution", IEEE TIP 2023): two binary convolutions, each preceded by a learnable bias and a
    progressive-interval ApproxSign and followed by PReLU, with a shortcut over the block.

    ``y = PReLU(conv(PA(x + b0)))``; ``out = PReLU(conv(PA(y + b1))) + x``; ``alpha sign(W)`` weights.

    Args:
        channels, kernel_size, groups: as every unit.
        intervals, milestones: the :class:`ProgressiveApproxSign` schedule (default: low-frequency branch).

    Shapes (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 3,
        groups: int = 1,
        intervals: Sequence[float] = (1.0, 2.0, 4.0),
        milestones: Sequence[float] = (1 / 6, 2 / 3),
    ):
        super().__init__()
        _check(channels, kernel_size, groups)
        self.move0 = LearnableBias(channels)
        self.conv1 = _bconv(
            channels, kernel_size, groups, ProgressiveApproxSign(intervals, milestones), ScaledSignWeight()
        )
        self.act1 = nn.PReLU(channels)
        self.move1 = LearnableBias(channels)
        self.conv2 = _bconv(
            channels, kernel_size, groups, ProgressiveApproxSign(intervals, milestones), ScaledSignWeight()
        )
        self.act2 = nn.PReLU(channels)

    def forward(self, x: Tensor) -> Tensor:
        y = self.act1(self.conv1(self.move0(x)))
        return self.act2(self.conv2(self.move1(y))) + x


def _biconnect(channels: int, kernel_size: int = 3, groups: int = 1) -> nn.Module:
    return BNNUnit(channels, kernel_size, groups, binary_activations=False)


def _fab_high(channels: int, kernel_size: int = 3, groups: int = 1) -> nn.Module:
    return FABBlock(channels, kernel_size, groups, intervals=(2.0, 4.0), milestones=(2 / 3,))


#: unit name -> factory ``(channels, kernel_size=3, groups=1) -> nn.Module``
UNITS: dict[str, UnitFactory] = {
    "bnn": BNNUnit,
    "biconnect": _biconnect,
    "bireal": BiRealUnit,
    "irnet": IRNetUnit,
    "reactnet": ReActNetUnit,
    "btm": BTMUnit,
    "bbcu": BBCUUnit,
    "e2fif": E2FIFUnit,
    "bisr": BiSRUnit,
    "fab": FABBlock,
    "fab_high": _fab_high,
}


def unit_factory(name: str | UnitFactory) -> UnitFactory:
    """Resolve a unit name (see :data:`UNITS`) or pass a factory callable through."""
    if callable(name):
        return name
    try:
        return UNITS[name]
    except (KeyError, TypeError):
        raise BinsharpError(unknown_name_message(str(name), sorted(UNITS), "binary unit")) from None
