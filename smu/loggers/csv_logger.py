"""``--log csv``: plain CSV files, no dependency. Each run gets ``params.csv`` (name, value: the
parameters, then the tags as ``tag.NAME``) and ``metrics.csv`` (step, name, value; the final metrics
with an empty step), in the run's own folder, or under ``--log-dir`` laid out as the run folders are."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from smu.loggers.base import Logger, RunInfo, Settings, Tracker, below


class CsvLogger(Logger):
    def __init__(self, settings: Settings, run: RunInfo, resume_id: str | None):
        self.folder = Path(settings.log_dir) / run.relative if settings.log_dir else run.folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.id = str(self.folder)
        self.metrics = self.folder / "metrics.csv"
        self.rows: list[tuple[object, ...]] = []
        rows = [("name", "value"), *run.params.items(), *((f"tag.{k}", v) for k, v in run.tags.items())]
        _write(self.folder / "params.csv", rows, "w")
        if resume_id is None or not self.metrics.is_file():
            _write(self.metrics, [("step", "name", "value")], "w")

    def series(self, label: str, step: int, values: Mapping[str, float]) -> None:
        self.rows += [(step, f"{label}/{k}", repr(v)) for k, v in values.items()]

    def flush(self) -> None:
        _write(self.metrics, self.rows, "a")
        self.rows = []

    def final(self, values: Mapping[str, float]) -> None:
        _write(self.metrics, [("", k, repr(v)) for k, v in values.items()], "a")

    def artifacts(self, paths: Sequence[Path], folder: Path) -> None:
        if self.folder.resolve() == folder.resolve():
            return  # the files are already where the CSV files are
        for path in paths:
            target = self.folder / "files" / below(path, folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)


def _write(path: Path, rows: list[tuple[object, ...]], mode: str) -> None:
    with path.open(mode, newline="") as f:
        csv.writer(f).writerows(rows)


TRACKER = Tracker("csv", "CSV files beside the run's own (params.csv, metrics.csv); no dependency", CsvLogger)
