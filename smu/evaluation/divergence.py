"""How far apart two models are: on their softmax outputs (the bad-teaching paper's JS divergence and
activation distance, as its official code computes them) and on their parameters. Plain functions of
tensors, so that each is testable by hand; :mod:`smu.evaluation.metrics` declares the metrics on them.

Pinned against ``metrics.py`` of vikram2000b/bad-teaching-unlearning (Chundawat et al., AAAI 2023), which
if-loops/selective-synaptic-dampening (``src/metrics.py``) copies unchanged:

- ``JSDiv(p, q) = 0.5·F.kl_div(log p, m) + 0.5·F.kl_div(log q, m)``, m = (p + q)/2. ``F.kl_div(input,
  target)`` is KL(target ‖ exp(input)), so this is 0.5·KL(m ‖ p) + 0.5·KL(m ‖ q), the two KLs taken *from*
  the mixture — not the textbook JS, 0.5·KL(p ‖ m) + 0.5·KL(q ‖ m), which the paper writes, and not
  bounded by ln 2. With F.kl_div's default reduction ``"mean"`` each term is averaged over examples *and*
  classes: the per-example sum divided by the number of classes C.
- ``UnLearningScore`` (ZRF) concatenates the softmax outputs of every batch of the forget loader and takes
  ``1 − JSDiv`` once over all of them: batch size (its ``batch_size`` argument is unused) and a last
  partial batch change nothing.
- ``actv_dist``: per example the l2 norm of the difference of the softmax vectors, concatenated over
  batches, then the mean over examples.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def log_probs(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(softmax, its log) in float32, the log as the official code takes it (``torch.log`` of the
    softmax), except where a probability underflowed to 0: there ``log_softmax``, finite, where the
    official code's log is -inf and its divergence infinite."""
    p = logits.float().softmax(1)
    return p, torch.where(p > 0, p.log(), logits.float().log_softmax(1))


def kl_mean(log_p: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``F.kl_div(log_p, m)`` with its default reduction "mean": Σ m·(log m − log p) over examples and
    classes, divided by their product; a term with m = 0 is 0. Written as m·(log m − log p), which is
    exactly 0 where m = p (``F.kl_div``'s xlogy form leaves a residue of ~1e-10)."""
    terms = m * (m.log() - log_p)
    return torch.where(m > 0, terms, torch.zeros_like(terms)).mean()


def js_divergence(a: torch.Tensor, b: torch.Tensor) -> float:
    """The official code's ``JSDiv`` of the softmax outputs of logits ``a`` and ``b`` (examples x classes),
    over all examples at once: 0.5·KL(m ‖ p) + 0.5·KL(m ‖ q), each averaged over examples and classes."""
    (p, log_p), (q, log_q) = log_probs(a), log_probs(b)
    m = (p + q) / 2
    return float(0.5 * kl_mean(log_p, m) + 0.5 * kl_mean(log_q, m))


def activation_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """The official code's ``actv_dist``: the mean over examples of ‖softmax(a) − softmax(b)‖₂."""
    diff = a.float().softmax(1) - b.float().softmax(1)
    return float(diff.square().sum(1).sqrt().mean())


def weight_distance(model: nn.Module, reference: nn.Module) -> dict[str, object]:
    """‖θ − θ_ref‖₂ per parameter tensor (by name) and in total (the square root of the sum of their
    squares), in float64. The two must have the same parameters (names and shapes)."""
    mine, theirs = dict(model.named_parameters()), dict(reference.named_parameters())
    differ = sorted(set(mine) ^ set(theirs)) or [n for n in mine if mine[n].shape != theirs[n].shape]
    if differ:
        raise ValueError(f"the two models' parameters differ ({differ[0]!r}, ...)")
    layers = {
        name: float(
            torch.linalg.vector_norm((p.detach().double() - theirs[name].detach().double()).flatten())
        )
        for name, p in mine.items()
    }
    return {"total": math.sqrt(sum(d * d for d in layers.values())), "layers": layers}
