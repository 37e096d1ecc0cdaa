"""``--log mlflow``: runs in an MLflow tracking store, a job's steps as nested runs of the job's run.

The store is ``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else one that needs no server: an SQLite
file, ``mlflow.db``, in the folder that holds the run folder (``runs/`` for ``-o runs/x``), so the runs
made there gather in one store (``mlflow ui --backend-store-uri sqlite:///runs/mlflow.db``), with the
artifacts in ``mlartifacts/`` beside it. MLflow's own file store (``./mlruns``) is not used: MLflow
3 keeps it only in maintenance. The experiment is ``MLFLOW_EXPERIMENT_NAME``, else ``smu``.

Talking to a server, MLflow retries a failed request 7 times over minutes by default; smu asks for 2
retries and a 30-s timeout unless ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` / ``MLFLOW_HTTP_REQUEST_TIMEOUT``
say otherwise, so a server out of reach costs seconds and one warning, not a stalled run.

MLflow is the ``smu[mlflow]`` extra, imported here only, when a run logs to it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from smu.loggers.base import Logger, RunInfo, Settings, Tracker, below

EXPERIMENT = "smu"
MAX_BATCH = 100
"""Parameters per request (MLflow's limit; its metric limit is 1,000)."""


def store_uri(settings: Settings, root: Path) -> str:
    """The tracking store of a run whose job folder is ``root`` (see the module's docstring)."""
    uri = settings.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    return uri or f"sqlite:///{root.resolve().parent / 'mlflow.db'}"


class MlflowLogger(Logger):
    def __init__(self, settings: Settings, run: RunInfo, resume_id: str | None):
        from mlflow.entities import Param, RunTag

        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
        uri = store_uri(settings, run.root)
        self.client = _client(uri)
        self.pending: list[Any] = []
        if resume_id is not None and _exists(self.client, resume_id):
            self.id = resume_id
            self.client.update_run(resume_id, status="RUNNING")
            return
        tags = {**run.tags, "smu.folder": str(run.folder)}
        if run.parent.get("mlflow"):
            tags["mlflow.parentRunId"] = run.parent["mlflow"]
        created = self.client.create_run(
            _experiment(self.client, uri, run.root), run_name=run.name, tags=tags
        )
        self.id = created.info.run_id
        params = [Param(k[:250], str(v)[:6000]) for k, v in run.params.items()]
        for i in range(0, len(params), MAX_BATCH):
            self.client.log_batch(self.id, params=params[i : i + MAX_BATCH])
        if run.group:
            self.client.log_batch(self.id, tags=[RunTag("smu.job", run.group)])

    def series(self, label: str, step: int, values: Mapping[str, float]) -> None:
        self._keep({f"{label}/{k}": v for k, v in values.items()}, step)

    def flush(self) -> None:
        """The curves kept back, in one request (a transaction on an SQLite store) per 1,000 points."""
        for i in range(0, len(self.pending), 1000):
            self.client.log_batch(self.id, metrics=self.pending[i : i + 1000])
        self.pending = []

    def final(self, values: Mapping[str, float]) -> None:
        self._keep(values, 0)
        self.flush()

    def artifacts(self, paths: Sequence[Path], folder: Path) -> None:
        for path in paths:
            where = below(path, folder).parent.as_posix()
            self.client.log_artifact(self.id, str(path), None if where == "." else where)

    def close(self, ok: bool) -> None:
        self.client.set_terminated(self.id, "FINISHED" if ok else "FAILED")

    def _keep(self, values: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.pending += [Metric(k, v, now, step) for k, v in values.items()]


_CLIENTS: dict[str, Any] = {}


def _client(uri: str) -> Any:
    """One client per store in a process: opening an SQLite store checks its schema (a second or more)."""
    if uri not in _CLIENTS:
        from mlflow.tracking import MlflowClient

        for name in ("alembic", "mlflow"):  # an SQLite store's first use logs its migrations at INFO
            logging.getLogger(name).setLevel(logging.WARNING)
        _CLIENTS[uri] = MlflowClient(tracking_uri=uri)
    return _CLIENTS[uri]


def _experiment(client: Any, uri: str, root: Path) -> str:
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    artifacts = None
    if uri.startswith("sqlite:///"):
        # Beside the store, not in ./mlartifacts of whatever folder the command ran from.
        artifacts = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
    return client.create_experiment(name, artifact_location=artifacts)


def _exists(client: Any, run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_run(run_id)
    except MlflowException:
        return False
    return True


TRACKER = Tracker(
    "mlflow",
    "an MLflow store: --tracking-uri, MLFLOW_TRACKING_URI, or an SQLite file beside the run folder",
    MlflowLogger,
    needs="mlflow",
    install="pip install 'smu[mlflow]'",
)
