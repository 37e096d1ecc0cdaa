"""`smu run`: a whole experiment from a recipe; `smu demo`: the quickstart recipe on the embedded data."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Annotated

import typer
import yaml

from smu import artifacts
from smu.commands import common as c
from smu.engine import Reporter, resolve_device
from smu.errors import UsageError
from smu.recipes import report
from smu.recipes.config import load_recipe
from smu.recipes.runner import Planner, execute, is_done
from smu.ui import emit, err_console, reporting

EPILOG = (
    "Examples:\n\n"
    "smu run recipes/quickstart.yaml\n\n"
    "smu run recipes/fashion-mnist/paper-table.yaml unlearn.ft.lr=0.02 seeds=[1,2] --dry-run\n\n"
    "smu run recipes/cifar10/paper-table.yaml --out runs/cifar --json"
)
RECIPES = Path(__file__).resolve().parents[2] / "recipes"
"""The recipes folder of a source checkout (``pip install -e .``)."""


@c.errors_handled
def run(
    recipe: Annotated[Path, typer.Argument(help="A recipe file (recipes/*.yaml).")],
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="key=value overrides by dotted key, e.g. unlearn.ft.lr=0.02 seeds=[1,2]."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the resolved recipe and the planned steps; run nothing.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Run folder (default: runs/<recipe name>). Run again with the same folder to continue.",
        ),
    ] = None,
    force: c.Force = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Accepted for symmetry with prune and unlearn: a run always continues where it stopped.",
        ),
    ] = False,
    json_out: c.Json = False,
    quiet: c.Quiet = False,
) -> None:
    """Run a recipe: train, prune, unlearn with every method, evaluate against retrain, report."""
    del resume  # always on: finished steps are skipped and an interrupted one resumes from its checkpoint
    run_recipe(recipe, overrides or [], out or Path("runs") / recipe.stem, dry_run, force, json_out, quiet)


@c.errors_handled
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder.")] = Path("runs/demo"),
    json_out: c.Json = False,
    quiet: c.Quiet = False,
) -> None:
    """Prune first, then unlearn, in about a minute on the embedded digits (recipes/quickstart.yaml)."""
    recipe = RECIPES / "quickstart.yaml"
    if not recipe.is_file():
        raise UsageError(
            f"the quickstart recipe is not at {str(recipe)!r}",
            hint="smu demo runs from a source checkout: pip install -e . in the repository",
        )
    run_recipe(recipe, [], out, False, True, json_out, quiet)


def run_recipe(
    path: Path, overrides: list[str], out: Path, dry_run: bool, force: bool, json_out: bool, quiet: bool
) -> None:
    recipe = load_recipe(path, overrides)
    resolved = recipe.to_dict()
    if dry_run:
        planned = Planner(recipe, out, Reporter()).steps()
        steps = [
            {"step": i, "title": s.title, "folder": str(s.folder), "done": is_done(s)}
            for i, s in enumerate(planned, 1)
        ]
        if json_out:
            print(json.dumps({"recipe": resolved, "out": str(out), "steps": steps}))
        else:
            print(yaml.safe_dump(resolved, sort_keys=False).rstrip())
            print(f"\n# {len(steps)} steps into {out}:")
            for s in steps:
                print(f"#  {s['step']:>3}. {s['title']}" + ("  (done, will be skipped)" if s["done"] else ""))
        return
    if out.is_dir() and any(out.iterdir()) and not (out / "recipe.yaml").is_file() and not force:
        raise UsageError(
            f"--out {str(out)!r} is not empty and holds no smu run",
            hint="choose another --out, or pass --force",
        )
    command = "smu run " + " ".join(shlex.quote(str(a)) for a in [path, *overrides])
    start = time.perf_counter()
    with artifacts.run_dir(out, force=True) as out, reporting(quiet) as reporter:
        header = f"# {command}\n# resolved by smu; run it again with: smu run {out / 'recipe.yaml'}\n"
        artifacts.atomic_write(
            out / "recipe.yaml", (header + yaml.safe_dump(resolved, sort_keys=False)).encode()
        )
        done = execute(recipe, out, reporter)
    seconds = time.perf_counter() - start
    tables = report.build(done)
    ran = sum(not skipped for _, _, skipped in done)
    v = c.versions(resolve_device(recipe.device))
    speed = "".join(f", {name}" for name in ("amp", "compile") if getattr(recipe, name))
    preamble = (
        f"Command: `{command}`\n\nMachine: {v['device_name']} ({v['device']}{speed}), {v['platform']}, "
        f"torch {v['torch']}; wall time {seconds / 60:.1f} min ({ran} of {len(done)} steps run, the rest "
        "reused)\n"
    )
    md_path = out / "report.md"
    artifacts.atomic_write(md_path, report.markdown(tables, preamble).encode())
    result = {
        "out": str(out),
        "report": tables,
        "markdown": str(md_path),
        "wall_s": seconds,
        "steps": {"total": len(done), "ran": ran, "skipped": len(done) - ran},
    }
    artifacts.write_json(out / "report.json", result)
    if not quiet and err_console().is_terminal:
        err_console().print(
            f"[dim]{ran} of {len(done)} steps run in {seconds / 60:.1f} min; report: {md_path}[/]"
        )
    emit(
        result, as_json=json_out, quiet=quiet, paths=[str(md_path)], render=lambda: report.rich_tables(tables)
    )
