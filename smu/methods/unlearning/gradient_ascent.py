"""GA: gradient ascent on the forget set (Thudi et al. 2022; the paper's GA baseline).

Update rule: θ ← θ + η ∇_θ ℓ(θ; D_f), i.e. SGD on −ℓ. It raises the loss on D_f and, run too long or
too fast, everywhere else too; a NaN or Inf stops it with a message.

Data, as the research code feeds it (OPTML-Group/Unlearn-Sparse, ``main_forget.py`` and
``unlearn/GA.py``): the forget set shuffled every epoch, augmented (its loader is a copy of the
training set, random crop and flip included), batches of 256, the last partial batch kept, train
mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from smu.core.options import param
from smu.execution.engine import Batch, TrainConfig
from smu.methods.unlearning.base import Context, Feed, UnlearnData, UnlearnMethod


@dataclass
class GAConfig(TrainConfig):
    epochs: int = param(5, ge=1, tune="1:10")
    """Passes over the forget set."""
    lr: float = param(1e-4, gt=0, tune="1e-5:1e-1:log")  # the range its authors advise searching
    """Learning rate (SGD)."""


def negative_cross_entropy(out: torch.Tensor, batch: Batch, epoch: int) -> torch.Tensor:
    return -F.cross_entropy(out, batch.y)


def gradient_ascent(model: nn.Module, data: UnlearnData, cfg: GAConfig, ctx: Context) -> nn.Module:
    """Maximise the cross-entropy on D_f."""
    ctx.train(
        model,
        data.forget,
        cfg,
        data.aug,
        "ga",
        loss_fn=negative_cross_entropy,
        diverge_hint="lower --lr or --epochs",
    )
    return model


METHOD = UnlearnMethod(
    "ga",
    "gradient ascent on the forget set",
    GAConfig,
    gradient_ascent,
    feeds=(Feed("forget", "train", "batch_size", "shuffled", True, "training"),),
    source="OPTML-Group/Unlearn-Sparse: main_forget.py, unlearn/GA.py (README: 5 epochs, lr 1e-4)",
    quick={"lr": 1e-3},
)
