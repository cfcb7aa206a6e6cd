"""Quantizers: small composable :class:`torch.nn.Module` objects (larq style).

Activation quantizers map an activation tensor (any shape, usually (B, C, H, W)) to ``+1/-1`` of the same
shape and dtype; weight quantizers map a latent weight (O, I/groups, kh, kw) or (O, I) to its binarized
version of the same shape (``alpha_o * sign(W)`` where scaled). They are plugged into
:class:`~binsharp.nn.layers.BinaryConv2d` / :class:`~binsharp.nn.layers.BinaryLinear` as
``input_quantizer`` and ``kernel_quantizer``, and can be composed with :class:`torch.nn.Sequential`
(e.g. a weight modulation module followed by :class:`ScaledSignWeight`).

Class attributes read by the layers and the complexity counter:

* ``binary`` (bool): the output takes two values per output channel (True for all quantizers here).
* ``scaled`` (bool): weight quantizers only; the binarized kernel carries a per-output-channel scale
  ``alpha`` that costs one float multiply per output element of the convolution at inference.
* ``latent_clip`` (tuple or None): weight quantizers only; range to which the latent weights are clipped
  after each optimiser step by :func:`~binsharp.nn.layers.clip_latent_weights`.
* ``plain_sign`` (bool): activation quantizers only; the forward pass is exactly ``sign(x)``. Export form:
  :meth:`ActivationQuantizer.export_form` states what the packed engine must binarize (``plain_sign``
  quantizers need nothing more; others override it).

Schedules: modules whose surrogate gradient changes during training (:class:`EDESign`,
:class:`IRNetWeight`) expose ``set_progress(epoch, total)``; the training engine calls
:func:`binsharp.nn.set_progress(model, epoch, total) <binsharp.nn.layers.set_progress>` once per epoch
(fractional ``epoch`` is allowed).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from binsharp.errors import BinsharpError
from binsharp.names import unknown_name_message
from binsharp.nn import functional as BF

__all__ = [
    "ActivationQuantizer",
    "WeightQuantizer",
    "SignSTE",
    "ApproxSign",
    "EDESign",
    "ScalableTanhSign",
    "IdentitySTE",
    "ScaledSignWeight",
    "IRNetWeight",
    "BNNWeight",
    "QUANTIZERS",
    "get_quantizer",
]


class ActivationQuantizer(nn.Module):
    """Base class of activation binarizers: ``forward(x (any shape)) -> +1/-1 (same shape)``."""

    binary = True
    plain_sign = False

    def export_form(self, channels: int) -> tuple[Tensor | None, Tensor | None]:
        """``(scale, bias)``, each ``(channels,)`` float32 or ``None`` (1 / 0), such that the forward pass on
        a (B, channels, H, W) input is ``sign(x * scale[c] + bias[c])``: the packed engine's binarization.

        Raises :class:`BinsharpError` when the quantizer is not of that form.
        """
        if self.plain_sign:
            return None, None
        raise BinsharpError(f"activation quantizer {type(self).__name__} does not declare an export form")


class WeightQuantizer(nn.Module):
    """Base class of weight binarizers: ``forward(W (O, ...)) -> binarized W (O, ...)``."""

    binary = True
    scaled = False
    latent_clip: tuple[float, float] | None = None


def _channel_mean_abs(w: Tensor) -> Tensor:
    """Mean of ``|w|`` per output channel (dim 0), shaped for broadcasting: (O, 1, ..., 1)."""
    return w.abs().mean(dim=tuple(range(1, w.dim())), keepdim=True)


# ----------------------------------------------------------------------------------------- activations
class SignSTE(ActivationQuantizer):
    """Clip-STE sign (BNN / XNOR-Net / BTM): forward ``sign(x)``, backward ``1[|x| <= 1]``."""

    plain_sign = True

    def forward(self, x: Tensor) -> Tensor:
        return BF.sign_ste(x)


class ApproxSign(ActivationQuantizer):
    """Bi-Real ApproxSign: forward ``sign(x)``, backward ``max(0, 2 - 2|x|)`` (piecewise quadratic)."""

    plain_sign = True

    def forward(self, x: Tensor) -> Tensor:
        return BF.approx_sign(x)


class IdentitySTE(ActivationQuantizer):
    """Sign with identity gradient: forward ``sign(x)``, backward ``1``."""

    plain_sign = True

    def forward(self, x: Tensor) -> Tensor:
        return BF.identity_ste(x)


class _EDEState(nn.Module):
    """Holds the IR-Net EDE schedule ``(t, k)`` as persistent scalar buffers (saved in checkpoints)."""

    def __init__(self, t_min: float = 0.1, t_max: float = 10.0) -> None:
        super().__init__()
        if not (0 < t_min < t_max):
            raise BinsharpError(f"EDE needs 0 < t_min < t_max, got t_min={t_min}, t_max={t_max}")
        self.t_min = float(t_min)
        self.t_max = float(t_max)
        t, k = BF.ede_schedule(0.0, self.t_min, self.t_max)
        # Python copies used in forward (no device sync); the buffers carry the state into checkpoints.
        self._t, self._k = t, k
        self.register_buffer("t", torch.tensor(t, dtype=torch.float64))
        self.register_buffer("k", torch.tensor(k, dtype=torch.float64))
        self.register_load_state_dict_post_hook(_EDEState._refresh_after_load)

    @staticmethod
    def _refresh_after_load(module: nn.Module, incompatible_keys: object) -> None:
        module._t, module._k = float(module.t), float(module.k)

    def set_progress(self, epoch: float, total: float) -> None:
        """Set the schedule to ``epoch / total`` of training (``t = t_min * 10^(e/E * log10(t_max/t_min))``,
        ``k = max(1/t, 1)``)."""
        if total <= 0:
            raise BinsharpError(f"set_progress needs total > 0, got {total}")
        t, k = BF.ede_schedule(float(epoch) / float(total), self.t_min, self.t_max)
        self._t, self._k = t, k
        self.t.fill_(t)
        self.k.fill_(k)

    def _tk(self) -> tuple[float, float]:
        return self._t, self._k

    def extra_repr(self) -> str:
        return f"t_min={self.t_min}, t_max={self.t_max}, t={self._t:.4g}, k={self._k:.4g}"


class EDESign(_EDEState, ActivationQuantizer):
    """IR-Net error decay estimator: forward ``sign(x)``, backward ``k t (1 - tanh^2(t x))``.

    ``t = t_min * 10^(e/E * log10(t_max / t_min))``, ``k = max(1/t, 1)``; starts at ``e = 0``. Advance it
    with :meth:`set_progress` (or :func:`binsharp.nn.set_progress` on the whole model).

    Args:
        t_min, t_max: schedule end points (IR-Net: 0.1 and 10).
    """

    plain_sign = True

    def forward(self, x: Tensor) -> Tensor:
        t, k = self._tk()
        return BF.ede_sign(x, t, k)


class ScalableTanhSign(ActivationQuantizer):
    """Scalable-tanh sign (BiSRNet): forward ``sign(x)``, backward ``beta (1 - tanh^2(beta x))``.

    ``beta`` is learnable (initialised to ``init``) and receives its own gradient
    ``sum(grad * x * (1 - tanh^2(beta x)))``.

    Args:
        channels: ``None`` for one scalar ``beta``; an integer C for one ``beta`` per channel of a
            (B, C, H, W) input (shape (1, C, 1, 1)).
        init: initial value of ``beta``.
    """

    plain_sign = True

    def __init__(self, channels: int | None = None, init: float = 1.0) -> None:
        super().__init__()
        shape = () if channels is None else (1, int(channels), 1, 1)
        self.beta = nn.Parameter(torch.full(shape, float(init)))

    def forward(self, x: Tensor) -> Tensor:
        return BF.scalable_tanh_sign(x, self.beta.to(x.dtype))


# ------------------------------------------------------------------------------------------- weights
class ScaledSignWeight(WeightQuantizer):
    """XNOR / Bi-Real / ReActNet / BBCU / BiSR weight binarizer: ``Wb = alpha_o * sign(W)``.

    ``alpha_o = mean |W_o|`` over the input-channel and kernel dimensions of output channel ``o``, detached.
    Backward, as in the reference Bi-Real/ReActNet/BBCU/BiSRNet code
    (``(alpha*sign(W)).detach() - clip(W).detach() + clip(W)``): ``dWb/dW = 1[|W| <= 1]``, not multiplied by
    alpha; ``scale_grad=True`` multiplies it by ``alpha_o`` (the plain autograd of ``alpha * ste(W)``).

    Shapes: W (O, I/groups, kh, kw) or (O, I) -> same shape.
    """

    scaled = True

    def __init__(self, scale_grad: bool = False) -> None:
        super().__init__()
        self.scale_grad = bool(scale_grad)

    def forward(self, w: Tensor) -> Tensor:
        return BF.scaled_sign_ste(w, self.scale_grad)

    def extra_repr(self) -> str:
        return "scale_grad=True" if self.scale_grad else ""


class IRNetWeight(_EDEState, WeightQuantizer):
    """IR-Net Libra-PB weight binarizer with the EDE backward.

    ``W^ = (W - mean_o(W)) / std_o(W)`` (per output channel, unbiased std as in the reference code; the
    gradient flows through the standardisation); ``Wb = sign(W^) * 2^round(log2(mean_o |W^|))`` with the
    power-of-two scale detached; backward of the sign ``k t (1 - tanh^2(t W^))``.

    Shapes: W (O, I/groups, kh, kw) or (O, I) -> same shape.

    Args:
        t_min, t_max: EDE schedule end points (shared with :class:`EDESign`; advance with ``set_progress``).
        eps: added to the std to avoid division by zero.
    """

    scaled = True

    def __init__(self, t_min: float = 0.1, t_max: float = 10.0, eps: float = 1e-8) -> None:
        super().__init__(t_min, t_max)
        self.eps = float(eps)

    def forward(self, w: Tensor) -> Tensor:
        flat = w.reshape(w.shape[0], -1)
        view = (w.shape[0],) + (1,) * (w.dim() - 1)
        mean = flat.mean(dim=1).view(view)
        # unbiased std (reference code); a single weight per output channel has std 0 -> W^ = 0 -> +1
        std = flat.std(dim=1, correction=1 if flat.shape[1] > 1 else 0).view(view)
        wh = (w - mean) / (std + self.eps)
        with torch.no_grad():
            m = _channel_mean_abs(wh)
            m = torch.where(m > 0, m, torch.ones_like(m))  # all-zero channel: scale 1
            scale = torch.pow(2.0, torch.round(torch.log2(m)))
        t, k = self._tk()
        return BF.ede_sign(wh, t, k) * scale


class BNNWeight(WeightQuantizer):
    """BNN weight binarizer: ``Wb = sign(W)`` (no scale), clip-STE backward ``1[|W| <= 1]``.

    Latent clipping: the latent weights must stay in ``[-1, 1]``. ``latent_clip = (-1, 1)`` marks the layer
    for :func:`binsharp.nn.clip_latent_weights`, which the training engine calls after every optimiser step
    (or install it once with :func:`binsharp.nn.attach_latent_clipping`, an optimiser step post-hook).
    """

    latent_clip = (-1.0, 1.0)

    def forward(self, w: Tensor) -> Tensor:
        return BF.sign_ste(w)


QUANTIZERS: dict[str, type[nn.Module]] = {
    "ste_sign": SignSTE,
    "sign_ste": SignSTE,
    "approx_sign": ApproxSign,
    "ede_sign": EDESign,
    "scalable_tanh_sign": ScalableTanhSign,
    "identity_ste": IdentitySTE,
    "scaled_sign": ScaledSignWeight,
    "irnet_weight": IRNetWeight,
    "bnn_weight": BNNWeight,
}


def get_quantizer(spec: str | nn.Module | None) -> nn.Module | None:
    """Resolve a quantizer spec: ``None`` -> ``None``; a module -> itself; a name in :data:`QUANTIZERS`
    -> a fresh instance with default arguments.

    Names: ``ste_sign``/``sign_ste``, ``approx_sign``, ``ede_sign``, ``scalable_tanh_sign``, ``identity_ste``
    (activations); ``scaled_sign``, ``irnet_weight``, ``bnn_weight`` (weights).
    """
    if spec is None or isinstance(spec, nn.Module):
        return spec
    if isinstance(spec, str):
        if spec not in QUANTIZERS:
            raise BinsharpError(unknown_name_message(spec, sorted(QUANTIZERS), "quantizer"))
        return QUANTIZERS[spec]()
    raise BinsharpError(f"a quantizer must be None, a name or an nn.Module, got {type(spec).__name__}")
