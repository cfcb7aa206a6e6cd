"""S2BNet: spatial-spectral binarized network for pan-sharpening, with its S2B-Conv unit.

Reference: Y. Jiang, M. Ma, A. Zhu, X. Ma, J. Li, W. Zhang, "Spatial-Spectral Binarized Neural Network for
Panchromatic and Multi-spectral Images Fusion", arXiv 2509.23321 (2025). The method section of the paper is
not available; this module implements the reconstruction documented in ``docs/models/s2bnet.md``, with every
open choice behind a constructor switch so that the ablations can be run.

S2B-Conv (:class:`S2BConv`, (B, C, H, W) -> (B, C, H, W))::

    xr = SRM(x)                        # spectral redistribution k(x) * x + b(x) before binarization
    xr = xr + Gabor_dw(xr)             # only for gsfa="activation"
    a  = sign(xr)                      # +1 where >= 0; backward beta (1 - tanh^2(beta xr)), beta learnable
    Wg = W * (1 + lambda * g)          # gsfa="weight": fixed random Gabor modulation of the latent weights
    Wb = alpha * sign(Wg)              # alpha = mean |Wg| per output channel (detached); clip STE on Wg
    y  = RPReLU(conv(a, Wb)) + x

SRM (``srm=``):

* ``"dynamic"`` (default, :class:`DynamicSRM`): ``s = GAP(x)`` (B, C); ``h = ReLU(FC(C -> C/r))``;
  ``k_raw, b_raw = FC(C/r -> 2C)`` zero-initialised; ``k = 1 + tanh(k_raw)`` in (0, 2),
  ``b = tanh(b_raw)`` in (-1, 1); per sample and channel. ``r = srm_reduction`` (16, see the size note of
  :class:`S2BNet`). At initialisation the SRM is the identity. It reads global feature statistics, so
  tiled inference differs slightly from inference on the whole image.
* ``"static"``: learnable per-channel ``k, b`` (:class:`binsharp.nn.ReDistribution`, BiSR-Conv's
  redistribution).
* ``"off"``: identity.

GSFA (``gsfa=``), for units with a spatial kernel (``kernel_size > 1``; on 1x1 units a Gabor kernel is the
single value ``g(0, 0) = 1`` and GSFA is not applied):

* ``"weight"`` (default, :class:`GaborModulatedWeight`): one Gabor kernel per output channel, drawn once
  from a seeded generator (theta ~ U[theta_lo, theta_hi), f ~ U[f_lo, f_hi) cycles/pixel, sigma fixed or
  ~ U[sigma_lo, sigma_hi), gamma = 1, psi = 0), normalised by its max |g|, broadcast over input channels:
  ``Wg = W * (1 + lambda g)``.
* ``"init"``: the same bank initialises the latent weights only (:func:`gabor_init_`); the binarizer is the
  plain ``alpha sign(W)``.
* ``"activation"`` (:class:`GaborActivationFilter`): a fixed depthwise Gabor filter (one kernel per channel)
  added on the activation path before binarization, ``xr + lambda * (g_c * xr)``.
* ``"off"``: plain BiSR-Conv weights.

With ``srm="static", gsfa="off"`` the unit is exactly BiSR-Conv
(:class:`binsharp.models.units.BiSRUnit`, same parameter names, same output for the same weights).

Gabor kernel on the k x k grid (x = column - (k-1)/2, y = row - (k-1)/2)::

    x' = x cos(theta) + y sin(theta),  y' = -x sin(theta) + y cos(theta)
    g  = exp(-(x'^2 + gamma^2 y'^2) / (2 sigma^2)) * cos(2 pi f x' + psi),   g /= max |g|

Every bank is a persistent buffer (saved in ``state_dict`` and hence in checkpoints) together with the drawn
``theta``, ``freq`` and ``sigma``; loading a checkpoint reproduces the outputs exactly whatever seed the
rebuilt model drew.

Note on the default weight modulation: with ``lambda <= 1`` (and the default ``psi = 0``, for which the centre
tap is the maximum ``g = 1`` and ``|g| < 1`` elsewhere) the factor ``1 + lambda g`` is positive, so
``sign(Wg) = sign(W)``; the modulation changes the scale ``alpha`` and,
through the chain rule ``dL/dW = (1 + lambda g) dL/dWg``, the per-tap step sizes and the effective clip range
of the latent weights. Larger ``lambda`` lets taps with ``g < -1/lambda`` flip sign.

Complexity accounting (:func:`binsharp.nn.complexity.count`): the binary convolution counts as BOPs with
one elementwise op per output for ``alpha``; the weight modulation costs nothing at inference because it is
folded into the exported binary kernel (``BinaryConv2d.quantized_weight()`` returns ``alpha sign(Wg)``),
exactly like the other weight binarizers; the dynamic SRM counts its two FCs as FLOPs and, as elementwise
work, the global average pooling (one per input element), the ``tanh``/``1 +`` on the (B, 2C) coefficients
(three per sample and channel) and the affine map (two per element); the activation-path Gabor filter counts
``k*k`` FLOPs (MACs) and one elementwise add per element; the sign, RPReLU and residual add are counted by
their own rules (1, 3, 1 per element). Gabor banks are buffers, not parameters.

Model (:class:`S2BNet`, registered as ``"s2bnet"``)::

    F0  = Conv3x3_fp(cat(lms, pan)) -> D channels          # full-precision head, D = dim (32)
    F   = UBody(F0) + F0                                    # BiSRNet U body, every binary unit an S2B-Conv
    out = lms + Conv3x3_fp(F) -> C channels                 # full-precision tail + global residual

The U body is :class:`binsharp.models.bodies.BinaryUNetBody` (two encoder levels, bottleneck, two decoder
levels with skips; channel changes through split/concat/average of C -> C units) filled with S2B-Conv units.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from binsharp.errors import BinsharpError
from binsharp.models.binary_baselines import BODIES, DEFAULT_DIM, BinaryPanBackbone, make_body
from binsharp.models.recipes import default_recipe
from binsharp.models.registry import register_model
from binsharp.models.units import UnitFactory
from binsharp.nn import (
    BinaryConv2d,
    ReDistribution,
    RPReLU,
    ScalableTanhSign,
    ScaledSignWeight,
    channel_affine,
)
from binsharp.nn.complexity import OpCount, register_counter
from binsharp.nn.lowering import Lowerer, as_array, register_lowering

__all__ = [
    "SRM_MODES",
    "GSFA_MODES",
    "gabor_kernels",
    "draw_gabor_bank",
    "GaborBank",
    "DynamicSRM",
    "GaborModulatedWeight",
    "GaborActivationFilter",
    "gabor_init_",
    "S2BConv",
    "s2b_unit_factory",
    "S2BNet",
]

SRM_MODES = ("dynamic", "static", "off")
GSFA_MODES = ("weight", "init", "activation", "off")

Range = float | Sequence[float]


# ---------------------------------------------------------------------------------------------- Gabor
def _as_range(value: Range, name: str, *, positive: bool) -> tuple[float, float]:
    """A scalar ``v`` -> ``(v, v)``; a pair ``(lo, hi)`` with ``lo <= hi`` -> itself (floats)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        lo = hi = float(value)
    else:
        try:
            lo, hi = (float(v) for v in value)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise BinsharpError(f"{name} must be a number or a (low, high) pair, got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise BinsharpError(f"{name} must be finite with low <= high, got {value!r}")
    if positive and lo <= 0:
        raise BinsharpError(f"{name} must be > 0, got {value!r}")
    return lo, hi


def gabor_kernels(
    theta: Tensor, freq: Tensor, sigma: Tensor, size: int, *, gamma: float = 1.0, psi: float = 0.0
) -> Tensor:
    """Gabor kernels on a ``size x size`` grid, each normalised by its max ``|g|``.

    ``g(x, y) = exp(-(x'^2 + gamma^2 y'^2) / (2 sigma^2)) cos(2 pi f x' + psi)`` with
    ``x' = x cos(theta) + y sin(theta)``, ``y' = -x sin(theta) + y cos(theta)``; ``x`` is the column offset
    and ``y`` the row offset from the kernel centre, in pixels.

    Args:
        theta: orientations (N,), radians.
        freq: spatial frequencies (N,), cycles per pixel.
        sigma: Gaussian envelope widths (N,), pixels.
        size: kernel side k.
        gamma: spatial aspect ratio.
        psi: phase offset, radians.

    Returns:
        (N, k, k) tensor, dtype of ``theta``, values in [-1, 1].
    """
    r = torch.arange(size, dtype=theta.dtype) - (size - 1) / 2.0
    y, x = torch.meshgrid(r, r, indexing="ij")
    th, f, s = theta[:, None, None], freq[:, None, None], sigma[:, None, None]
    xr = x * torch.cos(th) + y * torch.sin(th)
    yr = -x * torch.sin(th) + y * torch.cos(th)
    g = torch.exp(-(xr**2 + gamma**2 * yr**2) / (2.0 * s**2)) * torch.cos(2.0 * math.pi * f * xr + psi)
    peak = g.abs().amax(dim=(1, 2), keepdim=True).clamp_min(torch.finfo(g.dtype).tiny)
    return g / peak


def draw_gabor_bank(
    n: int,
    size: int,
    *,
    freq: Range = (0.1, 0.5),
    theta: Range = (0.0, math.pi),
    sigma: Range = 1.0,
    gamma: float = 1.0,
    psi: float = 0.0,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """Draw ``n`` random Gabor kernels of side ``size`` (one per output channel).

    Draw order (float64, from ``generator``): ``theta`` (n), ``freq`` (n), then ``sigma`` (n) only when its
    range is not a single value; each ``U[low, high)``.

    Returns:
        ``{"bank": (n, k, k) float32, "theta": (n,), "freq": (n,), "sigma": (n,)}`` (float64 parameters).
    """
    if n < 1 or size < 1:
        raise BinsharpError(f"a Gabor bank needs n >= 1 and size >= 1, got n={n}, size={size}")
    t_lo, t_hi = _as_range(theta, "gabor theta", positive=False)
    f_lo, f_hi = _as_range(freq, "gabor freq", positive=True)
    s_lo, s_hi = _as_range(sigma, "gabor sigma", positive=True)

    def uniform(lo: float, hi: float) -> Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)

    th = uniform(t_lo, t_hi)
    fr = uniform(f_lo, f_hi)
    sg = uniform(s_lo, s_hi) if s_hi > s_lo else torch.full((n,), s_lo, dtype=torch.float64)
    bank = gabor_kernels(th, fr, sg, size, gamma=gamma, psi=psi).to(torch.float32)
    return {"bank": bank, "theta": th, "freq": fr, "sigma": sg}


class GaborBank(nn.Module):
    """Holder of a fixed random Gabor bank as persistent buffers (saved with the model).

    Buffers: ``bank`` (n, 1, k, k) float32 (the kernels, shaped as a depthwise/broadcast filter),
    ``theta``, ``freq``, ``sigma`` (n,) float64 (the drawn parameters, for the record).

    Args:
        n: number of kernels (output channels).
        size: kernel side k.
        freq, theta, sigma, gamma, psi, generator: see :func:`draw_gabor_bank`.
    """

    def __init__(
        self,
        n: int,
        size: int,
        *,
        freq: Range = (0.1, 0.5),
        theta: Range = (0.0, math.pi),
        sigma: Range = 1.0,
        gamma: float = 1.0,
        psi: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        d = draw_gabor_bank(
            n, size, freq=freq, theta=theta, sigma=sigma, gamma=gamma, psi=psi, generator=generator
        )
        self.register_buffer("bank", d["bank"][:, None].contiguous())
        self.register_buffer("theta", d["theta"])
        self.register_buffer("freq", d["freq"])
        self.register_buffer("sigma", d["sigma"])
        self.gamma, self.psi = float(gamma), float(psi)

    def forward(self) -> Tensor:
        """The bank (n, 1, k, k)."""
        return self.bank

    def extra_repr(self) -> str:
        n, _, k, _ = self.bank.shape
        return f"n={n}, size={k}, gamma={self.gamma}, psi={self.psi}"


# ------------------------------------------------------------------------------------------------ SRM
class DynamicSRM(nn.Module):
    """Dynamic spectral redistribution: ``y = k(x) * x + b(x)``, per sample and channel, bounded.

    ``s = mean_{H,W} x`` (B, C); ``h = ReLU(fc1(s))`` (B, C/r); ``k_raw, b_raw = fc2(h)`` (B, 2C), ``fc2``
    zero-initialised (weights and bias) so the module starts as the identity; ``k = 1 + tanh(k_raw)`` in
    (0, 2), ``b = tanh(b_raw)`` in (-1, 1) (in floating point the limits 0, 2 and +-1 can be reached when
    tanh saturates).

    Args:
        channels: C.
        reduction: r, hidden width ``max(1, C // r)``.

    Shapes: x (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        if reduction < 1:
            raise BinsharpError(f"srm_reduction must be >= 1, got {reduction}")
        c = int(channels)
        hidden = max(1, c // int(reduction))
        self.channels = c
        self.fc1 = nn.Linear(c, hidden)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden, 2 * c)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def coefficients(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Scale and bias for ``x`` (B, C, H, W): ``k`` in (0, 2), ``b`` in (-1, 1), each (B, C, 1, 1)."""
        s = x.mean(dim=(2, 3))
        k_raw, b_raw = self.fc2(self.act(self.fc1(s))).chunk(2, dim=1)
        k = 1.0 + torch.tanh(k_raw)
        b = torch.tanh(b_raw)
        return k[..., None, None], b[..., None, None]

    def forward(self, x: Tensor) -> Tensor:
        k, b = self.coefficients(x)
        return channel_affine(x, k, b)


def _make_srm(mode: str, channels: int, reduction: int) -> nn.Module:
    if mode == "dynamic":
        return DynamicSRM(channels, reduction)
    if mode == "static":
        return ReDistribution(channels)
    if mode == "off":
        return nn.Identity()
    raise BinsharpError(f"srm must be one of {SRM_MODES}, got {mode!r}")


# ----------------------------------------------------------------------------------------------- GSFA
class GaborModulatedWeight(ScaledSignWeight):
    """GSFA weight binarizer: ``Wb = alpha_o sign(Wg)``, ``Wg = W * (1 + lambda g_o)``.

    ``g_o`` (k x k) is the fixed Gabor kernel of output channel ``o``, broadcast over the input channels;
    ``alpha_o = mean |Wg_o|`` (detached); backward: clip STE on ``Wg`` (``1[|Wg| <= 1]``) times
    ``1 + lambda g`` (chain rule). As a :class:`~binsharp.nn.ScaledSignWeight` it is counted like one: zero
    cost at inference (folded into the exported kernel), one elementwise op per conv output for ``alpha``.

    Args:
        bank: :class:`GaborBank` with ``n = O`` kernels of the conv's kernel size.
        lam: modulation strength lambda.

    Shapes: W (O, I/groups, k, k) -> (O, I/groups, k, k).
    """

    def __init__(self, bank: GaborBank, lam: float = 1.0) -> None:
        super().__init__()
        self.gabor = bank
        self.lam = float(lam)

    def modulate(self, w: Tensor) -> Tensor:
        """``Wg = W * (1 + lambda g)`` (O, I/groups, k, k), differentiable in ``W``."""
        g = self.gabor.bank.to(w.dtype)
        if g.shape[0] != w.shape[0] or g.shape[-2:] != w.shape[-2:]:
            raise BinsharpError(
                f"Gabor bank {tuple(g.shape)} does not match the weight {tuple(w.shape)} (O and k x k)"
            )
        return w * (1.0 + self.lam * g)

    def forward(self, w: Tensor) -> Tensor:
        return super().forward(self.modulate(w))

    def extra_repr(self) -> str:
        return f"lam={self.lam}"


class GaborActivationFilter(nn.Module):
    """GSFA on the activation path: ``y = x + lambda * dwconv(x, g)``, one fixed Gabor kernel per channel
    ("same" zero padding, full precision).

    Args:
        bank: :class:`GaborBank` with ``n = C`` kernels.
        lam: strength lambda.

    Shapes: x (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, bank: GaborBank, lam: float = 1.0) -> None:
        super().__init__()
        self.gabor = bank
        self.lam = float(lam)

    def forward(self, x: Tensor) -> Tensor:
        g = self.gabor.bank.to(x.dtype) * self.lam
        k = g.shape[-1]
        return x + F.conv2d(x, g, padding=k // 2, groups=g.shape[0])

    def extra_repr(self) -> str:
        return f"lam={self.lam}"


@torch.no_grad()
def gabor_init_(weight: Tensor, bank: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """GSFA "init" variant: set ``W[o, i] = c * s_oi * g_o`` in place.

    ``g_o`` is the Gabor kernel of output channel ``o`` (bank (O, 1, k, k)), ``s_oi`` a random sign per
    (output, input) pair drawn from ``generator``, ``c`` the standard deviation of the weight before the call
    (so the scale of the default initialisation is kept).

    Args:
        weight: latent weight (O, I/groups, k, k), modified in place.
        bank: (O, 1, k, k) Gabor kernels.
        generator: source of the random signs.

    Returns:
        ``weight``.
    """
    o, i = weight.shape[:2]
    c = weight.std().clamp_min(1e-8)
    signs = torch.rand(o, i, 1, 1, generator=generator, dtype=torch.float64) < 0.5
    s = torch.where(signs, -1.0, 1.0).to(weight.dtype)
    weight.copy_(c * s * bank.to(weight.dtype))
    return weight


# ---------------------------------------------------------------------------------------------- unit
class S2BConv(nn.Module):
    """S2B-Conv unit: SRM + binary conv with GSFA + RPReLU + residual; (B, C, H, W) -> (B, C, H, W).

    ``y = RPReLU(conv(sign_beta(SRM(x) [+ Gabor_dw]), alpha sign(W [* (1 + lambda g)]))) + x`` (see the
    module docstring for the variants).

    Args:
        channels: C (input = output channels).
        kernel_size: 1 or 3 ("same" zero padding).
        groups: convolution groups (divides C; ``groups = C`` is depthwise).
        srm: ``"dynamic"`` | ``"static"`` | ``"off"``.
        gsfa: ``"weight"`` | ``"init"`` | ``"activation"`` | ``"off"`` (ignored for ``kernel_size = 1``).
        srm_reduction: hidden-width reduction r of the dynamic SRM.
        gabor_freq: frequency range (low, high) in cycles/pixel, or a single value.
        gabor_theta: orientation range (low, high) in radians, or a single value.
        gabor_sigma: envelope width in pixels, or a (low, high) range.
        gabor_gamma, gabor_psi: aspect ratio and phase of the Gabor kernels.
        gabor_lambda: strength lambda of the modulation / activation filter.
        seed: seed of the private generator the bank is drawn from (when ``generator`` is not given).
        generator: a shared ``torch.Generator`` to draw from (a network draws all its banks from one).

    Submodules: ``redistribute`` (the SRM), ``gsfa`` (activation filter or ``None``), ``conv``
    (:class:`binsharp.nn.BinaryConv2d` with :class:`~binsharp.nn.ScalableTanhSign` and
    :class:`GaborModulatedWeight` or :class:`~binsharp.nn.ScaledSignWeight`), ``act`` (RPReLU).
    Attribute ``gsfa_mode``: the GSFA variant actually applied (``"off"`` on 1x1 units).
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int = 3,
        groups: int = 1,
        *,
        srm: str = "dynamic",
        gsfa: str = "weight",
        srm_reduction: int = 16,
        gabor_freq: Range = (0.1, 0.5),
        gabor_theta: Range = (0.0, math.pi),
        gabor_sigma: Range = 1.0,
        gabor_gamma: float = 1.0,
        gabor_psi: float = 0.0,
        gabor_lambda: float = 1.0,
        seed: int = 0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if kernel_size not in (1, 3):
            raise BinsharpError(f"S2BConv supports kernel_size 1 or 3, got {kernel_size}")
        if channels < 1 or groups < 1 or channels % groups:
            raise BinsharpError(f"groups ({groups}) must divide channels ({channels})")
        if srm not in SRM_MODES:
            raise BinsharpError(f"srm must be one of {SRM_MODES}, got {srm!r}")
        if gsfa not in GSFA_MODES:
            raise BinsharpError(f"gsfa must be one of {GSFA_MODES}, got {gsfa!r}")
        if not math.isfinite(float(gabor_lambda)):
            raise BinsharpError(f"gabor_lambda must be finite, got {gabor_lambda!r}")
        self.channels, self.kernel_size, self.groups = int(channels), int(kernel_size), int(groups)
        self.srm_mode = srm
        self.gsfa_mode = gsfa if kernel_size > 1 else "off"
        gen = generator if generator is not None else torch.Generator().manual_seed(int(seed))

        bank = None
        if self.gsfa_mode != "off":
            bank = GaborBank(
                channels,
                kernel_size,
                freq=gabor_freq,
                theta=gabor_theta,
                sigma=gabor_sigma,
                gamma=gabor_gamma,
                psi=gabor_psi,
                generator=gen,
            )
        self.redistribute = _make_srm(srm, channels, srm_reduction)
        self.gsfa = GaborActivationFilter(bank, gabor_lambda) if self.gsfa_mode == "activation" else None
        kq: nn.Module = (
            GaborModulatedWeight(bank, gabor_lambda) if self.gsfa_mode == "weight" else ScaledSignWeight()
        )
        self.conv = BinaryConv2d(
            channels,
            channels,
            kernel_size,
            padding=kernel_size // 2,
            groups=groups,
            bias=False,
            input_quantizer=ScalableTanhSign(),
            kernel_quantizer=kq,
        )
        if self.gsfa_mode == "init":
            self.init_bank = bank
            gabor_init_(self.conv.weight, bank.bank, gen)
        self.act = RPReLU(channels)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, C, H, W) -> (B, C, H, W)."""
        xr = self.redistribute(x)
        if self.gsfa is not None:
            xr = self.gsfa(xr)
        return self.act(self.conv(xr)) + x

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, kernel_size={self.kernel_size}, groups={self.groups}, "
            f"srm={self.srm_mode!r}, gsfa={self.gsfa_mode!r}"
        )


def s2b_unit_factory(seed: int = 0, **options: Any) -> UnitFactory:
    """A unit factory ``(channels, kernel_size=3, groups=1) -> S2BConv`` for the binary bodies.

    All units built by the factory draw their Gabor banks from ONE generator seeded with ``seed``, in
    construction order, so a network built twice with the same seed has the same banks.

    Args:
        seed: seed of the shared generator.
        **options: keyword arguments of :class:`S2BConv` (``srm``, ``gsfa``, ``gabor_*``, ``srm_reduction``).
    """
    gen = torch.Generator().manual_seed(int(seed))
    if "generator" in options or "seed" in options:
        raise BinsharpError("s2b_unit_factory: pass the seed as its own argument, not in the unit options")

    def make(channels: int, kernel_size: int = 3, groups: int = 1) -> S2BConv:
        return S2BConv(channels, kernel_size, groups, generator=gen, **options)

    return make


# --------------------------------------------------------------------------------------------- model
def _pair(value: Any) -> Any:
    """JSON-friendly form of a range argument (tuples -> lists; scalars unchanged)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return [float(v) for v in value]


class S2BNet(BinaryPanBackbone):
    """S2BNet (reconstruction): full-precision head, BiSRNet U body of S2B-Conv units, full-precision tail.

    ``F0 = Conv3x3_fp(cat(lms, pan))`` (D channels); ``F = UBody(F0) + F0``; ``out = lms + Conv3x3_fp(F)``.
    The U body is :class:`binsharp.models.bodies.BinaryUNetBody` (BiSRNet topology) with
    :class:`S2BConv` units; all its Gabor banks come from one generator seeded with ``gabor_seed``.

    Args:
        bands: C, MS bands.
        dim: D, channels of the first level (level i has D 2^i).
        stages: encoder/decoder levels (2).
        num_blocks: blocks per encoder level and bottleneck, ``stages + 1`` values ((1, 1, 1)).
        srm: ``"dynamic"`` | ``"static"`` | ``"off"`` (see :class:`S2BConv`).
        gsfa: ``"weight"`` | ``"init"`` | ``"activation"`` | ``"off"``.
        srm_reduction: hidden-width reduction of the dynamic SRM (16).
        gabor_freq: (low, high) cycles/pixel ((0.1, 0.5)); gabor_theta: (low, high) radians ((0, pi));
        gabor_sigma: pixels (1.0) or a (low, high) range; gabor_gamma (1.0), gabor_psi (0.0);
        gabor_lambda: modulation strength (1.0); gabor_seed: seed of the banks (0).
        zero_tail: zero-initialised tail, ``out = lms`` at initialisation (True; see
            :class:`binsharp.models.binary_baselines.BinaryPanBackbone`).
        body: ``"unet"`` (the BiSRNet U body, S2BNet) or ``"plain"``: ``n_units`` S2B-Conv units in sequence,
            the body of BBCU and the other unit models, so that S2B-Conv can be compared with any unit in
            one body (``create("s2bnet", body="plain")`` against ``create("bbcu")`` or
            ``create("bisrnet", body="plain")``).
        n_units: units of the plain body (20, as the other unit models).

    Forward: ``lms`` (B, C, H, W), ``pan`` (B, 1, H, W), normalised to [0, 1] -> fused (B, C, H, W); any
    H x W (padded to a multiple of 4 inside the body and cropped back).

    Size: the binary convolutions (BOPs, binary weights) are those of BiSRNet; the dynamic SRM adds
    ``3 C^2 / srm_reduction`` full-precision FC parameters per unit, and a negligible number of FLOPs (per
    image, not per pixel). The default ``srm_reduction=16`` gives about 3.8x BiSRNet's Params, the closest
    power of two to the "about 3x" the paper reports (4 gives 12x, 32 gives 2.4x).
    """

    kind = "binary"
    inputs = ("lms", "pan")

    def __init__(
        self,
        bands: int,
        dim: int = DEFAULT_DIM,
        stages: int = 2,
        num_blocks: Sequence[int] = (1, 1, 1),
        srm: str = "dynamic",
        gsfa: str = "weight",
        srm_reduction: int = 16,
        gabor_freq: Range = (0.1, 0.5),
        gabor_theta: Range = (0.0, math.pi),
        gabor_sigma: Range = 1.0,
        gabor_gamma: float = 1.0,
        gabor_psi: float = 0.0,
        gabor_lambda: float = 1.0,
        gabor_seed: int = 0,
        zero_tail: bool = True,
        body: str = "unet",
        n_units: int = 20,
    ) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise BinsharpError(f"dim must be a positive integer, got {dim!r}")
        if body not in BODIES:
            raise BinsharpError(f"body must be one of {BODIES}, got {body!r}")
        factory = s2b_unit_factory(
            seed=gabor_seed,
            srm=srm,
            gsfa=gsfa,
            srm_reduction=srm_reduction,
            gabor_freq=gabor_freq,
            gabor_theta=gabor_theta,
            gabor_sigma=gabor_sigma,
            gabor_gamma=gabor_gamma,
            gabor_psi=gabor_psi,
            gabor_lambda=gabor_lambda,
        )
        super().__init__(
            bands, dim, make_body(factory, dim, body, n_units, stages, num_blocks), zero_tail=zero_tail
        )
        self.srm, self.gsfa = srm, gsfa
        self.config = {
            "bands": self.bands,
            "dim": int(dim),
            "stages": int(stages),
            "num_blocks": [int(n) for n in num_blocks],
            "srm": srm,
            "gsfa": gsfa,
            "srm_reduction": int(srm_reduction),
            "gabor_freq": _pair(gabor_freq),
            "gabor_theta": _pair(gabor_theta),
            "gabor_sigma": _pair(gabor_sigma),
            "gabor_gamma": float(gabor_gamma),
            "gabor_psi": float(gabor_psi),
            "gabor_lambda": float(gabor_lambda),
            "gabor_seed": int(gabor_seed),
            "zero_tail": bool(zero_tail),
            "body": body,
            "n_units": int(n_units),
        }

    def extra_repr(self) -> str:
        return super().extra_repr() + f", srm={self.srm!r}, gsfa={self.gsfa!r}"


_RECIPE = default_recipe("binary")
_RECIPE["source"] = (
    "the shared binary recipe (" + _RECIPE["source"] + "); the S2BNet training settings are not published"
)

register_model(
    "s2bnet",
    kind="binary",
    recipe=_RECIPE,
    paper="Y. Jiang, M. Ma, A. Zhu, X. Ma, J. Li, W. Zhang, arXiv 2509.23321, 2025",
    description="S2BNet (reconstruction): S2B-Conv units (dynamic SRM + Gabor-modulated binary weights) "
    "in the BiSRNet U body",
)(S2BNet)


# ------------------------------------------------------------------------------------ complexity rules
def _count_dynamic_srm(m: nn.Module, inputs: tuple, y: Any) -> OpCount:
    x = inputs[0]
    b, c = x.shape[0], x.shape[1]
    # GAP: one add per input element; k = 1 + tanh, b = tanh: 3 per (sample, channel); k*x + b: 2 per element
    return OpCount(elementwise=x.numel() + 3 * b * c + 2 * y.numel())


def _count_gabor_activation(m: nn.Module, inputs: tuple, y: Any) -> OpCount:
    k = m.gabor.bank.shape[-1]  # type: ignore[union-attr]
    # depthwise k x k full-precision filter (MACs) + the residual add
    return OpCount(flops=y.numel() * k * k, elementwise=y.numel())


def _count_zero(m: nn.Module, inputs: tuple, y: Any) -> OpCount:
    return OpCount()


register_counter(DynamicSRM, _count_dynamic_srm)
register_counter(GaborActivationFilter, _count_gabor_activation)
register_counter(GaborBank, _count_zero)


# --------------------------------------------------------------------------------------- engine lowerings
def _lower_dynamic_srm(lw: Lowerer, m, ins):
    """``k(x) * x + b(x)``: per-sample coefficients from the global mean (S2BNet SRM)."""
    x = ins[0]
    s = lw.b.op("flatten", lw.b.op("mean_hw", [x]))[0]
    h = lw.emit(m.act, lw.emit(m.fc1, [s]))[0]
    kr, br = lw.b.op("chunk", lw.emit(m.fc2, [h]), nout=2, attrs={"chunks": 2})
    k = lw.b.op("add_scalar", lw.b.op("tanh", [kr]), attrs={"value": 1.0})[0]
    b = lw.b.op("tanh", [br])[0]
    k4 = lw.b.op("unflatten", [k])[0]
    b4 = lw.b.op("unflatten", [b])[0]
    return lw.b.op("add", [b4, lw.b.op("mul", [x, k4])[0]])


def _lower_gabor_activation(lw: Lowerer, m, ins):
    g = m.gabor.bank.to(torch.float32) * m.lam
    k = g.shape[-1]
    y = lw.b.op(
        "conv2d",
        ins,
        attrs={"stride": 1, "padding": k // 2, "groups": int(g.shape[0])},
        params={"weight": as_array(g)},
    )[0]
    return lw.b.op("add", [ins[0], y])


register_lowering(DynamicSRM, _lower_dynamic_srm)
register_lowering(GaborActivationFilter, _lower_gabor_activation)
