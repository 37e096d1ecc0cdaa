"""Retrain: exact unlearning. Start again from a fresh initialisation and train on D_r only.

The reference every approximate method is measured against (the paper's "Retrain"). A sparse model
keeps its mask: the fresh weights are pruned the same way before training.

Data, as the research code feeds it (OPTML-Group/Unlearn-Sparse, ``main_forget.py`` and
``unlearn/retrain.py``): the retain set shuffled every epoch, augmented (its loader is a copy of the
training set, random crop and flip included), batches of 256, the last partial batch kept, train
mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from smu.execution.engine import TrainConfig
from smu.methods.unlearning.base import Context, Feed, UnlearnData, UnlearnMethod
from smu.models import build_for


@dataclass
class RetrainConfig(TrainConfig):
    epochs: int = 160
    """Training epochs on the retain set (the paper: 160)."""
    lr: float = 0.1
    """Initial learning rate (SGD)."""


def retrain(model: nn.Module, data: UnlearnData, cfg: RetrainConfig, ctx: Context) -> nn.Module:
    """A new model of the same architecture, trained from scratch on the retain set."""
    torch.manual_seed(ctx.seed)
    fresh = build_for(ctx.arch, data.splits.info)
    fresh.to(next(model.parameters()).device)
    ctx.train(fresh, data.retain, cfg, data.aug, "retrain")
    return fresh


METHOD = UnlearnMethod(
    "retrain",
    "exact unlearning: train from scratch on the retain set",
    RetrainConfig,
    retrain,
    exact=True,
    feeds=(Feed("retain", "train", "batch_size", "shuffled", True, "training"),),
    source="OPTML-Group/Unlearn-Sparse: main_forget.py, unlearn/retrain.py, trainer/train.py "
    "(README: 160 epochs, lr 0.1)",
)
