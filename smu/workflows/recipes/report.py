"""report.md: the statistics of a recipe run as text (the paper's wide tables, the Avg. Gap chart as
bars of block characters, the claims); the cells and charts the terminal tables share."""

from __future__ import annotations

from typing import Any

from smu.workflows.recipes.config import reference_method
from smu.workflows.recipes.statistics import mean_std

DIGITS = {
    **{"forgetting_quality": 4, "score": 4, "tow": 3},
    **{"zrf": 4, "js": 4, "activation_distance": 4, "weight_distance": 3},
}
"""Decimals of the columns that are not percentages (the extra metrics: the built-ins')."""
WIDE = 2
"""Up to this many models a table has the paper's wide layout, a column block per model."""


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
        wide = len(t["groups"]) <= WIDE
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
