"""Files a run writes: written atomically (a temporary name, fsync, rename, so a crash leaves the old
file or the new one, never half of one), hashed, and the run folder with its manifest. Under torchrun
only rank 0 writes (``smu.execution.distributed.on_main``)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from smu.core.errors import UsageError, left_in
from smu.execution import distributed


def atomic_write(path: Path, data: bytes) -> None:
    """Write bytes to ``path`` via a temporary file and a rename (rank 0 only, under torchrun)."""
    distributed.on_main(write_atomically, Path(path), data)


def remove_tree(path: Path) -> None:
    """Delete a folder and everything in it (rank 0 only, under torchrun)."""
    distributed.on_main(shutil.rmtree, path)


def write_atomically(path: Path, data: bytes) -> None:
    """Write bytes to ``path`` via a temporary file, fsync and a rename, in this process (any rank)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, (json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n").encode())


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest(obj: Any) -> str:
    """A short stable hash of JSON-able options: names a run or a step for its checkpoints and skips."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def prepare_out_dir(out: str | Path, force: bool, resumable: bool = False) -> Path:
    """Create the run folder; refuse a non-empty one unless ``force``, and fail early if unwritable. The
    refusal names ``--resume`` where the command has it (``resumable``)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a file, not a folder", hint="pass a folder path")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UsageError(
            f"--out {str(out)!r} exists and is not empty",
            hint="pass --resume to continue the run in it, --force to start it over, or choose another --out"
            if resumable
            else "pass --force to write into it, or choose another --out",
        )
    distributed.on_main(_make_dir, out)
    return out


def _make_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".smu-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UsageError(
            f"--out {str(out)!r} cannot be written ({e.strerror})", hint="choose a folder you can write to"
        ) from None


@contextmanager
def run_dir(out: str | Path, force: bool, resumable: bool = False) -> Iterator[Path]:
    """``prepare_out_dir``; on failure, remove the folder again if this run created it and left it empty.
    An exception that leaves it carries it (:func:`smu.core.errors.left_in`): after Ctrl-C, the CLI names
    it as the folder to continue in."""
    out = Path(out)
    created = not out.exists()
    path = prepare_out_dir(out, force, resumable)
    try:
        yield path
    except BaseException as e:
        if created and distributed.is_main():  # no waiting for the other ranks: one may be gone
            for d in sorted((p for p in path.rglob("*") if p.is_dir()), reverse=True):
                if not any(d.iterdir()):
                    d.rmdir()
            if not any(path.iterdir()):
                path.rmdir()
        if path.is_dir():
            left_in(e, path)
        raise


def write_manifest(out: Path, manifest: dict[str, Any]) -> Path:
    """manifest.json: what was run, with which options and versions, what it produced and measured."""
    path = Path(out) / "manifest.json"
    write_json(path, manifest)
    return path
