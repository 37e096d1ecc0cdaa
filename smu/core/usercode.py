"""A function a user names, loaded from a file or a module: ``FILE.py:FUNCTION`` or
``python:PACKAGE.MODULE:FUNCTION``, with the sha256 of its file (so that a record of a run can tell that
the code changed since).

Only a name the user gave (an option, a recipe they run, an API argument) is loaded: a name read from a
file's metadata never is. A file runs as a module of its own, from the very bytes that were hashed, and
again only once it changed; a module is imported as Python does (from ``sys.path``), its file hashed
when first loaded. Every failure is one line naming the spec. Imports neither torch nor anything that does.
"""

from __future__ import annotations

import hashlib
import importlib
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smu.core.errors import SmuError, UsageError, shown
from smu.core.registry import suggest
from smu.core.text import printable

FORMS = "FILE.py:FUNCTION or python:PACKAGE.MODULE:FUNCTION"
DEBUG = "SMU_DEBUG=1 shows the traceback; nothing was written"


class UserCodeError(SmuError):
    """A user's code failed: its module raised on import, or the function raised, ran too long or
    returned something unusable. One line; the traceback, chained, with SMU_DEBUG=1."""


@dataclass(frozen=True)
class UserFunction:
    spec: str
    function: Callable[..., Any]
    file: str
    """The file it was loaded from (absolute; empty for a module without one)."""
    sha256: str
    """Of that file's bytes (empty without a file)."""


MODULES: dict[tuple[str, str], types.ModuleType] = {}
"""(file, sha256) -> the module its code made: a file is run again only when it changed."""
MODULE_SHA: dict[str, str] = {}
"""python: module name -> the sha256 of its source file when first loaded."""


def load_function(spec: str, *, label: str = "method", hint: str = "") -> UserFunction:
    """The function ``spec`` names, or a one-line error; ``label`` says what it is for (``method``)."""
    what = f"{label} {shown(spec)}"
    module_name, _, name = spec.removeprefix("python:").rpartition(":")
    if spec.startswith("python:"):
        parts_ok = module_name and all(p.isidentifier() for p in module_name.split("."))
    else:
        parts_ok = module_name.endswith(".py")
    if not (parts_ok and name.isidentifier()):
        raise UsageError(f"{what} is neither a {label}'s name nor {FORMS}", hint=hint or None)
    if spec.startswith("python:"):
        module, where, sha = import_module(what, module_name)
    else:
        module, where, sha = run_file(what, module_name, hint)
    fn = getattr(module, name, None)
    if fn is None:
        found = [k for k, v in vars(module).items() if callable(v) and not k.startswith("_")]
        close = suggest(name, found)
        raise UsageError(
            f"{what}: {where} has no function {name!r}",
            hint=(f"did you mean {close!r}? " if close else "") + f"it has {', '.join(found[:8]) or 'none'}",
        )
    if not callable(fn):
        kind = type(fn).__name__
        raise UsageError(f"{what}: {name!r} is of type {kind}, not a function", hint=hint or None)
    return UserFunction(spec, fn, str(getattr(module, "__file__", None) or ""), sha)


def run_file(what: str, text: str, hint: str) -> tuple[types.ModuleType, str, str]:
    """Run the file as a module of its own: the bytes hashed are the bytes run."""
    path = Path(text).expanduser()
    if not path.is_file():
        raise UsageError(f"{what}: no file {printable(str(path), 200)!r}", hint=hint or None)
    source, where = path.read_bytes(), str(path.resolve())
    sha = hashlib.sha256(source).hexdigest()
    if (where, sha) not in MODULES:
        module = types.ModuleType(f"smu_user_{sha[:16]}")
        module.__file__ = where
        sys.modules[module.__name__] = module  # dataclasses and typing look their module up there
        folder = str(path.resolve().parent)
        sys.path.insert(0, folder)  # as `python FILE.py` would have it: the modules beside it import
        try:
            exec(compile(source, where, "exec"), module.__dict__)
        except Exception as e:
            del sys.modules[module.__name__]
            raise UserCodeError(f"{what}: importing {path.name} raised {said(e)}", hint=DEBUG) from e
        finally:
            sys.path.remove(folder)
        MODULES[(where, sha)] = module
    return MODULES[(where, sha)], path.name, sha


def import_module(what: str, name: str) -> tuple[types.ModuleType, str, str]:
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and (name == e.name or name.startswith(f"{e.name}.")):
            raise UsageError(
                f"{what}: no module {name!r} to import",
                hint="install its package, or put its folder on PYTHONPATH",
            ) from None
        raise UserCodeError(f"{what}: importing {name} raised {said(e)}", hint=DEBUG) from e
    except Exception as e:
        raise UserCodeError(f"{what}: importing {name} raised {said(e)}", hint=DEBUG) from e
    if name not in MODULE_SHA:
        source = getattr(module, "__file__", None)
        MODULE_SHA[name] = hashlib.sha256(Path(source).read_bytes()).hexdigest() if source else ""
    return module, name, MODULE_SHA[name]


def said(e: BaseException) -> str:
    """``ValueError: its message``, the first line of it, printable."""
    text = str(e).strip()
    first = text.splitlines()[0] if text else ""
    return printable(f"{type(e).__name__}: {first}".rstrip(": "), 300)
