"""report.tex: the tables of report.md as LaTeX for a paper — booktabs rules, mean ± std as
``$a \\pm b$``, every name escaped — to ``\\input`` into a document whose preamble has
``\\usepackage{booktabs}`` and ``\\usepackage{graphicx}`` (a table wider than the page is scaled to
fit it). Same numbers and layout as report.md (a column block per model up to two models, one
row per method and model beyond); the Avg. Gap chart is a figure (``smu plot``), not a table."""

from __future__ import annotations

import math
import re
from typing import Any

from smu.workflows.recipes.report import CLAIM_HEADERS, DIGITS, WIDE, claims_title
from smu.workflows.recipes.statistics import mean_std

SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",  # OT1, LaTeX's default font encoding, prints ¡ for a bare <
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
    "±": r"$\pm$",  # the characters smu's titles use that LaTeX's utf8 input does not define
    "−": r"$-$",
    "–": "--",
    "—": "---",
    "×": r"$\times$",
    "≥": r"$\geq$",
    "≤": r"$\leq$",
    "ε": r"$\varepsilon$",
    "ℓ": r"$\ell$",
}
"""What each character becomes in LaTeX text; the rest passes through (control characters are dropped)."""


def escape(text: str) -> str:
    """``text`` as LaTeX that prints it: names come from recipes and may hold _ % & # and the like."""
    return "".join(SPECIAL.get(ch, "" if ord(ch) < 32 or ord(ch) == 127 else ch) for ch in str(text))


def number(value: float, digits: int, sign: bool = False) -> str:
    text = f"{value:{'+' if sign else ''}.{digits}f}"
    return text if math.isfinite(value) else rf"\mathrm{{{text}}}"  # nan and inf, as report.md says


def cell(stats: dict[str, float] | None, key: str = "") -> str:
    """A cell as report.md writes it: ``$mean \\pm std$`` over seeds, ``$mean$`` for one, -- for none."""
    if not stats or stats["n"] == 0:
        return "--"
    d = DIGITS.get(key, 2)
    spread = rf" \pm {number(stats['std'], d)}" if stats["n"] > 1 else ""
    return f"${number(stats['mean'], d)}{spread}$"


def interval(claim: dict[str, Any]) -> str:
    mean = f"${number(claim['mean'], 2, sign=True)}$"
    if claim["low"] is None:
        return f"{mean} (one seed)"
    return f"{mean} $[{number(claim['low'], 2, sign=True)}, {number(claim['high'], 2, sign=True)}]$"


def label(title: str) -> str:
    return "tab:smu-" + (re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "table")


def table(title: str, head: list[str], body: list[list[str]], align: str) -> list[str]:
    """A float with a caption, a label and a booktabs tabular; ``head`` holds finished header lines. LaTeX
    itself scales the tabular down to the float's width where it is wider (the paper's layout of two
    models has 12 columns of "$56.00 \\pm 2.83$"), and a table of more than three columns of numbers
    spans both columns of a two-column paper."""
    env = "table*" if align.count("r") > 3 else "table"
    return [
        rf"\begin{{{env}}}[htbp]",
        r"\centering",
        r"\small",
        rf"\caption{{{escape(title)}}}",
        rf"\label{{{label(title)}}}",
        r"\sbox0{%",
        rf"\begin{{tabular}}{{{align}}}",
        r"\toprule",
        *head,
        r"\midrule",
        *[" & ".join(row) + r" \\" for row in body],
        r"\bottomrule",
        r"\end{tabular}}%",
        r"\ifdim\wd0>\linewidth\resizebox{\linewidth}{!}{\usebox0}\else\usebox0\fi",
        rf"\end{{{env}}}",
        "",
    ]


def result_table(t: dict[str, Any]) -> list[str]:
    """A table of report.json: a column block per model (a \\cmidrule under each model's name) up to
    :data:`WIDE` models, else one row per method and model, as in report.md."""
    labels = [escape(name) for name, _ in t["columns"]]
    n = len(labels)
    if len(t["groups"]) <= WIDE:
        head = []
        if t["groups"] != [""]:
            blocks = [rf"\multicolumn{{{n}}}{{c}}{{{escape(g)}}}" for g in t["groups"]]
            rules = [rf"\cmidrule(lr){{{2 + i * n}-{1 + (i + 1) * n}}}" for i in range(len(t["groups"]))]
            head += [" & " + " & ".join(blocks) + r" \\", " ".join(rules)]
        head.append(" & ".join(["Method", *labels * len(t["groups"])]) + r" \\")
        body = [
            [escape(row["method"])]
            + [cell(row["cells"].get(g, {}).get(key), key) for g in t["groups"] for _, key in t["columns"]]
            for row in t["rows"]
        ]
        return table(t["title"], head, body, "l" + "r" * n * len(t["groups"]))
    head = [" & ".join(["Method", "Model", *labels]) + r" \\"]
    body = [
        [escape(row["method"]), escape(g)]
        + [cell(row["cells"].get(g, {}).get(key), key) for _, key in t["columns"]]
        for row in t["rows"]
        for g in t["groups"]
    ]
    return table(t["title"], head, body, "ll" + "r" * n)


def claims_table(scenario: str, claims: list[dict[str, Any]]) -> list[str]:
    def stats(values: list[float]) -> str:
        return cell(mean_std(values))

    body = [
        [escape(c["method"]), escape(c["model"]), stats(c["gap_dense"]), stats(c["gap_sparse"])]
        + [interval(c), str(c["n"]), escape(c["verdict"])]
        for c in claims
        if c["scenario"] == scenario
    ]
    head = [" & ".join(escape(h) for h in CLAIM_HEADERS) + r" \\"]
    return table(claims_title(scenario), head, body, "llrrrrl")


def latex(
    tables: list[dict[str, Any]],
    preamble: str = "",
    claims: list[dict[str, Any]] | None = None,
    models: dict[str, Any] | None = None,
) -> str:
    """report.tex: report.md's tables in the same order, the preamble (command, machine) as comments."""
    lines = [
        "% smu's report as LaTeX tables: \\input{report.tex} in a document whose preamble has",
        "% \\usepackage{booktabs} and \\usepackage{graphicx} (a table wider than its float shrinks to fit).",
        *[f"% {line}" for line in preamble.splitlines() if line.strip()],  # one comment per line, always
        "",
    ]
    for t in tables + ([models] if models and models["rows"] else []):
        lines += result_table(t)
    for scenario in dict.fromkeys(c["scenario"] for c in claims or []):
        lines += claims_table(scenario, claims or [])
    return "\n".join(lines)
