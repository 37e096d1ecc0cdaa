"""Hyper-parameters declared once: a dataclass field is a CLI option, a recipe key, an API keyword and
a range check.

A field's docstring is its help text (:func:`field_help`); :func:`param` adds what a docstring cannot
say: the range, the choices, the CLI flag where it is not ``--field-name``. A :class:`Checked`
dataclass checks every range when it is built and reports all problems at once, so the CLI, recipes
and the Python API refuse the same values with the same words, before any compute.

Imports neither torch nor anything that does: ``smu --help`` and ``smu recipes`` stay fast.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

from smu.errors import UsageError


def param(
    default: Any,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    choices: Sequence[str] | None = None,
    flag: str | None = None,
) -> Any:
    """A dataclass field with a checked range (``gt`` > , ``ge`` >=, ``lt`` <, ``le`` <=) or a set of
    ``choices``, and the CLI ``flag`` when it is not ``--field-name`` (e.g. ``--aug/--no-aug``)."""
    meta = {"gt": gt, "ge": ge, "lt": lt, "le": le, "choices": tuple(choices) if choices else None}
    meta = {k: v for k, v in meta.items() if v is not None} | ({"flag": flag} if flag else {})
    if isinstance(default, list | dict | set):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def requirement(meta: Any) -> str:
    """The range of a field in words: '> 0', 'in (0, 1)', 'one of conv, all'."""
    if "choices" in meta:
        return "one of " + ", ".join(meta["choices"])
    low = ("(", meta["gt"]) if "gt" in meta else ("[", meta["ge"]) if "ge" in meta else None
    high = (meta["lt"], ")") if "lt" in meta else (meta["le"], "]") if "le" in meta else None
    if low and high:
        return f"in {low[0]}{low[1]:g}, {high[0]:g}{high[1]}"
    if low:
        return f"{'>' if low[0] == '(' else '>='} {low[1]:g}"
    if high:
        return f"{'<' if high[1] == ')' else '<='} {high[0]:g}"
    return ""


def out_of_range(value: Any, meta: Any) -> bool:
    if value is None or isinstance(value, bool):
        return False
    if "choices" in meta:
        return value not in meta["choices"]
    if not isinstance(value, int | float):
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return True
    return (
        ("gt" in meta and not value > meta["gt"])
        or ("ge" in meta and not value >= meta["ge"])
        or ("lt" in meta and not value < meta["lt"])
        or ("le" in meta and not value <= meta["le"])
    )


Problem = tuple[str, Any, str]
"""(field name, value, what it must be): one thing wrong with a config."""


@functools.cache
def declared(cls: type) -> dict[str, Any]:
    """Each field's range and flag, inherited: a subclass that only changes a default (``epochs: int
    = 10``) keeps the range its base class declared."""
    meta: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            for f in dataclasses.fields(klass):
                if f.metadata or f.name not in meta:
                    meta[f.name] = f.metadata
    return meta


def problems(cfg: Any) -> list[Problem]:
    """Every field of ``cfg`` outside its declared range, then the class's own cross-field checks."""
    from smu.registry import suggest

    found: list[Problem] = []
    ranges = declared(type(cfg))
    for f in dataclasses.fields(cfg):
        value, meta = getattr(cfg, f.name), ranges[f.name]
        items = value if isinstance(value, list | tuple) else [value]
        if any(out_of_range(v, meta) for v in items):
            need = requirement(meta) or "finite"
            close = suggest(value, list(meta["choices"])) if "choices" in meta else None
            found.append((f.name, value, need + (f" (did you mean {close!r}?)" if close else "")))
    if hasattr(cfg, "check"):
        found += cfg.check()
    return found


def flag_of(name: str) -> str:
    return f"--{name.replace('_', '-')}"


class ConfigError(UsageError):
    """Values outside their declared ranges; each problem keeps its field so that a recipe can name
    its own key (``unlearn.ff.alpha``) where the CLI names the flag (``--alpha``)."""

    def __init__(self, found: list[Problem], where: Callable[[str], str] = flag_of):
        self.problems = found
        super().__init__(self.describe(where), hint="see --help for each option's range")

    def describe(self, where: Callable[[str], str]) -> str:
        return "; ".join(f"{where(name)} {value!r} must be {need}" for name, value, need in self.problems)


class Checked:
    """Mix into a hyper-parameter dataclass: building it checks every declared range (and its
    ``check()`` for rules that tie fields together), raising one :class:`ConfigError` for all."""

    def __post_init__(self) -> None:
        found = problems(self)
        if found:
            raise ConfigError(found)


@functools.cache
def field_help(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass: the one place hyper-parameters are explained.

    CLI help, recipe validation and the docs all read it, so a flag's help and the field it sets
    cannot drift.
    """
    import ast
    import inspect
    import textwrap

    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__[:-1]):  # base classes first, so a subclass's text wins
        if not dataclasses.is_dataclass(klass):
            continue
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
