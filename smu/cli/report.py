"""A recipe run's report in the terminal: its tables one row per method and model (report.md has the
wide layout), the Avg. Gap chart and the claims, as Rich tables."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from smu.cli.ui import plain
from smu.core.text import LINE
from smu.recipes.report import BAR, CLAIM_HEADERS, claim_cells, claims_title, gap_charts, rows_of


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
