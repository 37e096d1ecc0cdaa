"""Bad Teacher (Chundawat et al., AAAI 2023, "Can Bad Teaching Induce Forgetting?").

A student (the model) is distilled from two teachers at once: the competent teacher (the original
model) on retain samples, an incompetent one (a randomly initialised model of the same architecture)
on forget samples. With p_c, p_i the teachers' and log q the student's (log-)softmax at temperature T,
and the target of a sample
    t = p_i if it is a forget sample, else p_c,
the loss of a batch is F.kl_div(log q, t) with PyTorch's default reduction, the mean over samples and
classes (the official ``UnlearnerLoss``; there is no T² factor). Adam, lr 1e-4, one epoch.

Data, as the SSD authors' ``blindspot`` feeds it (if-loops/selective-synaptic-dampening,
``forget_*_strategies.py``, ``unlearn.py``): a random 30% of the retain set, drawn once, joined with the
whole forget set, shuffled every epoch, batches of 256 (their ViT runs use 128), the last partial batch
kept, no augmentation (their unlearning transform), the student in train mode and both teachers in eval
mode. The incompetent teacher is drawn from ``--teacher-seed`` (default: the run's seed), which the
model's provenance records with the other options.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from smu.core.options import param
from smu.core.training import AdamConfig
from smu.data import ImageSet
from smu.execution.engine import Batch, Pass
from smu.methods.unlearning.base import Context, Feed, UnlearnData, UnlearnMethod, frozen_copy
from smu.methods.unlearning.random_label import marked
from smu.models import build_for


@dataclass
class BadTeacherConfig(AdamConfig):
    epochs: int = param(1, ge=1, tune="1:5")
    """Passes over the mixed set."""
    retain_fraction: float = param(0.3, gt=0, le=1, tune="0.05:1:log")
    """Share of the retain set, drawn once at random, that the student sees beside the forget set."""
    temperature: float = param(1.0, gt=0)
    """Distillation temperature T of both teachers and the student."""
    teacher_seed: int | None = param(None, ge=0)
    """Seed of the incompetent teacher's random initialisation (default: the run's --seed)."""


def mixed_set(data: UnlearnData, fraction: float, gen: torch.Generator) -> ImageSet:
    """A random ``fraction`` of the retain set (``int(fraction · |D_r|)`` images, as ``random.sample``
    draws them), then the forget set with its labels marked −1."""
    chosen = torch.randperm(len(data.retain), generator=gen)[: int(fraction * len(data.retain))]
    part = data.retain.subset(torch.sort(chosen).values)
    return ImageSet.join([part, marked(data.forget)])


def incompetent_teacher(arch: str, data: UnlearnData, seed: int, like: nn.Module) -> nn.Module:
    """A frozen, randomly initialised model of the same architecture, on the same device as ``like``."""
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        teacher = build_for(arch, data.splits.info)
    finally:
        torch.random.set_rng_state(state)  # the run's own random stream is left as it was
    return frozen_copy(teacher.to(next(like.parameters()).device))


def bad_teacher(model: nn.Module, data: UnlearnData, cfg: BadTeacherConfig, ctx: Context) -> nn.Module:
    """Distil from the original model on retain samples and from a random one on forget samples."""
    competent = ctx.original
    seed = ctx.seed if cfg.teacher_seed is None else cfg.teacher_seed
    incompetent = incompetent_teacher(ctx.arch, data, seed, model)
    t = cfg.temperature

    def loss(out: torch.Tensor, batch: Batch, epoch: int) -> torch.Tensor:
        with torch.no_grad():
            forget = (batch.y < 0).unsqueeze(1)
            target = torch.where(
                forget, F.softmax(incompetent(batch.x) / t, dim=1), F.softmax(competent(batch.x) / t, dim=1)
            )
        # F.kl_div's default reduction ("mean": over every element), without its warning
        return F.kl_div(F.log_softmax(out / t, dim=1), target, reduction="none").mean()

    images = mixed_set(data, cfg.retain_fraction, ctx.generator())
    ctx.train(model, [Pass(images, loss)], cfg, data.aug, "bad-teacher")
    return model


METHOD = UnlearnMethod(
    "bad-teacher",
    "Bad Teacher: distil from the original model on retain samples, from a random one on forget samples",
    BadTeacherConfig,
    bad_teacher,
    needs=frozenset({"original"}),
    feeds=(Feed("retain part+forget", "train", "batch_size", "shuffled", False, "distillation"),),
    source="if-loops/selective-synaptic-dampening: forget_full_class_strategies.py (blindspot), "
    "unlearn.py (blindspot_unlearner, UnlearnerLoss)",
)
