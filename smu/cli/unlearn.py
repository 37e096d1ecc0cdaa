"""`smu unlearn`: remove a forget set from a (dense or sparse) model with any registered method."""

from __future__ import annotations

from typing import Any

from smu.cli import flags
from smu.cli.evaluate import render as render_metrics
from smu.cli.generate import method_options
from smu.cli.ui import plan_text
from smu.cli.wrap import RESUME, cli
from smu.methods.unlearning import METHODS, focus_of, offered
from smu.methods.unlearning.competition import FORMS, INTERFACE
from smu.workflows.unlearn import unlearn

EPILOG = (
    "Examples:\n\n"
    "smu unlearn --model runs/p/round-1/model.safetensors --forget class:3 --method retrain -o runs/rt\n\n"
    "smu unlearn --model runs/p/round-1/model.safetensors --forget runs/rt/forget.safetensors --method "
    "l1-sparse --reference runs/rt/model.safetensors --json\n\n"
    "smu unlearn --method ff --help   (the options of one method, with its own help and defaults)\n\n"
    "smu unlearn --model runs/p/round-1/model.safetensors --forget class:3 --method "
    "my_solution.py:unlearning --timeout 600   (your own function, as the NeurIPS 2023 competition "
    "defined it)"
)


OPTIONS = {
    "model": flags.Model,
    "forget": flags.Forget,
    "method": flags.Method,
    "mask": flags.Mask,
    "reference": flags.Reference,
    "no_eval": flags.NoEval,
    "mia_features": flags.MiaFeatures,
    "metrics": flags.Metrics,
    "metric_seed": flags.MetricSeed,
    "forget_seed": flags.ForgetSeed,
    "data": flags.DataDir,
    "seed": flags.Seed,
    "out": flags.Out,
    "force": flags.Force,
    "resume": flags.Resume,
    "dry_run": flags.PlanOnly,
    **flags.RUNTIME,
    **flags.TRACKING,
}


def render(result: dict) -> list:
    if result.get("dry_run"):
        return plan_text(result)
    rte = result["rte_s"]
    title = f"smu unlearn --method {result['method']} → {result['model']}"
    revived = result.get("revived") or 0
    if result["metrics"] is None:
        note = f", {revived:,} revived pruned weights set back to 0" if revived else ""
        return [f"{title}: RTE {rte / 60:.2f} min ({rte:.1f} s){note}"]
    extra = [["RTE (min)", rte / 60, None, None]]
    extra += [["Revived weights (set back to 0)", revived, None, None]] if revived else []
    return render_metrics(result, title, extra=extra)


def command(focus: str | None = None) -> Any:
    options = method_options(
        offered(),
        focus=focus_of(focus),
        panel="Method options",
        trainer_panel="Training (methods that train)",
    )
    return cli(unlearn, options=OPTIONS, render=render, paths=written, generated=options, again=RESUME)


def written(result: dict) -> list[str]:
    return [] if result.get("dry_run") else [result["model"]]


def epilog() -> str:
    listing = "\n\n".join(f"{name}: {spec.summary}" for name, spec in METHODS.items())
    return f"Methods:\n\n{listing}\n\n{FUNCTION}\n\n{EPILOG}"


FUNCTION = (
    f"{FORMS}: your own function with the NeurIPS 2023 competition's interface, {INTERFACE} "
    "(README: Your own unlearning function)"
)
