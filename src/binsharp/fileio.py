"""Safe output writing: nothing partially written, nothing overwritten by accident, nothing left behind.

Every output binsharp writes goes through :func:`atomic_output` (a file) or :func:`atomic_output_dir` (a
directory). The content is written under a hidden *partial* name beside the target,
``.NAME.<pid>-<host>-<random>.part`` (``.building`` for a directory), and renamed into place only once
complete. A partial is removed

* when the block raises (bad input, a failed write, Ctrl-C),
* when the process receives SIGTERM or SIGINT: while a partial exists, a handler removes the partials of
  the process and then raises :class:`~binsharp.errors.Terminated` (SIGTERM) or ``KeyboardInterrupt``
  (SIGINT), so the command stops cleanly,
* at the next write into the same directory, when the process that made it is no longer running (SIGKILL,
  a crash): the partial's name records its process id and a digest of the host name.

:func:`check_output_path` and :func:`check_output_dir` are the one place that validates an output path
(refused when it exists, names an input, or lies in a directory that cannot be written); commands call them
before any work, and the writers call them again. :func:`sha256_file` gives the digest of a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from binsharp.errors import BinsharpError, Terminated

#: Digest of this machine's host name, part of every partial name (partials on shared storage that other
#: machines made are never touched).
HOST_TAG = f"{zlib.crc32(socket.gethostname().encode('utf-8')) & 0xFFFFFFFF:08x}"
_PARTIAL_KINDS = ("part", "building", "old", "probe")
_PARTIAL_RE = re.compile(
    r"^\.(?P<name>.+)\.(?P<pid>\d+)-(?P<host>[0-9a-f]{8})-[0-9a-f]+\.(?:" + "|".join(_PARTIAL_KINDS) + ")$"
)

#: Partials of this process: path -> id of the process that created it (a forked child must not remove
#: its parent's partials).
_LIVE: dict[Path, int] = {}
_guard_depth = 0
_saved_handlers: dict[int, object] = {}
_guard_lock = threading.Lock()


def partial_name(name: str, kind: str) -> str:
    """Hidden name of a partial output of ``name``: ``.NAME.<pid>-<host>-<random>.<kind>``."""
    return f".{name}.{os.getpid()}-{HOST_TAG}-{secrets.token_hex(4)}.{kind}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    """Remove a file or directory tree, ignoring what is already gone."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()
    except FileNotFoundError:
        pass


def remove_stale_partials(directory: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Remove the partials in ``directory`` (of output ``name``, or of any output) left by dead processes.

    Only partials made on this host by a process that no longer runs are removed. Returns the removed paths.
    """
    removed: list[Path] = []
    try:
        entries = list(Path(directory).iterdir())
    except OSError:
        return removed
    for p in entries:
        m = _PARTIAL_RE.match(p.name)
        if m is None or m["host"] != HOST_TAG or (name is not None and m["name"] != name):
            continue
        pid = int(m["pid"])
        if pid == os.getpid() or _pid_alive(pid):
            continue
        _remove(p)
        removed.append(p)
    return removed


def _remove_live_partials() -> None:
    me = os.getpid()
    for p, owner in list(_LIVE.items()):
        if owner == me:
            _remove(p)


def _on_signal(signum: int, frame: object) -> None:
    """Remove this process's partial outputs, then stop: KeyboardInterrupt (SIGINT) or Terminated."""
    _remove_live_partials()
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(signum)


@contextlib.contextmanager
def _signal_guard() -> Iterator[None]:
    """Handle SIGTERM and SIGINT with :func:`_on_signal` while a partial output exists.

    Handlers are installed only in the main thread and only over the default ones (a handler the program
    set itself is left alone); the outermost block restores them.
    """
    global _guard_depth
    main = threading.current_thread() is threading.main_thread()
    with _guard_lock:
        _guard_depth += 1
        if main and _guard_depth == 1:
            for sig in (signal.SIGTERM, signal.SIGINT):
                current = signal.getsignal(sig)
                if current in (signal.SIG_DFL, signal.default_int_handler):
                    _saved_handlers[sig] = current
                    signal.signal(sig, _on_signal)
    try:
        yield
    finally:
        with _guard_lock:
            _guard_depth -= 1
            if main and _guard_depth == 0:
                for signum, handler in _saved_handlers.items():
                    if signal.getsignal(signum) is _on_signal:
                        signal.signal(signum, handler)  # type: ignore[arg-type]
                _saved_handlers.clear()


@contextlib.contextmanager
def _registered(path: Path) -> Iterator[None]:
    _LIVE[path] = os.getpid()
    try:
        yield
    finally:
        _LIVE.pop(path, None)
        _remove(path)


def _probe_writable(directory: Path) -> None:
    """Raise :class:`BinsharpError` unless a file can be created in ``directory`` (tried, then removed)."""
    probe = directory / partial_name("write-test", "probe")
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError as exc:
        raise BinsharpError(f"cannot write to directory {directory}: {exc.strerror or exc}") from None
    os.close(fd)
    probe.unlink()


def _check_parent(out: Path) -> Path:
    parent = out.parent
    if not parent.exists():
        raise BinsharpError(f"output directory does not exist: {parent}")
    if not parent.is_dir():
        raise BinsharpError(f"output path {out}: {parent} is not a directory")
    _probe_writable(parent)
    return parent


def check_output_path(
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike | None] = (),
    flag: str = "--overwrite",
) -> Path:
    """Return ``path`` as a :class:`Path` after checking that an output file may be written there.

    Raises :class:`BinsharpError` if the path is a directory, names one of ``inputs``, exists and
    ``overwrite`` is false (the message suggests ``flag``), or if its directory is missing or cannot be
    written (a file is created there and removed to find out).
    """
    out = Path(path)
    for given in inputs:
        if given is not None and out.exists() and Path(given).exists() and os.path.samefile(out, given):
            raise BinsharpError(f"output path {out} is an input file; choose another output")
    if out.is_dir():
        raise BinsharpError(f"output path is a directory: {out}")
    if out.exists() and not overwrite:
        raise BinsharpError(f"output path exists: {out} (pass {flag} to replace it)")
    _check_parent(out)
    return out


def check_output_dir(
    path: str | os.PathLike,
    *,
    replace: bool = False,
    replaceable: Callable[[Path], None] | None = None,
    create_parents: bool = False,
    flag: str = "--force",
) -> Path:
    """Return ``path`` as a :class:`Path` after checking that an output directory may be made there.

    An existing ``path`` is refused unless ``replace`` is true, it is a directory and ``replaceable(path)``
    (when given) does not raise. With ``create_parents`` the directory is written in place (created with its
    missing parents when absent), so ``path`` or else its nearest existing ancestor must be writable;
    otherwise the parent must exist and be writable.
    """
    out = Path(path)
    if out.exists():
        if not out.is_dir():
            raise BinsharpError(f"output path {out} exists and is not a directory")
        if not replace:
            raise BinsharpError(f"output directory exists: {out} (pass {flag} to replace it)")
        if replaceable is not None:
            replaceable(out)
    if not create_parents:
        _check_parent(out)
        return out
    ancestor = out.absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise BinsharpError(f"output path {out}: {ancestor} is not a directory")
    _probe_writable(ancestor)
    return out


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def default_file_mode() -> int:
    """Permissions of a newly created file under the current umask (partials are created private)."""
    return 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_output(
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike | None] = (),
) -> Iterator[Path]:
    """Yield a partial file path beside ``path``; move it into place only if the block succeeds.

    On an exception, SIGTERM or SIGINT the partial is removed, so a failed run never leaves a partial output;
    partials of ``path`` left by dead processes are removed first. See :func:`check_output_path` for the
    checks of ``path``, ``overwrite`` and ``inputs``.
    """
    out = check_output_path(path, overwrite=overwrite, inputs=inputs)
    remove_stale_partials(out.parent, out.name)
    tmp = out.parent / partial_name(out.name, "part")
    with _signal_guard(), _registered(tmp):
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        yield tmp
        if tmp.exists():
            tmp.chmod(default_file_mode())
        try:
            os.replace(tmp, out)
        except OSError as exc:
            raise BinsharpError(f"cannot write output {out}: {exc.strerror or exc}") from None


def strict_json(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by the string ``"inf"``, ``"-inf"`` or ``"nan"``.

    JSON has no literal for them (Python's ``Infinity`` and ``NaN`` are refused by strict parsers); a perfect
    fusion has an infinite PSNR, for example. ``float(value)`` reads the strings back.
    """
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, obj: Any, *, overwrite: bool = False, default: Any = None) -> Path:
    """Write ``obj`` atomically as indented, strictly valid JSON (non-finite floats as strings, see
    :func:`strict_json`); ``default`` converts objects JSON does not know, as in :func:`json.dumps`."""
    with atomic_output(path, overwrite=overwrite) as tmp:
        text = json.dumps(strict_json(obj), indent=2, default=default, allow_nan=False)
        tmp.write_text(text + "\n", encoding="utf-8")
    return Path(path)


def _default_permissions(folder: Path) -> None:
    """Give ``folder`` and its files the usual permissions (partials are created private)."""
    umask = _umask()
    os.chmod(folder, 0o777 & ~umask)
    for f in folder.iterdir():
        if f.is_file():
            os.chmod(f, 0o666 & ~umask)


@contextlib.contextmanager
def atomic_output_dir(
    path: str | os.PathLike,
    *,
    replace: bool = False,
    replaceable: Callable[[Path], None] | None = None,
) -> Iterator[Path]:
    """Yield a partial directory beside ``path``; rename it into place only if the block succeeds.

    An existing ``path`` is replaced only when ``replace`` is true and ``replaceable(path)`` does not raise
    (checked before and again just before the swap); the old directory is moved to a partial name and removed
    after the new one is in place. Partials are removed on failure, SIGTERM and SIGINT, and those of dead
    processes at the start, as for :func:`atomic_output`.
    """
    out = check_output_dir(path, replace=replace, replaceable=replaceable)
    remove_stale_partials(out.parent, out.name)
    tmp = out.parent / partial_name(out.name, "building")
    with _signal_guard(), _registered(tmp):
        tmp.mkdir(mode=0o700)
        yield tmp
        _default_permissions(tmp)
        check_output_dir(out, replace=replace, replaceable=replaceable)
        old = out.parent / partial_name(out.name, "old")
        with _registered(old):
            if out.exists():
                os.rename(out, old)
            try:
                os.rename(tmp, out)
            except OSError as exc:
                if old.exists():
                    os.rename(old, out)
                raise BinsharpError(f"cannot move the new directory into place at {out}: {exc}") from None


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (read in ``chunk``-byte blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
