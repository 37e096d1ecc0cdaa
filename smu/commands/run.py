"""`smu run`: a whole experiment from a recipe; `smu demo`: the quickstart recipe on the embedded data."""

from __future__ import annotations

import shlex
import time
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.text import Text

from smu.commands import common as c
from smu.commands.wrap import cli
from smu.engine import Reporter, resolve_device
from smu.errors import SmuError, SmuWarning, UsageError
from smu.execution import distributed, make_executor
from smu.execution.steps import is_done
from smu.io import artifacts
from smu.recipes import report
from smu.recipes.catalog import read_recipe
from smu.recipes.config import parse_recipe
from smu.ui import printable
from smu.workflows.recipe import Planner, execute

EPILOG = (
    "Examples:\n\n"
    "smu run quickstart\n\n"
    "smu run fashion-mnist/paper-table unlearn.ft.lr=0.02 seeds=[1,2] --dry-run\n\n"
    "smu run my-recipe.yaml --out runs/mine --json\n\n"
    "smu run fashion-mnist/paper-table --executor ray --address auto --out /shared/runs/table\n\n"
    "smu recipes lists the shipped recipes; smu recipes NAME prints one to copy and edit."
)


def run(
    recipe: Annotated[
        str, typer.Argument(help="A recipe file, or the name of a shipped recipe (smu recipes).")
    ],
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="key=value overrides by dotted key, e.g. unlearn.ft.lr=0.02 seeds=[1,2]."),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Check everything, print the resolved recipe and the planned steps; run nothing.",
        ),
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
    executor: c.ExecutorName = "serial",
    address: c.Address = None,
    cpus_per_step: c.CpusPerStep = None,
    gpus_per_step: c.GpusPerStep = None,
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Run a recipe: train, prune, unlearn with every method, evaluate against retrain, report."""
    del resume  # always on: finished steps are skipped and an interrupted one resumes from its checkpoint
    overrides = list(overrides or [])
    label, text = read_recipe(recipe)
    checked = parse_recipe(label, text, overrides)  # every key, type and range, before any compute
    runner = make_executor(executor, address, cpus_per_step, gpus_per_step)
    runner.check()
    if distributed.world_size() > 1:  # under torchrun: join the other ranks now, and check --sync-bn
        resolve_device(checked.device)
        if checked.sync_bn:
            distributed.check_sync_bn()
    resolved = checked.to_dict()
    out = Path(out) if out else Path("runs") / Path(str(recipe)).stem
    if dry_run:
        planned = Planner(checked, out, Reporter()).steps()
        steps = [
            {"step": i, "title": s.title, "folder": str(s.folder), "done": is_done(s)}
            for i, s in enumerate(planned, 1)
        ]
        return {"recipe": resolved, "out": str(out), "steps": steps, "dry_run": True}
    if out.is_dir() and any(out.iterdir()) and not (out / "recipe.yaml").is_file() and not force:
        raise UsageError(
            f"--out {str(out)!r} is not empty and holds no smu run",
            hint="choose another --out, or pass --force",
        )
    reporter = reporter or Reporter()
    command = "smu run " + " ".join(shlex.quote(str(a)) for a in [recipe, *overrides])
    start = time.perf_counter()
    with artifacts.run_dir(out, force=True) as out:
        header = f"# {command}\n# resolved by smu; run it again with: smu run {out / 'recipe.yaml'}\n"
        artifacts.atomic_write(
            out / "recipe.yaml", (header + yaml.safe_dump(resolved, sort_keys=False)).encode()
        )
        done = execute(checked, out, reporter, executor=runner, source=(label, text, overrides))
    seconds = time.perf_counter() - start
    tables, claims, models = report.build(done), report.claims(done), report.models_table(done)
    ran = sum(not skipped for _, _, skipped in done)
    speed = "".join(f", {name}" for name in ("amp", "compile", "sync_bn") if getattr(checked, name))
    if runner.name == "serial":
        v = c.versions(resolve_device(checked.device))
        machine = f"{v['device_name']} ({v['device']}{speed}), {v['platform']}, torch {v['torch']}"
    else:  # the steps ran wherever Ray put them; each step's workers.json says where
        v = c.versions("driver")
        chosen = ((runner.cpus_per_step, "CPU"), (runner.gpus_per_step, "GPU"))
        per_step = ", ".join(f"{n:g} {what}" for n, what in chosen if n is not None) or "default resources"
        machine = f"Ray tasks ({per_step} per step{speed}), torch {v['torch']}"
    preamble = (
        f"Command: `{command}`\n\nMachine: {machine}; wall time {seconds / 60:.1f} min ({ran} of "
        f"{len(done)} steps run, the rest reused)\n"
    )
    md_path = out / "report.md"
    artifacts.atomic_write(md_path, report.markdown(tables, preamble, claims, models).encode())
    result = {
        "out": str(out),
        "report": tables,
        "claims": claims,
        "models": models,
        "markdown": str(md_path),
        "wall_s": seconds,
        "steps": {"total": len(done), "ran": ran, "skipped": len(done) - ran},
    }
    artifacts.write_json(out / "report.json", result)
    result["figures"], drawn = draw_figures(out)
    artifacts.write_json(out / "report.json", result)
    reporter.note(f"{ran} of {len(done)} steps run in {seconds / 60:.1f} min; report: {md_path}; {drawn}")
    return result


def draw_figures(out: Path) -> tuple[list[str], str]:
    """The run's figures (``smu plot``) when the plotting extra is installed: the files and where they are.
    Without it, or when they cannot be drawn, a one-line warning says why: the report stands either way."""
    from smu.workflows import plot as plotting

    try:
        plotting.matplotlib_module()
        drawn = plotting.plot_run(out, force=True)
    except SmuError as e:
        warnings.warn(f"figures not drawn: {e}", SmuWarning, stacklevel=2)
        return [], "no figures"
    return [f for figure in drawn["figures"] for f in figure["files"]], f"figures: {drawn['out']}"


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder.")] = Path("runs/demo"),
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Prune first, then unlearn, in about a minute on the embedded digits (the quickstart recipe)."""
    return run("quickstart", out=out, force=True, reporter=reporter)


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
    # Plain text: a recipe's values are neither Rich markup nor terminal escapes.
    return [Text("\n".join(printable(line) for line in "\n".join(lines).splitlines()))]


def paths(result: dict) -> list[str]:
    return [] if result.get("dry_run") else [result["markdown"]]


def command(focus: str | None = None) -> Any:
    return cli(run, render=render, paths=paths)


def demo_command(focus: str | None = None) -> Any:
    return cli(demo, render=render, paths=paths)
