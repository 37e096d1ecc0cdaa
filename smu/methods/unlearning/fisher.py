"""FF: Fisher forgetting (Golatkar et al. 2020; the research code's ``fisher_new``).

Estimate the diagonal Fisher information F of the retain loss, then add Gaussian noise that is
large where the retain data does not pin a weight down (small F) and small where it does:

    F  = mean over batches b of  Σ_y  mean_i p_i(y) · (∂ ℓ_y(b) / ∂θ)²
         where ℓ_y(b) is the batch's mean cross-entropy with every label set to y
    σ² = α · clamp(1 / (F + 1e-8), max = 1e3; 1e2 for the classifier), averaged over dim 1 of 2-D+
         tensors; ×10 for the classifier and for 1-D tensors (BatchNorm, biases)
    θ ← θ + σ · N(0, 1)

For class-wise forgetting the forgotten class's classifier row is set to 0 with σ² = 1e-4 (×10).

Data, as the research code's ``fisher_new`` sees it (``unlearn/fisher.py``; OPTML-Group/Unlearn-Sparse):
the retain set in batches of 32, in order (not shuffled), the last partial batch kept, eval mode, and
**augmented** — its retain set is a copy of the training set, random crop and flip included
(``--no-aug`` turns that off; the random numbers come from the run's seed). On a pruned model the
research code's gradients are taken through torch's pruning re-parametrisation, so F is 0 at pruned
weights (their σ² is then the clamp, 1e3·α, and enters the row mean); smu does the same.

The C per-class gradients of a batch need C vector-Jacobian products whatever the form: one per
class from a single forward (the CE gradient with respect to the logits, (softmax − e_y) / B, is
fed in directly), or all C in one batched backward (autograd's ``is_grads_batched``). The batched
form keeps a GPU busy; on a 2-core CPU it ran at 0.6–1.07× the research loop where the per-class
form ran at 1.1–1.2× (docs/PERFORMANCE.md), so ``batched`` defaults to "not on a CPU". Both give
the same numbers (tests/methods/test_unlearning.py).

Under torchrun the batches of F are split over the ranks and their sums added up; the noise is drawn
from the same seed on every rank.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from smu.core.options import Checked, param
from smu.data import ImageSet
from smu.data.batches import Augment, batches
from smu.execution import distributed
from smu.execution.engine import fast_layout
from smu.methods.unlearning.base import Context, Feed, UnlearnData, UnlearnMethod
from smu.models import classifier_layer


@dataclass
class FFConfig(Checked):
    alpha: float = param(3e-8, gt=0, tune="1e-10:1e-6:log")  # the authors found ~1e-9 to 1e-8
    """Noise scale α (the authors' CIFAR-10 runs use 3e-8)."""
    fisher_batch_size: int = param(32, ge=1)
    """Retain images per batch when estimating the Fisher information."""
    augment: bool = param(True, flag="--aug/--no-aug")
    """Random crop and flip of the retain images the Fisher information is estimated on (where the
    dataset allows), as the research code's loader does."""


def fisher_diagonal(
    model: nn.Module,
    data: ImageSet,
    batch_size: int = 32,
    batched: bool | None = None,
    aug: Augment | None = None,
    gen: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """The diagonal Fisher information of every parameter, as in ``fisher_new`` (model in eval mode;
    the images in order, augmented with ``aug`` drawing from ``gen``)."""
    model.eval()
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = [p for p in model.parameters() if p.requires_grad]
    device = params[0].device
    batched = device.type != "cpu" if batched is None else batched
    with fast_layout(model, device) as layout:
        fisher = [torch.zeros_like(p) for p in params]  # in the layout the gradients will have
        for x, _ in batches(data, batch_size, spread=True, aug=aug, gen=gen):
            out = model(x.contiguous(memory_format=layout))
            prob = F.softmax(out.detach(), dim=1)
            classes = out.shape[1]
            weight = prob.mean(0).tolist()  # mean predicted probability of each class
            # ∂ mean_i CE(out_i, y) / ∂ out = (softmax(out) − e_y) / B, for every y at once.
            cotangents = (prob[None] - torch.eye(classes, device=out.device)[:, None, :]) / len(x)
            if batched:
                grads = torch.autograd.grad(out, params, grad_outputs=cotangents, is_grads_batched=True)
                w = torch.tensor(weight, device=out.device)
                for f, g in zip(fisher, grads, strict=True):
                    f += torch.tensordot(w, g.pow(2), dims=1)
            else:
                for y in range(classes):
                    grads = torch.autograd.grad(
                        out, params, grad_outputs=cotangents[y], retain_graph=y < classes - 1
                    )
                    torch._foreach_addcmul_(fisher, grads, grads, value=weight[y])
    fisher = [f.contiguous() for f in fisher]
    distributed.sum_(fisher)
    n_batches = -(-len(data) // batch_size)
    return {n: f / max(n_batches, 1) for n, f in zip(names, fisher, strict=True)}


def noise_variance(
    fisher: dict[str, torch.Tensor],
    params: dict[str, torch.Tensor],
    head: str,
    alpha: float,
    forget_class: int | None,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Mean and variance of the Gaussian each parameter is redrawn from."""
    mus, variances = {}, {}
    for name, p in params.items():
        in_head = name.startswith(head + ".")
        var = (1.0 / (fisher[name] + 1e-8)).clamp(max=1e2 if in_head else 1e3) * alpha
        if p.ndim > 1:
            var = var.mean(dim=1, keepdim=True).expand_as(p).clone()
        mu = p.detach().clone()
        if in_head and forget_class is not None:
            mu[forget_class] = 0
            var[forget_class] = 1e-4
        if in_head or p.ndim == 1:
            var = var * 10
        mus[name], variances[name] = mu, var
    return mus, variances


def fisher_forgetting(model: nn.Module, data: UnlearnData, cfg: FFConfig, ctx: Context) -> nn.Module:
    """Redraw every parameter around its value with Fisher-scaled noise (masked weights stay 0)."""
    aug = data.aug if cfg.augment else None
    fisher = fisher_diagonal(model, data.retain, cfg.fisher_batch_size, aug=aug, gen=ctx.generator())
    if ctx.mask is not None:
        fisher = ctx.mask.restrict(fisher)  # a pruned weight's gradient is 0 in the research code
    params = dict(model.named_parameters())
    mus, variances = noise_variance(
        fisher, params, classifier_layer(model), cfg.alpha, data.forget_set.forget_class
    )
    gen = torch.Generator().manual_seed(ctx.seed)
    with torch.no_grad():
        for name, p in params.items():
            noise = torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device)
            p.copy_(mus[name] + variances[name].sqrt() * noise)
    if ctx.mask is not None:
        ctx.mask.apply(model)
    return model


METHOD = UnlearnMethod(
    "ff",
    "Fisher forgetting: noise scaled by the retain Fisher information",
    FFConfig,
    fisher_forgetting,
    feeds=(Feed("retain", "eval", "fisher_batch_size", "in order", True, "Fisher"),),
    source="OPTML-Group/Unlearn-Sparse: main_forget.py, unlearn/fisher.py (fisher_new)",
    ddp="the Fisher information's batches are split over the ranks and added up",
)
