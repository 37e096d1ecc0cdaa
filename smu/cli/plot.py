"""`smu plot`: the figures of a recipe run, as PNG and SVG (or PDF) with the data beside them
(:mod:`smu.workflows.plot`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from smu.cli import flags
from smu.cli.ui import table
from smu.cli.wrap import cli
from smu.core.errors import UsageError
from smu.core.progress import Reporter

# "\\[": Typer's help reads [...] as Rich markup, and would drop "[plot]".
EPILOG = (
    "Examples:\n\n"
    "smu plot runs/quickstart   (into runs/quickstart/figures)\n\n"
    "smu plot runs/table --format svg --out paper/figures\n\n"
    "smu plot runs/table --style paper   (into runs/table/figures-paper: PDF and PNG, 3.3 in wide, serif)\n\n"
    "smu plot runs/table -q | xargs -n1 echo\n\n"
    "Needs matplotlib: pip install 'smu\\[plot]'. Each figure's NAME.json holds exactly the numbers drawn."
)
FORMATS = {
    "png": ("png",),
    "svg": ("svg",),
    "pdf": ("pdf",),
    "both": ("png", "svg"),
    "all": ("png", "svg", "pdf"),
}
STYLES = ("default", "paper")


def plot(
    run_dir: Annotated[
        Path, typer.Argument(help="The folder smu run wrote (its --out).", show_default=False)
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Folder for the figures (default: RUN_DIR/figures, RUN_DIR/figures-paper)."
        ),
    ] = None,
    format: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="png, svg, pdf, both (png and svg) or all (default: both; pdf and png with --style paper).",
            show_default=False,
        ),
    ] = None,
    style: Annotated[
        str,
        typer.Option(
            "--style",
            help="default (for the screen, with title and provenance footer) or paper (a two-column "
            "paper's 3.3 in column, serif, no title or footer: the caption's job).",
        ),
    ] = "default",
    force: flags.Force = False,
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Draw a recipe run's figures: Avg. Gap per method and model, the metrics against sparsity, the
    trained models, the Trojan cleanse, the audit's per-example ε.

    Returns what ``--json`` prints: {"figures": [{"name", "title", "files", "data"}], "out"}.
    """
    del reporter  # drawing takes seconds: no progress to show
    if format is not None and format not in FORMATS:
        raise UsageError(f"--format {format!r} is not one of {', '.join(FORMATS)}", hint="choose one of them")
    if style not in STYLES:
        raise UsageError(f"--style {style!r} is not one of {', '.join(STYLES)}", hint="choose one of them")
    from smu.workflows.plot import plot_run

    formats = FORMATS[format] if format is not None else None  # None: the style's own
    return plot_run(run_dir, out, formats, force=force, style=style)


def render(result: dict[str, Any]) -> Any:
    rows = [[f["name"], f["title"], [*f["files"], f["data"]]] for f in result["figures"]]
    return table(f"{len(rows)} figures in {result['out']}", ["Figure", "What it shows", "Files"], rows)


def paths(result: dict[str, Any]) -> list[str]:
    return [path for f in result["figures"] for path in f["files"]]


def command(focus: str | None = None) -> Any:
    return cli(plot, render=render, paths=paths)
