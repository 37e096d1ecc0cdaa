"""Boundary Expanding (Chen et al., CVPR 2023, "Boundary Unlearning"; class-wise forgetting).

Widen the classifier with a (K+1)-th "shadow" output (its weights freshly initialised, the others
copied), fine-tune the forget set towards it, then remove the shadow output again, so the forget set
is spread over the remaining classes and the saved model has K outputs like any other. The paper
prunes the shadow neuron; the research re-implementation (OPTML-Group, ``unlearn/boundary_ex.py``)
forgot to, leaving K+1 outputs. Its settings: SGD lr 0.01, momentum 0.9, weight decay 5e-4, 10 epochs;
the forget set in batches of 256, shuffled every epoch and augmented (a copy of the training set,
transform included), the last partial batch kept, train mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from smu.core.masks import Mask
from smu.core.options import param
from smu.execution.engine import Pass, TrainConfig
from smu.methods.unlearning.base import Context, Feed, UnlearnData, UnlearnMethod
from smu.models import classifier_layer


@dataclass
class BoundaryExpandConfig(TrainConfig):
    epochs: int = param(10, ge=1, tune="1:10")
    """Fine-tuning epochs on the forget set towards the shadow class."""
    lr: float = param(0.01, gt=0, tune="1e-3:1e-1:log")
    """Initial learning rate (SGD)."""


def resized_head(head: nn.Linear, outputs: int) -> nn.Linear:
    """A copy of ``head`` with ``outputs`` rows: the first rows copied, any new ones freshly initialised."""
    new = nn.Linear(head.in_features, outputs, bias=head.bias is not None, device=head.weight.device)
    rows = min(outputs, head.out_features)
    with torch.no_grad():
        new.weight[:rows] = head.weight[:rows]
        if head.bias is not None:
            new.bias[:rows] = head.bias[:rows]
    return new


def replace(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent), name, module)


def widened(mask: Mask | None, name: str, rows: int) -> Mask | None:
    """The mask for the widened model: the shadow row of a masked head weight is alive."""
    if mask is None or name not in mask.tensors:
        return mask
    m = mask.tensors[name]
    return Mask(mask.tensors | {name: torch.cat([m, m.new_ones(rows - len(m), *m.shape[1:])])}, mask.scope)


def boundary_expand(
    model: nn.Module, data: UnlearnData, cfg: BoundaryExpandConfig, ctx: Context
) -> nn.Module:
    """Fine-tune the forget set into a shadow class, then cut the shadow class off."""
    path = classifier_layer(model)
    head = model.get_submodule(path)
    classes = head.out_features
    replace(model, path, resized_head(head, classes + 1))

    def shadow(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return torch.full_like(y, classes)

    mask = widened(ctx.mask, f"{path}.weight", classes + 1)
    ctx.train(model, [Pass(data.forget, relabel=shadow)], cfg, data.aug, "boundary-expand", mask=mask)
    replace(model, path, resized_head(model.get_submodule(path), classes))
    return model


METHOD = UnlearnMethod(
    "boundary-expand",
    "Boundary Expanding: train the forget set into an extra class, then remove that class",
    BoundaryExpandConfig,
    boundary_expand,
    feeds=(Feed("forget", "train", "batch_size", "shuffled", True, "training, shadow class"),),
    source="OPTML-Group/Unlearn-Saliency: main_forget.py, unlearn/boundary_ex.py",
    differs="the shadow class is removed after training, as the paper says (the re-implementation keeps "
    "K+1 outputs): the saved model has K outputs like every other",
)
