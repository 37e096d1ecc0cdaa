"""The smu command line: every command on one screen."""

from __future__ import annotations

from typing import Annotated

import typer

from smu import __version__
from smu.commands import backdoor, evaluate, prune, run, unlearn

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


def main() -> None:
    app()
