"""BNNPan: prior-integrated binary frequency network with a latent diffusion prior.

J. Hou, X. Chen, R. Ran, X. Cong, X. Liu, J. W. You, L.-J. Deng, "Binarized Neural Network for Multi-spectral
Image Fusion", CVPR 2025. No code, configuration or weights are published; what follows is the documented
reconstruction (``docs/models/bnnpan.md`` separates facts from reconstruction choices). Every input is
normalised to [0, 1].

Network (``SR = N(P, M_up, z_hat) + M_up``)::

    F0  = Conv3x3_fp(cat(pan, lms))                      # (B, D, H, W), D = dim
    F_k = PIBF_k(F_{k-1}, z)                             # k = 1 .. n_modules
    SR  = Conv3x3_fp(F_n) + lms                          # (B, C, H, W)

PIBF (:class:`PIBF`), on X (B, D, H, W)::

    Y  = BWTC(X)              # BinaryWaveletConv: Haar DWT -> one NBC per sub-band -> inverse DWT
    Y~ = Y * z_w + z_b        # LatentPriorModulation (LDPC), z_w, z_b = split(Linear(d -> 2D)(z))
    O  = W_c * Y~ + Y         # ChannelCalibration (CDC), W_c = sigmoid(Linear(3D -> D)(stats(Y~)))

NBC (:class:`NormalizedBinaryConv`), on X_f (B, D, h, w)::

    Xb  = BinConv3x3(sign(X_f + b))                      # ApproxSign backward; alpha sign(W), clip STE
    Xb' = (sigma_f / lambda) (Xb - mu_b) / sigma_b + mu_f + eta   # per sample and channel over h x w
    X'  = RPReLU(Xb') + X_f

The latent ``z`` comes from the stage-I encoder (sees ``gt``) during stage I and from the diffusion prior
(:mod:`binsharp.models.bnnpan_prior`) otherwise. Switches (constructor arguments, stored in ``config``):
``dwt``, ``norm``, ``prior``, ``n_modules``, ``latent_dim``, ``timesteps``, ``dim``, ``prior_init``,
``prior_channels``, ``denoiser_hidden``, ``noise_seed``, ``zero_tail``.

Training: three stages (:func:`bnnpan_recipe`), the model side of the engine's hook protocol is
:meth:`BNNPan.training_loss` / :meth:`BNNPan.validation_output`; each stage's ``options.phase`` says which
loss it uses (``"I"``, ``"II"``, ``"III"``). Complexity with and without the prior networks:
:func:`complexity_split`.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from binsharp.errors import BinsharpError
from binsharp.models.base import PanModel, example_inputs
from binsharp.models.bnnpan_prior import LatentDiffusionPrior, diffusion_schedule
from binsharp.models.recipes import check_recipe, default_recipe
from binsharp.models.registry import register_model
from binsharp.nn import (
    ApproxSign,
    BinaryConv2d,
    HaarDWT,
    HaarIDWT,
    LearnableBias,
    RPReLU,
    ScaledSignWeight,
    merge_bands,
    split_bands,
)
from binsharp.nn.complexity import OpCount, count, register_counter
from binsharp.nn.lowering import Lowerer, as_array, register_lowering

__all__ = [
    "StatisticsRestandardization",
    "NormalizedBinaryConv",
    "BinaryWaveletConv",
    "LatentPriorModulation",
    "ChannelCalibration",
    "PIBF",
    "BNNPan",
    "PRIOR_INITS",
    "PHASES",
    "bnnpan_recipe",
    "complexity_split",
    "diffusion_schedule",
]

PRIOR_INITS = ("identity", "offset", "plain")
PHASES = ("I", "II", "III")
PAPER = (
    "J. Hou, X. Chen, R. Ran, X. Cong, X. Liu, J. W. You, L.-J. Deng, "
    "Binarized Neural Network for Multi-spectral Image Fusion, CVPR 2025"
)


def _stats(x: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Per-sample, per-channel mean and ``sqrt(var + eps)`` over H x W (population variance); (B,C,1,1)."""
    var, mu = torch.var_mean(x, dim=(2, 3), correction=0, keepdim=True)
    return mu, torch.sqrt(var + eps)


# ---------------------------------------------------------------------------------------------- layers
class StatisticsRestandardization(nn.Module):
    """Re-standardise a binary branch with the statistics of its full-precision input.

    ``y = (sigma_f / lambda) * (xb - mu_b) / sigma_b + mu_f + eta``, with ``mu``/``sigma`` the mean and
    ``sqrt(var + eps)`` per sample and channel over H x W. ``lambda`` (init 1) and ``eta`` (init 0) are
    learnable per channel, shape (1, C, 1, 1).

    Shapes: xb, xf (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = float(eps)
        self.lam = nn.Parameter(torch.ones(1, int(channels), 1, 1))
        self.eta = nn.Parameter(torch.zeros(1, int(channels), 1, 1))

    def forward(self, xb: Tensor, xf: Tensor) -> Tensor:
        mu_b, sd_b = _stats(xb, self.eps)
        mu_f, sd_f = _stats(xf, self.eps)
        return (sd_f / self.lam) * (xb - mu_b) / sd_b + mu_f + self.eta

    def extra_repr(self) -> str:
        return f"channels={self.lam.shape[1]}, eps={self.eps}"


class NormalizedBinaryConv(nn.Module):
    """Normalized binary convolution (NBC): ``X' = RPReLU(Restd(BinConv(sign(X + b)), X)) + X``.

    The convolution is a :class:`~binsharp.nn.BinaryConv2d` (C -> C, 3x3 by default, zero padding, no bias)
    with :class:`~binsharp.nn.ApproxSign` activations and :class:`~binsharp.nn.ScaledSignWeight` weights
    (alpha = mean |W| per output channel, detached; clip STE). ``norm=False`` removes the re-standardisation.

    Args:
        channels: C.
        kernel_size: odd kernel size.
        norm: re-standardise with the full-precision input statistics.
        eps: variance epsilon of the statistics.

    Shapes: x (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, kernel_size: int = 3, norm: bool = True, eps: float = 1e-5) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise BinsharpError(f"NormalizedBinaryConv needs an odd kernel size, got {kernel_size}")
        c = int(channels)
        self.bias = LearnableBias(c)
        self.conv = BinaryConv2d(
            c,
            c,
            kernel_size,
            padding=kernel_size // 2,
            bias=False,
            input_quantizer=ApproxSign(),
            kernel_quantizer=ScaledSignWeight(),
        )
        self.restd = StatisticsRestandardization(c, eps) if norm else None
        self.act = RPReLU(c)

    @property
    def norm(self) -> bool:
        return self.restd is not None

    def branch(self, x: Tensor) -> Tensor:
        """The re-standardised binary branch ``Xb'`` (before RPReLU and the residual add), (B, C, H, W)."""
        xb = self.conv(self.bias(x))
        return self.restd(xb, x) if self.restd is not None else xb

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.branch(x)) + x


class BinaryWaveletConv(nn.Module):
    """Binary wavelet transform convolution (BWTC): Haar DWT -> one NBC per sub-band -> inverse DWT.

    The sub-bands LL, LH, HL, HH (each (B, C, H/2, W/2)) have their own :class:`NormalizedBinaryConv`
    (``self.bands[0..3]``); the orthonormal Haar pair reconstructs exactly, so a band whose NBC is the
    identity passes through unchanged. ``dwt=False``: one NBC on the full-resolution features.

    Shapes: x (B, C, H, W), H and W even when ``dwt`` -> (B, C, H, W).
    """

    def __init__(self, channels: int, dwt: bool = True, norm: bool = True, eps: float = 1e-5) -> None:
        super().__init__()
        self.dwt = HaarDWT() if dwt else None
        self.idwt = HaarIDWT() if dwt else None
        n = 4 if dwt else 1
        self.bands = nn.ModuleList(NormalizedBinaryConv(channels, 3, norm=norm, eps=eps) for _ in range(n))

    def forward(self, x: Tensor) -> Tensor:
        if self.dwt is None:
            return self.bands[0](x)
        sub = split_bands(self.dwt(x))
        return self.idwt(merge_bands(*(nbc(s) for nbc, s in zip(self.bands, sub, strict=True))))


class LatentPriorModulation(nn.Module):
    """Latent diffusion prior compensation (LDPC): ``Y~ = Y * z_w + z_b``, ``z_w, z_b = split(Linear(z))``.

    ``Linear(d -> 2D)`` without bias; the first D outputs give ``z_w``, the last D ``z_b``. Initialisation
    (``init``):

    * ``"identity"`` (default): ``z_w = 1 + (W z)_w``, the Linear weight is zero, so the modulation is exactly
      the identity at initialisation whatever z (training gradually lets the prior in);
    * ``"offset"``: ``z_w = 1 + (W z)_w`` with PyTorch's default Linear initialisation (near identity);
    * ``"plain"``: ``z_w = (W z)_w`` (the paper's formula taken literally), default initialisation.

    Shapes: y (B, D, H, W), z (B, d) -> (B, D, H, W).
    """

    def __init__(self, latent_dim: int, channels: int, init: str = "identity") -> None:
        super().__init__()
        if init not in PRIOR_INITS:
            raise BinsharpError(f"prior_init must be one of {PRIOR_INITS}, got {init!r}")
        self.init = init
        self.channels = int(channels)
        self.linear = nn.Linear(int(latent_dim), 2 * self.channels, bias=False)
        self.offset = 0.0 if init == "plain" else 1.0
        if init == "identity":
            nn.init.zeros_(self.linear.weight)

    def forward(self, y: Tensor, z: Tensor) -> Tensor:
        zw, zb = self.linear(z).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
        if self.offset:
            zw = zw + self.offset
        return y * zw + zb

    def extra_repr(self) -> str:
        return f"init={self.init!r}"


class ChannelCalibration(nn.Module):
    """Channel-wise distribution calibration (CDC): ``O = W_c * Y~ + Y``.

    ``W_c = sigmoid(Linear(3D -> D)(cat(mean|Y~|, mean Y~, std Y~)))``, statistics per sample and channel over
    H x W (``std = sqrt(var + eps)``, population variance).

    Shapes: y_mod (Y~) and y (B, D, H, W) -> (B, D, H, W).
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = float(eps)
        self.linear = nn.Linear(3 * int(channels), int(channels))
        self.gate = nn.Sigmoid()

    def weights(self, y_mod: Tensor) -> Tensor:
        """``W_c`` (B, D, 1, 1)."""
        mu, sd = _stats(y_mod, self.eps)
        stats = torch.cat([y_mod.abs().mean(dim=(2, 3)), mu.flatten(1), sd.flatten(1)], dim=1)
        return self.gate(self.linear(stats)).unsqueeze(-1).unsqueeze(-1)

    def forward(self, y_mod: Tensor, y: Tensor) -> Tensor:
        return self.weights(y_mod) * y_mod + y


class PIBF(nn.Module):
    """Prior-integrated binary frequency module: BWTC -> LDPC (when ``prior``) -> CDC.

    Args:
        channels: D.
        latent_dim: d (ignored without prior).
        dwt, norm: switches of :class:`BinaryWaveletConv`.
        prior: with LDPC; otherwise ``z`` must be None and ``Y~ = Y``.
        prior_init: see :class:`LatentPriorModulation`.

    Shapes: x (B, D, H, W), z (B, d) or None -> (B, D, H, W).
    """

    def __init__(
        self,
        channels: int,
        latent_dim: int = 64,
        *,
        dwt: bool = True,
        norm: bool = True,
        prior: bool = True,
        prior_init: str = "identity",
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.bwtc = BinaryWaveletConv(channels, dwt=dwt, norm=norm, eps=eps)
        self.ldpc = LatentPriorModulation(latent_dim, channels, prior_init) if prior else None
        self.cdc = ChannelCalibration(channels, eps)

    def forward(self, x: Tensor, z: Tensor | None = None) -> Tensor:
        y = self.bwtc(x)
        if self.ldpc is not None:
            if z is None:
                raise BinsharpError("PIBF with a prior needs the latent z")
            y_mod = self.ldpc(y, z)
        else:
            y_mod = y
        return self.cdc(y_mod, y)


# ---------------------------------------------------------------------------------------------- recipe
def bnnpan_recipe(prior: bool = True) -> dict[str, Any]:
    """The BNNPan training recipe in the engine's multi-stage format (JSON-serialisable).

    Budget 100 000 steps of 16 patches in all (the shared binary budget), Adam, cosine annealing to 1e-6
    within each stage, L1 losses:

    =====  ======  ====  ==============================================  ==================================
    stage  steps   lr    trained                                         loss
    =====  ======  ====  ==============================================  ==================================
    I      50 000  4e-4  head, PIBFs, tail, stage-I encoder              L1(SR(z), GT), z = encoder(GT, ...)
    II     20 000  4e-4  condition encoder, denoiser                     L1(z_hat, z), encoder frozen
    III    30 000  1e-4  everything but the stage-I encoder              L1(SR(z_hat), GT) + L1(z_hat, z)
    =====  ======  ====  ==============================================  ==================================

    ``prior=False``: one stage ``I`` of 100 000 steps, L1(SR, GT) (the same budget).
    """
    base = default_recipe("binary")
    base.update(
        source=(
            "three stages as described for BNNPan (CVPR 2025); stage lengths and learning rates are a "
            "reconstruction (the shared binary budget: Adam 4e-4, cosine, 1.6 M samples in all)"
        )
    )
    if not prior:
        base["stages"] = [{"name": "I", "steps": 100_000, "options": {"phase": "I"}}]
        return check_recipe(base)
    base["stages"] = [
        {
            "name": "I",
            "steps": 50_000,
            "lr": 4e-4,
            "trainable": ["head.*", "body.*", "tail.*", "prior.encoder.*"],
            "options": {"phase": "I"},
        },
        {
            "name": "II",
            "steps": 20_000,
            "lr": 4e-4,
            "trainable": ["prior.condition.*", "prior.denoiser.*"],
            "options": {"phase": "II"},
        },
        {
            "name": "III",
            "steps": 30_000,
            "lr": 1e-4,
            "trainable": ["*"],
            "frozen": ["prior.encoder.*"],
            "options": {"phase": "III", "latent_weight": 1.0},
        },
    ]
    return check_recipe(base)


# ---------------------------------------------------------------------------------------------- model
@register_model("bnnpan", kind="binary", paper=PAPER, recipe=bnnpan_recipe(True))
class BNNPan(PanModel):
    """BNNPan: binary PIBF cascade with Haar sub-band NBCs and a latent diffusion prior.

    Args:
        bands: C.
        dim: D, feature channels.
        n_modules: number of PIBF modules (2 / 4 / 6 in the paper's ablation).
        dwt: Haar sub-band NBCs (False: one NBC at full resolution per PIBF).
        norm: re-standardise every NBC with the full-precision input statistics.
        prior: latent prior (False: no z, LDPC skipped, no prior networks; single-stage recipe).
        latent_dim: d.
        timesteps: T of the latent diffusion.
        prior_init: LDPC initialisation (``"identity"``, ``"offset"``, ``"plain"``; see
            :class:`LatentPriorModulation`).
        prior_channels: width of the prior encoders' conv stacks.
        denoiser_hidden: width of the denoiser MLP.
        noise_seed: seed of the inference noise of the reverse diffusion.
        zero_tail: initialise the tail convolution to zero, so that ``SR = M_up`` at initialisation (the
            PIBF cascade amplifies its input about 3x per module at initialisation: NBC adds a branch with the
            input's own statistics, CDC adds ``W_c Y~`` with ``W_c`` about 0.5); False: PyTorch's default.

    Forward: ``lms`` (B, C, H, W), ``pan`` (B, 1, H, W), optional ``gt`` (B, C, H, W), normalised ->
    (B, C, H, W). With ``gt`` the latent comes from the stage-I encoder, otherwise from the diffusion prior.
    Any H, W: inputs are replicate-padded to multiples of 4 and the output cropped back.
    """

    kind = "binary"
    inputs = ("lms", "pan")
    multiple = 4

    def __init__(
        self,
        bands: int = 8,
        dim: int = 32,
        n_modules: int = 4,
        dwt: bool = True,
        norm: bool = True,
        prior: bool = True,
        latent_dim: int = 64,
        timesteps: int = 4,
        prior_init: str = "identity",
        prior_channels: int = 32,
        denoiser_hidden: int = 64,
        noise_seed: int = 0,
        zero_tail: bool = True,
    ) -> None:
        super().__init__(bands)
        for name, v in (("dim", dim), ("n_modules", n_modules), ("latent_dim", latent_dim)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise BinsharpError(f"{name} must be a positive integer, got {v!r}")
        if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1:
            raise BinsharpError(f"timesteps must be a positive integer, got {timesteps!r}")
        if prior_init not in PRIOR_INITS:
            raise BinsharpError(f"prior_init must be one of {PRIOR_INITS}, got {prior_init!r}")
        self.dim = int(dim)
        self.n_modules = int(n_modules)
        self.use_dwt, self.use_norm, self.use_prior = bool(dwt), bool(norm), bool(prior)
        self.config = {
            "bands": self.bands, "dim": dim, "n_modules": n_modules, "dwt": dwt, "norm": norm, "prior": prior,
            "latent_dim": latent_dim, "timesteps": timesteps, "prior_init": prior_init,
            "prior_channels": prior_channels, "denoiser_hidden": denoiser_hidden, "noise_seed": noise_seed,
            "zero_tail": zero_tail,
        }  # fmt: skip
        self.head = nn.Conv2d(bands + 1, self.dim, 3, padding=1, bias=False)
        self.body = nn.ModuleList(
            PIBF(self.dim, latent_dim, dwt=dwt, norm=norm, prior=prior, prior_init=prior_init)
            for _ in range(self.n_modules)
        )
        self.tail = nn.Conv2d(self.dim, bands, 3, padding=1, bias=False)
        if zero_tail:
            nn.init.zeros_(self.tail.weight)
        self.prior = (
            LatentDiffusionPrior(bands, latent_dim, prior_channels, denoiser_hidden, timesteps, noise_seed)
            if prior
            else None
        )
        self.phase: str | None = None

    # ------------------------------------------------------------------ forward
    def _pad(self, *xs: Tensor | None) -> tuple[list[Tensor | None], int, int]:
        h, w = next(x for x in xs if x is not None).shape[-2:]
        ph, pw = (-h) % self.multiple, (-w) % self.multiple
        if not (ph or pw):
            return list(xs), h, w
        return [None if x is None else F.pad(x, (0, pw, 0, ph), mode="replicate") for x in xs], h, w

    def _check_gt(self, gt: Tensor | None, lms: Tensor) -> None:
        if gt is not None and (not isinstance(gt, Tensor) or gt.shape != lms.shape):
            shape = tuple(gt.shape) if isinstance(gt, Tensor) else type(gt).__name__
            raise BinsharpError(f"gt must be a tensor shaped like lms {tuple(lms.shape)}, got {shape}")

    def latent(self, lms: Tensor, pan: Tensor, gt: Tensor | None = None) -> Tensor | None:
        """z (B, d): from the stage-I encoder when ``gt`` is given, else the diffusion prior; None without
        prior. Inputs already padded to multiples of 4."""
        if self.prior is None:
            return None
        if gt is not None:
            return self.prior.encode(gt, pan, lms)
        return self.prior(pan, lms)

    def reconstruct(self, lms: Tensor, pan: Tensor, z: Tensor | None) -> Tensor:
        """``N(P, M_up, z) + M_up`` for inputs padded to multiples of 4: (B, C, H, W)."""
        f = self.head(torch.cat([pan, lms], dim=1))
        for m in self.body:
            f = m(f, z)
        return self.tail(f) + lms

    def forward(
        self,
        *,
        ms: Tensor | None = None,
        lms: Tensor | None = None,
        pan: Tensor | None = None,
        gt: Tensor | None = None,
    ) -> Tensor:
        """lms (B,C,H,W), pan (B,1,H,W), optional gt (B,C,H,W) normalised -> fused (B,C,H,W)."""
        self.check_inputs(ms=ms, lms=lms, pan=pan)
        self._check_gt(gt, lms)
        (lms_p, pan_p, gt_p), h, w = self._pad(lms, pan, gt)
        out = self.reconstruct(lms_p, pan_p, self.latent(lms_p, pan_p, gt_p))
        return out[..., :h, :w]

    # ------------------------------------------------------------------ training hooks
    def default_recipe(self) -> dict[str, Any]:
        """Three stages with the prior, one stage without (see :func:`bnnpan_recipe`)."""
        return copy.deepcopy(bnnpan_recipe(self.use_prior))

    def _phase(self, stage: Any) -> str:
        phase = str((getattr(stage, "options", None) or {}).get("phase", getattr(stage, "name", ""))).upper()
        if phase not in PHASES:
            raise BinsharpError(
                f"BNNPan stage {getattr(stage, 'name', '?')!r}: options.phase must be one of {PHASES} "
                f"(or the stage named so), got {phase!r}"
            )
        return phase

    def on_stage_start(self, stage: Any) -> None:
        """Engine hook: record the stage's phase (validates it early)."""
        self.phase = self._phase(stage)

    def training_loss(self, batch: dict[str, Tensor], stage: Any) -> dict[str, Tensor]:
        """Engine hook: the loss of the stage's phase.

        * I: ``crit(SR(z), GT)`` with ``z`` from the stage-I encoder (sees GT);
        * II: ``L1(z_hat, z)``; ``z`` from the frozen encoder (no gradient), ``z_hat`` from the reverse
          process started at the diffused ``z`` (DiffIR), conditioned on (P, M_up);
        * III: ``crit(SR(z_hat), GT) + latent_weight * L1(z_hat, z)`` (``stage.options.latent_weight``,
          default 1).

        ``crit`` is the stage's loss (``l1`` in the default recipe). Without prior every phase is
        ``crit(SR, GT)``. Returns ``{"loss", "sr_loss" and/or "latent_l1"}``.
        """
        phase = self._phase(stage)
        lms, pan, gt = batch["lms"], batch["pan"], batch["gt"]
        self.check_inputs(lms=lms, pan=pan)
        self._check_gt(gt, lms)
        (lms, pan, gt_p), h, w = self._pad(lms, pan, gt)
        crit = stage.criterion()
        if self.prior is None:
            loss = crit(self.reconstruct(lms, pan, None)[..., :h, :w], gt)
            return {"loss": loss, "sr_loss": loss.detach()}
        if phase == "I":
            loss = crit(self.reconstruct(lms, pan, self.prior.encode(gt_p, pan, lms))[..., :h, :w], gt)
            return {"loss": loss, "sr_loss": loss.detach()}
        with torch.no_grad():
            z = self.prior.encode(gt_p, pan, lms)
        c = self.prior.condition_vector(pan, lms)
        z_hat = self.prior.reverse(c, self.prior.diffuse(z))
        latent = F.l1_loss(z_hat, z)
        if phase == "II":
            return {"loss": latent, "latent_l1": latent.detach()}
        sr = crit(self.reconstruct(lms, pan, z_hat)[..., :h, :w], gt)
        weight = float((stage.options or {}).get("latent_weight", 1.0))
        return {"loss": sr + weight * latent, "sr_loss": sr.detach(), "latent_l1": latent.detach()}

    def validation_output(self, batch: dict[str, Tensor], stage: Any) -> Tensor:
        """Engine hook: stage I validates with the encoder latent (the denoiser is not trained yet), the
        later stages with the diffusion prior (as at inference)."""
        gt = batch.get("gt") if self._phase(stage) == "I" else None
        return self(lms=batch["lms"], pan=batch["pan"], gt=gt)

    def extra_repr(self) -> str:
        return (
            super().extra_repr()
            + f", dim={self.dim}, n_modules={self.n_modules}, dwt={self.use_dwt}, norm={self.use_norm}, "
            f"prior={self.use_prior}"
        )


# ---------------------------------------------------------------------------------------------- counting
def _count_restd(m: nn.Module, inputs: tuple, y: Any) -> OpCount:
    # mean and variance of both inputs (2 accumulations each per element), then sub, div, mul, add, add
    n = y.numel()
    return OpCount(elementwise=4 * n + 5 * n)


register_counter(StatisticsRestandardization, _count_restd)


def complexity_split(model: BNNPan, size: int = 256, *, batch: int = 1) -> dict[str, Any]:
    """OPs/Params of a BNNPan model at inference, in total and split into the network N and the prior.

    Counts one forward pass (no ``gt``: condition encoder + T denoiser calls + sampler arithmetic) on
    ``size x size`` random inputs with :func:`binsharp.nn.complexity.count`. The *prior networks* are
    everything under ``prior`` (condition encoder, denoiser, sampler); the LDPC modulation layers belong to
    N. The stage-I encoder does not run at inference: its parameters are reported separately
    (``encoder_params``, training only).

    Returns:
        ``{"size", "total", "network", "prior"}`` where each of the last three is a dict with ``bops``,
        ``flops``, ``elementwise``, ``params_binary``, ``params_float``, ``ops`` (BOPs/64 + FLOPs) and
        ``params`` (binary/32 + float); plus ``encoder_params`` and the full :class:`Report` as ``report``.
    """
    inputs = example_inputs(model.bands, size, batch=batch)
    rep = count(model, inputs)

    def summary(rows: list[Any]) -> dict[str, Any]:
        d = {k: sum(getattr(r, k) for r in rows) for k in
             ("bops", "flops", "elementwise", "params_binary", "params_float")}  # fmt: skip
        d["ops"] = d["bops"] / 64 + d["flops"]
        d["params"] = d["params_binary"] / 32 + d["params_float"]
        return d

    def is_prior(name: str) -> bool:
        return name == "prior" or name.startswith("prior.")

    prior_rows = [r for r in rep.per_layer if is_prior(r.name)]
    net_rows = [r for r in rep.per_layer if not is_prior(r.name)]
    enc = sum(p.numel() for p in model.prior.encoder.parameters()) if model.prior is not None else 0
    return {
        "size": size,
        "total": summary(rep.per_layer),
        "network": summary(net_rows),
        "prior": summary(prior_rows),
        "encoder_params": enc,
        "report": rep,
    }


# --------------------------------------------------------------------------------------- engine lowerings
def _lower_bnnpan(lw: Lowerer, m, ins):
    """Head, PIBFs, tail; between two PIBFs with Haar sub-bands the features travel as their Haar bands (each
    ``calibrate`` writes the next module's sub-bands directly, reads its own module's ones)."""
    lms, pan = ins
    lms_p = lw.b.op("pad_to_multiple", [lms], attrs={"m": int(m.multiple), "mode": "replicate"})[0]
    pan_p = lw.b.op("pad_to_multiple", [pan], attrs={"m": int(m.multiple), "mode": "replicate"})[0]
    z = lw.emit(m.prior, [pan_p, lms_p], "prior")[0] if m.prior is not None else None
    f = lw.emit(m.head, [lw.b.op("cat", [pan_p, lms_p])[0]], "head")[0]
    bands = False
    for i, pibf in enumerate(m.body):
        nxt = m.body[i + 1] if i + 1 < len(m.body) else None
        haar_out = nxt is not None and nxt.bwtc.dwt is not None
        f = _pibf(lw, pibf, f, z, bands_in=bands, bands_out=haar_out, name=f"body.{i}")
        bands = haar_out
    out = lw.b.op("add", [lw.emit(m.tail, [f], "tail")[0], lms_p])[0]
    return lw.b.op("crop_like", [out, lms])


def _pibf(lw: Lowerer, m, x: str, z: str | None, *, bands_in: bool, bands_out: bool, name: str) -> str:
    """BWTC, then LDPC and CDC as one ``calibrate`` op (the modulation terms ``zw``, ``zb`` as its inputs).
    ``bands_in``: ``x`` holds the features' Haar bands (``haar_dwt`` layout); ``bands_out``: return the
    output's Haar bands."""
    if m.ldpc is not None and z is None:
        raise BinsharpError("PIBF with a prior needs the latent z")
    y, haar_in = _bwtc(lw, m.bwtc, x, bands_in, f"{name}.bwtc")
    terms = _ldpc_terms(lw, m.ldpc, z) if m.ldpc is not None and z is not None else []
    return lw.b.op(
        "calibrate",
        [y, *terms],
        attrs={"eps": float(m.cdc.eps), "haar_in": haar_in, "haar_out": bands_out},
        params={"weight": as_array(m.cdc.linear.weight), "bias": as_array(m.cdc.linear.bias)},
    )[0]


def _lower_pibf(lw: Lowerer, m, ins, name: str = "pibf"):
    z = ins[1] if len(ins) > 1 else None
    return [_pibf(lw, m, ins[0], z, bands_in=False, bands_out=False, name=name)]


def _bwtc(lw: Lowerer, m, x: str, bands_in: bool, name: str) -> tuple[str, bool]:
    """The BWTC's output, or (second value True) its Haar bands before the inverse transform; ``bands_in``
    (Haar sub-bands only): ``x`` holds the input's Haar bands."""
    if m.dwt is None:
        return lw.emit(m.bands[0], [x], f"{name}.band")[0], False
    sub = lw.b.op("split_bands", [x if bands_in else lw.b.op("haar_dwt", [x])[0]], nout=4)
    pairs = enumerate(zip(m.bands, sub, strict=True))
    outs = [lw.emit(nbc, [s], f"{name}.band{i}")[0] for i, (nbc, s) in pairs]
    return lw.b.op("merge_bands", outs)[0], True


def _lower_bwtc(lw: Lowerer, m, ins):
    y, bands = _bwtc(lw, m, ins[0], False, "bwtc")
    return lw.b.op("haar_idwt", [y]) if bands else [y]


def _lower_nbc(lw: Lowerer, m, ins):
    """Binary convolution, then the re-standardisation, RPReLU and residual add as one ``restd`` op."""
    x = ins[0]
    xb = lw.emit(m.conv, lw.emit(m.bias, [x], "bias"), "conv")[0]
    if m.restd is None:
        return lw.b.op("add", [lw.emit(m.act, [xb], "act")[0], x])
    return _lower_restd(lw, m.restd, [xb, x], act=m.act)


def _lower_restd(lw: Lowerer, m, ins, act: RPReLU | None = None):
    """``(sd_f / lam) * (xb - mu_b) / sd_b + mu_f + eta`` (op ``restd``), with ``act`` (the NBC's RPReLU)
    and the residual add of ``xf`` fused when given."""
    params = {"lam": as_array(m.lam).reshape(-1), "eta": as_array(m.eta).reshape(-1)}
    if act is not None:
        params.update({k: as_array(getattr(act, k)).reshape(-1) for k in ("gamma", "slope", "zeta")})
    return lw.b.op("restd", ins, attrs={"eps": float(m.eps), "residual": act is not None}, params=params)


def _ldpc_terms(lw: Lowerer, m, z: str) -> list[str]:
    """``[zw, zb]`` (B, D, 1, 1) of the modulation ``y * zw + zb`` from the latent ``z``."""
    zz = lw.b.op("unflatten", lw.emit(m.linear, [z]))[0]
    zw, zb = lw.b.op("chunk", [zz], nout=2, attrs={"chunks": 2})
    if m.offset:
        zw = lw.b.op("add_scalar", [zw], attrs={"value": float(m.offset)})[0]
    return [zw, zb]


def _lower_ldpc(lw: Lowerer, m, ins):
    y, z = ins
    zw, zb = _ldpc_terms(lw, m, z)
    return lw.b.op("add", [lw.b.op("mul", [y, zw])[0], zb])


register_lowering(BNNPan, _lower_bnnpan)
register_lowering(PIBF, _lower_pibf)
register_lowering(BinaryWaveletConv, _lower_bwtc)
register_lowering(NormalizedBinaryConv, _lower_nbc)
register_lowering(StatisticsRestandardization, _lower_restd)
register_lowering(LatentPriorModulation, _lower_ldpc)
