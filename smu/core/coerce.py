"""Typed values from plain data (YAML, JSON): checked against dataclass annotations, every problem collected.

Used for recipes and for method options given as a mapping, so ``alpha: 5e-4`` (which YAML reads as a
string) becomes a float and ``epochs: ten`` is reported rather than crashing an hour later.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from smu.core.errors import SmuError, shown
from smu.core.options import ConfigError
from smu.core.registry import suggest


def build(cls: type, raw: Any, where: str, errors: list[str]) -> Any:
    """Turn a YAML mapping into ``cls``, appending every problem to ``errors``."""
    if not isinstance(raw, dict):
        errors.append(f"{where or 'recipe'} must be a mapping, got {shown(raw)}")
        return cls()
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    values = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        path = f"{where}{key}"
        if name not in names:
            close = suggest(name, names)
            errors.append(
                f"unknown key {shown(path)}" + (f" (did you mean {where + close!r}?)" if close else "")
            )
            continue
        values[name] = convert(hints[name], value, path, errors)
    try:
        return cls(**values)
    except ConfigError as e:  # values out of range: each named by its key
        errors.append(e.describe(lambda name: f"{where}{name}"))
    except (TypeError, SmuError) as e:
        errors.append(f"{where or 'recipe'}: {e}")
    return cls()


def convert(kind: Any, value: Any, path: str, errors: list[str]) -> Any:
    """Check ``value`` against the annotation ``kind`` (and build nested dataclasses)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if dataclasses.is_dataclass(kind):
        return build(kind, value, f"{path}.", errors)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        kind = next(a for a in args if a is not type(None))
        return convert(kind, value, path, errors)
    if origin in (list, tuple):
        if value is None or isinstance(value, dict):
            errors.append(f"{path} must be a list, got {shown(value)}")
            return None
        value = value if isinstance(value, list | tuple) else [value]  # seeds=1 means [1]
        items = [convert(args[0], v, f"{path}[{i}]", errors) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            errors.append(f"{path} must be a mapping, got {shown(value)}")
            return {}
        inner = args[1] if len(args) == 2 else Any
        if typing.get_origin(inner) is dict:  # a method's options: "retrain:" alone means none
            return {
                k: convert(inner, {} if v is None else v, f"{path}.{k}", errors) for k, v in value.items()
            }
        return {k: convert(inner, v, f"{path}.{k}", errors) for k, v in value.items()}
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind is float and isinstance(value, str):
        try:  # YAML reads 5e-4 (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if kind in (int, float, str, bool) and (
        not isinstance(value, kind) or (kind is int and isinstance(value, bool))
    ):
        errors.append(f"{path} must be {kind.__name__}, got {shown(value)}")
        return None
    return value
