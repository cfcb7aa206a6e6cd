"""Command-line conventions: progress bars only on a terminal and only on stderr, helpful help texts."""

from __future__ import annotations

import contextlib
import io
import sys

import pytest

from binsharp.cli import main
from binsharp.progress import show_progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_only_on_a_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert not show_progress()
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert show_progress() and not show_progress(False)


def test_data_build_draws_no_bar_without_a_terminal(tmp_path, capsys):
    from test_cli_data import SMALL, _scene

    pan, ms = _scene(tmp_path / "src")
    argv = ["data", "build", "--pan", str(pan), "--ms", str(ms), "--sensor", "QB", "-o", str(tmp_path / "ds")]
    assert main([*argv, *[a for a in SMALL if a != "--no-progress"]]) == 0
    assert "building" not in capsys.readouterr().err


def test_training_bar_goes_to_stderr():
    from binsharp.train.engine import StderrProgressBar

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        bar = StderrProgressBar().init_train_tqdm()
        bar.update(1)
        bar.close()
    assert out.getvalue() == "" and "Training" in err.getvalue()


def test_train_help_lists_the_models(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "models (--model)" in text and "bbcu" in text and "pnn" in text and "s2bnet" in text
