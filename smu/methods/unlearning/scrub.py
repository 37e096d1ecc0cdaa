"""SCRUB (Kurmanji et al., NeurIPS 2023, "Towards Unbounded Machine Unlearning"; meghdadk/SCRUB).

The student (the model) moves away from a frozen teacher (the original model) on the forget set and
stays close to it, and correct, on the retain set. With
    d(x) = T² · KL( softmax(teacher(x) / T) ‖ softmax(student(x) / T) ),  a batch mean,
every epoch e = 1..E runs, if e ≤ ``max_steps``, one pass over D_f minimising −d (the max-step), then
one pass over D_r minimising γ·CE + α·d (the min-step); one SGD optimiser (momentum, weight decay)
serves both, the student trains in train mode, the teacher in eval mode.

Defaults are the official large-scale CIFAR-10 setting (``large_scale_unlearning.ipynb``, cell 32):
SGD lr 5e-4, momentum 0.9, weight decay 5e-4, E = 3, max_steps = 2, T = 4, α = 0.001, γ = 0.99, the
learning rate ×0.1 after epochs 3, 5, 9 (so never within 3 epochs), and the batch sizes its loaders
are built with (cell 28): 512 for the forget set, 256 for the retain set. (The notebook's
``sgda_batch_size`` 128 / ``del_batch_size`` 32 are set but never read.)

Data, as the official loaders feed it: **no augmentation** (the notebook builds its CIFAR-10 sets with
``augment=False``, ``datasets.py``'s default), both sets shuffled every epoch, the last partial batch
kept; the student in train mode for both steps, the teacher in eval mode.
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
class SCRUBConfig(TrainConfig):
    epochs: int = 3
    """Epochs E: each a max-step on the forget set (while e ≤ max_steps), then a min-step on retain."""
    lr: float = param(5e-4, gt=0, tune="1e-4:1e-2:log")
    """Learning rate (SGD)."""
    decreasing_lr: tuple[int, ...] = (3, 5, 9)
    """Epochs after which the learning rate is multiplied by 0.1 (the official lr_decay_epochs)."""
    batch_size: int = 256
    """Retain images per min-step batch."""
    forget_batch_size: int = param(512, ge=1)
    """Forget images per max-step batch."""
    max_steps: int = param(2, ge=0)
    """Epochs that begin with a max-step on the forget set (msteps)."""
    temperature: float = param(4.0, gt=0)
    """Distillation temperature T."""
    alpha: float = param(0.001, ge=0, tune="1e-4:1e-1:log")
    """Weight α of the teacher distance d in the min-step."""
    gamma: float = param(0.99, ge=0)
    """Weight γ of the cross-entropy in the min-step."""
    augment: bool = False
    """Pad-and-random-crop and flip while training (off: the official loaders do not augment)."""


def distance(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · KL(softmax(teacher/T) ‖ softmax(student/T)), summed over the batch and divided by its size."""
    log_s = F.log_softmax(student / temperature, dim=1)
    p_t = F.softmax(teacher / temperature, dim=1)
    return F.kl_div(log_s, p_t, reduction="sum") * temperature**2 / student.shape[0]


def scrub(model: nn.Module, data: UnlearnData, cfg: SCRUBConfig, ctx: Context) -> nn.Module:
    """Max-steps away from the teacher on D_f, min-steps towards it (and the labels) on D_r."""
    teacher = ctx.original

    def teacher_out(batch: Batch) -> torch.Tensor:
        with torch.no_grad():
            return teacher(batch.x)

    def away(out: torch.Tensor, batch: Batch, epoch: int) -> torch.Tensor:
        kl = batch.terms["kl_forget"] = distance(out, teacher_out(batch), cfg.temperature)
        return -kl

    def towards(out: torch.Tensor, batch: Batch, epoch: int) -> torch.Tensor:
        ce = batch.terms["ce_retain"] = F.cross_entropy(out, batch.y)
        kl = batch.terms["kl_retain"] = distance(out, teacher_out(batch), cfg.temperature)
        return cfg.gamma * ce + cfg.alpha * kl

    passes = [
        Pass(data.forget, away, batch_size=cfg.forget_batch_size, when=lambda e: e + 1 <= cfg.max_steps),
        Pass(data.retain, towards),
    ]
    ctx.train(model, passes, cfg, data.aug, "scrub", diverge_hint="lower --lr or --max-steps")
    return model


METHOD = UnlearnMethod(
    "scrub",
    "SCRUB: away from the original model on the forget set, towards it on the retain set",
    SCRUBConfig,
    scrub,
    needs=frozenset({"original"}),
    feeds=(
        Feed("forget", "train", "forget_batch_size", "shuffled", False, "max-steps"),
        Feed("retain", "train", "batch_size", "shuffled", False, "min-steps"),
    ),
    source="meghdadk/SCRUB: large_scale_unlearning.ipynb (cells 28, 32, 36), loops.py (train_distill)",
    quick={"forget_batch_size": 64},
)
