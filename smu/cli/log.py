"""`smu log`: send a finished run folder to experiment trackers (:mod:`smu.workflows.log`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from smu.cli import flags
from smu.cli.ui import table
from smu.cli.wrap import cli

EPILOG = (
    "Examples:\n\n"
    "smu log runs/quickstart --to mlflow   (into runs/mlflow.db; mlflow ui --backend-store-uri "
    "sqlite:///runs/mlflow.db)\n\n"
    "smu log runs/rt --to tensorboard --log-dir tb/   (tensorboard --logdir tb/)\n\n"
    "WANDB_MODE=offline smu log runs/audit --to wandb"
)


def log(
    run_dir: Annotated[
        Path, typer.Argument(help="A finished run folder (the --out of any command).", show_default=False)
    ],
    to: Annotated[
        list[str],
        typer.Option(
            "--to",
            help="The tracker: tensorboard, mlflow, wandb or csv (repeat for several).",
            show_default=False,
        ),
    ],
    log_dir: flags.LogDir = None,
    tracking_uri: flags.TrackingUri = None,
    wandb_project: flags.WandbProject = None,
    wandb_entity: flags.WandbEntity = None,
    log_models: flags.LogModels = False,
    reporter: Any = None,
) -> dict[str, Any]:
    """Send a finished run folder to TensorBoard, MLflow or W&B: parameters, metrics, steps, files.

    The steps of a recipe, audit or study become child runs; the per-epoch curves go too where the run
    kept them (--log csv).

    Returns what ``--json`` prints: {"run_dir", "to", "runs": [{"name", "metrics", "curves"}]}.
    """
    del reporter
    from smu.workflows.log import send

    return send(run_dir, to, log_dir, tracking_uri, wandb_project, wandb_entity, log_models)


def render(result: dict[str, Any]) -> Any:
    rows = [[r["name"], r["metrics"], r["curves"]] for r in result["runs"]]
    title = f"{result['run_dir']} → {', '.join(result['to'])}: {len(rows)} runs"
    return table(title, ["Run", "Final metrics", "Epoch points"], rows)


def command(focus: str | None = None) -> Any:
    return cli(log, render=render, paths=lambda result: [])
