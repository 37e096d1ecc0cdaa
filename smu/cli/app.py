"""The smu command line: every command on one screen.

Only the command being run is built in full (its options come from the method registries, which
import torch): ``Commands`` lists the others by name and summary.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from smu import __version__
from smu.cli.interrupt import STARTING, by_ctrl_c


@dataclass(frozen=True)
class Command:
    name: str
    module: str
    """The command's module: its options, how its result is shown, and ``build``."""
    panel: str
    summary: str
    """One line for ``smu --help`` and the command's help: the first sentence of its workflow's
    docstring (a test keeps them equal), written here so that ``smu --help`` imports no command."""
    build: str = "command"
    """The module's function that makes the Typer callback: ``build(focus)``, where ``focus`` is the
    method of ``--method X --help`` (only its options are listed) or None."""
    epilog: str = "EPILOG"
    """The module attribute with the examples (a string, or a function returning one)."""


COMMANDS = [
    Command(
        "prune",
        "smu.cli.prune",
        "Pipeline",
        "Prune a model: train dense, prune, rewind and retrain (omp, imp), or prune at init and train.",
        epilog="epilog",
    ),
    Command(
        "unlearn",
        "smu.cli.unlearn",
        "Pipeline",
        "Unlearn a forget set from a dense or sparse model with any registered method.",
        epilog="epilog",
    ),
    Command(
        "backdoor-cleanse",
        "smu.cli.backdoor",
        "Pipeline",
        (
            "Poison the data, train Trojan model(s), unlearn the poisoned samples; SA and ASR before "
            "and after."
        ),
        epilog="epilog",
    ),
    Command(
        "eval",
        "smu.cli.evaluate",
        "Pipeline",
        "Measure UA, MIA-Efficacy, RA and TA of a model on a forget set, and the gap to a reference.",
        epilog="epilog",
    ),
    Command(
        "audit",
        "smu.cli.audit",
        "Pipeline",
        "Audit an unlearning method: per-example attacks between N unlearned and N retrained models.",
        epilog="epilog",
    ),
    Command(
        "tune",
        "smu.cli.tune",
        "Pipeline",
        (
            "Tune a method's hyper-parameters against retrain: trials scored on validation data, the "
            "chosen setting measured on a held-out forget set."
        ),
        epilog="epilog",
    ),
    Command(
        "run",
        "smu.cli.run",
        "Recipes",
        "Run a recipe: train, prune, unlearn with every method, evaluate against retrain, report.",
    ),
    Command(
        "demo",
        "smu.cli.run",
        "Recipes",
        "Prune first, then unlearn, in about half a minute on the embedded digits (the quickstart recipe).",
        build="demo_command",
        epilog="",
    ),
    Command(
        "recipes",
        "smu.cli.recipes",
        "Recipes",
        "List the recipes shipped with smu (smu run NAME runs one), or print one.",
    ),
    Command(
        "plot",
        "smu.cli.plot",
        "Recipes",
        (
            "Draw a recipe run's figures: Avg. Gap per method and model, the metrics against sparsity, "
            "the trained models, the Trojan cleanse, the audit's per-example ε."
        ),
    ),
    Command(
        "log",
        "smu.cli.log",
        "Recipes",
        "Send a finished run folder to TensorBoard, MLflow or W&B: parameters, metrics, steps, files.",
    ),
    Command(
        "inspect",
        "smu.cli.inspect_import",
        "Artifacts",
        "Show an artifact's metadata, per-layer sparsity, provenance chain, and whether it is intact.",
        build="inspect_command",
        epilog="",
    ),
    Command(
        "import",
        "smu.cli.inspect_import",
        "Artifacts",
        "Turn weights trained elsewhere into model.safetensors (+ mask.safetensors), safely.",
        build="import_command",
        epilog="IMPORT_EPILOG",
    ),
]
BY_NAME = {cmd.name: cmd for cmd in COMMANDS}


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


class Commands(TyperGroup):
    """smu's commands: listed from ``COMMANDS`` by name, panel and summary, and built (their module
    imported) only when one is run or asked for help. So ``smu --help``, ``smu --version`` and
    ``smu recipes`` start without torch."""

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[str | None, Any, list[str]]:
        name, listed, rest = super().resolve_command(ctx, args)
        return name, None if listed is None else build_command(BY_NAME[name]), rest

    # Ctrl-C before the command runs (torch imports while the command is built; Typer imports pydantic
    # while it converts the options) is one line too: Typer would exit 130 without a word. Once the
    # command runs, smu.cli.wrap.errors_shown says how to continue.
    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        with starting():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: Any) -> Any:
        with starting():
            return super().invoke(ctx)


@contextlib.contextmanager
def starting() -> Iterator[None]:
    try:
        yield
    except (KeyboardInterrupt, Exception) as e:
        if not by_ctrl_c(e):
            raise
        from smu.cli.ui import interrupted

        interrupted(STARTING)
        raise typer.Exit(130) from None


class MethodCommand(TyperCommand):
    """A command whose ``--help`` narrows to one method's options when ``--method X`` is given too:
    ``smu unlearn --method ff --help``."""

    for_method: Callable[[str], TyperCommand] | None = None
    """This command built with one method's options only (set by :func:`build_command`)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if self.for_method is not None:  # the parser reads the line; nothing is checked or run yet
            given, _, _ = self.make_parser(ctx).parse_args(args=list(args))
            if given.get("help") and given.get("method"):
                self.params = self.for_method(given["method"]).params
        return super().parse_args(ctx, args)


def build_command(cmd: Command, focus: str | None = None) -> TyperCommand:
    """The Typer command ``cmd`` in full: its module's options (a method's only, given ``focus``), help
    and examples."""
    module = importlib.import_module(cmd.module)
    epilog = getattr(module, cmd.epilog, "") if cmd.epilog else ""
    epilog = epilog() if callable(epilog) else epilog
    single = typer.Typer(add_completion=False)
    register = single.command(
        cmd.name, help=cmd.summary, rich_help_panel=cmd.panel, epilog=epilog or None, cls=MethodCommand
    )
    register(getattr(module, cmd.build)(focus))
    command = typer.main.get_command(single)
    command.for_method = functools.partial(build_command, cmd)  # type: ignore[attr-defined]
    return command  # type: ignore[return-value]


def build_app() -> typer.Typer:
    """The app: every command listed by name and summary; the one that runs is built by ``Commands``."""
    app = typer.Typer(
        name="smu",
        cls=Commands,
        no_args_is_help=True,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
        help="Prune image classifiers, unlearn data, and measure how well it worked.",
    )
    app.callback()(root)
    for cmd in COMMANDS:

        def listed() -> None: ...  # what `smu --help` shows; Commands builds the real one when it runs

        app.command(cmd.name, help=cmd.summary, rich_help_panel=cmd.panel)(listed)
    return app


app = build_app()
"""The whole command line (what tests drive with ``typer.testing.CliRunner``)."""


def show_smu_warnings() -> None:
    """smu's own warnings (a plug-in skipped, BatchNorm under torchrun) as one line each on stderr; other
    warnings as usual."""
    from smu.core.errors import SmuWarning

    original = warnings.showwarning

    def show(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, SmuWarning):
            from smu.cli.ui import warn

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
    from smu.execution import distributed

    args = sys.argv[1:] if argv is None else list(argv)
    show_smu_warnings()
    if args and args[0] in BY_NAME:
        check_line(args[0], args[1:])
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
        from smu.cli.ui import LINE, printable

        print(f"Error: {printable(e.format_message().rstrip('.'), LINE)}{where}", file=sys.stderr)
        sys.exit(e.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


def check_line(command: str, args: list[str]) -> None:
    """What is wrong with the command line and visible without torch, as one line (exit code 2, or 1 for
    files that are not there), before the command is built: a typo costs a fraction of a second."""
    from smu.cli.precheck import precheck
    from smu.core.errors import SmuError

    try:
        precheck(command, args)
    except SmuError as e:
        if os.environ.get("SMU_DEBUG") == "1":
            raise
        from smu.cli.ui import show_error

        show_error(e)
        sys.exit(e.exit_code)
