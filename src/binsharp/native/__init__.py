"""The compiled kernels (``binsharp.native._bitkern``): loading, the C interface and the training ops.

One C library serves the packed inference engine (:mod:`binsharp.deploy.kernels` wraps its bit-packed
convolutions and float glue) and the training engine (:mod:`binsharp.nn.functional` runs its one-pass
sign, RPReLU, scalable-tanh and channel-affine gradients here for float32 CPU tensors). The C entry points
are declared once, in :data:`C_API` (the prototypes of ``_bitkern.c``, from which the ctypes signatures are
made). Threads: the ``threads`` argument, else ``BINSHARP_NUM_THREADS``, else ``os.cpu_count()``. Without
the compiled extension (not built, or ``BINSHARP_NO_EXT=1``) :func:`have_kernels` is false and callers use
their numpy or PyTorch forms. Arrays are numpy, float32 unless stated.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
from functools import lru_cache

import numpy as np

from binsharp.errors import BinsharpError

ENV_THREADS = "BINSHARP_NUM_THREADS"
#: set to 1 to run without the compiled kernels (numpy reference binary convolution, much slower)
ENV_NO_EXT = "BINSHARP_NO_EXT"
_ERRORS = {1: "invalid arguments", 2: "out of memory", 3: "kernel path not available on this CPU"}

#: ctypes type of a float32 pointer
FloatPointer = ctypes.POINTER(ctypes.c_float)


class Epilogue(ctypes.Structure):
    _fields_ = [
        ("alpha", FloatPointer),
        ("bias", FloatPointer),
        ("aff_s", FloatPointer),
        ("aff_b", FloatPointer),
        ("act", ctypes.c_int),
        ("act_first", ctypes.c_int),
        ("gamma", FloatPointer),
        ("slope", FloatPointer),
        ("zeta", FloatPointer),
        ("res", FloatPointer),
        ("clamp", ctypes.c_int),
        ("lo", ctypes.c_float),
        ("hi", ctypes.c_float),
        ("pscale", FloatPointer),
        ("pbias", FloatPointer),
        ("act2", ctypes.c_int),
        ("gamma2", FloatPointer),
        ("slope2", FloatPointer),
        ("zeta2", FloatPointer),
        ("sums", ctypes.POINTER(ctypes.c_double)),
        ("res2", FloatPointer),
        ("mul", ctypes.c_int),
        ("mv", ctypes.c_float),
    ]


#: The C entry points of ``_bitkern.c``, declared once: their prototypes as written in the C source (a test
#: checks them against it); :func:`library` derives the ctypes signatures from them.
C_API: tuple[str, ...] = (
    "int bs_cpu_flags(void)",
    "int bs_path_available(int path)",
    "int bs_best_path(void)",
    "int bs_openmp(void)",
    "int64_t bs_xorpop(const uint64_t *a, const uint64_t *w, int64_t n, int64_t reps, int path)",
    "int bs_pack(const float *x, int64_t N, int C, int H, int W, int nhwc, const float *scale, "
    "const float *bias, int per_sample, int groups, uint64_t *out, int halo, int path, int nthreads)",
    "int bs_conv(const uint64_t *a, const float *xf, const float *xscale, const float *xbias, "
    "int xper_sample, int64_t N, int Ci, int H, int W, int halo, int groups, int groups_a, "
    "const uint64_t *w, int Co, int k, int stride, int pad, const bs_epi *epi, float *out, uint64_t *pout, "
    "int halo_o, int groups_o, int32_t *yout, int path, int nthreads)",
    "int bs_fconv(const float *x, int64_t N, int Ci, int H, int W, int pad, const float *w, int Co4, int k, "
    "int Ho, int Wr, const float *bias, float *out, int path, int nthreads)",
    "int bs_rprelu(const float *x, int64_t N, int C, int64_t HW, const float *gamma, const float *slope, "
    "const float *zeta, int keep_nan, float *out, int nthreads)",
    "int bs_sign(const float *x, int64_t n, float *out, int nthreads)",
    "int bs_approx_sign_backward(const float *x, const float *g, int64_t n, float *gx, int nthreads)",
    "int bs_rprelu_backward(const float *x, const float *g, int64_t N, int C, int64_t HW, "
    "const float *gamma, const float *slope, float *gx, double *sums, int nthreads)",
    "int bs_affine_backward(const float *x, const float *g, int64_t P, int64_t HW, const float *k, "
    "float *gx, double *sums, int nthreads)",
    "int bs_tanh_sign_backward(const float *x, const float *g, int64_t N, int C, int64_t HW, "
    "const float *beta, float *gx, double *sums, int nthreads)",
    "int bs_plane_stats(const float *x, int64_t NC, int64_t HW, float eps, float *mean, float *sd, "
    "int nthreads)",
    "int bs_layernorm_c(const float *x, int64_t N, int C, int64_t HW, const float *w, const float *b, "
    "double eps, float *out, int nthreads)",
    "int bs_haar_dwt(const float *x, int64_t P, int64_t H, int64_t W, float *ll, float *lh, float *hl, "
    "float *hh, int64_t pstride, int nthreads)",
    "int bs_haar_idwt(const float *ll, const float *lh, const float *hl, const float *hh, int64_t P, "
    "int64_t h, int64_t w, int64_t pstride, float *out, int nthreads)",
    "int bs_upsample2(const float *x, int64_t P, int64_t H, int64_t W, float *out, int nthreads)",
    "int bs_avgpool2(const float *x, int64_t P, int64_t H, int64_t W, float *out, int nthreads)",
    "int bs_restd(const float *xb, const float *xf, int64_t N, int C, int64_t HW, const float *lam, "
    "const float *eta, const float *gamma, const float *slope, const float *zeta, float eps, int residual, "
    "float *out, int nthreads)",
    "int bs_affine_stats(const float *x, int64_t NC, int64_t HW, const float *s, const float *b, float eps, "
    "float *mean, float *sd, float *amean, int nthreads)",
    "int bs_calibrate(const float *x, int64_t NC, int64_t HW, const float *s, const float *b, "
    "const float *w, float *out, int nthreads)",
    "int bs_haar_affine_stats(const float *ll, const float *lh, const float *hl, const float *hh, int64_t P, "
    "int64_t h, int64_t w, int64_t pstride, const float *s, const float *b, float eps, float *mean, "
    "float *sd, float *amean, int nthreads)",
    "int bs_haar_calibrate(const float *ll, const float *lh, const float *hl, const float *hh, int64_t P, "
    "int64_t h, int64_t w, int64_t pstride, const float *s, const float *b, const float *wt, float *out, "
    "float *oll, float *olh, float *ohl, float *ohh, int64_t opstride, int nthreads)",
)
_SCALARS = {
    "int": ctypes.c_int,
    "int64_t": ctypes.c_int64,
    "float": ctypes.c_float,
    "double": ctypes.c_double,
}


def c_signature(proto: str) -> tuple[str, type, list]:
    """``(name, restype, argtypes)`` of a C prototype of :data:`C_API` (pointers: ``c_void_p``, the epilogue
    struct: a pointer to :class:`Epilogue`)."""
    head, args = proto.strip().removesuffix(")").split("(", 1)
    ret, name = head.rsplit(None, 1)
    argtypes: list = []
    for arg in args.split(","):
        arg = arg.strip()
        if arg == "void":
            continue
        if "*" in arg:
            argtypes.append(ctypes.POINTER(Epilogue) if "bs_epi" in arg else ctypes.c_void_p)
        else:
            argtypes.append(_SCALARS[arg.rsplit(None, 1)[0]])
    return name, _SCALARS[ret], argtypes


@lru_cache(maxsize=1)
def library() -> ctypes.CDLL | None:
    if os.environ.get(ENV_NO_EXT, "") not in ("", "0"):
        return None
    spec = importlib.util.find_spec("binsharp.native._bitkern")
    if spec is None or not spec.origin:
        return None
    # Idle OpenMP threads sleep instead of spinning (read by the OpenMP runtime when it loads): the kernels
    # run one parallel region per layer, and spinning threads starve each other on a busy machine.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    lib = ctypes.CDLL(spec.origin)
    for proto in C_API:
        name, restype, argtypes = c_signature(proto)
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


def have_kernels() -> bool:
    """True when the compiled extension is importable."""
    return library() is not None


def require_library() -> ctypes.CDLL:
    lib = library()
    if lib is None:
        raise BinsharpError(
            "the compiled kernels (binsharp.native._bitkern) are not built; "
            "run `pip install -e .` or `python setup.py build_ext --inplace`"
        )
    return lib


def resolve_threads(threads: int | None = None) -> int:
    """Thread count of a call (argument, else ``$BINSHARP_NUM_THREADS``, else the number of CPUs)."""
    if threads is None:
        env = os.environ.get(ENV_THREADS, "").strip()
        threads = int(env) if env else (os.cpu_count() or 1)
    if threads < 1:
        raise BinsharpError(f"thread count must be >= 1, got {threads}")
    return int(threads)


def address(a: np.ndarray | None, ptype=None):
    if a is None:
        return None
    return a.ctypes.data if ptype is None else a.ctypes.data_as(ptype)


def channel_vector(v, n: int, what: str) -> np.ndarray | None:
    if v is None:
        return None
    a = np.ascontiguousarray(np.broadcast_to(np.asarray(v, dtype=np.float32), (n,)))
    if a.shape != (n,):
        raise BinsharpError(f"{what} must have {n} values, got shape {a.shape}")
    return a


def check(rc: int, what: str) -> None:
    if rc:
        raise BinsharpError(f"{what}: {_ERRORS.get(rc, f'error {rc}')}")


def rprelu(
    x: np.ndarray,
    gamma,
    slope,
    zeta,
    *,
    inplace: bool = False,
    keep_nan: bool = False,
    threads: int | None = None,
) -> np.ndarray:
    """``prelu(x - gamma[c], slope[c]) + zeta[c]`` on ``x`` (N, C, ...) float32 (gamma/zeta may be None);
    ``inplace`` overwrites ``x`` when it is a C-contiguous float32 array. The engine's form gives ``zeta``
    for a NaN; ``keep_nan`` runs the float32 steps of PyTorch's ``x - gamma``, ``prelu`` and ``+ zeta``
    instead (bitwise the same results, a NaN stays NaN: training)."""
    lib = require_library()
    x0 = x
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, c = x.shape[:2]
    g, s, z = (
        channel_vector(gamma, c, "gamma"),
        channel_vector(slope, c, "slope"),
        channel_vector(zeta, c, "zeta"),
    )
    out = x if (inplace and x is x0) else np.empty_like(x)
    hw = x.size // max(1, n * c)
    rc = lib.bs_rprelu(
        address(x),
        n,
        c,
        hw,
        address(g),
        address(s),
        address(z),
        int(keep_nan),
        address(out),
        resolve_threads(threads),
    )
    check(rc, "rprelu")
    return out


def sign(x: np.ndarray, *, threads: int | None = None) -> np.ndarray:
    """``-1`` where ``x < 0``, else ``+1`` (``sign(0) = +1``, NaN gives ``+1``), float32, shape of ``x``."""
    lib = require_library()
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty_like(x)
    if x.size:
        check(lib.bs_sign(address(x), x.size, address(out), resolve_threads(threads)), "sign")
    return out


def approx_sign_backward(x: np.ndarray, grad: np.ndarray, *, threads: int | None = None) -> np.ndarray:
    """Bi-Real ApproxSign's input gradient ``max(2 - 2|x|, 0) * grad`` in PyTorch's float32 steps (bitwise
    ``(|x| * -2 + 2).clamp(min=0) * grad``, NaN kept), float32, the shape of ``x``."""
    lib = require_library()
    x = np.ascontiguousarray(x, dtype=np.float32)
    grad = np.ascontiguousarray(grad, dtype=np.float32)
    if grad.shape != x.shape:
        raise BinsharpError(f"approx_sign_backward: grad {grad.shape} and x {x.shape} differ")
    out = np.empty_like(x)
    if x.size:
        threads = resolve_threads(threads)
        rc = lib.bs_approx_sign_backward(address(x), address(grad), x.size, address(out), threads)
        check(rc, "approx_sign_backward")
    return out


def _gradient_pair(
    x: np.ndarray, grad: np.ndarray, what: str
) -> tuple[np.ndarray, np.ndarray, int, int, int]:
    """``x`` and ``grad`` (N, C, ...) as C-contiguous float32 of one shape, with N, C and the plane size."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    grad = np.ascontiguousarray(grad, dtype=np.float32)
    if grad.shape != x.shape:
        raise BinsharpError(f"{what}: grad {grad.shape} and x {x.shape} differ")
    n, c = x.shape[:2]
    return x, grad, n, c, x.size // max(1, n * c)


def rprelu_backward(
    x: np.ndarray, grad: np.ndarray, gamma, slope, *, threads: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of :func:`rprelu` for training, one pass over ``x`` (the input, N, C, ...) and ``grad`` (the
    output's gradient, same shape), float32.

    Returns:
        ``grad_x`` (``grad`` where ``x - gamma[c] > 0``, else ``slope[c] * grad``), same shape as ``x``; and
        per-plane sums (N, C, 3) float64 of ``grad_x``, of ``grad * (x - gamma[c])`` where that is <= 0, and
        of ``grad``: summed over N they are the gradients of ``-gamma``, ``slope`` and ``zeta``.
    """
    lib = require_library()
    x, grad, n, c, hw = _gradient_pair(x, grad, "rprelu_backward")
    g, s = channel_vector(gamma, c, "gamma"), channel_vector(slope, c, "slope")
    gx = np.empty_like(x)
    sums = np.empty((n, c, 3), np.float64)
    rc = lib.bs_rprelu_backward(
        address(x),
        address(grad),
        n,
        c,
        hw,
        address(g),
        address(s),
        address(gx),
        address(sums),
        resolve_threads(threads),
    )
    check(rc, "rprelu_backward")
    return gx, sums


def affine_backward(
    x: np.ndarray, grad: np.ndarray, scale: np.ndarray, *, threads: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of ``y = x * scale + bias`` for training, ``scale`` and ``bias`` one value per plane, one
    pass over ``x`` (N, C, ...) and ``grad`` (the output's gradient, same shape), float32.

    Args:
        scale: (N, C) values (a per-channel scale repeated over the samples).

    Returns:
        ``grad_x = grad * scale[n, c]``, same shape as ``x``; and per-plane sums (N, C, 2) float64 of
        ``grad * x`` and of ``grad`` (the gradients of the per-plane scale and bias).
    """
    lib = require_library()
    x, grad, n, c, hw = _gradient_pair(x, grad, "affine_backward")
    k = np.ascontiguousarray(scale, dtype=np.float32)
    if k.shape != (n, c):
        raise BinsharpError(f"affine_backward: scale must have shape {(n, c)}, got {k.shape}")
    gx = np.empty_like(x)
    sums = np.empty((n, c, 2), np.float64)
    rc = lib.bs_affine_backward(
        address(x), address(grad), n * c, hw, address(k), address(gx), address(sums), resolve_threads(threads)
    )
    check(rc, "affine_backward")
    return gx, sums


def tanh_sign_backward(
    x: np.ndarray, grad: np.ndarray, beta, *, threads: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of the scalable-tanh sign (:func:`binsharp.nn.scalable_tanh_sign`) for training, one pass
    over ``x`` (the input, N, C, ...) and ``grad`` (the output's gradient, same shape), float32, ``beta`` one
    value per channel.

    Returns:
        ``grad_x = beta[c] * grad * (1 - tanh^2(beta[c] x))``, same shape as ``x``; and per-plane sums
        (N, C) float64 of ``grad * x * (1 - tanh^2(beta[c] x)) / 4`` (4 times their sum over the planes of a
        channel is the gradient of its beta).
    """
    lib = require_library()
    x, grad, n, c, hw = _gradient_pair(x, grad, "tanh_sign_backward")
    b = channel_vector(beta, c, "beta")
    gx = np.empty_like(x)
    sums = np.empty((n, c), np.float64)
    rc = lib.bs_tanh_sign_backward(
        address(x), address(grad), n, c, hw, address(b), address(gx), address(sums), resolve_threads(threads)
    )
    check(rc, "tanh_sign_backward")
    return gx, sums
