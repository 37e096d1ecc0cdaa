"""From a workflow to a Typer command: its parameters become the options (spelled by the command's
table of CLI types), the generated ones are added, the result is shown as a table, JSON or paths, and
errors become one line."""

from __future__ import annotations

import contextlib
import inspect
import os
import shlex
import typing
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import typer

from smu.cli.flags import Json, Quiet
from smu.cli.generate import Generated
from smu.cli.interrupt import by_ctrl_c
from smu.core.errors import SmuError, left_folder


def cli(
    fn: Callable[..., dict[str, Any]],
    *,
    options: Mapping[str, Any] | None = None,
    render: Callable[..., Any],
    paths: Callable[[dict[str, Any]], list[str]],
    generated: list[Generated] = (),
    render_options: dict[str, Any] | None = None,
    fail_when: Callable[[dict[str, Any]], bool] | None = None,
    again: str | None = None,
) -> Callable[..., None]:
    """A Typer command that calls the workflow ``fn``, shows its result, and turns errors into one line.

    Every parameter of ``fn`` is an option, spelled and explained by ``options`` (parameter name ->
    the Typer type: ``Annotated[Path, typer.Option("--model", help=...)]``), with ``fn``'s default;
    ``config``, ``reporter`` and ``**options`` are for library callers only. Without ``options``,
    ``fn`` is a plain Typer function whose annotations are the CLI types (the small commands). Then
    the ``generated`` options (method and training options, passed on only when given),
    ``render_options`` (name -> Typer type, passed to ``render``), ``--json`` and ``-q``. ``again`` says
    how to continue a run Ctrl-C cut short in its folder ``{out}`` (:data:`RESUME`); None for a command
    that leaves no run to continue.
    """
    own = []
    for p in inspect.signature(fn, eval_str=options is None).parameters.values():
        if p.name in LIBRARY_ONLY or p.kind is inspect.Parameter.VAR_KEYWORD:
            continue
        if options is not None and p.name not in options:
            raise TypeError(f"{fn.__qualname__}: parameter {p.name!r} has no CLI option")
        cli_type = p.annotation if options is None else options[p.name]
        own.append(
            inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=p.default, annotation=cli_type)
        )
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
    params += [
        inspect.Parameter("json_out", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Json),
        inspect.Parameter("quiet", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Quiet),
    ]

    def command(**kwargs: Any) -> None:
        from smu.cli.ui import emit, reporting

        as_json, quiet = kwargs.pop("json_out"), kwargs.pop("quiet")
        shown = {name: kwargs.pop(name) for name in render_options or {}}
        with errors_shown(again):
            for g in extra:
                value = kwargs.pop(g.name)
                if value is not None:
                    kwargs[g.name] = g.convert(value) if g.convert is not None else value
            with reporting(quiet) as reporter:
                result = fn(**kwargs, reporter=reporter)
        with errors_shown(None):  # the run is done: an interruption now only cuts the tables short
            emit(
                result,
                as_json=as_json,
                quiet=quiet,
                paths=paths(result),
                render=lambda: render(result, **shown),
            )
        if fail_when is not None and fail_when(result):
            raise typer.Exit(1)

    # Typer reads a command's options only from a signature: the workflow's parameters with their CLI
    # types, then the options made from the method registry at run time (plug-ins included). Typer's own
    # parameter builder is private, and click options built by hand would change help and error texts.
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = fn.__doc__
    command.workflow = fn  # type: ignore[attr-defined]
    return command


RESUME = "the same command with --out {out} --resume continues this run, with --force starts it over"
"""How ``smu prune`` and ``smu unlearn`` continue: from the last checkpoint."""
START_OVER = "the same command with --out {out} --force starts it over"
"""How a command without ``--resume`` runs again in the same folder."""
STARTED = "Interrupted before anything was saved; the same command starts again"
"""The line for a run cut short before its folder held anything (the folder is removed again)."""

LIBRARY_ONLY = ("config", "reporter")
"""Parameters of a workflow that only library callers pass: a method's config dataclass, the reporter."""


@contextlib.contextmanager
def errors_shown(again: str | None = None) -> Iterator[None]:
    """SmuError as one line on stderr with its exit code; a traceback only with SMU_DEBUG=1. Ctrl-C is one
    line too, exit code 130: how to continue (``again``, in the run folder the interruption left), or
    that nothing was saved."""
    from smu.cli.ui import show_error

    try:
        yield
    except SmuError as e:
        if os.environ.get("SMU_DEBUG") == "1":
            raise
        show_error(e)
        raise typer.Exit(e.exit_code) from None
    except (KeyboardInterrupt, Exception) as e:
        if by_ctrl_c(e):
            from smu.cli.ui import interrupted

            interrupted(interruption_line(again, left_folder(e)))
            raise typer.Exit(130) from None
        if not isinstance(e, RuntimeError):
            raise
        from smu.execution.distributed import lost  # under torchrun: a rank died or timed out

        stopped = lost(e)
        if stopped is None or os.environ.get("SMU_DEBUG") == "1":
            raise
        show_error(stopped)
        raise typer.Exit(stopped.exit_code) from None


def interruption_line(again: str | None, folder: Path | None) -> str:
    """What Ctrl-C leaves on stderr: 'Interrupted.' where there is no run to continue; else how to
    continue it in ``folder``, or that nothing was saved when the run left no folder."""
    if again is None:
        return "Interrupted."
    if folder is None:
        return STARTED
    return f"Interrupted; {again.format(out=shlex.quote(str(folder)))}"
