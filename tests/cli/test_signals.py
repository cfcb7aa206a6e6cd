"""SIGTERM, SIGINT and SIGKILL in the middle of ``binsharp fuse`` and ``binsharp data build``: no output and
no hidden partial file is left behind (SIGKILL's partial is removed by the next run)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from geotiff import write_tif

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


_tif = partial(write_tif, dtype="uint16")


def _pair(folder: Path, bands: int, h: int, w: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0 : 4 * h, 0 : 4 * w]
    pan = (900 + 400 * np.sin(x / 31.0) * np.cos(y / 17.0) + rng.normal(0, 20, x.shape)).clip(1, 2047)
    ms = pan.reshape(h, 4, w, 4).mean(axis=(1, 3))
    ms = np.stack([ms * (0.8 + 0.05 * b) for b in range(bands)]).clip(1, 2047)
    folder.mkdir(parents=True, exist_ok=True)
    return _tif(folder / "pan.tif", pan[None], 0.3), _tif(folder / "ms.tif", ms, 1.2)


def _default_signals() -> None:
    """In the child: SIGINT and SIGTERM as at an interactive terminal. A test run started in the background
    (``cmd &`` in a shell without job control) inherits an ignored SIGINT, which binsharp leaves ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _start(argv: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "binsharp.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=_default_signals,
    )


def _wait_for_partial(proc: subprocess.Popen, folder: Path, suffix: str, timeout: float = 120.0) -> Path:
    """Poll until the process has created its hidden partial output (then it is mid-run)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = [p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(suffix)]
        if found:
            return found[0]
        if proc.poll() is not None:
            pytest.fail(f"finished before it could be signalled: {proc.returncode} {proc.stderr.read()}")
        time.sleep(0.005)
    proc.kill()
    pytest.fail("no partial output appeared")


def _fuse_argv(pan: Path, ms: Path, out: Path) -> list[str]:
    return [
        "fuse", "--method", "mtf-glp-hpm", "--sensor", "WV3", "--pan", str(pan), "--ms", str(ms),
        "-o", str(out), "--tile", "32", "--halo", "32",
    ]  # fmt: skip


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_fuse_leaves_nothing(tmp_path, sig):
    pan, ms = _pair(tmp_path / "in", bands=8, h=96, w=96)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = _start(_fuse_argv(pan, ms, out_dir / "o.tif"))
    _wait_for_partial(proc, out_dir, ".part")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err
    assert list(out_dir.iterdir()) == []


def test_sigterm_during_data_build_leaves_nothing(tmp_path):
    pan, ms = _pair(tmp_path / "in", bands=4, h=128, w=256)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    argv = [
        "data", "build", "--pan", str(pan), "--ms", str(ms), "--sensor", "QB", "-o", str(out_dir / "ds"),
        "--splits", "train=0.4,val=0.15,test=0.45", "--patch", "32", "--stride", "4", "--test-tile", "96",
        "--min-test-tiles", "1", "--fr-tile", "128", "--margin", "20",
    ]  # fmt: skip
    proc = _start(argv)
    _wait_for_partial(proc, out_dir, ".building")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "terminated" in err and "Traceback" not in err
    assert list(out_dir.iterdir()) == []


def test_partial_of_a_killed_fuse_is_removed_by_the_next_run(tmp_path):
    pan, ms = _pair(tmp_path / "in", bands=8, h=96, w=96)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = _start(_fuse_argv(pan, ms, out_dir / "o.tif"))
    partial = _wait_for_partial(proc, out_dir, ".part")
    proc.kill()  # SIGKILL: no handler runs, the partial stays
    proc.communicate(timeout=60)
    assert partial.exists()
    done = _start([*_fuse_argv(pan, ms, out_dir / "o.tif")[:-4], "--tile", "0"])
    _, err = done.communicate(timeout=300)
    assert done.returncode == 0, err
    assert [p.name for p in out_dir.iterdir()] == ["o.tif"]
