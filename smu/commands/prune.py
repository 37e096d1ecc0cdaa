"""`smu prune`: make a sparse model with any registered pruning method (OMP, IMP, SynFlow, random)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import typer

from smu.commands import common as c
from smu.commands.generate import Generated, config_options, described, field_option
from smu.commands.wrap import cli
from smu.engine import TrainConfig
from smu.options import field_help, flag_of
from smu.pruning import METHODS, PruneConfig
from smu.ui import table
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
StartModel = Annotated[
    Path | None,
    typer.Option(
        "--model",
        help="Start from this trained dense model.safetensors instead of training one (omp, imp).",
        rich_help_panel="Model",
    ),
]
RewindFrom = Annotated[
    Path | None,
    typer.Option(
        "--rewind-from",
        help="With --model: the weights to rewind to (default: the rewind checkpoint saved beside it).",
        rich_help_panel="Model",
    ),
]
OPTIONS = {
    "method": Annotated[str, option("method", "--method", "-m")],
    "rate": Annotated[float | None, option("rate")],
    "times": Annotated[int | None, option("times")],
    "scope": Annotated[str, option("scope")],
    "rewind_epoch": RewindEpoch,
    "model": StartModel,
    "rewind_from": RewindFrom,
    "arch": c.Arch,
    "dataset": c.Dataset,
    "data": c.DataDir,
    "val_fraction": c.ValFraction,
    "subset": c.Subset,
    "device": c.Device,
    "amp": c.Amp,
    "compile": c.Compile,
    "sync_bn": c.SyncBn,
    "seed": c.Seed,
    "out": c.Out,
    "force": c.Force,
    "resume": c.Resume,
}


def render(result: dict, per_layer: bool = False) -> list:
    def row(name: str, r: dict, sparsity: float) -> list:
        ips, model = r.get("images_per_second"), Path(r["model"])
        shown = model.relative_to(result["out"]) if model.is_relative_to(result["out"]) else model
        speed = f"{ips:,.0f}" if ips else None
        return [
            name,
            f"{sparsity:.4f}",
            r["test_acc"],
            r.get("val_acc"),
            f"{r['train_seconds']:.1f}",
            speed,
            shown,
        ]

    rows = [row("dense", result["dense"], 0.0)] if "dense" in result else []
    rows += [row(f"round {r['round']}", r, r["sparsity"]) for r in result["rounds"]]
    columns = ["Round", "Sparsity", "Test %", "Val %", "Train s", "img/s", "Model"]
    shown = [table(f"smu prune --method {result['method']}: {result['out']}", columns, rows)]
    if per_layer:
        layers = [[name, f"{s:.4f}"] for name, s in result["per_layer"].items()]
        shown.append(table("Per-layer sparsity (final mask)", ["Layer", "Sparsity"], layers))
    return shown


def method_option_list() -> list[Generated]:
    """Each pruning method's own options (not given = the method's default)."""
    found: dict[str, Generated] = {}
    for name, spec in METHODS.items():
        if spec.config is None:
            continue
        docs = field_help(spec.config)
        for f in dataclasses.fields(spec.config):
            default = getattr(spec.config(), f.name)
            help_text = f"{name}: {described(docs.get(f.name, ''), default, spec.config, f.name)}"
            found.setdefault(f.name, field_option(spec.config, f.name, panel="Pruning", help_text=help_text))
    return list(found.values())


def command(focus: str | None = None) -> Any:
    PerLayer = Annotated[
        bool, typer.Option("--per-layer", help="Also show each layer's sparsity.", rich_help_panel="Output")
    ]
    return cli(
        prune,
        options=OPTIONS,
        render=render,
        paths=lambda r: [r["model"]],
        generated=config_options(TrainConfig, panel="Training") + method_option_list(),
        render_options={"per_layer": PerLayer},
    )


def epilog() -> str:
    listing = "\n\n".join(f"{name}: {spec.summary}" for name, spec in METHODS.items())
    return f"Methods:\n\n{listing}\n\n{EPILOG}"
