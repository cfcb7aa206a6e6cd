"""One-level orthonormal 2-D Haar wavelet transform as fixed convolutions.

The forward transform is a stride-2, 2x2 depthwise convolution with four filters per input channel; the
inverse is the transposed convolution with the same filters (the filter bank is orthonormal and the 2x2
blocks do not overlap, so the adjoint is the exact inverse: perfect reconstruction).

Filters (rows = image rows / y, columns = x), applied to each 2x2 block ``[[a, b], [c, d]]``:

=====  ===========================  ====================================================
band   filter                       meaning
=====  ===========================  ====================================================
LL     ``0.5 * [[1,  1], [ 1,  1]]``  local mean (times 2)
LH     ``0.5 * [[1,  1], [-1, -1]]``  low-pass along x, high-pass along y (horizontal edges)
HL     ``0.5 * [[1, -1], [ 1, -1]]``  high-pass along x, low-pass along y (vertical edges)
HH     ``0.5 * [[1, -1], [-1,  1]]``  diagonal detail
=====  ===========================  ====================================================

Channel layout of the transform (B, 4C, H/2, W/2): interleaved per input channel,
``[LL_0, LH_0, HL_0, HH_0, LL_1, LH_1, ...]``, i.e. output channel ``4c + j`` is band ``j`` of input
channel ``c``. :func:`split_bands` / :func:`merge_bands` convert to and from four (B, C, H/2, W/2) tensors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from binsharp.errors import BinsharpError

__all__ = [
    "HAAR_BANDS",
    "haar_filters",
    "haar_dwt",
    "haar_idwt",
    "split_bands",
    "merge_bands",
    "HaarDWT",
    "HaarIDWT",
]

HAAR_BANDS = ("LL", "LH", "HL", "HH")


def haar_filters(dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
    """The four orthonormal Haar analysis filters, shape (4, 1, 2, 2), ordered LL, LH, HL, HH."""
    f = torch.tensor(
        [
            [[1.0, 1.0], [1.0, 1.0]],
            [[1.0, 1.0], [-1.0, -1.0]],
            [[1.0, -1.0], [1.0, -1.0]],
            [[1.0, -1.0], [-1.0, 1.0]],
        ],
        dtype=dtype,
        device=device,
    )
    return (0.5 * f).unsqueeze(1)


def _check4(x: Tensor, what: str) -> None:
    if x.dim() != 4:
        raise BinsharpError(f"{what} expects a (B, C, H, W) tensor, got shape {tuple(x.shape)}")


def haar_dwt(x: Tensor, filters: Tensor | None = None) -> Tensor:
    """One-level orthonormal Haar DWT.

    Args:
        x: (B, C, H, W), H and W even.
        filters: optional precomputed :func:`haar_filters` (4, 1, 2, 2) in x's dtype/device.

    Returns:
        (B, 4C, H/2, W/2), bands interleaved per channel ``[LL, LH, HL, HH]`` (see module docstring).
    """
    _check4(x, "haar_dwt")
    b, c, h, w = x.shape
    if h % 2 or w % 2:
        raise BinsharpError(f"haar_dwt needs even height and width, got {h} x {w}")
    f = haar_filters(x.dtype, x.device) if filters is None else filters.to(dtype=x.dtype, device=x.device)
    return F.conv2d(x, f.repeat(c, 1, 1, 1), stride=2, groups=c)


def haar_idwt(y: Tensor, filters: Tensor | None = None) -> Tensor:
    """Inverse of :func:`haar_dwt` (transposed convolution with the same filters).

    Args:
        y: (B, 4C, h, w), bands interleaved per channel ``[LL, LH, HL, HH]``.
        filters: optional precomputed :func:`haar_filters`.

    Returns:
        (B, C, 2h, 2w).
    """
    _check4(y, "haar_idwt")
    b, c4, h, w = y.shape
    if c4 % 4:
        raise BinsharpError(f"haar_idwt needs a channel count divisible by 4, got {c4}")
    c = c4 // 4
    f = haar_filters(y.dtype, y.device) if filters is None else filters.to(dtype=y.dtype, device=y.device)
    return F.conv_transpose2d(y, f.repeat(c, 1, 1, 1), stride=2, groups=c)


def split_bands(y: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Split an interleaved (B, 4C, h, w) transform into ``(LL, LH, HL, HH)``, each (B, C, h, w) (views)."""
    _check4(y, "split_bands")
    b, c4, h, w = y.shape
    if c4 % 4:
        raise BinsharpError(f"split_bands needs a channel count divisible by 4, got {c4}")
    ll, lh, hl, hh = y.view(b, c4 // 4, 4, h, w).unbind(2)
    return ll, lh, hl, hh


def merge_bands(ll: Tensor, lh: Tensor, hl: Tensor, hh: Tensor) -> Tensor:
    """Inverse of :func:`split_bands`: four (B, C, h, w) -> interleaved (B, 4C, h, w)."""
    s = torch.stack((ll, lh, hl, hh), dim=2)
    b, c, _, h, w = s.shape
    return s.reshape(b, 4 * c, h, w)


class HaarDWT(nn.Module):
    """Module form of :func:`haar_dwt`: (B, C, H, W) -> (B, 4C, H/2, W/2), bands interleaved per channel.

    The filters are a fixed, non-persistent buffer (not a parameter; not saved in state dicts). The
    complexity counter counts it as a float convolution: ``4 * 4C * H/2 * W/2`` MACs per image.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("filters", haar_filters(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return haar_dwt(x, self.filters)


class HaarIDWT(nn.Module):
    """Module form of :func:`haar_idwt`: (B, 4C, h, w) -> (B, C, 2h, 2w). Fixed non-persistent buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("filters", haar_filters(), persistent=False)

    def forward(self, y: Tensor) -> Tensor:
        return haar_idwt(y, self.filters)
