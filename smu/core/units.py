"""Reported numbers: one unit per kind, written with the precision they mean.

Every measured quantity smu reports is a percentage — accuracies, UA, RA, TA, MIA, gaps and sparsity
alike (90.0, not 0.9) — except the audit's scores and the extra metrics, which keep the scale their
papers define (F, the final score and ToW in [0, 1], ε; ZRF, JS and the distances). Inputs stay as the
paper's code takes them (``--rate 0.9``), and so does the ``smu.sparsity`` field of a file, which is
part of the file format.

:func:`reported` rounds a result at the output boundary (``--json``, and the JSON files a run writes
for people: manifest.json, report.json, audit.json, tune.json), by the key each number sits under:
percentages to 2 decimals, times and throughputs to 3 significant digits, scores and losses to 4.
Configuration — hyper-parameters, seeds, input rates — is never rounded: ``lr 0.013`` and ``alpha
3e-8`` come out as given. The library's functions return full precision, for callers who compute
with the numbers; ``step.json``, which later steps compute from, keeps it too.
"""

from __future__ import annotations

import math
from typing import Any

from smu.core.text import jsonable

PERCENT = "percent"
TIME = "time"
SCORE = "score"
RATE = "rate"
EXACT = "exact"

# Percentages. A dict under one of these keys (mia's features, per_layer's tensors, a statistic's mean,
# std, low and high) is in the same unit. "value" is a tune trial's objective, an Avg. Gap; "claims"
# holds Avg. Gaps and their paired differences.
METRICS = ("ua", "ra", "ta", "mia", "mia_efficacy", "mia_privacy", "ulira", "sparsity", "per_layer")
BACKDOOR = ("sa", "asr", "sa_before", "asr_before", "sa_after", "asr_after")
GAPS = ("gap", "tuning_gap", "heldout_gap", "avg", "avg_gap", "value", "claims")
SCORES = ("forgetting_quality", "score", "tow", "epsilon", "importance", "loss")
# The extra metrics (smu.evaluation.metrics): "extra" holds every one a result has, plug-ins' included;
# the built-ins' names are the columns of a recipe's report.
EXTRA = ("extra", "zrf", "js", "activation_distance", "weight_distance")
ASKED = ("config", "retrain_config", "options", "recipe", "params", "space", "fixed", "poison")
INPUTS = ("rate", "rates", "seed", "seeds")

UNITS: dict[str, str] = {
    **dict.fromkeys(METRICS + BACKDOOR + GAPS, PERCENT),
    **dict.fromkeys(SCORES + EXTRA, SCORE),
    "images_per_second": RATE,
    **dict.fromkeys(ASKED + INPUTS, EXACT),  # what was asked for, never measured
}
"""Key -> unit; a key not listed takes the unit of the key above it, and a float under none is kept."""

SUFFIXES = (("_acc", PERCENT), ("_s", TIME), ("seconds", TIME), ("_min", TIME))
"""Units by the end of a key: train_acc, rte_s, wall_s, train_seconds, rte_min."""


def unit_of(key: str) -> str | None:
    if key in UNITS:
        return UNITS[key]
    return next((unit for end, unit in SUFFIXES if key.endswith(end)), None)


def reported(result: Any, unit: str | None = None) -> Any:
    """``result`` as smu writes it for people: JSON-safe (NaN is null) and each measured float rounded
    to what its unit means; configuration untouched."""
    return jsonable(rounded(result, unit))


def rounded(obj: Any, unit: str | None = None) -> Any:
    if unit == EXACT:
        return obj
    if isinstance(obj, dict):
        return {k: rounded(v, unit_of(str(k)) or unit) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [rounded(v, unit) for v in obj]
    if isinstance(obj, float) and math.isfinite(obj) and unit is not None:
        return round_to(obj, unit)
    return obj


def round_to(x: float, unit: str) -> float:
    if unit == PERCENT:
        return round(x, 2) + 0.0  # + 0.0: no "-0.0"
    # Times by significant digits: a fast method's RTE of 4 ms would read 0.00 s at 2 decimals.
    return significant(x, 4 if unit == SCORE else 3)


def significant(x: float, digits: int) -> float:
    """``x`` to ``digits`` significant digits, never rounding away units (2257.3 img/s stays 2257)."""
    if x == 0:
        return 0.0
    return round(x, max(0, digits - 1 - math.floor(math.log10(abs(x))))) + 0.0
