"""From a library function to a Typer command: its keyword parameters become the options, the
generated ones are added, the result is shown as a table, JSON or paths, and errors become one line.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import sys
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from smu.commands.common import Json, Quiet
from smu.commands.generate import Generated
from smu.errors import SmuError, UsageError
from smu.options import flag_of


@dataclass(frozen=True)
class Alias:
    """An old spelling kept for one release: a hidden option (or, with ``argument``, a positional)
    that sets ``to`` and says once on stderr which spelling to use."""

    flag: str
    to: str
    annotation: Any = str | None
    argument: bool = False


def cli(
    fn: Callable[..., dict[str, Any]],
    *,
    render: Callable[..., Any],
    paths: Callable[[dict[str, Any]], list[str]],
    generated: list[Generated] = (),
    aliases: tuple[Alias, ...] = (),
    render_options: dict[str, Any] | None = None,
    fail_when: Callable[[dict[str, Any]], bool] | None = None,
) -> Callable[..., None]:
    """A Typer command that calls ``fn``, shows its result, and turns errors into one line.

    The command's options are ``fn``'s keyword parameters (``reporter`` and ``**options`` excepted),
    the ``generated`` ones (passed on only when given), ``render_options`` (name -> Annotated type,
    passed to ``render``), the aliases, ``--json`` and ``-q``.
    """
    own = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for p in inspect.signature(fn, eval_str=True).parameters.values()
        if p.name != "reporter" and p.kind is not inspect.Parameter.VAR_KEYWORD
    ]
    # A required option that an old spelling can also give is checked after the aliases are read.
    required = {p.name for p in own if p.default is inspect.Parameter.empty} & {a.to for a in aliases}
    own = [optional(p) if p.name in required else p for p in own]
    taken = {p.name for p in own}
    extra = [g for g in generated if g.name not in taken]
    params = own + [
        inspect.Parameter(g.name, inspect.Parameter.KEYWORD_ONLY, default=g.default, annotation=g.annotation)
        for g in extra
    ]
    for name, annotation in (render_options or {}).items():
        default = False if typing.get_args(annotation)[0] is bool else None
        params.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        )
    for alias in aliases:
        marker = typer.Argument(hidden=True) if alias.argument else typer.Option(alias.flag, hidden=True)
        params.append(
            inspect.Parameter(
                alias_name(alias),
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[alias.annotation, marker],
            )
        )
    params += [
        inspect.Parameter("json_out", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Json),
        inspect.Parameter("quiet", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Quiet),
    ]

    @functools.wraps(fn)
    def command(**kwargs: Any) -> None:
        from smu.ui import emit, reporting

        as_json, quiet = kwargs.pop("json_out"), kwargs.pop("quiet")
        shown = {name: kwargs.pop(name) for name in render_options or {}}
        with errors_shown():
            for alias in aliases:
                use_alias(alias, kwargs)
            for name in required:
                if kwargs[name] is None:
                    raise UsageError(f"missing option {flag_of(name)}", hint="see --help")
            for g in extra:
                value = kwargs.pop(g.name)
                if value is not None:
                    kwargs[g.name] = g.convert(value) if g.convert is not None else value
            with reporting(quiet) as reporter:
                result = fn(**kwargs, reporter=reporter)
        emit(
            result, as_json=as_json, quiet=quiet, paths=paths(result), render=lambda: render(result, **shown)
        )
        if fail_when is not None and fail_when(result):
            raise typer.Exit(1)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command


def optional(p: inspect.Parameter) -> inspect.Parameter:
    kind, *meta = typing.get_args(p.annotation)
    return p.replace(default=None, annotation=Annotated[(kind | None, *meta)])


def alias_name(alias: Alias) -> str:
    return "alias_" + alias.flag.lstrip("-").replace("-", "_")


def use_alias(alias: Alias, kwargs: dict[str, Any]) -> None:
    value = kwargs.pop(alias_name(alias))
    if value is None:
        return
    new = flag_of(alias.to)
    old = f"{alias.flag.upper()} as a positional argument" if alias.argument else alias.flag
    current = kwargs.get(alias.to)
    if current is not None and current != value:
        raise UsageError(f"{old} and {new} disagree ({value!r} vs {current!r})", hint=f"give {new} only")
    kwargs[alias.to] = value
    from smu.ui import warn

    warn(f"{old} is now spelled {new}; the old spelling goes away in the next release")


@contextlib.contextmanager
def errors_shown() -> Iterator[None]:
    """SmuError as one line on stderr with its exit code; a traceback only with SMU_DEBUG=1."""
    from smu.ui import show_error

    try:
        yield
    except SmuError as e:
        if os.environ.get("SMU_DEBUG") == "1":
            raise
        show_error(e)
        raise typer.Exit(e.exit_code) from None
    except RuntimeError as e:  # under torchrun: a collective failed because a rank died or timed out
        from smu.execution.distributed import lost

        stopped = lost(e)
        if stopped is None or os.environ.get("SMU_DEBUG") == "1":
            raise
        show_error(stopped)
        raise typer.Exit(stopped.exit_code) from None
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        raise typer.Exit(130) from None
