"""Where an Avg. Gap comes from: its four terms (absolute ΔUA, ΔMIA-Efficacy, ΔRA, ΔTA to retrain of the
same seed and model), mean over seeds, per scenario, method and model; and how much retrain itself moves
from seed to seed (the std of its metrics), the noise floor any gap is measured against.

    python bench/gap_terms.py runs/memorise [--markdown]

Reads the step.json files of a finished `smu run` of kind unlearn; runs nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

TERMS = ("ua", "mia_efficacy", "ra", "ta")


def runs(folder: Path) -> dict[tuple[str, str, str, int], dict[str, float]]:
    """(scenario folder, model, method, seed) -> metrics, from every unlearning step of the run."""
    found = {}
    for path in folder.glob("seed-*/*/*/*/step.json"):
        seed_dir, scenario, model, method = path.parts[-5:-1]
        result = json.loads(path.read_text()).get("result", {})
        if "metrics" in result:
            found[(scenario, model, method, int(seed_dir.removeprefix("seed-")))] = result["metrics"]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = parser.parse_args()
    found = runs(args.run)
    terms: dict[tuple[str, str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    floor: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (scenario, model, method, seed), metrics in sorted(found.items()):
        reference = found.get((scenario, model, "retrain", seed))
        if reference is None:
            continue
        if method == "retrain":
            for k in TERMS:
                floor[(scenario, model)][k].append(metrics[k])
            continue
        for k in TERMS:
            terms[(scenario, model, method)][k].append(abs(metrics[k] - reference[k]))
    sep = " | " if args.markdown else "  "
    head = ["scenario", "model", "method", "ΔUA", "ΔMIA", "ΔRA", "ΔTA", "Avg. Gap", "seeds"]
    print(sep.join(head).join(("| ", " |")) if args.markdown else sep.join(head))
    if args.markdown:
        print("|" + "---|" * 3 + "---:|" * 6)
    for (scenario, model, method), values in terms.items():
        means = [statistics.fmean(values[k]) for k in TERMS]
        row = [scenario, model, method, *(f"{m:.2f}" for m in means), f"{sum(means) / 4:.2f}"]
        row.append(str(len(values["ua"])))
        print(sep.join(row).join(("| ", " |")) if args.markdown else sep.join(row))
    print()
    head = ["scenario", "model", "retrain: std over seeds of UA", "MIA", "RA", "TA", "seeds"]
    print(sep.join(head).join(("| ", " |")) if args.markdown else sep.join(head))
    if args.markdown:
        print("|" + "---|" * 2 + "---:|" * 5)
    for (scenario, model), values in floor.items():
        n = len(values["ua"])
        stds = [f"{statistics.stdev(values[k]):.2f}" if n > 1 else "–" for k in TERMS]
        row = [scenario, model, *stds, str(n)]
        print(sep.join(row).join(("| ", " |")) if args.markdown else sep.join(row))


if __name__ == "__main__":
    main()
