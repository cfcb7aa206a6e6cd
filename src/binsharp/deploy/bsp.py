"""The ``.bsp`` model file: a versioned container for an exported binsharp network (graph + tensors).

Layout (all integers little-endian)::

    offset  size  field
    0       8     magic  b"BSPK\\x00\\r\\n\\x1a"
    8       4     format version (uint32), currently 2 (version 1 files are read too)
    12      4     reserved, 0
    16      8     header length L in bytes (uint64)
    24      32    SHA-256 of the L header bytes
    56      L     header: a UTF-8 JSON object (see below), zlib-compressed (RFC 1950)
    ...           zero padding up to the next multiple of 64: start of the data section D
    D       ...   tensor payloads, each at a 64-byte aligned offset relative to D; the file ends after the
                  last one

Header keys: ``format`` (``"binsharp-bsp"``), ``version`` (int, equal to the binary field), ``storage``
(version 2: ``"fp32"``, ``"fp16"`` or ``"int8"``, how float tensors are stored, see below), ``model`` (dict:
``name``, ``bands``, ``ratio``, ``bits``, ``sensor``, ``config``, ``inputs``; informative except ``bands``,
``inputs``, ``bits``, ``ratio``), ``graph`` (list of ops, see :mod:`binsharp.deploy.runtime`), ``outputs``
(list of tensor names; the first is the fused image) and ``tensors``: ``{name: {"dtype": "float32" |
"float16" | "int8" | "uint64" | "int32" | "uint8", "shape": [..], "offset": int, "nbytes": int, "sha256":
hex}}``. Binary weights are stored one bit per weight: ``uint8`` bytes holding the sign bits of the
``(Co, Ci/groups, k, k)`` kernel in C order, 8 per byte, least significant bit first, bit 1 <=> weight -1 (op
attribute ``wshape`` gives the shape); the runtime expands them once, at load, to the kernels' 64-bit word
layout (:mod:`binsharp.deploy.kernels`).

Float tensors (version 2) are float32 in memory and stored as the ``storage`` switch says (:func:`plan`):

* ``fp32``: ``float32``, as exported;
* ``fp16`` (default): ``float16`` (IEEE half, round to nearest);
* ``int8``: convolution and linear weights whose rows (index of axis 0: output channel) hold at least
  :data:`INT8_MIN_ROW` values are ``int8`` with one ``float32`` scale per row, ``x = q * scale``, ``q`` in
  [-127, 127], ``scale = max |row| / 127``; the table entry has ``"scale": {"offset", "nbytes", "sha256"}``
  for the ``(shape[0],)`` scales; every other float tensor is ``float16``.

The binarization thresholds of binary convolutions (op params ``in_scale``, ``in_bias``, ``pack_scale``,
``pack_bias``) stay ``float32`` in every mode: they decide signs, which a U body can amplify. Loading decodes
every float tensor to ``float32``.

Loading checks the magic, the version, the header checksum and length, the JSON structure, every tensor's
dtype/shape/size/bounds and SHA-256, and that the file has no trailing bytes. Nothing in the file is
executed: the header is parsed with :func:`json.loads` and tensors are read with :func:`numpy.frombuffer`.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from binsharp.errors import BinsharpError

MAGIC = b"BSPK\x00\r\n\x1a"
VERSION = 2
#: format versions this binsharp reads
READS = (1, 2)
FORMAT = "binsharp-bsp"
ALIGN = 64
_PREFIX = struct.Struct("<8sIIQ32s")  # magic, version, reserved, header length, header sha256
DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype("<f4"),
    "float16": np.dtype("<f2"),
    "int8": np.dtype("i1"),
    "uint64": np.dtype("<u8"),
    "int32": np.dtype("<i4"),
    "uint8": np.dtype("u1"),
}
#: dtypes a tensor may have in memory (float16 and int8 are storage forms of float32)
MEMORY_DTYPES = ("float32", "uint64", "int32", "uint8")
#: storage switches of float tensors (see the module docstring)
STORAGE = ("fp16", "fp32", "int8")
DEFAULT_STORAGE = "fp16"
#: op params that stay float32 in every storage mode (binarization thresholds)
THRESHOLD_ROLES = frozenset({"in_scale", "in_bias", "pack_scale", "pack_bias"})
#: ops whose ``weight`` may be stored as int8, and the shortest row that is
INT8_OPS = frozenset({"conv2d", "linear", "calibrate"})  # calibrate: its gate's linear weight
INT8_MIN_ROW = 8
MAX_HEADER = 64 << 20


@dataclass
class BspModel:
    """An exported network: ``model`` metadata, ``graph`` ops, ``outputs`` names, ``tensors`` arrays (float
    tensors float32) and the ``storage`` of its float tensors in a file (``fp16``, ``fp32``, ``int8``)."""

    model: dict
    graph: list[dict]
    outputs: list[str]
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    storage: str = DEFAULT_STORAGE


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def plan(m: BspModel, storage: str) -> dict[str, str]:
    """Stored dtype of every tensor of ``m`` under the storage switch ``storage`` (module docstring)."""
    if storage not in STORAGE:
        raise BinsharpError(f"unknown storage {storage!r}; choose one of {', '.join(STORAGE)}")
    keep: set[str] = set()
    int8: set[str] = set()
    for op in m.graph:
        for role, name in op.get("params", {}).items():
            if role in THRESHOLD_ROLES:
                keep.add(name)
            elif role == "weight" and op.get("op") in INT8_OPS:
                int8.add(name)
    out: dict[str, str] = {}
    for name, arr in m.tensors.items():
        a = np.asarray(arr)
        dname = next((k for k in MEMORY_DTYPES if a.dtype == DTYPES[k].newbyteorder("=")), None)
        if dname is None:
            raise BinsharpError(
                f"tensor {name!r}: dtype {a.dtype} cannot be stored ({', '.join(MEMORY_DTYPES)})"
            )
        if dname == "float32" and name not in keep and storage != "fp32":
            rows = a.shape[0] if a.ndim >= 2 else 0
            dname = (
                "int8"
                if storage == "int8" and name in int8 and rows and a.size // rows >= INT8_MIN_ROW
                else "float16"
            )
        out[name] = dname
    return out


def _int8(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row (axis 0) symmetric int8 codes and float32 scales of ``a``."""
    rows = a.reshape(a.shape[0], -1).astype(np.float32)
    scale = (np.abs(rows).max(axis=1) / np.float32(127)).astype(np.float32)
    safe = np.where(scale > 0, scale, np.float32(1))
    q = np.clip(np.rint(rows / safe[:, None]), -127, 127).astype(np.int8)
    return q.reshape(a.shape), scale


def to_bytes(m: BspModel, storage: str | None = None) -> bytes:
    """Serialise ``m`` to the ``.bsp`` byte layout, float tensors stored as ``storage`` (default
    ``m.storage``)."""
    storage = m.storage if storage is None else storage
    dtypes = plan(m, storage)
    table: dict[str, dict] = {}
    chunks: list[bytes] = []
    off = 0

    def put(raw: bytes) -> dict:
        nonlocal off
        pad = _align(off) - off
        if pad:
            chunks.append(b"\0" * pad)
            off += pad
        entry = {"offset": off, "nbytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
        chunks.append(raw)
        off += len(raw)
        return entry

    for name, arr in m.tensors.items():
        a, dname = np.asarray(arr), dtypes[name]
        scale = None
        if dname == "int8":
            a, scale = _int8(a)
        entry: dict[str, object] = {"dtype": dname, "shape": [int(s) for s in a.shape]}
        entry.update(put(np.ascontiguousarray(a, dtype=DTYPES[dname]).tobytes()))
        if scale is not None:
            entry["scale"] = put(scale.astype(DTYPES["float32"]).tobytes())
        table[name] = entry
    header = {
        "format": FORMAT,
        "version": VERSION,
        "storage": storage,
        "model": m.model,
        "graph": m.graph,
        "outputs": m.outputs,
        "tensors": table,
    }
    hb = zlib.compress(json.dumps(header, separators=(",", ":"), sort_keys=False).encode("utf-8"), 9)
    prefix = _PREFIX.pack(MAGIC, VERSION, 0, len(hb), hashlib.sha256(hb).digest())
    head = prefix + hb
    head += b"\0" * (_align(len(head)) - len(head))
    return head + b"".join(chunks)


def save(
    m: BspModel, path: str | os.PathLike, *, storage: str | None = None, overwrite: bool = False
) -> Path:
    """Write ``m`` to ``path`` atomically (refuses an existing path unless ``overwrite``); ``storage`` as
    :func:`to_bytes`."""
    from binsharp.fileio import atomic_output

    data = to_bytes(m, storage)
    with atomic_output(path, overwrite=overwrite) as tmp:
        Path(tmp).write_bytes(data)
    return Path(path)


def _fail(src: str, msg: str) -> BinsharpError:
    return BinsharpError(f"{src}: {msg}")


def _payload(body: memoryview, source: str, name: str, t: dict, nbytes: int) -> memoryview:
    """The checked bytes of the table entry ``t`` (offset, size ``nbytes``, SHA-256) in the data section."""
    off = t.get("offset")
    if not (isinstance(off, int) and off >= 0 and t.get("nbytes") == nbytes):
        raise _fail(source, f"tensor {name!r}: bad offset/size")
    if off + nbytes > len(body):
        raise _fail(source, f"truncated: tensor {name!r} needs {off + nbytes} bytes of data")
    raw = body[off : off + nbytes]
    if hashlib.sha256(raw).hexdigest() != t.get("sha256"):
        raise _fail(source, f"tensor {name!r}: checksum mismatch (file corrupted)")
    return raw


def from_bytes(data: bytes, source: str = "<bytes>") -> BspModel:
    """Parse and validate a ``.bsp`` image (see the module docstring); raises :class:`BinsharpError`."""
    if len(data) < _PREFIX.size:
        raise _fail(source, f"not a .bsp model file (truncated: {len(data)} bytes)")
    magic, version, _reserved, hlen, hsha = _PREFIX.unpack_from(data, 0)
    if magic != MAGIC:
        raise _fail(source, "not a .bsp model file (bad magic)")
    if version not in READS:
        raise _fail(
            source,
            f"unsupported .bsp format version {version} (this binsharp reads versions "
            f"{', '.join(map(str, READS))}; a newer binsharp wrote it)",
        )
    if hlen > MAX_HEADER or _PREFIX.size + hlen > len(data):
        raise _fail(source, f"truncated or corrupt header (header length {hlen}, file {len(data)} bytes)")
    hb = data[_PREFIX.size : _PREFIX.size + hlen]
    if hashlib.sha256(hb).digest() != hsha:
        raise _fail(source, "header checksum mismatch (file corrupted)")
    try:
        d = zlib.decompressobj()
        text = d.decompress(hb, MAX_HEADER)
        if d.unconsumed_tail or not d.eof:
            raise _fail(source, "header is not a complete zlib stream or decompresses beyond the size limit")
        header = json.loads(text.decode("utf-8"))
    except zlib.error as exc:
        raise _fail(source, f"header cannot be decompressed: {exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(source, f"header is not valid JSON: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("version") != version:
        raise _fail(source, f"header does not describe a binsharp-bsp model of version {version}")
    for key, typ in (("model", dict), ("graph", list), ("outputs", list), ("tensors", dict)):
        if not isinstance(header.get(key), typ):
            raise _fail(source, f"header field {key!r} missing or not a {typ.__name__}")
    storage = header.get("storage", "fp32") if version >= 2 else "fp32"
    if storage not in STORAGE:
        raise _fail(source, f"unknown storage {storage!r}")
    allowed = DTYPES if version >= 2 else MEMORY_DTYPES
    start = _align(_PREFIX.size + hlen)
    body = memoryview(data)[start:]
    tensors: dict[str, np.ndarray] = {}
    end = 0
    for name, t in header["tensors"].items():
        if not isinstance(t, dict):
            raise _fail(source, f"tensor {name!r}: bad table entry")
        dname, shape = t.get("dtype"), t.get("shape")
        if not isinstance(dname, str) or dname not in allowed:
            raise _fail(source, f"tensor {name!r}: unsupported dtype {dname!r}")
        dt = DTYPES[dname]
        if not (isinstance(shape, list) and all(isinstance(s, int) and s >= 0 for s in shape)):
            raise _fail(source, f"tensor {name!r}: bad shape {shape!r}")
        if dname == "int8" and not shape:
            raise _fail(source, f"tensor {name!r}: an int8 tensor needs at least one axis")
        nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        if t.get("nbytes") != nbytes:
            raise _fail(
                source, f"tensor {name!r}: size {t.get('nbytes')} does not match shape {shape} {dname}"
            )
        raw = _payload(body, source, name, t, nbytes)
        arr = np.frombuffer(raw, dtype=dt).reshape(shape)
        end = max(end, t["offset"] + nbytes)
        if dname == "int8":
            sc = t.get("scale")
            if not isinstance(sc, dict):
                raise _fail(source, f"tensor {name!r}: int8 tensor without scales")
            sraw = _payload(body, source, f"{name}.scale", sc, shape[0] * 4)
            end = max(end, sc["offset"] + shape[0] * 4)
            scale = np.frombuffer(sraw, dtype=DTYPES["float32"]).astype(np.float32)
            arr = arr.astype(np.float32) * scale.reshape((-1,) + (1,) * (len(shape) - 1))
        elif dname == "float16":
            arr = arr.astype(np.float32)
        tensors[name] = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("="), copy=True)
    if len(body) != end:
        raise _fail(source, f"{len(body) - end} unexpected trailing bytes after the data section")
    return BspModel(header["model"], header["graph"], header["outputs"], tensors, storage)


def load(path: str | os.PathLike) -> BspModel:
    """Read and validate the ``.bsp`` file at ``path``."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise BinsharpError(f"cannot read model file {p}: {exc.strerror or exc}") from None
    return from_bytes(data, str(p))
