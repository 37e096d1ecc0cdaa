"""Pruning methods: the registry every command, recipe and the Python API read.

A method only picks the mask (:class:`PruneMethod`); :mod:`smu.workflows.prune` owns training,
rewinding and saving. Methods of other packages join through the entry-point group ``smu.pruning``
(docs/PLUGINS.md).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from smu.core.coerce import convert
from smu.core.errors import UsageError
from smu.core.masks import Mask
from smu.core.names import PRUNING_GROUP
from smu.core.options import ConfigError, flag_of
from smu.core.registry import Registry
from smu.core.training import PruneOptions
from smu.methods.pruning import magnitude, random_pruning, synflow
from smu.methods.pruning.base import MaskFn, PruneContext, PruneMethod, prune_problems

__all__ = ["METHODS", "MaskFn", "PruneConfig", "PruneContext", "PruneMethod", "prune_options"]

METHODS: Registry[PruneMethod] = Registry(
    PRUNING_GROUP,  # the entry-point group plug-ins register under
    PruneMethod,
    "pruning method",
    [magnitude.OMP, magnitude.IMP, synflow.METHOD, random_pruning.METHOD],
    prune_problems,
)
"""name -> method: the built-ins, then plug-ins."""


def prune_options(method: str, given: dict[str, Any], where: Callable[[str], str] = flag_of) -> Any:
    """The method's own options with those the user gave (None = default), or None if it has none."""
    spec = METHODS.get_spec(method)
    given = {k: v for k, v in given.items() if v is not None}
    names = [f.name for f in dataclasses.fields(spec.config)] if spec.config else []
    for key in given:
        if key not in names:
            users = [
                m
                for m, s in METHODS.items()
                if s.config and key in {f.name for f in dataclasses.fields(s.config)}
            ]
            raise UsageError(
                f"{where(key)} does not apply to --method {method}",
                hint=f"it is an option of {', '.join(users)}"
                if users
                else "smu prune --help lists the options",
            )
    if spec.config is None:
        return None
    hints, errors = typing.get_type_hints(spec.config), []
    values = {k: convert(hints[k], v, where(k), errors) for k, v in given.items()}
    if errors:
        raise UsageError("; ".join(errors), hint="smu prune --help lists the options")
    try:
        with METHODS.plugin_code(method):
            return spec.config(**values)
    except ConfigError as e:
        raise ConfigError(e.problems, where) from None


@dataclass
class PruneConfig(PruneOptions):
    """What to prune and how: :class:`smu.core.training.PruneOptions` (declared without torch, so the CLI
    checks them first), resolved against the method."""

    def resolved(self, epochs: int) -> PruneConfig:
        """Fill the method's defaults and check what depends on it (``epochs`` bounds the rewind epoch)."""
        method = METHODS.get_spec(self.method)
        rate = self.rate if self.rate is not None else method.default_rate
        times = self.times if self.times is not None else (5 if method.iterative else 1)
        found = self.schedule_problems(epochs, iterative=method.iterative, at_init=method.at_init)
        if found:
            raise ConfigError(found)
        options = self.options
        if options is None and method.config is not None:
            options = method.config()
        return dataclasses.replace(self, rate=rate, times=times, options=options)

    def pruned_after_round(self, mask: Mask) -> int:
        """How many weights a round leaves pruned: ``rate`` of all (one-shot) or of those alive (imp)."""
        pruned, total = mask.counts()
        if METHODS.get_spec(self.method).iterative:
            return pruned + round(self.rate * (total - pruned))
        return round(self.rate * total)
