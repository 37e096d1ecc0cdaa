"""The smu command line: every command on one screen.

Only the command being run is built in full (its options come from the method registries, which
import torch); the others are listed by name and summary, read from their source. So ``smu --help``,
``smu --version`` and ``smu recipes`` start without torch.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import sys
import warnings
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from smu import __version__


@dataclass(frozen=True)
class Command:
    name: str
    module: str
    function: str
    """The library function (the Python API) the command runs."""
    panel: str
    build: str = "command"
    """The module's function that makes the Typer callback: ``build(focus)``."""
    epilog: str = "EPILOG"
    """The module attribute with the examples (a string, or a function returning one)."""


COMMANDS = [
    Command("prune", "smu.commands.prune", "prune", "Pipeline", epilog="epilog"),
    Command("unlearn", "smu.commands.unlearn", "unlearn", "Pipeline", epilog="epilog"),
    Command("backdoor-cleanse", "smu.commands.backdoor", "backdoor_cleanse", "Pipeline", epilog="epilog"),
    Command("eval", "smu.commands.evaluate", "evaluate", "Pipeline"),
    Command("audit", "smu.commands.audit", "audit", "Pipeline", epilog="epilog"),
    Command("tune", "smu.commands.tune", "tune", "Pipeline", epilog="epilog"),
    Command("run", "smu.commands.run", "run", "Recipes"),
    Command("demo", "smu.commands.run", "demo", "Recipes", build="demo_command", epilog=""),
    Command("recipes", "smu.commands.recipes", "recipes", "Recipes"),
    Command("plot", "smu.commands.plot", "plot", "Recipes"),
    Command(
        "inspect", "smu.commands.inspect_import", "inspect", "Artifacts", build="inspect_command", epilog=""
    ),
    Command(
        "import",
        "smu.commands.inspect_import",
        "import_",
        "Artifacts",
        build="import_command",
        epilog="IMPORT_EPILOG",
    ),
]


@functools.cache
def summary(module: str, function: str) -> str:
    """The first paragraph of a command function's docstring, read from the source without importing it."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    with open(spec.origin, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function)
    return " ".join((ast.get_docstring(node) or "").split("\n\n")[0].split())


def show_version(value: bool) -> None:
    if value:
        print(f"smu {__version__}")
        raise typer.Exit()


def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=show_version, is_eager=True, help="Show the version and exit."),
    ] = False,
) -> None:
    """Prune image classifiers, unlearn data, and measure how well it worked."""


def build_app(selected: str | None = "*", focus: str | None = None) -> typer.Typer:
    """The app with ``selected`` built in full ("*": all of them); ``focus`` narrows a method command's
    help to one method's options (``smu unlearn --method ff --help``)."""
    app = typer.Typer(
        name="smu",
        no_args_is_help=True,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
        help="Prune image classifiers, unlearn data, and measure how well it worked.",
    )
    app.callback()(root)
    for cmd in COMMANDS:
        if selected in ("*", cmd.name):
            module = importlib.import_module(cmd.module)
            callback = getattr(module, cmd.build)(focus)
            epilog = getattr(module, cmd.epilog, "") if cmd.epilog else ""
            epilog = epilog() if callable(epilog) else epilog
        else:

            def callback() -> None: ...  # listed in `smu --help`; never run (its command was not selected)

            epilog = ""
        app.command(
            cmd.name, help=summary(cmd.module, cmd.function), rich_help_panel=cmd.panel, epilog=epilog or None
        )(callback)
    return app


def __getattr__(name: str) -> Any:
    if name == "app":  # every command built: what tests drive with typer.testing.CliRunner
        return build_app("*")
    raise AttributeError(name)


def show_smu_warnings() -> None:
    """smu's own warnings (a plug-in skipped, BatchNorm under torchrun) as one line each on stderr; other
    warnings as usual."""
    from smu.errors import SmuWarning

    original = warnings.showwarning

    def show(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, SmuWarning):
            from smu.ui import warn

            warn(str(message))
        else:
            original(message, category, *args, **kwargs)

    warnings.showwarning = show


def main(argv: list[str] | None = None) -> None:
    """The console entry point: Typer's own usage errors (a bad value type, an unknown option) print as
    one line too, like smu's, instead of a framed panel."""
    from smu.execution import distributed

    try:
        run_command(argv)
    except SystemExit as e:
        if (
            distributed.active()
        ):  # a torchrun rank: leave without Python's shutdown (smu.execution.distributed.leave)
            distributed.leave(e.code)
        raise


def run_command(argv: list[str] | None) -> None:
    from smu.commands.generate import focus_of
    from smu.execution import distributed

    args = sys.argv[1:] if argv is None else list(argv)
    selected = next((a for a in args if not a.startswith("-")), None)
    show_smu_warnings()
    app = build_app(selected, focus_of(args))
    try:
        code = app(args=args, prog_name="smu", standalone_mode=False)
    except Exception as e:  # with standalone_mode off, Typer hands its usage errors to the caller
        if not (hasattr(e, "format_message") and hasattr(e, "exit_code")):
            raise
        if not distributed.is_main():  # under torchrun, rank 0 alone says what was wrong
            sys.exit(e.exit_code)
        if type(e).__name__ == "NoArgsIsHelpError":  # plain `smu`: the help, not an error
            print(e.format_message(), file=sys.stderr)
            sys.exit(2)
        ctx = getattr(e, "ctx", None)
        where = f"; see '{ctx.command_path} --help'" if ctx is not None else ""
        from smu.ui import LINE, printable

        print(f"Error: {printable(e.format_message().rstrip('.'), LINE)}{where}", file=sys.stderr)
        sys.exit(e.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
