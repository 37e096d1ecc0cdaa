"""The smu command line: every command on one screen."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from smu import __version__
from smu.commands import backdoor, evaluate, inspect_import, prune, run, unlearn

app = typer.Typer(
    name="smu",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Prune image classifiers, unlearn data, and measure how well it worked.",
)

app.command(rich_help_panel="Pipeline", epilog=prune.EPILOG)(prune.prune)
app.command(rich_help_panel="Pipeline", epilog=unlearn.EPILOG)(unlearn.unlearn)
app.command("backdoor-cleanse", rich_help_panel="Pipeline", epilog=backdoor.EPILOG)(backdoor.cleanse)
app.command("eval", rich_help_panel="Pipeline", epilog=evaluate.EPILOG)(evaluate.evaluate)
app.command(rich_help_panel="Recipes", epilog=run.EPILOG)(run.run)
app.command(rich_help_panel="Recipes")(run.demo)
app.command(rich_help_panel="Artifacts")(inspect_import.inspect)
app.command("import", rich_help_panel="Artifacts", epilog=inspect_import.IMPORT_EPILOG)(
    inspect_import.import_
)


def show_version(value: bool) -> None:
    if value:
        print(f"smu {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=show_version, is_eager=True, help="Show the version and exit."),
    ] = False,
) -> None:
    """Prune image classifiers, unlearn data, and measure how well it worked."""


def main(argv: list[str] | None = None) -> None:
    """The console entry point: Typer's own usage errors (a bad value type, an unknown option) print as
    one line too, like smu's, instead of a framed panel."""
    try:
        code = app(args=argv, prog_name="smu", standalone_mode=False)
    except Exception as e:  # with standalone_mode off, Typer hands its usage errors to the caller
        if not (hasattr(e, "format_message") and hasattr(e, "exit_code")):
            raise
        if type(e).__name__ == "NoArgsIsHelpError":  # plain `smu`: the help, not an error
            print(e.format_message(), file=sys.stderr)
            sys.exit(2)
        ctx = getattr(e, "ctx", None)
        where = f"; see '{ctx.command_path} --help'" if ctx is not None else ""
        print(f"Error: {e.format_message().rstrip('.')}{where}", file=sys.stderr)
        sys.exit(e.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
