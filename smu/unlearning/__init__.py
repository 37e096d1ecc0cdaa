"""Unlearning methods: a registry of name -> (function, hyper-parameter dataclass).

Each method is one file that states its update rule; the engine owns the training loop, masks and
divergence checks. Defaults are the paper's CIFAR-10 settings.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from smu.coerce import convert
from smu.errors import UsageError
from smu.registry import lookup, suggest
from smu.unlearning.base import Context, UnlearnData
from smu.unlearning.finetune import FTConfig, finetune
from smu.unlearning.fisher import FFConfig, fisher_forgetting
from smu.unlearning.gradient_ascent import GAConfig, gradient_ascent
from smu.unlearning.influence import IUConfig, influence_unlearning
from smu.unlearning.l1_sparse import L1SparseConfig, l1_sparse
from smu.unlearning.retrain import RetrainConfig, retrain

__all__ = ["METHODS", "Context", "Method", "UnlearnData", "make_config"]


@dataclass(frozen=True)
class Method:
    run: Callable[[nn.Module, UnlearnData, Any, Context], nn.Module]
    config: type
    summary: str
    exact: bool = False


METHODS: dict[str, Method] = {
    "retrain": Method(
        retrain, RetrainConfig, "exact unlearning: train from scratch on the retain set", exact=True
    ),
    "ft": Method(finetune, FTConfig, "fine-tune on the retain set"),
    "ga": Method(gradient_ascent, GAConfig, "gradient ascent on the forget set"),
    "ff": Method(
        fisher_forgetting, FFConfig, "Fisher forgetting: noise scaled by the retain Fisher information"
    ),
    "iu": Method(influence_unlearning, IUConfig, "influence unlearning with a WoodFisher inverse Hessian"),
    "l1-sparse": Method(
        l1_sparse, L1SparseConfig, "sparsity-aware unlearning: fine-tune + decaying l1 penalty"
    ),
}


def make_config(method: str, overrides: dict[str, Any]) -> Any:
    """The method's config with the options the user gave (None = keep the paper's default).

    An option the method does not have is a usage error, so a typo'd or misplaced flag never
    silently does nothing.
    """
    spec = lookup(METHODS, method, "unlearning method")
    fields = {f.name for f in dataclasses.fields(spec.config)}
    given = {k: v for k, v in overrides.items() if v is not None}
    for key in given:
        if key not in fields:
            flag = "--no-aug" if key == "augment" else f"--{key.replace('_', '-')}"
            users = [m for m, s in METHODS.items() if key in {f.name for f in dataclasses.fields(s.config)}]
            if not users:
                close = suggest(
                    key, sorted({f.name for s in METHODS.values() for f in dataclasses.fields(s.config)})
                )
                raise UsageError(
                    f"unknown option {flag} for --method {method}",
                    hint=f"did you mean --{close.replace('_', '-')}?" if close else "see smu unlearn -h",
                )
            raise UsageError(
                f"{flag} does not apply to --method {method}", hint=f"it is an option of {', '.join(users)}"
            )
    hints, errors = typing.get_type_hints(spec.config), []
    given = {k: convert(hints[k], v, f"--{k.replace('_', '-')}", errors) for k, v in given.items()}
    if errors:
        raise UsageError("; ".join(errors), hint=f"see smu unlearn -h for the options of {method}")
    cfg = spec.config(**given)
    if hasattr(cfg, "validate"):
        cfg.validate()
    return cfg
