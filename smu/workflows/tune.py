"""`smu tune` as a library call: search a method's hyper-parameters for the setting whose model comes
closest to retraining, then measure that setting once on a forget set it was not tuned on.

- **The objective never sees the test split.** A trial's score is the Avg. Gap to a retrained model
  over UA, MIA-Efficacy, RA and the *validation* accuracy (the validation split also stands in for the
  test set as the attack's shadow non-members): :data:`smu.evaluation.TUNING_METRICS`.
- **The reported number is a held-out one.** The best setting runs once more on another draw of the
  forget set — the next class for class-wise forgetting, the next ``--forget-seed`` for a random one —
  against its own retrained model, and is scored with the paper's metrics (TA on the test split).
  Both numbers are reported side by side: their difference is how much tuning flattered the result.
- **A study survives its process.** Trials live in Optuna's SQLite storage in the run folder
  (``study.db``); running the same command again continues the study, a trial cut short by a killed
  process is run again with the same values, and several processes may work on one study at once.
- **Honest cost.** The time of every trial and of the references is summed and shown beside the
  held-out run's RTE. The retrained references are cached steps (:mod:`smu.execution.steps`): another method
  tuned into the same folder reuses them.

This module holds the command and its plan of steps; the study (Optuna's storage, sampler, pruner and
the trial) is :mod:`smu.workflows.tune_study`, what is reported :mod:`smu.workflows.tune_summary`.
Optuna is an optional extra (``pip install 'smu[tune]'``); only ``tune_study`` imports it, lazily.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from smu import loggers
from smu.core.errors import DivergedError, UsageError
from smu.core.options import Space, flag_of, search_space
from smu.core.units import reported
from smu.data import Splits, splits_of
from smu.data.forget import ForgetSet, parse_class, qualified_subclass, resolve_forget
from smu.evaluation import GAP_METRICS, TUNING_METRICS, gap, unlearning_metrics
from smu.execution import make_executor
from smu.execution.engine import Reporter, resolve_device
from smu.execution.steps import Plan, Step, result_of
from smu.io import artifacts, files
from smu.io.artifacts import LoadedModel
from smu.io.files import digest
from smu.methods.unlearning import METHODS, is_function, make_config
from smu.workflows.common import command_line, default_out, run_folder, runs_estimate, tracked, write_manifest
from smu.workflows.subject import Subject, open_subject
from smu.workflows.tune_study import (
    TuneConfig,
    open_study,
    optuna_module,
    run_study,
    study_name,
    trained,
    trial_rows,
)
from smu.workflows.tune_summary import importance, recipe_snippet, reproduce, summary

if TYPE_CHECKING:
    from smu.execution.executor import Executor

REFERENCE = "retrain"


def tune(
    model: str | Path,
    forget: str | Path,
    method: str,
    space: Sequence[str] | None = None,
    holdout_forget: str | None = None,
    reference: str | Path | None = None,
    forget_seed: int = 0,
    data: str | Path | None = None,
    device: str = "auto",
    threads: int | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    force: bool = False,
    workers: int = 1,
    executor: str = "serial",
    address: str | None = None,
    cpus_per_step: float | None = None,
    gpus_per_step: float | None = None,
    dry_run: bool = False,
    log: Sequence[str] = (),
    log_dir: str | Path | None = None,
    tracking_uri: str | None = None,
    wandb_project: str | None = None,
    wandb_entity: str | None = None,
    log_models: bool = False,
    reporter: Reporter | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Tune a method's hyper-parameters against retrain: trials scored on validation data, the chosen
    setting measured on a held-out forget set.

    ``options`` are the tuning's (``trials=30``, ``timeout``, ``prune``), the method's fixed
    hyper-parameters (``epochs=5``: not searched) and, prefixed ``retrain_``, the reference's
    (``retrain_epochs=20``). Returns what ``--json`` prints; with ``dry_run``, only the plan and its time
    estimate. ``log`` names experiment trackers: the study is one run there, with each trial's gap as it
    finishes and the chosen setting, and each of its steps a child run.
    """
    given = {k: v for k, v in locals().items() if k not in ("options", "reporter")} | options
    tracking = loggers.settings(log, log_dir, tracking_uri, wandb_project, wandb_entity, log_models)
    settings = Settings.of(method, space or [], options)
    runner = executor_of(workers, executor, address, cpus_per_step, gpus_per_step)
    optuna_module()  # installed?
    dev = resolve_device(device)
    subject = open_subject(
        model, forget, device=dev, forget_seed=forget_seed, reference=reference, data=data, method=method
    )
    heldout, draw = heldout_subject(subject, holdout_forget, forget_seed)
    out = study_out(out, subject.loaded, method, force)
    trials, retrains = settings.tune.trials, 1 + (subject.reference is None)
    trial = make_config(method, settings.fixed)  # searched options at their defaults
    runs = [(REFERENCE, settings.retrain)] * retrains + [(method, trial)] * (trials + 1)
    what = f"{retrains} {REFERENCE} reference(s), {trials} trials of {method}, the chosen one held out"
    estimate = runs_estimate(runs, subject, what, runner.parallel)
    if dry_run:
        return {"dry_run": True, "method": method, "out": str(out), "estimate": estimate.as_dict()}
    reporter = reporter or Reporter()
    reporter.plan(estimate)
    runner.start()
    started = time.perf_counter()
    command = settings.command({k: v for k, v in given.items() if k not in options})
    tags = {
        "command": "tune",
        "method": method,
        "scenario": subject.forget.spec,
        "dataset": subject.loaded.dataset,
    }
    tags |= {"model": subject.loaded.arch, "seed": seed}
    with (
        run_folder(out, force=True, threads=threads or runner.threads, reporter=reporter) as folder,
        tracked(tracking, folder, command, tags, dev) as track,
    ):
        identity = {
            "parent": subject.loaded.sha256,
            "forget": subject.forget.sha256,
            "heldout": heldout.forget.sha256,
        }
        shared = {  # the plan's inputs, the same here and on a Ray worker
            "identity": identity,
            "method": method,
            "fixed": settings.fixed,
            "space": settings.space,
            "retrain_cfg": settings.retrain,
            "tune_cfg": settings.tune,
            "seed": seed,
            "workers": workers,
        }
        ref = subject.reference
        given_ref = (lambda: ref) if ref is not None else None
        steps = plan(
            lambda: subject, lambda: heldout, folder=folder, reference=given_ref, reporter=reporter, **shared
        )
        again = {  # what a Ray worker plans the same steps from: it opens the subjects itself
            "model": str(model),
            "data": None if data is None else str(data),
            "device": device,
            "forget": (forget, forget_seed),
            "heldout": draw,
            "out": str(folder),
            "reference": None if reference is None else str(reference),
            **shared,
        }
        open_study(folder, steps[2].tags["study"])  # made here, before workers race to make it
        done = runner.run(steps, Plan(command_plan, again), reporter)
        result = summary(subject, steps, done, method, settings.space, settings.fixed, folder, started)
        result["reproduce"] = reproduce(result, model, heldout, draw[1], seed, data)
        result["estimate"] = estimate.as_dict()
        save(result, folder, method, command, given, dev, track.tags)
        track.done(result, folder / method, [folder / method / "tune.json", Path(result["snippet"])])
    return result


@dataclass(frozen=True)
class Settings:
    """``tune()``'s options sorted by what they are for, checked before anything is loaded."""

    method: str
    tune: TuneConfig
    """The study's own: ``trials``, ``timeout``, ``prune``."""
    fixed: dict[str, Any]
    """The method's options given a value: not searched."""
    space: dict[str, Space]
    """The method's options searched, each with its range."""
    retrain: Any
    """The reference's config, from the ``retrain_``-prefixed options."""

    @classmethod
    def of(cls, method: str, space: Sequence[str], options: dict[str, Any]) -> Settings:
        own = {f.name for f in dataclasses.fields(TuneConfig)}
        tune_cfg = TuneConfig(**{k: v for k, v in options.items() if k in own and v is not None})
        retrain = {k.removeprefix("retrain_"): v for k, v in options.items() if k.startswith("retrain_")}
        fixed = {
            k: v
            for k, v in options.items()
            if k not in own and not k.startswith("retrain_") and v is not None
        }
        if method == REFERENCE:
            raise UsageError(
                "--method retrain is the reference: there is nothing to match it to",
                hint="tune an approximate method",
            )
        if is_function(method):
            raise UsageError(
                f"--method {method}: your function declares no search space to tune",
                hint="tune a registered method (smu unlearn --help lists them)",
            )
        make_config(method, fixed)  # the fixed options checked before anything is loaded
        retrain_cfg = make_config(REFERENCE, retrain, where=lambda name: flag_of(f"retrain_{name}"))
        chosen = search_space(METHODS.get_spec(method).config, space, fixed=list(fixed))
        return cls(method, tune_cfg, fixed, chosen, retrain_cfg)

    def command(self, values: dict[str, Any]) -> str:
        """The command for the artifacts' headers: ``values`` (``tune()``'s own arguments), then the
        study's, the method's and the reference's options (these spelled ``--retrain-*``)."""
        prefix = {id(self.retrain): "retrain"}
        return command_line(
            "smu tune",
            values,
            self.tune,
            make_config(self.method, self.fixed),
            self.retrain,
            prefix=lambda config, name: prefix.get(id(config), ""),
            repeated=("space",),
        )


def executor_of(
    workers: int, executor: str, address: str | None, cpus_per_step: float | None, gpus_per_step: float | None
) -> Executor:
    """``--executor`` with its options, checked before anything is loaded: more than one study worker
    needs an executor that runs steps side by side."""
    if workers > 1 and executor == "serial":
        raise UsageError(
            f"--workers {workers} needs --executor local or ray: the serial executor runs one worker",
            hint="add --executor local, or start more smu tune processes on the same --out",
        )
    runner = make_executor(executor, address, cpus_per_step, gpus_per_step)
    runner.check()
    return runner


def heldout_subject(subject: Subject, spec: str | None, forget_seed: int) -> tuple[Subject, tuple[str, int]]:
    """The subject the chosen setting is measured on and its draw (spec, seed): ``--holdout-forget``
    if given, else the draw after the tuning one (:func:`heldout_forget`); never the tuning draw."""
    draw = (spec, forget_seed) if spec else heldout_forget(subject.forget, subject.splits, forget_seed)
    heldout = load_subject(subject.loaded, subject.splits, *draw)
    if heldout.forget.sha256 == subject.forget.sha256:
        raise UsageError(
            f"--holdout-forget {draw[0]!r} is the forget set being tuned on",
            hint="the held-out number must come from another draw",
        )
    return heldout, draw


def study_out(out: str | Path | None, loaded: LoadedModel, method: str, force: bool) -> Path:
    """``--out`` (by default named after the model and the method): new, empty or holding a study to
    continue; anything else only with ``--force``."""
    out = Path(out) if out else default_out("tune", loaded.dataset, loaded.arch, method)
    if out.is_dir() and any(out.iterdir()) and not (out / "study.db").is_file() and not force:
        raise UsageError(
            f"--out {str(out)!r} is not empty and holds no study",
            hint="choose another --out, or pass --force",
        )
    return out


def save(
    result: dict[str, Any],
    folder: Path,
    method: str,
    command: str,
    options: dict[str, Any],
    device: torch.device,
    tags: dict[str, str] | None = None,
) -> None:
    """The recipe snippet into ``folder``, tune.json and the manifest into its ``method`` folder
    (methods tuned into one --out keep theirs); their paths into ``result``."""
    snippet = folder / f"tuned-{method}.yaml"
    files.atomic_write(snippet, result["recipe"].encode())
    result["snippet"] = str(snippet)
    files.write_json(folder / method / "tune.json", reported(result))
    result["manifest"] = write_manifest(folder / method, command, options, result, device, tags)


def heldout_forget(fs: ForgetSet, splits: Splits, seed: int) -> tuple[str, int]:
    """(spec, seed) of the draw the chosen setting is measured on: the next class for class-wise
    forgetting (``class:C`` or ``class:C:N``), the next sub-class of the same class for ``subclass:``, the
    next seed for ``random:`` and a class's subset."""
    kind, _, rest = fs.spec.partition(":")
    if kind == "class":
        name, _, count = rest.partition(":")
        following = (parse_class(name, splits) + 1) % splits.info.num_classes
        return f"class:{following}" + (f":{count}" if count else ""), seed
    if kind == "subclass" and fs.forget_subclass is not None:
        siblings = [i for i, c in enumerate(splits.info.fine_parent) if c == fs.subclass_of]
        following = siblings[(siblings.index(fs.forget_subclass) + 1) % len(siblings)]
        if following != fs.forget_subclass:
            return f"subclass:{qualified_subclass(following, splits)}", seed
    if kind == "random":
        return fs.spec, seed + 1
    raise UsageError(
        f"--forget {fs.spec!r} has no second draw to measure the chosen setting on",
        hint="name one with --holdout-forget SPEC (a class, random:N or another file of indices)",
    )


def reference_step(
    subject: Callable[[], Subject],
    identity: dict[str, Any],
    draw: str,
    cfg: Any,
    seed: int,
    folder: Path,
    reporter: Reporter,
    needs: tuple[str, ...] = (),
) -> Step:
    """Retrain on the ``draw`` (tuning or held-out) forget set, measured without the test split for the
    tuning draw and with it for the held-out one; cached under everything that decides it."""
    test = draw == "heldout"
    key = digest({"tune_reference": dataclasses.asdict(cfg), "draw": draw, "seed": seed, **identity})
    folder = folder / f"{draw}-{key[:8]}"

    def run() -> dict[str, Any]:
        started = time.perf_counter()
        s = subject()
        model = trained(s, REFERENCE, cfg, seed, folder, reporter)
        tuning = unlearning_metrics(model, s.splits, s.forget, test=False)
        full = unlearning_metrics(model, s.splits, s.forget) if test else None
        seconds = time.perf_counter() - started
        return {
            "tuning": tuning,
            "metrics": full,
            "seconds": seconds,
            "model": str(folder / "model.safetensors"),
        }

    return Step(
        f"retrain on the {draw} draw (the reference)", folder, key, run, {"kind": "tune-reference"}, needs
    )


def given_reference_step(
    subject: Callable[[], Subject], reference: Callable[[], LoadedModel], folder: Path
) -> Step:
    """The user's own retrained model for the tuning draw, measured without the test split."""

    def run() -> dict[str, Any]:
        s = subject()
        tuning = unlearning_metrics(reference().model, s.splits, s.forget, test=False)
        return {"tuning": tuning, "metrics": None, "seconds": 0.0, "model": str(reference().path)}

    key = digest({"given_reference": reference().sha256, "forget": subject().forget.sha256})
    return Step(
        "measure the given reference", folder / f"given-{key[:8]}", key, run, {"kind": "tune-reference"}
    )


def plan(
    subject: Callable[[], Subject],
    heldout: Callable[[], Subject],
    identity: dict[str, Any],
    method: str,
    fixed: dict[str, Any],
    space: dict[str, Space],
    retrain_cfg: Any,
    tune_cfg: TuneConfig,
    seed: int,
    folder: Path,
    *,
    workers: int = 1,
    reference: Callable[[], LoadedModel] | None = None,
    reporter: Reporter | None = None,
    needs: tuple[str, ...] = (),
    tags: dict[str, Any] | None = None,
) -> list[Step]:
    """The steps of ``smu tune``: the two references, ``workers`` study workers (each runs trials until
    the study has enough), and the chosen setting on the held-out draw. ``identity`` names the model
    and the forget sets in the keys (their hashes for the command; in a recipe, where the model does not
    exist yet, the producing step's key, which every step then ``needs``); the subjects load lazily."""
    reporter = reporter or Reporter()
    refs = folder / "reference"
    if reference is None:
        tuning_ref = reference_step(subject, identity, "tuning", retrain_cfg, seed, refs, reporter, needs)
    else:
        tuning_ref = given_reference_step(subject, reference, refs)
    heldout_ref = reference_step(heldout, identity, "heldout", retrain_cfg, seed, refs, reporter, needs)
    name = study_name(method, fixed, space, tuning_ref.key, seed)
    identity = {"study": name, "trials": tune_cfg.trials, **identity}

    def worker_step(i: int) -> Step:
        def run() -> dict[str, Any]:
            reference = result_of(tuning_ref)
            run_study(subject(), method, fixed, space, reference, tune_cfg, seed, folder, name, reporter, i)
            return {"worker": i}

        key = digest({"tune_worker": i, **identity})
        where = folder / method / "workers" / f"worker-{i}"
        tags = {"kind": "tune-worker", "study": name}
        return Step(f"{method} trials (worker {i})", where, key, run, tags, (tuning_ref.key,))

    studies = [worker_step(i) for i in range(workers)]

    def final() -> dict[str, Any]:
        h = heldout()
        optuna = optuna_module()
        storage = f"sqlite:///{(folder / 'study.db').resolve()}"
        study = optuna.load_study(study_name=name, storage=storage)
        rows = trial_rows(optuna, study)
        if not any(r["state"] == "complete" for r in rows):
            raise DivergedError(
                f"no trial of {method} finished: {len(rows)} pruned, diverged or lost",
                hint="narrow --space (a lower lr), or run more --trials",
            )
        best = study.best_trial
        chosen = make_config(method, fixed | best.params)
        measured = measure(
            h, method, chosen, seed, folder / method / "heldout", result_of(heldout_ref), reporter
        )
        values = {k: v for k, v in dataclasses.asdict(chosen).items() if k in best.params or k in fixed}
        return {
            "trials": rows,
            "best": {"number": best.number, "params": dict(best.params), "tuning_gap": best.value},
            "best_metrics": best.user_attrs.get("metrics"),
            "config": dataclasses.asdict(chosen),
            "heldout": {"forget": h.forget.summary()} | measured,
            "importance": importance(optuna, study),
            "recipe": recipe_snippet(method, values),
            "study_name": name,
        }

    key = digest({"tune_heldout": method, **identity})
    last = Step(
        f"{method} with the chosen setting on the held-out draw",
        folder / method / "heldout",
        key,
        final,
        {"kind": "tune-heldout", "method": method, **(tags or {})},
        (heldout_ref.key, *(w.key for w in studies)),
    )
    return [tuning_ref, heldout_ref, *studies, last]


def measure(
    subject: Subject,
    method: str,
    cfg: Any,
    seed: int,
    folder: Path,
    reference: dict[str, Any],
    reporter: Reporter,
) -> dict[str, Any]:
    """``method`` with ``cfg`` on ``subject``'s forget set: the paper's metrics and both gaps to retrain."""
    model = trained(subject, method, cfg, seed, folder, reporter)
    metrics = unlearning_metrics(model, subject.splits, subject.forget)
    return {
        "metrics": metrics,
        "reference": reference["metrics"],
        "gap": gap(metrics, reference["metrics"], GAP_METRICS),
        "tuning_gap": gap(metrics, reference["tuning"], TUNING_METRICS),
        "rte_s": model.rte_s,  # type: ignore[attr-defined]
        "model": str(folder / "model.safetensors"),
        "reference_model": reference["model"],
    }


def command_plan(
    model: str,
    data: str | None,
    device: str,
    forget: tuple[str, int],
    heldout: tuple[str, int],
    identity: dict[str, Any],
    method: str,
    fixed: dict[str, Any],
    space: dict[str, Space],
    retrain_cfg: Any,
    tune_cfg: TuneConfig,
    seed: int,
    out: str,
    workers: int,
    reference: str | None,
) -> list[Step]:
    """The steps of ``smu tune`` from plain data (a :class:`smu.execution.steps.Plan`'s ``build``, for a
    Ray worker): the model and references load when a step first needs them, on the worker's device."""

    @functools.cache
    def loaded() -> tuple[LoadedModel, Splits]:
        dev = resolve_device(device)
        model_ = artifacts.load_model(model, dev)
        return model_, splits_of(model_, data, dev)

    def subject(spec: str, forget_seed: int) -> Callable[[], Subject]:
        return functools.cache(lambda: load_subject(*loaded(), spec, forget_seed))

    given = None
    if reference is not None:
        given = functools.cache(
            lambda: artifacts.load_model(reference, resolve_device(device), option="--reference")
        )
    return plan(
        subject(*forget),
        subject(*heldout),
        identity,
        method,
        fixed,
        space,
        retrain_cfg,
        tune_cfg,
        seed,
        Path(out),
        workers=workers,
        reference=given,
    )


def load_subject(loaded: LoadedModel, splits: Splits, spec: str, seed: int) -> Subject:
    return Subject(loaded, splits, resolve_forget(spec, splits, seed))
