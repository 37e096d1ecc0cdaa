"""Name lookup with a did-you-mean, and the registries of methods: built-ins plus plug-ins.

A plug-in is another installed package that names a method object in the entry-point group
``smu.unlearning`` or ``smu.pruning`` (docs/PLUGINS.md). Its methods join the built-ins the first
time a registry is read; one that fails to load or to pass the checks is skipped with a one-line
warning naming its package, and the built-ins keep working.
"""

from __future__ import annotations

import contextlib
import difflib
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from smu.core.errors import SmuError, SmuWarning, UnknownNameError, shown

T = TypeVar("T")


def suggest(name: object, choices: list[str]) -> str | None:
    """The choice closest to ``name`` (ignoring case), or None when nothing is close."""
    if len(str(name)) > 100:  # no name is that long, and difflib's time grows with the product of lengths
        return None
    lowered = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(str(name).lower(), list(lowered), n=1, cutoff=0.5)
    return lowered[close[0]] if close else None


def lookup(table: Mapping[str, T], name: str, kind: str) -> T:
    """Return ``table[name]`` or raise an error that suggests the closest valid name."""
    if name in table:
        return table[name]
    close = suggest(name, list(table))
    guess = f"did you mean {close!r}? " if close else ""
    raise UnknownNameError(f"unknown {kind} {shown(name)}", hint=f"{guess}choices: {', '.join(table)}")


class PluginWarning(SmuWarning):
    """A plug-in that could not be used; the CLI shows it as one line on stderr."""


class PluginError(SmuError):
    """A plug-in's own code raised something other than an SmuError: one line naming the plug-in and its
    package (the traceback, chained, with SMU_DEBUG=1), since the bug is theirs to fix, not the user's."""


class Registry(Mapping[str, T]):
    """``name -> method``: the built-ins in their order, then the plug-ins of entry-point ``group``.

    A plug-in's object must be a ``cls`` with a name and a summary, and pass ``check(method, registry)``
    (what is wrong with it, empty when nothing is); the built-ins are checked by the tests instead.
    """

    def __init__(
        self,
        group: str,
        cls: type,
        kind: str,
        builtins: Sequence[T],
        check: Callable[[Any, Registry], list[str]],
        resolve: Callable[[str], T | None] | None = None,
    ):
        self.group, self.cls, self.kind, self._check = group, cls, kind, check
        self._resolve = resolve
        """Names that are specs rather than registered names (``FILE.py:FUNCTION``): ``resolve(name)`` gives
        their method, only in :meth:`get_spec` (what a user typed), or None for a name that is no spec."""
        self._methods: dict[str, T] = {m.name: m for m in builtins}  # type: ignore[attr-defined]
        self._loaded = False
        self.packages: dict[str, str] = {}
        """name -> package, for the plug-ins only."""

    def _load(self) -> dict[str, T]:
        if not self._loaded:
            self._loaded = True  # first: a plug-in reading the registry while it loads sees the built-ins
            for entry, method in load_plugins(self.group):
                problems = self.declaration_problems(method) or self._check(method, self)
                if not problems and method.name in self._methods:
                    problems = [f"the name {method.name!r} is taken"]
                if not problems and entry.name != method.name:  # the CLI checks --method by entry names
                    problems = [f"its entry point is named {entry.name!r}, its method {method.name!r}"]
                if problems:
                    where = f"plug-in {entry.name!r} from package {package_of(entry)!r}"
                    warnings.warn(f"{where} skipped: {'; '.join(problems)}", PluginWarning, stacklevel=2)
                    continue
                self._methods[method.name] = method
                self.packages[method.name] = package_of(entry)
        return self._methods

    def declaration_problems(self, method: Any) -> list[str]:
        """What every method object must be: of the registry's class, with a name and a summary."""
        if not isinstance(method, self.cls):
            return [f"it is of type {type(method).__name__}, not {self.cls.__name__} (from {self.group})"]
        if not method.name or not isinstance(method.name, str) or not method.summary:
            return ["it needs a name and a one-line summary"]
        if ":" in method.name:
            return [f"its name {method.name!r} holds a colon, which names a function (FILE.py:FUNCTION)"]
        return []

    def __getitem__(self, name: str) -> T:
        return self._load()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def get_spec(self, name: str) -> T:
        """The method called ``name``, or an error that suggests the closest one. A spec the registry's
        ``resolve`` knows (a user's function) is resolved here, and only here: iterating, ``in`` and
        ``[]`` see the registered methods alone, so a name read from a file never loads code."""
        table = self._load()
        if name not in table and self._resolve is not None and isinstance(name, str):
            found = self._resolve(name)
            if found is not None:
                return found
        return lookup(table, name, self.kind)

    @contextlib.contextmanager
    def plugin_code(self, name: str) -> Iterator[None]:
        """Around a call into method ``name``'s own code (its run, its config's checks): a plug-in's
        unexpected exception becomes a :class:`PluginError` naming it and its package. SmuErrors pass as
        they are (they already read well), and so does everything a built-in raises: its bugs are ours,
        and a traceback is what we need to fix them."""
        try:
            yield
        except SmuError:
            raise
        except Exception as e:
            package = self.packages.get(name)  # filled when the registry loaded, before any lookup
            if package is None or lost_rank(e):
                raise
            raise PluginError(
                f"plug-in {self.kind} {name!r} (package {package}) failed: {type(e).__name__}: {e}",
                hint=f"SMU_DEBUG=1 shows the traceback; report it to the authors of {package}",
            ) from e


def lost_rank(e: Exception) -> bool:
    """Under torchrun, a collective that failed because another rank stopped: the CLI reports that."""
    if not isinstance(e, RuntimeError):
        return False
    from smu.execution.distributed import lost  # only here: the quick commands never import torch

    return lost(e) is not None


def package_of(entry: Any) -> str:
    dist = getattr(entry, "dist", None)
    return dist.name if dist is not None else entry.value.split(":")[0].split(".")[0]


def load_plugins(group: str) -> list[tuple[Any, Any]]:
    """(entry point, loaded object) for every entry point of ``group`` that imports."""
    from importlib.metadata import entry_points

    found = []
    for entry in entry_points(group=group):
        try:
            found.append((entry, entry.load()))
        except Exception as e:  # a plug-in's import error must not take smu down with it
            first = str(e).splitlines()[0][:200] if str(e) else ""
            warnings.warn(
                f"plug-in {entry.name!r} from package {package_of(entry)!r} failed to load "
                f"({type(e).__name__}: {first}); skipped",
                PluginWarning,
                stacklevel=2,
            )
    return found
