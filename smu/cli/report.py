"""The results that take several tables, as Rich tables: a recipe run's report (one row per method and
model; report.md has the wide layout), its Avg. Gap chart and claims; `smu tune`'s search; `smu audit`'s
verdicts."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from smu.cli.ui import plain, plan_text, table
from smu.core.text import LINE
from smu.workflows.recipes.report import BAR, CLAIM_HEADERS, claim_cells, claims_title, gap_charts, rows_of


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


def settings(values: dict) -> str:
    """A trial's parameters on one line: ``alpha=0.0003, lr=0.01``."""
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


def tune_tables(result: dict) -> list:
    """`smu tune`: the chosen setting and what it cost, the held-out draw's metrics, every trial, the
    options' importance, and the recipe snippet."""
    if result.get("dry_run"):
        return plan_text(result)
    h, t, cost = result["heldout"], result["tuning"], result["cost"]
    counts = ", ".join(f"{n} {s}" for s, n in sorted(result["counts"].items()))
    title = f"smu tune --method {result['method']}: best of {len(result['trials'])} trials ({counts})"
    minutes = (cost["tuning_s"] + cost["references_s"]) / 60
    summary = [
        ["Chosen setting", settings(result["best"]["params"]), f"trial {result['best']['number']}"],
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
        [r["number"], r["state"], "–" if r["value"] is None else r["value"], settings(r["params"])]
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


def audit_tables(result: dict) -> list:
    """`smu audit`: the judges' verdicts with how to read them, the ensembles' metrics, and the least
    forgotten examples."""
    if result.get("dry_run"):
        return plan_text(result)
    u, r = result["ulira"], result["tow"]
    rows = [
        [
            "Forgetting quality F",
            result["forgetting_quality"],
            "1 = no example told apart; compare with F of retrain at the same N",
        ],
        [
            "Examples told apart",
            f"{result['separated']} of {result['forget']['size']}",
            "ε = ∞: every unlearned model on one side of every retrained one",
        ],
        ["Final score", result["score"], "F × (RA_U / RA_R) × (TA_U / TA_R)"],
        [
            "U-LiRA accuracy %",
            f"{u['mean']:.1f} [{u['low']:.1f}, {u['high']:.1f}]",
            "50 = indistinguishable from retraining",
        ],
        ["ToW", f"{r['mean']:.3f} [{r['low']:.3f}, {r['high']:.3f}]", "1 = the accuracies of retraining"],
    ]
    if result["constant"]:
        count = f"{result['constant']} of {result['forget']['size']}"
        reading = "the N unlearned models agree: no threshold splits one value, so F counts them forgotten "
        reading += "unless every retrained model lies on one side; read U-LiRA"
        rows.insert(3, ["Examples with one unlearned value", count, reading])
    title = (
        f"smu audit --method {result['method']}: forget {result['forget']['spec']} "
        f"({result['forget']['size']} samples), {result['models']} + {result['models']} models, "
        f"statistic {result['statistic']}, thresholds {result['thresholds']}; "
        f"{result['steps']['ran']} steps run, {result['steps']['reused']} reused, "
        f"{result['wall_s'] / 60:.1f} min"
    )
    metrics = [
        [f"mean {k.upper().replace('_', '-')}", result["unlearned"][k], result["retrained"][k]]
        for k in result["unlearned"]
    ]
    worst = [[w["index"], w["class"], "∞" if w["epsilon"] is None else w["epsilon"]] for w in result["worst"]]
    return [
        table(title, ["Judge", "Value", "Reading"], rows),
        table("Ensembles (percent)", ["Metric", "Unlearned", "Retrained"], metrics),
        *audit_extra(result),
        table(f"Least forgotten examples (ε; all in {result['artifact']})", ["Index", "Class", "ε"], worst),
    ]


def audit_extra(result: dict) -> list:
    """The extra metrics (``--metrics``) of an audit: a row per metric, its mean [95% t-interval] over the
    member pairs, and the retrained models' own where it needs no reference (ZRF)."""
    extra = result.get("extra")
    if not extra:
        return []
    from smu.cli.evaluate import digits
    from smu.evaluation.metrics import METRICS, headline

    def cell(spec: Any, value: dict | None) -> str | None:
        if value is None:
            return None
        mean, low, high = (digits(headline(spec, value[side])) for side in ("mean", "low", "high"))
        return mean if None in (mean, low, high) or low == high == mean else f"{mean} [{low}, {high}]"

    rows = []
    for name, value in extra["metrics"].items():
        spec = METRICS.get_spec(name)
        rows.append([spec.header, cell(spec, value), cell(spec, (extra.get("reference") or {}).get(name))])
    title = (
        f"Extra metrics on the forget set (model k against retrained model k; mean [95% interval] over "
        f"{result['models']} pairs; metric seed {extra['options']['seed']})"
    )
    return [table(title, ["Metric", "Unlearned", "Retrained"], rows)]
