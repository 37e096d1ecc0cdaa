"""Global L1-magnitude pruning (OMP one-shot, IMP per round; Han et al. 2015, Frankle & Carbin 2019).

The smallest |w| across every layer in scope are removed together, so layers lose different
fractions: the paper's ``global_prune_model`` over conv weights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from smu.masks import Mask

if TYPE_CHECKING:
    from smu.pruning import PruneContext


def magnitude_mask(model: nn.Module, mask: Mask, n_pruned: int, ctx: PruneContext) -> Mask:
    """Prune the ``n_pruned`` smallest-magnitude weights (already-pruned ones count first)."""
    params = dict(model.named_parameters())
    return mask.prune_lowest({n: params[n].detach().abs() for n in mask.tensors}, n_pruned)
