"""`smu unlearn`: remove a forget set from a (dense or sparse) model with any registered method."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from smu.commands import common as c
from smu.commands.evaluate import Forget, ForgetSeed, Mask, MiaFeatures, Reference
from smu.commands.evaluate import render as render_metrics
from smu.commands.generate import method_options
from smu.commands.wrap import cli
from smu.unlearning import METHODS
from smu.workflows.unlearn import unlearn

EPILOG = (
    "Examples:\n\n"
    "smu unlearn --model runs/p/round-1/model.safetensors --forget class:3 --method retrain -o runs/rt\n\n"
    "smu unlearn --model runs/p/round-1/model.safetensors --forget runs/rt/forget.safetensors --method "
    "l1-sparse --reference runs/rt/model.safetensors --json\n\n"
    "smu unlearn --method ff --help   (the options of one method, with its own help and defaults)"
)

Method = Annotated[
    str,
    typer.Option(
        "--method",
        "-m",
        help="The unlearning method (the methods and their options are listed below; --method X --help shows "
        "only X's).",
        rich_help_panel="Method",
    ),
]
NoEval = Annotated[
    bool, typer.Option("--no-eval", help="Skip the evaluation after unlearning.", rich_help_panel="Metrics")
]


OPTIONS = {
    "model": c.Model,
    "forget": Forget,
    "method": Method,
    "mask": Mask,
    "reference": Reference,
    "no_eval": NoEval,
    "mia_features": MiaFeatures,
    "forget_seed": ForgetSeed,
    "data": c.DataDir,
    "device": c.Device,
    "amp": c.Amp,
    "compile": c.Compile,
    "sync_bn": c.SyncBn,
    "seed": c.Seed,
    "out": c.Out,
    "force": c.Force,
    "resume": c.Resume,
}


def render(result: dict) -> list:
    rte = result["rte_s"]
    title = f"smu unlearn --method {result['method']} → {result['model']}"
    if result["metrics"] is None:
        return [f"{title}: RTE {rte / 60:.2f} min ({rte:.1f} s)"]
    return render_metrics(result, title, extra=[["RTE (min)", rte / 60, None, None]])


def command(focus: str | None = None) -> Any:
    options = method_options(
        dict(METHODS), focus=focus, panel="Method options", trainer_panel="Training (methods that train)"
    )
    return cli(unlearn, options=OPTIONS, render=render, paths=lambda r: [r["model"]], generated=options)


def epilog() -> str:
    listing = "\n\n".join(f"{name}: {spec.summary}" for name, spec in METHODS.items())
    return f"Methods:\n\n{listing}\n\n{EPILOG}"
