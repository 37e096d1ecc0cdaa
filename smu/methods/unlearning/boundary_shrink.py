"""Boundary Shrink (Chen et al., CVPR 2023, "Boundary Unlearning"; class-wise forgetting).

Push the forget set across the nearest decision boundary of the original model: for each forget
batch, on a frozen copy of the original model,
    x_adv = round₂₅₅( clip(x + ε · sign(∇ₓ CE(f(x), y)), 0, 1) ),   y′ = argmax f(x_adv)
(one FGSM step, ε = 0.1, the result on the 1/255 pixel grid), then fine-tune the model on (x, y′)
over D_f only. As OPTML-Group's re-implementation (``unlearn/boundary_sh.py``): SGD lr 0.01,
momentum 0.9, weight decay 5e-4, 10 epochs, batches of 256; the forget set shuffled every epoch and
augmented (a copy of the training set, transform included), the last partial batch kept. Under
torchrun every rank relabels the whole global batch (the same labels everywhere), then trains on its
part of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from smu.core.options import param
from smu.execution.engine import Pass, TrainConfig
from smu.methods.unlearning.base import Context, Feed, UnlearnData, UnlearnMethod


@dataclass
class BoundaryShrinkConfig(TrainConfig):
    epochs: int = param(10, ge=1, tune="1:10")
    """Fine-tuning epochs on the forget set with the adversary's labels."""
    lr: float = param(0.01, gt=0, tune="1e-3:1e-1:log")
    """Initial learning rate (SGD)."""
    bound: float = param(0.1, gt=0, le=1)
    """ε: the FGSM step, in pixel units of [0, 1] (the paper's 0.1)."""


def nearest_other_class(model: nn.Module, x: torch.Tensor, y: torch.Tensor, bound: float) -> torch.Tensor:
    """argmax f(x_adv) for one FGSM step of size ``bound`` away from ``y`` (``model`` in eval mode)."""
    with torch.enable_grad():
        x = x.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y), x)
    adversarial = torch.round((x.detach() + bound * grad.sign()).clamp(0.0, 1.0) * 255) / 255
    with torch.no_grad():
        return model(adversarial).argmax(1)


def boundary_shrink(
    model: nn.Module, data: UnlearnData, cfg: BoundaryShrinkConfig, ctx: Context
) -> nn.Module:
    """Fine-tune on the forget set towards the labels one FGSM step reaches on the original model."""
    original = ctx.original

    def relabel(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return nearest_other_class(original, x, y, cfg.bound)

    ctx.train(model, [Pass(data.forget, relabel=relabel)], cfg, data.aug, "boundary-shrink")
    return model


METHOD = UnlearnMethod(
    "boundary-shrink",
    "Boundary Shrink: relabel the forget set by one FGSM step on the original model, fine-tune on it",
    BoundaryShrinkConfig,
    boundary_shrink,
    needs=frozenset({"original"}),
    feeds=(Feed("forget", "train", "batch_size", "shuffled", True, "training, FGSM labels"),),
    source="OPTML-Group/Unlearn-Saliency: main_forget.py, unlearn/boundary_sh.py",
    ddp="every rank computes the FGSM labels of the whole global batch, then trains on its part",
)
