"""When to draw progress bars: on stderr, and only when stderr is a terminal.

Every command asks :func:`show_progress`, so redirected or piped runs (logs, ``| tee``, schedulers) get no
bar characters in their output, and stdout only ever holds results.
"""

from __future__ import annotations

import sys


def show_progress(requested: bool = True) -> bool:
    """Whether to draw a progress bar: ``requested`` (e.g. not ``--no-progress``) and stderr is a terminal."""
    return bool(requested) and sys.stderr.isatty()
