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


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(proc.stdout)


def test_partials_of_dead_processes_are_removed_at_the_next_write(tmp_path):
    import os

    from binsharp.fileio import HOST_TAG

    dead = tmp_path / f".out.bin.{_dead_pid()}-{HOST_TAG}-0a1b2c3d.part"
    dead.write_bytes(b"left by a killed run")
    dead_dir = tmp_path / f".out.bin.{_dead_pid()}-{HOST_TAG}-0a1b2c3d.building"
    (dead_dir / "sub").mkdir(parents=True)
    alive = tmp_path / f".out.bin.{os.getppid()}-{HOST_TAG}-0a1b2c3d.part"  # a running process's
    alive.write_bytes(b"")
    other_host = tmp_path / f".out.bin.{_dead_pid()}-00000000-0a1b2c3d.part"
    other_host.write_bytes(b"")
    with atomic_output(tmp_path / "out.bin") as tmp:
        tmp.write_bytes(b"abc")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out.bin", alive.name, other_host.name])


def test_output_path_checks(tmp_path):
    from binsharp.fileio import check_output_path

    inp = tmp_path / "in.tif"
    inp.write_bytes(b"input")
    with pytest.raises(BinsharpError, match="is an input file"):
        check_output_path(tmp_path / "." / "in.tif", overwrite=True, inputs=[inp])
    with pytest.raises(BinsharpError, match="is a directory"):
        check_output_path(tmp_path, overwrite=True)
    with pytest.raises(BinsharpError, match="not a directory"):
        check_output_path(inp / "x.tif")
    with pytest.raises(BinsharpError, match="cannot write to directory /proc"):
        check_output_path("/proc/x.tif")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"]


def test_atomic_output_dir_replaces_only_when_allowed(tmp_path):
    from binsharp.fileio import atomic_output_dir

    out = tmp_path / "d"
    out.mkdir()
    (out / "keep.txt").write_text("mine")

    def refuse(folder):
        raise BinsharpError(f"not replaceable: {folder}")

    with pytest.raises(BinsharpError, match="not replaceable"):
        with atomic_output_dir(out, replace=True, replaceable=refuse):
            pass
    with pytest.raises(BinsharpError, match="output directory exists"):
        with atomic_output_dir(out):
            pass
    assert (out / "keep.txt").read_text() == "mine"
    with atomic_output_dir(out, replace=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in out.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["d"]  # no .d.*.old or .building left
