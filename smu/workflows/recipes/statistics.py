"""The numbers of a recipe's report: per scenario, methods × (UA, MIA-Efficacy, RA, TA, RTE, Avg. Gap),
dense and each sparsity side by side, mean ± std over seeds; the paper's claim tested per method with a
paired comparison across seeds; the trained models' own accuracies; for the Trojan study, SA and ASR;
for an audit, the judges of ``smu audit`` and the unlearned ensemble's mean metrics. As plain dicts
(report.json); ``report`` writes them as markdown, ``smu.cli.report`` as terminal tables."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from smu.evaluation import gap
from smu.evaluation.metrics import METRICS, headline
from smu.execution.steps import Step
from smu.workflows.recipes.config import model_name, reference_method

COLUMNS = [
    ("UA", "ua"),
    ("MIA-Eff", "mia_efficacy"),
    ("RA", "ra"),
    ("TA", "ta"),
    ("RTE min", "rte_min"),
    ("Avg. Gap", "avg_gap"),
]
AUDIT_COLUMNS = [
    ("F", "forgetting_quality"),
    ("Score", "score"),
    ("U-LiRA %", "ulira"),
    ("ToW", "tow"),
    ("UA", "ua"),
    ("RA", "ra"),
    ("TA", "ta"),
    ("RTE min", "rte_min"),
]
TUNE_COLUMNS = [
    ("Gap, tuning draw", "tuning_gap"),
    ("Gap, held-out", "heldout_gap"),
    ("UA", "ua"),
    ("MIA-Eff", "mia_efficacy"),
    ("RA", "ra"),
    ("TA", "ta"),
    ("Tuning min", "tuning_min"),
    ("RTE min", "rte_min"),
]
MODEL_COLUMNS = [
    ("Sparsity", "sparsity"),
    ("Train acc", "train_acc"),
    ("Val acc", "val_acc"),
    ("Test acc", "test_acc"),
]
BACKDOOR_COLUMNS = [
    ("SA before", "sa_before"),
    ("ASR before", "asr_before"),
    ("SA after", "sa_after"),
    ("ASR after", "asr_after"),
    ("RTE min", "rte_min"),
]

PERCENTAGES = ("ua", "mia_efficacy", "ra", "ta", "ulira", "sparsity", "train_acc", "val_acc", "test_acc")
BOUNDS: dict[str, tuple[float, float | None]] = {
    **{key: (0.0, 100.0) for key in PERCENTAGES},
    **{f"{key}_{when}": (0.0, 100.0) for key in ("sa", "asr") for when in ("before", "after")},
    "forgetting_quality": (0.0, 1.0),  # the mean of H_s = 2 / 2^n_s, n_s >= 1
    "tow": (0.0, 1.0),  # a product of three (1 - |accuracy difference|)
}
"""The range each column's values lie in, which a figure's error bars keep to. Every other column — the
gaps, the times, the final score (whose accuracy ratios may exceed 1) — is at least 0, with no top."""


def bounds(key: str) -> tuple[float | None, float | None]:
    if key in BOUNDS:
        return BOUNDS[key]
    extra = METRICS.get(key)  # an extra metric's column declares its own range
    return extra.limits if extra is not None else (0.0, None)


def mean_std(values: list[float]) -> dict[str, float]:
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
    }


Done = list[tuple[Step, dict[str, Any], bool]]


def build(done: Done) -> list[dict[str, Any]]:
    """Tables as data: kind, title, groups (model names) with their sparsity rates, columns and rows of
    {"method", "cells": {group: {column: stats}}}."""
    if any(step.tags["kind"] == "cleanse" for step, _, _ in done):
        return [backdoor_table(done)]
    if any(step.tags["kind"] == "audit" for step, _, _ in done):
        return audit_tables(done)
    cells: dict[tuple[str, float, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (scenario, rate, method, _), m, rte_s, avg_gap in unlearn_runs(done):
        cell = cells[(scenario, rate, method)]
        for key in ("ua", "mia_efficacy", "ra", "ta"):
            cell[key].append(m[key])
        cell["rte_min"].append(rte_s / 60)
        cell["avg_gap"].append(avg_gap)
    columns = COLUMNS + extra_cells(done, cells)
    return per_scenario(cells, lambda scenario: f"forget {scenario}", columns, "unlearn") + tune_tables(done)


def extra_cells(
    done: Done, cells: dict[tuple[str, float, str], dict[str, list[float]]]
) -> list[tuple[str, str]]:
    """The recipe's extra ``metrics:`` (its metrics steps) into ``cells``, by metric name; their columns,
    after the paper's, in the recipe's order. A dict-valued metric shows its headline number."""
    columns: dict[str, str] = {}
    for step, result, _ in done:
        if step.tags["kind"] != "metrics":
            continue
        for method, measured in result["metrics"].items():
            add_extras(cells[(step.tags["scenario"], step.tags["rate"], method)], columns, measured)
    return [(label, name) for name, label in columns.items()]


def add_extras(cell: dict[str, list[float]], columns: dict[str, str], measured: dict[str, Any]) -> None:
    """Extra metrics' values into ``cell`` by name (a dict-valued metric's headline number), their
    column labels into ``columns``."""
    for name, value in measured.items():
        spec = METRICS.get(name)  # None: a plug-in no longer installed, whose numbers stay readable
        columns.setdefault(name, spec.header if spec else name)
        cell[name].append(headline(spec, value) if spec else value if isinstance(value, float) else None)


def unlearn_runs(
    done: Done,
) -> list[tuple[tuple[str, float, str, int], dict[str, float], float, float | None]]:
    """Every unlearning run as ((scenario, rate, method, seed), metrics, RTE in seconds, Avg. Gap to the
    reference of the same seed, scenario and model — None where that reference did not run)."""
    runs = {
        (s.tags["scenario"], s.tags["rate"], s.tags["method"], s.tags["seed"]): r
        for s, r, _ in done
        if s.tags["kind"] == "unlearn"
    }
    exact = reference_method({k[2] for k in runs})
    found = []
    for (scenario, rate, method, seed), result in runs.items():
        reference = runs.get((scenario, rate, exact, seed))
        avg = gap(result["metrics"], reference["metrics"])["avg"] if reference else None
        found.append(((scenario, rate, method, seed), result["metrics"], result["rte_s"], avg))
    return found


CONFIDENCE = 0.95


def claims(done: Done) -> list[dict[str, Any]]:
    """The paper's claim, per scenario, approximate method and sparsity: does the sparse model's Avg. Gap
    fall below the dense model's? Paired by seed (both models of a seed share the training data, the
    initialisation and the forget set): d = gap(sparse) - gap(dense) per seed, its mean and Student's t
    interval. "holds" when the whole interval is below 0, "does not hold" when it is above, "cannot
    tell" when it spans 0 or fewer than two seeds ran."""
    gaps = {key: avg for key, _, _, avg in unlearn_runs(done) if avg is not None}
    exact = reference_method({key[2] for key in gaps})
    found = []
    for scenario, rate, method, _ in dict.fromkeys((k[0], k[1], k[2], None) for k in gaps):
        if rate == 0 or method == exact:
            continue
        seeds = [
            k[3] for k in gaps if k[:3] == (scenario, rate, method) and (scenario, 0.0, method, k[3]) in gaps
        ]
        if not seeds:
            continue
        dense = [gaps[(scenario, 0.0, method, seed)] for seed in seeds]
        sparse = [gaps[(scenario, rate, method, seed)] for seed in seeds]
        found.append(
            {"scenario": scenario, "method": method, "rate": rate, "model": model_name(rate), "seeds": seeds}
            | paired(dense, sparse)
        )
    return found


def paired(dense: list[float], sparse: list[float]) -> dict[str, Any]:
    """The paired difference sparse - dense: mean, the two-sided 95% t interval and the verdict."""
    diffs = [s - d for d, s in zip(dense, sparse, strict=True)]
    n, mean = len(diffs), statistics.fmean(diffs)
    low = high = None
    if n > 1:
        from scipy.stats import t  # scikit-learn's dependency; imported here, where it is needed

        half = float(t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * statistics.stdev(diffs) / math.sqrt(n)
        low, high = mean - half, mean + half
    verdict = "cannot tell"
    if high is not None and high < 0:
        verdict = "holds"
    elif low is not None and low > 0:
        verdict = "does not hold"
    return {
        "gap_dense": dense,
        "gap_sparse": sparse,
        "diffs": diffs,
        "n": n,
        "mean": mean,
        "low": low,
        "high": high,
        "verdict": verdict,
    }


def models_table(done: Done) -> dict[str, Any]:
    """The trained models themselves, per model mean ± std over seeds: sparsity and accuracy on the
    training split (how much of it the model fits), validation and test; and IMP's rounds."""
    cells: dict[float, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    rounds = []
    for step, result, _ in done:
        if step.tags["kind"] != "models":
            continue
        for rate, measured in result.get("accuracy", {}).items():
            for key in ("sparsity", "train_acc", "val_acc", "test_acc"):
                cells[float(rate)][key].append(measured[key])
        rounds += [{"seed": step.tags["seed"], **rd} for rd in result.get("rounds", [])]
    rows = [
        {"method": model_name(rate), "rate": rate, "cells": {"": {k: mean_std(v) for k, v in cell.items()}}}
        for rate, cell in sorted(cells.items())
    ]
    return {
        "kind": "models",
        "title": "the trained models (percent)",
        "groups": [""],
        "rates": [None],
        "rows": rows,
        "columns": MODEL_COLUMNS,
        "rounds": rounds,
    }


def tune_tables(done: Done) -> list[dict[str, Any]]:
    """Per scenario, the tuned methods × models: the best trial's Avg. Gap on the tuning draw (validation
    accuracy for TA), then the chosen setting on the held-out draw — its Avg. Gap (the paper's, TA on the
    test split) and metrics — and the time all trials took against one run's RTE."""
    cells: dict[tuple[str, float, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    drawn: dict[str, str] = {}
    for step, result, _ in done:
        if step.tags["kind"] != "tune-heldout":
            continue
        cell = cells[(step.tags["scenario"], step.tags["rate"], step.tags["method"])]
        held = result["heldout"]
        cell["tuning_gap"].append(result["best"]["tuning_gap"])
        cell["heldout_gap"].append(held["gap"]["avg"])
        for key in ("ua", "mia_efficacy", "ra", "ta"):
            cell[key].append(held["metrics"][key])
        cell["tuning_min"].append(sum(t["seconds"] or 0.0 for t in result["trials"]) / 60)
        cell["rte_min"].append(held["rte_s"] / 60)
        drawn[step.tags["scenario"]] = held["forget"]["spec"]

    def title(scenario: str) -> str:
        return f"tuned on forget {scenario}, measured on the held-out draw {drawn[scenario]}"

    return per_scenario(cells, title, TUNE_COLUMNS, "tune")


def audit_tables(done: Done) -> list[dict[str, Any]]:
    """Per scenario, methods × models: F, the final score, U-LiRA and ToW (their means; the intervals
    are in each verdict's audit.json), the unlearned ensemble's UA, RA, TA and the mean RTE; then the
    extra ``metrics:``, each the mean over the member pairs."""
    cells: dict[tuple[str, float, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    columns: dict[str, str] = {}
    for step, result, _ in done:
        if step.tags["kind"] != "audit":
            continue
        cell = cells[(step.tags["scenario"], step.tags["rate"], step.tags["method"])]
        for key in ("forgetting_quality", "score"):
            cell[key].append(result[key])
        cell["ulira"].append(result["ulira"]["mean"])
        cell["tow"].append(result["tow"]["mean"])
        for key in ("ua", "ra", "ta"):
            cell[key].append(result["unlearned"][key])
        cell["rte_min"].append(result["rte_s"] / 60)
        extra = (result.get("extra") or {}).get("metrics", {})
        add_extras(cell, columns, {name: value["mean"] for name, value in extra.items()})
    extras = [(label, name) for name, label in columns.items()]
    return per_scenario(cells, lambda scenario: f"audit: forget {scenario}", AUDIT_COLUMNS + extras, "audit")


def per_scenario(
    cells: dict[tuple[str, float, str], dict[str, list[float]]],
    title: Callable[[str], str],
    columns: list[tuple[str, str]],
    kind: str,
) -> list[dict[str, Any]]:
    """One table per scenario of cells keyed (scenario, rate, method): methods × models, mean ± std."""
    tables = []
    for scenario in dict.fromkeys(k[0] for k in cells):
        rates = list(dict.fromkeys(k[1] for k in cells if k[0] == scenario))
        methods = list(dict.fromkeys(k[2] for k in cells if k[0] == scenario))
        rows = [
            {
                "method": method,
                "cells": {
                    model_name(rate): {k: mean_std(v) for k, v in cells[(scenario, rate, method)].items()}
                    for rate in rates
                },
            }
            for method in methods
        ]
        tables.append(
            {
                "kind": kind,
                "title": title(scenario),
                "scenario": scenario,
                "groups": [model_name(r) for r in rates],
                "rates": rates,
                "rows": rows,
                "columns": columns,
            }
        )
    return tables


def backdoor_table(done: Done) -> dict[str, Any]:
    """Methods × models: clean accuracy (SA) and the Trojan's success (ASR) before and after cleansing."""
    cells: dict[tuple[str, float, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for step, result, _ in done:
        if step.tags["kind"] != "cleanse":
            continue
        cell = cells[("trojan", step.tags["rate"], step.tags["method"])]
        for _, key in BACKDOOR_COLUMNS[:-1]:
            cell[key].append(result[key])
        cell["rte_min"].append(result["rte_s"] / 60)
    [table] = per_scenario(cells, lambda _: "Trojan cleanse (percent)", BACKDOOR_COLUMNS, "backdoor")
    return table
