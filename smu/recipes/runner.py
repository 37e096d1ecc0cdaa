"""Plan and run a recipe: a list of steps, each writing into its own folder and skipped when done.

A step is done when its folder holds ``step.json`` with the same key: a hash of everything that
decides its output (resolved options, and the keys of the steps it reads from). So an interrupted
``smu run`` continues where it stopped, a changed option reruns exactly the steps it affects, and a
new method reuses the trained and pruned models.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from smu import artifacts
from smu.artifacts import digest
from smu.backdoor import Attack
from smu.data import Splits, load_splits
from smu.data.forget import resolve_forget
from smu.engine import Reporter, resolve_device, runtime
from smu.pruning import METHODS as PRUNING
from smu.pruning import PruneConfig
from smu.pruning.pipeline import run_prune, train_models
from smu.recipes.config import Recipe, method_config, prune_method_options, reference_method
from smu.unlearning.pipeline import run_unlearn


@dataclass
class Step:
    title: str
    folder: Path
    key: str
    run: Callable[[], dict[str, Any]]
    tags: dict[str, Any]


def slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in ".-" else "-" for ch in text)


def model_name(rate: float) -> str:
    return "dense" if rate == 0 else f"sparse-{rate:g}"


class Planner:
    """Builds the steps of a recipe; results of earlier steps are read back from their step.json."""

    def __init__(self, recipe: Recipe, out: Path, reporter: Reporter):
        self.recipe, self.out, self.reporter = recipe, out, reporter
        self.device = resolve_device(recipe.device)
        self.base = {
            k: v
            for k, v in recipe.to_dict().items()
            if k in ("dataset", "arch", "val_fraction", "train", "amp")
        }

    def steps(self) -> list[Step]:
        return self.unlearn_steps() if self.recipe.kind == "unlearn" else self.backdoor_steps()

    def result(self, step: Step) -> dict[str, Any]:
        return json.loads((step.folder / "step.json").read_text())["result"]

    def splits(self, seed: int):
        r = self.recipe
        return load_splits(
            r.dataset, data_dir=r.data, device=self.device, val_fraction=r.val_fraction, seed=seed
        )

    def models_step(
        self, seed: int, folder: Path, extra: dict[str, Any], attack: Callable[[], Attack] | None
    ) -> Step:
        r = self.recipe
        rates = [0.0, *r.prune.rates]
        key = digest({"step": "models", "seed": seed, **self.base, "prune": asdict(r.prune), **extra})

        def run() -> dict[str, Any]:
            splits = attack().poisoned if attack else self.splits(seed)
            meta = attack().meta() if attack else None
            if PRUNING[r.prune.method].iterative:
                return self.imp_models(splits, folder, seed)
            models = train_models(  # resume: an interrupted step continues from its checkpoints
                splits,
                r.arch,
                r.train,
                rates,
                folder,
                method=r.prune.method,
                options=prune_method_options(r),
                seed=seed,
                device=self.device,
                rewind_epoch=r.prune.rewind_epoch,
                scope=r.prune.scope,
                reporter=self.reporter,
                command=f"smu run (seed {seed})",
                extra_meta=meta,
                resume=True,
            )
            return {"models": {f"{rate:g}": str(path) for rate, path in models}}

        title = (
            f"seed {seed}: train dense, prune to {', '.join(f'{x:g}' for x in r.prune.rates) or 'nothing'}"
        )
        return Step(title, folder, key, run, {"kind": "models", "seed": seed})

    def imp_models(self, splits: Splits, folder: Path, seed: int) -> dict[str, Any]:
        """IMP rounds up to the largest rate; each requested rate takes the round closest to it."""
        r = self.recipe
        times = max(1, math.ceil(math.log(1 - max(r.prune.rates)) / math.log(1 - r.prune.imp_rate)))
        cfg = PruneConfig(
            r.prune.method,
            rate=r.prune.imp_rate,
            times=times,
            scope=r.prune.scope,
            rewind_epoch=r.prune.rewind_epoch,
            options=prune_method_options(r),
        )
        result = run_prune(
            splits,
            r.arch,
            r.train,
            cfg,
            out=folder,
            seed=seed,
            device=self.device,
            reporter=self.reporter,
            command=f"smu run (seed {seed})",
            resume=True,
        )
        models = {"0": result["dense"]["model"]}
        for rate in r.prune.rates:
            best = min(result["rounds"], key=lambda rd: abs(rd["sparsity"] - rate))
            models[f"{rate:g}"] = best["model"]
        return {"models": models}

    def unlearn_steps(self) -> list[Step]:
        r = self.recipe
        steps: list[Step] = []
        methods = sorted(r.unlearn, key=lambda m: m != reference_method(r.unlearn))  # the reference first
        for seed in r.seeds:
            models = self.models_step(seed, self.out / f"seed-{seed}" / "models", {}, None)
            steps.append(models)
            for scenario in r.scenarios:
                for rate in [0.0, *r.prune.rates]:
                    for method in methods:
                        folder = self.out / f"seed-{seed}" / slug(scenario) / model_name(rate) / method
                        key = digest(
                            {
                                "step": "unlearn",
                                "models": models.key,
                                "scenario": scenario,
                                "forget_seed": r.forget_seed,
                                "rate": rate,
                                "method": method,
                                "options": r.unlearn[method],
                                "features": r.report.mia_features,
                                "seed": seed,
                            }
                        )
                        run = self.unlearn_run(models, scenario, rate, method, folder, seed)
                        title = f"seed {seed}: {scenario}, {model_name(rate)}, {method}"
                        steps.append(
                            Step(
                                title,
                                folder,
                                key,
                                run,
                                {
                                    "kind": "unlearn",
                                    "seed": seed,
                                    "scenario": scenario,
                                    "rate": rate,
                                    "method": method,
                                },
                            )
                        )
        return steps

    def unlearn_run(
        self, models: Step, scenario: str, rate: float, method: str, folder: Path, seed: int
    ) -> Callable[[], dict[str, Any]]:
        r = self.recipe

        def run() -> dict[str, Any]:
            loaded = artifacts.load_model(self.result(models)["models"][f"{rate:g}"], self.device)
            splits = loaded.load_splits(r.data, self.device)
            forget = resolve_forget(scenario, splits, r.forget_seed)
            cfg = method_config(r, method)
            result = run_unlearn(
                loaded,
                splits,
                forget,
                method,
                cfg,
                out=folder,
                seed=seed,
                reporter=self.reporter,
                features=tuple(r.report.mia_features),
                command=f"smu run: {scenario} {method}",
                resume=True,
            )
            return {
                k: result[k] for k in ("model", "method", "rte_s", "metrics", "forget", "sparsity", "config")
            }

        return run

    def backdoor_steps(self) -> list[Step]:
        r = self.recipe
        steps: list[Step] = []
        attack_cfg = asdict(r.backdoor)
        for seed in r.seeds:
            cache: dict[str, Attack] = {}

            def attack(seed: int = seed, cache: dict[str, Attack] = cache) -> Attack:
                if (
                    "attack" not in cache
                ):  # poisoning is cheap and deterministic: redo it instead of storing it
                    cache["attack"] = Attack.prepare(self.splits(seed), r.backdoor, r.forget_seed)
                return cache["attack"]

            extra = {"backdoor": attack_cfg, "forget_seed": r.forget_seed}
            models = self.models_step(seed, self.out / f"seed-{seed}" / "trojans", extra, attack)
            steps.append(models)
            for rate in [0.0, *r.prune.rates]:
                for method in r.unlearn:
                    folder = self.out / f"seed-{seed}" / f"cleansed-{model_name(rate)}" / method
                    key = digest(
                        {
                            "step": "cleanse",
                            "models": models.key,
                            "rate": rate,
                            "method": method,
                            "options": r.unlearn[method],
                            "seed": seed,
                        }
                    )
                    run = self.cleanse_run(models, attack, rate, method, folder, seed)
                    steps.append(
                        Step(
                            f"seed {seed}: cleanse {model_name(rate)} with {method}",
                            folder,
                            key,
                            run,
                            {"kind": "cleanse", "seed": seed, "rate": rate, "method": method},
                        )
                    )
        return steps

    def cleanse_run(
        self, models: Step, attack: Callable[[], Attack], rate: float, method: str, folder: Path, seed: int
    ) -> Callable[[], dict[str, Any]]:
        r = self.recipe

        def run() -> dict[str, Any]:
            trojan = artifacts.load_model(self.result(models)["models"][f"{rate:g}"], self.device)
            cfg = method_config(r, method)
            return attack().cleanse(
                trojan,
                rate,
                method,
                cfg,
                folder,
                seed=seed,
                reporter=self.reporter,
                command=f"smu run: cleanse {method}",
            )

        return run


def is_done(step: Step) -> bool:
    marker = step.folder / "step.json"
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("key") == step.key
    except (OSError, json.JSONDecodeError):
        return False


def start(step: Step) -> None:
    """Mark a step as started with its key; leftovers of a step started with another key are cleared.

    Steps resume from their checkpoints, so what is in the folder must belong to this very step.
    """
    marker = step.folder / "step.started"
    if step.folder.is_dir() and (not marker.is_file() or marker.read_text() != step.key):
        shutil.rmtree(step.folder)
    artifacts.atomic_write(marker, step.key.encode())


def execute(
    recipe: Recipe, out: Path, reporter: Reporter | None = None
) -> list[tuple[Step, dict[str, Any], bool]]:
    """Run every step that is not done yet; return (step, result, skipped) for all of them."""
    reporter = reporter or Reporter()
    planner = Planner(recipe, out, reporter)
    steps = planner.steps()
    done = []
    for i, step in enumerate(steps, 1):
        if is_done(step):
            reporter.note(f"step {i}/{len(steps)}: {step.title} (done before, skipped)")
            done.append((step, planner.result(step), True))
            continue
        reporter.note(f"step {i}/{len(steps)}: {step.title}")
        start(step)
        with runtime(recipe.amp, recipe.compile):
            result = step.run()
        artifacts.write_json(
            step.folder / "step.json", {"key": step.key, "title": step.title, "result": result}
        )
        done.append((step, result, False))
    return done
