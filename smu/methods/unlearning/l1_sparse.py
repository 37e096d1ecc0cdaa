"""ℓ1-sparse: the paper's sparsity-aware unlearning (Jia et al. 2023, Sec. 5).

Fine-tune on D_r with an ℓ1 penalty that pushes the model towards sparsity while it forgets:

    min_θ  ℓ(θ; D_r) + γ_t ‖θ‖₁,   γ_t = α (1 − t / (E − E₀)) for epoch t < E − E₀, else 0

so the penalty decays linearly from α to 0, and the last E₀ (``--no-l1-epochs``) epochs are plain
fine-tuning. ‖θ‖₁ runs over every parameter, as in the original.

Data, as the research code feeds it (OPTML-Group/Unlearn-Sparse, ``main_forget.py`` and
``unlearn/FT.py``): the retain set shuffled every epoch, augmented (its loader is a copy of the
training set, random crop and flip included), batches of 256, the last partial batch kept, train
mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from smu.core.options import Problem, param
from smu.execution.engine import Batch, TrainConfig
from smu.methods.unlearning.base import Context, Feed, UnlearnData, UnlearnMethod


@dataclass
class L1SparseConfig(TrainConfig):
    epochs: int = 10
    """Fine-tuning epochs on the retain set."""
    lr: float = param(0.01, gt=0, tune="1e-3:1e-1:log")
    """Initial learning rate (SGD)."""
    alpha: float = param(5e-4, ge=0, tune="1e-5:1e-2:log")
    """Initial ℓ1 strength γ₀; it decays linearly to 0 (the paper tunes it per setting)."""
    no_l1_epochs: int = param(0, ge=0)
    """Final epochs without the ℓ1 penalty."""

    def check(self) -> list[Problem]:
        if self.no_l1_epochs > self.epochs:
            return [("no_l1_epochs", self.no_l1_epochs, f"<= epochs ({self.epochs})")]
        return []


def gamma(cfg: L1SparseConfig, epoch: int) -> float:
    """The ℓ1 weight of an epoch."""
    active = cfg.epochs - cfg.no_l1_epochs
    return cfg.alpha * (1 - epoch / active) if epoch < active else 0.0


def l1_norm(model: nn.Module) -> torch.Tensor:
    return sum(p.abs().sum() for p in model.parameters())  # type: ignore[return-value]


def l1_sparse(model: nn.Module, data: UnlearnData, cfg: L1SparseConfig, ctx: Context) -> nn.Module:
    """Fine-tune on D_r with the decaying ℓ1 penalty."""

    def loss(out: torch.Tensor, batch: Batch, epoch: int) -> torch.Tensor:
        g = gamma(cfg, epoch)
        ce = batch.terms["ce"] = F.cross_entropy(out, batch.y)
        if not g:
            return ce
        penalty = batch.terms["l1_penalty"] = g * l1_norm(model)
        return ce + penalty

    ctx.train(
        model, data.retain, cfg, data.aug, "l1-sparse", loss_fn=loss, diverge_hint="lower --alpha or --lr"
    )
    return model


METHOD = UnlearnMethod(
    "l1-sparse",
    "sparsity-aware unlearning: fine-tune + decaying l1 penalty",
    L1SparseConfig,
    l1_sparse,
    feeds=(Feed("retain", "train", "batch_size", "shuffled", True, "training"),),
    source="OPTML-Group/Unlearn-Sparse: main_forget.py, unlearn/FT.py (FT_l1)",
)
