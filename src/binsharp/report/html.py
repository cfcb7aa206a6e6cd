"""Self-contained HTML report: settings, result tables and figures (PNG embedded as base64)."""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from binsharp.fileio import atomic_output
from binsharp.report.tables import Table

__all__ = ["render_html", "write_html"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; white-space: nowrap; }
th:nth-child(-n+2), td:nth-child(-n+2), td.text { text-align: left; }
thead th { background: #f0f0f0; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #555; }
pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
ul.notes { font-size: 0.85em; color: #555; }
"""


def _img_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def render_html(
    title: str,
    tables: Sequence[Table],
    figures: Sequence[tuple[str, str | os.PathLike]],
    *,
    settings: Mapping[str, Any] | None = None,
    intro: str = "",
) -> str:
    """The report as one HTML string.

    Args:
        title: page title.
        tables: result tables (rendered with :meth:`Table.to_html`).
        figures: ``(caption, PNG path)``; each PNG is embedded as base64, so the file stands alone.
        settings: shown as indented JSON under "Settings".
        intro: a paragraph of plain text under the title.
    """
    e = html.escape
    stamp = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    parts = [
        "<!DOCTYPE html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        f"<title>{e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f"<p>Generated {e(stamp)}.</p>",
    ]
    if intro:
        parts.append(f"<p>{e(intro)}</p>")
    if tables:
        parts.append("<h2>Results</h2>")
        parts += [t.to_html() for t in tables]
    if figures:
        parts.append("<h2>Figures</h2>")
        for caption, path in figures:
            p = Path(path)
            parts.append(f"<figure>{_img_tag(p, caption)}<figcaption>{e(caption)}</figcaption></figure>")
    if settings:
        text = json.dumps(settings, indent=2, default=str)
        parts.append(f"<h2>Settings</h2><pre>{e(text)}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_html(
    path: str | os.PathLike,
    title: str,
    tables: Sequence[Table],
    figures: Sequence[tuple[str, str | os.PathLike]],
    *,
    settings: Mapping[str, Any] | None = None,
    intro: str = "",
    overwrite: bool = False,
) -> Path:
    """Write :func:`render_html` to ``path`` atomically; returns the path."""
    text = render_html(title, tables, figures, settings=settings, intro=intro)
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
