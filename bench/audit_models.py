"""Benchmark 9: how the audit's N (models per ensemble) trades cost against what F can say.

F is computed from N unlearned and N retrained values per example. With few models the threshold
attacks find chance separations even between two ensembles drawn from one distribution, so F of
"retrain vs retrain" sits below 1, and the example-to-example spread of ε is wide. This simulates
per-example statistics (no training): for each N, ``--examples`` examples whose two ensembles are
drawn from the same Gaussian ("same"), from Gaussians one and three standard deviations apart
("shift 1", "shift 3"), and F (both threshold sides, and the notebook's "above"), its standard
deviation over ``--repeats`` repeats, and the seconds smu's judge takes per 1000 examples; then
U-LiRA's accuracy on "same" and "shift 1" (a quarter of a standard deviation apart too: where few
models cannot resolve the difference). Training cost is N retrainings plus N unlearning runs.

    python bench/audit_models.py
    python bench/audit_models.py --models 4,8,16,32,64,128 --examples 200 --repeats 5
    python bench/audit_models.py --only ulira --models 2,4,8,16,32,64,128,256
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import header, table

from smu.evaluation.judges import example_epsilon, forgetting_quality, ulira

SETTINGS = {"same": 0.0, "shift 1": 1.0, "shift 3": 3.0}


def quality(n: int, shift: float, examples: int, sides: str, rng: np.random.Generator) -> tuple[float, float]:
    """(F, seconds) for ``examples`` examples with N models per ensemble."""
    start = time.perf_counter()
    eps = [example_epsilon(rng.normal(shift, 1, n), rng.normal(0, 1, n), sides) for _ in range(examples)]
    return forgetting_quality(np.array(eps))[0], time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="2,4,8,16,32,64")
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", choices=("f", "ulira"), help="run one judge's table only")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    if args.only != "ulira":
        f_table(args, rng)
    if args.only != "f":
        ulira_table(args, rng)


def f_table(args: argparse.Namespace, rng: np.random.Generator) -> None:
    header("audit: F against N (simulated statistics)")
    rows = []
    for n in [int(v) for v in args.models.split(",")]:
        row, seconds = [n], []
        for sides in ("both", "above"):
            for shift in SETTINGS.values():
                runs = [quality(n, shift, args.examples, sides, rng) for _ in range(args.repeats)]
                values = [f for f, _ in runs]
                seconds += [s for _, s in runs]
                row.append(f"{np.mean(values):.3f} ± {np.std(values):.3f}")
        row.append(f"{1000 * np.median(seconds) / args.examples:.2f}")
        rows.append(row)
    names = [f"{name} ({sides})" for sides in ("both", "above") for name in SETTINGS]
    table(rows, ["N", *[f"F {n}" for n in names], "judge s / 1000 examples"])
    print()


def ulira_table(args: argparse.Namespace, rng: np.random.Generator) -> None:
    header("audit: U-LiRA against N (simulated statistics)")
    shifts = {"same": 0.0, "shift 0.25": 0.25, "shift 1": 1.0}
    rows = []
    for n in [int(v) for v in args.models.split(",") if int(v) >= 3]:  # U-LiRA holds one out of 3 or more
        row = [n]
        for shift in shifts.values():
            runs = [
                ulira(rng.normal(shift, 1, (n, args.examples)), rng.normal(0, 1, (n, args.examples)))
                for _ in range(args.repeats)
            ]
            row.append(f"{np.mean([r.mean for r in runs]):.1f} ± {np.std([r.mean for r in runs]):.1f}")
        rows.append(row)
    table(rows, ["N", *[f"U-LiRA % {name}" for name in shifts]])


if __name__ == "__main__":
    main()
