"""Unlearning methods: the registry every command, recipe and the Python API read.

Each method is one file that states its update rule and ends with its declaration
(``METHOD = UnlearnMethod(...)``); the engine owns the training loop, masks and divergence checks.
Defaults are the paper's CIFAR-10 settings. Methods of other packages join through the entry-point
group ``smu.unlearning`` (docs/PLUGINS.md).
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import typing
from collections.abc import Callable
from typing import Any

from smu.core.coerce import convert
from smu.core.errors import UsageError
from smu.core.names import UNLEARNING_GROUP
from smu.core.options import ConfigError, flag_of
from smu.core.registry import Registry, suggest
from smu.methods.unlearning import competition
from smu.methods.unlearning.base import NEEDS, Context, UnlearnData, UnlearnMethod, method_problems
from smu.methods.unlearning.competition import is_function

__all__ = [
    "METHODS",
    "NEEDS",
    "Context",
    "UnlearnData",
    "UnlearnMethod",
    "code_identity",
    "focus_of",
    "folder_name",
    "is_function",
    "make_config",
    "offered",
]

ORDER = (
    *("retrain", "finetune", "gradient_ascent", "fisher", "influence", "l1_sparse"),  # the paper's six
    *("random_label", "salun", "scrub", "neggrad_plus", "ssd", "boundary_shrink", "boundary_expand"),
    *("bad_teacher", "unsir", "amnesiac", "lf_ssd", "jit"),  # the baselines other frameworks ship
)
"""Where the built-in methods are listed (help, README, recipes' "all"): the paper's six, then the
methods that came after it in order of publication. A method's module need not be named here: any
module of this package that declares ``METHOD`` is found, after these and before the baseline."""
BASELINE = "none"


def builtin_methods() -> list[UnlearnMethod]:
    """The ``METHOD`` of every module of this package, in :data:`ORDER`; others by module name, then the
    do-nothing baseline. Adding a method is adding its file."""
    names = [m.name for m in pkgutil.iter_modules(__path__) if m.name not in ("base", "competition")]
    rest = sorted(n for n in names if n not in ORDER and n != BASELINE)
    modules = [importlib.import_module(f"{__name__}.{n}") for n in (*ORDER, *rest, BASELINE)]
    return [m.METHOD for m in modules if hasattr(m, "METHOD")]


METHODS: Registry[UnlearnMethod] = Registry(
    UNLEARNING_GROUP,
    UnlearnMethod,
    "unlearning method",
    builtin_methods(),
    method_problems,
    resolve=competition.resolve,
)
"""name -> method: the paper's six, the methods that came after it, the do-nothing baseline, then
plug-ins. ``METHODS.get_spec`` also takes a user's function, ``FILE.py:FUNCTION`` or
``python:MODULE:FUNCTION`` (:mod:`smu.methods.unlearning.competition`), which is not listed."""


def offered() -> dict[str, UnlearnMethod]:
    """The methods whose options a command takes: the registered ones, then a user's function, whose
    options are the same whatever the function (listed as ``FILE.py:FUNCTION``; nothing is loaded)."""
    return dict(METHODS) | {competition.PATTERN: competition.TEMPLATE}


def focus_of(method: str | None) -> str | None:
    """The entry of :func:`offered` whose options ``--method X --help`` shows."""
    return competition.PATTERN if method and is_function(method) else method


def folder_name(method: str) -> str:
    """A method as one folder name: a registered method's name, or a user's function's spec with what a
    path cannot hold made ``-`` (``tests/sol.py:fn`` -> ``tests-sol.py-fn``)."""
    return competition.folder_name(method) if is_function(method) else method


def code_identity(method: str) -> dict[str, str]:
    """What names a method's code in a cached step's key: nothing for a registered method (the keys of
    its steps stay as they were), the sha256 of a user's function's file, so that a step of a changed
    file runs again instead of being reused."""
    if not is_function(method):
        return {}
    return {"code_sha256": METHODS.get_spec(method).code["sha256"]}


def option_names(config: type) -> list[str]:
    return [f.name for f in dataclasses.fields(config)]


def make_config(method: str, given: dict[str, Any], where: Callable[[str], str] = flag_of) -> Any:
    """The method's config with the options the user gave (None = keep the method's default).

    An option the method does not have is a usage error, so a typo'd or misplaced option never
    silently does nothing; ``where`` names an option the way the user wrote it (a flag, a recipe key).
    """
    spec = METHODS.get_spec(method)
    mine = option_names(spec.config)
    given = {k: v for k, v in given.items() if v is not None}
    for key in given:
        if key not in mine:
            users = [m for m, s in offered().items() if key in option_names(s.config)]
            if users:
                raise UsageError(
                    f"{where(key)} does not apply to --method {method}",
                    hint=f"it is an option of {', '.join(users)}; smu unlearn --method {method} --help lists "
                    f"{method}'s",
                )
            close = suggest(key, sorted({n for s in offered().values() for n in option_names(s.config)}))
            guess = f" (did you mean {where(close)}?)" if close else ""
            raise UsageError(
                f"unknown option {where(key)} for --method {method}{guess}",
                hint=f"smu unlearn --method {method} --help lists its options",
            )
    hints, errors = typing.get_type_hints(spec.config), []
    values = {k: convert(hints[k], v, where(k), errors) for k, v in given.items()}
    if errors:
        raise UsageError("; ".join(errors), hint=f"smu unlearn --method {method} --help lists the options")
    try:
        with METHODS.plugin_code(method):
            return spec.config(**values)
    except ConfigError as e:
        raise ConfigError(e.problems, where) from None
