"""Name lookup in the plain-dict registries, with a did-you-mean."""

from __future__ import annotations

import difflib
import functools
from collections.abc import Mapping
from typing import TypeVar

from smu.errors import UnknownNameError

T = TypeVar("T")


def suggest(name: object, choices: list[str]) -> str | None:
    """The choice closest to ``name`` (ignoring case), or None when nothing is close."""
    lowered = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(str(name).lower(), list(lowered), n=1, cutoff=0.5)
    return lowered[close[0]] if close else None


def lookup(table: Mapping[str, T], name: str, kind: str) -> T:
    """Return ``table[name]`` or raise an error that suggests the closest valid name."""
    if name in table:
        return table[name]
    close = suggest(name, list(table))
    guess = f"did you mean {close!r}? " if close else ""
    raise UnknownNameError(f"unknown {kind} {name!r}", hint=f"{guess}choices: {', '.join(table)}")


@functools.cache
def field_help(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass: the one place hyper-parameters are explained.

    CLI help and recipe validation both read it, so a flag's help and the field it sets cannot drift.
    """
    import ast
    import inspect
    import textwrap

    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__[:-1]):  # base classes first, so a subclass's text wins
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        body = tree.body[0].body  # type: ignore[attr-defined]
        for stmt, nxt in zip(body, body[1:], strict=False):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[stmt.target.id] = " ".join(nxt.value.value.split())
    return docs
