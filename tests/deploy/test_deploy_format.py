"""Robustness of the ``.bsp`` loader and the engine: truncated, corrupted, foreign and mismatched files give a
clear :class:`BinsharpError`, never a crash or silent garbage."""

from __future__ import annotations

import hashlib
import json
import struct
import zlib

import numpy as np
import pytest
import torch

from binsharp import models
from binsharp.deploy import bsp
from binsharp.deploy import kernels as K
from binsharp.deploy.export import lower_model
from binsharp.deploy.runtime import Engine
from binsharp.errors import BinsharpError

pytestmark = pytest.mark.skipif(not K.have_kernels(), reason="compiled kernels not built")


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    torch.manual_seed(0)
    m = models.create("bbcu", bands=4, n_units=2)
    return bsp.to_bytes(lower_model(m))


def _rewrite_header(data: bytes, edit) -> bytes:
    """Re-encode ``data`` with ``edit(header_dict)`` applied and a valid header checksum."""
    magic, version, res, hlen, _ = bsp._PREFIX.unpack_from(data, 0)
    header = json.loads(zlib.decompress(data[bsp._PREFIX.size : bsp._PREFIX.size + hlen]))
    body = data[bsp._align(bsp._PREFIX.size + hlen) :]
    edit(header)
    hb = zlib.compress(json.dumps(header).encode())
    head = bsp._PREFIX.pack(magic, version, res, len(hb), hashlib.sha256(hb).digest()) + hb
    head += b"\0" * (bsp._align(len(head)) - len(head))
    return head + body


def test_roundtrip_is_exact(model_bytes):
    m = bsp.from_bytes(model_bytes)
    again = bsp.to_bytes(m)
    assert again == model_bytes
    assert model_bytes[:8] == bsp.MAGIC
    assert struct.unpack_from("<I", model_bytes, 8)[0] == bsp.VERSION


@pytest.mark.parametrize("frac", [0.0, 0.001, 0.01, 0.3, 0.7, 0.999])
def test_truncated_file(model_bytes, frac):
    cut = model_bytes[: int(len(model_bytes) * frac)]
    with pytest.raises(BinsharpError, match="truncated|bad magic|not a .bsp"):
        bsp.from_bytes(cut, "m.bsp")


def test_trailing_bytes(model_bytes):
    with pytest.raises(BinsharpError, match="trailing"):
        bsp.from_bytes(model_bytes + b"\0" * 8)


def test_bad_magic(model_bytes):
    with pytest.raises(BinsharpError, match="bad magic"):
        bsp.from_bytes(b"PK\x03\x04" + model_bytes[4:])


def test_wrong_version(model_bytes):
    data = bytearray(model_bytes)
    struct.pack_into("<I", data, 8, bsp.VERSION + 1)
    with pytest.raises(BinsharpError, match="unsupported .bsp format version 2"):
        bsp.from_bytes(bytes(data))


def test_corrupted_header_and_data(model_bytes):
    hdr = bytearray(model_bytes)
    hdr[bsp._PREFIX.size + 10] ^= 0x01
    with pytest.raises(BinsharpError, match="header checksum"):
        bsp.from_bytes(bytes(hdr))
    rng = np.random.default_rng(0)
    start = bsp._align(bsp._PREFIX.size + struct.unpack_from("<Q", model_bytes, 16)[0])
    for pos in rng.integers(start, len(model_bytes), 20):
        data = bytearray(model_bytes)
        data[pos] ^= 0x40
        try:
            bsp.from_bytes(bytes(data))
        except BinsharpError as exc:
            assert "checksum" in str(exc)
        else:  # a flipped padding byte between tensors does not matter
            assert bsp.from_bytes(bytes(data)).tensors.keys() == bsp.from_bytes(model_bytes).tensors.keys()


def test_random_garbage_never_crashes():
    rng = np.random.default_rng(1)
    for n in (0, 10, 56, 57, 200, 5000):
        blob = bsp.MAGIC + rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        with pytest.raises(BinsharpError):
            bsp.from_bytes(blob)


def test_header_not_json_or_not_zlib(model_bytes):
    def fake(raw: bytes) -> bytes:
        magic, version, res, hlen, _ = bsp._PREFIX.unpack_from(model_bytes, 0)
        head = bsp._PREFIX.pack(magic, version, res, len(raw), hashlib.sha256(raw).digest()) + raw
        return head + b"\0" * (bsp._align(len(head)) - len(head))

    with pytest.raises(BinsharpError, match="cannot be decompressed"):
        bsp.from_bytes(fake(b"{not zlib}"))
    with pytest.raises(BinsharpError, match="not valid JSON"):
        bsp.from_bytes(fake(zlib.compress(b"{oops")))
    with pytest.raises(BinsharpError, match="size limit|not a complete"):
        bsp.from_bytes(fake(zlib.compress(b" " * (bsp.MAX_HEADER + 10))))


def test_header_tampering_detected(model_bytes):
    def bad_size(h):
        name = next(iter(h["tensors"]))
        h["tensors"][name]["shape"] = [10**6]

    def bad_dtype(h):
        h["tensors"][next(iter(h["tensors"]))]["dtype"] = "object"

    def bad_offset(h):
        t = h["tensors"][next(iter(h["tensors"]))]
        t["offset"] = 10**9

    for edit, msg in ((bad_size, "does not match shape"), (bad_dtype, "unsupported dtype"),
                      (bad_offset, "truncated")):  # fmt: skip
        with pytest.raises(BinsharpError, match=msg):
            bsp.from_bytes(_rewrite_header(model_bytes, edit))


def test_engine_rejects_unknown_ops_and_dangling_tensors(model_bytes):
    def unknown(h):
        h["graph"][0]["op"] = "__import__"

    def dangling(h):
        h["graph"][1]["in"] = ["nowhere"]

    def bad_shape(h):
        op = next(o for o in h["graph"] if o["op"] == "bconv")
        op["attrs"]["wshape"] = [1, 2, 3, 3]

    for edit, msg in ((unknown, "unknown kind"), (dangling, "undefined tensor"), (bad_shape, "does not fit")):
        m = bsp.from_bytes(_rewrite_header(model_bytes, edit))
        with pytest.raises(BinsharpError, match=msg):
            Engine(m)


def test_mismatched_band_count(model_bytes):
    eng = Engine(bsp.from_bytes(model_bytes))
    lms = np.zeros((1, 8, 16, 16), np.float32)
    pan = np.zeros((1, 1, 16, 16), np.float32)
    with pytest.raises(BinsharpError, match="8 channels but the engine model expects 4 bands"):
        eng(lms=lms, pan=pan)
    with pytest.raises(BinsharpError, match="needs input 'pan'"):
        eng(lms=np.zeros((1, 4, 16, 16), np.float32))
    with pytest.raises(BinsharpError, match="differ in size"):
        eng(lms=np.zeros((1, 4, 16, 16), np.float32), pan=np.zeros((1, 1, 8, 8), np.float32))


def test_engine_fuser_band_mismatch_and_missing_file(tmp_path, model_bytes):
    from binsharp.inference.engine import engine_fuser
    from binsharp.sensors import get_sensor

    p = tmp_path / "m.bsp"
    p.write_bytes(model_bytes)
    with pytest.raises(BinsharpError, match="bit depth"):
        engine_fuser(p)
    with pytest.raises(BinsharpError, match="4-band"):
        engine_fuser(p, sensor=get_sensor("WV3"), bits=11)
    f = engine_fuser(p, bits=11)
    with pytest.raises(BinsharpError, match="expects 4 MS bands"):
        f(np.zeros((8, 4, 4)), np.zeros((1, 16, 16)))
    with pytest.raises(BinsharpError, match="cannot read model file"):
        engine_fuser(tmp_path / "missing.bsp", bits=11)
