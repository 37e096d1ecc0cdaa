"""SalUn: saliency-masked random labels (Fan et al., ICLR 2024; OPTML-Group/Unlearn-Saliency).

1. Saliency, at the original weights θ_o with the model in eval mode (``generate_mask.py``):
       g = | Σ over D_f batches of ∇θ CE_batchmean |
   (the official code sums the gradient of −CE; the absolute value makes the sign irrelevant), over
   every parameter; the mask keeps the global top ``saliency_ratio`` fraction of g (ties by position).
   The batches are the official forget loader's: ``--batch-size`` images, shuffled, augmented like
   the training data (the loader is a copy of the training set, transform included; ``--no-aug``
   turns it off), the last partial batch kept, even of one image (eval mode needs no batch
   statistics). Its random numbers come from the run's seed, so the mask is reproducible.
2. RL (``smu.methods.unlearning.random_label``) where only salient weights move: the others have their
   gradients zeroed and are held bit-identical to θ_o through weight decay and momentum — what the
   official code's fix of its issue #32 does, done by the engine's ``Freeze``. On a sparse model the
   pruned weights also stay exactly 0.

The mask is written beside the model as ``saliency.safetensors`` (kind ``saliency``: one uint8 0/1
tensor per parameter) and can be reused with ``--saliency PATH``. Under torchrun the saliency batches
are split over the ranks and added up; the training is data-parallel as every method's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from smu.core.errors import ArtifactError, UsageError, shown
from smu.core.masks import Freeze
from smu.core.options import param
from smu.data import ImageSet
from smu.data.batches import Augment, batches
from smu.execution import distributed
from smu.io import artifacts, tensorfile
from smu.io import schema as S
from smu.methods.unlearning.base import Context, Feed, UnlearnData, UnlearnMethod
from smu.methods.unlearning.random_label import RLConfig, rl_passes


@dataclass
class SalUnConfig(RLConfig):
    saliency_ratio: float = param(0.5, gt=0, le=1, tune="0.1:0.9")
    """Fraction of all weights that may change: those with the largest forget-loss gradient (the
    authors' 0.5)."""
    saliency: str | None = None
    """Reuse this saliency mask (a saliency.safetensors of an earlier run on the same model) instead of
    computing it."""


def saliency_scores(
    model: nn.Module,
    forget: ImageSet,
    batch_size: int,
    aug: Augment | None = None,
    gen: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """|Σ over batches of ∇θ CE_batchmean| on the forget set, per parameter, in eval mode: shuffled
    (and augmented, given ``aug``) batches when given a generator ``gen``, else in index order."""
    model.eval()
    params = dict(model.named_parameters())
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    stream = batches(
        forget, batch_size, shuffle=gen is not None, gen=gen, aug=aug, spread=True, drop_single=False
    )
    for x, y in stream:
        grads = torch.autograd.grad(F.cross_entropy(model(x), y), list(params.values()))
        torch._foreach_add_(list(total.values()), grads)
    distributed.sum_(list(total.values()))
    return {n: t.abs_() for n, t in total.items()}


def top_fraction(scores: dict[str, torch.Tensor], ratio: float) -> dict[str, torch.Tensor]:
    """1 for the ``int(ratio · N)`` largest scores over all tensors together, else 0 (ties by position)."""
    flat = torch.cat([s.flatten().double().cpu() for s in scores.values()])
    keep = torch.zeros(flat.numel(), dtype=torch.bool)
    keep[torch.argsort(-flat, stable=True)[: int(flat.numel() * ratio)]] = True
    out, start = {}, 0
    for name, s in scores.items():
        out[name] = keep[start : start + s.numel()].view(s.shape).to(s.device)
        start += s.numel()
    return out


def save_saliency(
    path: Path, keep: dict[str, torch.Tensor], ratio: float, ctx: Context, data: UnlearnData
) -> None:
    meta = {k: v for k, v in ctx.model_meta.items() if k in S.MODEL_IDENTITY}
    meta |= {
        S.KIND: S.SALIENCY,
        S.SALIENCY_RATIO: ratio,
        S.PARENT: ctx.model_sha256,
        S.FORGET_SHA256: data.forget_set.sha256,
    }
    tensorfile.save_tensors(path, {n: k.to(torch.uint8) for n, k in keep.items()}, meta)


def load_saliency(path: str, model: nn.Module, ctx: Context) -> tuple[dict[str, torch.Tensor], float]:
    """A saliency mask written for this model's architecture and shapes (else a usage error), and its
    ratio."""
    meta = tensorfile.read_metadata(path, "--saliency")
    tensorfile.expect_kind(Path(path), meta, S.SALIENCY, "--saliency")
    for key in S.MODEL_IDENTITY:
        if meta.get(key) != ctx.model_meta.get(key):
            raise UsageError(
                f"--saliency {path!r} was made for {key[4:]} {shown(meta.get(key))}, the model is "
                f"{shown(ctx.model_meta.get(key))}",
                hint="pass the saliency.safetensors of a SalUn run on this model",
            )
    tensors = tensorfile.read_tensors(Path(path))
    params = dict(model.named_parameters())
    problem = artifacts.state_mismatch(tensors, params)
    if problem or not all(
        bool(((t == 0) | (t == 1)).all()) for t in map(tensorfile.widened, tensors.values())
    ):
        raise UsageError(
            f"--saliency {path!r} does not fit this model ({problem or 'values other than 0 and 1'})",
            hint="pass the saliency.safetensors of a SalUn run on this model",
        )
    try:
        ratio = float(meta[S.SALIENCY_RATIO])
    except (KeyError, ValueError):
        raise ArtifactError(
            f"--saliency {path!r} has no valid {S.SALIENCY_RATIO}", hint="write it again"
        ) from None
    return {n: t.bool().to(params[n].device) for n, t in tensors.items()}, ratio


def salun(model: nn.Module, data: UnlearnData, cfg: SalUnConfig, ctx: Context) -> nn.Module:
    """RL on the salient weights only; the rest stay exactly as they were."""
    original = {n: p.detach().clone() for n, p in model.named_parameters()}
    if cfg.saliency:
        keep, ratio = load_saliency(cfg.saliency, model, ctx)
    else:
        ratio = cfg.saliency_ratio
        aug = data.aug if cfg.augment else None
        scores = saliency_scores(model, data.forget, cfg.batch_size, aug, ctx.generator())
        keep = top_fraction(scores, ratio)
    ctx.extras["saliency.safetensors"] = lambda path: save_saliency(path, keep, ratio, ctx, data)
    ctx.train(model, rl_passes(data, cfg), cfg, data.aug, "salun", freeze=Freeze(keep, original))
    return model


METHOD = UnlearnMethod(
    "salun",
    "random labels on the salient weights only (SalUn)",
    SalUnConfig,
    salun,
    feeds=(
        Feed("forget", "eval", "batch_size", "shuffled", True, "saliency"),
        Feed("forget", "train", "batch_size", "shuffled", True, "training, random labels"),
        Feed("retain", "train", "batch_size", "shuffled", True, "training"),
    ),
    source="OPTML-Group/Unlearn-Saliency: generate_mask.py, main_random.py, unlearn/RL.py "
    "(README: 10 epochs, lr 0.013)",
    ddp="the saliency batches are split over the ranks and added up; training is data-parallel",
)
