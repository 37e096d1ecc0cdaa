"""What issue 26's judge changes move, on the same members: every verdict of an audit run folder judged
as smu judged before (statistics cast to float32; U-LiRA's held-out model left in its ensemble's
variance) and as it judges now (float64; held out of the variance too). No training: the members'
statistics are read from each verdict's ``audit.safetensors``.

    python bench/audit_rejudge.py runs/digits-audit
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from common import header, table
from safetensors.numpy import load_file

from smu.evaluation.judges import example_epsilon, forgetting_quality, pooled_variance, ulira


def f_of(stat_u: np.ndarray, stat_r: np.ndarray, sides: str) -> float:
    eps = [example_epsilon(stat_u[:, s], stat_r[:, s], sides) for s in range(stat_u.shape[1])]
    return forgetting_quality(np.array(eps))[0]


def ulira_before(unlearned: np.ndarray, retrained: np.ndarray) -> float:
    """The balanced accuracy as smu computed it before: variances from every model of each ensemble,
    only the means leaving the target out."""
    var_u, var_r = pooled_variance(unlearned), pooled_variance(retrained)

    def votes(own: np.ndarray, own_is_unlearned: bool) -> np.ndarray:
        out = np.zeros(own.shape, dtype=bool)
        for m in range(own.shape[0]):
            rest = np.delete(own, m, axis=0).mean(axis=0)
            mean_u, mean_r = (
                (rest, retrained.mean(axis=0)) if own_is_unlearned else (unlearned.mean(axis=0), rest)
            )
            log_u = -((own[m] - mean_u) ** 2) / (2 * var_u) - 0.5 * math.log(var_u)
            log_r = -((own[m] - mean_r) ** 2) / (2 * var_r) - 0.5 * math.log(var_r)
            out[m] = log_u > log_r
        return out

    called_u = votes(unlearned, True).mean(axis=0)
    called_r = 1 - votes(retrained, False).mean(axis=0)
    return 100 * float((called_u.mean() + called_r.mean()) / 2)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path, help="a folder written by smu run (kind: audit) or smu audit")
    args = parser.parse_args()
    header(f"audit: the judges before and after issue 26, on the members of {args.run}")
    rows = []
    for path in sorted(args.run.rglob("audit.safetensors")):
        saved = load_file(str(path))
        sides = path.parent.name.split("-", 1)[1]
        stat_u, stat_r = saved["statistic_unlearned"], saved["statistic_retrained"]
        phi_u, phi_r = saved["phi_unlearned"], saved["phi_retrained"]
        f32 = f_of(stat_u.astype(np.float32), stat_r.astype(np.float32), sides)
        f64 = f_of(stat_u, stat_r, sides)
        before = ulira_before(
            phi_u.astype(np.float32).astype(np.float64), phi_r.astype(np.float32).astype(np.float64)
        )
        after = ulira(phi_u, phi_r).mean
        where = path.relative_to(args.run).parts[:-2]
        rows.append(
            [
                "/".join(where),
                f"{f32:.4f}",
                f"{f64:.4f}",
                f"{f64 - f32:+.4f}",
                f"{before:.2f}",
                f"{after:.2f}",
                f"{after - before:+.2f}",
            ]
        )
    table(rows, ["verdict", "F before", "F now", "ΔF", "U-LiRA % before", "U-LiRA % now", "Δ U-LiRA"])


if __name__ == "__main__":
    main()
