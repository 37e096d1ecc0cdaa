"""Pruning methods: a registry of name -> how to choose which weights to remove.

A method only picks the mask; :mod:`smu.pruning.pipeline` owns training, rewinding and saving, so
every method gets the same engine and artifacts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from smu.errors import UsageError
from smu.masks import Mask
from smu.pruning.magnitude import magnitude_mask
from smu.pruning.random_pruning import random_mask
from smu.pruning.synflow import synflow_mask
from smu.registry import lookup

MaskFn = Callable[[nn.Module, Mask, int, "PruneContext"], Mask]
"""choose(model, current mask, number of weights pruned afterwards, context) -> new mask."""


@dataclass(frozen=True)
class PruneContext:
    input_shape: tuple[int, int, int]
    generator: torch.Generator
    synflow_iterations: int = 100


@dataclass(frozen=True)
class PruneMethod:
    choose: MaskFn
    at_init: bool
    """True: prune at initialisation, then train once. False: train dense, prune, rewind, retrain."""
    summary: str


METHODS: dict[str, PruneMethod] = {
    "omp": PruneMethod(
        magnitude_mask, False, "one-shot global L1-magnitude pruning of the trained model, rewind, retrain"
    ),
    "imp": PruneMethod(
        magnitude_mask,
        False,
        "iterative magnitude pruning: --times rounds of prune --rate of what is left, rewind, retrain",
    ),
    "synflow": PruneMethod(
        synflow_mask, True, "SynFlow at initialisation (iterative, exponential schedule), then train"
    ),
    "random": PruneMethod(random_mask, True, "uniformly random global pruning at initialisation, then train"),
}


@dataclass
class PruneConfig:
    """What to prune and how."""

    method: str = "omp"
    """Pruning method: omp, imp, synflow or random."""
    rate: float | None = None
    """Fraction to prune: of all weights in scope (omp, synflow, random; default 0.95), or of the weights
    still alive in each round (imp; default 0.2)."""
    times: int | None = None
    """Rounds of prune-rewind-retrain for imp (default 5); the others prune once."""
    scope: str = "conv"
    """Weights ranked globally: conv (the paper) or all (conv and linear)."""
    rewind_epoch: int = 8
    """omp/imp: rewind weights and learning-rate schedule to this epoch of dense training (0 = init)."""
    synflow_iterations: int = 100
    """SynFlow scoring iterations."""

    def resolved(self, epochs: int) -> PruneConfig:
        """Fill method-dependent defaults and check ranges (``epochs`` bounds the rewind epoch)."""
        method = lookup(METHODS, self.method, "pruning method")
        imp = self.method == "imp"
        rate = self.rate if self.rate is not None else (0.2 if imp else 0.95)
        times = self.times if self.times is not None else (5 if imp else 1)
        if not 0.0 < rate < 1.0:
            raise UsageError(
                f"--rate {rate!r} is outside (0, 1)", hint="e.g. --rate 0.95 prunes 95% of the weights"
            )
        if times < 1 or (times > 1 and not imp):
            raise UsageError(
                f"--times {times!r} is not valid for --method {self.method}",
                hint="--times counts imp rounds (>= 1); other methods prune once",
            )
        if not method.at_init and not 0 <= self.rewind_epoch < epochs:
            raise UsageError(
                f"--rewind-epoch {self.rewind_epoch!r} must be in [0, --epochs {epochs})",
                hint="0 rewinds to initialisation; the paper uses 8 of 182 epochs",
            )
        if self.synflow_iterations < 1:
            raise UsageError(f"--synflow-iterations {self.synflow_iterations!r} must be >= 1")
        lookup({"conv": 0, "all": 0}, self.scope, "pruning scope")
        return PruneConfig(self.method, rate, times, self.scope, self.rewind_epoch, self.synflow_iterations)

    def pruned_after_round(self, mask: Mask) -> int:
        """How many weights a round leaves pruned: ``rate`` of all (one-shot) or of those alive (imp)."""
        pruned, total = mask.counts()
        if self.method == "imp":
            return pruned + round(self.rate * (total - pruned))
        return round(self.rate * total)
