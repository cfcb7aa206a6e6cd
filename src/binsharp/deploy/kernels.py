"""Python interface of the compiled bit-packed kernels (``binsharp.deploy._bitkern``), numpy in and out.

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
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from binsharp.errors import BinsharpError

PATHS: tuple[str, ...] = ("generic", "popcnt", "avx2", "avx512")
ENV_PATH = "BINSHARP_KERNEL_PATH"
ENV_THREADS = "BINSHARP_NUM_THREADS"
_FLAG_NAMES = ("popcnt", "avx2", "avx512f", "avx512vpopcntdq", "avx512dq", "avx512bw", "avx512vl")
_ERRORS = {1: "invalid arguments", 2: "out of memory", 3: "kernel path not available on this CPU"}

_f32p = ctypes.POINTER(ctypes.c_float)
_u64p = ctypes.POINTER(ctypes.c_uint64)
_i32p = ctypes.POINTER(ctypes.c_int32)


class _Epi(ctypes.Structure):
    _fields_ = [
        ("alpha", _f32p),
        ("bias", _f32p),
        ("aff_s", _f32p),
        ("aff_b", _f32p),
        ("act", ctypes.c_int),
        ("act_first", ctypes.c_int),
        ("gamma", _f32p),
        ("slope", _f32p),
        ("zeta", _f32p),
        ("res", _f32p),
        ("clamp", ctypes.c_int),
        ("lo", ctypes.c_float),
        ("hi", ctypes.c_float),
        ("pscale", _f32p),
        ("pbias", _f32p),
    ]


@lru_cache(maxsize=1)
def _lib() -> ctypes.CDLL | None:
    spec = importlib.util.find_spec("binsharp.deploy._bitkern")
    if spec is None or not spec.origin:
        return None
    # Idle OpenMP threads sleep instead of spinning (read by the OpenMP runtime when it loads): the kernels
    # run one parallel region per layer, and spinning threads starve each other on a busy machine.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    lib = ctypes.CDLL(spec.origin)
    i64, i32, vp = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p
    lib.bs_cpu_flags.restype = i32
    lib.bs_path_available.argtypes = [i32]
    lib.bs_path_available.restype = i32
    lib.bs_best_path.restype = i32
    lib.bs_openmp.restype = i32
    lib.bs_pack.argtypes = [vp, i64, i32, i32, i32, i32, vp, vp, i32, vp, i32, i32, i32]
    lib.bs_pack.restype = i32
    lib.bs_conv.argtypes = [
        vp,
        i64,
        i32,
        i32,
        i32,
        i32,
        i32,
        vp,
        i32,
        i32,
        i32,
        i32,
        ctypes.POINTER(_Epi),
        vp,
        vp,
        i32,
        i32,
        vp,
        i32,
        i32,
    ]
    lib.bs_conv.restype = i32
    lib.bs_fconv.argtypes = [vp, i64, i32, i32, i32, vp, i32, i32, i32, i32, vp, vp, i32]
    lib.bs_fconv.restype = i32
    lib.bs_rprelu.argtypes = [vp, i64, i32, i64, vp, vp, vp, vp, i32]
    lib.bs_rprelu.restype = i32
    lib.bs_plane_stats.argtypes = [vp, i64, i64, ctypes.c_float, vp, vp, i32]
    lib.bs_plane_stats.restype = i32
    lib.bs_layernorm_c.argtypes = [vp, i64, i32, i64, vp, vp, ctypes.c_double, vp, i32]
    lib.bs_layernorm_c.restype = i32
    lib.bs_haar_dwt.argtypes = [vp, i64, i64, i64, vp, i32]
    lib.bs_haar_dwt.restype = i32
    lib.bs_haar_idwt.argtypes = [vp, i64, i64, i64, vp, i32]
    lib.bs_haar_idwt.restype = i32
    lib.bs_upsample2.argtypes = [vp, i64, i64, i64, vp, i32]
    lib.bs_upsample2.restype = i32
    lib.bs_avgpool2.argtypes = [vp, i64, i64, i64, vp, i32]
    lib.bs_avgpool2.restype = i32
    return lib


def have_kernels() -> bool:
    """True when the compiled extension is importable."""
    return _lib() is not None


def _require_lib() -> ctypes.CDLL:
    lib = _lib()
    if lib is None:
        raise BinsharpError(
            "the compiled kernels (binsharp.deploy._bitkern) are not built; "
            "run `pip install -e .` or `python setup.py build_ext --inplace`"
        )
    return lib


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


def resolve_threads(threads: int | None = None) -> int:
    """Thread count of a call (argument, else ``$BINSHARP_NUM_THREADS``, else the number of CPUs)."""
    if threads is None:
        env = os.environ.get(ENV_THREADS, "").strip()
        threads = int(env) if env else (os.cpu_count() or 1)
    if threads < 1:
        raise BinsharpError(f"thread count must be >= 1, got {threads}")
    return int(threads)


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


def _ptr(a: np.ndarray | None, ptype=None):
    if a is None:
        return None
    return a.ctypes.data if ptype is None else a.ctypes.data_as(ptype)


def _vec(v, n: int, what: str) -> np.ndarray | None:
    if v is None:
        return None
    a = np.ascontiguousarray(np.broadcast_to(np.asarray(v, dtype=np.float32), (n,)))
    if a.shape != (n,):
        raise BinsharpError(f"{what} must have {n} values, got shape {a.shape}")
    return a


def _check(rc: int, what: str) -> None:
    if rc:
        raise BinsharpError(f"{what}: {_ERRORS.get(rc, f'error {rc}')}")


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
    input with +1 at 0.
    """
    lib = _require_lib()
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
    sc, bi = _vec(scale, c, "scale"), _vec(bias, c, "bias")
    if out is None:
        out = Packed.empty(n, c, h, w, groups=groups, halo=halo)
    elif out.shape != (n, c, h, w) or out.groups != groups or out.halo != halo:
        raise BinsharpError("pack_activations: output buffer does not match the input")
    rc = lib.bs_pack(
        _ptr(x),
        n,
        c,
        h,
        w,
        int(layout == "NHWC"),
        _ptr(sc),
        _ptr(bi),
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


def conv_output_size(n: int, k: int, stride: int, padding: int) -> int:
    return (n + 2 * padding - k) // stride + 1


def binary_conv2d(
    x: Packed,
    wbits: np.ndarray,
    *,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    padding: int = 0,
    groups: int = 1,
    alpha=None,
    bias=None,
    affine: tuple | None = None,
    act: tuple | None = None,
    act_first: bool = True,
    residual: np.ndarray | None = None,
    clamp: tuple[float, float] | None = None,
    float_out: bool = True,
    pack_out: dict | None = None,
    int_out: bool = False,
    out_buffer: np.ndarray | None = None,
    path: str | None = None,
    threads: int | None = None,
) -> dict:
    """Binary convolution of packed activations with packed weights and the fused epilogue.

    y (exact integer) = sum over valid taps of sign(x) * sign(w) (zero padding contributes 0). Then in
    float32, per output channel o: ``v = y*alpha[o] (+ bias[o])``; ``v = v*s[o] + b[o]`` for
    ``affine=(s, b)``; ``act=(gamma, slope, zeta)``: ``t = v - gamma; t = t if t >= 0 else slope*t;
    v = t + zeta`` applied before (``act_first``) or after the residual add ``v += residual``
    (``(N, Co, Ho, Wo)`` float32); ``clamp=(lo, hi)``.
    ``pack_out=dict(halo=1, groups=1, scale=None, bias=None)`` also writes the packed bits of
    ``v*scale + bias`` for a following binary op.

    Returns dict with ``"out"`` float32 ``(N, Co, Ho, Wo)`` (if ``float_out``; written into ``out_buffer``
    when given), ``"packed"`` (:class:`Packed`, if ``pack_out``; into ``pack_out["out"]`` when given), ``"y"``
    int32 ``(N, Co, Ho, Wo)`` (if ``int_out``).
    """
    lib = _require_lib()
    n, ci, h, w = x.shape
    co, k = int(out_channels), int(kernel_size)
    depthwise = groups > 1 and groups == ci == co
    want_groups = 1 if depthwise else groups
    if x.groups != want_groups:
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
    keep = []  # arrays referenced by the epilogue struct
    epi = _Epi()

    def setv(field: str, v) -> None:
        a = _vec(v, co, field)
        if a is not None:
            keep.append(a)
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
        keep.append(residual)
        epi.res = residual.ctypes.data_as(_f32p)
    if clamp is not None:
        epi.clamp, epi.lo, epi.hi = 1, float(clamp[0]), float(clamp[1])
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
    rc = lib.bs_conv(
        _ptr(x.data),
        n,
        ci,
        h,
        w,
        x.halo,
        groups,
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
    return result


def float_conv2d(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    padding: int = 0,
    threads: int | None = None,
) -> np.ndarray:
    """Float32 convolution, stride 1, zero padding: ``x`` (N, Ci, H, W), ``w`` (Co, Ci, k, k), ``bias`` (Co,)
    -> (N, Co, H + 2p - k + 1, W + 2p - k + 1) (direct, register-tiled, multi-threaded compiled kernel)."""
    lib = _require_lib()
    x = np.asarray(x, dtype=np.float32)
    w = np.asarray(w, dtype=np.float32)
    n, ci, h, wd = x.shape
    co, ci2, k, k2 = w.shape
    if ci2 != ci or k != k2:
        raise BinsharpError(f"float_conv2d: weights {w.shape} do not fit input {x.shape}")
    ho, wo = h + 2 * padding - k + 1, wd + 2 * padding - k + 1
    if ho < 1 or wo < 1:
        raise BinsharpError(f"float_conv2d: input {x.shape} is smaller than the kernel")
    wr = (wo + 31) // 32 * 32
    co4 = (co + 3) // 4 * 4
    hp, wq = ho + k - 1, wr + k - 1
    xp = np.zeros((n, ci, hp, wq), np.float32)
    xp[:, :, padding : padding + h, padding : padding + wd] = x
    wp = np.zeros((co4, ci, k, k), np.float32)
    wp[:co] = w
    b = np.zeros(co4, np.float32)
    if bias is not None:
        b[:co] = _vec(bias, co, "bias")
    out = np.empty((n, co4, ho, wr), np.float32)
    rc = lib.bs_fconv(
        _ptr(xp), n, ci, hp, wq, _ptr(wp), co4, k, ho, wr, _ptr(b), _ptr(out), resolve_threads(threads)
    )
    _check(rc, "float_conv2d")
    if co4 == co and wr == wo:
        return out
    return np.ascontiguousarray(out[:, :co, :, :wo])


def rprelu(
    x: np.ndarray, gamma, slope, zeta, *, inplace: bool = False, threads: int | None = None
) -> np.ndarray:
    """``prelu(x - gamma[c], slope[c]) + zeta[c]`` on ``x`` (N, C, ...) float32 (gamma/zeta may be None);
    ``inplace`` overwrites ``x`` when it is a C-contiguous float32 array."""
    lib = _require_lib()
    x0 = x
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, c = x.shape[:2]
    g, s, z = _vec(gamma, c, "gamma"), _vec(slope, c, "slope"), _vec(zeta, c, "zeta")
    out = x if (inplace and x is x0) else np.empty_like(x)
    hw = x.size // max(1, n * c)
    rc = lib.bs_rprelu(_ptr(x), n, c, hw, _ptr(g), _ptr(s), _ptr(z), _ptr(out), resolve_threads(threads))
    _check(rc, "rprelu")
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
        _ptr(x), n * c, x.size // max(1, n * c), float(eps), _ptr(mean), _ptr(sd), resolve_threads(threads)
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


def haar_dwt(x: np.ndarray, *, out: np.ndarray | None = None, threads: int | None = None) -> np.ndarray:
    """Orthonormal Haar DWT ``x`` (N, C, H, W) float32 (H, W even) -> (N, 4C, H/2, W/2) with the bands
    [LL, LH, HL, HH] of channel c at 4c..4c+3 (into ``out`` if given)."""
    lib = _require_lib()
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, c, h, w = x.shape
    if h % 2 or w % 2 or h < 2 or w < 2:
        raise BinsharpError(f"haar_dwt needs even height and width, got {h} x {w}")
    shape = (n, 4 * c, h // 2, w // 2)
    if out is None:
        out = np.empty(shape, np.float32)
    elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise BinsharpError(f"haar_dwt: output buffer must be C-contiguous float32 {shape}")
    _check(lib.bs_haar_dwt(_ptr(x), n * c, h, w, _ptr(out), resolve_threads(threads)), "haar_dwt")
    return out


def haar_idwt(y: np.ndarray, *, out: np.ndarray | None = None, threads: int | None = None) -> np.ndarray:
    """Inverse of :func:`haar_dwt`: (N, 4C, h, w) float32 -> (N, C, 2h, 2w) (into ``out`` if given)."""
    lib = _require_lib()
    y = np.ascontiguousarray(y, dtype=np.float32)
    n, c4, h, w = y.shape
    if c4 % 4:
        raise BinsharpError(f"haar_idwt needs a channel count divisible by 4, got {c4}")
    shape = (n, c4 // 4, 2 * h, 2 * w)
    if out is None:
        out = np.empty(shape, np.float32)
    elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise BinsharpError(f"haar_idwt: output buffer must be C-contiguous float32 {shape}")
    _check(lib.bs_haar_idwt(_ptr(y), n * c4 // 4, h, w, _ptr(out), resolve_threads(threads)), "haar_idwt")
    return out


def _planes_op(name: str, x: np.ndarray, shape: tuple, out: np.ndarray | None, threads: int | None):
    lib = _require_lib()
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, c, h, w = x.shape
    if out is None:
        out = np.empty(shape, np.float32)
    elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise BinsharpError(f"{name}: output buffer must be C-contiguous float32 {shape}")
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
