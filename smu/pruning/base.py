"""What a pruning method is: how it chooses the mask, and when in training it does so.

A method only picks the mask; :mod:`smu.workflows.prune` owns training, rewinding and saving, so
every method, built-in or plug-in (docs/PLUGINS.md), gets the same engine and artifacts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from smu.core.masks import Mask
from smu.core.options import config_problems


@dataclass(frozen=True)
class PruneContext:
    """What ``choose`` may use besides the model and the mask."""

    input_shape: tuple[int, int, int]
    generator: torch.Generator
    """Seeded by the run's --seed: the only randomness a method may use."""
    options: Any = None
    """The method's own options (an instance of its ``config``), or None."""


MaskFn = Callable[[nn.Module, Mask, int, PruneContext], Mask]
"""choose(model, current mask, weights pruned after this round, context) -> new mask. The current
mask's pruned weights must stay pruned (``Mask.prune_lowest`` does this)."""


@dataclass(frozen=True)
class PruneMethod:
    """A pruning method, as every command, recipe and the Python API see it."""

    name: str
    """What users type: ``smu prune --method NAME``."""
    summary: str
    """One line for help, listings and the README."""
    choose: MaskFn
    at_init: bool
    """True: prune at initialisation, then train once. False: train dense, prune, rewind, retrain."""
    iterative: bool = False
    """True: --times rounds, each pruning --rate of the weights still alive (IMP)."""
    default_rate: float = 0.95
    """--rate when none is given."""
    config: type | None = None
    """Its own options, a dataclass (field docstrings are the help); None when it has none."""


def prune_problems(method: Any, registry: Any) -> list[str]:
    """What keeps ``method`` (a plug-in's) from working like a built-in; empty when nothing does."""
    found = []
    if not 0 < method.default_rate < 1:
        found.append(f"its default_rate {method.default_rate!r} is outside (0, 1)")
    if method.config is not None and not dataclasses.is_dataclass(method.config):
        found.append("its config is not a dataclass")
    elif method.config is not None:
        found += config_problems(method.config)
    return found
