"""`smu tune`: find a method's hyper-parameters by matching retrain, scored without the test split, and
measured once on a held-out forget set (:mod:`smu.workflows.tune`)."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from smu.cli import flags
from smu.cli.generate import config_options, method_options, retrain_options, search_spaces
from smu.cli.ui import table
from smu.cli.wrap import cli
from smu.unlearning import METHODS
from smu.workflows.tune import REFERENCE, TuneConfig, tune

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
    return f"Searched by default:\n\n{search_spaces()}\n\n{EPILOG}"


OPTIONS = {
    "model": flags.Model,
    "forget": flags.Forget,
    "method": flags.Method,
    "space": flags.Space,
    "holdout_forget": flags.HoldoutForget,
    "reference": flags.TuneReference,
    "forget_seed": flags.ForgetSeed,
    "data": flags.DataDir,
    "device": flags.Device,
    "seed": flags.Seed,
    "out": flags.Out,
    "force": flags.Force,
    "workers": flags.Workers,
    **flags.EXECUTOR,
}


def params(values: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


def render(result: dict) -> list:
    h, t, cost = result["heldout"], result["tuning"], result["cost"]
    counts = ", ".join(f"{n} {s}" for s, n in sorted(result["counts"].items()))
    title = f"smu tune --method {result['method']}: best of {len(result['trials'])} trials ({counts})"
    minutes = (cost["tuning_s"] + cost["references_s"]) / 60
    summary = [
        ["Chosen setting", params(result["best"]["params"]), f"trial {result['best']['number']}"],
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
            f"{minutes:.1f} min",
            f"trials {cost['tuning_s'] / 60:.1f} min + references {cost['references_s'] / 60:.1f} min; "
            f"RTE: {cost['rte_s']:.2f} s",
        ],
    ]
    metrics = [
        [k.upper().replace("_", "-"), h["metrics"][k], h["reference"][k], h["gap"][k]]
        for k in ("ua", "mia_efficacy", "ra", "ta")
    ]
    trials = [
        [r["number"], r["state"], "–" if r["value"] is None else r["value"], params(r["params"])]
        + ["–" if r["seconds"] is None else f"{r['seconds']:.1f}"]
        for r in result["trials"]
    ]
    heldout = f"Held-out draw {h['forget']['spec']} (percent)"
    parts = [
        table(title, ["", "Value", "Reading"], summary),
        table(heldout, ["Metric", result["method"], "retrain", "gap"], metrics),
        table(
            "Trials (value: Avg. Gap on the tuning draw)", ["#", "State", "Value", "Parameters", "s"], trials
        ),
    ]
    if result["importance"]:
        rows = [[k, v] for k, v in result["importance"].items()]
        parts.append(table("Importance (fANOVA)", ["Option", "Importance"], rows))
    snippet = f"# for a recipe ({result['snippet']}):\n{result['recipe']}# again: {result['reproduce']}"
    return [*parts, Text(snippet)]


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
