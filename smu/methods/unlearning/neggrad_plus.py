"""NegGrad+ (Kurmanji et al., NeurIPS 2023; ``train_negrad`` in meghdadk/SCRUB).

Fine-tune on the retain set while ascending on the forget set: each step takes a retain batch and
the next forget batch and minimises
    β · CE(retain) − (1 − β) · CE(forget),
both in train mode. One epoch is one pass over D_r; the forget batches repeat in the same order when
they run out within an epoch (the official ``zip(retain, itertools.cycle(forget))``) and are
reshuffled the next epoch.

Defaults are the official ResNet/CIFAR-10 setting (``MIA_experiments.ipynb``, cells 16 and 22):
β = 0.9999, 5 epochs, SGD lr 0.01 with no momentum and no weight decay, retain batches of 32 and
forget batches of 16. Data as the official loaders feed it: **no augmentation** (the notebook builds
its CIFAR-10 sets with ``augment=False``), both sets shuffled every epoch, the last partial batch kept,
train mode for both forwards. Under torchrun the retain batch is split over the ranks, and every rank adds
the forget term of the whole forget batch (its gradient is then the same as one process's).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from smu.core.options import param
from smu.execution.engine import Batch, Pass, TrainConfig
from smu.methods.unlearning.base import Context, Feed, UnlearnData, UnlearnMethod


@dataclass
class NegGradPlusConfig(TrainConfig):
    epochs: int = 5
    """Passes over the retain set."""
    lr: float = param(0.01, gt=0, tune="1e-3:1e-1:log")
    """Learning rate (SGD, constant)."""
    momentum: float = 0.0
    """SGD momentum (the official optimiser has none)."""
    weight_decay: float = 0.0
    """L2 weight decay (none in the official optimiser)."""
    batch_size: int = 32
    """Retain images per step."""
    forget_batch_size: int = param(16, ge=1)
    """Forget images per step."""
    beta: float = param(0.9999, ge=0, le=1, tune="0.5:1")
    """β: the weight of the retain loss; 1 − β weighs the forget loss that is ascended."""
    augment: bool = False
    """Pad-and-random-crop and flip while training (off: the official loaders do not augment)."""


def neggrad_plus(model: nn.Module, data: UnlearnData, cfg: NegGradPlusConfig, ctx: Context) -> nn.Module:
    """Descend on each retain batch and ascend on a forget batch, in one step."""

    def loss(out: torch.Tensor, batch: Batch, epoch: int) -> torch.Tensor:
        fx, fy = batch.partner
        retain = batch.terms["ce_retain"] = F.cross_entropy(out, batch.y)
        forget = batch.terms["ce_forget"] = F.cross_entropy(batch.forward(fx), fy)
        return cfg.beta * retain - (1 - cfg.beta) * forget

    passes = [Pass(data.retain, loss, partner=data.forget, partner_batch_size=cfg.forget_batch_size)]
    ctx.train(model, passes, cfg, data.aug, "neggrad+", diverge_hint="raise --beta or lower --lr")
    return model


METHOD = UnlearnMethod(
    "neggrad+",
    "NegGrad+: descend on retain batches, ascend on forget batches, in one loss",
    NegGradPlusConfig,
    neggrad_plus,
    feeds=(
        Feed("retain", "train", "batch_size", "shuffled", False, "descent"),
        Feed("forget", "train", "forget_batch_size", "shuffled", False, "ascent"),
    ),
    source="meghdadk/SCRUB: MIA_experiments.ipynb (cells 16, 22), loops.py (train_negrad)",
    ddp="retain batches are split over the ranks; every rank computes the forget term on the whole "
    "forget batch",
    quick={"epochs": 1, "batch_size": 128, "forget_batch_size": 64},
)
