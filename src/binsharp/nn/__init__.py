"""Binarization library: sign convention, quantizers, binary layers, Haar wavelets, complexity counter.

One sign convention everywhere: ``sign(x) = +1 if x >= 0 else -1`` (:func:`sign`; never :func:`torch.sign`).

Quantizers (:mod:`binsharp.nn.quantizers`) are small modules that binarize activations (``SignSTE``,
``ApproxSign``, ``EDESign``, ``ScalableTanhSign``, ``IdentitySTE``) or weights (``ScaledSignWeight``,
``IRNetWeight``, ``BNNWeight``); :class:`BinaryConv2d` / :class:`BinaryLinear` are composed from an input
quantizer and a kernel quantizer. The functional core is :mod:`binsharp.nn.functional`.
:mod:`binsharp.nn.complexity` counts BOPs, FLOPs, elementwise work and parameters.
"""

from binsharp.nn.functional import (
    approx_sign,
    channel_affine,
    ede_schedule,
    ede_sign,
    identity_ste,
    rprelu,
    scalable_tanh_sign,
    sign,
    sign_ste,
)
from binsharp.nn.layers import (
    BinaryConv2d,
    BinaryLinear,
    LearnableBias,
    ReDistribution,
    RPReLU,
    RSign,
    attach_latent_clipping,
    clip_latent_weights,
    set_progress,
)
from binsharp.nn.quantizers import (
    QUANTIZERS,
    ActivationQuantizer,
    ApproxSign,
    BNNWeight,
    EDESign,
    IdentitySTE,
    IRNetWeight,
    ScalableTanhSign,
    ScaledSignWeight,
    SignSTE,
    WeightQuantizer,
    get_quantizer,
)
from binsharp.nn.wavelets import (
    HaarDWT,
    HaarIDWT,
    haar_dwt,
    haar_filters,
    haar_idwt,
    merge_bands,
    split_bands,
)

__all__ = [
    "sign",
    "sign_ste",
    "approx_sign",
    "ede_sign",
    "ede_schedule",
    "scalable_tanh_sign",
    "identity_ste",
    "rprelu",
    "channel_affine",
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
    "BinaryConv2d",
    "BinaryLinear",
    "LearnableBias",
    "RSign",
    "ReDistribution",
    "RPReLU",
    "clip_latent_weights",
    "attach_latent_clipping",
    "set_progress",
    "HaarDWT",
    "HaarIDWT",
    "haar_dwt",
    "haar_idwt",
    "haar_filters",
    "split_bands",
    "merge_bands",
]
