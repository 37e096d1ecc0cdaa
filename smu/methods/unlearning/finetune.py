"""FT: fine-tune on the retain set (Warnecke et al. 2023; the paper's FT baseline).

Training on D_r alone lets the model drift away from D_f ("catastrophic forgetting" on purpose).

Data, as the research code feeds it (OPTML-Group/Unlearn-Sparse, ``main_forget.py`` and
``unlearn/FT.py``): the retain set shuffled every epoch, augmented (its loader is a copy of the
training set, random crop and flip included), batches of 256, the last partial batch kept, train
mode.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from smu.core.options import param
from smu.execution.engine import TrainConfig
from smu.methods.unlearning.base import Context, Feed, UnlearnData, UnlearnMethod


@dataclass
class FTConfig(TrainConfig):
    epochs: int = param(10, ge=1, tune="1:10")
    """Fine-tuning epochs on the retain set."""
    lr: float = param(0.01, gt=0, tune="1e-3:1e-1:log")
    """Initial learning rate (SGD)."""


def finetune(model: nn.Module, data: UnlearnData, cfg: FTConfig, ctx: Context) -> nn.Module:
    """Minimise the cross-entropy on D_r, starting from the model's weights."""
    ctx.train(model, data.retain, cfg, data.aug, "ft")
    return model


METHOD = UnlearnMethod(
    "ft",
    "fine-tune on the retain set",
    FTConfig,
    finetune,
    feeds=(Feed("retain", "train", "batch_size", "shuffled", True, "training"),),
    source="OPTML-Group/Unlearn-Sparse: main_forget.py, unlearn/FT.py (FT_iter)",
)
