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


RESERVED = frozenset(
    {
        # smu prune's own options (and the API's keywords), then its training options (TrainConfig's)
        *("method", "rate", "times", "scope", "rewind_epoch", "model", "rewind_from", "arch", "dataset"),
        *("data", "val_fraction", "subset", "device", "amp", "compile", "sync_bn", "seed", "out"),
        *("force", "resume", "reporter", "options", "json", "json_out", "quiet", "help"),
        *("dry_run", "threads"),
        *("log", "log_dir", "tracking_uri", "wandb_project", "wandb_entity", "log_models"),
        *("epochs", "lr", "batch_size", "momentum", "weight_decay", "schedule", "decreasing_lr"),
        *("warmup", "augment"),
    }
)
"""Names a pruning method's option may not take: ``smu prune`` would keep the value for itself.
tests/methods/test_plugins.py checks that it holds every option of the command."""


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
        taken = [f.name for f in dataclasses.fields(method.config) if f.name in RESERVED]
        if taken:
            found.append(
                f"its option{'s' * (len(taken) > 1)} {', '.join(taken)} would be shadowed by smu prune's "
                "own (reserved names: docs/PLUGINS.md)"
            )
    return found
