"""IU: influence unlearning with a WoodFisher inverse-Hessian estimate (Izzo et al. 2021; Singh &
Alistarh 2020; the research code's ``wfisher``).

One second-order step away from the forget set:

    v = g_f / (n_f + n_r) − g_r · n_f / ((n_f + n_r) · n_r)      (g_f, g_r: summed per-sample gradients)
    θ ← θ + α · H⁻¹ v,  H⁻¹ v by the WoodFisher recursion over the per-sample gradients g₀, g₁, … of
    the first retain samples, with N = ``iu_samples``:
        k = v, o = g₀;  for j ≥ 1:  t = o·g_j;  k ← k − (k·g_j / (N + t)) o;  o ← o − (t / (N + t)) o
    stopping after N + 1 updates.

Both updates move along o, and o stays a multiple of g₀, so k = v + c·g₀ and o = s·g₀ for scalars c
and s. The recursion therefore needs only v·g_j and g₀·g_j for each sample: per-sample gradients
come from ``torch.func`` (vmap over grad) in chunks, reduce to two dot products, and are dropped.

Data, as the research code's ``Wfisher`` sees it (``unlearn/Wfisher.py``; OPTML-Group/Unlearn-Sparse):
g_f and g_r over batches of 256 in order (not shuffled), the last partial batch kept, the per-sample
gradients of the first retain samples in order, eval mode throughout, and every image **augmented** —
its loaders wrap copies of the training set, random crop and flip included (``--no-aug`` turns that
off; the random numbers come from the run's seed). On a pruned model the research code's gradients
are taken through torch's pruning re-parametrisation, so they are 0 at pruned weights; smu's are too.

Under torchrun the batches of g_f and g_r are split over the ranks and added up; the recursion, over
``iu_samples`` samples only, runs on every rank.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from smu.core.masks import Mask
from smu.core.options import Checked, param
from smu.data import ImageSet
from smu.data.batches import Augment, batches
from smu.execution import distributed
from smu.execution.engine import fast_layout
from smu.methods.unlearning.base import Context, Feed, UnlearnData, UnlearnMethod


@dataclass
class IUConfig(Checked):
    # 1-20 is the range the authors advise; on Fashion-MNIST 0.005 was needed (docs/RESULTS.md)
    alpha: float = param(0.2, gt=0, tune="1e-4:20:log")
    """Step size α of the influence update (the research code's default)."""
    iu_samples: int = param(1000, ge=1)
    """N: retain samples in the WoodFisher estimate, and its damping constant."""
    batch_size: int = param(256, ge=1)
    """Images per batch when summing the forget and retain gradients."""
    augment: bool = param(True, flag="--aug/--no-aug")
    """Random crop and flip of every image a gradient is taken on (where the dataset allows), as the
    research code's loaders do."""


def gradient_sum(
    model: nn.Module,
    data: ImageSet,
    batch_size: int,
    aug: Augment | None = None,
    gen: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Σ over samples of ∇ℓ(θ; x, y), with the model in eval mode (added up over the ranks); the images
    in order, augmented with ``aug`` drawing from ``gen``."""
    model.eval()
    params = {n: p for n, p in model.named_parameters()}
    device = next(iter(params.values())).device
    with fast_layout(model, device) as layout:
        total = {n: torch.zeros_like(p) for n, p in params.items()}
        for x, y in batches(data, batch_size, spread=True, aug=aug, gen=gen):
            loss = F.cross_entropy(model(x.contiguous(memory_format=layout)), y, reduction="sum")
            grads = torch.autograd.grad(loss, list(params.values()))
            torch._foreach_add_(list(total.values()), grads)
    total = {n: t.contiguous() for n, t in total.items()}
    distributed.sum_(list(total.values()))
    return total


def per_sample_gradients(
    model: nn.Module,
    data: ImageSet,
    count: int,
    chunk: int,
    aug: Augment | None = None,
    gen: torch.Generator | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """Per-sample loss gradients of the first ``count`` images, ``chunk`` at a time (eval mode), each
    image augmented with ``aug`` drawing from ``gen``."""
    model.eval()
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.detach() for n, b in model.named_buffers()}

    def loss(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, (p, buffers), (x[None],)), y[None])

    per_sample = vmap(grad(loss), in_dims=(None, 0, 0))
    first = data.subset(slice(0, count))
    for x, y in batches(first, chunk, aug=aug, gen=gen):
        # vmap has no batching rule for the fused attention kernels; the math one is plain batched ops.
        with sdpa_kernel(SDPBackend.MATH):
            chunk_grads = per_sample(params, x, y)
        yield chunk_grads


def dot(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> torch.Tensor:
    """Row-wise dot products of a chunk of gradients ``a`` (leading dim) with one gradient ``b``."""
    return sum((a[n].flatten(1).double() @ b[n].flatten().double()) for n in b)  # type: ignore[return-value]


def woodfisher_direction(
    model: nn.Module,
    retain: ImageSet,
    v: dict[str, torch.Tensor],
    n: int,
    chunk: int,
    aug: Augment | None = None,
    gen: torch.Generator | None = None,
    mask: Mask | None = None,
) -> dict[str, torch.Tensor]:
    """k ≈ H⁻¹ v by the WoodFisher recursion, in its scalar form (see the module docstring). With a
    ``mask``, g₀ is 0 at pruned weights (so is v), and so are the dot products' terms there."""
    g0: dict[str, torch.Tensor] | None = None
    c, s = 0.0, 1.0
    for grads in per_sample_gradients(model, retain, min(n + 2, len(retain)), chunk, aug, gen):
        if g0 is None:
            g0 = {name: g[0].clone() for name, g in grads.items()}
            g0 = mask.restrict(g0) if mask is not None else g0
            grads = {name: g[1:] for name, g in grads.items()}
        vg, g0g = dot(grads, v).tolist(), dot(grads, g0).tolist()
        for a, b in zip(vg, g0g, strict=True):
            t = s * b
            kg = a + c * b
            c -= kg / (n + t) * s
            s -= t / (n + t) * s
    assert g0 is not None
    return {name: v[name] + c * g0[name] for name in v}


def influence_unlearning(model: nn.Module, data: UnlearnData, cfg: IUConfig, ctx: Context) -> nn.Module:
    """θ ← θ + α · H⁻¹ v, then the mask again."""
    n_f, n_r = len(data.forget), len(data.retain)
    aug, gen = data.aug if cfg.augment else None, ctx.generator()
    g_f = gradient_sum(model, data.forget, cfg.batch_size, aug, gen)
    g_r = gradient_sum(model, data.retain, cfg.batch_size, aug, gen)
    v = {name: g_f[name] / (n_f + n_r) - g_r[name] * n_f / ((n_f + n_r) * n_r) for name in g_f}
    if ctx.mask is not None:
        v = ctx.mask.restrict(v)  # a pruned weight's gradient is 0 in the research code
    size = sum(t.numel() for t in v.values())
    chunk = max(1, min(128, (1 << 26) // size))  # about 256 MB of float32 gradients per chunk
    k = woodfisher_direction(model, data.retain, v, cfg.iu_samples, chunk, aug, gen, ctx.mask)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(k[name], alpha=cfg.alpha)
    if ctx.mask is not None:
        ctx.mask.apply(model)
    return model


METHOD = UnlearnMethod(
    "iu",
    "influence unlearning with a WoodFisher inverse Hessian",
    IUConfig,
    influence_unlearning,
    feeds=(
        Feed("forget", "eval", "batch_size", "in order", True, "gradient sum"),
        Feed("retain", "eval", "batch_size", "in order", True, "gradient sum"),
        Feed("retain", "eval", "per-sample", "in order", True, "WoodFisher, first iu_samples + 2 images"),
    ),
    source="OPTML-Group/Unlearn-Sparse: main_forget.py, unlearn/Wfisher.py",
    ddp="the forget and retain gradient sums are split over the ranks; the WoodFisher recursion "
    "runs on every rank",
    quick={"iu_samples": 50},
)
