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
import typing
from collections.abc import Callable, Sequence
from typing import Any

from smu.core.errors import UsageError, shown

SEED_MAX = 2**32 - 1
"""The largest --seed and --forget-seed: per-epoch generators are seeded with seed × 1,000,003 + epoch,
which must stay within torch's 64 bits."""
SPEC_HELP = (
    "class:C, class:C:N, subclass:NAME, random:N, random:P%, indices:FILE or a saved forget.safetensors"
)
"""The forget-set specs ``smu.data.forget`` reads, as help and error messages name them (here, beside
SEED_MAX, so that the quick commands name them without importing torch)."""


def param(
    default: Any,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    choices: Sequence[str] | None = None,
    flag: str | None = None,
    tune: str | None = None,
) -> Any:
    """A dataclass field with a checked range (``gt`` > , ``ge`` >=, ``lt`` <, ``le`` <=) or a set of
    ``choices``, the CLI ``flag`` when it is not ``--field-name`` (e.g. ``--aug/--no-aug``), and the
    range ``smu tune`` searches by default, as ``LOW:HIGH`` or ``LOW:HIGH:log`` (:func:`parse_range`)."""
    meta = {"gt": gt, "ge": ge, "lt": lt, "le": le, "choices": tuple(choices) if choices else None}
    meta |= {"tune": tune} if tune else {}
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


def help_range(meta: Any) -> str:
    """The range as --help shows it, in Click's notation (as beside --seed): '[x>0]', '[0<x<=1]',
    '[multistep|cosine|constant]'; empty when none is declared."""
    if "choices" in meta:
        return f"[{'|'.join(meta['choices'])}]"
    low = (">", meta["gt"]) if "gt" in meta else (">=", meta["ge"]) if "ge" in meta else None
    high = ("<", meta["lt"]) if "lt" in meta else ("<=", meta["le"]) if "le" in meta else None
    if low and high:
        return f"[{low[1]:g}{low[0].replace('>', '<')}x{high[0]}{high[1]:g}]"
    side = low or high
    return f"[x{side[0]}{side[1]:g}]" if side else ""


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
    from smu.core.registry import suggest

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
        return "; ".join(
            f"{where(name)} {shown(value)} must be {need}" for name, value, need in self.problems
        )


class Checked:
    """Mix into a hyper-parameter dataclass: building it checks every declared range (and its
    ``check()`` for rules that tie fields together), raising one :class:`ConfigError` for all."""

    def __post_init__(self) -> None:
        found = problems(self)
        if found:
            raise ConfigError(found)


def config_problems(cls: type) -> list[str]:
    """What keeps a plug-in's config dataclass from working like a built-in's; empty when nothing does.

    Its defaults must build (every --help shows them, and a method runs with them), and declared ranges
    need :class:`Checked`, or --help would show ranges that nothing checks."""
    ranged = [name for name, meta in declared(cls).items() if {"gt", "ge", "lt", "le", "choices"} & set(meta)]
    if ranged and not issubclass(cls, Checked):
        return [
            f"its config declares ranges ({', '.join(ranged)}) but does not derive from "
            "smu.core.options.Checked"
        ]
    try:
        cls()
    except Exception as e:  # a plug-in's code; the tests build every built-in's
        return [f"its config fails with its own defaults ({type(e).__name__}: {e})"]
    return []


@functools.cache
def option_flag(cls: type, name: str, prefix: str = "") -> str:
    """The flag of field ``name``: declared, or ``--name`` (``--name/--no-name`` for a bool)."""
    flag = declared(cls)[name].get("flag")
    if flag is None:
        boolean = typing.get_type_hints(cls)[name] in (bool, bool | None)
        flag = f"{flag_of(name)}/--no-{flag_of(name)[2:]}" if boolean else flag_of(name)
    return "/".join(f"--{prefix}-{part[2:]}" for part in flag.split("/")) if prefix else flag


def parse_list(item: type, container: type, text: str, flag: str = "") -> Any:
    """'91,136' -> (91, 136)."""
    try:
        return container(item(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        what = "whole numbers" if item is int else "numbers"
        raise UsageError(
            f"{flag} {text!r} is not a comma-separated list of {what}".lstrip(), hint="e.g. 91,136"
        ) from None


def show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple | list) else str(value)


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


# ── Search spaces (smu tune) ────────────────────────────────────────────────────────────────────────


@dataclasses.dataclass(frozen=True)
class Space:
    """A range ``smu tune`` searches: [low, high], log-uniform when ``log``, whole numbers when
    ``integer`` (the field is an int)."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    def __str__(self) -> str:
        return f"{self.low:g}:{self.high:g}" + (":log" if self.log else "")


def parse_range(text: str, integer: bool = False) -> Space:
    """``LOW:HIGH`` or ``LOW:HIGH:log`` as a :class:`Space`; ValueError says what is wrong."""
    parts = text.strip().split(":")
    log = len(parts) == 3 and parts[2].strip().lower() == "log"
    if len(parts) not in (2, 3) or (len(parts) == 3 and not log):
        raise ValueError("is not LOW:HIGH or LOW:HIGH:log")
    try:
        low, high = float(parts[0]), float(parts[1])
    except ValueError:
        raise ValueError("needs numbers: LOW:HIGH or LOW:HIGH:log") from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError("needs finite bounds")
    if not low < high:
        raise ValueError("is an empty range: LOW must be below HIGH")
    if log and low <= 0:
        raise ValueError("is log-uniform, so LOW must be > 0")
    if integer and (low != int(low) or high != int(high)):
        raise ValueError("needs whole numbers for an integer option")
    return Space(low, high, log, integer)


def tunable(cls: type) -> dict[str, Space]:
    """The ranges a config class declares for ``smu tune`` (``param(..., tune=...)``), by field."""
    hints = {f.name: f.type for f in dataclasses.fields(cls)}
    return {
        name: parse_range(meta["tune"], integer=hints[name] in (int, "int"))
        for name, meta in declared(cls).items()
        if "tune" in meta
    }


def search_space(cls: type, changes: Sequence[str] = (), fixed: Sequence[str] = ()) -> dict[str, Space]:
    """The space to search: the declared ranges, narrowed or widened by ``changes`` (``name=LOW:HIGH[:log]``,
    any numeric option of ``cls``), less the options in ``fixed`` (given a value by the user). Every
    problem is a UsageError naming the option."""
    from smu.core.registry import suggest

    space = tunable(cls)
    hints = {f.name: f.type for f in dataclasses.fields(cls)}
    numeric = [n for n, t in hints.items() if t in (int, float, "int", "float")]
    for change in changes:
        name, sep, text = change.partition("=")
        name = name.strip().lstrip("-").replace("-", "_")
        if not sep:
            raise UsageError(
                f"--space {shown(change)} is not NAME=LOW:HIGH[:log]", hint="e.g. --space lr=1e-5:1e-1:log"
            )
        if name not in numeric:
            close = suggest(name, numeric)
            guess = f" (did you mean {close}?)" if close else ""
            raise UsageError(
                f"--space {shown(change)}: {name} is not a numeric option of this method{guess}",
                hint=f"its numeric options: {', '.join(numeric)}",
            )
        try:
            chosen = parse_range(text, integer=hints[name] in (int, "int"))
        except ValueError as e:
            raise UsageError(f"--space {shown(change)} {e}", hint="e.g. --space lr=1e-5:1e-1:log") from None
        meta = declared(cls)[name]
        if out_of_range(chosen.low, meta) or out_of_range(chosen.high, meta):
            raise UsageError(
                f"--space {shown(change)} leaves the range of {name}, which must be {requirement(meta)}"
            )
        space[name] = chosen
    for name in fixed:
        space.pop(name, None)
    if not space:
        raise UsageError(
            "nothing to tune: the method declares no range and --space adds none (or every one is fixed)",
            hint="add --space NAME=LOW:HIGH[:log]",
        )
    return space
