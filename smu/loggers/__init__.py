"""Experiment trackers: what a run computes, sent where researchers already watch it (TensorBoard,
MLflow, Weights & Biases, or CSV files), live and from finished run folders (``smu log``).

A run is a command's run, a recipe, an audit or a study; the steps of the last three are its child
runs (MLflow nested runs, a W&B group, TensorBoard and CSV sub-folders), opened by whichever process
runs the step (:func:`step_run`; ``under`` carries the parent to a worker). While a run is open the
engine's epochs reach it through :func:`series`, with no argument passed down the stack, and only
rank 0 of torchrun logs. Each tracker's ids and the last epoch of each curve it received are kept in
``tracking.json`` in the run's folder, so a resumed run continues the same tracker runs and sends no
epoch twice (a resumed run repeats the interrupted epochs bit for bit, so what was sent stands).

A tracker that fails (a server out of reach, a full disk, a bad token) is one warning naming it;
the run goes on without it and writes every file it would have written.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import math
import os
import queue
import shlex
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import asdict
from pathlib import Path
from typing import Any

from smu.core.errors import SmuWarning, UsageError
from smu.core.registry import Registry, lookup
from smu.execution import distributed
from smu.loggers import csv_logger, mlflow_logger, tensorboard_logger, wandb_logger
from smu.loggers.base import Logger, RunInfo, Settings, Tracker

__all__ = [
    *("JOURNAL", "TRACKERS", "Logger", "Run", "RunInfo", "Settings", "Tracker", "TrackerWarning"),
    *(
        "numbers",
        "params_of",
        "parent_handle",
        "series",
        "settings",
        "step_run",
        "tags_of",
        "tracked",
        "under",
    ),
]

TRACKERS: Registry[Tracker] = Registry(
    "smu.loggers",
    Tracker,
    "tracker",
    [csv_logger.TRACKER, tensorboard_logger.TRACKER, mlflow_logger.TRACKER, wandb_logger.TRACKER],
    lambda tracker, registry: [] if callable(tracker.open) else ["its open is not callable"],
)
"""name -> tracker: the four built in, then the plug-ins of entry-point group ``smu.loggers``."""

FLUSH_S = 2.0
"""Curves reach the trackers at most this often (and before anything else a run sends): an MLflow store
takes a database transaction per write, 4.5% of the CPU of a quickstart epoch if written every epoch
(docs/PERFORMANCE.md §14)."""

CLOSE_WAIT_S = 300.0
"""How long the end of a run waits for its trackers to take what was sent (MLflow's own retries and
timeouts end sooner); past it, smu goes on and says so."""

JOURNAL = "tracking.json"
"""In a run's folder: its id in each tracker and the last step of each curve sent (resumes without
duplicates)."""


class TrackerWarning(SmuWarning):
    """A tracker failed; the run goes on without it."""


def settings(
    log: Sequence[str] = (),
    log_dir: str | Path | None = None,
    tracking_uri: str | None = None,
    wandb_project: str | None = None,
    wandb_entity: str | None = None,
    log_models: bool = False,
) -> Settings:
    """The tracking a command's options ask for, checked before anything runs: every kind is known and
    its library installed (a one-line usage error otherwise)."""
    kinds = tuple(dict.fromkeys([log] if isinstance(log, str) else log))  # repeated kinds log once
    for kind in kinds:
        tracker = lookup(TRACKERS, kind, "tracker")
        if tracker.needs and importlib.util.find_spec(tracker.needs) is None:
            raise UsageError(
                f"--log {kind} needs {tracker.needs}, which is not installed", hint=tracker.install
            )
    given = {"--log-dir": log_dir, "--tracking-uri": tracking_uri, "--wandb-project": wandb_project}
    for flag, value in given.items():
        if value is not None and not kinds:
            raise UsageError(
                f"{flag} is given without --log", hint="add --log KIND (tensorboard, mlflow, wandb, csv)"
            )
    return Settings(
        kinds,
        str(log_dir) if log_dir is not None else None,
        tracking_uri,
        wandb_project,
        wandb_entity,
        log_models,
    )


class Run:
    """One run in every tracker asked for. Trackers are opened and fed by a thread of their own, so an
    epoch pays for a queue put, not a server's or a database's round trip; curves reach the trackers in
    batches (:data:`FLUSH_S`), and :meth:`close` waits for everything sent to arrive. The first failure
    of a tracker is one warning, shown by the caller's thread, and the end of that tracker for the job.

    The journal (``tracking.json``) keeps the trackers' run ids, the last step of each curve they took,
    and the points kept for the next flush. A run resumed after a kill sends those first, then none of
    the steps it repeats: no epoch is lost or sent twice (unless the process dies in the instant between
    the trackers taking a flush and the journal saying so)."""

    def __init__(self, settings: Settings, info: RunInfo, fresh: bool = False):
        self.settings, self.info, self.fresh = settings, info, fresh
        self.journal = info.folder / JOURNAL
        saved = {} if fresh else _read_journal(self.journal)
        self.ids: dict[str, str] = dict(saved.get("ids", {}))
        self._confirmed: dict[str, int] = dict(saved.get("logged", {}))
        """The last step of each curve the trackers confirmed (the tracking thread's)."""
        self._unconfirmed: list[list[Any]] = []
        """[label, step, values] given to the trackers since their last flush (the tracking thread's)."""
        self._final_sent: str | None = saved.get("final")
        self._final = self._final_sent
        """A digest of the final metrics sent (None: none yet), so that a continued run sends them once."""
        self._work: queue.SimpleQueue[tuple[str, Any] | None] = queue.SimpleQueue()
        self._given = dict(self._confirmed)
        """The last step of each curve this run has been given, here or before a resume."""
        for label, step, values in saved.get("pending", []):
            self._queue_point(label, step, values)
        self._here: dict[str, int] = {}
        """The last step of each curve this process was given (a repeated phase name gets a suffix)."""
        self.loggers: dict[str, Logger] = {}
        self._warnings: list[str] = []
        self._opened = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"smu-tracking: {info.name}", daemon=True)
        self._thread.start()

    def series(self, label: str, step: int, values: Mapping[str, float]) -> None:
        """One point per curve of phase ``label`` at ``step``. A step the run this one resumes already
        sent is not sent again (the resumed epochs repeat it bit for bit); a later phase of this run
        under a name used before (a second model unlearned with the same method) is ``NAME-2``."""
        self._warn()
        label = label_of(label)
        if step <= self._here.get(label, -math.inf):
            n = 2
            while step <= self._here.get(f"{label}-{n}", -math.inf):
                n += 1
            label = f"{label}-{n}"
        self._here[label] = step
        if step > self._given.get(label, -math.inf):
            self._queue_point(label, step, {name_of(k): float(v) for k, v in values.items() if _number(v)})

    def final(self, values: Mapping[str, float]) -> None:
        """The run's results; the same results a continued run (a recipe run again with every step done)
        sent before are not sent again."""
        self._warn()
        values = {name_of(k): float(v) for k, v in values.items() if _number(v)}
        digest = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]
        if digest != self._final:
            self._final = digest
            self._work.put(("final", (digest, values)))

    def histogram(self, name: str, values: Sequence[float]) -> None:
        self._warn()
        finite = [float(v) for v in values if _number(v)]
        self._work.put(("log", lambda logger: logger.histogram(name_of(name), finite)))

    def artifacts(self, paths: Sequence[Path | str]) -> None:
        files = [Path(p) for p in paths if Path(p).is_file()]
        self._work.put(("send files", lambda logger: logger.artifacts(files, self.info.folder)))

    def close(self, ok: bool) -> None:
        """Finish the run in every tracker, once all that was sent has arrived."""
        self._work.put(("finish", lambda logger: logger.close(ok)))
        self._work.put(None)
        self._thread.join(CLOSE_WAIT_S)
        if self._thread.is_alive():
            late = ", ".join(self.loggers)
            self._warnings.append(f"tracker {late} still sending after {CLOSE_WAIT_S:.0f} s; smu goes on")
        self._warn()

    def handle(self) -> dict[str, Any]:
        """What a child run needs in another process (plain data): the settings, the job's folder and
        this run's ids in the trackers that work."""
        self._opened.wait()
        ids = {k: self.ids[k] for k in self.loggers}
        return {
            "settings": asdict(self.settings),
            "root": str(self.info.root),
            "ids": ids,
            "group": self.info.group,
        }

    def tracking(self) -> bool:
        """Whether any tracker took the run (waits until they are open)."""
        self._opened.wait()
        return bool(self.loggers)

    def _queue_point(self, label: str, step: int, values: dict[str, float]) -> None:
        self._given[label] = max(step, self._given.get(label, step))
        self._work.put(("curve", (label, step, values)))

    def _serve(self) -> None:
        """The tracking thread: open the trackers, then hand them what the run sends, in order, flushing
        the curves at most every :data:`FLUSH_S` and before anything else."""
        try:
            for kind in self.settings.kinds:
                if (kind, self.info.group) in _FAILED or (self.info.parent and kind not in self.info.parent):
                    continue  # failed before in this job, or the parent could not open it
                tracker, resume_id = TRACKERS[kind], self.ids.get(kind)
                opened = self._call(
                    kind, "start", lambda _, t=tracker, r=resume_id: t.open(self.settings, self.info, r)
                )
                if opened is not None:
                    self.loggers[kind] = opened
                    self.ids[kind] = opened.id
            self._save()
        finally:
            self._opened.set()
        flushed = time.monotonic()
        while True:
            try:
                due = max(0.0, flushed + FLUSH_S - time.monotonic()) if self._unconfirmed else None
                item = self._work.get(timeout=due)
            except queue.Empty:
                item = ("flush", None)
            if self._unconfirmed and (item is None or item[0] != "curve"):
                self._flush()
                flushed = time.monotonic()
            if item is None:
                return
            what, call = item
            if what == "curve":  # kept until the next flush, and in the journal meanwhile
                self._unconfirmed.append(list(call))
                self._save()
            elif what == "final":
                digest, values = call
                self._each("log", lambda logger, final=values: logger.final(final))
                self._final_sent = digest
                self._save()
            elif what != "flush":
                self._each(what, call)

    def _flush(self) -> None:
        """Hand the kept points to every tracker at once, then mark them sent. A tracker gets a point only
        here, so a process killed before has sent it nowhere, and a resume sends it once."""
        for point in self._unconfirmed:
            self._each("log", lambda logger, point=point: logger.series(*point))
        self._each("log", lambda logger: logger.flush())
        for label, step, _ in self._unconfirmed:
            self._confirmed[label] = max(step, self._confirmed.get(label, step))
        self._unconfirmed = []
        self._save()

    def _each(self, what: str, call: Any) -> None:
        for kind in list(self.loggers):
            self._call(kind, what, call)

    def _call(self, kind: str, what: str, call: Any) -> Any:
        try:
            return call(self.loggers.get(kind))
        except Exception as e:  # a tracker's failure never stops the run
            self.loggers.pop(kind, None)
            if (kind, self.info.group) not in _FAILED:
                _FAILED.add((kind, self.info.group))
                first = (str(e).strip().splitlines() or [""])[0][:200]
                why = f"{type(e).__name__}: {first}"
                self._warnings.append(f"tracker {kind} failed to {what} ({why}); the run goes on without it")
            return None

    def _warn(self) -> None:
        while self._warnings:
            warnings.warn(self._warnings.pop(0), TrackerWarning, stacklevel=3)

    def _save(self) -> None:
        if self.loggers and not self.fresh:
            journal = {"ids": self.ids, "logged": self._confirmed, "pending": self._unconfirmed}
            _write_journal(self.journal, journal | {"final": self._final_sent})


_FAILED: set[tuple[str, str]] = set()
"""(tracker, job) pairs that failed in this process: warned once, not tried again in that job."""

_RUN: ContextVar[Run | dict[str, Any] | None] = ContextVar("smu_tracking_run", default=None)
"""The open run (or, in a worker, the handle of the job's run) that epochs and steps report to."""


@contextlib.contextmanager
def tracked(
    settings: Settings | None,
    *,
    name: str,
    folder: Path,
    params: Mapping[str, str],
    tags: Mapping[str, str],
    root: Path | None = None,
    parent: Mapping[str, Any] | None = None,
    fresh: bool = False,
) -> Iterator[Run | None]:
    """The run ``name`` (writing into ``folder``) in every tracker of ``settings``, open while the block
    runs and the one :func:`series` reports to; finished when the block ends, or failed when it raises.
    A run whose folder holds a journal continues the tracker runs it names; a ``fresh`` one (``smu log``
    sending a finished folder) neither reads nor writes one. None without trackers, or on a rank of
    torchrun other than 0."""
    if settings is None or not settings.kinds or not distributed.is_main():
        yield None
        return
    folder = Path(folder)
    ids = dict(parent["ids"]) if parent else {}
    # A job's group is its name and where it lives: the same for a resumed job, another for another job.
    where = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:6]
    group = parent["group"] if parent else f"{name}-{where}"
    info = RunInfo(name, folder, Path(root or folder), dict(params), dict(tags), ids, group)
    if parent is None:  # a new job tries every tracker again
        _FAILED.difference_update({f for f in _FAILED if f[1] == group})
    run = Run(settings, info, fresh)
    token = _RUN.set(run)
    ok = False
    try:
        yield run
        ok = True
    finally:
        _RUN.reset(token)
        run.close(ok)


def series(label: str, step: int, values: Mapping[str, float]) -> None:
    """Send one point per curve to the open run, if any (the engine calls this after every epoch)."""
    run = _RUN.get()
    if isinstance(run, Run):
        run.series(label, step, values)


def parent_handle() -> dict[str, Any] | None:
    """The open job's handle, for a plan that runs its steps in other processes (None: nothing tracked)."""
    run = _RUN.get()
    if isinstance(run, Run):
        return run.handle() if run.tracking() else None
    return run


@contextlib.contextmanager
def under(handle: Mapping[str, Any] | None) -> Iterator[None]:
    """Make the job whose :meth:`Run.handle` this is the parent of the steps run here (a worker)."""
    token = _RUN.set(dict(handle) if handle else None)
    try:
        yield
    finally:
        _RUN.reset(token)


@contextlib.contextmanager
def step_run(title: str, folder: Path, tags: Mapping[str, Any], fresh: bool = False) -> Iterator[Run | None]:
    """A step of the open job as a child run (None when the job is not tracked)."""
    handle = parent_handle()
    if not handle or not handle.get("ids"):
        yield None
        return
    shown = tags_of(tags)
    with tracked(
        Settings(**{k: tuple(v) if k == "kinds" else v for k, v in handle["settings"].items()}),
        name=title,
        folder=folder,
        params=shown,
        tags=shown,
        root=Path(handle["root"]),
        parent=handle,
        fresh=fresh,
    ) as run:
        yield run


def tags_of(tags: Mapping[str, Any]) -> dict[str, str]:
    """A step's tags as trackers take them: strings, None left out."""
    return {k: str(v) for k, v in tags.items() if v is not None}


def params_of(command: str) -> dict[str, str]:
    """The parameters of a run from its provenance string (``smu unlearn --method ga --lr 0.001 --aug``):
    ``command``, the positional arguments, then each flag's value (``true`` for a bare flag, ``false``
    for ``--no-X``), as the string has them."""
    try:
        words = shlex.split(command)
    except ValueError:  # a string edited out of shape (an unclosed quote): its words as they stand
        words = command.split()
    params = {"command": " ".join(words[:2])}
    rest, positional = words[2:], 0
    i = 0
    while i < len(rest):
        word = rest[i]
        if not word.startswith("--"):
            params[f"argument.{positional}"] = word
            positional += 1
        elif i + 1 < len(rest) and not rest[i + 1].startswith("--"):
            params[word[2:]] = rest[i + 1]
            i += 1
        elif word.startswith("--no-"):
            params[word[5:]] = "false"
        else:
            params[word[2:]] = "true"
        i += 1
    return params


SKIPPED = frozenset({"config", "estimate", "per_layer", "versions", "threads", "options", "tuning"})
"""Result keys that hold settings or bookkeeping, not results: left out of a run's final metrics."""


def numbers(result: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """A command's result (``--json``, ``step.json``) as the final metrics of its run: every number in
    it, named by its path (``metrics/ua``, ``gap/avg``, ``rounds/2/test_acc``), settings left out."""
    found: dict[str, float] = {}
    for key, value in result.items():
        if key in SKIPPED:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            found |= numbers(value, f"{name}/")
        elif isinstance(value, list) and all(isinstance(v, Mapping) for v in value):
            for i, item in enumerate(value, 1):
                index = item.get("round", item.get("number", i))
                found |= numbers(
                    {k: v for k, v in item.items() if k not in ("round", "number")}, f"{name}/{index}/"
                )
        elif _number(value):
            found[name] = float(value)
    return found


def name_of(text: str) -> str:
    """A metric name every tracker takes: letters, digits and ``_-./`` kept, anything else ``-``
    (``class:3/ga/ua`` becomes ``class-3/ga/ua``)."""
    return "".join(c if c.isalnum() or c in "_-./" else "-" for c in text.strip())


def label_of(text: str) -> str:
    """A training phase as the first part of its curves' names (``round 2/5`` → ``round-2-5``)."""
    return name_of(text).replace("/", "-")


def _number(value: Any) -> bool:
    """A finite number a tracker can take (a JSON integer too large for a float is none)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _read_journal(path: Path) -> dict[str, Any]:
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}


def _write_journal(path: Path, data: dict[str, Any]) -> None:
    """Written at every epoch, so without an fsync (a journal lost in a crash resends at most an epoch)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, sort_keys=True))
    os.replace(tmp, path)
