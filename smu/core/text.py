"""Text that reaches a terminal or a JSON document: the length limits of a line and a cell, the escape
of control characters, and JSON's lack of NaN. No Rich, no torch: every layer may use it."""

from __future__ import annotations

import math
from typing import Any

LINE = 500
"""The most characters of one error, warning or progress line."""
CELL = 1000
"""The most characters shown in one table cell (``--json`` carries the whole value)."""


def printable(text: str, limit: int | None = None) -> str:
    """``text`` as it may reach a terminal: every control or format character (ESC, BEL, CR, newlines,
    bidi overrides, zero-width marks) written as its Python escape, so a file cannot move the cursor,
    retitle the window, hide text or add lines; beyond ``limit`` characters, cut with a count of the
    rest. The one gate for strings that come from files, their names and their metadata."""
    if limit is not None and len(text) > limit:
        text = f"{text[:limit]}… ({len(text) - limit:,} more characters)"
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def jsonable(obj: Any) -> Any:
    """NaN/Inf are not JSON: they become null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    return obj
