import pytest

from binsharp.errors import BinsharpError
from binsharp.fileio import atomic_output


def test_atomic_output_moves_into_place(tmp_path):
    target = tmp_path / "out.bin"
    with atomic_output(target) as tmp:
        tmp.write_bytes(b"abc")
        assert not target.exists()
    assert target.read_bytes() == b"abc"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_refuses_existing_and_missing_dir(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"keep")
    with pytest.raises(BinsharpError, match="output path exists"):
        with atomic_output(target):
            pass
    assert target.read_bytes() == b"keep"
    with atomic_output(target, overwrite=True) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    with pytest.raises(BinsharpError, match="output directory does not exist"):
        with atomic_output(tmp_path / "nope" / "x.bin"):
            pass


def test_atomic_output_uses_default_permissions(tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        with atomic_output(tmp_path / "out.bin") as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(umask)
    assert (tmp_path / "out.bin").stat().st_mode & 0o777 == 0o644
