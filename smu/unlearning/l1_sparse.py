"""ℓ1-sparse: the paper's sparsity-aware unlearning (Jia et al. 2023, Sec. 5).

Fine-tune on D_r with an ℓ1 penalty that pushes the model towards sparsity while it forgets:

    min_θ  ℓ(θ; D_r) + γ_t ‖θ‖₁,   γ_t = α (1 − t / (E − E₀)) for epoch t < E − E₀, else 0

so the penalty decays linearly from α to 0, and the last E₀ (``--no-l1-epochs``) epochs are plain
fine-tuning. ‖θ‖₁ runs over every parameter, as in the original.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from smu.engine import TrainConfig
from smu.errors import UsageError
from smu.unlearning.base import Context, UnlearnData


@dataclass
class L1SparseConfig(TrainConfig):
    epochs: int = 10
    """Fine-tuning epochs on the retain set."""
    lr: float = 0.01
    """Initial learning rate (SGD)."""
    alpha: float = 5e-4
    """Initial ℓ1 strength γ₀; it decays linearly to 0 (the paper tunes it per setting)."""
    no_l1_epochs: int = 0
    """Final epochs without the ℓ1 penalty."""


def gamma(cfg: L1SparseConfig, epoch: int) -> float:
    """The ℓ1 weight of an epoch."""
    active = cfg.epochs - cfg.no_l1_epochs
    return cfg.alpha * (1 - epoch / active) if epoch < active else 0.0


def l1_norm(model: nn.Module) -> torch.Tensor:
    return sum(p.abs().sum() for p in model.parameters())  # type: ignore[return-value]


def l1_sparse(model: nn.Module, data: UnlearnData, cfg: L1SparseConfig, ctx: Context) -> nn.Module:
    """Fine-tune on D_r with the decaying ℓ1 penalty."""
    if cfg.alpha < 0 or not 0 <= cfg.no_l1_epochs <= cfg.epochs:
        raise UsageError(
            f"--alpha {cfg.alpha!r} / --no-l1-epochs {cfg.no_l1_epochs!r} out of range",
            hint="alpha >= 0 and 0 <= no-l1-epochs <= epochs",
        )

    def loss(out: torch.Tensor, y: torch.Tensor, epoch: int) -> torch.Tensor:
        g = gamma(cfg, epoch)
        return F.cross_entropy(out, y) + g * l1_norm(model) if g else F.cross_entropy(out, y)

    ctx.train(
        model, data.retain, cfg, data.aug, "l1-sparse", loss_fn=loss, diverge_hint="lower --alpha or --lr"
    )
    return model
