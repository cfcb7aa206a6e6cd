"""Full-precision pan-sharpening baselines (PanCollection style).

Architectures follow the PyTorch versions of the DLPan-Toolbox / PanCollection (Deng et al., "Machine
learning in pansharpening: a benchmark, from shallow to deep networks", IEEE GRSM 2022), which are the
reference implementations of the benchmark tables; departures are listed per model. All convolutions use
zero "same" padding so every model returns the full (B, C, H, W) image.

=========  ==============================  =============================================================
name       inputs                          structure
=========  ==============================  =============================================================
pnn        cat(lms, pan)                   9x9 conv 64, ReLU, 5x5 conv 32, ReLU, 5x5 conv C
pannet     high-pass ms, high-pass pan     ConvTranspose x4 of the MS high-pass, 3x3 conv 32, 4 ResBlocks,
                                           3x3 conv C, + lms
dicnn      cat(lms, pan)                   3x3 conv 64, ReLU, 3x3 conv 64, ReLU, 3x3 conv C, + lms
fusionnet  pan (repeated C times) - lms    3x3 conv 32, ReLU, 4 ResBlocks, 3x3 conv C, + lms
msdcnn     cat(lms, pan)                   multi-scale deep branch + 3-layer shallow branch, sum, ReLU
=========  ==============================  =============================================================
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from binsharp.errors import BinsharpError
from binsharp.models.base import PanModel
from binsharp.models.recipes import fp_recipe
from binsharp.models.registry import register_model

__all__ = ["PNN", "PanNet", "DiCNN", "FusionNet", "MSDCNN", "variance_scaling_init_", "HighPass"]


def variance_scaling_init_(module: nn.Module) -> None:
    """TensorFlow ``variance_scaling_initializer`` as used by the DLPan-Toolbox for PanNet and DiCNN.

    Every :class:`torch.nn.Conv2d` weight gets a normal distribution truncated at two standard deviations
    with ``std = sqrt(1.3 * 2 / fan_in)`` (``fan_in = C_in/groups * kh * kw``; the factor 1.3 compensates the
    truncation); biases are set to zero. Transposed convolutions keep PyTorch's default initialisation, as
    in the toolbox.
    """
    for m in module.modules():
        if type(m) is nn.Conv2d:
            fan_in = m.weight[0].numel()
            std = math.sqrt(1.3 * 2.0 / fan_in)
            nn.init.trunc_normal_(m.weight, 0.0, std, -2.0 * std, 2.0 * std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _conv(cin: int, cout: int, k: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2, bias=True)


class _ResBlock(nn.Module):
    """PanNet/FusionNet residual block: ``x + conv3x3(ReLU(conv3x3(x)))``, (B, D, H, W) -> (B, D, H, W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = _conv(channels, channels, 3)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv(channels, channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(self.relu(self.conv1(x)))


class HighPass(nn.Module):
    """PanNet high-pass filter: ``x - box5x5(x)`` with reflect-101 borders (OpenCV ``boxFilter`` default).

    (B, C, H, W) -> (B, C, H, W); parameter-free.
    """

    def __init__(self, size: int = 5) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(size // 2)
        self.box = nn.AvgPool2d(size, stride=1)

    def forward(self, x: Tensor) -> Tensor:
        return x - self.box(self.pad(x))


@register_model(
    "pnn",
    kind="fp",
    recipe=fp_recipe(1e-3),
    paper="G. Masi, D. Cozzolino, L. Verdoliva, G. Scarpa, Remote Sensing 8(7):594, 2016",
)
class PNN(PanModel):
    """PNN: three convolutions on cat(lms, pan) (Masi et al., Remote Sensing 2016).

    (B, C+1, H, W) -> 9x9 conv ``channels`` -> ReLU -> 5x5 conv 32 -> ReLU -> 5x5 conv C -> (B, C, H, W).
    No residual connection (as in the paper and the toolbox). Departure: the toolbox uses valid convolutions
    and crops 8 pixels of the reference; here the convolutions are zero-padded to keep H x W.
    """

    kind = "fp"
    inputs = ("lms", "pan")

    def __init__(self, bands: int = 8, channels: int = 64) -> None:
        super().__init__(bands)
        self.conv1 = _conv(bands + 1, channels, 9)
        self.conv2 = _conv(channels, 32, 5)
        self.conv3 = _conv(32, bands, 5)
        self.relu = nn.ReLU(inplace=True)

    def forward(
        self, *, ms: Tensor | None = None, lms: Tensor | None = None, pan: Tensor | None = None
    ) -> Tensor:
        """``lms`` (B,C,H,W), ``pan`` (B,1,H,W) normalised -> fused (B,C,H,W)."""
        self.check_inputs(ms=ms, lms=lms, pan=pan)
        x = torch.cat([lms, pan], dim=1)
        x = self.relu(self.conv1(x))
        x = self.relu(self.conv2(x))
        return self.conv3(x)


@register_model(
    "pannet",
    kind="fp",
    recipe=fp_recipe(1e-3),
    paper="J. Yang, X. Fu, Y. Hu, Y. Huang, X. Ding, J. Paisley, ICCV 2017",
)
class PanNet(PanModel):
    """PanNet: residual network on high-pass inputs with a learned x4 upsampling (Yang et al., ICCV 2017).

    ``hp(x) = x - box5x5(x)``. With ``upsample="deconv"`` (default, as in the paper and the toolbox):
    ``ConvTranspose2d(C, C, 8, stride 4, padding 2)(hp(ms))`` (B, C, 4h, 4w), concatenated with ``hp(pan)``;
    this needs ``ms`` and a PAN/MS ratio of 4. With ``upsample="lms"``: ``hp(lms)`` replaces the learned
    upsampling (any ratio; ``ms`` not needed). Then 3x3 conv ``channels`` -> ReLU -> ``n_blocks`` residual
    blocks -> 3x3 conv C, and the result is added to ``lms``: output (B, C, H, W).
    Initialisation: variance scaling (toolbox).
    """

    kind = "fp"
    inputs = ("ms", "lms", "pan")

    def __init__(
        self, bands: int = 8, channels: int = 32, n_blocks: int = 4, upsample: str = "deconv"
    ) -> None:
        super().__init__(bands)
        if upsample not in ("deconv", "lms"):
            raise BinsharpError(f"PanNet upsample must be 'deconv' or 'lms', got {upsample!r}")
        self.upsample = upsample
        if upsample == "lms":
            self.inputs = ("lms", "pan")
        self.highpass = HighPass(5)
        self.deconv = (
            nn.ConvTranspose2d(bands, bands, 8, stride=4, padding=2, bias=True)
            if upsample == "deconv"
            else None
        )
        self.conv1 = _conv(bands + 1, channels, 3)
        self.relu = nn.ReLU(inplace=True)
        self.blocks = nn.Sequential(*[_ResBlock(channels) for _ in range(n_blocks)])
        self.conv3 = _conv(channels, bands, 3)
        variance_scaling_init_(self)

    def forward(
        self, *, ms: Tensor | None = None, lms: Tensor | None = None, pan: Tensor | None = None
    ) -> Tensor:
        """``ms`` (B,C,h,w) (deconv mode), ``lms`` (B,C,H,W), ``pan`` (B,1,H,W) -> fused (B,C,H,W)."""
        self.check_inputs(ms=ms, lms=lms, pan=pan)
        if self.deconv is not None:
            if pan.shape[-1] != 4 * ms.shape[-1] or pan.shape[-2] != 4 * ms.shape[-2]:
                raise BinsharpError(
                    "PanNet with upsample='deconv' needs a PAN/MS ratio of 4, got ms "
                    f"{tuple(ms.shape[-2:])} and pan {tuple(pan.shape[-2:])}; use upsample='lms'"
                )
            up = self.deconv(self.highpass(ms))
        else:
            up = self.highpass(lms)
        x = torch.cat([up, self.highpass(pan)], dim=1)
        x = self.relu(self.conv1(x))
        x = self.blocks(x)
        return lms + self.conv3(x)


@register_model(
    "dicnn",
    kind="fp",
    recipe=fp_recipe(2e-4),
    paper="L. He, Y. Rao, J. Li, J. Chanussot, A. Plaza, J. Zhu, B. Li, IEEE JSTARS 12(5), 2019 (DiCNN1)",
)
class DiCNN(PanModel):
    """DiCNN1: detail injection CNN (He et al., IEEE JSTARS 2019).

    cat(lms, pan) (B, C+1, H, W) -> 3x3 conv ``channels`` -> ReLU -> 3x3 conv ``channels`` -> ReLU ->
    3x3 conv C, plus ``lms``: (B, C, H, W). Initialisation: variance scaling (toolbox).
    """

    kind = "fp"
    inputs = ("lms", "pan")

    def __init__(self, bands: int = 8, channels: int = 64) -> None:
        super().__init__(bands)
        self.conv1 = _conv(bands + 1, channels, 3)
        self.conv2 = _conv(channels, channels, 3)
        self.conv3 = _conv(channels, bands, 3)
        self.relu = nn.ReLU(inplace=True)
        variance_scaling_init_(self)

    def forward(
        self, *, ms: Tensor | None = None, lms: Tensor | None = None, pan: Tensor | None = None
    ) -> Tensor:
        """``lms`` (B,C,H,W), ``pan`` (B,1,H,W) -> fused (B,C,H,W)."""
        self.check_inputs(ms=ms, lms=lms, pan=pan)
        x = torch.cat([lms, pan], dim=1)
        x = self.relu(self.conv1(x))
        x = self.relu(self.conv2(x))
        return lms + self.conv3(x)


@register_model(
    "fusionnet",
    kind="fp",
    recipe=fp_recipe(3e-4),
    paper="L.-J. Deng, G. Vivone, C. Jin, J. Chanussot, IEEE TGRS 59(8):6995-7010, 2021",
)
class FusionNet(PanModel):
    """FusionNet (Deng et al., IEEE TGRS 2021).

    ``pan`` repeated C times minus ``lms`` (B, C, H, W) -> 3x3 conv ``channels`` -> ReLU -> ``n_blocks``
    residual blocks -> 3x3 conv C, plus ``lms``: (B, C, H, W). PyTorch default initialisation (toolbox).
    """

    kind = "fp"
    inputs = ("lms", "pan")

    def __init__(self, bands: int = 8, channels: int = 32, n_blocks: int = 4) -> None:
        super().__init__(bands)
        self.conv1 = _conv(bands, channels, 3)
        self.relu = nn.ReLU(inplace=True)
        self.blocks = nn.Sequential(*[_ResBlock(channels) for _ in range(n_blocks)])
        self.conv3 = _conv(channels, bands, 3)

    def forward(
        self, *, ms: Tensor | None = None, lms: Tensor | None = None, pan: Tensor | None = None
    ) -> Tensor:
        """``lms`` (B,C,H,W), ``pan`` (B,1,H,W) -> fused (B,C,H,W)."""
        self.check_inputs(ms=ms, lms=lms, pan=pan)
        x = pan.expand_as(lms) - lms
        x = self.relu(self.conv1(x))
        x = self.blocks(x)
        return lms + self.conv3(x)


@register_model(
    "msdcnn",
    kind="fp",
    recipe=fp_recipe(1e-4),
    paper="Q. Yuan, Y. Wei, X. Meng, H. Shen, L. Zhang, IEEE JSTARS 11(3):978-989, 2018",
)
class MSDCNN(PanModel):
    """MSDCNN: multi-scale and multi-depth CNN (Yuan et al., IEEE JSTARS 2018).

    Input cat(lms, pan) (B, C+1, H, W). Deep branch: 7x7 conv 60, ReLU; multi-scale block (3x3, 5x5, 7x7
    convs 20 each, concatenated, plus the block input), ReLU; 3x3 conv 30, ReLU; multi-scale block (3x3, 5x5,
    7x7 convs 10 each, plus input), ReLU; 5x5 conv C. Shallow branch: 9x9 conv 64, ReLU, 1x1 conv 32, ReLU,
    5x5 conv C. Output ReLU(deep + shallow), (B, C, H, W); no residual on ``lms`` (as in the toolbox).
    """

    kind = "fp"
    inputs = ("lms", "pan")

    def __init__(self, bands: int = 8) -> None:
        super().__init__(bands)
        cin = bands + 1
        self.conv1 = _conv(cin, 60, 7)
        self.conv2_1, self.conv2_2, self.conv2_3 = _conv(60, 20, 3), _conv(60, 20, 5), _conv(60, 20, 7)
        self.conv3 = _conv(60, 30, 3)
        self.conv4_1, self.conv4_2, self.conv4_3 = _conv(30, 10, 3), _conv(30, 10, 5), _conv(30, 10, 7)
        self.conv5 = _conv(30, bands, 5)
        self.shallow1 = _conv(cin, 64, 9)
        self.shallow2 = _conv(64, 32, 1)
        self.shallow3 = _conv(32, bands, 5)
        self.relu = nn.ReLU()

    def forward(
        self, *, ms: Tensor | None = None, lms: Tensor | None = None, pan: Tensor | None = None
    ) -> Tensor:
        """``lms`` (B,C,H,W), ``pan`` (B,1,H,W) -> fused (B,C,H,W)."""
        self.check_inputs(ms=ms, lms=lms, pan=pan)
        x = torch.cat([lms, pan], dim=1)
        o1 = self.relu(self.conv1(x))
        o2 = torch.cat([self.conv2_1(o1), self.conv2_2(o1), self.conv2_3(o1)], dim=1)
        o2 = self.relu(o2 + o1)
        o3 = self.relu(self.conv3(o2))
        o4 = torch.cat([self.conv4_1(o3), self.conv4_2(o3), self.conv4_3(o3)], dim=1)
        o4 = self.relu(o4 + o3)
        deep = self.conv5(o4)
        s = self.relu(self.shallow1(x))
        s = self.relu(self.shallow2(s))
        return self.relu(deep + self.shallow3(s))
