"""LF-SSD: loss-free Selective Synaptic Dampening (Foster et al., ICLR 2024 Tiny Papers, "Loss-Free Machine
Unlearning").

SSD (``ssd.py``) with importances that need no labels: in place of the squared gradient of the
cross-entropy, the absolute gradient of the squared l2 norm of the model's output (its logits), as
Memory Aware Synapses measures sensitivity:
    I = mean over batches b of | ∂/∂θ mean_{x ∈ b} ‖f(x)‖² |,
computed on the forget set (I_f) and on all the training data (I_D), then SSD's selection and
dampening unchanged: where I_f > α · I_D, θ ← min(λ · I_D / I_f, 1) · θ. Defaults α = 10, λ = 1, SSD's.
Labels are never read; the retain data still are, for I_D.

The importance is the one of the authors' code (jwf40/Information-Theoretic-Unlearning,
``src/lipschitz.py``, ``calc_importance``); the data are fed as smu's ``ssd`` feeds them (the SSD
authors' class-wise script: batches of 64, in order, eval mode, no augmentation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from smu.methods.unlearning.base import Context, Feed, UnlearnData, UnlearnMethod
from smu.methods.unlearning.ssd import SSDConfig, dampen, importance, whole_set


@dataclass
class LFSSDConfig(SSDConfig):
    pass


def output_norm(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The batch mean of the squared l2 norm of each output: no labels."""
    return torch.linalg.vector_norm(out, dim=1).pow(2).mean()


def lf_ssd(model: nn.Module, data: UnlearnData, cfg: LFSSDConfig, ctx: Context) -> nn.Module:
    """Dampen the weights whose output sensitivity is far higher on the forget set than on all data."""
    forget_importance = importance(model, data.forget, cfg.batch_size, output_norm, squared=False)
    full_importance = importance(model, whole_set(data), cfg.batch_size, output_norm, squared=False)
    dampen(model, forget_importance, full_importance, cfg)
    if ctx.mask is not None:
        ctx.mask.apply(model)
    return model


METHOD = UnlearnMethod(
    "lf-ssd",
    "loss-free SSD: dampen the weights by the sensitivity of the output's norm, no labels needed",
    LFSSDConfig,
    lf_ssd,
    feeds=(
        Feed("forget", "eval", "batch_size", "in order", False, "importance"),
        Feed("retain+forget", "eval", "batch_size", "by class", False, "importance"),
    ),
    source="jwf40/Information-Theoretic-Unlearning: src/lipschitz.py (calc_importance); "
    "if-loops/selective-synaptic-dampening: ssd.py (modify_weight), forget_full_class_main.py (data)",
    differs="that repository computes D's importance over the training set shuffled in batches of 128; "
    "smu feeds D as its ssd does (batches of 64, retain by class, then forget), so the two methods differ "
    "only in the importance",
    ddp="the importance batches are split over the ranks and added up",
)
