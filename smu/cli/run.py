"""`smu run`: a whole experiment from a recipe; `smu demo`: the quickstart recipe on the embedded data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.text import Text

from smu.cli import flags, report
from smu.cli.wrap import cli
from smu.core.progress import Estimate
from smu.core.text import printable
from smu.workflows.recipe import demo, run

EPILOG = (
    "Examples:\n\n"
    "smu run quickstart\n\n"
    "smu run fashion-mnist/paper-table unlearn.ft.lr=0.02 seeds=[1,2] --dry-run\n\n"
    "smu run my-recipe.yaml --out runs/mine --json\n\n"
    "smu run fashion-mnist/paper-table --executor ray --address auto --out /shared/runs/table\n\n"
    "smu recipes lists the shipped recipes; smu recipes NAME prints one to copy and edit."
)


OPTIONS = {
    "recipe": flags.Recipe,
    "overrides": flags.Overrides,
    "dry_run": flags.DryRun,
    "out": flags.RunOut,
    "force": flags.Force,
    "resume": flags.RunResume,
    "executor": flags.ExecutorName,
    "address": flags.Address,
    "cpus_per_step": flags.CpusPerStep,
    "gpus_per_step": flags.GpusPerStep,
    "threads": flags.Threads,
    **flags.TRACKING,
}
DEMO_OPTIONS = {
    "out": Annotated[Path, typer.Option("--out", "-o", help="Run folder.")],
    "threads": flags.Threads,
}
AGAIN = "the same command continues this run in {out} (finished steps are kept)"
"""How a recipe run continues after Ctrl-C: every run does."""


def render(result: dict) -> list:
    if not result.get("dry_run"):
        tables = result["report"] + ([result["models"]] if result["models"]["rows"] else [])
        return [
            *report.rich_tables(tables),
            *report.gap_bars(result["report"]),
            *report.rich_claims(result["claims"]),
        ]
    lines = [
        yaml.safe_dump(result["recipe"], sort_keys=False).rstrip(),
        f"\n# {len(result['steps'])} steps into {result['out']}:",
    ]
    lines += [
        f"#  {s['step']:>3}. {s['title']}" + ("  (done, will be skipped)" if s["done"] else "")
        for s in result["steps"]
    ]
    lines.append(f"# {Estimate(**result['estimate']).line()}")
    # Plain text: a recipe's values are neither Rich markup nor terminal escapes.
    return [Text("\n".join(printable(line) for line in "\n".join(lines).splitlines()))]


def paths(result: dict) -> list[str]:
    return [] if result.get("dry_run") else [result["markdown"], result["latex"]]


def command(focus: str | None = None) -> Any:
    return cli(run, options=OPTIONS, render=render, paths=paths, again=AGAIN)


def demo_command(focus: str | None = None) -> Any:
    return cli(demo, options=DEMO_OPTIONS, render=render, paths=paths, again=AGAIN)
