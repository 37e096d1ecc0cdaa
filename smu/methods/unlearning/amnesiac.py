"""Amnesiac unlearning, relabelling variant (Graves et al., AAAI 2021), as the SSD authors' baseline runs it.

Every forget sample gets one *wrong* label, drawn once and uniformly from the other K − 1 classes; the
relabelled forget set is joined with the whole retain set and the model is trained on the mix with
cross-entropy: Adam, lr 1e-4, 3 epochs, batches of 128, shuffled every epoch, the last partial batch
kept, no augmentation (their unlearning transform), train mode (if-loops/selective-synaptic-dampening,
``amnesiac`` in ``forget_*_strategies.py``, ``fit_one_unlearning_cycle`` in ``unlearn.py``).

Unlike ``rl``, which draws fresh labels for every batch from all K classes (the true one included) and
passes over the forget set before the retain set, amnesiac draws one wrong label per sample for the
whole run and mixes the forget samples into the retain set. (The paper's other variant, which subtracts
the recorded updates of the batches that held forget samples, needs those records from training and is
not this one.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from smu.core.options import param
from smu.core.training import AdamConfig
from smu.data import ImageSet
from smu.execution.engine import Pass
from smu.methods.unlearning.base import Context, Feed, UnlearnData, UnlearnMethod


@dataclass
class AmnesiacConfig(AdamConfig):
    epochs: int = param(3, ge=1, tune="1:5")
    """Passes over the retain set mixed with the relabelled forget set."""
    batch_size: int = param(128, ge=1)
    """Images per step."""


def wrong_labels(y: torch.Tensor, classes: int, gen: torch.Generator) -> torch.Tensor:
    """For each label, one of the other ``classes − 1`` labels, uniformly."""
    drawn = torch.randint(0, classes - 1, y.shape, generator=gen).to(y.device)
    return drawn + (drawn >= y).long()  # skip the true label: uniform over the rest


def amnesiac(model: nn.Module, data: UnlearnData, cfg: AmnesiacConfig, ctx: Context) -> nn.Module:
    """Train on the retain set and the forget set with a wrong label for every forget sample."""
    relabelled = data.forget.with_labels(
        wrong_labels(data.forget.y, data.splits.info.num_classes, ctx.generator())
    )
    ctx.train(model, [Pass(ImageSet.join([data.retain, relabelled]))], cfg, data.aug, "amnesiac")
    return model


METHOD = UnlearnMethod(
    "amnesiac",
    "Amnesiac: train on the retain set mixed with the forget set under wrong labels drawn once",
    AmnesiacConfig,
    amnesiac,
    feeds=(
        Feed("retain+forget", "train", "batch_size", "shuffled", False, "training, wrong labels on forget"),
    ),
    source="if-loops/selective-synaptic-dampening: forget_full_class_strategies.py (amnesiac), "
    "unlearn.py (fit_one_unlearning_cycle)",
)
