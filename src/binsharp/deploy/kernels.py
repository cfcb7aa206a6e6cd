"""Python interface of the compiled bit-packed kernels (:mod:`binsharp.native`), numpy in and out.

Bit convention: ``sign(x) = +1 if x >= 0 else -1``; a packed bit is 1 <=> the value is -1 (``x < 0``; NaN
gives +1, as :func:`binsharp.nn.sign`).

Packed activations (:class:`Packed`): ``uint64`` array ``(N, G * nwg, H + 2*halo, W + 2*halo)`` where channel
``c`` of group ``gi`` (channels ``gi*Cg .. gi*Cg + Cg - 1``, ``Cg = C / G``) is bit ``c % 64`` of word plane
``gi * nwg + c // 64`` (``c`` counted inside the group, ``nwg = ceil(Cg / 64)``); halo words are 0 and unused
bits are 0. Dense/grouped weights: ``uint64 (Co, k, k, nwg)``; depthwise weights: ``uint64 (k*k, nw)``.

Kernel paths: ``"avx512"`` (AVX-512 VPOPCNTDQ), ``"avx2"`` (nibble look-up popcount), ``"popcnt"`` (scalar
POPCNT), ``"generic"`` (portable C). The path is chosen per call: the ``path`` argument, else the environment
variable ``BINSHARP_KERNEL_PATH``, else the best one the CPU supports. Threads: the ``threads`` argument, else
``BINSHARP_NUM_THREADS``, else ``os.cpu_count()``.

The C entry points are declared once, in :data:`binsharp.native.C_API`. Without the compiled extension (not
built, or ``BINSHARP_NO_EXT=1``), packing and the binary convolution run in a numpy reference
(:func:`conv_reference` and the epilogue in the kernels' order of float32 operations: bitwise the same
results, many times slower) after one ``RuntimeWarning``; the engine's float ops have numpy forms of their
own.
"""

from __future__ import annotations

import ctypes
import os
import time
import warnings
from dataclasses import dataclass

import numpy as np

from binsharp.errors import BinsharpError

# the library's helpers under this module's names; ENV_THREADS, have_kernels and rprelu are re-exported
from binsharp.native import ENV_NO_EXT, resolve_threads
from binsharp.native import ENV_THREADS as ENV_THREADS
from binsharp.native import Epilogue as _Epi
from binsharp.native import FloatPointer as _f32p
from binsharp.native import address as _ptr
from binsharp.native import channel_vector as _vec
from binsharp.native import check as _check
from binsharp.native import have_kernels as have_kernels
from binsharp.native import library as _lib
from binsharp.native import require_library as _require_lib
from binsharp.native import rprelu as rprelu

PATHS: tuple[str, ...] = ("generic", "popcnt", "avx2", "avx512")
ENV_PATH = "BINSHARP_KERNEL_PATH"
_FLAG_NAMES = ("popcnt", "avx2", "avx512f", "avx512vpopcntdq", "avx512dq", "avx512bw", "avx512vl")


def available_paths() -> list[str]:
    """Kernel paths this CPU can run, slowest first."""
    lib = _lib()
    if lib is None:
        return []
    return [p for i, p in enumerate(PATHS) if lib.bs_path_available(i)]


def resolve_path(path: str | None = None) -> str:
    """The kernel path a call will use (argument, else ``$BINSHARP_KERNEL_PATH``, else the best available)."""
    lib = _require_lib()
    name = path or os.environ.get(ENV_PATH, "").strip().lower() or None
    if name is None:
        return PATHS[lib.bs_best_path()]
    if name not in PATHS:
        raise BinsharpError(f"unknown kernel path {name!r}; expected one of {', '.join(PATHS)}")
    if not lib.bs_path_available(PATHS.index(name)):
        raise BinsharpError(f"kernel path {name!r} is not supported by this CPU (have: {available_paths()})")
    return name


def cpu_features() -> dict:
    """What the engine sees and chooses: CPU flags, available paths, the selected path, OpenMP threads."""
    lib = _lib()
    if lib is None:
        return {"compiled": False, "flags": [], "paths": [], "path": None, "openmp_threads": 0}
    f = lib.bs_cpu_flags()
    return {
        "compiled": True,
        "flags": [n for i, n in enumerate(_FLAG_NAMES) if f & (1 << i)],
        "paths": available_paths(),
        "path": resolve_path(),
        "openmp_threads": int(lib.bs_openmp()),
    }


def xor_popcount_rate(path: str | None = None, *, words: int = 2048, seconds: float = 0.2) -> float:
    """Ceiling microbenchmark: binary multiply-accumulates per second (64 per word) of a bare XOR + popcount
    loop of the kernel path ``path`` over two L1-resident arrays of ``words`` uint64 (best of several timed
    runs, each about ``seconds / 5`` long)."""
    lib = _require_lib()
    p = PATHS.index(resolve_path(path))
    if words < 32 or words % 32:
        raise BinsharpError(f"words must be a positive multiple of 32, got {words}")
    rng = np.random.default_rng(0)
    a, w = rng.integers(0, 2**63, (2, words), dtype=np.uint64)
    reps = 64
    while True:  # calibrate the repetitions to about seconds / 5 per run
        t = time.perf_counter()
        lib.bs_xorpop(_ptr(a), _ptr(w), words, reps, p)
        dt = time.perf_counter() - t
        if dt > seconds / 20 or reps > 1 << 30:
            break
        reps *= 4
    reps = max(1, int(reps * (seconds / 5) / max(dt, 1e-9)))
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        if lib.bs_xorpop(_ptr(a), _ptr(w), words, reps, p) < 0:
            raise BinsharpError("xor_popcount_rate: invalid arguments")
        best = min(best, time.perf_counter() - t)
    return 64.0 * words * reps / best


def _per_sample(v, n: int, c: int, what: str) -> np.ndarray | None:
    """Per-channel values as (C,) float32, or (N, C) when ``v`` holds one set per sample (N * C values)."""
    if v is None:
        return None
    a = np.asarray(v, dtype=np.float32)
    if n > 1 and a.size == n * c:
        return np.ascontiguousarray(a.reshape(n, c))
    return _vec(a.reshape(-1) if a.size == c else a, c, what)


def words(channels: int) -> int:
    """Number of 64-bit words holding ``channels`` bits."""
    return (int(channels) + 63) // 64


@dataclass
class Packed:
    """Bit-packed activations: ``data`` uint64 ``(N, groups*ceil(C/groups/64), H + 2*halo, W + 2*halo)``."""

    data: np.ndarray
    channels: int
    groups: int
    halo: int

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """Logical shape ``(N, C, H, W)``."""
        n, _, hp, wp = self.data.shape
        return n, self.channels, hp - 2 * self.halo, wp - 2 * self.halo

    @classmethod
    def empty(cls, n: int, channels: int, h: int, w: int, *, groups: int = 1, halo: int = 1) -> Packed:
        """A zeroed buffer (its halo stays zero)."""
        nw = groups * words(channels // groups)
        return cls(np.zeros((n, nw, h + 2 * halo, w + 2 * halo), np.uint64), channels, groups, halo)

    def signs(self) -> np.ndarray:
        """Unpacked values ``(N, C, H, W)`` float32 in {+1, -1} (halo dropped)."""
        n, c, h, w = self.shape
        cg = c // self.groups
        nwg = words(cg)
        d = self.data[:, :, self.halo : self.halo + h, self.halo : self.halo + w]
        bits = np.empty((n, c, h, w), bool)
        for gi in range(self.groups):
            for j in range(nwg):
                nb = min(64, cg - 64 * j)
                wd = d[:, gi * nwg + j]
                for b in range(nb):
                    bits[:, gi * cg + 64 * j + b] = (wd >> np.uint64(b)) & np.uint64(1)
        return np.where(bits, np.float32(-1), np.float32(1))


def pack_activations(
    x: np.ndarray,
    *,
    scale=None,
    bias=None,
    groups: int = 1,
    halo: int = 1,
    layout: str = "NCHW",
    out: Packed | None = None,
    path: str | None = None,
    threads: int | None = None,
) -> Packed:
    """Binarize and pack ``x`` float32 ``(N, C, H, W)`` (or ``(N, H, W, C)`` with ``layout="NHWC"``).

    Bit of channel c = ``(x * scale[c] + bias[c]) < 0`` computed in float32 (scale and bias optional,
    the multiplication skipped without ``scale``), i.e. the sign of an RSign / learnable-bias / ReDistribution
    input with +1 at 0. ``scale`` and ``bias`` hold C values, or N x C (any shape of N * C values, e.g.
    (N, C, 1, 1)): one set per sample (a per-sample threshold, as S2BNet's dynamic one), in one call.
    """
    lib = _lib()
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 4:
        raise BinsharpError(f"pack_activations expects a 4-D array, got shape {x.shape}")
    if layout == "NCHW":
        n, c, h, w = x.shape
    elif layout == "NHWC":
        n, h, w, c = x.shape
    else:
        raise BinsharpError(f"layout must be NCHW or NHWC, got {layout!r}")
    if c % groups:
        raise BinsharpError(f"{c} channels are not divisible into {groups} groups")
    sc, bi = _per_sample(scale, n, c, "scale"), _per_sample(bias, n, c, "bias")
    if out is None:
        out = Packed.empty(n, c, h, w, groups=groups, halo=halo)
    elif out.shape != (n, c, h, w) or out.groups != groups or out.halo != halo:
        raise BinsharpError("pack_activations: output buffer does not match the input")
    if lib is None:
        _warn_reference()
        xc = x if layout == "NCHW" else x.transpose(0, 3, 1, 2)
        _pack_into(_ch_affine(xc, sc, bi) < 0, out)
        return out
    rc = lib.bs_pack(
        _ptr(x),
        n,
        c,
        h,
        w,
        int(layout == "NHWC"),
        _ptr(sc),
        _ptr(bi),
        int(any(v is not None and v.ndim == 2 for v in (sc, bi))),
        groups,
        _ptr(out.data),
        halo,
        PATHS.index(resolve_path(path)),
        resolve_threads(threads),
    )
    _check(rc, "pack_activations")
    return out


def _bits_last(signs_neg: np.ndarray) -> np.ndarray:
    """Pack a bool array along its last axis into uint64 words (bit i of word j = element 64*j + i)."""
    *lead, c = signs_neg.shape
    nw = words(c)
    padded = np.zeros((*lead, nw * 64), bool)
    padded[..., :c] = signs_neg
    b = np.packbits(padded.reshape(*lead, nw, 64), axis=-1, bitorder="little")  # (..., nw, 8) uint8
    return np.ascontiguousarray(b).view("<u8").reshape(*lead, nw).astype(np.uint64)


def pack_weights(w: np.ndarray, groups: int = 1) -> np.ndarray:
    """Pack binary weights ``(Co, Ci/groups, k, k)`` by their sign (bit 1 <=> w < 0).

    Returns uint64 ``(Co, k, k, ceil(Ci/groups/64))``, or ``(k*k, ceil(C/64))`` for a depthwise layer
    (``groups == Ci == Co``, ``w`` of shape ``(C, 1, k, k)``).
    """
    w = np.asarray(w, dtype=np.float32)
    if w.ndim != 4 or w.shape[2] != w.shape[3]:
        raise BinsharpError(f"binary weights must be (Co, Ci/groups, k, k), got {w.shape}")
    neg = w < 0
    co, cig, k, _ = w.shape
    if groups > 1 and cig == 1 and co == groups:
        return _bits_last(neg[:, 0].reshape(co, k * k).T)  # (k*k, nw)
    return _bits_last(neg.transpose(0, 2, 3, 1))  # (Co, k, k, nwg)


def dense_sign_bits(w: np.ndarray) -> np.ndarray:
    """Storage form of binary weights: the sign bits of ``w`` (any shape, C order) packed densely, 8 per byte
    (bit i of byte j = element 8*j + i, 1 <=> w < 0). Returns uint8 ``(ceil(w.size / 8),)``."""
    return np.packbits(np.asarray(w).reshape(-1) < 0, bitorder="little")


def weights_from_dense(bits: np.ndarray, shape: tuple[int, int, int, int], groups: int = 1) -> np.ndarray:
    """Kernel layout (see :func:`pack_weights`) of weights stored by :func:`dense_sign_bits` with ``shape``
    ``(Co, Ci/groups, k, k)``."""
    n = int(np.prod(shape))
    if bits.dtype != np.uint8 or bits.shape != ((n + 7) // 8,):
        raise BinsharpError(f"stored sign bits do not match the weight shape {tuple(shape)}")
    neg = np.unpackbits(bits, count=n, bitorder="little").astype(bool).reshape(shape)
    return pack_weights(np.where(neg, np.float32(-1), np.float32(1)), groups)


_warned_reference = False


def _warn_reference() -> None:
    global _warned_reference
    if not _warned_reference:
        _warned_reference = True
        why = f"${ENV_NO_EXT} is set" if os.environ.get(ENV_NO_EXT, "") not in ("", "0") else "not built"
        warnings.warn(
            f"binsharp.deploy: the compiled kernels are unavailable ({why}); binary convolutions run in the "
            "numpy reference implementation, many times slower (build them with `pip install -e .`)",
            RuntimeWarning,
            stacklevel=3,
        )


def _ch_affine(x: np.ndarray, scale: np.ndarray | None, bias: np.ndarray | None) -> np.ndarray:
    """``x * scale[c] + bias[c]`` in float32 as the kernels compute it (``+ 0`` without ``bias``); scale and
    bias (C,) or per sample (N, C)."""

    def bc(v: np.ndarray) -> np.ndarray:
        return v.reshape(v.shape[0] if v.ndim == 2 else 1, -1, 1, 1)

    v = x * bc(scale) if scale is not None else x
    return v + (bc(bias) if bias is not None else np.float32(0))


def _pack_into(neg: np.ndarray, out: Packed) -> None:
    """Write the bits ``neg`` (bool ``(N, C, H, W)``, True <=> -1) into the interior of ``out``."""
    n, c, h, w = neg.shape
    cg, hl = c // out.groups, out.halo
    nwg = words(cg)
    for gi in range(out.groups):
        bits = _bits_last(neg[:, gi * cg : (gi + 1) * cg].transpose(0, 2, 3, 1))  # (N, H, W, nwg)
        out.data[:, gi * nwg : (gi + 1) * nwg, hl : hl + h, hl : hl + w] = bits.transpose(0, 3, 1, 2)


def _unpack_weights(wbits: np.ndarray, cig: int) -> np.ndarray:
    """±1 float32 of kernel-layout weights (:func:`pack_weights`): ``(..., nw)`` words -> ``(..., cig)``."""
    b = np.unpackbits(np.ascontiguousarray(wbits).view(np.uint8), axis=-1, bitorder="little")
    return np.where(b[..., :cig].astype(bool), np.float32(-1), np.float32(1))


def conv_reference(
    x: Packed,
    wbits: np.ndarray,
    *,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    padding: int = 0,
    groups: int = 1,
) -> np.ndarray:
    """Reference of the kernels' integer accumulator in numpy: y (int32 ``(N, Co, Ho, Wo)``) = sum over the
    taps inside the input and the input channels of sign(x) * sign(w) (zero padding contributes 0), for the
    packed activations and kernel-layout weights of :func:`binary_conv2d`."""
    s = x.signs()
    n, ci, h, w = s.shape
    co, k, p = int(out_channels), int(kernel_size), int(padding)
    ho, wo = conv_output_size(h, k, stride, p), conv_output_size(w, k, stride, p)
    sp = np.zeros((n, ci, h + 2 * p, w + 2 * p), np.float32)
    sp[:, :, p : p + h, p : p + w] = s
    depthwise = groups > 1 and groups == ci == co
    wt = _unpack_weights(wbits, ci if depthwise else ci // groups)  # (k*k, C) or (Co, k, k, Ci/g)
    y = np.zeros((n, co, ho, wo), np.float32)  # sums of at most k*k*Ci ones: exact in float32
    cig, cog = ci // groups, co // groups
    for ky in range(k):
        for kx in range(k):
            tap = sp[:, :, ky : ky + (ho - 1) * stride + 1 : stride, kx : kx + (wo - 1) * stride + 1 : stride]
            if depthwise:
                y += tap * wt[ky * k + kx].reshape(1, -1, 1, 1)
                continue
            for g in range(groups):
                wg = wt[g * cog : (g + 1) * cog, ky, kx]  # (Co/g, Ci/g)
                y[:, g * cog : (g + 1) * cog] += np.einsum(
                    "oc,nchw->nohw", wg, tap[:, g * cig : (g + 1) * cig]
                )
    return y.astype(np.int32)


def _rprelu_reference(v: np.ndarray, keep: dict[str, np.ndarray], which: str = "") -> np.ndarray:
    t = v - keep["gamma" + which].reshape(1, -1, 1, 1)
    zero = np.float32(0)
    tp, tn = np.where(t > 0, t, zero), np.where(t < 0, t, zero)
    return (tp + keep["slope" + which].reshape(1, -1, 1, 1) * tn) + keep["zeta" + which].reshape(1, -1, 1, 1)


def _epilogue_reference(
    y: np.ndarray, keep: dict[str, np.ndarray], epi: _Epi, residual, residual2
) -> np.ndarray:
    """The fused epilogue of :func:`binary_conv2d` in numpy float32, in the kernels' order of operations."""
    al = keep.get("alpha")
    v = y.astype(np.float32) * (al.reshape(1, -1, 1, 1) if al is not None else np.float32(1))
    if "bias" in keep:
        v = v + keep["bias"].reshape(1, -1, 1, 1)
    if "aff_s" in keep:
        v = v * keep["aff_s"].reshape(1, -1, 1, 1) + keep["aff_b"].reshape(1, -1, 1, 1)
    if epi.act and epi.act_first:
        v = _rprelu_reference(v, keep)
    if residual is not None:
        v = v + residual
    if epi.act and not epi.act_first:
        v = _rprelu_reference(v, keep)
    if epi.clamp:
        lo, hi = np.float32(epi.lo), np.float32(epi.hi)
        v = np.where(v < lo, lo, np.where(v > hi, hi, v))
    if epi.act2:
        v = _rprelu_reference(v, keep, "2")
    if residual2 is not None:
        v = v + residual2
    if epi.mul:
        v = v * np.float32(epi.mv)
    return v.astype(np.float32, copy=False)


def _sums_reference(v: np.ndarray) -> np.ndarray:
    """Per-channel sums (N, Co) float64 of ``v`` (N, Co, Ho, Wo) in the kernels' order: per row, tiles of
    64 pixels (zero-padded), in each tile 8 double lanes over its 8-pixel vectors in order, the lanes summed
    in order, then the tiles of the row and the rows in order (``cumsum``: sequential additions)."""
    n, co, ho, wo = v.shape
    nt = -(-wo // 64)
    d = np.zeros((n, co, ho, nt * 64), np.float64)
    d[..., :wo] = v
    lanes = np.cumsum(d.reshape(n, co, ho, nt, 8, 8), axis=4)[..., -1, :]  # (n, co, ho, nt, 8 lanes)
    tiles = np.cumsum(lanes, axis=-1)[..., -1]
    return np.cumsum(np.cumsum(tiles, axis=-1)[..., -1], axis=-1)[..., -1]


def packing_groups(cin: int, cout: int, kernel_size: int, groups: int = 1) -> int:
    """Groups of the packed activations that :func:`binary_conv2d` reads fastest: 1 for a depthwise layer
    and for groups of 4 input channels (kernel size <= 7; packed densely, 16 groups per word), ``groups``
    otherwise (each group in words of its own, which every grouped layer also accepts)."""
    if groups > 1 and (groups == cin == cout or (cin == 4 * groups and kernel_size <= 7)):
        return 1
    return groups


def conv_output_size(n: int, k: int, stride: int, padding: int) -> int:
    return (n + 2 * padding - k) // stride + 1


def binary_conv2d(
    x: Packed | np.ndarray,
    wbits: np.ndarray,
    *,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    padding: int = 0,
    groups: int = 1,
    in_scale=None,
    in_bias=None,
    alpha=None,
    bias=None,
    affine: tuple | None = None,
    act: tuple | None = None,
    act_first: bool = True,
    residual: np.ndarray | None = None,
    clamp: tuple[float, float] | None = None,
    act2: tuple | None = None,
    residual2: np.ndarray | None = None,
    mul: float | None = None,
    float_out: bool = True,
    pack_out: dict | None = None,
    int_out: bool = False,
    sums: bool = False,
    out_buffer: np.ndarray | None = None,
    path: str | None = None,
    threads: int | None = None,
) -> dict:
    """Binary convolution of packed activations with packed weights and the fused epilogue.

    ``x`` is :class:`Packed`, or float32 ``(N, Ci, H, W)`` binarized here as by :func:`pack_activations`
    with ``in_scale``/``in_bias`` (per channel or per sample), the packing :func:`packing_groups` and a halo
    of ``max(1, padding)``: the kernels pack a band of rows at a time just before the output rows that read
    them (no packed copy of the whole input; the rows are still in the cache when read as the residual).

    y (exact integer) = sum over valid taps of sign(x) * sign(w) (zero padding contributes 0). Then in
    float32, per output channel o: ``v = y*alpha[o] (+ bias[o])``; ``v = v*s[o] + b[o]`` for
    ``affine=(s, b)``; ``act=(gamma, slope, zeta)``: ``t = v - gamma; t = t if t >= 0 else slope*t;
    v = t + zeta`` applied before (``act_first``) or after the residual add ``v += residual``
    (``(N, Co, Ho, Wo)`` float32); ``clamp=(lo, hi)``; ``act2=(gamma2, slope2, zeta2)``: a second RPReLU
    after all of these (the activation of a following op fused into the layer); then ``v += residual2``
    and ``v *= mul`` (a following add and scaling, e.g. the mean of two branches).
    ``pack_out=dict(halo=1, groups=1, scale=None, bias=None)`` also writes the packed bits of
    ``v*scale + bias`` for a following binary op; ``sums`` the per-channel sums of v over the image (a
    following global mean without another pass over the output).

    Returns dict with ``"out"`` float32 ``(N, Co, Ho, Wo)`` (if ``float_out``; written into ``out_buffer``
    when given), ``"packed"`` (:class:`Packed`, if ``pack_out``; into ``pack_out["out"]`` when given), ``"y"``
    int32 ``(N, Co, Ho, Wo)`` (if ``int_out``), ``"sums"`` float64 ``(N, Co)`` (if ``sums``: in double, per
    output row over the tiles of 64 pixels in order, each tile's 8 lanes in order, then the rows in order;
    the same on every path and thread count, see :func:`_sums_reference`).
    """
    lib = _lib()
    co, k = int(out_channels), int(kernel_size)
    xf = sc = bi = None
    if not isinstance(x, Packed):
        xf = np.ascontiguousarray(x, dtype=np.float32)
        if xf.ndim != 4:
            raise BinsharpError(f"binary_conv2d expects a 4-D float input, got shape {xf.shape}")
        n, ci, h, w = xf.shape
        sc, bi = _per_sample(in_scale, n, ci, "in_scale"), _per_sample(in_bias, n, ci, "in_bias")
        pg, halo = packing_groups(ci, co, k, groups), max(1, int(padding))
        if ci % pg:
            raise BinsharpError(f"{ci} channels are not divisible into {pg} groups")
        if lib is None:
            x = pack_activations(xf, scale=sc, bias=bi, groups=pg, halo=halo)
            xf = None
        else:  # the geometry of the packing the kernels do band by band
            x = Packed(np.empty((n, 0, h + 2 * halo, w + 2 * halo), np.uint64), ci, pg, halo)
    n, ci, h, w = x.shape
    depthwise = groups > 1 and groups == ci == co
    want_groups = packing_groups(ci, co, k, groups)
    if x.groups != want_groups and (depthwise or x.groups != groups):
        raise BinsharpError(f"activations packed with {x.groups} groups, the convolution needs {want_groups}")
    if padding > x.halo:
        raise BinsharpError(f"padding {padding} exceeds the packed halo {x.halo}")
    if depthwise:
        expect = (k * k, words(ci))
    else:
        if ci % groups or co % groups:
            raise BinsharpError(f"channels {ci}->{co} are not divisible into {groups} groups")
        expect = (co, k, k, words(ci // groups))
    if wbits.shape != expect or wbits.dtype != np.uint64:
        raise BinsharpError(f"packed weights must be uint64 {expect}, got {wbits.dtype} {wbits.shape}")
    wbits = np.ascontiguousarray(wbits)
    ho, wo = conv_output_size(h, k, stride, padding), conv_output_size(w, k, stride, padding)
    keep: dict[str, np.ndarray] = {}  # per-channel arrays referenced by the epilogue struct
    epi = _Epi()

    def setv(field: str, v) -> None:
        a = _vec(v, co, field)
        if a is not None:
            keep[field] = a
            setattr(epi, field, a.ctypes.data_as(_f32p))

    setv("alpha", alpha)
    setv("bias", bias)
    if affine is not None:
        setv("aff_s", affine[0])
        setv("aff_b", affine[1])
    if act is not None:
        epi.act = 1
        setv("gamma", act[0])
        setv("slope", act[1])
        setv("zeta", act[2])
    epi.act_first = int(bool(act_first))
    if residual is not None:
        residual = np.ascontiguousarray(residual, dtype=np.float32)
        if residual.shape != (n, co, ho, wo):
            raise BinsharpError(f"residual must be {(n, co, ho, wo)}, got {residual.shape}")
        epi.res = residual.ctypes.data_as(_f32p)
    if residual2 is not None:
        residual2 = np.ascontiguousarray(residual2, dtype=np.float32)
        if residual2.shape != (n, co, ho, wo):
            raise BinsharpError(f"residual2 must be {(n, co, ho, wo)}, got {residual2.shape}")
        epi.res2 = residual2.ctypes.data_as(_f32p)
    if mul is not None:
        epi.mul, epi.mv = 1, float(mul)
    if clamp is not None:
        epi.clamp, epi.lo, epi.hi = 1, float(clamp[0]), float(clamp[1])
    if act2 is not None:
        epi.act2 = 1
        setv("gamma2", act2[0])
        setv("slope2", act2[1])
        setv("zeta2", act2[2])
    sum_out = np.empty((n, co), np.float64) if sums else None
    if sum_out is not None:
        epi.sums = sum_out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
    result: dict = {}
    out = None
    if float_out:
        out = np.empty((n, co, ho, wo), np.float32) if out_buffer is None else out_buffer
        if out.shape != (n, co, ho, wo) or out.dtype != np.float32 or not out.flags.c_contiguous:
            raise BinsharpError(f"output buffer must be C-contiguous float32 {(n, co, ho, wo)}")
    yout = np.empty((n, co, ho, wo), np.int32) if int_out else None
    pk = None
    if pack_out is not None:
        po = dict(pack_out)
        pk = po.pop("out", None) or Packed.empty(
            n, co, ho, wo, groups=int(po.get("groups", 1)), halo=int(po.get("halo", 1))
        )
        if pk.shape != (n, co, ho, wo):
            raise BinsharpError("packed output buffer does not match the convolution output")
        setv("pscale", po.get("scale"))
        setv("pbias", po.get("bias"))
    if lib is None:
        _warn_reference()
        y = conv_reference(
            x, wbits, out_channels=co, kernel_size=k, stride=stride, padding=padding, groups=groups
        )
        v = _epilogue_reference(y, keep, epi, residual, residual2)
        if out is not None:
            out[...] = v
        if pk is not None:
            _pack_into(_ch_affine(v, keep.get("pscale"), keep.get("pbias")) < 0, pk)
        if yout is not None:
            yout[...] = y
        if sum_out is not None:
            sum_out[...] = _sums_reference(v)
    else:
        rc = lib.bs_conv(
            None if xf is not None else _ptr(x.data),
            _ptr(xf),
            _ptr(sc),
            _ptr(bi),
            int(any(v is not None and v.ndim == 2 for v in (sc, bi))),
            n,
            ci,
            h,
            w,
            x.halo,
            groups,
            x.groups,
            _ptr(wbits),
            co,
            k,
            stride,
            padding,
            ctypes.byref(epi),
            _ptr(out),
            _ptr(pk.data) if pk is not None else None,
            pk.halo if pk is not None else 0,
            pk.groups if pk is not None else 1,
            _ptr(yout),
            PATHS.index(resolve_path(path)),
            resolve_threads(threads),
        )
        _check(rc, "binary_conv2d")
    if out is not None:
        result["out"] = out
    if pk is not None:
        result["packed"] = pk
    if yout is not None:
        result["y"] = yout
    if sum_out is not None:
        result["sums"] = sum_out
    return result


def float_conv2d(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    padding: int = 0,
    out: np.ndarray | None = None,
    path: str | None = None,
    threads: int | None = None,
) -> np.ndarray:
    """Float32 convolution, stride 1, zero padding: ``x`` (N, Ci, H, W), ``w`` (Co, Ci, k, k), ``bias`` (Co,)
    -> (N, Co, H + 2p - k + 1, W + 2p - k + 1) (into ``out`` if given; direct, register-tiled,
    multi-threaded compiled kernel; the AVX2 and AVX-512 paths use their instructions, the others the best of
    the CPU; the same results)."""
    lib = _require_lib()
    x = np.ascontiguousarray(x, dtype=np.float32)
    w = np.asarray(w, dtype=np.float32)
    n, ci, h, wd = x.shape
    co, ci2, k, k2 = w.shape
    if ci2 != ci or k != k2:
        raise BinsharpError(f"float_conv2d: weights {w.shape} do not fit input {x.shape}")
    ho, wo = h + 2 * padding - k + 1, wd + 2 * padding - k + 1
    if ho < 1 or wo < 1:
        raise BinsharpError(f"float_conv2d: input {x.shape} is smaller than the kernel")
    if out is not None:
        out = _out_buffer("float_conv2d", out, (n, co, ho, wo))
    wr = (wo + 31) // 32 * 32
    co4 = (co + 3) // 4 * 4
    wp = np.zeros((co4, ci, k, k), np.float32)
    wp[:co] = w
    b = np.zeros(co4, np.float32)
    if bias is not None:
        b[:co] = _vec(bias, co, "bias")
    aligned = co4 == co and wr == wo  # the kernel's layout is the output's
    res = out if aligned and out is not None else np.empty((n, co4, ho, wr), np.float32)
    pi, nt = PATHS.index(resolve_path(path)), resolve_threads(threads)
    rc = lib.bs_fconv(_ptr(x), n, ci, h, wd, padding, _ptr(wp), co4, k, ho, wr, _ptr(b), _ptr(res), pi, nt)
    _check(rc, "float_conv2d")
    if aligned:
        return res
    if out is None:
        return np.ascontiguousarray(res[:, :co, :, :wo])
    out[...] = res[:, :co, :, :wo]
    return out


def plane_stats(x: np.ndarray, eps: float, *, threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and ``sqrt(var + eps)`` (population variance) over H x W of ``x`` (N, C, H, W) float32, each
    (N, C, 1, 1) float32 (double accumulation)."""
    lib = _require_lib()
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, c = x.shape[:2]
    mean = np.empty((n, c, 1, 1), np.float32)
    sd = np.empty((n, c, 1, 1), np.float32)
    rc = lib.bs_plane_stats(
        _ptr(x),
        n * c,
        x.size // max(1, n * c),
        float(eps),
        _ptr(mean),
        _ptr(sd),
        resolve_threads(threads),
    )
    _check(rc, "plane_stats")
    return mean, sd


def plane_mean(x: np.ndarray, *, threads: int | None = None) -> np.ndarray:
    """Mean over H x W of ``x`` (N, C, H, W) float32 -> (N, C, 1, 1) float32 (double accumulation)."""
    lib = _require_lib()
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, c = x.shape[:2]
    mean = np.empty((n, c, 1, 1), np.float32)
    rc = lib.bs_plane_stats(
        _ptr(x), n * c, x.size // max(1, n * c), 0.0, _ptr(mean), None, resolve_threads(threads)
    )
    _check(rc, "plane_mean")
    return mean


def layernorm_c(
    x: np.ndarray,
    weight,
    bias,
    eps: float,
    *,
    out: np.ndarray | None = None,
    threads: int | None = None,
) -> np.ndarray:
    """LayerNorm over the channels of each pixel of ``x`` (N, C, H, W) float32 in double precision:
    ``(x - mean) / sqrt(var + eps) * weight[c] + bias[c]`` -> (N, C, H, W) float32 (into ``out`` if given)."""
    lib = _require_lib()
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, c = x.shape[:2]
    w, b = _vec(weight, c, "weight"), _vec(bias, c, "bias")
    if out is None:
        out = np.empty_like(x)
    elif out.shape != x.shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise BinsharpError(f"layernorm_c: output buffer must be C-contiguous float32 {x.shape}")
    hw = x.size // max(1, n * c)
    rc = lib.bs_layernorm_c(
        _ptr(x), n, c, hw, _ptr(w), _ptr(b), float(eps), _ptr(out), resolve_threads(threads)
    )
    _check(rc, "layernorm_c")
    return out


def _out_buffer(name: str, out: np.ndarray | None, shape: tuple) -> np.ndarray:
    if out is None:
        return np.empty(shape, np.float32)
    if out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise BinsharpError(f"{name}: output buffer must be C-contiguous float32 {shape}")
    return out


def haar_dwt(x: np.ndarray, *, out: np.ndarray | None = None, threads: int | None = None) -> np.ndarray:
    """Orthonormal Haar DWT ``x`` (N, C, H, W) float32 (H, W even) -> (N, 4C, H/2, W/2) with the bands
    [LL, LH, HL, HH] of channel c at 4c..4c+3 (into ``out`` if given)."""
    lib = _require_lib()
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, c, h, w = x.shape
    if h % 2 or w % 2 or h < 2 or w < 2:
        raise BinsharpError(f"haar_dwt needs even height and width, got {h} x {w}")
    out = _out_buffer("haar_dwt", out, (n, 4 * c, h // 2, w // 2))
    hw = (h // 2) * (w // 2)
    bands = [out.ctypes.data + 4 * b * hw for b in range(4)]
    _check(lib.bs_haar_dwt(_ptr(x), n * c, h, w, *bands, 4 * hw, resolve_threads(threads)), "haar_dwt")
    return out


def haar_dwt_bands(
    x: np.ndarray, *, outs: list[np.ndarray] | None = None, threads: int | None = None
) -> list[np.ndarray]:
    """:func:`haar_dwt` with each band in an array of its own: ``[LL, LH, HL, HH]``, each (N, C, H/2, W/2)
    (into ``outs`` if given), the same values as the channel slices ``haar_dwt(x)[:, b::4]``."""
    lib = _require_lib()
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, c, h, w = x.shape
    if h % 2 or w % 2 or h < 2 or w < 2:
        raise BinsharpError(f"haar_dwt needs even height and width, got {h} x {w}")
    shape = (n, c, h // 2, w // 2)
    given: list[np.ndarray | None] = list(outs) if outs else [None] * 4
    outs = [_out_buffer("haar_dwt_bands", o, shape) for o in given]
    bands = [_ptr(o) for o in outs]
    hw = (h // 2) * (w // 2)
    _check(lib.bs_haar_dwt(_ptr(x), n * c, h, w, *bands, hw, resolve_threads(threads)), "haar_dwt_bands")
    return outs


def haar_idwt(y: np.ndarray, *, out: np.ndarray | None = None, threads: int | None = None) -> np.ndarray:
    """Inverse of :func:`haar_dwt`: (N, 4C, h, w) float32 -> (N, C, 2h, 2w) (into ``out`` if given)."""
    lib = _require_lib()
    y = np.ascontiguousarray(y, dtype=np.float32)
    n, c4, h, w = y.shape
    if c4 % 4:
        raise BinsharpError(f"haar_idwt needs a channel count divisible by 4, got {c4}")
    out = _out_buffer("haar_idwt", out, (n, c4 // 4, 2 * h, 2 * w))
    bands = [y.ctypes.data + 4 * b * h * w for b in range(4)]
    _check(
        lib.bs_haar_idwt(*bands, n * c4 // 4, h, w, 4 * h * w, _ptr(out), resolve_threads(threads)),
        "haar_idwt",
    )
    return out


def haar_idwt_bands(
    bands: list[np.ndarray], *, out: np.ndarray | None = None, threads: int | None = None
) -> np.ndarray:
    """Inverse of :func:`haar_dwt_bands`: four (N, C, h, w) float32 bands [LL, LH, HL, HH] -> (N, C, 2h, 2w)
    (into ``out`` if given)."""
    lib = _require_lib()
    bands = [np.ascontiguousarray(b, dtype=np.float32) for b in bands]
    n, c, h, w = bands[0].shape
    if len(bands) != 4 or any(b.shape != bands[0].shape for b in bands):
        raise BinsharpError("haar_idwt_bands needs four bands of one shape")
    out = _out_buffer("haar_idwt_bands", out, (n, c, 2 * h, 2 * w))
    rc = lib.bs_haar_idwt(*(_ptr(b) for b in bands), n * c, h, w, h * w, _ptr(out), resolve_threads(threads))
    _check(rc, "haar_idwt_bands")
    return out


def _planes_op(name: str, x: np.ndarray, shape: tuple, out: np.ndarray | None, threads: int | None):
    lib = _require_lib()
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, c, h, w = x.shape
    out = _out_buffer(name, out, shape)
    _check(getattr(lib, "bs_" + name)(_ptr(x), n * c, h, w, _ptr(out), resolve_threads(threads)), name)
    return out


def upsample2(x: np.ndarray, *, out: np.ndarray | None = None, threads: int | None = None) -> np.ndarray:
    """x2 bilinear upsampling (PyTorch ``align_corners=False``) of ``x`` (N, C, H, W) float32 ->
    (N, C, 2H, 2W), bit-identical to :func:`binsharp.deploy.runtime.upsample_bilinear2`."""
    n, c, h, w = x.shape
    if h < 1 or w < 1:
        raise BinsharpError(f"upsample2: empty input {x.shape}")
    return _planes_op("upsample2", x, (n, c, 2 * h, 2 * w), out, threads)


def avgpool2(x: np.ndarray, *, out: np.ndarray | None = None, threads: int | None = None) -> np.ndarray:
    """Non-overlapping 2 x 2 mean of ``x`` (N, C, H, W) float32 -> (N, C, H//2, W//2) (odd remainder
    dropped), bit-identical to the numpy float32 window sum divided by 4."""
    n, c, h, w = x.shape
    if h < 2 or w < 2:
        raise BinsharpError(f"avgpool2: input {x.shape} is smaller than the window")
    return _planes_op("avgpool2", x, (n, c, h // 2, w // 2), out, threads)


def restd(
    xb: np.ndarray,
    xf: np.ndarray,
    lam,
    eta,
    eps: float,
    *,
    act: tuple | None = None,
    residual: bool = False,
    out: np.ndarray | None = None,
    threads: int | None = None,
) -> np.ndarray:
    """Re-standardisation of a binary branch ``xb`` by the statistics of its float input ``xf`` (both
    (N, C, H, W) float32): ``t = (sd_f / lam[c]) * (xb - mu_b) / sd_b + mu_f + eta[c]`` with per-plane mean
    ``mu`` and ``sd = sqrt(var + eps)`` (as :func:`plane_stats`), then ``act=(gamma, slope, zeta)``: RPReLU,
    then ``residual``: ``t + xf``; each step in float32 in that order (into ``out`` if given, which may be
    ``xb``)."""
    lib = _require_lib()
    xb = np.ascontiguousarray(xb, dtype=np.float32)
    xf = np.ascontiguousarray(xf, dtype=np.float32)
    if xb.ndim != 4 or xf.shape != xb.shape:
        raise BinsharpError(f"restd: branch {xb.shape} and input {xf.shape} must be one (N, C, H, W) shape")
    n, c, h, w = xb.shape
    g = s = z = None
    if act is not None:
        g, s, z = (_vec(v, c, role) for v, role in zip(act, ("gamma", "slope", "zeta"), strict=True))
    if act is not None and s is None:
        raise BinsharpError("restd: the activation needs a slope")
    out = _out_buffer("restd", out, xb.shape)
    lam_v, eta_v = _vec(lam, c, "lam"), _vec(eta, c, "eta")
    rc = lib.bs_restd(
        _ptr(xb), _ptr(xf), n, c, h * w, _ptr(lam_v), _ptr(eta_v), _ptr(g), _ptr(s), _ptr(z), float(eps),
        int(bool(residual)), _ptr(out), resolve_threads(threads),
    )  # fmt: skip
    _check(rc, "restd")
    return out


def _plane_vec(v, n: int, c: int, what: str) -> np.ndarray | None:
    """A per-sample, per-channel value ((N, C, 1, 1), (1, C, 1, 1) or (C,)) as N*C contiguous float32."""
    if v is None:
        return None
    a = np.asarray(v, dtype=np.float32).reshape(-1, c) if np.size(v) % c == 0 else None
    if a is None or a.shape[0] not in (1, n):
        raise BinsharpError(f"{what} must have {c} values per sample, got shape {np.shape(v)}")
    return np.ascontiguousarray(np.broadcast_to(a, (n, c)))


def affine_stats(
    x: np.ndarray, scale, bias, eps: float, *, threads: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, ``sqrt(var + eps)`` and mean ``|v|`` over H x W of ``v = x * scale + bias`` (``x`` (N, C, H, W)
    float32; ``scale``/``bias`` per sample and channel, (N, C, 1, 1), both or neither), each (N, C, 1, 1)
    float32 (``v`` in float32, double accumulation as :func:`plane_stats`)."""
    lib = _require_lib()
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, c = x.shape[:2]
    s, b = _plane_vec(scale, n, c, "scale"), _plane_vec(bias, n, c, "bias")
    if (s is None) != (b is None):
        raise BinsharpError("affine_stats: give both scale and bias, or neither")
    res = [np.empty((n, c, 1, 1), np.float32) for _ in range(3)]
    rc = lib.bs_affine_stats(
        _ptr(x), n * c, x.size // max(1, n * c), _ptr(s), _ptr(b), float(eps), *(_ptr(r) for r in res),
        resolve_threads(threads),
    )  # fmt: skip
    _check(rc, "affine_stats")
    return res[0], res[1], res[2]


def calibrate(
    x: np.ndarray, scale, bias, weight, *, out: np.ndarray | None = None, threads: int | None = None
) -> np.ndarray:
    """``weight * (x * scale + bias) + x`` (``x`` (N, C, H, W) float32; ``scale``/``bias``/``weight`` per
    sample and channel (N, C, 1, 1); scale and bias both or neither: ``weight * x + x``), float32 in that
    order (into ``out`` if given, which may be ``x``)."""
    lib = _require_lib()
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, c = x.shape[:2]
    s, b = _plane_vec(scale, n, c, "scale"), _plane_vec(bias, n, c, "bias")
    wt = _plane_vec(weight, n, c, "weight")
    if (s is None) != (b is None) or wt is None:
        raise BinsharpError("calibrate: give a weight, and both scale and bias or neither")
    out = _out_buffer("calibrate", out, x.shape)
    hw = x.size // max(1, n * c)
    rc = lib.bs_calibrate(_ptr(x), n * c, hw, _ptr(s), _ptr(b), _ptr(wt), _ptr(out), resolve_threads(threads))
    _check(rc, "calibrate")
    return out


def _band_planes(bands, what: str) -> tuple[list[int], tuple[int, int, int, int], int]:
    """Pointers of the four Haar bands [LL, LH, HL, HH], given as four (N, C, h, w) float32 arrays or one
    interleaved (N, 4C, h, w) array (:func:`haar_dwt`'s layout); -> (pointers, (N, C, h, w), plane stride)."""
    if isinstance(bands, np.ndarray):
        if bands.ndim != 4 or bands.shape[1] % 4 or bands.dtype != np.float32 or not bands.flags.c_contiguous:
            raise BinsharpError(f"{what}: interleaved bands must be C-contiguous float32 (N, 4C, h, w)")
        n, c4, h, w = bands.shape
        return [bands.ctypes.data + 4 * b * h * w for b in range(4)], (n, c4 // 4, h, w), 4 * h * w
    arrs = list(bands)
    if len(arrs) != 4 or any(
        b.shape != arrs[0].shape or b.ndim != 4 or b.dtype != np.float32 or not b.flags.c_contiguous
        for b in arrs
    ):
        raise BinsharpError(f"{what}: needs four C-contiguous float32 (N, C, h, w) bands of one shape")
    n, c, h, w = arrs[0].shape
    return [b.ctypes.data for b in arrs], (n, c, h, w), h * w


def haar_affine_stats(
    bands, scale, bias, eps: float, *, threads: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`affine_stats` of ``y = haar_idwt(bands)`` without forming ``y`` (bands as in
    :func:`haar_calibrate`; band width a multiple of 4), bitwise the same."""
    lib = _require_lib()
    ptrs, (n, c, h, w), pstride = _band_planes(bands, "haar_affine_stats")
    if w % 4:
        raise BinsharpError(f"haar_affine_stats needs a band width divisible by 4, got {w}")
    s, b = _plane_vec(scale, n, c, "scale"), _plane_vec(bias, n, c, "bias")
    if (s is None) != (b is None):
        raise BinsharpError("haar_affine_stats: give both scale and bias, or neither")
    res = [np.empty((n, c, 1, 1), np.float32) for _ in range(3)]
    rc = lib.bs_haar_affine_stats(
        *ptrs,
        n * c,
        h,
        w,
        pstride,
        _ptr(s),
        _ptr(b),
        float(eps),
        *(_ptr(r) for r in res),
        resolve_threads(threads),
    )
    _check(rc, "haar_affine_stats")
    return res[0], res[1], res[2]


def haar_calibrate(bands, scale, bias, weight, *, dwt: bool = False, out=None, threads: int | None = None):
    """:func:`calibrate` of ``y = haar_idwt(bands)`` without forming ``y``; ``bands``: the four Haar bands
    [LL, LH, HL, HH] of y as four (N, C, h, w) float32 arrays or one interleaved (N, 4C, h, w) array.
    Returns (N, C, 2h, 2w), or with ``dwt`` the Haar bands of the result (:func:`haar_dwt`), bitwise the same
    as the transforms and :func:`calibrate` one after the other. ``out``: the output array, or with ``dwt``
    four band arrays or one interleaved array (default: a new interleaved array)."""
    lib = _require_lib()
    ptrs, (n, c, h, w), pstride = _band_planes(bands, "haar_calibrate")
    s, b = _plane_vec(scale, n, c, "scale"), _plane_vec(bias, n, c, "bias")
    wt = _plane_vec(weight, n, c, "weight")
    if (s is None) != (b is None) or wt is None:
        raise BinsharpError("haar_calibrate: give a weight, and both scale and bias or neither")
    if dwt:
        if out is None:
            out = np.empty((n, 4 * c, h, w), np.float32)
        optrs, oshape, opstride = _band_planes(out, "haar_calibrate output")
        if oshape != (n, c, h, w):
            raise BinsharpError(f"haar_calibrate: output bands must be (N, C, h, w) = {(n, c, h, w)}")
        full = None
    else:
        full = out = _out_buffer("haar_calibrate", out, (n, c, 2 * h, 2 * w))
        optrs, opstride = [None] * 4, 0
    rc = lib.bs_haar_calibrate(
        *ptrs, n * c, h, w, pstride, _ptr(s), _ptr(b), _ptr(wt), _ptr(full), *optrs, opstride,
        resolve_threads(threads),
    )  # fmt: skip
    _check(rc, "haar_calibrate")
    return out
