"""``--log tensorboard``: TensorBoard event files, under ``tensorboard/`` in the job's folder (or
``--log-dir``), one sub-folder per step laid out as the step folders are, so ``tensorboard --logdir
runs/x/tensorboard`` lists a recipe's steps as its runs. Curves are scalars named ``PHASE/NAME`` at
the epoch (``ga/loss``), the final metrics ``final/NAME`` at step 0; the parameters and tags are one
text table. TensorBoard keeps no files, so artifacts are not sent.

TensorBoard is the ``smu[tensorboard]`` extra (torch's ``SummaryWriter`` needs it), imported here
only, when a run logs to it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from smu.loggers.base import Logger, RunInfo, Settings, Tracker


def events_folder(settings: Settings, run: RunInfo) -> Path:
    base = Path(settings.log_dir) if settings.log_dir else run.root / "tensorboard"
    return base / run.relative


class TensorBoardLogger(Logger):
    def __init__(self, settings: Settings, run: RunInfo, resume_id: str | None):
        from torch.utils.tensorboard import SummaryWriter

        folder = events_folder(settings, run)
        self.id = str(folder)
        # Events reach the file at smu's flushes only (not every 10 events or 10 s): what a killed run
        # resends on resume is exactly what never reached the file.
        self.writer = SummaryWriter(log_dir=str(folder), max_queue=1_000_000, flush_secs=1_000_000)
        if resume_id is None:
            rows = [*run.params.items(), *((f"tag.{k}", v) for k, v in run.tags.items())]
            table = "| name | value |\n|---|---|\n" + "\n".join(f"| {k} | {_cell(v)} |" for k, v in rows)
            self.writer.add_text("params", table, 0)

    def series(self, label: str, step: int, values: Mapping[str, float]) -> None:
        for name, value in values.items():
            self.writer.add_scalar(f"{label}/{name}", value, step)

    def flush(self) -> None:
        self.writer.flush()

    def final(self, values: Mapping[str, float]) -> None:
        for name, value in values.items():
            self.writer.add_scalar(f"final/{name}", value, 0)
        self.writer.flush()

    def histogram(self, name: str, values: Sequence[float]) -> None:
        import numpy as np

        if values:
            self.writer.add_histogram(name, np.asarray(values), 0)
            self.writer.flush()

    def close(self, ok: bool) -> None:
        self.writer.close()


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


TRACKER = Tracker(
    "tensorboard",
    "TensorBoard event files under the run folder's tensorboard/ (or --log-dir), a sub-folder per step",
    TensorBoardLogger,
    needs="tensorboard",
    install="pip install 'smu[tensorboard]'",
)
