"""None: no unlearning at all. The original model, unchanged.

The floor of every comparison: a judge that cannot tell this method from retraining judges nothing
(``smu audit --method none`` is the do-nothing side of the audit's own test).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from smu.core.options import Checked
from smu.methods.unlearning.base import Context, UnlearnData, UnlearnMethod


@dataclass
class NoneConfig(Checked):
    pass


def keep(model: nn.Module, data: UnlearnData, cfg: NoneConfig, ctx: Context) -> nn.Module:
    return model


METHOD = UnlearnMethod("none", "no unlearning: the original model unchanged (the baseline)", NoneConfig, keep)
