"""JiT: zero-shot unlearning by Lipschitz regularisation (Foster et al., 2024, "Zero-shot Machine Unlearning
at Scale via Lipschitz Regularization"; jwf40/Information-Theoretic-Unlearning).

It needs only the forget set: no retain data, no labels, no original model. For each batch x of D_f
(in normalised input space), N noisy copies x'_n = clamp(x + σ·ε_n, min x, max x), ε_n ~ N(0, I)
(the clamp bounds are the batch's smallest and largest values), and the loss
    L = (1/N) Σ_n Σ_{i ∈ batch} ‖f(x_i) − f(x'_{n,i})‖ / ‖x_i − x'_{n,i}‖
(f(x') without gradient) is lowered by one SGD step: the model is made locally smooth around each forget
sample, which erases what it knows specifically about it.

As the official ``Lipschitz.modify_weight`` does, the gradients are zeroed once before the pass and
never between batches, so the step after batch t moves along the sum of the gradients of batches 1..t
(the paper's algorithm zeroes them, as ``--no-accumulate`` does; the code, followed by default, does
not). The model is in train mode, as
there: BatchNorm normalises with each batch's statistics and its running statistics follow every
forward, the noisy ones included. Defaults are the authors' VGG settings (``forget_*_main.py``:
σ 0.5, lr 3e-4, N 25, one pass over D_f in batches of 128, in order, no augmentation); their ViT settings
are σ 0.8, lr 1.5, and the function's own defaults σ 0.1, lr 0.01.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from smu.core.options import Checked, param
from smu.data.batches import batches
from smu.methods.unlearning.base import Context, Feed, UnlearnData, UnlearnMethod


@dataclass
class JiTConfig(Checked):
    lr: float = param(3e-4, gt=0, tune="1e-5:1e-1:log")
    """Learning rate of the SGD step after each forget batch (no momentum)."""
    noise: float = param(0.5, gt=0, tune="0.05:2:log")
    """σ: the standard deviation of the Gaussian perturbation, in normalised input units."""
    samples: int = param(25, ge=1)
    """N: noisy copies of each batch."""
    batch_size: int = param(128, ge=1)
    """Forget images per step."""
    accumulate: bool = True
    """Let the gradients of earlier batches add up, as the official loop does (it never zeroes them);
    --no-accumulate zeroes them before each step, as the paper's algorithm does."""


def smoothness(
    model: nn.Module,
    x: torch.Tensor,
    cfg: JiTConfig,
    mean: torch.Tensor,
    std: torch.Tensor,
    gen: torch.Generator,
) -> torch.Tensor:
    """L of one batch ``x`` (images in [0, 1]; perturbed in normalised units), noise drawn from ``gen``."""
    out = model(x)
    z = (x - mean) / std
    low, high = z.min(), z.max()
    total = z.new_zeros(())
    for _ in range(cfg.samples):
        noisy = (z + torch.randn(z.shape, generator=gen).to(z.device) * cfg.noise).clamp(low, high)
        with torch.no_grad():
            out2 = model(mean + std * noisy)
        ratio = torch.linalg.vector_norm(out - out2, dim=1) / torch.linalg.vector_norm(
            (z - noisy).flatten(1), dim=1
        )
        total = total + ratio.sum().abs()
    return total / cfg.samples


def jit(model: nn.Module, data: UnlearnData, cfg: JiTConfig, ctx: Context) -> nn.Module:
    """One SGD step per forget batch towards a model that is Lipschitz-smooth around the forget samples."""
    info = data.splits.info
    device = next(model.parameters()).device
    mean = torch.tensor(info.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(info.std, device=device).view(1, -1, 1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    gen = ctx.generator()
    model.train()
    opt.zero_grad(set_to_none=True)  # once: the official loop never zeroes them again
    for x, _ in batches(data.forget, cfg.batch_size):
        if not cfg.accumulate:
            opt.zero_grad(set_to_none=True)
        smoothness(model, x, cfg, mean, std, gen).backward()
        if ctx.mask is not None:
            ctx.mask.mask_grads(model)
        opt.step()
        if ctx.mask is not None:
            ctx.mask.apply(model)
    return model


METHOD = UnlearnMethod(
    "jit",
    "JiT: make the model Lipschitz-smooth around each forget sample; no retain data needed",
    JiTConfig,
    jit,
    feeds=(Feed("forget", "train", "batch_size", "in order", False, "smoothing"),),
    source="jwf40/Information-Theoretic-Unlearning: src/lipschitz.py (Lipschitz.modify_weight, "
    "AddGaussianNoise), forget_full_class_main.py (VGG settings)",
    ddp="every rank runs the whole pass (one step per forget batch) and reaches the same model",
)
