"""A recipe's plan before it runs: its steps by kind, and how long the ones still to run should take.

The training a step does follows from the recipe alone: a models step trains the dense model and
retrains one pruned model per rate (IMP: one per round), a method's step feeds what the method declares
(:meth:`smu.methods.unlearning.base.UnlearnMethod.work`). Sizes come from the first seed's splits and
forget sets, speed from a few training steps of the recipe's model (``smu.workflows.common.estimate``).
Tuning studies and audit verdicts are counted as steps but not timed: their trials are drawn as they run.
"""

from __future__ import annotations

import math
from collections import Counter

import torch

from smu.core.progress import Estimate
from smu.data import Splits
from smu.data.forget import resolve_forget
from smu.execution.steps import Step, is_done
from smu.methods.pruning import METHODS as PRUNING
from smu.methods.unlearning import METHODS
from smu.models import build_for
from smu.workflows.common import estimate
from smu.workflows.recipes.config import Recipe, method_config

METHOD_STEPS = ("unlearn", "member", "cleanse")
"""Steps that run one unlearning method (a recipe's table, an audit's ensemble, a Trojan's cleanse)."""


def recipe_estimate(
    recipe: Recipe, steps: list[Step], splits: Splits | None, poisoned: int | None = None
) -> Estimate:
    """The plan of ``steps`` (those already done are reused, not counted); ``poisoned``: the size of a
    backdoor recipe's forget set (the poisoned images). Without ``splits`` (the data is not here yet: a
    dry run offline), the steps alone."""
    todo = [s for s in steps if not is_done(s)]
    kinds = Counter(s.tags["kind"] for s in todo)
    what = ", ".join(f"{n} {kind}" for kind, n in kinds.items()) or "nothing"
    work = f"{len(todo)} of {len(steps)} steps to run ({what})"
    if splits is None:
        return Estimate(work, 0, None, None, recipe.device)
    n, checks = len(splits.train), len(splits.val) + len(splits.test)
    fed: dict[tuple[str, str, str], tuple[int, int] | None] = {}  # (kind, scenario, method) -> its work
    images = seen = untimed = 0
    for step in todo:
        kind = step.tags["kind"]
        if kind == "models":
            trained, models = models_work(recipe, n)
            images, seen = images + trained, seen + models * (n + checks)
        elif kind in METHOD_STEPS:
            scenario = step.tags.get("scenario", recipe.scenarios[0] if recipe.scenarios else "")
            key = (kind, scenario, step.tags["method"])
            if key not in fed:
                fed[key] = method_work(recipe, splits, *key, poisoned)
            if fed[key] is None:
                untimed += 1
                continue
            images, seen = images + fed[key][0], seen + fed[key][1]
        elif kind not in ("audit", "metrics"):  # an audit's verdict and the extra metrics train nothing
            untimed += 1
    if untimed:
        work += f"; {untimed} not timed (tuning trials, your own functions)"
    with torch.random.fork_rng():  # the steps initialise their models from their own seeds
        model = build_for(recipe.arch, splits.info).to(splits.train.device)
    return estimate(model, splits, recipe.train.batch_size, work, images, seen)


def method_work(
    recipe: Recipe, splits: Splits, kind: str, scenario: str, method: str, poisoned: int | None
) -> tuple[int, int] | None:
    """(training images, evaluated images) of one method step; None for a method that declares none."""
    if kind == "cleanse" or not scenario:
        forget = poisoned or 0
    else:
        forget = len(resolve_forget(scenario, splits, recipe.forget_seed))
    n = len(splits.train)
    work = METHODS.get_spec(method).work(method_config(recipe, method), forget, n - forget)
    return None if work is None else (work[1], n + len(splits.val) + len(splits.test))


def models_work(recipe: Recipe, n: int) -> tuple[int, int]:
    """Training images of one models step, and how many models it measures: the dense model and a
    retrained model per rate (or per IMP round), each from the rewind epoch (or from scratch, pruned at
    initialisation)."""
    prune, epochs = recipe.prune, recipe.train.epochs
    spec = PRUNING[prune.method]
    if spec.iterative and prune.rates:
        rounds = max(1, math.ceil(math.log(1 - max(prune.rates)) / math.log(1 - prune.imp_rate)))
    else:
        rounds = len(prune.rates)
    each = epochs - (0 if spec.at_init else prune.rewind_epoch)
    return n * (epochs + rounds * each), 1 + rounds
