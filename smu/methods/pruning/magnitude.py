"""Global L1-magnitude pruning (OMP one-shot, IMP per round; Han et al. 2015, Frankle & Carbin 2019).

The smallest |w| across every layer in scope are removed together, so layers lose different
fractions: the paper's ``global_prune_model`` over conv weights. OMP prunes the trained dense model
once; IMP repeats prune-rewind-retrain, each round removing a fraction of the weights still alive.
"""

from __future__ import annotations

from torch import nn

from smu.core.masks import Mask
from smu.methods.pruning.base import PruneContext, PruneMethod


def magnitude_mask(model: nn.Module, mask: Mask, n_pruned: int, ctx: PruneContext) -> Mask:
    """Prune the ``n_pruned`` smallest-magnitude weights (already-pruned ones count first)."""
    params = dict(model.named_parameters())
    return mask.prune_lowest({n: params[n].detach().abs() for n in mask.tensors}, n_pruned)


OMP = PruneMethod(
    "omp", "one-shot global L1-magnitude pruning of the trained model, rewind, retrain", magnitude_mask, False
)
IMP = PruneMethod(
    "imp",
    "iterative magnitude pruning: --times rounds of prune --rate of what is left, rewind, retrain",
    magnitude_mask,
    False,
    iterative=True,
    default_rate=0.2,
)
