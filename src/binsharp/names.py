"""One resolver for names typed by users (methods, sensors, datasets, models), with suggestions.

:func:`resolve_name` accepts a name case-insensitively (``_`` and ``-`` interchangeable, surrounding blanks
ignored) and returns the canonical one; an unknown name raises :class:`~binsharp.errors.BinsharpError`
with the closest known names ("did you mean awlp?") and the full list.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

from binsharp.errors import BinsharpError


def name_key(name: str) -> str:
    """Lookup form of a name: stripped, lower case, ``_`` written as ``-``."""
    return str(name).strip().lower().replace("_", "-")


def _table(known: Iterable[str] | Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """Lookup key -> canonical name (canonical names and aliases), and the canonical names in order."""
    aliases = dict(known) if isinstance(known, Mapping) else {}
    canonical = list(dict.fromkeys(aliases.values())) if aliases else list(known)
    table = {name_key(a): c for a, c in aliases.items()}
    table.update({name_key(c): c for c in canonical})
    return table, canonical


def suggestions(name: str, known: Iterable[str] | Mapping[str, str], n: int = 3) -> list[str]:
    """Up to ``n`` canonical names closest to ``name`` (difflib's close matches among names and aliases)."""
    table, _ = _table(known)
    close = difflib.get_close_matches(name_key(name), list(table), n=2 * n, cutoff=0.6)
    return list(dict.fromkeys(table[k] for k in close))[:n]


def unknown_name_message(name: str, known: Iterable[str] | Mapping[str, str], what: str) -> str:
    """``unknown <what> 'x'; did you mean a? (known: a, b, c)``."""
    _, canonical = _table(known)
    close = suggestions(name, known)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return f"unknown {what} {name!r}{hint} (known: {', '.join(canonical)})"


def resolve_name(name: str, known: Iterable[str] | Mapping[str, str], *, what: str) -> str:
    """The canonical name that ``name`` stands for.

    Args:
        name: the name as typed.
        known: canonical names, or a mapping alias -> canonical name (the canonical names themselves are
            always accepted).
        what: what the names are (``"method"``, ``"sensor"``, ...), for the error message.

    Raises:
        BinsharpError: ``name`` is unknown; the message suggests the closest names and lists them all.
    """
    known = known if isinstance(known, Mapping) else list(known)
    table, _ = _table(known)
    hit = table.get(name_key(name))
    if hit is None:
        raise BinsharpError(unknown_name_message(name, known, what))
    return hit
