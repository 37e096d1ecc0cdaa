"""What a tracker is to smu: a declaration (:class:`Tracker`) and the run it opens (:class:`Logger`).

A tracker module (one per integration: ``csv_logger``, ``tensorboard_logger``, ``mlflow_logger``,
``wandb_logger``, or a plug-in's, through the entry-point group ``smu.loggers``) ends with a
``TRACKER`` declaration whose ``open`` imports the tracker's library, so smu imports it only when a
user asks for that tracker. Everything a logger is handed is plain data: numbers, strings, paths.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Where a run is tracked, as the command's options say: ``--log KIND`` (repeatable) and the options
    of each kind. Plain data: it travels to the workers of ``--executor local`` and ``ray``."""

    kinds: tuple[str, ...] = ()
    log_dir: str | None = None
    """TensorBoard's event files and the CSV files go here, a sub-folder per run (default: the run folder)."""
    tracking_uri: str | None = None
    """MLflow's store or server (default: ``MLFLOW_TRACKING_URI``, else SQLite beside the run folder)."""
    wandb_project: str | None = None
    wandb_entity: str | None = None
    log_models: bool = False
    """Send model files as artifacts too (they can be large)."""


@dataclass(frozen=True)
class RunInfo:
    """One run as the trackers see it: a command's run, a recipe, or one step of a recipe, audit or study."""

    name: str
    """What the run table shows: the run folder's name, or a step's title."""
    folder: Path
    """The folder smu writes this run's files into."""
    root: Path
    """The folder of the whole job (the recipe's, the audit's); ``folder`` itself for a single command.
    Trackers that write files lay them out below it the way the run folders are laid out."""
    params: Mapping[str, str]
    tags: Mapping[str, str]
    parent: Mapping[str, str] = field(default_factory=dict)
    """The parent run's id in each tracker (empty for a top-level run)."""
    group: str = ""
    """The top-level run's name and id, shared by its children (a W&B group)."""

    @property
    def relative(self) -> str:
        """Where this run sits under ``root`` (``""`` for the top): TensorBoard's and CSV's sub-folders."""
        try:
            return self.folder.resolve().relative_to(self.root.resolve()).as_posix().strip(".")
        except ValueError:  # a step shared from another job's folder
            return self.folder.name


class Logger:
    """One run in one tracker. Every method may raise: smu warns once, drops the tracker for the rest of
    the run, and goes on (a tracker never costs data)."""

    id: str = ""
    """Names the run in its tracker, kept in the run folder so that a resumed run continues it."""

    def series(self, label: str, step: int, values: Mapping[str, float]) -> None:
        """One point of each of ``values``' curves: an epoch of training phase ``label`` (``ga``,
        ``dense``, ``round-2``), an IMP round, a study's trial."""

    def flush(self) -> None:
        """Make the points ``series`` was just given durable (write the batch, flush the file): smu hands
        a tracker its points in batches, at most every couple of seconds, each followed by ``flush``, and
        counts them sent once it returns."""

    def final(self, values: Mapping[str, float]) -> None:
        """The run's results: UA, RA, TA, MIA-Efficacy, RTE, gaps, accuracies, an audit's scores."""

    def histogram(self, name: str, values: Sequence[float]) -> None:
        """A distribution (an audit's per-example ε), where the tracker draws one; the counts per bin
        reach every tracker as final metrics too."""

    def artifacts(self, paths: Sequence[Path], folder: Path) -> None:
        """Files the run wrote (``manifest.json``, ``report.md``, figures), by their path under ``folder``."""

    def close(self, ok: bool) -> None:
        """The run ended: finished (``ok``), or failed."""


@dataclass(frozen=True)
class Tracker:
    """A tracker smu can log to, by the name ``--log`` takes."""

    name: str
    summary: str
    open: Callable[[Settings, RunInfo, str | None], Logger]
    """``open(settings, run, resume_id)``: start ``run``, or continue the one called ``resume_id``."""
    needs: str | None = None
    """The module the tracker imports (None: nothing beyond smu), checked before a command starts."""
    install: str = ""
    """How to get it: ``pip install 'smu[mlflow]'``."""


def below(path: Path, folder: Path) -> Path:
    """``path`` relative to ``folder`` (its name alone when it lies elsewhere): where a tracker keeps it."""
    try:
        return path.resolve().relative_to(folder.resolve())
    except ValueError:
        return Path(path.name)
