"""`smu backdoor-cleanse`: plant a Trojan by poisoning, then remove it by unlearning the poisoned samples."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from smu.commands import common as c
from smu.commands.generate import config_options, method_options
from smu.commands.unlearn import Method
from smu.commands.wrap import cli
from smu.engine import TrainConfig
from smu.options import SEED_MAX, field_help, flag_of
from smu.ui import table
from smu.unlearning import METHODS
from smu.workflows.backdoor import TRAINING, BackdoorConfig, backdoor_cleanse

HELP = field_help(BackdoorConfig)
EPILOG = (
    "Examples:\n\n"
    "smu backdoor-cleanse --dataset digits --arch cnn --epochs 10 --rewind-epoch 1 --rates 0,0.9\n\n"
    "smu backdoor-cleanse --model trojan/model.safetensors --poison 10% --method l1-sparse --json\n\n"
    "The unlearning method's training options carry an unlearn- prefix (--unlearn-epochs, --unlearn-lr); "
    "the plain ones train the Trojan model."
)


def attack(name: str) -> Any:
    return typer.Option(flag_of(name), help=HELP[name], rich_help_panel="Attack")


OPTIONS = {
    "poison": Annotated[str, attack("poison")],
    "target": Annotated[int, attack("target")],
    "trigger_size": Annotated[int, attack("trigger_size")],
    "trigger_value": Annotated[int | None, attack("trigger_value")],
    "forget_seed": Annotated[
        int,
        typer.Option(
            "--forget-seed",
            min=0,
            max=SEED_MAX,
            help="Seed that draws the poisoned samples.",
            rich_help_panel="Attack",
        ),
    ],
    "prune": Annotated[
        str,
        typer.Option(
            "--prune",
            help="How the sparse Trojan models are pruned (a one-shot method).",
            rich_help_panel="Models",
        ),
    ],
    "rate": Annotated[
        float | None,
        typer.Option(
            "--rate", help="One sparsity to cleanse at (same as --rates R).", rich_help_panel="Models"
        ),
    ],
    "rates": Annotated[
        str | None,
        typer.Option(
            "--rates",
            help="Comma-separated sparsities to compare, 0 = dense (default: 0).",
            rich_help_panel="Models",
        ),
    ],
    "rewind_epoch": Annotated[
        int,
        typer.Option(
            "--rewind-epoch",
            help="Rewind epoch after pruning (0 = initialisation).",
            rich_help_panel="Models",
        ),
    ],
    "scope": Annotated[
        str, typer.Option("--scope", help="Weights pruned: conv or all.", rich_help_panel="Models")
    ],
    "model": Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="Cleanse this Trojan model (with its mask) instead of training one; --poison and "
            "--forget-seed "
            "must match its training.",
            rich_help_panel="Models",
        ),
    ],
    "method": Method,
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
}


def render(result: dict) -> list:
    p = result["poison"]
    title = (
        f"smu backdoor-cleanse --method {result['method']}: {p['size']} poisoned samples, "
        f"target {p['target']} → {result['out']}"
    )
    rows = [
        [
            f"{r['rate']:g}",
            f"{r['sparsity']:.4f}",
            r["sa_before"],
            r["asr_before"],
            r["sa_after"],
            r["asr_after"],
            r["rte_s"] / 60,
        ]
        for r in result["results"]
    ]
    columns = ["Rate", "Sparsity", "SA before %", "ASR before %", "SA after %", "ASR after %", "RTE (min)"]
    return [table(title, columns, rows)]


def command(focus: str | None = None) -> Any:
    unlearning = method_options(
        dict(METHODS),
        focus=focus,
        panel="Cleanse",
        trainer_panel="Cleanse: training of the unlearning method",
        prefix="unlearn",
        clash=TRAINING,
    )
    return cli(
        backdoor_cleanse,
        options=OPTIONS,
        render=render,
        paths=lambda r: [x["model_after"] for x in r["results"]],
        generated=config_options(TrainConfig, panel="Training of the Trojan model") + unlearning,
    )


def epilog() -> str:
    listing = "\n\n".join(f"{name}: {spec.summary}" for name, spec in METHODS.items())
    return f"Unlearning methods:\n\n{listing}\n\n{EPILOG}"
