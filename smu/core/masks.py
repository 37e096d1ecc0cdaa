"""Pruning masks: which weights are alive, and keeping the pruned ones exactly zero.

A mask maps parameter names (``net.layer1.0.conv1.weight``) to 0/1 tensors of the same shape. The
engine multiplies gradients and weights by it around every optimiser step, so weight decay,
momentum and noise can never move a pruned weight (the bug of SalUn's issue #32).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from smu.core.names import SCOPES
from smu.core.registry import lookup


def scope_parameters(model: nn.Module, scope: str) -> dict[str, nn.Parameter]:
    """The weight tensors a mask of this scope covers, by qualified name, in module order."""
    lookup(SCOPES, scope, "pruning scope")
    convs, linears, head = {}, {}, None
    for name, m in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(m, nn.Conv2d):
            convs[f"{prefix}weight"] = m.weight
        elif isinstance(m, nn.Linear):
            # Every registered network defines its head last, so the last Linear is the head.
            linears[head := f"{prefix}weight"] = m.weight
        elif isinstance(m, nn.MultiheadAttention) and m.in_proj_weight is not None:
            linears[f"{prefix}in_proj_weight"] = m.in_proj_weight  # torchvision's ViT: q, k, v in one
    if scope == "conv":
        return convs
    if scope == "linear":
        return {k: p for k, p in linears.items() if k != head}
    order = {id(p): i for i, p in enumerate(model.parameters())}
    return dict(sorted((convs | linears).items(), key=lambda kv: order[id(kv[1])]))


def scope_share(model: nn.Module, scope: str) -> float:
    """The fraction of the model's weights a scope covers (the patch embedding alone in a ViT: ~1%)."""
    covered = sum(p.numel() for p in scope_parameters(model, scope).values())
    return covered / max(1, sum(p.numel() for p in model.parameters()))


class Mask:
    """A 0/1 tensor per masked parameter, kept on the parameters' device and dtype."""

    def __init__(self, tensors: dict[str, torch.Tensor], scope: str = "conv"):
        self.tensors = tensors
        self.scope = scope

    @classmethod
    def ones(cls, model: nn.Module, scope: str = "conv") -> Mask:
        """A mask that keeps every weight of the scope (a dense model)."""
        params = scope_parameters(model, scope)
        return cls(
            {n: torch.ones_like(p, memory_format=torch.contiguous_format) for n, p in params.items()}, scope
        )

    def bind(self, model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Pair each mask tensor with its parameter, casting the mask to the parameter's device/dtype."""
        params = dict(model.named_parameters())
        ps, ms = [], []
        for name, m in self.tensors.items():
            p = params[name]
            if m.device != p.device or m.dtype != p.dtype:
                m = self.tensors[name] = m.to(device=p.device, dtype=p.dtype)
            ps.append(p)
            ms.append(m)
        return ps, ms

    @torch.no_grad()
    def apply(self, model: nn.Module) -> None:
        """Zero the pruned weights in place."""
        ps, ms = self.bind(model)
        if ps:
            torch._foreach_mul_(ps, ms)

    @torch.no_grad()
    def revived(self, model: nn.Module) -> int:
        """How many pruned weights of ``model`` are not 0 (-0.0 counts as 0): what a method that changes
        weights without :meth:`apply` afterwards leaves. Reads the model only; the mask is not cast."""
        params = dict(model.named_parameters())
        return sum(
            int(((params[n] != 0) & (m.to(params[n].device) == 0)).count_nonzero())
            for n, m in self.tensors.items()
        )

    @torch.no_grad()
    def mask_grads(self, model: nn.Module) -> None:
        """Zero the gradients of pruned weights so optimiser state (momentum) stays zero there too."""
        ps, ms = self.bind(model)
        grads = [p.grad for p in ps if p.grad is not None]
        if grads:
            torch._foreach_mul_(grads, [m for p, m in zip(ps, ms, strict=True) if p.grad is not None])

    def restrict(self, grads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Gradients (or any per-parameter tensors) as a pruned model has them: 0 at pruned weights,
        as torch's pruning re-parametrisation (weight = weight_orig · mask) gives the research code."""
        return {n: g * self.tensors[n].to(g) if n in self.tensors else g for n, g in grads.items()}

    def counts(self) -> tuple[int, int]:
        """(pruned, total) weights in the mask's scope."""
        total = sum(m.numel() for m in self.tensors.values())
        alive = sum(int(m.count_nonzero()) for m in self.tensors.values())
        return total - alive, total

    def sparsity(self) -> float:
        """Fraction of the scope's weights that are pruned, as ``--rate`` and the file metadata give it."""
        pruned, total = self.counts()
        return pruned / total if total else 0.0

    def percent(self) -> float:
        """Percent of the scope's weights that are pruned: sparsity as every result reports it."""
        return 100.0 * self.sparsity()

    def per_layer(self) -> dict[str, float]:
        """Fraction pruned in each masked tensor."""
        return {n: 1.0 - int(m.count_nonzero()) / m.numel() for n, m in self.tensors.items()}

    def prune_lowest(self, scores: dict[str, torch.Tensor], n_pruned: int) -> Mask:
        """A new mask with exactly ``n_pruned`` weights pruned: those already pruned, then the lowest scores.

        Ranking is global across tensors; already-pruned weights rank below every alive one, so a
        later round never revives a weight. Ties break by position, so the result is deterministic.
        """
        names = list(self.tensors)
        flat = torch.cat(
            [
                torch.where(
                    self.tensors[n].flatten().bool(),
                    scores[n].detach().flatten().to(torch.float64).cpu(),
                    torch.tensor(float("-inf"), dtype=torch.float64),
                )
                for n in names
            ]
        )
        keep = torch.ones(flat.numel(), dtype=torch.bool)
        keep[torch.argsort(flat, stable=True)[:n_pruned]] = False
        out, start = {}, 0
        for n in names:
            m = self.tensors[n]
            out[n] = keep[start : start + m.numel()].view(m.shape).to(device=m.device, dtype=m.dtype)
            start += m.numel()
        return Mask(out, self.scope)

    def items(self) -> Iterator[tuple[str, torch.Tensor]]:
        return iter(self.tensors.items())


class Freeze:
    """A gradient mask with frozen values (SalUn): weights where ``keep`` is 0 never move.

    Their gradients are zeroed before each step (so momentum never builds up there) and, after it,
    they are set back to ``values`` and their momentum cleared: weight decay, which SGD adds to the
    gradient inside the step, cannot move them either, so they stay bit-identical (the bug of SalUn's
    issue #32 was exactly this).
    """

    def __init__(self, keep: dict[str, torch.Tensor], values: dict[str, torch.Tensor]):
        self.keep = {n: k.bool() for n, k in keep.items()}
        self.values = {n: values[n].detach().clone() for n in keep}

    def mask_grads(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, keep in self.keep.items():
                p = params[name]
                if p.grad is not None:
                    p.grad.mul_(keep.to(p.grad.dtype))

    def restore(self, model: nn.Module, opt: torch.optim.Optimizer) -> None:
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, keep in self.keep.items():
                p = params[name]
                p.copy_(torch.where(keep, p, self.values[name]))
                for state in ("momentum_buffer", "exp_avg", "exp_avg_sq"):  # SGD's, Adam's
                    buf = opt.state.get(p, {}).get(state)
                    if buf is not None:
                        buf.mul_(keep.to(buf.dtype))
