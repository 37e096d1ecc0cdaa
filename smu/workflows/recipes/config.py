"""Recipes: one experiment as YAML, checked against the same declarations the commands use, before any
compute.

Keys are the CLI options' names (``rewind_epoch`` or ``rewind-epoch``). ``key=value`` overrides address
a dotted path (``unlearn.ft.lr=0.02``, ``seeds=[1,2]``) and their values are read as YAML. Every unknown
key, wrong type and value out of range is collected and reported at once, each unknown key with the
closest valid one. A recipe is a file, or the name of one shipped with smu (``smu recipes``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smu.core.coerce import build
from smu.core.errors import SmuError, UsageError, shown
from smu.core.masks import SCOPES
from smu.core.options import SEED_MAX, SPEC_HELP
from smu.core.registry import suggest
from smu.data import SOURCES
from smu.evaluation.metrics import METRICS
from smu.execution.engine import TrainConfig, resolve_device
from smu.methods.pruning import METHODS as PRUNING
from smu.methods.pruning import prune_options
from smu.methods.unlearning import METHODS, is_function, make_config
from smu.models import parse_arch
from smu.workflows.audit import AuditConfig
from smu.workflows.backdoor import BackdoorConfig
from smu.workflows.recipes.catalog import read_recipe
from smu.workflows.recipes.yaml_reader import load_yaml

KINDS = ("unlearn", "backdoor", "audit")
MAX_STEPS = 100_000
"""Most steps one recipe plans (the paper's table over three seeds is about 300)."""
MAX_IMP_ROUNDS = 100
"""Each IMP round trains the model again: 100 is weeks of compute for the paper's models."""


@dataclass
class PruneStep:
    method: str = "omp"
    """One-shot methods (omp, synflow, random): one dense training, then one pruned model per rate. imp:
    rounds of pruning imp_rate of what is left, until the largest rate; each rate takes the round
    closest to it."""
    rates: list[float] = field(default_factory=lambda: [0.95])
    """Sparsities to compare with the dense model."""
    imp_rate: float = 0.2
    """imp: fraction of the remaining weights pruned per round."""
    rewind_epoch: int = 8
    """Rewind epoch after pruning (0 = initialisation)."""
    scope: str = "conv"
    """Weights pruned: conv or all."""
    options: dict[str, Any] = field(default_factory=dict)
    """The method's own options, e.g. synflow_iterations (written beside the others in the recipe)."""


@dataclass
class Report:
    mia_features: list[str] = field(default_factory=lambda: ["confidence"])
    """Attack features; the first is MIA-Efficacy."""


@dataclass
class TuneStep:
    methods: list[str] = field(default_factory=list)
    """Methods of ``unlearn:`` to tune with smu tune on every seed, scenario and model, then report on
    their held-out draws in a table of their own. As with smu tune's options, a value a method has in
    ``unlearn:`` is fixed unless ``tune.space`` names it."""
    trials: int = 20
    """Finished trials per study (as --trials)."""
    space: dict[str, list[str]] = field(default_factory=dict)
    """Per method, changes to its search space (as --space: NAME=LOW:HIGH or NAME=LOW:HIGH:log)."""
    prune: bool = True
    """Median pruning of trials that train (as --prune/--no-prune)."""


@dataclass
class Recipe:
    kind: str = "unlearn"
    """unlearn (the paper's main table), backdoor (the Trojan cleanse study) or audit (smu audit of every
    method, per scenario and model)."""
    description: str = ""
    """One line for ``smu recipes``."""
    estimated_time: str = ""
    """How long it takes, and on what (for ``smu recipes``)."""
    dataset: str = "digits"
    arch: str = "resnet18"
    data: str | None = None
    val_fraction: float = 0.1
    subset: int = 0
    """Training images drawn from the official training set (as --subset; 0 = all)."""
    device: str = "auto"
    amp: bool = False
    """bf16 autocast in training steps (as --amp)."""
    compile: bool = False
    """torch.compile for training steps (as --compile)."""
    sync_bn: bool = False
    """Under torchrun on GPUs: SyncBatchNorm in training steps (as --sync-bn). Like the number of ranks, it
    is not part of a step's key."""
    seeds: list[int] = field(default_factory=lambda: [0])
    forget_seed: int = 0
    log: list[str] = field(default_factory=list)
    """Experiment trackers the run is sent to (tensorboard, mlflow, wandb, csv), with those --log names."""
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: PruneStep = field(default_factory=PruneStep)
    scenarios: list[str] = field(default_factory=lambda: ["class:0"])
    unlearn: dict[str, dict[str, Any]] = field(default_factory=lambda: {"retrain": {}, "ft": {}})
    backdoor: BackdoorConfig = field(default_factory=BackdoorConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    tune: TuneStep = field(default_factory=lambda: TuneStep())
    report: Report = field(default_factory=Report)
    metrics: list[str] = field(default_factory=list)
    """Extra metrics (as --metrics: zrf, js, activation_distance, weight_distance, a plug-in's) of every
    method's model against retrain's: extra columns of the report (kind: unlearn; kind: audit, as smu
    audit --metrics, without weight_distance)."""

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["train"]["decreasing_lr"] = list(d["train"]["decreasing_lr"])
        return d


def load_recipe(name: str | Path, overrides: list[str] = ()) -> Recipe:
    """Read a recipe (a file, or a shipped recipe's name), apply ``key=value`` overrides, and check it all
    before returning."""
    return parse_recipe(*read_recipe(name), overrides)


def parse_recipe(label: str, text: str, overrides: list[str] = ()) -> Recipe:
    """:func:`load_recipe` of a recipe's text (what a Ray worker plans from: the text travels, files
    need not)."""
    raw = load_yaml(text, f"recipe {shown(label)}") or {}
    if not isinstance(raw, dict):
        raise UsageError(
            f"recipe {shown(label)} is not a mapping of keys to values",
            hint="smu recipes quickstart shows one",
        )
    for item in overrides:
        apply_override(raw, item)
    method_keys_aside(raw)
    errors: list[str] = []
    recipe = build(Recipe, raw, "", errors)
    check_values(recipe, errors)
    if errors:
        raise UsageError(f"recipe {shown(label)}: {listed(errors)}", hint="fix these keys (smu run --help)")
    return recipe


def listed(errors: list[str], room: int = 300) -> str:
    """Every problem, as many as fit in ``room`` characters, then how many more there are."""
    count = 1
    while count < len(errors) and len("; ".join(errors[: count + 1])) <= room:
        count += 1
    more = f"; and {len(errors) - count} more" if count < len(errors) else ""
    return "; ".join(errors[:count]) + more


def apply_override(raw: dict[str, Any], item: str) -> None:
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise UsageError(
            f"override {shown(item)} is not key=value", hint="e.g. unlearn.ft.lr=0.02 or seeds=[1,2]"
        )
    value = load_yaml(text, f"override {shown(item)}")
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UsageError(
                f"override {shown(item)}: {shown(part)} is not a section", hint="override its keys instead"
            )
    node[parts[-1]] = value


def method_keys_aside(raw: dict[str, Any]) -> None:
    """A pruning method's own options sit beside the other prune keys; move them under ``options``."""
    prune = raw.get("prune")
    if not isinstance(prune, dict):
        return
    steps = {f.name for f in dataclasses.fields(PruneStep)}
    spec = PRUNING.get(str(prune.get("method", "omp")))
    own = {f.name for f in dataclasses.fields(spec.config)} if spec and spec.config else set()
    for key in [k for k in prune if str(k).replace("-", "_") in own - steps]:
        prune.setdefault("options", {})[str(key).replace("-", "_")] = prune.pop(key)


def check_values(recipe: Recipe, errors: list[str]) -> None:
    """Names and ranges, so a typo is caught before an hour of compute (after type errors too)."""
    for check in (check_names, check_pruning, check_unlearn, check_tune, check_metrics):
        with contextlib.suppress(TypeError, ValueError, AttributeError):
            check(recipe, errors)  # a field with the wrong type is already reported


def unknown(key: str, value: Any, table: Any, what: str = "") -> str:
    close = suggest(value, list(table))
    return f"{key}: unknown {what}{shown(value)}" + (f" (did you mean {close!r}?)" if close else "")


def check_names(recipe: Recipe, errors: list[str]) -> None:
    for key, table, value in (
        ("kind", KINDS, recipe.kind),
        ("dataset", SOURCES, recipe.dataset),
        ("prune.method", PRUNING, recipe.prune.method),
    ):
        if value not in table:
            errors.append(unknown(key, value, table))
    try:
        parse_arch(str(recipe.arch))
    except SmuError as e:
        errors.append(f"arch: {e.message}")
    try:
        resolve_device(recipe.device)
    except SmuError as e:
        errors.append(f"device: {e.message}")
    if not recipe.seeds:
        errors.append("seeds: give at least one seed")
    planned = len(recipe.seeds) * len(recipe.scenarios) * (1 + len(recipe.prune.rates)) * len(recipe.unlearn)
    if planned > MAX_STEPS:
        errors.append(f"seeds × scenarios × models × methods make {planned:,} steps (at most {MAX_STEPS:,})")
    for seed in [*recipe.seeds, recipe.forget_seed]:
        if not 0 <= seed <= SEED_MAX:
            errors.append(f"seeds and forget_seed run from 0 to {SEED_MAX:,}, not {shown(seed)}")
            break
    for spec in recipe.scenarios:
        if str(spec).split(":")[0] not in ("class", "subclass", "random", "indices"):
            errors.append(f"scenarios: {shown(spec)} is not a forget spec ({SPEC_HELP})")


def check_pruning(recipe: Recipe, errors: list[str]) -> None:
    prune = recipe.prune
    for r in [*prune.rates, prune.imp_rate]:
        if not 0 < r < 1:
            errors.append(f"prune: rate {shown(r)} is outside (0, 1)")
    if prune.scope not in SCOPES:
        errors.append(unknown("prune.scope", prune.scope, SCOPES))
    twice = sorted({r for r in prune.rates if prune.rates.count(r) > 1})
    if twice:
        errors.append(f"prune.rates: {', '.join(f'{r:g}' for r in twice)} given more than once")
    spec = PRUNING.get(prune.method)
    if spec is None:
        return
    if spec.iterative and 0 < prune.imp_rate < 1 and all(0 < r < 1 for r in prune.rates):
        # Each rate takes the IMP round whose sparsity 1 - (1 - imp_rate)^k is closest to it.
        needed = math.log1p(-max(prune.rates, default=0.5)) / math.log1p(-prune.imp_rate)
        if needed > MAX_IMP_ROUNDS:
            errors.append(
                f"prune: sparsity {max(prune.rates):g} at imp_rate {prune.imp_rate:g} takes more than "
                f"{MAX_IMP_ROUNDS} IMP rounds; raise prune.imp_rate"
            )
            return
        rounds = math.ceil(needed)
        sparsity = [1 - (1 - prune.imp_rate) ** k for k in range(1, max(rounds, 1) + 1)]
        taken: dict[int, float] = {}
        for r in prune.rates:
            k = min(range(len(sparsity)), key=lambda i, r=r: abs(sparsity[i] - r))
            if k in taken and taken[k] != r:
                errors.append(
                    f"prune.rates: {taken[k]:g} and {r:g} both take IMP round {k + 1} (sparsity "
                    f"{sparsity[k]:.3f}); drop one, or lower prune.imp_rate for finer rounds"
                )
            taken[k] = r
    if recipe.kind == "backdoor" and spec.iterative:
        errors.append(
            f"prune.method: the Trojan study prunes each rate once from one dense model "
            f"({prune.method} is iterative)"
        )
    if prune.rates and not spec.at_init and not 0 <= prune.rewind_epoch < recipe.train.epochs:
        errors.append(f"prune.rewind_epoch {prune.rewind_epoch} must be below train.epochs")
    try:
        prune_method_options(recipe)
    except SmuError as e:
        errors.append(e.message)


def check_unlearn(recipe: Recipe, errors: list[str]) -> None:
    for name in recipe.unlearn:
        if name not in METHODS and not is_function(str(name)):
            errors.append(unknown("unlearn", name, METHODS, "method "))
            continue
        try:
            method_config(recipe, name)  # a user's function (FILE.py:FUNCTION) is loaded here
        except SmuError as e:  # ConfigError too: every problem named by its recipe key
            errors.append(e.message)
    if recipe.kind == "unlearn" and recipe.unlearn and reference_method(recipe.unlearn) is None:
        errors.append("unlearn: the table measures every method against retrain; add unlearn.retrain")
    if recipe.kind == "audit" and reference_method(recipe.unlearn) is None:
        errors.append("unlearn: an audit's reference ensemble trains with unlearn.retrain's options; add it")


def check_tune(recipe: Recipe, errors: list[str]) -> None:
    tune = recipe.tune
    if not tune.methods:
        return
    if recipe.kind != "unlearn":
        errors.append(f"tune: tuning is part of kind: unlearn recipes, not {recipe.kind}")
        return
    if tune.trials < 1:
        errors.append(f"tune.trials {shown(tune.trials)} must be >= 1")
    for method in [*tune.methods, *(m for m in tune.space if m not in tune.methods)]:
        if is_function(str(method)):
            errors.append(f"tune: {shown(method)} is your function, which declares no search space to tune")
            continue
        if method not in recipe.unlearn or METHODS.get(method) is None or METHODS[method].exact:
            errors.append(f"tune: {shown(method)} is not one of this recipe's approximate methods (unlearn:)")
            continue
        try:
            tune_options(recipe, method)
        except SmuError as e:
            errors.append(f"tune.space.{method}: {e.message}")
    try:
        from smu.workflows.tune_study import optuna_module

        optuna_module()
    except SmuError as e:
        errors.append(f"tune: {e.message} ({e.hint})")


def check_metrics(recipe: Recipe, errors: list[str]) -> None:
    if recipe.metrics and recipe.kind == "backdoor":
        errors.append("metrics: extra metrics are columns of kind: unlearn and audit recipes, not backdoor")
        return
    for name in recipe.metrics:
        if name not in METRICS:
            errors.append(unknown("metrics", name, METRICS))
        elif recipe.kind == "audit" and not METRICS[name].outputs_only:
            errors.append(
                f"metrics: {name} reads the members' weights, which an audit recipe does not keep "
                "(smu audit --keep-models does); leave it out"
            )
    twice = sorted({m for m in recipe.metrics if recipe.metrics.count(m) > 1})
    if twice:
        errors.append(f"metrics: {', '.join(twice)} given more than once")


def tune_options(recipe: Recipe, method: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(fixed options, search space) of a method the recipe tunes, as ``smu tune`` makes them: an option
    with a value in ``unlearn:`` is fixed, unless ``tune.space`` names it; the method's declared ranges,
    changed by ``tune.space``, are searched."""
    from smu.core.options import search_space

    changes = recipe.tune.space.get(method, [])
    searched = {str(c).partition("=")[0].strip().replace("-", "_") for c in changes}
    given = {str(k).replace("-", "_"): v for k, v in (recipe.unlearn[method] or {}).items()}
    fixed = {k: v for k, v in given.items() if k not in searched}
    return fixed, search_space(METHODS[method].config, changes, fixed=list(fixed))


def method_config(recipe: Recipe, method: str) -> Any:
    """The checked config of one unlearning method of the recipe; problems name its recipe keys."""
    options = {str(k).replace("-", "_"): v for k, v in (recipe.unlearn[method] or {}).items()}
    return make_config(method, options, where=lambda name: f"unlearn.{method}.{name}")


def prune_method_options(recipe: Recipe) -> Any:
    """The checked options of the recipe's pruning method (None when it has none)."""
    return prune_options(recipe.prune.method, recipe.prune.options, where=lambda k: f"prune.{k}")


def reference_method(methods: Any) -> str | None:
    """The exact method (retrain) among ``methods``: every other one is measured against it."""
    return next((m for m in methods if m in METHODS and METHODS[m].exact), None)


def model_name(rate: float) -> str:
    return "dense" if rate == 0 else f"sparse-{rate:g}"


def slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in ".-" else "-" for ch in text)
