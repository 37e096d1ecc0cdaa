"""What each tracker received, read back from the tracker's own files with the tracker's own readers,
so the logger tests check what a user would see in W&B, TensorBoard or MLflow, not what smu meant to send.

W&B has no public reader of offline runs any more (``wandb.sdk.internal.datastore`` went in 0.31), so
:func:`wandb_records` decodes the ``.wandb`` file itself: a 7-byte header, then LevelDB-log records
whose payloads are W&B's ``Record`` protobufs.
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

WANDB_HEADER = struct.pack("<4sHB", b":W&B", 0xBEE1, 0)
BLOCK = 32768
"""LevelDB-log block size. Blocks are counted from the start of the file: the header takes the first
7 bytes of block 0 (seen in files wandb 0.31 writes: split records end at multiples of 32768, and the
zero-filled block trailers lie just before them)."""
RECORD_HEADER = struct.Struct("<IHB")  # crc32 of type byte + data (zlib's CRC-32, unmasked), length, type
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def wandb_payloads(path: Path | str) -> Iterator[bytes]:
    """The assembled payloads of a ``.wandb`` file, in order; a bad header, checksum or chunk sequence
    raises, so a test never passes on a misread file. A torn record at the end (a run still writing)
    is left out."""
    data = Path(path).read_bytes()
    if data[:7] != WANDB_HEADER:
        raise ValueError(f"{path}: not a W&B run file (header {data[:7]!r})")
    pos, chunks = 7, None
    while pos + RECORD_HEADER.size <= len(data):
        left = BLOCK - pos % BLOCK
        if left < RECORD_HEADER.size:  # a block's trailer: zeros, too short for a record header
            pos += left
            continue
        crc, length, kind = RECORD_HEADER.unpack_from(data, pos)
        body = data[pos + RECORD_HEADER.size : pos + RECORD_HEADER.size + length]
        if len(body) < length:
            break
        if zlib.crc32(bytes([kind]) + body) != crc:
            raise ValueError(f"{path}: bad checksum of the record at byte {pos}")
        pos += RECORD_HEADER.size + length
        if kind == FULL and chunks is None:
            yield body
        elif kind == FIRST and chunks is None:
            chunks = [body]
        elif kind in (MIDDLE, LAST) and chunks is not None:
            chunks.append(body)
            if kind == LAST:
                yield b"".join(chunks)
                chunks = None
        else:
            raise ValueError(f"{path}: record of type {kind} out of sequence at byte {pos}")


def _key(item: Any) -> str:
    """An item's name: ``key``, or its ``nested_key`` parts joined by ``/`` (wandb 0.31 puts a flat
    ``ga/loss`` in ``nested_key`` as one part; ``_wandb.runtime`` comes out as ``_wandb/runtime``)."""
    return item.key or "/".join(item.nested_key)


FINISH_WAIT = 10.0
"""Seconds to wait for a finished run's file to be complete. ``wandb.finish()`` can return before W&B's
service has written the run's records (wandb 0.31, offline: in 3 of 19 runs read at once, the file
held only its header, or its first records, for up to 0.1 s more); the ``exit`` record is always the
last, so a file with it is whole."""


def wandb_records(path: Path | str, wait: float = FINISH_WAIT) -> dict[str, Any]:
    """The run in ``path`` once it has its ``exit`` record (waiting up to ``wait`` seconds, then
    taking what is there: a run that never finished)."""
    deadline = time.monotonic() + wait
    while True:
        found = _wandb_records(path)
        if found["exit_code"] is not None or time.monotonic() >= deadline:
            return found
        time.sleep(0.05)


def _wandb_records(path: Path | str) -> dict[str, Any]:
    """One offline run as W&B would sync it: ``config`` (name -> value, ``_wandb`` included),
    ``history`` (one dict per logged row, ``_step``, ``_runtime`` and ``_timestamp`` included),
    ``summary`` (the last value of each name), ``run`` (id, group, job_type, display_name, tags,
    start_time in seconds), ``files`` (paths the run saves), ``artifacts`` (their names),
    ``artifact_files`` (name -> the paths in its manifest) and ``exit_code`` (None: not finished).
    Values are as JSON has them: an epoch's ``acc`` of 91.0 comes back as the int 91."""
    from wandb.proto import wandb_internal_pb2

    out: dict[str, Any] = {
        "config": {}, "history": [], "summary": {}, "run": {}, "files": [],
        "artifacts": [], "artifact_files": {}, "exit_code": None,
    }  # fmt: skip

    def configure(config: Any) -> None:
        for item in config.update:
            out["config"][_key(item)] = json.loads(item.value_json)
        for item in config.remove:
            out["config"].pop(_key(item), None)

    for payload in wandb_payloads(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            out["run"] = {
                "id": run.run_id, "group": run.run_group, "job_type": run.job_type,
                "display_name": run.display_name, "tags": list(run.tags),
                "start_time": run.start_time.seconds + run.start_time.nanos / 1e9,
            }  # fmt: skip
            configure(run.config)
        elif kind == "config":
            configure(record.config)
        elif kind == "history":
            out["history"].append({_key(item): json.loads(item.value_json) for item in record.history.item})
        elif kind == "summary":
            for item in record.summary.update:
                out["summary"][_key(item)] = json.loads(item.value_json)
            for item in record.summary.remove:
                out["summary"].pop(_key(item), None)
        elif kind == "files":
            out["files"] += [f.path for f in record.files.files]
        elif kind == "artifact":
            out["artifacts"].append(record.artifact.name)
            out["artifact_files"][record.artifact.name] = [c.path for c in record.artifact.manifest.contents]
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
    return out


def wandb_runs(folder: Path | str, wait: float = FINISH_WAIT) -> list[dict[str, Any]]:
    """Every offline run under ``folder``, in the order they started (folder names only tell the
    second). ``wandb/latest-run`` is a link to the newest run's folder, so the glob finds that file
    twice: each file is read once."""
    files = {p.resolve() for p in Path(folder).glob("**/run-*.wandb")}
    runs = [wandb_records(p, wait) for p in files]
    return sorted(runs, key=lambda r: r["run"].get("start_time", 0.0))


def _events(folder: Path | str) -> Any:
    """TensorBoard's own reader over the event files directly in ``folder`` (sub-folders are other
    runs), keeping every point (a size guidance of 0) rather than TensorBoard's default sample."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    return EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0}).Reload()


def tensorboard_scalars(folder: Path | str) -> dict[str, list[tuple[int, float]]]:
    """Each scalar's (step, value) points, as TensorBoard plots them."""
    events = _events(folder)
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def tensorboard_text(folder: Path | str) -> dict[str, str]:
    """Each text summary's last value (``params``: the markdown table of parameters and tags).
    ``add_text`` writes a string tensor under the tag ``NAME/text_summary``; the name is given back."""
    events = _events(folder)
    texts = {}
    for tag in events.Tags()["tensors"]:
        last = events.Tensors(tag)[-1].tensor_proto
        if last.dtype == 7 and last.string_val:  # DT_STRING
            texts[tag.removesuffix("/text_summary")] = last.string_val[0].decode()
    return texts


def mlflow_runs(uri: str) -> list[Any]:
    """Every run in the store at ``uri`` (all experiments, deleted ones left out), newest first."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return list(client.search_runs(experiments, max_results=50000)) if experiments else []


def mlflow_history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    """A metric's (step, value) points, by step (``run.data.metrics`` keeps only the last value)."""
    from mlflow.tracking import MlflowClient

    points = MlflowClient(tracking_uri=uri).get_metric_history(run_id, key)
    return sorted((m.step, m.value) for m in points)
