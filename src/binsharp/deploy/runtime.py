"""Runtime of exported ``.bsp`` networks: numpy for float layers, compiled bit-packed kernels for binary
ones.

No PyTorch is imported here. A graph is a list of ops executed in order on named float32 tensors
(N, C, H, W); the inputs are named ``ms``, ``lms``, ``pan`` (normalised to [0, 1]) and the first of the
model's ``outputs`` is the fused image. Every op is a JSON object
``{"op": KIND, "in": [names], "out": [names], "attrs": {...}, "params": {role: tensor name}}``:

===================== =====================================================================================
op                    semantics (float32)
===================== =====================================================================================
``conv2d``            float convolution, params ``weight`` (Co, Ci/g, k, k), optional ``bias``; attrs
                      ``stride``, ``padding``, ``groups`` (im2col + GEMM); a binary-weight kernel
                      ``alpha[o] * sign`` may be given as ``wsign`` (dense sign bits, attr ``wshape``) and
                      ``alpha`` instead of ``weight`` (expanded to float32 at load)
``bconv``             binary convolution + fused epilogue (:func:`binsharp.deploy.kernels.binary_conv2d`);
                      ``in`` = [x, residual?]; x is float (binarized here: bit = (x*in_scale + in_bias) < 0,
                      params ``in_scale``/``in_bias`` optional) or packed (attr ``packed_input``); params
                      ``wsign`` (dense sign bits, attr ``wshape``), ``alpha``, optional ``bias``,
                      ``aff_s``/``aff_b``, ``gamma``/``slope``/``zeta``, ``pack_scale``/``pack_bias``; attrs
                      ``cin``, ``cout``, ``k``, ``stride``, ``padding``, ``groups``, ``act_first``, ``clamp``,
                      ``outputs`` [float?, packed?, mean?], ``pack_groups``; optional params
                      ``gamma2``/``slope2``/``zeta2``: a second RPReLU after the others (a fused rprelu op),
                      then ``+ res2`` (input role) and ``* mul`` (attr): a fused add and mul_scalar;
                      ``out`` = [float name, packed name, mean name?], the mean over H x W of the float
                      result (N, Co, 1, 1) from sums the epilogue accumulates in double
``affine``            ``x * scale[c] + bias[c]`` (either optional)
``mul_scalar``        ``x * value``;  ``div_scalar``: ``x / value``;  ``add_scalar``: ``x + value``
``add`` / ``mul``     elementwise (broadcasting) ``a + b`` / ``a * b``
``prelu``             ``x if x >= 0 else slope[c] * x``;  ``rprelu``: ``prelu(x - gamma[c]) + zeta[c]``
``leaky_relu``        attr ``slope``;  ``hardtanh``: attrs ``lo``, ``hi``;  ``relu``
``cat`` / ``chunk``   along channels (attr ``chunks``)
``avgpool``           non-overlapping ``k`` x ``k`` mean
``upsample_bilinear`` x2, ``align_corners=False`` (PyTorch semantics)
``layernorm_c``       LayerNorm over channels per pixel, params ``weight``, ``bias``, attr ``eps``
``stats``             per-sample, per-channel mean and ``sqrt(var + eps)`` over H x W (two outputs), attr
                      ``eps``
``restd``             ``in`` = [xb, xf]: ``t = (sd_f / lam[c]) * (xb - mu_b) / sd_b + mu_f + eta[c]``
                      (``stats`` of both, attr ``eps``), then RPReLU when params ``gamma``/``slope``/``zeta``
                      are given, then ``t + xf`` when attr ``residual``; params ``lam``, ``eta`` (NBC)
``calibrate``         ``in`` = [y, zw?, zb?]: ``v = y * zw + zb`` (per sample and channel; ``v = y`` without),
                      ``w = sigmoid(linear(cat(mean|v|, mean v, sd v)))`` (params ``weight``, ``bias``; ``sd``
                      as ``stats``, attr ``eps``), ``out = w * v + y`` (BNNPan's LDPC + CDC); attr
                      ``haar_in``: ``in[0]`` holds y's Haar bands (``haar_idwt`` first), ``haar_out``: the
                      output is ``haar_dwt(out)``
``haar_dwt``          orthonormal Haar, (N, C, H, W) -> (N, 4C, H/2, W/2) interleaved [LL, LH, HL, HH]
``haar_idwt``         its inverse
``split_bands``       (N, 4C, h, w) -> four (N, C, h, w);  ``merge_bands``: the inverse
``pad``               attrs ``mode`` (reflect | replicate | constant), ``pad`` [left, right, top, bottom]
``pad_to_multiple``   bottom/right padding to a multiple of ``m`` (reflect, else replicate)
``crop_like``         ``x[..., :ref.H, :ref.W]`` with ``in`` = [x, ref]
``const``             the tensor ``params["value"]``
===================== =====================================================================================
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable

import numpy as np
from threadpoolctl import ThreadpoolController

from binsharp.deploy import bsp
from binsharp.deploy import kernels as K
from binsharp.errors import BinsharpError

F32 = np.float32
#: bytes of dead arrays an engine keeps for reuse at least (the oldest are released beyond it, or beyond
#: ``POOL_LARGEST`` times the largest array it was given, when that is more: fresh pages of large arrays cost
#: a page fault and a zeroing each)
POOL_BYTES = 160 << 20
POOL_LARGEST = 8
#: dead arrays of one shape an engine keeps at most
POOL_PER_SHAPE = 4

_blas: ThreadpoolController | None = None


def _one_blas_thread() -> contextlib.AbstractContextManager:
    """numpy's BLAS limited to one thread for the duration of the block.

    The engine's GEMMs (1 x 1 and strided float convolutions, linear layers) are small; a multi-threaded
    BLAS leaves its worker threads spinning for a while after each call, and they take the cores from the
    compiled kernels' threads that run next.
    """
    global _blas
    if _blas is None:
        _blas = ThreadpoolController()
    return _blas.limit(limits=1, user_api="blas")


# --------------------------------------------------------------------------------------------- float ops
def conv2d(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: int, padding: int, groups: int
) -> np.ndarray:
    """Float convolution (cross-correlation, zero padding) ``x`` (N, Ci, H, W), ``w`` (Co, Ci/g, k, k).

    1 x 1, stride 1, no padding, one group: one GEMM per sample. Other stride 1: per block of output rows,
    one GEMM per kernel tap on the flattened padded input (each tap is a constant shift of the flat index;
    the 2*padding wrap-around columns are computed and dropped), so no im2col copy is made. Other strides:
    im2col + GEMM per block of rows.
    """
    n, ci, h, wd = x.shape
    co, cig, k, _ = w.shape
    if ci != cig * groups:
        raise BinsharpError(f"conv2d: input has {ci} channels, weights expect {cig * groups}")
    ho, wo = (h + 2 * padding - k) // stride + 1, (wd + 2 * padding - k) // stride + 1
    out = np.empty((n, co, ho, wo), F32)
    cog = co // groups
    if k == 1 and stride == 1 and padding == 0 and groups == 1:
        np.matmul(w.reshape(co, ci), x.reshape(n, ci, h * wd), out=out.reshape(n, co, h * wd))
    elif stride == 1:
        hp, wp = h + 2 * padding, wd + 2 * padding
        # one spare row so that the last tap's flat slice stays inside the buffer
        xp = np.zeros((n, ci, hp + 1, wp), F32)
        xp[:, :, padding : padding + h, padding : padding + wd] = x
        flat = xp.reshape(n, ci, -1)
        wt = np.ascontiguousarray(w.transpose(2, 3, 0, 1))  # (k, k, Co, Ci/g)
        rows = max(1, min(ho, (1 << 18) // max(1, wp * max(co, cig))))
        for i in range(n):
            for g in range(groups):
                xs = flat[i, g * cig : (g + 1) * cig]
                for r0 in range(0, ho, rows):
                    r1 = min(ho, r0 + rows)
                    length = (r1 - r0) * wp
                    acc = np.zeros((cog, length), F32)
                    for ky in range(k):
                        for kx in range(k):
                            s0 = (r0 + ky) * wp + kx
                            acc += wt[ky, kx, g * cog : (g + 1) * cog] @ xs[:, s0 : s0 + length]
                    out[i, g * cog : (g + 1) * cog, r0:r1] = acc.reshape(cog, r1 - r0, wp)[:, :, :wo]
    else:
        xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding))) if padding else x
        rows = max(1, min(ho, (8 << 20) // max(1, cig * k * k * wo * 4)))
        for g in range(groups):
            wm = w[g * cog : (g + 1) * cog].reshape(cog, -1)
            xg = xp[:, g * cig : (g + 1) * cig]
            for i in range(n):
                for r0 in range(0, ho, rows):
                    r1 = min(ho, r0 + rows)
                    cols = np.empty((cig, k, k, r1 - r0, wo), F32)
                    for ky in range(k):
                        for kx in range(k):
                            y0 = r0 * stride + ky
                            ys = slice(y0, y0 + (r1 - r0 - 1) * stride + 1, stride)
                            cols[:, ky, kx] = xg[i, :, ys, kx : kx + (wo - 1) * stride + 1 : stride]
                    res = wm @ cols.reshape(cig * k * k, -1)
                    out[i, g * cog : (g + 1) * cog, r0:r1] = res.reshape(cog, r1 - r0, wo)
    if b is not None:
        out += b.reshape(1, -1, 1, 1)
    return out


def _ch(v: np.ndarray) -> np.ndarray:
    return v.reshape(1, -1, 1, 1)


def prelu(x: np.ndarray, slope: np.ndarray, *, inplace: bool = False) -> np.ndarray:
    """``x if x >= 0 else slope[c] * x`` (slope per channel of (N, C, ...) or a single value)."""
    s = slope.reshape((1, -1) + (1,) * (x.ndim - 2)) if slope.size > 1 else slope.reshape(())
    y = x if inplace else x.copy()
    np.multiply(y, s, out=y, where=y < 0)
    return y


def _upsample_axis2(x: np.ndarray, axis: int, out: np.ndarray) -> None:
    """x2 linear upsampling of ``x`` along ``axis`` (2 or 3) into ``out`` (PyTorch ``align_corners=False``).

    Output sample 2i (i >= 1) = x[i-1]*0.25 + x[i]*0.75, 2i+1 = x[i]*0.75 + x[i+1]*0.25 (the last one with
    x[i+1] clamped to x[n-1]), sample 0 = x[0]*1 + x[1]*0: the products and sums of the index/weight form.
    """
    n = x.shape[axis]

    def sl(v: np.ndarray, s: slice) -> np.ndarray:
        return v[:, :, s] if axis == 2 else v[:, :, :, s]

    q, t = F32(0.25), F32(0.75)
    ev, od = sl(out, slice(0, None, 2)), sl(out, slice(1, None, 2))
    tmp = np.multiply(x, t)  # x * 0.75
    # odd samples 0..n-2: x[i]*0.75 + x[i+1]*0.25
    np.multiply(sl(x, slice(1, None)), q, out=sl(od, slice(0, n - 1)))
    np.add(sl(od, slice(0, n - 1)), sl(tmp, slice(0, n - 1)), out=sl(od, slice(0, n - 1)))
    # last odd sample: x[n-1]*0.75 + x[n-1]*0.25
    last = sl(x, slice(n - 1, n))
    np.add(sl(tmp, slice(n - 1, n)), last * q, out=sl(od, slice(n - 1, n)))
    # even samples 1..n-1: x[i-1]*0.25 + x[i]*0.75
    np.multiply(sl(x, slice(0, n - 1)), q, out=sl(ev, slice(1, None)))
    np.add(sl(ev, slice(1, None)), sl(tmp, slice(1, None)), out=sl(ev, slice(1, None)))
    # sample 0: x[0]*1 + x[1]*0 (x[0] itself for finite values)
    first = sl(x, slice(0, 1))
    nxt = sl(x, slice(1, 2)) if n > 1 else first
    np.add(first * F32(1), nxt * F32(0), out=sl(ev, slice(0, 1)))


def upsample_bilinear2(x: np.ndarray) -> np.ndarray:
    """x2 bilinear upsampling with PyTorch's ``align_corners=False`` semantics: (N, C, H, W) ->
    (N, C, 2H, 2W) float32 (rows first, then columns)."""
    x = np.asarray(x, dtype=F32)
    n, c, h, w = x.shape
    rows = np.empty((n, c, 2 * h, w), F32)
    _upsample_axis2(x, 2, rows)
    out = np.empty((n, c, 2 * h, 2 * w), F32)
    _upsample_axis2(rows, 3, out)
    return out


def haar_dwt(x: np.ndarray) -> np.ndarray:
    """Orthonormal Haar DWT (N, C, H, W) -> (N, 4C, H/2, W/2), bands interleaved [LL, LH, HL, HH]."""
    n, c, h, w = x.shape
    if h % 2 or w % 2:
        raise BinsharpError(f"haar_dwt needs even height and width, got {h} x {w}")
    a, b = x[:, :, 0::2, 0::2], x[:, :, 0::2, 1::2]
    cc, d = x[:, :, 1::2, 0::2], x[:, :, 1::2, 1::2]
    s1, d1 = a + b, a - b
    out = np.empty((n, c, 4, h // 2, w // 2), F32)
    half = F32(0.5)
    # ((a +- b) +- c) +- d, the summation order of the PyTorch convolution (bit-identical bands)
    for i, (u, op_c, op_d) in enumerate(
        (
            (s1, np.add, np.add),
            (s1, np.subtract, np.subtract),
            (d1, np.add, np.subtract),
            (d1, np.subtract, np.add),
        )
    ):
        band = out[:, :, i]
        op_c(u, cc, out=band)
        op_d(band, d, out=band)
        band *= half
    return out.reshape(n, 4 * c, h // 2, w // 2)


def haar_idwt(y: np.ndarray) -> np.ndarray:
    n, c4, h, w = y.shape
    if c4 % 4:
        raise BinsharpError(f"haar_idwt needs a channel count divisible by 4, got {c4}")
    ll, lh, hl, hh = (y.reshape(n, c4 // 4, 4, h, w)[:, :, i] for i in range(4))
    half = F32(0.5)
    out = np.empty((n, c4 // 4, 2 * h, 2 * w), F32)
    out[:, :, 0::2, 0::2] = (ll + lh + hl + hh) * half
    out[:, :, 0::2, 1::2] = (ll + lh - hl - hh) * half
    out[:, :, 1::2, 0::2] = (ll - lh + hl - hh) * half
    out[:, :, 1::2, 1::2] = (ll - lh - hl + hh) * half
    return out


def layernorm_c(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=1, keepdims=True, dtype=np.float64)
    var = ((x - mean) ** 2).mean(axis=1, keepdims=True)
    y = (x - mean) / np.sqrt(var + eps)
    return (y * _ch(weight) + _ch(bias)).astype(F32)


def plane_stats(x: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample, per-channel mean and ``sqrt(population var + eps)`` over H x W of ``x`` (N, C, H, W),
    each (N, C, 1, 1) float32 (double accumulation, two passes)."""
    mu = x.mean(axis=(2, 3), keepdims=True, dtype=np.float64)
    var = ((x - mu) ** 2).mean(axis=(2, 3), keepdims=True)
    return mu.astype(F32), np.sqrt(var.astype(F32) + F32(eps)).astype(F32)


def rprelu(x: np.ndarray, gamma: np.ndarray, slope: np.ndarray, zeta: np.ndarray) -> np.ndarray:
    """``prelu(x - gamma[c], slope[c]) + zeta[c]`` on (N, C, ...) float32 (a new array)."""
    t = np.subtract(x, _ch(gamma), dtype=F32)
    prelu(t, slope, inplace=True)
    t += _ch(zeta)
    return t


def restd(
    xb: np.ndarray,
    xf: np.ndarray,
    lam: np.ndarray,
    eta: np.ndarray,
    eps: float,
    act: tuple | None = None,
    residual: bool = False,
) -> np.ndarray:
    """Re-standardised binary branch (op ``restd``): ``(sd_f / lam) * (xb - mu_b) / sd_b + mu_f + eta``,
    then RPReLU ``act=(gamma, slope, zeta)`` and ``+ xf`` (``residual``), float32 in that order; xb, xf
    (N, C, H, W) -> (N, C, H, W). The numpy form of :func:`binsharp.deploy.kernels.restd`."""
    mu_b, sd_b = plane_stats(xb, eps)
    mu_f, sd_f = plane_stats(xf, eps)
    t = np.multiply(sd_f / _ch(lam), np.subtract(xb, mu_b, dtype=F32), dtype=F32)
    t /= sd_b
    t += mu_f
    t += _ch(eta)
    if act is not None:
        t = rprelu(t, *act)
    if residual:
        t += xf
    return t


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """``x @ weight.T + bias`` (N, in) -> (N, out) float32."""
    y = x @ weight.T
    if bias is not None:
        y = y + bias
    return y.astype(F32, copy=False)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` in float32."""
    return (F32(1) / (F32(1) + np.exp(-x))).astype(F32, copy=False)


def calibration_weights(
    weight: np.ndarray, bias: np.ndarray, mean: np.ndarray, sd: np.ndarray, absmean: np.ndarray
) -> np.ndarray:
    """``sigmoid(linear(cat(mean|v|, mean v, sd v)))`` (N, C, 1, 1) from the (N, C, 1, 1) statistics."""
    n = mean.shape[0]
    stats = np.concatenate([absmean.reshape(n, -1), mean.reshape(n, -1), sd.reshape(n, -1)], axis=1)
    return sigmoid(linear(stats, weight, bias)).reshape(n, -1, 1, 1)


def calibrate(
    y: np.ndarray,
    zw: np.ndarray | None,
    zb: np.ndarray | None,
    weight: np.ndarray,
    bias: np.ndarray,
    eps: float,
) -> np.ndarray:
    """Channel calibration of the modulated features (op ``calibrate``): ``v = y * zw + zb`` (``v = y``
    without zw, zb; (N, C, 1, 1) each), ``out = calibration_weights(...) * v + y``; y (N, C, H, W) ->
    (N, C, H, W) float32."""
    v = y if zw is None else np.add(np.multiply(y, zw, dtype=F32), zb, dtype=F32)
    mu, sd = plane_stats(v, eps)
    am = np.abs(v).mean(axis=(2, 3), keepdims=True, dtype=np.float64).astype(F32)
    w = calibration_weights(weight, bias, mu, sd, am)
    return np.add(np.multiply(w, v, dtype=F32), y, dtype=F32)


# ------------------------------------------------------------------------------------------------ engine
class Engine:
    """Executes a :class:`binsharp.deploy.bsp.BspModel` (or a ``.bsp`` path) on numpy arrays.

    Args:
        model: the model or the path of its ``.bsp`` file.
        threads: kernel threads (default ``$BINSHARP_NUM_THREADS`` or the CPU count).
        path: kernel dispatch path (default ``$BINSHARP_KERNEL_PATH`` or the best one).
        profile: accumulate the wall time of every op by kind over the calls (:meth:`profile_table`); the
            kernels pack the float inputs of binary convolutions band by band inside ``bconv``, except
            in runs that inspect or replace the decisions (:attr:`on_binary_input`), where the packing is
            counted apart as ``bconv.pack``.

    Call: ``engine(ms=None, lms=None, pan=None)`` with float32 (N, C, h, w) / (N, C, H, W) / (N, 1, H, W)
    normalised arrays -> fused (N, C, H, W) float32. numpy's BLAS runs on one thread during a call (the
    kernels' threads do the parallel work).
    """

    def __init__(
        self,
        model: bsp.BspModel | str | os.PathLike,
        *,
        threads: int | None = None,
        path: str | None = None,
        profile: bool = False,
    ) -> None:
        self.model = model if isinstance(model, bsp.BspModel) else bsp.load(model)
        meta = self.model.model
        self.meta = meta
        try:
            self.bands = int(meta["bands"])
            self.inputs = tuple(meta.get("inputs", ("lms", "pan")))
        except (KeyError, TypeError, ValueError):
            raise BinsharpError("model file: metadata lacks a valid band count") from None
        self.threads = threads
        self.path = path
        #: op kind -> [seconds, op executions] accumulated over the calls (``None``: not profiling)
        self.profile: dict[str, list[float]] | None = {} if profile else None
        self._profile_calls = 0
        #: optional ``callback(attrs: dict, packed: Packed) -> Packed | None`` called with the packed input of
        #: every binary convolution, in graph order (inspection and tests: the binarization decisions); a
        #: returned :class:`~binsharp.deploy.kernels.Packed` of the same shape replaces those decisions
        #: (decision-forced runs, :mod:`binsharp.deploy.parity`)
        self.on_binary_input: Callable | None = None
        self._reuse0 = False  # set per op while running: the first input may be overwritten
        self._reuse1 = False  # the second one
        self._dying: set[int] = set()  # indices of the inputs of the running op that die there
        #: dead float32 arrays of earlier ops (and calls) by shape, reused as outputs (no new pages)
        self._pool: dict[tuple[int, ...], list[np.ndarray]] = {}
        self._pool_order: list[np.ndarray] = []  # pooled arrays, oldest first
        self._pool_bytes = 0
        self._pool_largest = 0
        self._lock = threading.Lock()
        self._validate()
        self._wbits: dict[int, np.ndarray] = {}
        for i, op in enumerate(self.model.graph):
            if op["op"] == "bconv":
                self._wbits[i] = self._expand_weights(i, op)
        #: float kernels of convolutions stored as sign bits + alpha, by op index
        self._wfloat = {
            i: _float_kernel(self.model.tensors, op)
            for i, op in enumerate(self.model.graph)
            if op["op"] == "conv2d" and "wsign" in op.get("params", {})
        }
        self._cat_plan = self._plan_cats()
        self._band_plan = self._plan_bands() if K.have_kernels() else set()
        self._cat_bufs: dict[int, np.ndarray | None] = {}
        self._op_index = -1

    def _plan_cats(self) -> dict[int, tuple[int, int, int]]:
        """Binary convolutions whose float output is only an input of one concatenation: producer op index ->
        (cat op index, channel offset, total channels); they write into the concatenation's buffer."""
        graph = self.model.graph
        uses: dict[str, int] = {}
        producer: dict[str, int] = {}
        for i, op in enumerate(graph):
            for name in op.get("in", []):
                uses[name] = uses.get(name, 0) + 1
            for name in op.get("out", []):
                if name:
                    producer[name] = i
        plan: dict[int, tuple[int, int, int]] = {}
        for j, op in enumerate(graph):
            ins = op.get("in", [])
            if op["op"] != "cat" or len(ins) < 2 or len(set(ins)) != len(ins):
                continue
            parts = []
            for name in ins:
                i = producer.get(name, -1)
                src = graph[i] if i >= 0 else {}
                at = src.get("attrs", {})
                if (
                    src.get("op") != "bconv"
                    or not at.get("outputs", [True, False])[0]
                    or src.get("out", [None])[0] != name
                    or uses.get(name) != 1
                    or name in self.model.outputs
                    or name in self.inputs
                ):
                    break
                parts.append((i, int(at["cout"])))
            else:
                total, off = sum(c for _, c in parts), 0
                for i, c in parts:
                    plan[i] = (j, off, total)
                    off += c
        return plan

    def _plan_bands(self) -> set[int]:
        """Haar transforms whose bands need no interleaved copy: a ``haar_dwt`` (or a ``calibrate`` with Haar
        output) read only by a ``split_bands`` writes each band into an array of its own; a ``merge_bands``
        read only by a ``haar_idwt`` (or a ``calibrate`` with Haar input) passes its four bands on as they
        are (:class:`_Bands`). Returns those ops' indices."""
        graph = self.model.graph
        readers: dict[str, list[int]] = {}
        for i, op in enumerate(graph):
            for name in op.get("in", []):
                readers.setdefault(name, []).append(i)
        plan = set()
        for i, op in enumerate(graph):
            pair = {"haar_dwt": "split_bands", "merge_bands": "haar_idwt"}.get(op["op"])
            if op["op"] == "calibrate" and op.get("attrs", {}).get("haar_out"):
                pair = "split_bands"
            out = op.get("out", [None])[0]
            r = readers.get(out, [])
            if len(r) == 1 and op["op"] == "merge_bands":  # a calibrate reading Haar bands takes them as well
                rd = graph[r[0]]
                if rd["op"] == "calibrate" and rd.get("attrs", {}).get("haar_in") and rd["in"][0] == out:
                    pair = "calibrate"
            if pair and out not in self.model.outputs and len(r) == 1 and graph[r[0]]["op"] == pair:
                plan.add(i)
        return plan

    def _expand_weights(self, i: int, op: dict) -> np.ndarray:
        at = op.get("attrs", {})
        try:
            shape = tuple(int(v) for v in at["wshape"])
            co, cig, k, k2 = shape
            cin, cout, groups = int(at["cin"]), int(at["cout"]), int(at.get("groups", 1))
        except (KeyError, TypeError, ValueError):
            raise BinsharpError(f"model file: binary convolution {i} has malformed attributes") from None
        if co != cout or k != k2 or k != int(at["k"]) or groups < 1 or cig * groups != cin:
            raise BinsharpError(
                f"model file: binary convolution {i}: weight shape {shape} does not fit the layer"
            )
        alpha = self.model.tensors[op["params"]["alpha"]] if "alpha" in op["params"] else None
        if alpha is not None and alpha.shape != (cout,):
            raise BinsharpError(f"model file: binary convolution {i}: alpha has shape {alpha.shape}")
        return K.weights_from_dense(self.model.tensors[op["params"]["wsign"]], shape, groups)

    def _validate(self) -> None:
        known = set(self.inputs)
        for i, op in enumerate(self.model.graph):
            if not isinstance(op, dict) or op.get("op") not in _OPS:
                kind = op.get("op") if isinstance(op, dict) else op
                raise BinsharpError(f"model file: op {i} has unknown kind {kind!r}")
            ins, outs = op.get("in", []), op.get("out", [])
            if not isinstance(ins, list) or not isinstance(outs, list):
                raise BinsharpError(f"model file: op {i} ({op['op']}) has malformed inputs/outputs")
            for name in ins:
                if name not in known:
                    raise BinsharpError(f"model file: op {i} ({op['op']}) reads undefined tensor {name!r}")
            for role, tname in op.get("params", {}).items():
                if tname not in self.model.tensors:
                    raise BinsharpError(f"model file: op {i} ({op['op']}) lacks tensor {tname!r} ({role})")
            known.update(o for o in outs if o)
        for o in self.model.outputs:
            if o not in known:
                raise BinsharpError(f"model file: output {o!r} is never computed")

    def _check_inputs(self, given: dict[str, np.ndarray | None]) -> dict[str, np.ndarray]:
        env: dict[str, np.ndarray] = {}
        for name in self.inputs:
            a = given.get(name)
            if a is None:
                raise BinsharpError(f"engine model needs input {name!r}")
            a = np.ascontiguousarray(a, dtype=F32)
            if a.ndim != 4:
                raise BinsharpError(f"input {name!r} must be (N, C, H, W), got shape {a.shape}")
            want = 1 if name == "pan" else self.bands
            if a.shape[1] != want:
                raise BinsharpError(
                    f"input {name!r} has {a.shape[1]} channels but the engine model expects {want}"
                    + ("" if name == "pan" else f" bands ({self.meta.get('name', 'model')})")
                )
            env[name] = a
        if "lms" in env and "pan" in env and env["lms"].shape[2:] != env["pan"].shape[2:]:
            raise BinsharpError(f"lms {env['lms'].shape[2:]} and pan {env['pan'].shape[2:]} differ in size")
        return env

    def __call__(self, *, ms=None, lms=None, pan=None) -> np.ndarray:
        with self._lock, _one_blas_thread():
            return self._run({"ms": ms, "lms": lms, "pan": pan})

    def _run(self, given: dict) -> np.ndarray:
        env: dict = self._check_inputs(given)
        graph = self.model.graph
        last: dict[str, int] = {}
        for i, op in enumerate(graph):
            for name in op.get("in", []):
                last[name] = i
        for o in self.model.outputs:
            last[o] = len(graph)
        T = self.model.tensors
        fresh: set[str] = set()  # names of arrays this call allocated (may be overwritten when they die)
        orphans: list[np.ndarray] = []  # dead arrays of this call whose views are still in use
        self._cat_bufs = {}
        for i, op in enumerate(graph):
            self._op_index = i
            kind = op["op"]
            fn = _OPS[kind]
            p = {role: T[name] for role, name in op.get("params", {}).items()}
            if i in self._wbits:
                p["wbits"] = self._wbits[i]
            if i in self._wfloat:
                p["weight"] = self._wfloat[i]
            ins = op.get("in", [])
            args = [env[n] for n in ins]
            self._dying = {  # inputs this op may overwrite: fresh, read for the last time, not shared
                j
                for j, name in enumerate(ins)
                if name in fresh
                and last.get(name) == i
                and ins.count(name) == 1
                and _sole_owner(args[j], name, env)
            }
            self._reuse0 = kind in _INPLACE and 0 in self._dying
            self._reuse1 = kind in _INPLACE and 1 in self._dying
            if self.profile is None:
                res = fn(self, args, p, op.get("attrs", {}))
            else:
                t0 = time.perf_counter()
                res = fn(self, args, p, op.get("attrs", {}))
                self._record(kind, time.perf_counter() - t0)
            outs = op.get("out", [])
            if not isinstance(res, tuple):
                res = (res,)
            for name, val in zip(outs, res, strict=False):
                if name:
                    env[name] = val
                    if kind != "const" and isinstance(val, np.ndarray) and val.base is None:
                        fresh.add(name)
                    else:
                        fresh.discard(name)
            dead_view = False
            for name in op.get("in", []):
                if last.get(name) == i and name not in self.inputs:
                    val = env.pop(name, None)
                    if name in fresh and val is not None:
                        if _sole_owner(val, None, env):
                            self._give(val)
                        else:  # views of it (chunks, reshapes) live on: pooled once they die
                            orphans.append(val)
                    elif isinstance(val, np.ndarray) and val.base is not None:
                        dead_view = True
                    fresh.discard(name)
            if dead_view and orphans:
                free = [_sole_owner(o, None, env) for o in orphans]
                for o, f in zip(orphans, free, strict=True):
                    if f:
                        self._give(o)
                orphans = [o for o, f in zip(orphans, free, strict=True) if not f]
        if self.profile is not None:
            self._profile_calls += 1
        return env[self.model.outputs[0]]

    def _record(self, kind: str, seconds: float) -> None:
        assert self.profile is not None
        slot = self.profile.setdefault(kind, [0.0, 0])
        slot[0] += seconds
        slot[1] += 1

    def profile_table(self) -> list[dict]:
        """Accumulated profile (``profile=True``), slowest op kind first: dicts with ``op``, ``ms`` (per
        call), ``share`` (of the ops' total time), ``count`` (executions per call)."""
        if self.profile is None:
            raise BinsharpError("the engine was created without profile=True")
        calls = max(1, self._profile_calls)
        prof = dict(self.profile)
        if "bconv.pack" in prof and "bconv" in prof:  # packing ran inside the bconv ops' time
            pk = prof["bconv.pack"][0]
            prof["bconv"] = [prof["bconv"][0] - pk, prof["bconv"][1]]
        total = sum(t for t, _ in prof.values()) or 1.0
        rows = [
            {"op": k, "ms": 1e3 * t / calls, "share": t / total, "count": n / calls}
            for k, (t, n) in prof.items()
        ]
        return sorted(rows, key=lambda r: -r["ms"])

    def format_profile(self) -> str:
        """:meth:`profile_table` as a text table."""
        rows = self.profile_table()
        lines = [f"{'op':<18s} {'ms/call':>9s} {'share':>7s} {'count':>6s}"]
        lines += [f"{r['op']:<18s} {r['ms']:9.2f} {100 * r['share']:6.1f}% {r['count']:6.0f}" for r in rows]
        lines.append(f"{'total':<18s} {sum(r['ms'] for r in rows):9.2f}")
        return "\n".join(lines)

    def _give(self, a: np.ndarray) -> None:
        """Keep a dead float32 array for reuse by a later op of the same shape (at most ``POOL_PER_SHAPE``
        per shape; the oldest ones are dropped beyond ``POOL_BYTES``, or ``POOL_LARGEST`` largest arrays, in
        all)."""
        lst = self._pool.setdefault(a.shape, [])
        if len(lst) < POOL_PER_SHAPE and not any(b is a for b in lst):
            lst.append(a)
            self._pool_order.append(a)
            self._pool_bytes += a.nbytes
            self._pool_largest = max(self._pool_largest, a.nbytes)
            limit = max(POOL_BYTES, POOL_LARGEST * self._pool_largest)
            while self._pool_bytes > limit and self._pool_order:
                old = self._pool_order.pop(0)
                self._pool_bytes -= old.nbytes
                olst = self._pool.get(old.shape, [])
                for k, b in enumerate(olst):
                    if b is old:
                        del olst[k]
                        break

    def _take(self, shape: tuple[int, ...]) -> np.ndarray:
        """A float32 C-contiguous array of ``shape`` (contents undefined): a dead one, else a new one."""
        lst = self._pool.get(tuple(shape))
        if not lst:
            return np.empty(shape, F32)
        a = lst.pop()
        for k, b in enumerate(self._pool_order):
            if b is a:
                del self._pool_order[k]
                break
        self._pool_bytes -= a.nbytes
        return a


def _float_kernel(tensors: dict[str, np.ndarray], op: dict) -> np.ndarray:
    """``alpha[o] * sign`` (Co, Ci/g, k, k) float32 of a convolution stored as sign bits + alpha."""
    try:
        shape = tuple(int(v) for v in op["attrs"]["wshape"])
        bits, alpha = tensors[op["params"]["wsign"]], tensors[op["params"]["alpha"]]
        if len(shape) != 4 or alpha.shape != (shape[0],) or bits.size * 8 < int(np.prod(shape)):
            raise ValueError
    except (KeyError, TypeError, ValueError):
        raise BinsharpError("model file: a sign-bit convolution has malformed weights") from None
    neg = np.unpackbits(bits.reshape(-1), bitorder="little")[: int(np.prod(shape))].reshape(shape)
    return np.where(neg, -alpha.reshape(-1, 1, 1, 1), alpha.reshape(-1, 1, 1, 1)).astype(F32)


class _Bands:
    """The four Haar bands [LL, LH, HL, HH] of a planned transform (see ``Engine._plan_bands``), each its own
    (N, C, h, w) float32 array."""

    def __init__(self, arrays) -> None:
        self.arrays = tuple(arrays)


def _sole_owner(x: object, name: str | None, env: dict) -> bool:
    """True when ``x`` is a writable float32 array owning its C-contiguous memory and no tensor of ``env``
    other than ``name`` is ``x``, a view of it or a band set holding it."""
    if not (
        isinstance(x, np.ndarray)
        and x.dtype == F32
        and x.base is None
        and x.flags.c_contiguous
        and x.flags.writeable
    ):
        return False
    return not any(
        k != name
        and (
            v is x
            or (isinstance(v, np.ndarray) and v.base is x)
            or (isinstance(v, _Bands) and any(b is x for b in v.arrays))
        )
        for k, v in env.items()
    )


# ------------------------------------------------------------------------------------------ op table
def _op_conv2d(e: Engine, a, p, at):
    stride, groups = int(at.get("stride", 1)), int(at.get("groups", 1))
    pointwise = p["weight"].shape[2] == 1 and not int(at.get("padding", 0))  # one GEMM (numpy) is faster
    if stride == 1 and groups == 1 and not pointwise and K.have_kernels() and a[0].ndim == 4:
        pad, (co, _, k, _) = int(at.get("padding", 0)), p["weight"].shape
        n, _, h, w = a[0].shape
        shape = (n, co, h + 2 * pad - k + 1, w + 2 * pad - k + 1)
        return K.float_conv2d(
            a[0],
            p["weight"],
            p.get("bias"),
            padding=pad,
            out=e._take(shape) if min(shape) > 0 else None,
            path=e.path,
            threads=e.threads,
        )
    return conv2d(
        a[0],
        p["weight"],
        p.get("bias"),
        int(at.get("stride", 1)),
        int(at.get("padding", 0)),
        int(at.get("groups", 1)),
    )


def _op_bconv(e: Engine, a, p, at):
    roles = at.get("in_roles") or ["x", "res"][: len(a)]
    vals = dict(zip(roles, a, strict=True))
    x = vals["x"]
    cin, cout, k = int(at["cin"]), int(at["cout"]), int(at["k"])
    groups, pad, stride = int(at.get("groups", 1)), int(at.get("padding", 0)), int(at.get("stride", 1))
    # a per-sample transform (N or 1, C, 1, 1) (S2BNet's dynamic thresholds) or a per-channel one
    scale = vals["scale_t"] if "scale_t" in vals else p.get("in_scale")
    bias = vals["bias_t"] if "bias_t" in vals else p.get("in_bias")
    packed = x  # packed, or float: binarized by the kernels band by band
    if at.get("packed_input"):
        if not isinstance(x, K.Packed):
            raise BinsharpError("bconv: expected packed input")
    elif isinstance(x, K.Packed) or x.shape[1] != cin:
        raise BinsharpError(f"bconv: expected float input with {cin} channels")
    elif e.on_binary_input is not None:  # decisions inspected or replaced: packed apart
        t0 = time.perf_counter()
        pg, halo = K.packing_groups(cin, cout, k, groups), max(1, pad)
        packed = K.pack_activations(
            x, scale=scale, bias=bias, groups=pg, halo=halo, path=e.path, threads=e.threads
        )
        if e.profile is not None:
            e._record("bconv.pack", time.perf_counter() - t0)
    if e.on_binary_input is not None:
        forced = e.on_binary_input(at, packed)
        if forced is not None:
            if not isinstance(forced, K.Packed) or forced.shape != packed.shape:
                raise BinsharpError("bconv: forced decisions do not match the packed input")
            packed = forced
    ho = K.conv_output_size(packed.shape[2], k, stride, pad)
    wo = K.conv_output_size(packed.shape[3], k, stride, pad)
    act = (p["gamma"], p["slope"], p["zeta"]) if "gamma" in p else None
    act2 = (p["gamma2"], p["slope2"], p["zeta2"]) if "gamma2" in p else None
    affine = (p["aff_s"], p["aff_b"]) if "aff_s" in p else None
    clamp = at.get("clamp")
    outs = at.get("outputs", [True, False])
    want_mean = len(outs) > 2 and bool(outs[2])
    pack_out = None
    if outs[1]:
        pack_out = {
            "halo": 1,
            "groups": int(at.get("pack_groups", 1)),
            "scale": p.get("pack_scale"),
            "bias": p.get("pack_bias"),
        }
    r = K.binary_conv2d(
        packed,
        p["wbits"],
        out_channels=cout,
        kernel_size=k,
        stride=stride,
        padding=pad,
        groups=groups,
        in_scale=None if isinstance(packed, K.Packed) else scale,
        in_bias=None if isinstance(packed, K.Packed) else bias,
        alpha=p.get("alpha"),
        bias=p.get("bias"),
        affine=affine,
        act=act,
        act_first=bool(at.get("act_first", 1)),
        residual=vals.get("res"),
        clamp=tuple(clamp) if clamp else None,
        act2=act2,
        residual2=vals.get("res2"),
        mul=at.get("mul"),
        float_out=bool(outs[0]),
        sums=want_mean,
        out_buffer=_bconv_out(e, packed.shape[0], cout, ho, wo, vals.get("res"), roles) if outs[0] else None,
        pack_out=pack_out,
        path=e.path,
        threads=e.threads,
    )
    if not want_mean:
        return r.get("out"), r.get("packed")
    mean = (r["sums"] / np.float64(ho * wo)).astype(F32).reshape(packed.shape[0], cout, 1, 1)
    return r.get("out"), r.get("packed"), mean


def _op_affine(e, a, p, at):
    x = a[0]
    if "scale" in p:
        x = x * _ch(p["scale"])
    if "bias" in p:
        x = x + _ch(p["bias"])
    return x.astype(F32, copy=False)


def _op_rprelu(e, a, p, at):
    if a[0].ndim == 4 and K.have_kernels():
        return K.rprelu(a[0], p["gamma"], p["slope"], p["zeta"], inplace=e._reuse0, threads=e.threads)
    return rprelu(a[0], p["gamma"], p["slope"], p["zeta"])


def _op_restd(e, a, p, at):
    xb, xf = a
    act = (p["gamma"], p["slope"], p["zeta"]) if "slope" in p else None
    eps, residual = float(at.get("eps", 1e-5)), bool(at.get("residual", False))
    if K.have_kernels() and xb.ndim == 4 and xb.dtype == F32 and xf.shape == xb.shape:
        out = xb if e._reuse0 else e._take(xb.shape)
        return K.restd(
            xb, xf, p["lam"], p["eta"], eps, act=act, residual=residual, out=out, threads=e.threads
        )
    return restd(xb, xf, p["lam"], p["eta"], eps, act, residual)


def _op_calibrate(e, a, p, at):
    x = a[0]
    zw, zb = (a[1], a[2]) if len(a) == 3 else (None, None)
    eps = float(at.get("eps", 1e-5))
    haar_in, haar_out = bool(at.get("haar_in")), bool(at.get("haar_out"))
    bands = x.arrays if isinstance(x, _Bands) else x  # with haar_in: four bands or one interleaved array
    bshape = bands[0].shape if isinstance(x, _Bands) else (x.shape[0], x.shape[1] // 4, *x.shape[2:])
    if haar_in and K.have_kernels() and bshape[3] % 4 == 0:  # a pass for the statistics, one for the output
        mu, sd, am = K.haar_affine_stats(bands, zw, zb, eps, threads=e.threads)
        w = calibration_weights(p["weight"], p["bias"], mu, sd, am)
        n, c, h, wd = bshape
        if not haar_out:
            out = e._take((n, c, 2 * h, 2 * wd))
        elif e._op_index in e._band_plan:
            out = [e._take(bshape) for _ in range(4)]
        else:
            out = e._take((n, 4 * c, h, wd))
        res = K.haar_calibrate(bands, zw, zb, w, dwt=haar_out, out=out, threads=e.threads)
        return _Bands(res) if isinstance(res, list) else res
    y = _op_haar_idwt(e, [x], p, at) if haar_in else x
    if K.have_kernels() and y.ndim == 4 and y.dtype == F32:
        mu, sd, am = K.affine_stats(y, zw, zb, eps, threads=e.threads)
        w = calibration_weights(p["weight"], p["bias"], mu, sd, am)
        out = y if haar_in or e._reuse0 else e._take(y.shape)
        y = K.calibrate(y, zw, zb, w, out=out, threads=e.threads)
    else:
        y = calibrate(y, zw, zb, p["weight"], p["bias"], eps)
    return _op_haar_dwt(e, [y], p, at) if haar_out else y


def _op_prelu(e, a, p, at):
    """``prelu`` (slope per channel or one) and ``leaky_relu`` (attr ``slope``): compiled on 4-D maps, into
    the input when it dies here."""
    x = a[0]
    sl = p["slope"] if "slope" in p else np.array([at["slope"]], F32)
    if x.ndim == 4 and K.have_kernels():
        s = np.broadcast_to(sl.reshape(-1), (x.shape[1],))
        return K.rprelu(x, None, s, None, inplace=e._reuse0, threads=e.threads)
    return prelu(x, sl)


def _op_layernorm_c(e, a, p, at):
    x, eps = a[0], float(at.get("eps", 1e-5))
    if x.ndim == 4 and x.dtype == F32 and K.have_kernels():
        return K.layernorm_c(x, p["weight"], p["bias"], eps, out=e._take(x.shape), threads=e.threads)
    return layernorm_c(x, p["weight"], p["bias"], eps)


def _op_haar_dwt(e, a, p, at):
    x = a[0]
    if x.ndim == 4 and x.dtype == F32 and K.have_kernels() and x.shape[2] % 2 == 0 and x.shape[3] % 2 == 0:
        n, c, h, w = x.shape
        if e._op_index in e._band_plan:
            outs = [e._take((n, c, h // 2, w // 2)) for _ in range(4)]
            return _Bands(K.haar_dwt_bands(x, outs=outs, threads=e.threads))
        return K.haar_dwt(x, out=e._take((n, 4 * c, h // 2, w // 2)), threads=e.threads)
    return haar_dwt(x)


def _op_haar_idwt(e, a, p, at):
    y = a[0]
    if isinstance(y, _Bands):
        n, c, h, w = y.arrays[0].shape
        return K.haar_idwt_bands(list(y.arrays), out=e._take((n, c, 2 * h, 2 * w)), threads=e.threads)
    if y.ndim == 4 and y.dtype == F32 and K.have_kernels() and y.shape[1] % 4 == 0:
        n, c4, h, w = y.shape
        return K.haar_idwt(y, out=e._take((n, c4 // 4, 2 * h, 2 * w)), threads=e.threads)
    return haar_idwt(y)


def _bconv_out(e: Engine, n: int, cout: int, ho: int, wo: int, res, roles: list) -> np.ndarray:
    """Output buffer of a binary convolution: its channel slice of the following concatenation's buffer
    when planned (batch 1: the slice is contiguous), else the residual when it dies here (each element is
    read before it is written, and one memory stream is saved), else a reused or new array."""
    plan = e._cat_plan.get(e._op_index)
    if (
        plan is None
        and res is not None
        and roles.index("res") in e._dying
        and res.shape == (n, cout, ho, wo)
        and res.dtype == F32
    ):
        return res
    if plan is not None and n == 1:
        j, off, total = plan
        buf = e._cat_bufs.get(j)
        if buf is None and j not in e._cat_bufs:
            buf = e._cat_bufs[j] = e._take((1, total, ho, wo))
        if buf is not None and buf.shape == (1, total, ho, wo):
            view = buf[:, off : off + cout]
            if view.flags.c_contiguous:
                return view
    return e._take((n, cout, ho, wo))


def _op_cat(e, a, p, at):
    buf = e._cat_bufs.pop(e._op_index, None)
    if buf is not None:
        off = 0
        for v in a:  # every part already in place?
            if not (
                isinstance(v, np.ndarray)
                and v.base is buf
                and v.shape[1:] == (v.shape[1], *buf.shape[2:])
                and v.__array_interface__["data"][0]
                == buf.__array_interface__["data"][0] + off * buf.strides[1]
            ):
                break
            off += v.shape[1]
        else:
            if off == buf.shape[1]:
                return buf
    if all(isinstance(v, np.ndarray) and v.ndim == 4 and v.dtype == F32 for v in a):
        n, _, h, w = a[0].shape
        if all(v.shape[0] == n and v.shape[2:] == (h, w) for v in a):
            out = e._take((n, sum(v.shape[1] for v in a), h, w))
            return np.concatenate(a, axis=1, out=out)
    return np.concatenate(a, axis=1)


def _op_chunk(e, a, p, at):
    return tuple(np.split(a[0], int(at["chunks"]), axis=1))


def _op_upsample_bilinear(e, a, p, at):
    x = a[0]
    if x.ndim == 4 and x.dtype == F32 and x.size and K.have_kernels():
        n, c, h, w = x.shape
        return K.upsample2(x, out=e._take((n, c, 2 * h, 2 * w)), threads=e.threads)
    return upsample_bilinear2(x)


def _op_avgpool(e, a, p, at):
    k = int(at.get("k", 2))
    n, c, h, w = a[0].shape
    if k == 2 and h >= 2 and w >= 2 and a[0].dtype == F32 and K.have_kernels():
        return K.avgpool2(a[0], out=e._take((n, c, h // 2, w // 2)), threads=e.threads)
    x = a[0][:, :, : h // k * k, : w // k * k].reshape(n, c, h // k, k, w // k, k)
    return (x.sum(axis=(3, 5), dtype=F32) / F32(k * k)).astype(F32)


def _op_split_bands(e, a, p, at):
    if isinstance(a[0], _Bands):
        return a[0].arrays
    n, c4, h, w = a[0].shape
    v = a[0].reshape(n, c4 // 4, 4, h, w)
    return tuple(np.ascontiguousarray(v[:, :, i]) for i in range(4))


def _op_merge_bands(e, a, p, at):
    if e._op_index in e._band_plan and all(v.shape == a[0].shape and v.dtype == F32 for v in a):
        return _Bands(a)
    s = np.stack(a, axis=2)
    n, c, _, h, w = s.shape
    return s.reshape(n, 4 * c, h, w)


def _op_pad(e, a, p, at):
    left, right, top, bottom = (int(v) for v in at["pad"])
    mode = {"reflect": "reflect", "replicate": "edge", "constant": "constant"}[at.get("mode", "constant")]
    return np.pad(a[0], ((0, 0), (0, 0), (top, bottom), (left, right)), mode=mode)


def _op_pad_to_multiple(e, a, p, at):
    """Pad bottom/right to a multiple of ``m`` (reflect when possible, else replicate), as the U body."""
    m = int(at["m"])
    h, w = a[0].shape[2:]
    ph, pw = (-h) % m, (-w) % m
    if not (ph or pw):
        return a[0]
    mode = "reflect" if ph < h and pw < w else "edge"
    if at.get("mode") == "replicate":
        mode = "edge"
    return np.pad(a[0], ((0, 0), (0, 0), (0, ph), (0, pw)), mode=mode)


def _op_stats(e, a, p, at):
    """Per-sample, per-channel mean and sqrt(population var + eps) over H x W, each (N, C, 1, 1)."""
    x = a[0]
    if x.ndim == 4 and K.have_kernels():
        return K.plane_stats(x, float(at.get("eps", 1e-5)), threads=e.threads)
    return plane_stats(x, float(at.get("eps", 1e-5)))


def _op_mean_hw(e, a, p, at):
    """Mean over H x W (double accumulation) -> (N, C, 1, 1)."""
    x = a[0]
    if x.ndim == 4 and K.have_kernels():
        return K.plane_mean(x, threads=e.threads)
    return x.mean(axis=(2, 3), keepdims=True, dtype=np.float64).astype(F32)


def _op_pixel_unshuffle(e, a, p, at):
    r = int(at["r"])
    n, c, h, w = a[0].shape
    x = a[0].reshape(n, c, h // r, r, w // r, r).transpose(0, 1, 3, 5, 2, 4)
    return np.ascontiguousarray(x.reshape(n, c * r * r, h // r, w // r))


def _result(e: Engine, shape: tuple[int, ...], *dtypes) -> np.ndarray | None:
    """A reused buffer for a 4-D float32 result computed from float32 operands, else None (a new array)."""
    return e._take(shape) if len(shape) == 4 and all(d == F32 for d in dtypes) else None


def _binary(ufunc, e: Engine, a) -> np.ndarray:
    """``ufunc(a0, a1)`` in float32, into ``a0`` or ``a1`` when the engine marked it as reusable and the
    result has its shape, else into a reused buffer (same values as a new array)."""
    x, y = a[0], a[1]
    shape = np.broadcast_shapes(np.shape(x), np.shape(y))
    if e._reuse0 and shape == x.shape:
        return ufunc(x, y, out=x, dtype=F32)
    if e._reuse1 and shape == np.shape(y):
        return ufunc(x, y, out=y, dtype=F32)
    return ufunc(x, y, out=_result(e, shape, np.result_type(x), np.result_type(y)), dtype=F32)


def _scalar(ufunc, e: Engine, x: np.ndarray, value) -> np.ndarray:
    """``ufunc(x, float32(value))``, into ``x`` when the engine marked it as reusable, else into a reused
    buffer."""
    if e._reuse0:
        return ufunc(x, F32(value), out=x)
    return ufunc(x, F32(value), out=_result(e, x.shape, x.dtype)).astype(F32, copy=False)


_OPS: dict[str, Callable] = {
    "linear": lambda e, a, p, at: linear(a[0], p["weight"], p.get("bias")),
    "sigmoid": lambda e, a, p, at: sigmoid(a[0]),
    "tanh": lambda e, a, p, at: np.tanh(a[0]),
    "abs": lambda e, a, p, at: np.abs(a[0], out=_result(e, a[0].shape, a[0].dtype)),
    "sub": lambda e, a, p, at: _binary(np.subtract, e, a),
    "div": lambda e, a, p, at: _binary(np.divide, e, a),
    "mean_hw": _op_mean_hw,
    "stats": _op_stats,
    "flatten": lambda e, a, p, at: a[0].reshape(a[0].shape[0], -1),
    "unflatten": lambda e, a, p, at: a[0].reshape(a[0].shape[0], -1, 1, 1),
    "pixel_unshuffle": _op_pixel_unshuffle,
    "broadcast_rows": lambda e, a, p, at: np.ascontiguousarray(
        np.broadcast_to(a[0], (a[1].shape[0], a[0].shape[1]))
    ),
    "fill_rows": lambda e, a, p, at: np.full((a[0].shape[0], 1), F32(at["value"]), F32),
    "conv2d": _op_conv2d,
    "bconv": _op_bconv,
    "affine": _op_affine,
    "mul_scalar": lambda e, a, p, at: _scalar(np.multiply, e, a[0], at["value"]),
    "div_scalar": lambda e, a, p, at: _scalar(np.divide, e, a[0], at["value"]),
    "add_scalar": lambda e, a, p, at: _scalar(np.add, e, a[0], at["value"]),
    "add": lambda e, a, p, at: _binary(np.add, e, a),
    "mul": lambda e, a, p, at: _binary(np.multiply, e, a),
    "prelu": _op_prelu,
    "rprelu": _op_rprelu,
    "leaky_relu": _op_prelu,
    "hardtanh": lambda e, a, p, at: np.clip(a[0], F32(at["lo"]), F32(at["hi"])),
    "relu": lambda e, a, p, at: np.maximum(a[0], F32(0)),
    "cat": _op_cat,
    "chunk": _op_chunk,
    "avgpool": _op_avgpool,
    "upsample_bilinear": _op_upsample_bilinear,
    "layernorm_c": _op_layernorm_c,
    "haar_dwt": _op_haar_dwt,
    "haar_idwt": _op_haar_idwt,
    "split_bands": _op_split_bands,
    "merge_bands": _op_merge_bands,
    "pad": _op_pad,
    "pad_to_multiple": _op_pad_to_multiple,
    "crop_like": lambda e, a, p, at: np.ascontiguousarray(a[0][..., : a[1].shape[2], : a[1].shape[3]]),
    "const": lambda e, a, p, at: p["value"],
    "restd": _op_restd,
    "calibrate": _op_calibrate,
}

OP_KINDS = tuple(_OPS)
#: ops that may write their result into their first input when that input dies there
_INPLACE = frozenset(
    {"rprelu", "add", "sub", "mul", "div", "mul_scalar", "div_scalar", "add_scalar", "restd", "calibrate"}
    | {"prelu", "leaky_relu"}
)


def load_engine(path: str | os.PathLike, **kw) -> Engine:
    """Load the ``.bsp`` file at ``path`` as an :class:`Engine`."""
    return Engine(path, **kw)
