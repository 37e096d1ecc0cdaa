"""Recipes: one experiment as YAML, checked against dataclasses before any compute.

Keys are the CLI options' names (``rewind_epoch`` or ``rewind-epoch``). ``key=value`` overrides
address a dotted path (``unlearn.ft.lr=0.02``, ``seeds=[1,2]``) and their values are read as YAML.
Every unknown key, wrong type and bad value is collected and reported at once, each unknown key
with the closest valid one.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from smu.backdoor import BackdoorConfig
from smu.coerce import build
from smu.data import SOURCES
from smu.data.forget import SPEC_HELP
from smu.engine import TrainConfig
from smu.errors import SmuError, UsageError
from smu.models import ARCHS
from smu.registry import suggest
from smu.unlearning import METHODS, make_config


@dataclass
class PruneStep:
    method: str = "omp"
    """omp: one dense training, then one prune-rewind-retrain per rate. imp: rounds of pruning imp_rate of
    what is left, until the largest rate; each rate takes the round closest to it."""
    rates: list[float] = field(default_factory=lambda: [0.95])
    """Sparsities to compare with the dense model."""
    imp_rate: float = 0.2
    """imp: fraction of the remaining weights pruned per round."""
    rewind_epoch: int = 8
    """Rewind epoch of OMP (0 = initialisation)."""
    scope: str = "conv"
    """Weights pruned: conv or all."""


@dataclass
class AttackStep:
    poison: str = "10%"
    """Training samples to poison: N or P%."""
    target: int = 0
    """The attacker's class."""
    trigger_size: int = 4
    """Side of the trigger square in pixels."""
    trigger_value: int | None = None
    """Trigger pixel value (default: black, white on black-background datasets)."""

    def config(self, rates: list[float]) -> BackdoorConfig:
        return BackdoorConfig(self.poison, self.target, self.trigger_size, self.trigger_value, tuple(rates))


@dataclass
class Report:
    mia_features: list[str] = field(default_factory=lambda: ["confidence"])
    """Attack features; the first is MIA-Efficacy."""


@dataclass
class Recipe:
    kind: str = "unlearn"
    """unlearn (the paper's main table) or backdoor (the Trojan cleanse study)."""
    dataset: str = "digits"
    arch: str = "resnet18"
    data: str | None = None
    val_fraction: float = 0.1
    device: str = "auto"
    amp: bool = False
    """bf16 autocast in training steps (as --amp)."""
    compile: bool = False
    """torch.compile for training steps (as --compile)."""
    seeds: list[int] = field(default_factory=lambda: [0])
    forget_seed: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: PruneStep = field(default_factory=PruneStep)
    scenarios: list[str] = field(default_factory=lambda: ["class:0"])
    unlearn: dict[str, dict[str, Any]] = field(default_factory=lambda: {"retrain": {}, "ft": {}})
    backdoor: AttackStep = field(default_factory=AttackStep)
    report: Report = field(default_factory=Report)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["train"]["decreasing_lr"] = list(d["train"]["decreasing_lr"])
        return d


def load_recipe(path: str | Path, overrides: list[str] = ()) -> Recipe:
    """Read a recipe file, apply ``key=value`` overrides, and check it all before returning."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"recipe {str(path)!r} does not exist", hint="ls recipes/ lists the shipped ones")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UsageError(
            f"recipe {str(path)!r} is not valid YAML{where}", hint="check the indentation"
        ) from None
    if not isinstance(raw, dict):
        raise UsageError(
            f"recipe {str(path)!r} is not a mapping of keys to values", hint="see recipes/quickstart.yaml"
        )
    for item in overrides:
        apply_override(raw, item)
    errors: list[str] = []
    recipe = build(Recipe, raw, "", errors)
    check_values(recipe, errors)
    if errors:
        raise UsageError(
            f"recipe {str(path)!r}: " + "; ".join(errors), hint="fix these keys (smu run --help)"
        )
    return recipe


def apply_override(raw: dict[str, Any], item: str) -> None:
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise UsageError(f"override {item!r} is not key=value", hint="e.g. unlearn.ft.lr=0.02 or seeds=[1,2]")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise UsageError(
            f"override {item!r}: {text!r} is not a YAML value", hint="quote it or fix it"
        ) from None
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UsageError(
                f"override {item!r}: {part!r} is not a section", hint="override its keys instead"
            )
    node[parts[-1]] = value


def check_values(recipe: Recipe, errors: list[str]) -> None:
    """Names and ranges, so a typo is caught before an hour of compute (after type errors too)."""
    for check in (check_names, check_training, check_unlearn):
        with contextlib.suppress(TypeError, ValueError, AttributeError):
            check(recipe, errors)  # a field with the wrong type is already reported


def check_names(recipe: Recipe, errors: list[str]) -> None:
    for key, table, value in (
        ("kind", {"unlearn": 0, "backdoor": 0}, recipe.kind),
        ("dataset", SOURCES, recipe.dataset),
        ("arch", ARCHS, recipe.arch),
        ("prune.method", {"omp": 0, "imp": 0}, recipe.prune.method),
        ("prune.scope", {"conv": 0, "all": 0}, recipe.prune.scope),
    ):
        if value not in table:
            close = suggest(value, list(table))
            errors.append(f"{key}: unknown {value!r}" + (f" (did you mean {close!r}?)" if close else ""))
    if not recipe.seeds:
        errors.append("seeds: give at least one seed")
    for spec in recipe.scenarios:
        if str(spec).split(":")[0] not in ("class", "random", "indices"):
            errors.append(f"scenarios: {spec!r} is not a forget spec ({SPEC_HELP})")


def check_training(recipe: Recipe, errors: list[str]) -> None:
    with contextlib.suppress(TypeError):  # a wrong type in train is already reported
        try:
            recipe.train.validate()
        except SmuError as e:
            errors.append(f"train: {e}")
    for r in [*recipe.prune.rates, recipe.prune.imp_rate]:
        if not 0 < r < 1:
            errors.append(f"prune: rate {r!r} is outside (0, 1)")
    if recipe.kind == "backdoor" and recipe.prune.method != "omp":
        errors.append("prune.method: the Trojan study compares OMP models (use omp)")
    if recipe.prune.rates and not 0 <= recipe.prune.rewind_epoch < recipe.train.epochs:
        errors.append(f"prune.rewind_epoch {recipe.prune.rewind_epoch} must be below train.epochs")


def check_unlearn(recipe: Recipe, errors: list[str]) -> None:
    for name, options in recipe.unlearn.items():
        if name not in METHODS:
            close = suggest(name, list(METHODS))
            errors.append(
                f"unlearn: unknown method {name!r}" + (f" (did you mean {close!r}?)" if close else "")
            )
            continue
        try:
            make_config(name, {str(k).replace("-", "_"): v for k, v in (options or {}).items()})
        except (SmuError, TypeError, AttributeError) as e:
            errors.append(f"unlearn.{name}: {e}")
    if recipe.kind == "unlearn" and recipe.unlearn and "retrain" not in recipe.unlearn:
        errors.append("unlearn: the table measures every method against retrain; add unlearn.retrain")
