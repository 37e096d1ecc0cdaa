"""Membership inference with a support-vector attack (the paper's MIA-Efficacy and MIA-Privacy).

An SVC (RBF kernel, C=3, gamma="auto") learns to tell shadow members (training samples) from shadow
non-members (test samples) by one feature of the model's output, then labels the targets. Following
Song & Mittal (2021), the features are:

- ``confidence``: the softmax probability of the true label (the paper's headline feature)
- ``entropy``: −Σ p_i log p_i
- ``m_entropy``: modified entropy, −(1 − p_y) log p_y − Σ_{i≠y} p_i log(1 − p_i)
- ``prob``: the whole softmax vector
- ``correctness``: 1 if the prediction is right, else 0
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from smu.core.errors import DivergedError
from smu.core.registry import lookup

EPS = 1e-30


def confidence(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return p.gather(1, y[:, None])


def entropy(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return -(p * p.clamp_min(EPS).log()).sum(1, keepdim=True)


def m_entropy(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Modified entropy: low for a confident correct prediction, high for a confident wrong one.

    The true class contributes −(1 − p_y) log p_y; every other class −p_i log(1 − p_i). (The original
    code used log p_i for the other classes too, which is not the measure of Song & Mittal.)
    """
    true = torch.zeros_like(p, dtype=torch.bool).scatter_(1, y[:, None], True)
    terms = torch.where(true, -(1 - p) * p.clamp_min(EPS).log(), -p * (1 - p).clamp_min(EPS).log())
    return terms.sum(1, keepdim=True)


def prob(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return p


def correctness(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (p.argmax(1) == y).to(p.dtype)[:, None]


FEATURES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "confidence": confidence,
    "entropy": entropy,
    "m_entropy": m_entropy,
    "prob": prob,
    "correctness": correctness,
}


def feature(name: str, logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """One attack feature per sample, as a float64 (n, d) array."""
    p = torch.softmax(logits.double(), dim=1)
    return lookup(FEATURES, name, "MIA feature")(p, labels.to(p.device)).cpu().numpy()


def svc_attack(
    shadow_in: np.ndarray,
    shadow_out: np.ndarray,
    target_in: np.ndarray | None = None,
    target_out: np.ndarray | None = None,
) -> float:
    """Fit the attack on shadow members (label 1) and non-members (label 0); return its accuracy on the
    targets in percent: the share of ``target_in`` called members and of ``target_out`` called
    non-members, averaged over the target groups given."""
    from sklearn.svm import SVC

    x = np.concatenate([shadow_in, shadow_out])
    y = np.concatenate([np.ones(len(shadow_in)), np.zeros(len(shadow_out))])
    if not np.isfinite(x).all():  # finite weights can still overflow: a model from elsewhere, or diverged
        raise DivergedError(
            "the model's outputs hold NaN or Inf, so no membership attack can read them",
            hint="its weights are finite but too large; use the model it was made from",
        )
    clf = SVC(C=3, gamma="auto", kernel="rbf")
    clf.fit(x, y)
    scores = []
    if target_in is not None and len(target_in):
        scores.append(clf.predict(target_in).mean())
    if target_out is not None and len(target_out):
        scores.append(1.0 - clf.predict(target_out).mean())
    return 100.0 * float(np.mean(scores)) if scores else float("nan")
