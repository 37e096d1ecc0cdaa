"""`smu prune`: make a sparse model with any registered pruning method (OMP, IMP, SynFlow, random)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from smu.cli import flags
from smu.cli.generate import config_options, pruning_options
from smu.cli.ui import plan_text, table
from smu.cli.wrap import RESUME, cli
from smu.core.options import field_help, flag_of
from smu.execution.engine import TrainConfig
from smu.methods.pruning import METHODS, PruneConfig
from smu.workflows.prune import prune

HELP = field_help(PruneConfig)
EPILOG = (
    "Examples:\n\n"
    "smu prune --dataset digits --arch resnet20 --method omp --rate 0.9 --epochs 4 --rewind-epoch 1\n\n"
    "smu prune --method imp --rate 0.2 --times 5 --json\n\n"
    "smu prune --model runs/p/dense/model.safetensors --rate 0.95 -q"
)


def option(name: str, *flags: str, extra: str = "") -> Any:
    return typer.Option(*(flags or (flag_of(name),)), help=HELP[name] + extra, rich_help_panel="Pruning")


RewindEpoch = Annotated[int | None, option("rewind_epoch", extra=" (default: 8, or the --model's)")]
OPTIONS = {
    "method": Annotated[str, option("method", "--method", "-m")],
    "rate": Annotated[float | None, option("rate")],
    "times": Annotated[int | None, option("times")],
    "scope": Annotated[str, option("scope")],
    "rewind_epoch": RewindEpoch,
    "model": flags.StartModel,
    "rewind_from": flags.RewindFrom,
    "seed": flags.Seed,
    "out": flags.Out,
    "force": flags.Force,
    "resume": flags.Resume,
    "dry_run": flags.PlanOnly,
    **flags.DATA,
    **flags.RUNTIME,
    **flags.TRACKING,
}


def render(result: dict, per_layer: bool = False) -> list:
    if result.get("dry_run"):
        return plan_text(result)

    def row(name: str, r: dict, sparsity: float) -> list:
        ips, model = r.get("images_per_second"), Path(r["model"])
        shown = model.relative_to(result["out"]) if model.is_relative_to(result["out"]) else model
        speed = f"{ips:,.0f}" if ips else None
        return [
            name,
            sparsity,
            r["test_acc"],
            r.get("val_acc"),
            f"{r['train_seconds']:.1f}",
            speed,
            shown,
        ]

    rows = [row("dense", result["dense"], 0.0)] if "dense" in result else []
    rows += [row(f"round {r['round']}", r, r["sparsity"]) for r in result["rounds"]]
    columns = ["Round", "Sparsity %", "Test %", "Val %", "Train s", "img/s", "Model"]
    shown = [table(f"smu prune --method {result['method']}: {result['out']}", columns, rows)]
    if per_layer:
        layers = [[name, s] for name, s in result["per_layer"].items()]
        shown.append(table("Per-layer sparsity (final mask)", ["Layer", "Sparsity %"], layers))
    return shown


def command(focus: str | None = None) -> Any:
    PerLayer = Annotated[
        bool, typer.Option("--per-layer", help="Also show each layer's sparsity.", rich_help_panel="Output")
    ]
    return cli(
        prune,
        options=OPTIONS,
        render=render,
        paths=lambda r: [] if r.get("dry_run") else [r["model"]],
        generated=config_options(TrainConfig, panel="Training") + pruning_options(),
        render_options={"per_layer": PerLayer},
        again=RESUME,
    )


def epilog() -> str:
    listing = "\n\n".join(f"{name}: {spec.summary}" for name, spec in METHODS.items())
    return f"Methods:\n\n{listing}\n\n{EPILOG}"
