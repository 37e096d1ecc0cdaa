"""Random pruning: a mask drawn uniformly over all weights in scope, independent of their values.

Because the mask ignores the weights it is chosen at initialisation; training a dense model first
would change nothing but the cost.
"""

from __future__ import annotations

import torch
from torch import nn

from smu.core.masks import Mask
from smu.methods.pruning.base import PruneContext, PruneMethod


def random_mask(model: nn.Module, mask: Mask, n_pruned: int, ctx: PruneContext) -> Mask:
    """Prune ``n_pruned`` weights chosen uniformly at random (seeded by the run's seed)."""
    scores = {n: torch.rand(m.shape, generator=ctx.generator) for n, m in mask.tensors.items()}
    return mask.prune_lowest(scores, n_pruned)


METHOD = PruneMethod(
    "random", "uniformly random global pruning at initialisation, then train", random_mask, True
)
