"""Safe output writing: nothing partially written, nothing overwritten by accident."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from binsharp.errors import BinsharpError


def check_output_path(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Return ``path`` as a :class:`Path` after checking it may be written.

    Raises :class:`BinsharpError` if the file exists and ``overwrite`` is false, or if its parent
    directory does not exist.
    """
    out = Path(path)
    if out.exists() and not overwrite:
        raise BinsharpError(f"output path exists: {out} (pass --overwrite to replace it)")
    if not out.parent.exists():
        raise BinsharpError(f"output directory does not exist: {out.parent}")
    return out


def _default_file_mode() -> int:
    """Permissions of a newly created file under the current umask (``mkstemp`` makes 0600 files)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds.

    On any exception the temporary file is removed, so a failed run never leaves a partial output.
    """
    out = check_output_path(path, overwrite=overwrite)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.exists():
            tmp.chmod(_default_file_mode())
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (read in ``chunk``-byte blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
