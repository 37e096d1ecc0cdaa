"""SynFlow: data-free pruning at initialisation by iterative synaptic-flow conservation (Tanaka et al. 2020).

Score: R = 1ᵀ (∏ |θ_l|) 1 is the output sum of the network with every parameter replaced by its
absolute value on an all-ones input; a weight's score is |θ ⊙ ∂R/∂θ|. Scores are recomputed over
``iterations`` rounds while the kept fraction shrinks exponentially, (1 - rate)^(k / iterations),
which avoids the layer collapse of one-shot pruning at high sparsity.

SynFlow's score is a sum over paths of products of |θ| only while every layer is positively
homogeneous. BatchNorm in eval mode is an affine map (of its running statistics, made absolute here);
LayerNorm is not: it subtracts the mean (flipping signs) and divides by the norm (so the scale of
every layer before it drops out of R). While scoring, each LayerNorm therefore acts as its affine
part alone, x·|γ| + |β|, which keeps a transformer's flow positive and conserved. Softmax and GELU
stay as they are: on the positive activations of an all-ones input both pass the flow on positive.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass

import torch
from torch import nn

from smu.core.masks import Mask
from smu.core.options import Checked, param
from smu.methods.pruning.base import PruneContext, PruneMethod


@dataclass
class SynFlowConfig(Checked):
    synflow_iterations: int = param(100, ge=1)
    """SynFlow scoring iterations (the exponential schedule's steps)."""


def synflow_mask(model: nn.Module, mask: Mask, n_pruned: int, ctx: PruneContext) -> Mask:
    """Prune to ``n_pruned`` weights with ``synflow_iterations`` rounds of SynFlow scoring."""
    # Score a float64 copy: products of |θ| across ~50 layers overflow float32 on deep networks.
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for t in net.state_dict().values():
            if t.is_floating_point():
                t.abs_()
    for m in net.modules():
        if isinstance(m, nn.LayerNorm):
            m.forward = functools.partial(affine_part, m)  # type: ignore[method-assign]
    magnitudes = {n: p.detach().clone() for n, p in net.named_parameters()}
    # The input normalisation would only rescale an all-ones input; SynFlow feeds the network ones.
    body = getattr(net, "net", net)
    ones = torch.ones((1, *ctx.input_shape), dtype=torch.float64, device=next(net.parameters()).device)
    if hasattr(net, "adapt"):  # the network's own channels and size (ones stay ones)
        ones = torch.ones_like(net.adapt(ones))
    _, total = mask.counts()
    keep_final = total - n_pruned
    iterations = (ctx.options or SynFlowConfig()).synflow_iterations
    for k in range(1, iterations + 1):
        with torch.no_grad():
            for n, p in net.named_parameters():
                p.copy_(magnitudes[n] * mask.tensors[n].to(p.dtype) if n in mask.tensors else magnitudes[n])
        net.zero_grad(set_to_none=True)
        body(ones).sum().backward()
        params = dict(net.named_parameters())
        scores = {n: (params[n].grad * params[n]).detach().abs() for n in mask.tensors}
        keep = keep_final if k == iterations else round(total * (keep_final / total) ** (k / iterations))
        mask = mask.prune_lowest(scores, total - max(keep, keep_final))
    return mask


def affine_part(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """LayerNorm without its normalisation (see the module's docstring)."""
    if norm.weight is None:
        return x
    return x * norm.weight + (norm.bias if norm.bias is not None else 0)


METHOD = PruneMethod(
    "synflow",
    "SynFlow at initialisation (iterative, exponential schedule), then train",
    synflow_mask,
    True,
    config=SynFlowConfig,
)
