"""SSD: Selective Synaptic Dampening (Foster et al., AAAI 2024; if-loops/selective-synaptic-dampening).

No training. The importance of a parameter for a dataset is the mean over its batches of the squared
gradient of the batch-mean cross-entropy, with the model in eval mode (``calc_importance``):
    I = mean over batches b of (∂ CE_b / ∂θ)²,
computed on the forget set (I_f) and on the whole training split D = D_r ∪ D_f (I_D; retain first,
then forget, as the official ``ConcatDataset``). Every weight far more important to the forget set
than to all the data is dampened:
    where I_f > α · I_D:   θ ← min(λ · I_D / I_f, 1) · θ
so a selected weight shrinks towards 0 and none grows. Defaults: α (``--selection``) = 10, λ
(``--dampening``) = 1, the authors' CIFAR values for ResNet-18 in both of their scripts.

Data, as the authors' class-wise script (``forget_full_class_main.py``; the paper's main setting, and
the one of their two scripts that runs as shipped) feeds it: batches of 64, not shuffled, no
augmentation (their unlearning transform), the last partial batch kept, eval mode. For a class-wise
forget set D_r is ordered by class, as that script builds it class by class, so most batches of I_D
hold one class (smu keeps the dataset's order within a class); for a random forget set D_r is in the
dataset's order, as mixed as the random script's ``random_split``. Their random-forgetting script
(``forget_random_main.py``) uses batches of 128: ``--batch-size 128``. Under torchrun the batches of
each importance are split over the ranks and added up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from smu.core.options import Checked, param
from smu.data import ImageSet
from smu.data.batches import batches
from smu.execution import distributed
from smu.methods.unlearning.base import Context, Feed, UnlearnData, UnlearnMethod

Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(outputs, labels) -> the scalar whose gradient measures importance."""


@dataclass
class SSDConfig(Checked):
    selection: float = param(10.0, gt=0, tune="1:100:log")
    """α: a weight is dampened where its forget importance exceeds α times its importance on all data.
    All data include the forget set, so I_D ≥ about |D_f| / |D| · I_f: from α ≈ |D| / |D_f| on (10 for
    one class of ten) nothing is selected."""
    dampening: float = param(1.0, gt=0, tune="0.1:10:log")
    """λ: a selected weight is multiplied by min(λ · I_D / I_f, 1)."""
    batch_size: int = param(64, ge=1)
    """Images per batch when estimating the importances (the authors' class-wise script; their random
    one uses 128)."""


def cross_entropy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y)


def importance(
    model: nn.Module,
    data: ImageSet,
    batch_size: int,
    objective: Objective = cross_entropy,
    squared: bool = True,
) -> dict[str, torch.Tensor]:
    """Mean over batches of the squared (or, ``squared=False``, absolute) gradient of ``objective``, the
    batch-mean cross-entropy unless given (eval mode)."""
    model.eval()
    params = dict(model.named_parameters())
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    for x, y in batches(data, batch_size, spread=True):
        grads = torch.autograd.grad(objective(model(x), y), list(params.values()))
        if squared:
            torch._foreach_addcmul_(list(total.values()), grads, grads)
        else:
            torch._foreach_add_(list(total.values()), torch._foreach_abs(grads))
    distributed.sum_(list(total.values()))
    count = -(-len(data) // batch_size)
    return {n: t / max(count, 1) for n, t in total.items()}


def dampen(
    model: nn.Module, forget: dict[str, torch.Tensor], full: dict[str, torch.Tensor], cfg: SSDConfig
) -> None:
    """Multiply the selected weights by their dampening factor (a selected I_f is > 0, so it is finite)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            chosen = forget[name] > cfg.selection * full[name]
            factor = (cfg.dampening * full[name] / forget[name]).clamp(max=1.0)
            p.copy_(torch.where(chosen, p * factor, p))


def whole_set(data: UnlearnData) -> ImageSet:
    """D = D_r then D_f, D_r ordered by class for a class-wise forget set (as the official script has it)."""
    retain = data.retain
    if data.forget_set.forget_class is not None:
        retain = retain.subset(torch.sort(retain.y.cpu(), stable=True).indices)
    return ImageSet.join([retain, data.forget])


def ssd(model: nn.Module, data: UnlearnData, cfg: SSDConfig, ctx: Context) -> nn.Module:
    """Dampen the weights the forget set depends on far more than the rest of the data does."""
    forget_importance = importance(model, data.forget, cfg.batch_size)
    full_importance = importance(model, whole_set(data), cfg.batch_size)
    dampen(model, forget_importance, full_importance, cfg)
    if ctx.mask is not None:
        ctx.mask.apply(model)
    return model


METHOD = UnlearnMethod(
    "ssd",
    "selective synaptic dampening: shrink the weights the forget set relies on most",
    SSDConfig,
    ssd,
    feeds=(
        Feed("forget", "eval", "batch_size", "in order", False, "importance"),
        Feed("retain+forget", "eval", "batch_size", "by class", False, "importance"),
    ),
    source="if-loops/selective-synaptic-dampening: forget_full_class_main.py, ssd.py (ParameterPerturber)",
    differs="one script's settings for both scenarios: the class-wise one's batches of 64 (the random "
    "script, which does not run as shipped, uses 128: --batch-size 128); D is ordered by class for a "
    "class-wise forget set, as that script builds it, and keeps the dataset's order for a random one",
    ddp="the importance batches are split over the ranks and added up",
)
