"""Judges that compare an ensemble of unlearned models with an ensemble of retrained ones, example by
example (``smu audit``). Pure numpy on per-example statistics, so each piece is testable by hand.

- The NeurIPS 2023 Machine Unlearning competition's forgetting quality F (Triantafillou et al. 2024).
- U-LiRA (Hayes et al. 2024): a per-example likelihood-ratio attack telling unlearned from retrained.
- ToW (Zhao et al. 2024): the tug of war between forget, retain and test accuracy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DELTA = 0.01
"""δ of the competition's (ε, δ) estimate."""
BIN_EDGES = np.arange(0.0, 6.0 + 1e-9, 0.5)
"""The competition's ε bins: 0, 0.5, ..., 6.0 (13 edges)."""


SIDES = {
    "both": "each threshold tried both ways: unlearned above it, and unlearned below it (the default)",
    "above": "unlearned when the statistic is above the threshold, as the community notebook",
}
"""Which single-threshold attacks F tries."""


def attack_epsilon(fpr: float, fnr: float, delta: float = DELTA) -> float | None:
    """ε of one attack from its error rates, as the competition's notebook: ∞ when both are 0; None
    (the attack is discarded) when exactly one is; else the larger of log(1 − δ − FPR) − log FNR and
    log(1 − δ − FNR) − log FPR, leaving out a term whose log is undefined, and ∞ when both are (both
    rates above 1 − δ: the attack, reversed, is near perfect)."""
    if fpr == 0 and fnr == 0:
        return math.inf
    if fpr == 0 or fnr == 0:
        return None
    terms = [math.log(1 - delta - a) - math.log(b) for a, b in ((fpr, fnr), (fnr, fpr)) if 1 - delta - a > 0]
    terms += [-math.inf for a in (fpr, fnr) if 1 - delta - a == 0]  # log 0
    return max(terms) if terms else math.inf


def threshold_rates(unlearned: np.ndarray, retrained: np.ndarray, sides: str = "both") -> np.ndarray:
    """(FPR, FNR) rows of every single-threshold attack on one example's statistics. The positives are
    the unlearned models; every value of either ensemble is a threshold; an attack calls a model
    unlearned when its statistic is above the threshold and, with ``sides="both"``, also the attack
    that calls it unlearned when below (an attacker picks the side that works)."""
    thresholds = np.concatenate([unlearned, retrained])[:, None]
    above_r = (retrained[None, :] > thresholds).mean(axis=1)
    above_u = (unlearned[None, :] > thresholds).mean(axis=1)
    rates = [np.stack([above_r, 1 - above_u], axis=1)]
    if sides == "both":
        below_r = (retrained[None, :] < thresholds).mean(axis=1)
        below_u = (unlearned[None, :] < thresholds).mean(axis=1)
        rates.append(np.stack([below_r, 1 - below_u], axis=1))
    return np.concatenate(rates)


def logistic_rates(unlearned: np.ndarray, retrained: np.ndarray) -> tuple[float, float]:
    """Mean (FPR, FNR) of a logistic regression on the statistic over 3 stratified shuffle splits
    (scikit-learn's defaults: a tenth held out, but at least one model of each side; C = 1;
    random_state 0)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedShuffleSplit

    # The notebook's order; stratified splits draw within each side, so only the order there counts.
    x = np.concatenate([retrained, unlearned])[:, None]
    y = np.concatenate([np.zeros(len(retrained)), np.ones(len(unlearned))])
    fprs, fnrs = [], []
    held_out = max(0.1, 2 / len(y))
    for train, test in StratifiedShuffleSplit(n_splits=3, test_size=held_out, random_state=0).split(x, y):
        guess, truth = LogisticRegression().fit(x[train], y[train]).predict(x[test]), y[test]
        fprs.append(float((guess[truth == 0] == 1).mean()))
        fnrs.append(float((guess[truth == 1] == 0).mean()))
    return float(np.mean(fprs)), float(np.mean(fnrs))


def example_epsilon(
    unlearned: np.ndarray, retrained: np.ndarray, sides: str = "both", delta: float = DELTA
) -> float:
    """The competition's ε of one example: the largest over every threshold attack and the logistic
    regression, starting from 0; attacks with exactly one error rate at 0 are discarded."""
    eps = 0.0
    attacks = [*threshold_rates(unlearned, retrained, sides).tolist(), logistic_rates(unlearned, retrained)]
    for fpr, fnr in attacks:
        value = attack_epsilon(fpr, fnr, delta)
        if value is not None:
            eps = max(eps, value)
    return eps


def forgetting_quality(epsilons: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(F, bin n_s, H_s) from per-example ε: n_s = np.digitize(ε, 0, 0.5, ..., 6.0), H_s = 2 / 2^n_s,
    F = mean H_s. ε = 0 lands in bin 1 (H = 1); ε ≥ 6, ∞ included, in bin 13 (H = 2 / 8192)."""
    bins = np.digitize(np.asarray(epsilons, dtype=float), BIN_EDGES)
    scores = 2.0 / 2.0**bins
    return float(scores.mean()), bins, scores


@dataclass
class Interval:
    mean: float
    low: float
    high: float


def ulira(unlearned: np.ndarray, retrained: np.ndarray, seed: int = 0, resamples: int = 1000) -> Interval:
    """U-LiRA's balanced accuracy, 50% meaning unlearned models cannot be told from retrained ones.

    ``unlearned`` and ``retrained`` are (models, examples) arrays of φ = log(p_y / (1 − p_y)). Each
    model is a held-out target in turn: per example, a Gaussian is fitted to the *other* models of
    each ensemble — its mean per example, and one variance per ensemble pooled over the examples
    (steadier than a per-example variance with few models) — and the target is called unlearned where
    its likelihood ratio favours the unlearned Gaussian. The held-out model enters neither the means
    nor the variances, so each ensemble needs three models or more. The interval is a 95% bootstrap
    over the examples.
    """
    if min(len(unlearned), len(retrained)) < 3:
        raise ValueError("U-LiRA needs at least 3 models per ensemble: one held out, two to fit a variance")
    votes_u = loo_votes(unlearned, retrained, own_is_unlearned=True)
    votes_r = loo_votes(retrained, unlearned, own_is_unlearned=False)
    per_example_u = votes_u.mean(axis=0)  # share of unlearned targets called unlearned, per example
    per_example_r = 1 - votes_r.mean(axis=0)  # share of retrained targets called retrained
    rng = np.random.default_rng(seed)
    n = per_example_u.shape[0]
    picks = rng.integers(0, n, size=(resamples, n))
    boot = (per_example_u[picks].mean(axis=1) + per_example_r[picks].mean(axis=1)) / 2
    mean = float((per_example_u.mean() + per_example_r.mean()) / 2)
    return Interval(100 * mean, 100 * float(np.percentile(boot, 2.5)), 100 * float(np.percentile(boot, 97.5)))


def loo_votes(own: np.ndarray, other: np.ndarray, own_is_unlearned: bool) -> np.ndarray:
    """(models, examples) booleans: is each model of ``own``, left out of its ensemble's means and
    variance, called unlearned against ``other``, the other ensemble (all of its models)?"""
    votes = np.zeros(own.shape, dtype=bool)
    other_fit = other.mean(axis=0), pooled_variance(other)
    for m in range(own.shape[0]):
        rest = np.delete(own, m, axis=0)
        own_fit = rest.mean(axis=0), pooled_variance(rest)
        (mean_u, var_u), (mean_r, var_r) = (own_fit, other_fit) if own_is_unlearned else (other_fit, own_fit)
        log_u = -((own[m] - mean_u) ** 2) / (2 * var_u) - 0.5 * math.log(var_u)
        log_r = -((own[m] - mean_r) ** 2) / (2 * var_r) - 0.5 * math.log(var_r)
        votes[m] = log_u > log_r
    return votes


def pooled_variance(values: np.ndarray) -> float:
    """The per-example variance of an ensemble (unbiased where it has two models or more), averaged
    over the examples, never below 1e-8."""
    ddof = 1 if values.shape[0] > 1 else 0
    return max(float(values.var(axis=0, ddof=ddof).mean()), 1e-8)


def tow(acc_u: dict[str, np.ndarray], acc_r: dict[str, np.ndarray]) -> Interval:
    """ToW = Π over forget, retain, test of (1 − |acc_U − acc_R|), accuracies in [0, 1]: one value per
    unlearned model against the retrained ensemble's mean accuracy, with a 95% t-interval."""
    values = np.ones(len(acc_u["forget"]))
    for split in ("forget", "retain", "test"):
        values *= 1 - np.abs(np.asarray(acc_u[split]) - float(np.mean(acc_r[split])))
    return t_interval(values)


def t_interval(values: np.ndarray) -> Interval:
    """The mean of one value per model, with its 95% Student's t interval (the mean alone for one)."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return Interval(mean, mean, mean)
    half = float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))
    return Interval(mean, mean - half, mean + half)
