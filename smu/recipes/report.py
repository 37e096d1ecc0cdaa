"""The paper-shaped report of a recipe: per scenario, methods × (UA, MIA-Efficacy, RA, TA, RTE, Avg. Gap),
dense and each sparsity side by side, mean ± std over seeds; the paper's claim tested per method with a
paired comparison across seeds; the trained models' own accuracies; for the Trojan study, SA and ASR;
for an audit, the judges of ``smu audit`` and the unlearned ensemble's mean metrics."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from rich.table import Table

from smu.evaluation import gap
from smu.execution.steps import Step
from smu.recipes.config import model_name, reference_method
from smu.ui import LINE, plain

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
    return per_scenario(cells, lambda scenario: f"forget {scenario}", COLUMNS, "unlearn") + tune_tables(done)


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
                cells[float(rate)][key].append(measured[key] * (100 if key == "sparsity" else 1))
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
    return per_scenario(cells, lambda scenario: f"audit: forget {scenario}", AUDIT_COLUMNS, "audit")


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


DIGITS = {"forgetting_quality": 4, "score": 4, "tow": 3}
"""Decimals of the columns that are not percentages."""


def fmt(stats: dict[str, float] | None, key: str = "") -> str:
    if not stats or stats["n"] == 0:
        return "–"
    d = DIGITS.get(key, 2)
    return f"{stats['mean']:.{d}f}" + (f" ± {stats['std']:.{d}f}" if stats["n"] > 1 else "")


def header(group: str, label: str) -> str:
    return f"{group} {label}" if group else label


def rows_of(t: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    """(method, model, formatted cells) per method and model."""
    return [
        (row["method"], group, [fmt(row["cells"].get(group, {}).get(key), key) for _, key in t["columns"]])
        for row in t["rows"]
        for group in t["groups"]
    ]


def rich_tables(tables: list[dict[str, Any]]) -> list[Table]:
    """One row per method and model, so the table fits a terminal; report.md has the paper's wide layout."""
    shown = []
    for t in tables:
        table = Table(title=plain(t["title"], LINE), title_justify="left")
        table.add_column("Method")
        if t["groups"] != [""]:
            table.add_column("Model")
        for label, _ in t["columns"]:
            table.add_column(label, justify="right")
        last = len(t["groups"]) - 1
        for i, (method, group, cells) in enumerate(rows_of(t)):
            first = [method if i % (last + 1) == 0 else ""] + ([group] if group else [])
            table.add_row(*map(plain, [*first, *cells]), end_section=i % (last + 1) == last)
        shown.append(table)
    return shown


BAR = 32
"""Width of the longest bar of the terminal chart, in characters."""


def gap_charts(tables: list[dict[str, Any]]) -> list[tuple[str, list[list[str]]]]:
    """The headline figure as text: per scenario, each approximate method's Avg. Gap on each model as a
    bar (mean over seeds, ± std), scaled to the largest; as (title, [method, model, bar, value] rows)."""
    charts = []
    for t in tables:
        if t.get("kind") != "unlearn":
            continue
        exact = reference_method([row["method"] for row in t["rows"]])
        bars = [
            (row["method"], group, row["cells"][group]["avg_gap"])
            for row in t["rows"]
            for group in t["groups"]
            if row["method"] != exact and row["cells"].get(group, {}).get("avg_gap", {}).get("n")
        ]
        if not bars:
            continue
        top = max(stats["mean"] for _, _, stats in bars) or 1.0
        rows = [
            [
                method if i == 0 or method != bars[i - 1][0] else "",
                group,
                bar(stats["mean"] / top * BAR),
                fmt(stats),
            ]
            for i, (method, group, stats) in enumerate(bars)
        ]
        charts.append((f"Avg. Gap to retrain, forget {t['scenario']} (shorter is closer)", rows))
    return charts


def gap_bars(tables: list[dict[str, Any]]) -> list[Table]:
    """The headline chart in the terminal, so a remote shell shows the shape without opening a picture."""
    shown = []
    for title, rows in gap_charts(tables):
        chart = Table(
            title=plain(title, LINE), title_justify="left", box=None, show_header=False, pad_edge=False
        )
        chart.add_column("Method")
        chart.add_column("Model")
        chart.add_column("Bar", width=BAR + 1, no_wrap=True)
        chart.add_column("Avg. Gap", justify="right")
        for row in rows:
            chart.add_row(*map(plain, row))
        shown.append(chart)
    return shown


def text_chart(title: str, rows: list[list[str]]) -> list[str]:
    """The same chart for report.md, as a fenced block of aligned text."""
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    lines = [f"{m:<{widths[0]}}  {g:<{widths[1]}}  {b:<{BAR}}  {v}".rstrip() for m, g, b, v in rows]
    return [f"### {title}", "", "```", *lines, "```", ""]


def bar(length: float) -> str:
    """A horizontal bar ``length`` characters long, to an eighth of a character."""
    eighths = max(0, round(length * 8))
    return "█" * (eighths // 8) + ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")[eighths % 8]


def interval(claim: dict[str, Any]) -> str:
    if claim["low"] is None:
        return f"{claim['mean']:+.2f} (one seed)"
    return f"{claim['mean']:+.2f} [{claim['low']:+.2f}, {claim['high']:+.2f}]"


def claim_cells(claim: dict[str, Any]) -> list[str]:
    def stats(values: list[float]) -> str:
        return fmt(mean_std(values))

    return [
        claim["method"],
        claim["model"],
        stats(claim["gap_dense"]),
        stats(claim["gap_sparse"]),
        interval(claim),
        str(claim["n"]),
        claim["verdict"],
    ]


CLAIM_HEADERS = ["Method", "Model", "Gap dense", "Gap sparse", "Sparse − dense [95% CI]", "Seeds", "Claim"]


def claims_title(scenario: str) -> str:
    return f"does sparsity close the gap? forget {scenario}, paired over seeds"


def rich_claims(claims: list[dict[str, Any]]) -> list[Table]:
    shown = []
    for scenario in dict.fromkeys(c["scenario"] for c in claims):
        table = Table(title=plain(claims_title(scenario), LINE), title_justify="left")
        for i, name in enumerate(CLAIM_HEADERS):
            table.add_column(name, justify="left" if i in (0, 1, 6) else "right")
        for claim in claims:
            if claim["scenario"] == scenario:
                table.add_row(*map(plain, claim_cells(claim)))
        shown.append(table)
    return shown


def markdown(
    tables: list[dict[str, Any]],
    preamble: str = "",
    claims: list[dict[str, Any]] | None = None,
    models: dict[str, Any] | None = None,
) -> str:
    """report.md: the paper's wide layout (a column block per model) up to two models, one row per method
    and model beyond; then the claim per method, and the trained models."""
    lines = [preamble] if preamble else []
    for t in tables + ([models] if models and models["rows"] else []):
        wide = len(t["groups"]) <= 2
        if wide:
            cols = [header(g, label) for g in t["groups"] for label, _ in t["columns"]]
        else:
            cols = ["Model"] + [label for label, _ in t["columns"]]
        lines += [
            f"### {t['title']}",
            "",
            "| Method | " + " | ".join(cols) + " |",
            "|---|" + "---:|" * len(cols),
        ]
        if wide:
            for row in t["rows"]:
                cells = [
                    fmt(row["cells"].get(g, {}).get(key), key) for g in t["groups"] for _, key in t["columns"]
                ]
                lines.append(f"| {row['method']} | " + " | ".join(cells) + " |")
        else:
            lines += [
                f"| {method} | {group} | " + " | ".join(cells) + " |" for method, group, cells in rows_of(t)
            ]
        lines.append("")
    for title, rows in gap_charts(tables):
        lines += text_chart(title, rows)
    for scenario in dict.fromkeys(c["scenario"] for c in claims or []):
        lines += [
            f"### {claims_title(scenario)}",
            "",
            "| " + " | ".join(CLAIM_HEADERS) + " |",
            "|---|---|---:|---:|---:|---:|---|",
        ]
        lines += ["| " + " | ".join(claim_cells(c)) + " |" for c in claims or [] if c["scenario"] == scenario]
        lines.append("")
    return "\n".join(lines)
