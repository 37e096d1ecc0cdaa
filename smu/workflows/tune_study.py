"""The Optuna study behind `smu tune`: its settings, its storage, its sampler and pruner, and the trial,
a method trained with the sampled values and scored by its Avg. Gap to retrain without the test split.

- **Storage.** Trials live in ``study.db`` in the run folder (SQLite), one study per setting that
  decides them (:func:`study_name`); a trial cut short by a killed process is queued again with the
  same values, and several workers, in this or other processes, may add trials to one study at once.
- **Sampler and pruner.** TPE, seeded apart per continuation and per worker; the median pruner stops a
  trial whose gap after an epoch is worse than earlier trials'.
- **Scoring.** :data:`smu.evaluation.TUNING_METRICS` against the reference measured on the same draw.

Optuna is an optional extra (``pip install 'smu[tune]'``): it is imported here, lazily, by
:func:`optuna_module`; the other tune modules are handed it.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from smu import loggers
from smu.core.errors import DivergedError, UsageError
from smu.core.options import Checked, Space, param
from smu.evaluation import TUNING_METRICS, gap, unlearning_metrics
from smu.execution.engine import Reporter
from smu.io import artifacts
from smu.io.files import digest
from smu.methods.unlearning import make_config
from smu.workflows.subject import Subject
from smu.workflows.unlearn import run_unlearn

INSTALL = "pip install 'smu[tune]'"


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
        study.optimize(objective, n_trials=1, catch=(DivergedError,), callbacks=[track_trial])
    return study


def track_trial(study: Any, trial: Any) -> None:
    """A finished trial as one point of the study's curves in the experiment trackers: its gap (the
    last one reported, for a pruned trial) and how it ended."""
    state = trial.state.name.lower()
    if state == "fail" and trial.user_attrs.get("diverged"):
        state = "diverged"
    value = trial.value
    if value is None and trial.intermediate_values:
        value = trial.intermediate_values[max(trial.intermediate_values)]
    ended = {s: float(state == s) for s in ("complete", "pruned", "diverged")}
    loggers.series("trials", trial.number, ({"gap": value} if value is not None else {}) | ended)


def trained(
    subject: Subject,
    method: str,
    cfg: Any,
    seed: int,
    folder: Path,
    reporter: Reporter,
    on_epoch_end: Callable[[int, torch.nn.Module], None] | None = None,
) -> torch.nn.Module:
    """``method`` run on a copy of the original model (which stays as it was); the result in memory.
    A trial trains this way, and so do the references and the chosen setting's held-out run."""
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


def trial_rows(optuna: Any, study: Any) -> list[dict[str, Any]]:
    """Every trial as plain data (number, state, value, params, seconds, and why it stopped), read from
    what :func:`run_study`'s objective recorded on it."""
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
