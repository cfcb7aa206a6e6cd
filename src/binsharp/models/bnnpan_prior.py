"""Latent diffusion prior of BNNPan (DiffIR-style compact prior), full precision.

Three small networks and a short diffusion process on a latent vector ``z`` of ``d`` values per image:

* :class:`LatentEncoder` as ``CPEN_S1`` (stage-I encoder): ``cat(GT, P, M_up)`` (B, 2C+1, H, W) ->
  pixel-unshuffle by 4 -> 1x1 conv -> two 3x3 convs (LeakyReLU 0.1) -> global average pool -> MLP -> ``z``
  (B, d). It sees the ground truth, so it only exists in training (stage I; frozen afterwards, where it
  provides the target ``z`` of the denoiser).
* :class:`LatentEncoder` as ``CPEN_S2`` (condition encoder): ``cat(P, M_up)`` (B, C+1, H, W) -> ``c`` (B, d),
  same architecture.
* :class:`LatentDenoiser`: an MLP on ``cat(c, t/T, z_t)`` (B, 2d+1) that predicts ``z_0`` (x0-prediction).

Diffusion (:func:`diffusion_schedule`): ``T`` steps (default 4), ``betas = linspace(sqrt(0.1), sqrt(0.99),
T)**2``, ``alphas = 1 - betas``, ``alphas_cumprod = cumprod(alphas)``. Step ``i = T-1 .. 0`` (the time input
is ``(i + 1) / T``, in (0, 1]) predicts ``z0_hat = denoiser(c, (i+1)/T, z_i)`` and moves to the posterior mean
``z_{i-1} = coef1_i * z0_hat + coef2_i * z_i`` with ``coef1_i = beta_i sqrt(acp_{i-1}) / (1 - ac_i)``,
``coef2_i = (1 - acp_{i-1}) sqrt(alpha_i) / (1 - ac_i)`` (``acp_{-1} = 1``, so the last step returns
``z0_hat``). No noise is added in the reverse process (deterministic).

Start of the reverse process:

* inference: Gaussian noise from a private generator seeded with ``noise_seed``; ONE (1, d) vector shared
  by every image of the batch (so the fused image of a tile does not depend on what else is in the batch,
  nor on the device: the noise is drawn on the CPU);
* training (DiffIR): the target latent diffused to the last step, ``z_T = sqrt(ac_T) z + sqrt(1 - ac_T) n``
  with fresh noise ``n`` from the global generator (seeded by the training engine); the whole reverse chain
  is run with gradients and ``L1(z0_hat, z)`` is the loss. With ``alphas_cumprod[-1] = 0.0026`` (T = 4),
  ``z_T`` is almost pure noise, so training and inference start from nearly the same distribution.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from binsharp.errors import BinsharpError
from binsharp.nn.lowering import Lowerer, as_array, register_lowering

__all__ = ["diffusion_schedule", "LatentEncoder", "LatentDenoiser", "LatentDiffusionPrior"]


def diffusion_schedule(timesteps: int = 4) -> dict[str, Tensor]:
    """The diffusion schedule (float64 tensors of length ``T``).

    Returns:
        ``betas = linspace(sqrt(0.1), sqrt(0.99), T)**2``, ``alphas = 1 - betas``,
        ``alphas_cumprod = cumprod(alphas)``, ``alphas_cumprod_prev`` (``[1, ac_0, ..., ac_{T-2}]``),
        ``posterior_mean_coef1 = betas sqrt(acp) / (1 - ac)``, ``posterior_mean_coef2 = (1 - acp) sqrt(alphas)
        / (1 - ac)``.
    """
    t = int(timesteps)
    if t < 1:
        raise BinsharpError(f"timesteps must be >= 1, got {timesteps!r}")
    betas = torch.linspace(math.sqrt(0.1), math.sqrt(0.99), t, dtype=torch.float64) ** 2
    alphas = 1.0 - betas
    ac = torch.cumprod(alphas, 0)
    acp = torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
    return {
        "betas": betas,
        "alphas": alphas,
        "alphas_cumprod": ac,
        "alphas_cumprod_prev": acp,
        "posterior_mean_coef1": betas * acp.sqrt() / (1.0 - ac),
        "posterior_mean_coef2": (1.0 - acp) * alphas.sqrt() / (1.0 - ac),
    }


class LatentEncoder(nn.Module):
    """Compact prior encoder (CPEN): image stack -> latent vector.

    ``x`` (B, in_channels, H, W), H and W multiples of ``downscale`` -> PixelUnshuffle -> Conv1x1 ->
    LeakyReLU -> [Conv3x3 -> LeakyReLU] x 2 -> global average pool -> Linear(ch, d) -> LeakyReLU ->
    Linear(d, d) -> (B, d).

    Args:
        in_channels: channels of the input stack (2C+1 for CPEN_S1, C+1 for CPEN_S2).
        latent_dim: d.
        channels: width of the conv stack.
        downscale: pixel-unshuffle factor.
    """

    def __init__(self, in_channels: int, latent_dim: int, channels: int = 32, downscale: int = 4) -> None:
        super().__init__()
        ch = int(channels)
        self.downscale = int(downscale)
        self.unshuffle = nn.PixelUnshuffle(self.downscale)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels * self.downscale**2, ch, 1),
            nn.LeakyReLU(0.1),
            nn.Conv2d(ch, ch, 3, padding=1),
            nn.LeakyReLU(0.1),
            nn.Conv2d(ch, ch, 3, padding=1),
            nn.LeakyReLU(0.1),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.mlp = nn.Sequential(
            nn.Linear(ch, latent_dim), nn.LeakyReLU(0.1), nn.Linear(latent_dim, latent_dim)
        )

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_channels, H, W) -> (B, d)."""
        return self.mlp(self.pool(self.features(self.unshuffle(x))).flatten(1))


class LatentDenoiser(nn.Module):
    """x0-predicting MLP: ``z0_hat = MLP(cat(c, t/T, z_t))``.

    Linear(2d+1, hidden) -> LeakyReLU -> Linear(hidden, hidden) -> LeakyReLU -> Linear(hidden, d).

    Shapes: c (B, d), t (B, 1) in (0, 1], z_t (B, d) -> (B, d).
    """

    def __init__(self, latent_dim: int, hidden: int = 64) -> None:
        super().__init__()
        d, h = int(latent_dim), int(hidden)
        self.net = nn.Sequential(
            nn.Linear(2 * d + 1, h), nn.LeakyReLU(0.1), nn.Linear(h, h), nn.LeakyReLU(0.1), nn.Linear(h, d)
        )

    def forward(self, c: Tensor, t: Tensor, z_t: Tensor) -> Tensor:
        return self.net(torch.cat([c, t, z_t], dim=1))


class LatentDiffusionPrior(nn.Module):
    """The latent prior of BNNPan: stage-I encoder, condition encoder, denoiser and the T-step sampler.

    Args:
        bands: C.
        latent_dim: d.
        channels: width of the encoders' conv stacks.
        hidden: width of the denoiser MLP.
        timesteps: T.
        noise_seed: seed of the initial noise at inference.

    Submodules: ``encoder`` (CPEN_S1, training only), ``condition`` (CPEN_S2), ``denoiser``.
    All image inputs are normalised (B, ., H, W) with H, W multiples of 4.
    """

    def __init__(
        self,
        bands: int,
        latent_dim: int = 64,
        channels: int = 32,
        hidden: int = 64,
        timesteps: int = 4,
        noise_seed: int = 0,
    ) -> None:
        super().__init__()
        if latent_dim < 1 or channels < 1 or hidden < 1:
            raise BinsharpError(
                f"latent_dim, channels and hidden must be >= 1, got {latent_dim}, {channels}, {hidden}"
            )
        self.latent_dim = int(latent_dim)
        self.timesteps = int(timesteps)
        self.noise_seed = int(noise_seed)
        self.encoder = LatentEncoder(2 * bands + 1, self.latent_dim, channels)
        self.condition = LatentEncoder(bands + 1, self.latent_dim, channels)
        self.denoiser = LatentDenoiser(self.latent_dim, hidden)
        s = diffusion_schedule(self.timesteps)
        self.schedule = s
        # Python floats: no device transfers, exact float64 values rounded once when used.
        self._coef1 = [float(v) for v in s["posterior_mean_coef1"]]
        self._coef2 = [float(v) for v in s["posterior_mean_coef2"]]
        self._sqrt_ac_last = math.sqrt(float(s["alphas_cumprod"][-1]))
        self._sqrt_1m_ac_last = math.sqrt(1.0 - float(s["alphas_cumprod"][-1]))

    def encode(self, gt: Tensor, pan: Tensor, lms: Tensor) -> Tensor:
        """CPEN_S1: gt (B,C,H,W), pan (B,1,H,W), lms (B,C,H,W) -> z (B, d)."""
        return self.encoder(torch.cat([gt, pan, lms], dim=1))

    def condition_vector(self, pan: Tensor, lms: Tensor) -> Tensor:
        """CPEN_S2: pan (B,1,H,W), lms (B,C,H,W) -> c (B, d)."""
        return self.condition(torch.cat([pan, lms], dim=1))

    def initial_noise(self, batch: int, *, device: torch.device, dtype: torch.dtype) -> Tensor:
        """Seeded inference noise: one (1, d) standard normal vector (CPU generator seeded with
        ``noise_seed``) expanded to (batch, d)."""
        g = torch.Generator().manual_seed(self.noise_seed)
        n = torch.randn(1, self.latent_dim, generator=g, dtype=torch.float32)
        return n.to(device=device, dtype=dtype).expand(batch, -1)

    def diffuse(self, z: Tensor, noise: Tensor | None = None) -> Tensor:
        """``z_T = sqrt(ac_T) z + sqrt(1 - ac_T) noise`` (noise from the global generator when None)."""
        if noise is None:
            noise = torch.randn_like(z)
        return self._sqrt_ac_last * z + self._sqrt_1m_ac_last * noise

    def reverse(self, c: Tensor, z_t: Tensor) -> Tensor:
        """Deterministic reverse process from ``z_T`` (B, d) conditioned on ``c`` (B, d) -> z0_hat (B, d)."""
        z = z_t
        b = c.shape[0]
        for i in reversed(range(self.timesteps)):
            t = torch.full((b, 1), (i + 1) / self.timesteps, dtype=c.dtype, device=c.device)
            x0 = self.denoiser(c, t, z)
            z = self._coef1[i] * x0 + self._coef2[i] * z if i > 0 else x0
        return z

    def sample(self, pan: Tensor, lms: Tensor) -> Tensor:
        """Inference: z_hat (B, d) from the seeded noise, conditioned on (pan, lms)."""
        c = self.condition_vector(pan, lms)
        return self.reverse(c, self.initial_noise(c.shape[0], device=c.device, dtype=c.dtype))

    def forward(self, pan: Tensor, lms: Tensor) -> Tensor:
        """Same as :meth:`sample`."""
        return self.sample(pan, lms)

    def extra_repr(self) -> str:
        return f"latent_dim={self.latent_dim}, timesteps={self.timesteps}, noise_seed={self.noise_seed}"


# --------------------------------------------------------------------------------------- engine lowerings
def _lower_latent_encoder(lw: Lowerer, m, ins):
    x = lw.emit(m.unshuffle, ins)[0]
    x = lw.emit(m.features, [x])[0]
    x = lw.b.op("flatten", lw.emit(m.pool, [x]))[0]
    return lw.emit(m.mlp, [x])


def _lower_prior(lw: Lowerer, m, ins):
    """Inference path of the latent diffusion prior: seeded noise, T deterministic reverse steps."""
    pan, lms = ins
    c = lw.emit(m.condition, [lw.b.op("cat", [pan, lms])[0]], "prior.condition")[0]
    g = torch.Generator().manual_seed(m.noise_seed)
    noise = torch.randn(1, m.latent_dim, generator=g, dtype=torch.float32)
    z = lw.b.op("broadcast_rows", [lw.b.op("const", [], params={"value": as_array(noise)})[0], c])[0]
    for i in reversed(range(m.timesteps)):
        t = lw.b.op("fill_rows", [c], attrs={"value": float(np.float32((i + 1) / m.timesteps))})[0]
        x0 = lw.emit(m.denoiser.net, [lw.b.op("cat", [c, t, z])[0]], "prior.denoiser")[0]
        if i > 0:
            a = lw.b.op("mul_scalar", [x0], attrs={"value": float(m._coef1[i])})[0]
            bb = lw.b.op("mul_scalar", [z], attrs={"value": float(m._coef2[i])})[0]
            z = lw.b.op("add", [a, bb])[0]
        else:
            z = x0
    return [z]


register_lowering(LatentEncoder, _lower_latent_encoder)
register_lowering(LatentDiffusionPrior, _lower_prior)
