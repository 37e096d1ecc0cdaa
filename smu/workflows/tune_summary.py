"""What `smu tune` reports: the summary built from its steps' results (the tuning and the held-out
numbers side by side, and what they cost), the searched options' importance, and the two ways to use
the chosen setting again: a recipe's ``unlearn:`` entry and the `smu unlearn` command."""

from __future__ import annotations

import dataclasses
import shlex
import time
from pathlib import Path
from typing import Any

from smu.core.options import Space, flag_of
from smu.evaluation import TUNING_METRICS
from smu.execution.steps import Step
from smu.methods.unlearning import METHODS
from smu.workflows.subject import Subject


def summary(
    subject: Subject,
    steps: list[Step],
    done: list[tuple[Step, dict[str, Any], bool]],
    method: str,
    space: dict[str, Space],
    fixed: dict[str, Any],
    folder: Path,
    started: float,
) -> dict[str, Any]:
    """What ``smu tune`` reports, from its steps' results."""
    results = {step.key: result for step, result, _ in done}
    tuning_ref, heldout_ref, last = results[steps[0].key], results[steps[1].key], results[steps[-1].key]
    rows = last["trials"]
    return {
        "method": method,
        "space": {n: str(s) for n, s in space.items()},
        "fixed": fixed,
        "counts": {
            state: sum(r["state"] == state for r in rows) for state in sorted({r["state"] for r in rows})
        },
        **{k: last[k] for k in ("trials", "best", "config", "heldout", "importance", "recipe", "study_name")},
        "tuning": {
            "forget": subject.forget.summary(),
            "reference": {k: tuning_ref["tuning"][k] for k in TUNING_METRICS},
            "best_metrics": last["best_metrics"],
            "avg_gap": last["best"]["tuning_gap"],
        },
        "cost": {
            "tuning_s": sum(r["seconds"] or 0.0 for r in rows),
            "references_s": tuning_ref["seconds"] + heldout_ref["seconds"],
            "rte_s": last["heldout"]["rte_s"],
            "wall_s": time.perf_counter() - started,
        },
        "steps": {"total": len(done), "ran": sum(not skipped for _, _, skipped in done)},
        "study": str(folder / "study.db"),
        "out": str(folder),
    }


def importance(optuna: Any, study: Any) -> dict[str, float] | None:
    """Optuna's importance of each hyper-parameter (fANOVA), where it can compute one: at least two
    searched options and a few complete trials. ``optuna``: the module, handed in so that only
    :mod:`smu.workflows.tune_study` imports it."""
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < 4 or len(study.best_trial.params) < 2:
        return None
    try:
        return dict(optuna.importance.get_param_importances(study))
    except (RuntimeError, ValueError):
        return None


def recipe_snippet(method: str, values: dict[str, Any]) -> str:
    """The tuned values as a recipe's ``unlearn:`` entry (YAML), for ``smu run``."""
    import yaml

    plain = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
    return yaml.safe_dump({"unlearn": {method: plain}}, sort_keys=False, default_flow_style=None)


def reproduce(
    result: dict[str, Any], model: str | Path, heldout: Subject, forget_seed: int, seed: int, data: Any
) -> str:
    """The `smu unlearn` command that gives ``result``'s held-out model and its gap to retrain again."""
    method, fixed = result["method"], result["fixed"]
    words = ["smu", "unlearn", "--model", str(model), "--forget", heldout.forget.spec, "--method", method]
    words += ["--forget-seed", str(forget_seed)]
    defaults = dataclasses.asdict(METHODS.get_spec(method).config())
    for name, value in result["config"].items():
        if value != defaults.get(name) or name in fixed:
            words += [
                flag_of(name),
                ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value),
            ]
    words += ["--seed", str(seed)] + (["--data", str(data)] if data else [])
    return shlex.join([*words, "--reference", result["heldout"]["reference_model"]])
