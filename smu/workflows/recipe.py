"""`smu run` and `smu demo`: a whole experiment from a recipe, and its report.

A recipe is planned as steps (``smu.execution.steps``): per seed, the trained and pruned models, then one
step per scenario, model and method (for an audit, that method's ensemble and verdict); a new method reuses
the trained and pruned models."""

from __future__ import annotations

import functools
import math
import shlex
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from smu import loggers
from smu.core.errors import SmuError, SmuWarning, UsageError
from smu.core.names import whole_class
from smu.core.progress import Estimate
from smu.core.units import reported
from smu.data import Splits, load_splits
from smu.data.forget import resolve_forget
from smu.evaluation.metrics import measure
from smu.execution import distributed, make_executor
from smu.execution.engine import Reporter, accuracy, resolve_device, runtime
from smu.execution.executor import Executor
from smu.execution.steps import Plan, Step, is_done, result_of
from smu.io import artifacts, files
from smu.io.files import digest
from smu.methods.pruning import METHODS as PRUNING
from smu.methods.pruning import PruneConfig
from smu.methods.unlearning import METHODS, code_identity, folder_name
from smu.workflows import audit as auditing
from smu.workflows.backdoor import Attack
from smu.workflows.common import threads_for, tracked, versions
from smu.workflows.prune import run_prune, train_models
from smu.workflows.recipes import latex, report, statistics
from smu.workflows.recipes.catalog import read_recipe
from smu.workflows.recipes.config import (
    Recipe,
    method_config,
    model_name,
    parse_recipe,
    prune_method_options,
    reference_method,
    slug,
    tune_options,
)
from smu.workflows.recipes.estimate import recipe_estimate
from smu.workflows.subject import Subject, open_subject
from smu.workflows.unlearn import run_unlearn


def run(
    recipe: str | Path,
    overrides: Sequence[str] | None = None,
    dry_run: bool = False,
    out: str | Path | None = None,
    force: bool = False,
    resume: bool = False,
    executor: str = "serial",
    address: str | None = None,
    cpus_per_step: float | None = None,
    gpus_per_step: float | None = None,
    threads: int | None = None,
    log: Sequence[str] = (),
    log_dir: str | Path | None = None,
    tracking_uri: str | None = None,
    wandb_project: str | None = None,
    wandb_entity: str | None = None,
    log_models: bool = False,
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Run a recipe: train, prune, unlearn with every method, evaluate against retrain, report.

    ``recipe`` is a recipe file or the name of a shipped one (``quickstart``); ``overrides`` are
    ``key=value`` by dotted key (``unlearn.ft.lr=0.02``). A run continues where it stopped: finished
    steps are skipped (``resume`` is accepted for symmetry with prune and unlearn). ``threads``: torch's
    thread count here (default: :mod:`smu.execution.threads`' choice), and so each Ray CPU step's unless
    ``cpus_per_step`` is given. ``log`` names experiment trackers (with the recipe's ``log:``): the
    recipe is one run there and each step a child run. Returns what ``smu run --json`` prints.
    """
    del resume  # always on: finished steps are skipped and an interrupted one resumes from its checkpoint
    overrides = list(overrides or [])
    label, text = read_recipe(recipe)
    checked = parse_recipe(label, text, overrides)  # every key, type and range, before any compute
    kinds = [*([log] if isinstance(log, str) else log), *checked.log]
    tracking = loggers.settings(kinds, log_dir, tracking_uri, wandb_project, wandb_entity, log_models)
    runner = make_executor(executor, address, cpus_per_step, gpus_per_step)
    runner.check()
    if distributed.world_size() > 1:  # under torchrun: join the other ranks now, and check --sync-bn
        resolve_device(checked.device)
        if checked.sync_bn:
            distributed.check_sync_bn()
    resolved = checked.to_dict()
    out = Path(out) if out else Path("runs") / Path(str(recipe)).stem
    command = recipe_command(recipe, overrides)
    if dry_run:
        planner = Planner(checked, out, Reporter(), command)
        planned = planner.steps()
        steps = [
            {"step": i, "title": s.title, "folder": str(s.folder), "done": is_done(s)}
            for i, s in enumerate(planned, 1)
        ]
        plan = planner.estimate(planned, runner.parallel).as_dict()
        return {"recipe": resolved, "out": str(out), "steps": steps, "dry_run": True, "estimate": plan}
    if out.is_dir() and any(out.iterdir()) and not (out / "recipe.yaml").is_file() and not force:
        raise UsageError(
            f"--out {str(out)!r} is not empty and holds no smu run",
            hint="choose another --out, or pass --force",
        )
    reporter = reporter or Reporter()
    start = time.perf_counter()
    runner.start()  # its workers get ready while the data loads and the plan is timed
    tags = {"command": "run", "recipe": label, "kind": checked.kind, "dataset": checked.dataset}
    tags |= {
        "model": checked.arch,
        "scenario": ",".join(checked.scenarios),
        "seed": ",".join(map(str, checked.seeds)),
    }
    with (
        threads_for(threads or runner.threads, reporter) as used,
        files.run_dir(out, force=True) as out,
        tracked(tracking, out, command, tags, resolve_device(checked.device)) as track,
    ):
        header = f"# {command}\n# resolved by smu; run it again with: smu run {out / 'recipe.yaml'}\n"
        files.atomic_write(out / "recipe.yaml", (header + yaml.safe_dump(resolved, sort_keys=False)).encode())
        done = execute(
            checked, out, reporter, executor=runner, source=(label, text, overrides), command=command
        )
        seconds = time.perf_counter() - start
        result = finish_run(out, command, checked, runner, used, done, seconds, reporter, track.tags)
        sent = [out / "recipe.yaml", out / "report.md", out / "report.json", *result["figures"]]
        track.done(report_numbers(reported(result)), out, sent)
    return result


def report_numbers(result: dict[str, Any]) -> dict[str, Any]:
    """A recipe's report as final metrics: each table's cells as ``SCENARIO/METHOD/GROUP/METRIC`` (the
    mean over seeds, as report.json has it), and the run's wall time."""
    found: dict[str, Any] = {"wall_s": result.get("wall_s")}
    for table in result["report"]:
        for row in table.get("rows", []):
            for group, cell in row.get("cells", {}).items():
                where = f"{table.get('scenario') or table.get('title')}/{row.get('method')}/{group}"
                for metric, value in cell.items():
                    found[f"{where}/{metric}"] = value.get("mean") if isinstance(value, dict) else value
    return found


def finish_run(
    out: Path,
    command: str,
    checked: Recipe,
    runner: Executor,
    used: Any,
    done: list[tuple[Step, dict[str, Any], bool]],
    seconds: float,
    reporter: Reporter,
    tags: dict[str, str],
) -> dict[str, Any]:
    """The report of a finished run: report.md, report.tex, report.json and the figures."""
    tables, claims, models = statistics.build(done), statistics.claims(done), statistics.models_table(done)
    ran = sum(not skipped for _, _, skipped in done)
    speed = "".join(f", {name}" for name in ("amp", "compile", "sync_bn") if getattr(checked, name))
    if runner.name in ("serial", "local"):
        v = versions(resolve_device(checked.device))
        how = f"{used.count} thread{'s' * (used.count != 1)} ({used.reason})"
        if runner.name == "local":
            n = runner.threads
            how = f"{runner.parallel} worker processes of {n} thread{'s' * (n != 1)} each (--executor local)"
        machine = f"{v['device_name']} ({v['device']}{speed}), {v['platform']}, torch {v['torch']}, {how}"
    else:  # the steps ran wherever Ray put them; each step's workers.json says where
        v = versions("driver")
        chosen = ((runner.cpus_per_step, "CPU"), (runner.gpus_per_step, "GPU"))
        per_step = ", ".join(f"{n:g} {what}" for n, what in chosen if n is not None) or "default resources"
        machine = f"Ray tasks ({per_step} per step{speed}), torch {v['torch']}"
    preamble = (
        f"Command: `{command}`\n\nMachine: {machine}; wall time {seconds / 60:.1f} min ({ran} of "
        f"{len(done)} steps run, the rest reused)\n"
    )
    md_path = out / "report.md"
    files.atomic_write(md_path, report.markdown(tables, preamble, claims, models).encode())
    tex_path = out / "report.tex"  # the same tables for a paper
    files.atomic_write(tex_path, latex.latex(tables, preamble, claims, models).encode())
    result = {
        "out": str(out),
        "report": tables,
        "claims": claims,
        "models": models,
        "markdown": str(md_path),
        "latex": str(tex_path),
        "wall_s": seconds,
        "steps": {"total": len(done), "ran": ran, "skipped": len(done) - ran},
        "threads": used.as_dict(),  # the driver's: the serial executor's steps ran with it
        "tags": tags,  # what the run is, for experiment trackers (smu log reads them back)
        "versions": versions(resolve_device(checked.device)),  # the driver's (Ray steps: workers.json)
    }
    files.write_json(out / "report.json", reported(result))
    result["figures"], drawn = draw_figures(out)
    files.write_json(out / "report.json", reported(result))
    reporter.note(f"{ran} of {len(done)} steps run in {seconds / 60:.1f} min; report: {md_path}; {drawn}")
    return result


def recipe_command(recipe: str | Path, overrides: Sequence[str]) -> str:
    """``smu run RECIPE OVERRIDES...`` as typed (shell-quoted; --out and the executor left out, as every
    command's): what recipe.yaml's header and report.md show, and what every step's artifacts store, so
    a step's file names the run that remakes it."""
    return "smu run " + " ".join(shlex.quote(str(a)) for a in [recipe, *overrides])


def draw_figures(out: Path) -> tuple[list[str], str]:
    """The run's figures (``smu plot``) when the plotting extra is installed: the files and where they are.
    Without it, or when they cannot be drawn, a one-line warning says why: the report stands either way."""
    from smu.workflows import plot as plotting

    try:
        plotting.matplotlib_module()
        drawn = plotting.plot_run(out, force=True)
    except SmuError as e:
        warnings.warn(f"figures not drawn: {e}", SmuWarning, stacklevel=2)
        return [], "no figures"
    return [f for figure in drawn["figures"] for f in figure["files"]], f"figures: {drawn['out']}"


def demo(
    out: str | Path = Path("runs/demo"), threads: int | None = None, reporter: Reporter | None = None
) -> dict[str, Any]:
    """Prune first, then unlearn, in about half a minute on the embedded digits (the quickstart recipe).

    Where this machine has room for more than one worker (cores, or GPUs), the steps run side by side in
    worker processes of one thread each (``--executor local``), unless ``threads`` asks for a serial run."""
    from smu.execution.local_executor import LocalExecutor

    side_by_side = threads is None and distributed.world_size() == 1 and LocalExecutor().parallel > 1
    executor = "local" if side_by_side else "serial"
    return run("quickstart", out=out, force=True, threads=threads, executor=executor, reporter=reporter)


class Planner:
    """Builds the steps of a recipe; results of earlier steps are read back from their step.json."""

    def __init__(self, recipe: Recipe, out: Path, reporter: Reporter, command: str = "smu run"):
        self.recipe, self.out, self.reporter = recipe, out, reporter
        self.command = command  # the run's (recipe_command): what every step's artifacts store
        self.base = {
            k: v
            for k, v in recipe.to_dict().items()
            if k in ("dataset", "arch", "val_fraction", "train", "amp") or (k == "subset" and v)
        }  # subset only when set: the keys of runs from before it stay valid

    @functools.cached_property
    def device(self) -> Any:
        # Resolved when a step runs, where it runs: a Ray driver without a GPU plans steps for workers
        # with one.
        return resolve_device(self.recipe.device)

    def steps(self) -> list[Step]:
        kinds = {"unlearn": self.unlearn_steps, "backdoor": self.backdoor_steps, "audit": self.audit_steps}
        return kinds[self.recipe.kind]()

    def estimate(self, steps: list[Step], parallel: int | None = 1) -> Estimate:
        """The plan of ``steps``, ``parallel`` at a time on this machine (None: an executor sends them
        elsewhere, so untimed)."""
        r = self.recipe
        try:
            splits = self.splits(r.seeds[0])
        except SmuError:  # a dry run of a recipe whose data is not here yet: the steps, without times
            return recipe_estimate(r, steps, None)
        attack = Attack.prepare(splits, r.backdoor, r.forget_seed) if r.kind == "backdoor" else None
        plan = recipe_estimate(r, steps, splits, len(attack.poison_set) if attack else None)
        return plan.side_by_side(parallel)

    def result(self, step: Step) -> dict[str, Any]:
        return result_of(step)

    def splits(self, seed: int):
        r = self.recipe
        return load_splits(
            r.dataset,
            data_dir=r.data,
            device=self.device,
            val_fraction=r.val_fraction,
            seed=seed,
            subset=r.subset,
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
                result = self.imp_models(splits, folder, seed)
                return result | {"accuracy": model_accuracy(result["models"], splits, self.device)}
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
                command=self.command,
                extra_meta=meta,
                resume=True,
            )
            paths = {f"{rate:g}": str(path) for rate, path in models}
            return {"models": paths, "accuracy": model_accuracy(paths, splits, self.device)}

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
            command=self.command,
            resume=True,
        )
        models = {"0": result["dense"]["model"]}
        for rate in r.prune.rates:
            best = min(
                result["rounds"], key=lambda rd: abs(rd["sparsity"] - 100 * rate)
            )  # percent vs fraction
            models[f"{rate:g}"] = best["model"]
        rounds = [{"sparsity": 0.0, "test_acc": result["dense"]["test_acc"]}]
        rounds += [{"sparsity": rd["sparsity"], "test_acc": rd["test_acc"]} for rd in result["rounds"]]
        return {"models": models, "rounds": rounds}

    def unlearn_steps(self) -> list[Step]:
        r = self.recipe
        steps: list[Step] = []
        planned: set[str] = set()  # step keys so far: tuning steps shared by methods are planned once
        methods = sorted(r.unlearn, key=lambda m: m != reference_method(r.unlearn))  # the reference first
        for seed in r.seeds:
            models = self.models_step(seed, self.out / f"seed-{seed}" / "models", {}, None)
            steps.append(models)
            planned.add(models.key)
            for scenario in r.scenarios:
                for rate in [0.0, *r.prune.rates]:
                    where = self.out / f"seed-{seed}" / slug(scenario) / model_name(rate)
                    group: dict[str, Step] = {}
                    for method in methods:
                        if METHODS.get_spec(method).classwise and not whole_class(scenario):
                            continue  # UNSIR forgets classes: its cells of other scenarios stay empty
                        folder = where / folder_name(method)
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
                                **code_identity(method),
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
                                needs=(models.key,),
                            )
                        )
                        group[method] = steps[-1]
                        planned.add(key)
                    if r.metrics:
                        steps.append(
                            self.metrics_step(models, seed, scenario, rate, group, where / "metrics")
                        )
                    steps += self.tune_steps(models, seed, scenario, rate, planned)
        return steps

    def metrics_step(
        self, models: Step, seed: int, scenario: str, rate: float, methods: dict[str, Step], folder: Path
    ) -> Step:
        """The recipe's extra ``metrics:`` of every method's model on one seed, scenario and model, against
        retrain's, computed from the models the method steps saved. A step of its own, keyed by theirs: a
        run that adds ``metrics:`` later reuses every unlearning step and only measures (the random model
        of ZRF is drawn from the seed of the run)."""
        r = self.recipe
        names = list(r.metrics)
        exact = reference_method(methods)
        key = digest({"step": "metrics", "metrics": names, "of": {m: s.key for m, s in methods.items()}})

        def run() -> dict[str, Any]:
            path = self.result(models)["models"][f"{rate:g}"]
            s = open_subject(path, scenario, device=self.device, forget_seed=r.forget_seed, data=r.data)
            ref = artifacts.load_model(self.result(methods[exact])["model"], self.device)
            measured = {}
            for method, step in methods.items():
                saved = self.result(step).get("model")
                if saved is None:  # a method that made no model here: its cells stay empty
                    continue
                loaded = ref if method == exact else artifacts.load_model(saved, self.device)
                measured[method] = measure(
                    names, loaded.model, s.splits, s.forget, arch=loaded.arch, reference=ref.model, seed=seed
                )["metrics"]
            return {"metrics": measured, "reference_method": exact, "options": {"seed": seed}}

        title = f"seed {seed}: {scenario}, {model_name(rate)}, metrics {', '.join(names)}"
        tags = {"kind": "metrics", "seed": seed, "scenario": scenario, "rate": rate}
        return Step(title, folder, key, run, tags, needs=tuple(s.key for s in methods.values()))

    def tune_steps(
        self, models: Step, seed: int, scenario: str, rate: float, planned: set[str]
    ) -> list[Step]:
        """``smu tune`` of each method in ``tune.methods`` on this model and scenario, into one folder
        whose references they share (each reference step is planned once)."""
        from smu.workflows import tune as tuning

        r = self.recipe
        if not r.tune.methods:
            return []
        subject = self.subject(models, scenario, rate)

        @functools.cache
        def heldout() -> Subject:
            s = subject()
            spec, forget_seed = tuning.heldout_forget(s.forget, s.splits, r.forget_seed)
            return Subject(s.loaded, s.splits, resolve_forget(spec, s.splits, forget_seed))

        where = {"seed": seed, "scenario": scenario, "rate": rate}
        identity = {"models": models.key, "forget_seed": r.forget_seed, **where}
        steps = []
        for method in r.tune.methods:
            fixed, space = tune_options(r, method)
            for step in tuning.plan(
                subject,
                heldout,
                identity,
                method,
                fixed,
                space,
                method_config(r, reference_method(r.unlearn)),
                tuning.TuneConfig(trials=r.tune.trials, prune=r.tune.prune),
                seed,
                self.out / f"seed-{seed}" / slug(scenario) / model_name(rate) / "tune",
                reporter=self.reporter,
                needs=(models.key,),
                tags={**where, "method": method},
            ):
                if step.key not in planned:
                    planned.add(step.key)
                    steps.append(step)
        return steps

    def unlearn_run(
        self, models: Step, scenario: str, rate: float, method: str, folder: Path, seed: int
    ) -> Callable[[], dict[str, Any]]:
        r = self.recipe

        def run() -> dict[str, Any]:
            path = self.result(models)["models"][f"{rate:g}"]
            s = open_subject(path, scenario, device=self.device, forget_seed=r.forget_seed, data=r.data)
            loaded, splits, forget = s.loaded, s.splits, s.forget
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
                command=self.command,
                resume=True,
            )
            return {
                k: result[k]
                for k in (
                    "model",
                    "method",
                    "rte_s",
                    "metrics",
                    "forget",
                    "sparsity",
                    "config",
                    "start_epoch",
                    "revived",
                )
            }

        return run

    def audit_steps(self) -> list[Step]:
        """Per seed, scenario and model: the retrained ensemble, then every method's ensemble and
        verdict (retrain's own: what a perfect method scores at this N), with the extra ``metrics:`` of
        its member pairs (ZRF's random model drawn from the seed of the run)."""
        r = self.recipe
        retrain_cfg = method_config(r, reference_method(r.unlearn))
        methods = {method: method_config(r, method) for method in r.unlearn}
        steps: list[Step] = []
        for seed in r.seeds:
            models = self.models_step(seed, self.out / f"seed-{seed}" / "models", {}, None)
            steps.append(models)
            for scenario in r.scenarios:
                for rate in [0.0, *r.prune.rates]:
                    where = {"seed": seed, "scenario": scenario, "rate": rate}
                    identity = {"models": models.key, "forget_seed": r.forget_seed, **where}
                    steps += auditing.plan(
                        self.subject(models, scenario, rate),
                        identity,
                        methods,
                        retrain_cfg,
                        r.audit,
                        self.out / f"seed-{seed}" / slug(scenario) / model_name(rate),
                        reporter=self.reporter,
                        tags=where,
                        needs=(models.key,),
                        command=self.command,
                        metrics=tuple(r.metrics),
                        metric_seed=seed,
                    )
        return steps

    def subject(self, models: Step, scenario: str, rate: float) -> Callable[[], Subject]:
        """The audited model, its data and forget set, loaded once, when the first step needs them."""

        @functools.cache
        def load() -> Subject:
            r = self.recipe
            path = self.result(models)["models"][f"{rate:g}"]
            return open_subject(path, scenario, device=self.device, forget_seed=r.forget_seed, data=r.data)

        return load

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
                    folder = self.out / f"seed-{seed}" / f"cleansed-{model_name(rate)}" / folder_name(method)
                    key = digest(
                        {
                            "step": "cleanse",
                            "models": models.key,
                            "rate": rate,
                            "method": method,
                            "options": r.unlearn[method],
                            "seed": seed,
                            **code_identity(method),
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
                            needs=(models.key,),
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
                command=self.command,
            )

        return run


def model_accuracy(models: dict[str, str], splits: Splits, device: Any) -> dict[str, dict[str, float]]:
    """Per model: its sparsity and its accuracy on the training split (un-augmented: how much of it the
    model fits), the validation and the test split."""
    measured = {}
    for rate, path in models.items():
        loaded = artifacts.load_model(path, device)
        measured[rate] = {
            "sparsity": loaded.mask.percent() if loaded.mask is not None else 0.0,
            "train_acc": accuracy(loaded.model, splits.train),
            "val_acc": accuracy(loaded.model, splits.val),
            "test_acc": accuracy(loaded.model, splits.test),
        }
    return measured


def plan_recipe(
    label: str, text: str, overrides: list[str], out: str, command: str = "smu run"
) -> list[Step]:
    """The steps of a recipe given as text (a :class:`smu.execution.steps.Plan`'s ``build``: what a Ray worker
    plans from); parsed as the command parsed it, so the keys (and the artifacts) are the same."""
    return Planner(parse_recipe(label, text, overrides), Path(out), Reporter(), command).steps()


def execute(
    recipe: Recipe,
    out: Path,
    reporter: Reporter | None = None,
    *,
    executor: Executor | None = None,
    source: tuple[str, str, list[str]] | None = None,
    command: str = "smu run",
) -> list[tuple[Step, dict[str, Any], bool]]:
    """Run every step of the recipe that is not done yet; return (step, result, skipped) for all.

    ``source``: the recipe's (label, text, overrides), which an executor other than serial needs to plan
    the steps again in its workers; ``command``: the run's, stored in every step's artifacts."""
    reporter, executor = reporter or Reporter(), executor or Executor()
    plan = None
    if source is not None:
        label, text, overrides = source
        kwargs = {
            "label": label,
            "text": text,
            "overrides": list(overrides),
            "out": str(out),
            "command": command,
        }
        plan = Plan(plan_recipe, kwargs, amp=recipe.amp, compile=recipe.compile)
    with runtime(recipe.amp, recipe.compile, recipe.sync_bn):
        planner = Planner(recipe, out, reporter, command)
        steps = planner.steps()
        reporter.plan(planner.estimate(steps, executor.parallel))
        return executor.run(steps, plan, reporter)
