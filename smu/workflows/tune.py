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

Optuna is an optional extra (``pip install 'smu[tune]'``); only this module imports it, lazily.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
import shlex
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from smu.data import Splits, check_fits, splits_of
from smu.data.forget import ForgetSet, parse_class, resolve_forget
from smu.engine import Reporter, resolve_device
from smu.errors import DivergedError, UsageError
from smu.evaluation import GAP_METRICS, TUNING_METRICS, gap, unlearning_metrics
from smu.execution import make_executor
from smu.execution.steps import Plan, Step, result_of
from smu.io import artifacts
from smu.io.artifacts import LoadedModel, digest
from smu.options import Checked, Space, flag_of, param, search_space
from smu.unlearning import METHODS, make_config
from smu.workflows.common import command_line, default_out, run_folder, write_manifest
from smu.workflows.subject import Subject
from smu.workflows.unlearn import run_unlearn

INSTALL = "pip install 'smu[tune]'"
REFERENCE = "retrain"


def optuna_module() -> Any:
    try:
        import optuna
    except ImportError:
        raise UsageError("smu tune needs Optuna, which is not installed", hint=INSTALL) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


@dataclass
class TuneConfig(Checked):
    trials: int = param(30, ge=1)
    """Trials the study should have finished (complete, pruned or diverged); a rerun adds the missing."""
    timeout: float | None = param(None, gt=0)
    """Start no new trial after this many seconds of this run (default: no limit)."""
    prune: bool = param(True, flag="--prune/--no-prune")
    """Stop a trial early when its gap after an epoch is worse than the median of earlier trials' (methods
    that train)."""


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
    seed: int = 0,
    out: str | Path | None = None,
    force: bool = False,
    workers: int = 1,
    executor: str = "serial",
    address: str | None = None,
    cpus_per_step: float | None = None,
    gpus_per_step: float | None = None,
    reporter: Reporter | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Tune a method's hyper-parameters against retrain: trials scored on validation data, the chosen
    setting measured on a held-out forget set.

    ``options`` are the tuning's (``trials=30``, ``timeout``, ``prune``), the method's fixed
    hyper-parameters (``epochs=5``: not searched) and, prefixed ``retrain_``, the reference's
    (``retrain_epochs=20``). Returns what ``--json`` prints.
    """
    given = {k: v for k, v in locals().items() if k not in ("options", "reporter")} | options
    own = {f.name for f in dataclasses.fields(TuneConfig)}
    tune_cfg = TuneConfig(**{k: v for k, v in options.items() if k in own and v is not None})
    retrain = {k.removeprefix("retrain_"): v for k, v in options.items() if k.startswith("retrain_")}
    fixed = {
        k: v for k, v in options.items() if k not in own and not k.startswith("retrain_") and v is not None
    }
    if method == REFERENCE:
        raise UsageError(
            "--method retrain is the reference: there is nothing to match it to",
            hint="tune an approximate method",
        )
    make_config(method, fixed)  # the fixed options checked before anything is loaded
    retrain_cfg = make_config(REFERENCE, retrain, where=lambda name: flag_of(f"retrain_{name}"))
    chosen = search_space(METHODS.get_spec(method).config, space or [], fixed=list(fixed))
    if workers > 1 and executor == "serial":
        raise UsageError(
            f"--workers {workers} needs --executor ray: the serial executor runs one worker",
            hint="add --executor ray, or start more smu tune processes on the same --out",
        )
    runner = make_executor(executor, address, cpus_per_step, gpus_per_step)
    runner.check()
    optuna_module()  # installed?
    dev = resolve_device(device)
    loaded = artifacts.load_model(model, dev)
    splits = splits_of(loaded, data, dev)
    ref = artifacts.load_model(reference, dev, option="--reference") if reference else None
    if ref is not None:
        check_fits(ref, splits, "--reference")
        ref.check_same_split(loaded)
    subject = Subject(loaded, splits, resolve_forget(forget, splits, forget_seed))
    spec, heldout_seed = (
        (holdout_forget, forget_seed)
        if holdout_forget
        else heldout_forget(subject.forget, splits, forget_seed)
    )
    heldout = Subject(loaded, splits, resolve_forget(spec, splits, heldout_seed))
    if heldout.forget.sha256 == subject.forget.sha256:
        raise UsageError(
            f"--holdout-forget {spec!r} is the forget set being tuned on",
            hint="the held-out number must come from another draw",
        )
    out = Path(out) if out else default_out("tune", loaded.dataset, loaded.arch, method)
    if out.is_dir() and any(out.iterdir()) and not (out / "study.db").is_file() and not force:
        raise UsageError(
            f"--out {str(out)!r} is not empty and holds no study",
            hint="choose another --out, or pass --force",
        )
    reporter = reporter or Reporter()
    started = time.perf_counter()
    with run_folder(out, force=True) as folder:
        given_ref = (lambda: ref) if ref is not None else None
        identity = {
            "parent": loaded.sha256,
            "forget": subject.forget.sha256,
            "heldout": heldout.forget.sha256,
        }
        steps = plan(
            lambda: subject,
            lambda: heldout,
            identity,
            method,
            fixed,
            chosen,
            retrain_cfg,
            tune_cfg,
            seed,
            folder,
            workers=workers,
            reference=given_ref,
            reporter=reporter,
        )
        again = {  # what a Ray worker plans the same steps from
            "model": str(model),
            "data": None if data is None else str(data),
            "device": device,
            "forget": (forget, forget_seed),
            "heldout": (spec, heldout_seed),
            "identity": identity,
            "method": method,
            "fixed": fixed,
            "space": chosen,
            "retrain_cfg": retrain_cfg,
            "tune_cfg": tune_cfg,
            "seed": seed,
            "out": str(folder),
            "workers": workers,
            "reference": None if reference is None else str(reference),
        }
        open_study(folder, steps[2].tags["study"])  # made here, before workers race to make it
        done = runner.run(steps, Plan(command_plan, again), reporter)
        result = summary(subject, steps, done, method, chosen, fixed, folder, started)
        result["reproduce"] = reproduce(
            model,
            heldout,
            heldout_seed,
            method,
            result["config"],
            fixed,
            seed,
            data,
            result["heldout"]["reference_model"],
        )
        snippet = folder / f"tuned-{method}.yaml"
        artifacts.atomic_write(snippet, result["recipe"].encode())
        result["snippet"] = str(snippet)
        artifacts.write_json(
            folder / method / "tune.json", result
        )  # methods tuned into one --out keep theirs
        prefix = {id(retrain_cfg): "retrain"}
        command = command_line(
            "smu tune",
            {k: v for k, v in given.items() if k not in options},
            tune_cfg,
            make_config(method, fixed),
            retrain_cfg,
            prefix=lambda config, name: prefix.get(id(config), ""),
        )
        result["manifest"] = write_manifest(folder / method, command, given, result, dev)
    return result


def reproduce(
    model: Path,
    heldout: Subject,
    forget_seed: int,
    method: str,
    config: dict[str, Any],
    fixed: dict[str, Any],
    seed: int,
    data: Any,
    reference: str,
) -> str:
    """The `smu unlearn` command that gives the held-out model and its gap to retrain again."""
    words = ["smu", "unlearn", "--model", str(model), "--forget", heldout.forget.spec, "--method", method]
    words += ["--forget-seed", str(forget_seed)]
    defaults = dataclasses.asdict(METHODS.get_spec(method).config())
    for name, value in config.items():
        if value != defaults.get(name) or name in fixed:
            words += [
                flag_of(name),
                ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value),
            ]
    words += ["--seed", str(seed)] + (["--data", str(data)] if data else [])
    return shlex.join([*words, "--reference", reference])


def heldout_forget(fs: ForgetSet, splits: Splits, seed: int) -> tuple[str, int]:
    """(spec, seed) of the draw the chosen setting is measured on: the next class for class-wise
    forgetting (``class:C`` or ``class:C:N``), the next seed for ``random:`` and a class's subset."""
    kind, _, rest = fs.spec.partition(":")
    if kind == "class":
        name, _, count = rest.partition(":")
        following = (parse_class(name, splits) + 1) % splits.info.num_classes
        return f"class:{following}" + (f":{count}" if count else ""), seed
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


def trained(
    subject: Subject,
    method: str,
    cfg: Any,
    seed: int,
    folder: Path,
    reporter: Reporter,
    on_epoch_end: Callable[[int, torch.nn.Module], None] | None = None,
) -> torch.nn.Module:
    """``method`` run on a copy of the original model (which stays as it was); the result in memory."""
    loaded = dataclasses.replace(subject.loaded, model=copy.deepcopy(subject.loaded.model))
    result = run_unlearn(
        loaded,
        subject.splits,
        subject.forget,
        method,
        cfg,
        out=folder,
        seed=seed,
        reporter=reporter,
        evaluate=False,
        command=f"smu tune: {method}",
        resume=True,
        on_epoch_end=on_epoch_end,
    )
    model = artifacts.load_model(result["model"], next(subject.loaded.model.parameters()).device).model
    model.rte_s = result["rte_s"]  # type: ignore[attr-defined]
    return model


def suggest(trial: Any, space: dict[str, Space]) -> dict[str, Any]:
    """The trial's values for every option in ``space``."""
    values: dict[str, Any] = {}
    for name, s in space.items():
        if s.integer:
            values[name] = trial.suggest_int(name, int(s.low), int(s.high), log=s.log)
        else:
            values[name] = trial.suggest_float(name, s.low, s.high, log=s.log)
    return values


def worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def requeue_lost(optuna: Any, study: Any, storage: Any) -> int:
    """Trials left RUNNING by a process of this machine that no longer exists: marked failed and queued
    again with the same values, so a killed run loses no trial. Returns how many."""
    host = socket.gethostname()
    lost = 0
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        owner_host, _, pid = str(t.user_attrs.get("worker", "")).rpartition(":")
        if owner_host != host or not pid.isdigit() or alive(int(pid)):
            continue
        storage.set_trial_user_attr(t._trial_id, "lost", True)
        storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number}, skip_if_exists=False)
        lost += 1
    return lost


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid != os.getpid()


def finished(optuna: Any, study: Any) -> int:
    """Trials that count towards ``--trials``: complete, pruned, or failed by diverging (not lost ones)."""
    states = optuna.trial.TrialState
    return sum(
        t.state in (states.COMPLETE, states.PRUNED)
        or (t.state == states.FAIL and t.user_attrs.get("diverged", False))
        for t in study.get_trials(deepcopy=False)
    )


def open_study(folder: Path, name: str) -> tuple[Any, Any]:
    """The study ``name`` in ``folder/study.db``, made if new, and its storage. Processes that start at
    once race to create the file's tables; the losers find them made and try again."""
    optuna = optuna_module()
    import sqlalchemy.exc

    path = (folder / "study.db").resolve()
    for attempt in range(5):
        try:
            storage = optuna.storages.RDBStorage(f"sqlite:///{path}")
            study = optuna.create_study(
                storage=storage, study_name=name, direction="minimize", load_if_exists=True
            )
            return study, storage
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError):
            if attempt < 4:
                time.sleep(0.2 * (attempt + 1))
        except (sqlalchemy.exc.SQLAlchemyError, RuntimeError, ValueError):  # not a study smu can read
            break
    raise UsageError(
        f"{str(path)!r} is not an Optuna study database smu can open",
        hint="move it away, or tune into another --out",
    )


def run_study(
    subject: Subject,
    method: str,
    fixed: dict[str, Any],
    space: dict[str, Space],
    reference: dict[str, Any],
    tune: TuneConfig,
    seed: int,
    folder: Path,
    name: str,
    reporter: Reporter,
    worker_index: int = 0,
) -> Any:
    """Run trials until the study ``name`` in ``folder/study.db`` has ``tune.trials`` finished ones (or
    the timeout); return it. Several workers may run at once, in this or other processes."""
    optuna = optuna_module()
    study, storage = open_study(folder, name)
    requeued = requeue_lost(optuna, study, storage)
    if requeued:
        reporter.note(f"{requeued} trial(s) cut short by a killed run: queued again with the same values")
    # Seeded by how far the study has come and by the worker: a continued study does not repeat its
    # first draws, and workers side by side do not draw alike.
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials) + 1_000_003 * worker_index)
    study.pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
        if tune.prune
        else optuna.pruners.NopPruner()
    )

    def objective(trial: Any) -> float:
        trial.set_user_attr("worker", worker())
        values = suggest(trial, space)
        cfg = make_config(method, fixed | values)
        started, epochs = time.perf_counter(), [0]

        def score(model: torch.nn.Module) -> tuple[float, dict[str, Any]]:
            metrics = unlearning_metrics(model, subject.splits, subject.forget, test=False)
            return gap(metrics, reference["tuning"], TUNING_METRICS)["avg"], metrics

        def after_epoch(epoch: int, model: torch.nn.Module) -> None:
            if not tune.prune:
                return
            epochs[0] += 1
            value, _ = score(model)
            trial.report(value, epochs[0])
            if trial.should_prune():
                trial.set_user_attr("seconds", time.perf_counter() - started)
                raise optuna.TrialPruned(f"gap {value:.2f} after epoch {epochs[0]}")

        where = folder / "trials" / f"trial-{trial.number}"
        reporter.note(f"trial {trial.number}: " + ", ".join(f"{k}={v:.4g}" for k, v in values.items()))
        try:
            model = trained(subject, method, cfg, seed, where, reporter, after_epoch)
        except DivergedError as e:
            trial.set_user_attr("diverged", True)
            trial.set_user_attr("error", e.message)
            trial.set_user_attr("seconds", time.perf_counter() - started)
            raise
        finally:
            for name in (
                "model.safetensors",
                "mask.safetensors",
                "forget.safetensors",
                "checkpoint.safetensors",
            ):
                (where / name).unlink(missing_ok=True)
        value, metrics = score(model)
        trial.set_user_attr("metrics", {k: metrics[k] for k in TUNING_METRICS})
        trial.set_user_attr("rte_s", model.rte_s)  # type: ignore[attr-defined]
        trial.set_user_attr("seconds", time.perf_counter() - started)
        return value

    began = time.perf_counter()
    while finished(optuna, study) < tune.trials:
        if tune.timeout is not None and time.perf_counter() - began > tune.timeout:
            reporter.note(f"--timeout {tune.timeout:g} s reached: no new trial started")
            break
        study.optimize(objective, n_trials=1, catch=(DivergedError,))
    return study


def trial_rows(optuna: Any, study: Any) -> list[dict[str, Any]]:
    """Every trial as plain data (number, state, value, params, seconds, and why it stopped)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        state = t.state.name.lower()
        if t.user_attrs.get("diverged"):
            state = "diverged"
        elif t.user_attrs.get("lost"):
            state = "lost (rerun)"
        rows.append(
            {
                "number": t.number,
                "state": state,
                "value": t.value,
                "params": dict(t.params),
                "seconds": t.user_attrs.get("seconds"),
                "metrics": t.user_attrs.get("metrics"),
                "error": t.user_attrs.get("error"),
            }
        )
    return rows


def importance(optuna: Any, study: Any) -> dict[str, float] | None:
    """Optuna's importance of each hyper-parameter (fANOVA), where it can compute one: at least two
    searched options and a few complete trials."""
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < 4 or len(study.best_trial.params) < 2:
        return None
    try:
        return dict(optuna.importance.get_param_importances(study))
    except (RuntimeError, ValueError):
        return None


def study_name(method: str, fixed: dict[str, Any], space: dict[str, Space], reference: str, seed: int) -> str:
    """The study's name in ``study.db``: everything that decides its trials (``reference``: the key of
    the step that measured the reference), so changed settings start another study beside it."""
    key = digest(
        {
            "method": method,
            "fixed": fixed,
            "space": {n: dataclasses.asdict(s) for n, s in space.items()},
            "reference": reference,
            "seed": seed,
        }
    )
    return f"{method}-{key[:16]}"


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


def summary(
    subject: Subject,
    steps: list[Step],
    done: list[tuple[Step, dict[str, Any], bool]],
    method: str,
    space: dict[str, Space],
    fixed: dict[str, Any],
    folder: Path,
    started: float,
) -> dict[str, Any]:
    """What ``smu tune`` reports, from its steps' results."""
    results = {step.key: result for step, result, _ in done}
    tuning_ref, heldout_ref, last = results[steps[0].key], results[steps[1].key], results[steps[-1].key]
    rows = last["trials"]
    return {
        "method": method,
        "space": {n: str(s) for n, s in space.items()},
        "fixed": fixed,
        "counts": {
            state: sum(r["state"] == state for r in rows) for state in sorted({r["state"] for r in rows})
        },
        **{k: last[k] for k in ("trials", "best", "config", "heldout", "importance", "recipe", "study_name")},
        "tuning": {
            "forget": subject.forget.summary(),
            "reference": {k: tuning_ref["tuning"][k] for k in TUNING_METRICS},
            "best_metrics": last["best_metrics"],
            "avg_gap": last["best"]["tuning_gap"],
        },
        "cost": {
            "tuning_s": sum(r["seconds"] or 0.0 for r in rows),
            "references_s": tuning_ref["seconds"] + heldout_ref["seconds"],
            "rte_s": last["heldout"]["rte_s"],
            "wall_s": time.perf_counter() - started,
        },
        "steps": {"total": len(done), "ran": sum(not skipped for _, _, skipped in done)},
        "study": str(folder / "study.db"),
        "out": str(folder),
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


def slug(fs: ForgetSet) -> str:
    return fs.spec.replace(":", "-").replace("/", "_").replace("%", "pct") + f"-{fs.sha256[:8]}"


def recipe_snippet(method: str, values: dict[str, Any]) -> str:
    """The tuned values as a recipe's ``unlearn:`` entry (YAML), for ``smu run``."""
    import yaml

    plain = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
    return yaml.safe_dump({"unlearn": {method: plain}}, sort_keys=False, default_flow_style=None)


def load_subject(loaded: LoadedModel, splits: Splits, spec: str, seed: int) -> Subject:
    return Subject(loaded, splits, resolve_forget(spec, splits, seed))
