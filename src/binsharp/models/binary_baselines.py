"""Binary baselines in one shared backbone; only the binary unit (and for FABNet/BiSRNet the body) differs.

Backbone (:class:`BinaryPanBackbone`), inputs normalised to [0, 1]::

    x   = cat(lms, pan) * k                 # (B, C+1, H, W); k = 1 except BBCU's residual alignment
    F0  = Conv3x3_fp(x)                     # full-precision head -> (B, D, H, W)
    F   = body(F0) + F0                     # binary body + long skip
    out = lms + Conv3x3_fp(F) / k           # full-precision tail -> (B, C, H, W), global residual

Head, tail and the global residual stay full precision in every model (as in all the reference papers).
The tail starts at zero (``zero_tail=True``, a binsharp choice shared with BNNPan), so every binary model
starts from ``out = lms``; ``zero_tail=False`` keeps PyTorch's default initialisation.
Bodies (:mod:`binsharp.models.bodies`): ``"plain"`` = ``n_units`` units in sequence (default), ``"unet"`` =
the BiSRNet U body filled with the model's unit (default for BiSRNet; available for every unit model for
comparisons in the same skeleton), FABNet's wavelet body.

Widths and depths (defaults; D = 32 everywhere). The depth is set so that every binary body costs about
the same number of binary MACs at a given input size: ~20 full-resolution D->D 3x3 binary convolutions,
which is what the BiSRNet U body (``stages=2, num_blocks=(1,1,1)``) costs at D = 32 (its 1x1 fusion units
and coarser levels add up to ~20 such convolutions). Hence:

=========  ==========  ============================  ============================================
model      body        depth                         binary 3x3-conv equivalents at full resolution
=========  ==========  ============================  ============================================
bnn        plain       20 units                      20
biconnect  plain       20 units                      20 (float MACs: activations are not binary)
bireal     plain       20 units                      20
irnet      plain       20 units                      20
btm        plain       20 units                      20
bbcu       plain       20 units, k = 130 D / 64      20
reactnet   plain       18 units (3x3 + 1x1 each)     18 * 10/9 = 20
e2fif      plain       10 units (two 3x3 each)       20
fabnet     wavelet     4 low + 4 high blocks         4*2/4 + 4*2*9/4 = 20 (quarter resolution; high
                                                     blocks have 3D channels)
bisrnet    unet        stages 2, blocks (1, 1, 1)    ~20
=========  ==========  ============================  ============================================

The OPs/Params table produced by the counter is in ``benchmarks/complexity_table.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from binsharp.errors import BinsharpError
from binsharp.models.base import PanModel
from binsharp.models.bodies import BinaryUNetBody, PlainBody, WaveletBody
from binsharp.models.registry import register_model
from binsharp.models.units import UnitFactory
from binsharp.nn.lowering import Lowerer, register_lowering

__all__ = ["BinaryPanBackbone", "make_body", "BODIES"]

BODIES = ("plain", "unet")
DEFAULT_DIM = 32


class BinaryPanBackbone(PanModel):
    """Shared binary pan-sharpening backbone: full-precision head/tail, binary body, global residual.

    Args:
        bands: C.
        dim: D, feature channels.
        body: a module (B, D, H, W) -> (B, D, H, W) returning residual features (see
            :mod:`binsharp.models.bodies`).
        input_scale: ``k`` of BBCU's residual alignment (input times k, tail output divided by k); 1.0 off.
        zero_tail: initialise the tail convolution to zero, so that ``out = lms`` at initialisation (True,
            binsharp's default for every binary model); False: PyTorch's default initialisation, whose
            residual at initialisation has a standard deviation of about 2-3 (normalised units) through the
            binary body and costs hundreds of steps to undo.

    Forward: ``lms`` (B, C, H, W), ``pan`` (B, 1, H, W) normalised -> fused (B, C, H, W).
    """

    kind = "binary"
    inputs = ("lms", "pan")

    def __init__(
        self, bands: int, dim: int, body: nn.Module, input_scale: float = 1.0, zero_tail: bool = True
    ) -> None:
        super().__init__(bands)
        if dim < 1:
            raise BinsharpError(f"dim must be >= 1, got {dim}")
        if not input_scale > 0:
            raise BinsharpError(f"input_scale must be > 0, got {input_scale}")
        self.dim = int(dim)
        self.input_scale = float(input_scale)
        self.head = nn.Conv2d(bands + 1, dim, 3, padding=1, bias=False)
        self.body = body
        self.tail = nn.Conv2d(dim, bands, 3, padding=1, bias=False)
        if zero_tail:
            nn.init.zeros_(self.tail.weight)

    def forward(
        self, *, ms: Tensor | None = None, lms: Tensor | None = None, pan: Tensor | None = None
    ) -> Tensor:
        """``lms`` (B,C,H,W), ``pan`` (B,1,H,W) normalised -> fused (B,C,H,W)."""
        self.check_inputs(ms=ms, lms=lms, pan=pan)
        x = torch.cat([lms, pan], dim=1)
        if self.input_scale != 1.0:
            x = x * self.input_scale
        f0 = self.head(x)
        out = self.tail(self.body(f0) + f0)
        if self.input_scale != 1.0:
            out = out / self.input_scale
        return lms + out

    def extra_repr(self) -> str:
        return super().extra_repr() + f", dim={self.dim}, input_scale={self.input_scale}"


def make_body(
    unit: str | UnitFactory,
    dim: int,
    body: str,
    n_units: int,
    stages: int = 2,
    num_blocks: Sequence[int] = (1, 1, 1),
) -> nn.Module:
    """Build a ``"plain"`` body (``n_units`` units) or a ``"unet"`` body (BiSRNet U body with ``stages`` and
    ``num_blocks``) from a unit name or factory."""
    if body == "plain":
        return PlainBody(dim, unit, n_units)
    if body == "unet":
        return BinaryUNetBody(dim, unit, stages=stages, num_blocks=num_blocks)
    raise BinsharpError(f"body must be one of {BODIES}, got {body!r}")


def _unit_model(
    unit: str,
    bands: int,
    dim: int,
    body: str,
    n_units: int,
    stages: int,
    num_blocks: Sequence[int],
    zero_tail: bool,
    input_scale: float = 1.0,
) -> BinaryPanBackbone:
    return BinaryPanBackbone(
        bands,
        dim,
        make_body(unit, dim, body, n_units, stages, num_blocks),
        input_scale=input_scale,
        zero_tail=zero_tail,
    )


def _register_unit_model(
    name: str, unit: str, paper: str, doc: str, *, n_units: int = 20, body: str = "plain"
) -> Callable[..., BinaryPanBackbone]:
    """Register ``name``: the shared backbone filled with binary unit ``unit``, with the usual keyword
    arguments (``bands``, ``dim``, ``body``, ``n_units``, ``stages``, ``num_blocks``, ``zero_tail``) and these
    defaults."""
    default_body, default_units = body, n_units

    def factory(
        bands: int = 8,
        dim: int = DEFAULT_DIM,
        body: str = default_body,
        n_units: int = default_units,
        stages: int = 2,
        num_blocks: Sequence[int] = (1, 1, 1),
        zero_tail: bool = True,
    ) -> BinaryPanBackbone:
        return _unit_model(unit, bands, dim, body, n_units, stages, num_blocks, zero_tail)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = doc
    return register_model(name, kind="binary", paper=paper)(factory)


bnn = _register_unit_model(
    "bnn",
    "bnn",
    "I. Hubara, M. Courbariaux, D. Soudry, R. El-Yaniv, Y. Bengio, NeurIPS 2016",
    "BNN units (sign activations and weights, no scale, BN + Hardtanh) in the shared backbone.",
)

biconnect = _register_unit_model(
    "biconnect",
    "biconnect",
    "M. Courbariaux, Y. Bengio, J.-P. David, NeurIPS 2015",
    "BinaryConnect units (binary weights, float activations: float MACs) in the shared backbone.",
)

bireal = _register_unit_model(
    "bireal",
    "bireal",
    "Z. Liu, B. Wu, W. Luo, X. Yang, W. Liu, K.-T. Cheng, ECCV 2018",
    "Bi-Real units (ApproxSign, scaled sign weights, BN, shortcut per conv) in the shared backbone.",
)

irnet = _register_unit_model(
    "irnet",
    "irnet",
    "H. Qin, R. Gong, X. Liu, M. Shen, Z. Wei, F. Yu, J. Song, CVPR 2020",
    "IR-Net units (Libra-PB weights, EDE) in the shared backbone.",
)

reactnet = _register_unit_model(
    "reactnet",
    "reactnet",
    "Z. Liu, Z. Shen, M. Savvides, K.-T. Cheng, ECCV 2020",
    "ReActNet blocks (RSign, RPReLU, 3x3 + 1x1 binary convs) in the shared backbone.",
    n_units=18,
)

btm = _register_unit_model(
    "btm",
    "btm",
    "X. Jiang, N. Wang, J. Xin, K. Li, X. Yang, X. Gao, AAAI 2021",
    "BTM units (no BN, PReLU, Xavier init, scaled sign weights) in the shared backbone.",
)


@register_model(
    "bbcu",
    kind="binary",
    paper="B. Xia, Y. Zhang, Y. Wang, Y. Tian, W. Yang, R. Timofte, L. Van Gool, ICLR 2023",
)
def bbcu(
    bands: int = 8,
    dim: int = DEFAULT_DIM,
    body: str = "plain",
    n_units: int = 20,
    stages: int = 2,
    num_blocks: Sequence[int] = (1, 1, 1),
    k: float | None = None,
    zero_tail: bool = True,
) -> BinaryPanBackbone:
    """BBCU units (RSign, RPReLU, no BN) with residual alignment ``k`` (default ``130 * dim / 64``)."""
    scale = 130.0 * dim / 64.0 if k is None else float(k)
    return _unit_model("bbcu", bands, dim, body, n_units, stages, num_blocks, zero_tail, input_scale=scale)


e2fif = _register_unit_model(
    "e2fif",
    "e2fif",
    "C. Song, Z. Lang, W. Wei, L. Zhang, IEEE TIP 32, 2023",
    "E2FIF residual blocks (full-precision skip over every binary conv) in the shared backbone.",
    n_units=10,
)


@register_model(
    "fabnet",
    kind="binary",
    paper="X. Jiang, N. Wang, J. Xin, K. Li, X. Yang, J. Li, X. Wang, X. Gao, IEEE TIP 2023",
)
def fabnet(
    bands: int = 8, dim: int = DEFAULT_DIM, n_low: int = 4, n_high: int = 4, zero_tail: bool = True
) -> BinaryPanBackbone:
    """FABNet wavelet body (Haar DWT; LL and high-band binary residual branches) in the shared backbone."""
    return BinaryPanBackbone(bands, dim, WaveletBody(dim, n_low=n_low, n_high=n_high), zero_tail=zero_tail)


bisrnet = _register_unit_model(
    "bisrnet",
    "bisr",
    "Y. Cai, Y. Zheng, J. Lin, X. Yuan, Y. Zhang, H. Wang, NeurIPS 2023",
    'BiSRNet: BiSR-Conv units in the BiSRNet U body (``body="plain"``: the same units in sequence).',
    body="unet",
)


# --------------------------------------------------------------------------------------- engine lowerings
def _lower_backbone(lw: Lowerer, m, ins):
    lms, pan = ins
    x = lw.b.op("cat", [lms, pan])[0]
    if m.input_scale != 1.0:
        x = lw.b.op("mul_scalar", [x], attrs={"value": float(m.input_scale)})[0]
    f0 = lw.emit(m.head, [x], "head")[0]
    body = lw.emit(m.body, [f0], "body")[0]
    f = lw.b.op("add", [body, f0])[0]
    out = lw.emit(m.tail, [f], "tail")[0]
    if m.input_scale != 1.0:
        out = lw.b.op("div_scalar", [out], attrs={"value": float(m.input_scale)})[0]
    return lw.b.op("add", [lms, out])


register_lowering(BinaryPanBackbone, _lower_backbone)
