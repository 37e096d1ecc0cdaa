"""`smu tune`: find a method's hyper-parameters by matching retrain, scored without the test split, and
measured once on a held-out forget set (:mod:`smu.workflows.tune`)."""

from __future__ import annotations

from typing import Any

from smu.cli import flags, report
from smu.cli.generate import config_options, method_options, retrain_options, search_spaces
from smu.cli.wrap import cli
from smu.methods.unlearning import METHODS
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
    "threads": flags.Threads,
    "seed": flags.Seed,
    "out": flags.Out,
    "force": flags.Force,
    "dry_run": flags.PlanOnly,
    "workers": flags.Workers,
    **flags.EXECUTOR,
    **flags.TRACKING,
}


def command(focus: str | None = None) -> Any:
    options = method_options(
        {k: v for k, v in METHODS.items() if k != REFERENCE},
        focus=focus,
        panel="Method options (given: fixed, not searched)",
        trainer_panel="Training (methods that train)",
    )
    reference = retrain_options("Reference: the retrained model")
    generated = config_options(TuneConfig, panel="Tuning") + options + reference
    return cli(
        tune,
        options=OPTIONS,
        render=report.tune_tables,
        paths=written,
        generated=generated,
        again="the same command with --out {out} continues this study",
    )


def written(result: dict) -> list[str]:
    return [] if result.get("dry_run") else [result["snippet"]]
