"""`smu recipes`: the recipes shipped with smu, and the text of one to copy and edit.

Reads YAML only, so listing them does not import torch.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.text import Text

from smu.cli.ui import table
from smu.cli.wrap import cli
from smu.core.errors import UsageError
from smu.core.registry import suggest
from smu.workflows.recipes.catalog import find, shipped

EPILOG = (
    "Examples:\n\n"
    "smu recipes\n\n"
    "smu recipes fashion-mnist/paper-table > mine.yaml   (then edit it and: smu run mine.yaml)"
)


def recipes(
    name: Annotated[str | None, typer.Argument(help="Print this recipe's YAML (to copy and edit).")] = None,
    reporter: Any = None,
) -> dict[str, Any]:
    """List the recipes shipped with smu (smu run NAME runs one), or print one."""
    if name is None:
        return {"recipes": [r.about() for r in shipped()]}
    recipe = find(name)
    if recipe is None:
        close = suggest(name, [r.name for r in shipped()])
        raise UsageError(
            f"no shipped recipe is called {name!r}",
            hint=(f"did you mean {close!r}? " if close else "") + "smu recipes lists them",
        )
    return {"name": recipe.name, "text": recipe.text()}


def render(result: dict) -> Any:
    if "text" in result:
        return Text(result["text"].rstrip())  # as written: no Rich markup, ready to redirect to a file
    rows = [[r["name"], r["description"], r["dataset"], r["estimated_time"]] for r in result["recipes"]]
    return table(
        "Shipped recipes (smu run NAME; smu recipes NAME prints one)",
        ["Name", "What", "Dataset", "Time"],
        rows,
    )


def command(focus: str | None = None) -> Any:
    return cli(
        recipes,
        render=render,
        paths=lambda r: [x["name"] for x in r.get("recipes", [])] or [r.get("name", "")],
    )
