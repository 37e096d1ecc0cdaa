"""``--log wandb``: Weights & Biases runs, a job's steps in one group with the job's own run.

The project is ``--wandb-project`` (else ``WANDB_PROJECT``, else ``smu``), the entity
``--wandb-entity``; W&B's own settings apply as usual: ``WANDB_MODE=offline`` writes the runs under
``wandb/`` in the job's folder (or ``--log-dir``) for a later ``wandb sync``, and online runs need
``wandb login`` or ``WANDB_API_KEY``. Each phase's curves are plotted against its own epoch
(``ga/epoch``), so a resumed run, or IMP's rounds, draw where they belong; the final metrics are the
run's summary; files are an artifact of the run (W&B stages a copy under ``WANDB_DATA_DIR``).

W&B is the ``smu[wandb]`` extra, imported here only, when a run logs to it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from smu.loggers.base import Logger, RunInfo, Settings, Tracker, below


class WandbLogger(Logger):
    def __init__(self, settings: Settings, run: RunInfo, resume_id: str | None):
        import wandb

        folder = Path(settings.log_dir) if settings.log_dir else run.root
        folder.mkdir(parents=True, exist_ok=True)
        tags = [f"{k}:{v}"[:64] for k, v in run.tags.items()]
        self.run: Any = wandb.init(
            project=settings.wandb_project or os.environ.get("WANDB_PROJECT") or "smu",
            entity=settings.wandb_entity,
            name=run.name,
            group=run.group or None,
            job_type=run.tags.get("command") or run.tags.get("kind"),
            config=dict(run.params),
            tags=tags,
            dir=str(folder),
            id=resume_id,
            resume="allow" if resume_id else None,
            reinit="create_new",  # a job's steps are runs of their own, one after another in a process
            settings=wandb.Settings(silent=True, console="off"),
        )
        self.id = self.run.id
        self.phases: set[str] = set()

    def series(self, label: str, step: int, values: Mapping[str, float]) -> None:
        if label not in self.phases:
            self.run.define_metric(f"{label}/*", step_metric=f"{label}/epoch")
            self.phases.add(label)
        self.run.log({f"{label}/epoch": step, **{f"{label}/{k}": v for k, v in values.items()}})

    def final(self, values: Mapping[str, float]) -> None:
        self.run.summary.update(dict(values))

    def histogram(self, name: str, values: Sequence[float]) -> None:
        import wandb

        if values:
            self.run.summary[name] = wandb.Histogram(values)

    def artifacts(self, paths: Sequence[Path], folder: Path) -> None:
        import wandb

        if not paths:
            return
        files = wandb.Artifact(f"files-{self.id}", type="smu-run")
        for path in paths:
            files.add_file(str(path), name=below(path, folder).as_posix())
        self.run.log_artifact(files)

    def close(self, ok: bool) -> None:
        self.run.finish(exit_code=0 if ok else 1)


TRACKER = Tracker(
    "wandb",
    "Weights & Biases: --wandb-project/--wandb-entity; WANDB_MODE=offline writes runs to sync later",
    WandbLogger,
    needs="wandb",
    install="pip install 'smu[wandb]'",
)
