"""Binary bodies: feature extractors (B, D, H, W) -> (B, D, H, W) built from binary units.

A body returns the residual features only; the long skip ``F = body(F0) + F0`` belongs to the backbone
(:class:`binsharp.models.binary_baselines.BinaryPanBackbone`). Three bodies:

* :class:`PlainBody` -- ``n_units`` units in sequence.
* :class:`BinaryUNetBody` -- the BiSRNet U body (Cai et al., "Binarized spectral compressive imaging",
  NeurIPS 2023, reference code ``BiSRNet_body``), parameterised by a unit factory so that any unit (BiSR-Conv,
  S2B-Conv, ...) can fill it. Channel counts change only through modules made of C -> C units, so every
  binary convolution keeps C_in = C_out and an identity path:

  ====================  ==========================================================================
  module                operation
  ====================  ==========================================================================
  :class:`Down`         AvgPool2d(2), then ``cat(unit_a(x), unit_b(x))``: (B, C, H, W) -> (B, 2C, H/2, W/2)
  :class:`Up`           bilinear x2, split channel halves, one unit each, average:
                        (B, C, H, W) -> (B, C/2, 2H, 2W)
  :class:`FusionIncrease` ``cat(unit_a(x), unit_b(x))`` with 1x1 units: (B, C, H, W) -> (B, 2C, H, W)
  :class:`FusionDecrease` split halves, one 1x1 unit each, average: (B, C, H, W) -> (B, C/2, H, W)
  :class:`Block`        ``x + FFN(LayerNorm(x))`` (PreNorm, repeated ``n`` times); FFN = FusionIncrease
                        C->2C, FusionIncrease 2C->4C, RPReLU, grouped 3x3 unit on 4C (``groups = C``),
                        RPReLU, FusionDecrease 4C->2C, FusionDecrease 2C->C
  ====================  ==========================================================================

  Topology (``stages = 2``): embedding 3x3 unit; encoder level i: Block(D 2^i), Down; bottleneck
  Block(4D); decoder level i: Up, concat with the encoder skip, FusionDecrease, Block; mapping 3x3 unit.
  H and W are reflect-padded to a multiple of ``2**stages`` and cropped back.
* :class:`WaveletBody` -- the FABNet body (Jiang et al., IEEE TIP 2023): one-level Haar DWT; the LL band
  goes through ``n_low`` residual blocks whose outputs (and the input) are summed with learnable weights
  (initialised to ``1 / (n_low + 1)``); the three high bands, concatenated to 3D channels, go through
  ``n_high`` blocks plus a shortcut; inverse DWT.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from binsharp.errors import BinsharpError
from binsharp.models.units import UnitFactory
from binsharp.models.units import unit_factory as resolve_unit
from binsharp.nn import HaarDWT, HaarIDWT, RPReLU, merge_bands, split_bands
from binsharp.nn.complexity import OpCount, register_counter
from binsharp.nn.lowering import Lowerer, as_array, register_lowering

__all__ = [
    "PlainBody",
    "BinaryUNetBody",
    "WaveletBody",
    "Down",
    "Up",
    "FusionIncrease",
    "FusionDecrease",
    "Block",
    "FeedForward",
    "ChannelLayerNorm",
    "WeightedSum",
]


def _pad_to_multiple(x: Tensor, m: int) -> tuple[Tensor, int, int]:
    h, w = x.shape[-2:]
    ph, pw = (-h) % m, (-w) % m
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, h, w


class PlainBody(nn.Module):
    """``n_units`` binary units in sequence: (B, D, H, W) -> (B, D, H, W)."""

    def __init__(self, dim: int, unit: str | UnitFactory, n_units: int, kernel_size: int = 3) -> None:
        super().__init__()
        if n_units < 1:
            raise BinsharpError(f"n_units must be >= 1, got {n_units}")
        make = resolve_unit(unit)
        self.units = nn.Sequential(*[make(dim, kernel_size, 1) for _ in range(n_units)])

    def forward(self, x: Tensor) -> Tensor:
        return self.units(x)


class FusionIncrease(nn.Module):
    """(B, C, H, W) -> (B, 2C, H, W): ``cat(unit_a(x), unit_b(x))`` with C -> C units of ``kernel_size``."""

    def __init__(self, channels: int, make: UnitFactory, kernel_size: int = 1) -> None:
        super().__init__()
        self.unit_a = make(channels, kernel_size, 1)
        self.unit_b = make(channels, kernel_size, 1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.unit_a(x), self.unit_b(x)], dim=1)


class FusionDecrease(nn.Module):
    """(B, C, H, W) -> (B, C/2, H, W): split channel halves, one C/2 -> C/2 unit each, average."""

    def __init__(self, channels: int, make: UnitFactory, kernel_size: int = 1) -> None:
        super().__init__()
        if channels % 2:
            raise BinsharpError(f"FusionDecrease needs an even channel count, got {channels}")
        self.unit_a = make(channels // 2, kernel_size, 1)
        self.unit_b = make(channels // 2, kernel_size, 1)

    def forward(self, x: Tensor) -> Tensor:
        a, b = torch.chunk(x, 2, dim=1)
        return (self.unit_a(a) + self.unit_b(b)) * 0.5


class Down(nn.Module):
    """(B, C, H, W) -> (B, 2C, H/2, W/2): AvgPool2d(2), then :class:`FusionIncrease` with 3x3 units."""

    def __init__(self, channels: int, make: UnitFactory) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(2)
        self.fuse = FusionIncrease(channels, make, kernel_size=3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fuse(self.pool(x))


class Up(nn.Module):
    """(B, C, H, W) -> (B, C/2, 2H, 2W): bilinear x2, then :class:`FusionDecrease` with 3x3 units."""

    def __init__(self, channels: int, make: UnitFactory) -> None:
        super().__init__()
        self.upsample = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.fuse = FusionDecrease(channels, make, kernel_size=3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fuse(self.upsample(x))


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel dimension of (B, C, H, W) (BiSRNet's PreNorm on channel-last features)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: Tensor) -> Tensor:
        # contiguous (B, C, H, W) out: a channels-last view here would make every later elementwise op and
        # convolution of the block run on mixed memory layouts (strided, several times slower on CPU)
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous()


class FeedForward(nn.Module):
    """BiSRNet feed-forward (B, C, H, W) -> (B, C, H, W): C -> 2C -> 4C (1x1 fusion units), RPReLU,
    grouped 3x3 unit on 4C with ``groups = C``, RPReLU, 4C -> 2C -> C (1x1 fusion units)."""

    def __init__(self, channels: int, make: UnitFactory) -> None:
        super().__init__()
        c1, c2 = channels * 2, channels * 4
        self.inc1 = FusionIncrease(channels, make)
        self.inc2 = FusionIncrease(c1, make)
        self.act1 = RPReLU(c2)
        self.spatial = make(c2, 3, channels)
        self.act2 = RPReLU(c2)
        self.dec1 = FusionDecrease(c2, make)
        self.dec2 = FusionDecrease(c1, make)

    def forward(self, x: Tensor) -> Tensor:
        x = self.inc2(self.inc1(x))
        x = self.act2(self.spatial(self.act1(x)))
        return self.dec2(self.dec1(x))


class Block(nn.Module):
    """BiSRNet block: ``n`` times ``x = x + FeedForward(LayerNorm(x))``; (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int, make: UnitFactory, n: int = 1) -> None:
        super().__init__()
        self.norms = nn.ModuleList([ChannelLayerNorm(channels) for _ in range(n)])
        self.ffns = nn.ModuleList([FeedForward(channels, make) for _ in range(n)])

    def forward(self, x: Tensor) -> Tensor:
        for norm, ffn in zip(self.norms, self.ffns, strict=True):
            x = x + ffn(norm(x))
        return x


class BinaryUNetBody(nn.Module):
    """BiSRNet U body parameterised by a unit factory: (B, D, H, W) -> (B, D, H, W) (residual features).

    Args:
        dim: D, channels of the first level (level i has D * 2^i).
        unit_factory: unit name (see :data:`binsharp.models.units.UNITS`) or factory
            ``(channels, kernel_size, groups) -> nn.Module`` mapping (B, c, H, W) -> (B, c, H, W).
        stages: number of encoder/decoder levels (BiSRNet: 2).
        num_blocks: blocks per level, ``stages + 1`` values: encoder levels 0..stages-1 (the decoder level i
            mirrors encoder level i), last value for the bottleneck. BiSRNet: (1, 1, 1).

    Any H x W works: the input is reflect-padded to a multiple of ``2**stages`` and the output cropped back.
    """

    def __init__(
        self,
        dim: int,
        unit_factory: str | UnitFactory,
        stages: int = 2,
        num_blocks: Sequence[int] = (1, 1, 1),
    ) -> None:
        super().__init__()
        make = resolve_unit(unit_factory)
        num_blocks = tuple(int(n) for n in num_blocks)
        if stages < 1 or len(num_blocks) != stages + 1 or min(num_blocks) < 1:
            raise BinsharpError(
                f"BinaryUNetBody needs stages >= 1 and stages + 1 positive block counts, got {stages}, "
                f"{list(num_blocks)}"
            )
        self.dim, self.stages = dim, stages
        self.embedding = make(dim, 3, 1)
        self.encoder = nn.ModuleList()
        d = dim
        for i in range(stages):
            self.encoder.append(nn.ModuleList([Block(d, make, num_blocks[i]), Down(d, make)]))
            d *= 2
        self.bottleneck = Block(d, make, num_blocks[-1])
        self.decoder = nn.ModuleList()
        for i in range(stages):
            self.decoder.append(
                nn.ModuleList(
                    [Up(d, make), FusionDecrease(d, make), Block(d // 2, make, num_blocks[stages - 1 - i])]
                )
            )
            d //= 2
        self.mapping = make(dim, 3, 1)

    def forward(self, x: Tensor) -> Tensor:
        x, h, w = _pad_to_multiple(x, 2**self.stages)
        fea = self.embedding(x)
        skips = []
        for block, down in self.encoder:
            fea = block(fea)
            skips.append(fea)
            fea = down(fea)
        fea = self.bottleneck(fea)
        for i, (up, fuse, block) in enumerate(self.decoder):
            fea = up(fea)
            fea = fuse(torch.cat([fea, skips[self.stages - 1 - i]], dim=1))
            fea = block(fea)
        return self.mapping(fea)[..., :h, :w]


class WeightedSum(nn.Module):
    """Learnable weighted sum of ``n`` tensors of equal shape: ``sum_i w_i x_i`` (w initialised to 1/n).

    ``forward(x_0, ..., x_{n-1})`` -> tensor of the same shape. Counted as ``2n - 1`` float elementwise
    operations per output element.
    """

    def __init__(self, n: int) -> None:
        super().__init__()
        if n < 1:
            raise BinsharpError(f"WeightedSum needs n >= 1, got {n}")
        self.weight = nn.Parameter(torch.full((n,), 1.0 / n))

    def forward(self, *xs: Tensor) -> Tensor:
        if len(xs) != self.weight.numel():
            raise BinsharpError(f"WeightedSum expects {self.weight.numel()} tensors, got {len(xs)}")
        out = xs[0] * self.weight[0]
        for i in range(1, len(xs)):
            out = out + xs[i] * self.weight[i]
        return out


def _count_weighted_sum(m: nn.Module, inputs: tuple, y: Tensor) -> OpCount:
    return OpCount(elementwise=(2 * len(inputs) - 1) * y.numel())


register_counter(WeightedSum, _count_weighted_sum)


class WaveletBody(nn.Module):
    """FABNet body: Haar DWT, separate binary branches for LL and for the high bands, inverse DWT.

    Args:
        dim: D (input/output channels).
        n_low: residual blocks on the LL band (D channels, H/2 x W/2); FABNet: 4.
        n_high: residual blocks on cat(LH, HL, HH) (3D channels, H/2 x W/2); FABNet: 8.
        low_unit, high_unit: unit names or factories (default: FABNet blocks with the low/high interval
            schedules).

    Shapes: (B, D, H, W) -> (B, D, H, W); odd H or W are padded by one row/column and cropped back.
    """

    def __init__(
        self,
        dim: int,
        n_low: int = 4,
        n_high: int = 8,
        low_unit: str | UnitFactory = "fab",
        high_unit: str | UnitFactory = "fab_high",
    ) -> None:
        super().__init__()
        if n_low < 1 or n_high < 1:
            raise BinsharpError(f"WaveletBody needs n_low, n_high >= 1, got {n_low}, {n_high}")
        make_low, make_high = resolve_unit(low_unit), resolve_unit(high_unit)
        self.dwt = HaarDWT()
        self.idwt = HaarIDWT()
        self.low = nn.ModuleList([make_low(dim, 3, 1) for _ in range(n_low)])
        self.low_sum = WeightedSum(n_low + 1)
        self.high = nn.Sequential(*[make_high(3 * dim, 3, 1) for _ in range(n_high)])

    def forward(self, x: Tensor) -> Tensor:
        x, h, w = _pad_to_multiple(x, 2)
        ll, lh, hl, hh = split_bands(self.dwt(x))
        stages = [ll]
        for blk in self.low:
            stages.append(blk(stages[-1]))
        acc = self.low_sum(*stages)
        high = torch.cat([lh, hl, hh], dim=1)
        high = self.high(high) + high
        lh2, hl2, hh2 = torch.chunk(high, 3, dim=1)
        return self.idwt(merge_bands(acc, lh2, hl2, hh2))[..., :h, :w]


# --------------------------------------------------------------------------------------- engine lowerings
def _lower_channel_layernorm(lw: Lowerer, m, ins):
    return lw.b.op(
        "layernorm_c",
        ins,
        attrs={"eps": float(m.norm.eps)},
        params={"weight": as_array(m.norm.weight), "bias": as_array(m.norm.bias)},
    )


def _lower_unet(lw: Lowerer, m, ins):
    x0 = ins[0]
    x = lw.b.op("pad_to_multiple", [x0], attrs={"m": 2**m.stages})[0]
    fea = lw.emit(m.embedding, [x], "embedding")[0]
    skips = []
    for i, (block, down) in enumerate(m.encoder):
        fea = lw.emit(block, [fea], f"encoder{i}.block")[0]
        skips.append(fea)
        fea = lw.emit(down, [fea], f"encoder{i}.down")[0]
    fea = lw.emit(m.bottleneck, [fea], "bottleneck")[0]
    for i, (up, fuse, block) in enumerate(m.decoder):
        fea = lw.emit(up, [fea], f"decoder{i}.up")[0]
        fea = lw.b.op("cat", [fea, skips[m.stages - 1 - i]])[0]
        fea = lw.emit(fuse, [fea], f"decoder{i}.fuse")[0]
        fea = lw.emit(block, [fea], f"decoder{i}.block")[0]
    out = lw.emit(m.mapping, [fea], "mapping")[0]
    return lw.b.op("crop_like", [out, x0])


def _weighted_sum(lw: Lowerer, weight: torch.Tensor, ins: list[str]) -> list[str]:
    w = weight.detach().to(torch.float32).reshape(-1)
    if w.numel() != len(ins):
        raise BinsharpError("weighted sum: weight count does not match the inputs")
    acc = lw.b.op("mul_scalar", [ins[0]], attrs={"value": float(w[0])})[0]
    for i in range(1, len(ins)):
        t = lw.b.op("mul_scalar", [ins[i]], attrs={"value": float(w[i])})[0]
        acc = lw.b.op("add", [acc, t])[0]
    return [acc]


def _lower_weighted_sum(lw: Lowerer, m, ins):
    return _weighted_sum(lw, m.weight, ins)


def _lower_wavelet(lw: Lowerer, m, ins):
    x0 = ins[0]
    x = lw.b.op("pad_to_multiple", [x0], attrs={"m": 2})[0]
    ll, lh, hl, hh = lw.b.op("split_bands", [lw.b.op("haar_dwt", [x])[0]], nout=4)
    stages = [ll]
    for i, blk in enumerate(m.low):
        stages.append(lw.emit(blk, [stages[-1]], f"low{i}")[0])
    if hasattr(m, "low_sum"):
        acc = lw.emit(m.low_sum, stages, "low_sum")[0]
    else:
        acc = _weighted_sum(lw, m.low_weights, stages)[0]
    high = lw.b.op("cat", [lh, hl, hh])[0]
    h2 = lw.emit(m.high, [high], "high")[0]
    high = lw.b.op("add", [h2, high])[0]
    lh2, hl2, hh2 = lw.b.op("chunk", [high], nout=3, attrs={"chunks": 3})
    merged = lw.b.op("merge_bands", [acc, lh2, hl2, hh2])[0]
    out = lw.b.op("haar_idwt", [merged])[0]
    return lw.b.op("crop_like", [out, x0])


register_lowering(ChannelLayerNorm, _lower_channel_layernorm)
register_lowering(BinaryUNetBody, _lower_unet)
register_lowering(WeightedSum, _lower_weighted_sum)
register_lowering(WaveletBody, _lower_wavelet)
