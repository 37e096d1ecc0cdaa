"""`smu tune`: find a method's hyper-parameters by matching retrain, scored without the test split, and
measured once on a held-out forget set (:mod:`smu.workflows.tune`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from smu.commands import common as c
from smu.commands.evaluate import Forget, ForgetSeed
from smu.commands.generate import config_options, method_options, retrain_options
from smu.commands.unlearn import Method
from smu.commands.wrap import cli
from smu.ui import table
from smu.unlearning import METHODS
from smu.workflows.tune import (
    REFERENCE,
    TuneConfig,
    tune,
)

EPILOG = (
    "Examples:\n\n"
    "smu tune --model runs/p/round-1/model.safetensors --forget class:3 --method ga --trials 20 "
    "--retrain-epochs 20 -o runs/tune\n\n"
    "smu tune ... --method l1-sparse --space alpha=1e-5:1e-3:log --epochs 5   (--epochs fixed, alpha "
    "searched in a narrower range, lr in its own)\n\n"
    "smu tune ... --trials 40   (the same --out: the study continues, the references are reused)\n\n"
    "An option given a value is fixed, not searched. The reference retrains with retrain's options, "
    "spelled --retrain-epochs, --retrain-lr, ..."
)


def epilog() -> str:
    from smu.options import tunable

    def shown(space: Any) -> str:  # not LOW:HIGH here: Rich would read ":100:" as an emoji
        return f"{space.low:g} to {space.high:g}" + (" log-uniform" if space.log else "")

    spaces = {
        name: ", ".join(f"{option} {shown(space)}" for option, space in tunable(spec.config).items())
        for name, spec in METHODS.items()
    }
    listing = "\n\n".join(f"{name}: {text}" for name, text in spaces.items() if text)
    return f"Searched by default:\n\n{listing}\n\n{EPILOG}"


Space = Annotated[
    list[str] | None,
    typer.Option(
        "--space",
        help="NAME=LOW:HIGH or NAME=LOW:HIGH:log: search this numeric option in this range instead of the "
        "method's own (repeat for several).",
        rich_help_panel="Tuning",
    ),
]
HoldoutForget = Annotated[
    str | None,
    typer.Option(
        "--holdout-forget",
        help="The forget set the chosen setting is measured on (default: the next class for class:C, the "
        "next --forget-seed for random:N).",
        rich_help_panel="Tuning",
    ),
]
Workers = Annotated[
    int,
    typer.Option(
        "--workers",
        min=1,
        help="Study workers running trials side by side, as Ray tasks (--executor ray); each process or "
        "task adds trials to the one study in --out until it has --trials.",
        rich_help_panel="Executor",
    ),
]
TuneReference = Annotated[
    Path | None,
    typer.Option(
        "--reference",
        help="A model retrained without the forget set to tune against (default: smu retrains one with the "
        "--retrain-* options, cached in --out).",
        rich_help_panel="Reference",
    ),
]


OPTIONS = {
    "model": c.Model,
    "forget": Forget,
    "method": Method,
    "space": Space,
    "holdout_forget": HoldoutForget,
    "reference": TuneReference,
    "forget_seed": ForgetSeed,
    "data": c.DataDir,
    "device": c.Device,
    "seed": c.Seed,
    "out": c.Out,
    "force": c.Force,
    "workers": Workers,
    "executor": c.ExecutorName,
    "address": c.Address,
    "cpus_per_step": c.CpusPerStep,
    "gpus_per_step": c.GpusPerStep,
}


def render(result: dict) -> list:
    h, t = result["heldout"], result["tuning"]
    title = (
        f"smu tune --method {result['method']}: best of {len(result['trials'])} trials "
        f"({', '.join(f'{n} {s}' for s, n in sorted(result['counts'].items()))})"
    )
    best = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result["best"]["params"].items()
    )
    summary = [
        ["Chosen setting", best, f"trial {result['best']['number']}"],
        [
            "Avg. Gap, tuning draw",
            t["avg_gap"],
            f"{t['forget']['spec']}: UA, MIA, RA, validation acc. (what the trials were scored on)",
        ],
        [
            "Avg. Gap, held-out draw",
            h["tuning_gap"]["avg"],
            f"{h['forget']['spec']}: the same four, on a forget set the search never saw",
        ],
        ["Avg. Gap, held-out, paper", h["gap"]["avg"], "UA, MIA, RA, TA (test split): the number to report"],
        [
            "Cost",
            f"{(result['cost']['tuning_s'] + result['cost']['references_s']) / 60:.1f} min",
            f"trials {result['cost']['tuning_s'] / 60:.1f} min + references "
            f"{result['cost']['references_s'] / 60:.1f} min; RTE: {result['cost']['rte_s']:.2f} s",
        ],
    ]
    metrics = [
        [k.upper().replace("_", "-"), h["metrics"][k], h["reference"][k], h["gap"][k]]
        for k in ("ua", "mia_efficacy", "ra", "ta")
    ]
    trials = [
        [
            r["number"],
            r["state"],
            "–" if r["value"] is None else r["value"],
            ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["params"].items()),
            "–" if r["seconds"] is None else f"{r['seconds']:.1f}",
        ]
        for r in result["trials"]
    ]
    parts = [
        table(title, ["", "Value", "Reading"], summary),
        table(
            f"Held-out draw {h['forget']['spec']} (percent)",
            ["Metric", result["method"], "retrain", "gap"],
            metrics,
        ),
        table(
            "Trials (value: Avg. Gap on the tuning draw)", ["#", "State", "Value", "Parameters", "s"], trials
        ),
    ]
    if result["importance"]:
        rows = [[k, v] for k, v in result["importance"].items()]
        parts.append(table("Importance (fANOVA)", ["Option", "Importance"], rows))
    parts.append(
        Text(f"# for a recipe ({result['snippet']}):\n{result['recipe']}# again: {result['reproduce']}")
    )
    return parts


def command(focus: str | None = None) -> Any:
    options = method_options(
        {k: v for k, v in METHODS.items() if k != REFERENCE},
        focus=focus,
        panel="Method options (given: fixed, not searched)",
        trainer_panel="Training (methods that train)",
    )
    reference = retrain_options("Reference: the retrained model")
    generated = config_options(TuneConfig, panel="Tuning") + options + reference
    return cli(tune, options=OPTIONS, render=render, paths=lambda r: [r["snippet"]], generated=generated)
