"""The paper-shaped report of a recipe: per scenario, methods × (UA, MIA-Efficacy, RA, TA, RTE, Avg. Gap),
dense and sparse side by side, mean ± std over seeds; for the Trojan study, SA and ASR; for an audit,
the judges of ``smu audit`` and the unlearned ensemble's mean metrics."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from rich.table import Table

from smu.evaluation import gap
from smu.recipes.config import reference_method
from smu.recipes.runner import model_name
from smu.steps import Step

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
BACKDOOR_COLUMNS = [
    ("SA before", "sa_before"),
    ("ASR before", "asr_before"),
    ("SA after", "sa_after"),
    ("ASR after", "asr_after"),
    ("RTE min", "rte_min"),
]


def mean_std(values: list[float]) -> dict[str, float]:
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def build(done: list[tuple[Step, dict[str, Any], bool]]) -> list[dict[str, Any]]:
    """Tables as data: title, groups, columns and rows of {"method", "cells": {group: {column: stats}}}."""
    if any(step.tags["kind"] == "cleanse" for step, _, _ in done):
        return [backdoor_table(done)]
    if any(step.tags["kind"] == "audit" for step, _, _ in done):
        return audit_tables(done)
    runs = {
        (s.tags["scenario"], s.tags["rate"], s.tags["method"], s.tags["seed"]): r
        for s, r, _ in done
        if s.tags["kind"] == "unlearn"
    }
    tables = []
    for scenario in dict.fromkeys(k[0] for k in runs):
        rates = list(dict.fromkeys(k[1] for k in runs if k[0] == scenario))
        methods = list(dict.fromkeys(k[2] for k in runs if k[0] == scenario))
        rows = []
        for method in methods:
            cells = {}
            for rate in rates:
                values: dict[str, list[float]] = defaultdict(list)
                for (sc, ra, me, seed), result in runs.items():
                    if (sc, ra, me) != (scenario, rate, method):
                        continue
                    m = result["metrics"]
                    for key in ("ua", "mia_efficacy", "ra", "ta"):
                        values[key].append(m[key])
                    values["rte_min"].append(result["rte_s"] / 60)
                    reference = runs.get((scenario, rate, reference_method(methods), seed))
                    values["avg_gap"].append(gap(m, reference["metrics"])["avg"] if reference else None)
                cells[model_name(rate)] = {key: mean_std(v) for key, v in values.items()}
            rows.append({"method": method, "cells": cells})
        tables.append(
            {
                "title": f"forget {scenario}",
                "groups": [model_name(r) for r in rates],
                "rows": rows,
                "columns": COLUMNS,
            }
        )
    return tables + tune_tables(done)


def tune_tables(done: list[tuple[Step, dict[str, Any], bool]]) -> list[dict[str, Any]]:
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

    return per_scenario(cells, title, TUNE_COLUMNS)


def audit_tables(done: list[tuple[Step, dict[str, Any], bool]]) -> list[dict[str, Any]]:
    """Per scenario, methods × models: F, the final score, U-LiRA and ToW (their means; the intervals
    are in each verdict's audit.json), the unlearned ensemble's UA, RA, TA and the mean RTE."""
    cells: dict[tuple[str, float, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
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
    return per_scenario(cells, lambda scenario: f"audit: forget {scenario}", AUDIT_COLUMNS)


def per_scenario(
    cells: dict[tuple[str, float, str], dict[str, list[float]]],
    title: Callable[[str], str],
    columns: list[tuple[str, str]],
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
        groups = [model_name(r) for r in rates]
        tables.append({"title": title(scenario), "groups": groups, "rows": rows, "columns": columns})
    return tables


def backdoor_table(done: list[tuple[Step, dict[str, Any], bool]]) -> dict[str, Any]:
    runs: dict[tuple[float, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for step, result, _ in done:
        if step.tags["kind"] != "cleanse":
            continue
        cell = runs[(step.tags["rate"], step.tags["method"])]
        for _, key in BACKDOOR_COLUMNS[:-1]:
            cell[key].append(result[key])
        cell["rte_min"].append(result["rte_s"] / 60)
    rows = [
        {"method": f"{model_name(rate)}, {method}", "cells": {"": {k: mean_std(v) for k, v in cell.items()}}}
        for (rate, method), cell in runs.items()
    ]
    return {"title": "Trojan cleanse (percent)", "groups": [""], "rows": rows, "columns": BACKDOOR_COLUMNS}


DIGITS = {"forgetting_quality": 4, "score": 4, "tow": 3}
"""Decimals of the columns that are not percentages."""


def fmt(stats: dict[str, float] | None, key: str = "") -> str:
    if not stats or stats["n"] == 0:
        return "–"
    d = DIGITS.get(key, 2)
    return f"{stats['mean']:.{d}f}" + (f" ± {stats['std']:.{d}f}" if stats["n"] > 1 else "")


def header(t: dict[str, Any], group: str, label: str) -> str:
    return f"{group} {label}" if group else label


def rich_tables(tables: list[dict[str, Any]]) -> list[Table]:
    """One row per method and model, so the table fits a terminal; report.md has the paper's wide layout."""
    shown = []
    for t in tables:
        table = Table(title=t["title"], title_justify="left")
        table.add_column("Method")
        if t["groups"] != [""]:
            table.add_column("Model")
        for label, _ in t["columns"]:
            table.add_column(label, justify="right")
        for row in t["rows"]:
            for i, group in enumerate(t["groups"]):
                cells = [fmt(row["cells"].get(group, {}).get(key), key) for _, key in t["columns"]]
                first = [row["method"] if i == 0 else ""] + ([group] if group else [])
                table.add_row(*first, *cells, end_section=i == len(t["groups"]) - 1)
        shown.append(table)
    return shown


def markdown(tables: list[dict[str, Any]], preamble: str = "") -> str:
    lines = [preamble] if preamble else []
    for t in tables:
        cols = [header(t, g, label) for g in t["groups"] for label, _ in t["columns"]]
        lines += [
            f"### {t['title']}",
            "",
            "| Method | " + " | ".join(cols) + " |",
            "|---|" + "---:|" * len(cols),
        ]
        for row in t["rows"]:
            cells = [
                fmt(row["cells"].get(g, {}).get(key), key) for g in t["groups"] for _, key in t["columns"]
            ]
            lines.append(f"| {row['method']} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
