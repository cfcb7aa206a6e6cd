"""The ``.bsp`` model file: a versioned container for an exported binsharp network (graph + tensors).

Layout (all integers little-endian)::

    offset  size  field
    0       8     magic  b"BSPK\\x00\\r\\n\\x1a"
    8       4     format version (uint32), currently 1
    12      4     reserved, 0
    16      8     header length L in bytes (uint64)
    24      32    SHA-256 of the L header bytes
    56      L     header: a UTF-8 JSON object (see below), zlib-compressed (RFC 1950)
    ...           zero padding up to the next multiple of 64: start of the data section D
    D       ...   tensor payloads, each at a 64-byte aligned offset relative to D; the file ends after the
                  last one

Header keys: ``format`` (``"binsharp-bsp"``), ``version`` (int, equal to the binary field), ``model`` (dict:
``name``, ``bands``, ``ratio``, ``bits``, ``sensor``, ``config``, ``inputs``; informative except ``bands``,
``inputs``, ``bits``, ``ratio``), ``graph`` (list of ops, see :mod:`binsharp.deploy.runtime`), ``outputs``
(list of tensor names; the first is the fused image) and ``tensors``: ``{name: {"dtype": "float32" | "uint64"
| "int32" | "uint8", "shape": [..], "offset": int, "nbytes": int, "sha256": hex}}``. Binary weights are
stored one bit per weight: ``uint8`` bytes holding the sign bits of the ``(Co, Ci/groups, k, k)`` kernel in
C order, 8 per byte, least significant bit first, bit 1 <=> weight -1 (op attribute ``wshape`` gives the
shape); the runtime expands them once, at load, to the kernels' 64-bit word layout
(:mod:`binsharp.deploy.kernels`). Float layers are ``float32``.

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
VERSION = 1
FORMAT = "binsharp-bsp"
ALIGN = 64
_PREFIX = struct.Struct("<8sIIQ32s")  # magic, version, reserved, header length, header sha256
DTYPES = {
    "float32": np.dtype("<f4"),
    "uint64": np.dtype("<u8"),
    "int32": np.dtype("<i4"),
    "uint8": np.dtype("u1"),
}
MAX_HEADER = 64 << 20


@dataclass
class BspModel:
    """An exported network: ``model`` metadata, ``graph`` ops, ``outputs`` names and ``tensors`` arrays."""

    model: dict
    graph: list[dict]
    outputs: list[str]
    tensors: dict[str, np.ndarray] = field(default_factory=dict)


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def to_bytes(m: BspModel) -> bytes:
    """Serialise ``m`` to the ``.bsp`` byte layout."""
    table: dict[str, dict] = {}
    chunks: list[bytes] = []
    off = 0
    for name, arr in m.tensors.items():
        a = np.asarray(arr)
        dname = next((k for k, d in DTYPES.items() if a.dtype == d or a.dtype == d.newbyteorder("=")), None)
        if dname is None:
            raise BinsharpError(f"tensor {name!r}: dtype {a.dtype} cannot be stored ({', '.join(DTYPES)})")
        raw = np.ascontiguousarray(a, dtype=DTYPES[dname]).tobytes()
        pad = _align(off) - off
        if pad:
            chunks.append(b"\0" * pad)
            off += pad
        table[name] = {
            "dtype": dname,
            "shape": [int(s) for s in a.shape],
            "offset": off,
            "nbytes": len(raw),
            "sha256": hashlib.sha256(raw).hexdigest(),
        }
        chunks.append(raw)
        off += len(raw)
    header = {
        "format": FORMAT,
        "version": VERSION,
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


def save(m: BspModel, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``m`` to ``path`` atomically (refuses an existing path unless ``overwrite``)."""
    from binsharp.fileio import atomic_output

    data = to_bytes(m)
    with atomic_output(path, overwrite=overwrite) as tmp:
        Path(tmp).write_bytes(data)
    return Path(path)


def _fail(src: str, msg: str) -> BinsharpError:
    return BinsharpError(f"{src}: {msg}")


def from_bytes(data: bytes, source: str = "<bytes>") -> BspModel:
    """Parse and validate a ``.bsp`` image (see the module docstring); raises :class:`BinsharpError`."""
    if len(data) < _PREFIX.size:
        raise _fail(source, f"not a .bsp model file (truncated: {len(data)} bytes)")
    magic, version, _reserved, hlen, hsha = _PREFIX.unpack_from(data, 0)
    if magic != MAGIC:
        raise _fail(source, "not a .bsp model file (bad magic)")
    if version != VERSION:
        raise _fail(
            source, f"unsupported .bsp format version {version} (this binsharp reads version {VERSION})"
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
    if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("version") != VERSION:
        raise _fail(source, "header does not describe a binsharp-bsp model of this version")
    for key, typ in (("model", dict), ("graph", list), ("outputs", list), ("tensors", dict)):
        if not isinstance(header.get(key), typ):
            raise _fail(source, f"header field {key!r} missing or not a {typ.__name__}")
    start = _align(_PREFIX.size + hlen)
    body = memoryview(data)[start:]
    tensors: dict[str, np.ndarray] = {}
    end = 0
    for name, t in header["tensors"].items():
        if not isinstance(t, dict):
            raise _fail(source, f"tensor {name!r}: bad table entry")
        dt = DTYPES.get(t.get("dtype"))
        shape, off, nbytes = t.get("shape"), t.get("offset"), t.get("nbytes")
        if dt is None:
            raise _fail(source, f"tensor {name!r}: unsupported dtype {t.get('dtype')!r}")
        if not (isinstance(shape, list) and all(isinstance(s, int) and s >= 0 for s in shape)):
            raise _fail(source, f"tensor {name!r}: bad shape {shape!r}")
        if not (isinstance(off, int) and isinstance(nbytes, int) and off >= 0 and nbytes >= 0):
            raise _fail(source, f"tensor {name!r}: bad offset/size")
        if nbytes != int(np.prod(shape, dtype=np.int64)) * dt.itemsize:
            raise _fail(source, f"tensor {name!r}: size {nbytes} does not match shape {shape} {t['dtype']}")
        if off + nbytes > len(body):
            raise _fail(source, f"truncated: tensor {name!r} needs bytes up to {start + off + nbytes}")
        raw = body[off : off + nbytes]
        if hashlib.sha256(raw).hexdigest() != t.get("sha256"):
            raise _fail(source, f"tensor {name!r}: checksum mismatch (file corrupted)")
        tensors[name] = np.frombuffer(raw, dtype=dt).reshape(shape).astype(dt.newbyteorder("="), copy=True)
        end = max(end, off + nbytes)
    if len(body) != end:
        raise _fail(source, f"{len(body) - end} unexpected trailing bytes after the data section")
    return BspModel(header["model"], header["graph"], header["outputs"], tensors)


def load(path: str | os.PathLike) -> BspModel:
    """Read and validate the ``.bsp`` file at ``path``."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise BinsharpError(f"cannot read model file {p}: {exc.strerror or exc}") from None
    return from_bytes(data, str(p))
