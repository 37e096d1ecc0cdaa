"""The paper's claim next to a run's: the run's Avg. Gap per method and model (mean ± std over seeds),
then per scenario and method the paper's numbers (CIFAR-10, ResNet-18, dense → 95% sparsity) beside
the run's and the verdict of its paired comparison (report.json's claims).

    python bench/against_paper.py runs/paper-table [--rate 0.95]

Reads report.json of a finished `smu run` of kind unlearn; runs nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

PAPER = {  # Jia et al. 2023, main table: Avg. Gap dense -> 95% sparse (OMP), CIFAR-10, ResNet-18
    ("class", "ft"): (25.78, 11.50),
    ("class", "ga"): (7.12, 6.41),
    ("class", "ff"): (5.32, 1.98),
    ("class", "iu"): (5.41, 1.10),
    ("random", "ft"): (2.74, 1.92),
    ("random", "ga"): (4.26, 3.05),
    ("random", "ff"): (5.08, 4.50),
    ("random", "iu"): (4.07, 3.08),
}


def stats(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return f"{mean:.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{mean:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--rate", type=float, default=0.95, help="the sparsity compared with dense")
    args = parser.parse_args()
    report = json.loads((args.run / "report.json").read_text())
    claims = report["claims"]
    for table in report["report"]:  # Avg. Gap, methods × models, mean ± std over seeds
        if table.get("kind") != "unlearn":
            continue
        print(f"Avg. Gap to retrain, forget {table['scenario']}\n")
        print("| method | " + " | ".join(table["groups"]) + " |")
        print("|---|" + "---:|" * len(table["groups"]))
        for row in table["rows"][1:]:  # the first row is retrain, the reference
            cells = [row["cells"].get(g, {}).get("avg_gap") for g in table["groups"]]
            shown = [
                f"{c['mean']:.2f} ± {c['std']:.2f}" if c and c["n"] > 1 else f"{c['mean']:.2f}" if c else "–"
                for c in cells
            ]
            print(f"| {row['method']} | " + " | ".join(shown) + " |")
        print()
    print("| scenario | method | paper | here, mean ± std | sparse − dense [95% CI] | claim here |")
    print("|---|---|---|---|---|---|")
    for c in claims:
        if abs(c["rate"] - args.rate) > 1e-9:
            continue
        paper = PAPER.get((c["scenario"].split(":")[0], c["method"]))
        theirs = f"{paper[0]:.2f} → {paper[1]:.2f}" if paper else "–"
        ours = f"{stats(c['gap_dense'])} → {stats(c['gap_sparse'])}"
        ci = f"{c['mean']:+.2f}" + (f" [{c['low']:+.2f}, {c['high']:+.2f}]" if c["low"] is not None else "")
        print(f"| {c['scenario']} | {c['method']} | {theirs} | {ours} | {ci} | {c['verdict']} |")


if __name__ == "__main__":
    main()
