"""How much decoded data may live in memory, and the on-disk cache that holds a dataset beyond that.

A dataset whose decoded pixels fit under :func:`memory_limit` is held in memory, as every dataset
was before. A larger one is decoded once into a uint8 file and memory-mapped copy-on-write: the OS
page cache holds its pages and drops them under pressure, the Python heap holds a batch at a time,
and nothing written into the mapped tensor ever reaches the file.

The file is named by a hash of what went into it (every image's path, size and modification time,
and the decode size), so a changed tree is decoded again; it is written under a temporary name and
renamed into place, and only trusted once its sidecar JSON (shapes, statistics) exists and its size
is the expected one, so a killed or failed decode is never read back as data.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import shutil
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

import torch

from smu.core.errors import DataError, UsageError, shown
from smu.io.files import write_atomically

ENV = "SMU_DATA_MEMORY"
"""Environment variable that sets the limit: a size such as 512MB, 4GB or 0 (always map)."""

DEFAULT_FRACTION = 0.25
"""Of the available memory: an in-memory dataset is held about twice (the decoded set, kept for the
next load, and its train/val copies), next to the model and the run."""

FALLBACK_AVAILABLE = 16 << 30
"""Available memory assumed where the system does not say (a 4 GiB limit)."""

FORMAT = 1
"""The cache's layout; part of the key, so a future layout never reads an old file."""

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([kmgt]?)(?:i?b)?\s*", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes in '512MB', '4GB', '1.5G', '2GiB', '100000' or '0' (units are powers of 1024)."""
    match = _SIZE.fullmatch(text)
    if match is None:
        raise UsageError(
            f"{ENV}={shown(text)} is not a size", hint=f"write e.g. {ENV}=4GB, {ENV}=512MB, or {ENV}=0"
        )
    return int(float(match[1]) * _UNITS[match[2].lower()])


def available_memory() -> int:
    """Bytes the system could give this process now: MemAvailable, else free pages, else a guess."""
    with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    with contextlib.suppress(OSError, ValueError, AttributeError):
        pages = os.sysconf("SC_AVPHYS_PAGES")
        if pages > 0:
            return pages * os.sysconf("SC_PAGE_SIZE")
    return FALLBACK_AVAILABLE


def memory_limit() -> int:
    """Bytes of decoded images a dataset may take in memory: ``$SMU_DATA_MEMORY``, else a quarter of
    the available memory."""
    text = os.environ.get(ENV, "").strip()
    return parse_size(text) if text else int(available_memory() * DEFAULT_FRACTION)


def gb(nbytes: int) -> str:
    return f"{nbytes / 1e9:.1f} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:.1f} MB"


def cache_dirs(root: Path) -> list[Path]:
    """Where a tree's cache may live, in order: beside the data, else under the user's cache."""
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "smu" / "imagefolder"
    return [root / ".smu-cache", home]


def cache_key(root: Path, files: Iterable[Path], size: tuple[int, int]) -> str:
    """A hash of the tree's location, every file's path (under ``root``), size and mtime in order, and
    the decode size: the same tree named from another folder (``--data ../x``) finds the same cache."""
    h = hashlib.sha256(f"smu-imagefolder {FORMAT} {root.resolve()} {size[0]}x{size[1]}\n".encode())
    for path in files:
        try:
            st = path.stat()
        except OSError as exc:
            raise DataError(
                f"cannot read image {str(path)!r}: {exc.strerror}", hint="check the file"
            ) from exc
        name = path.relative_to(root) if path.is_relative_to(root) else path
        h.update(f"{name}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def mapped(
    root: Path,
    key: str,
    shapes: list[tuple[int, ...]],
    fill: Callable[[BinaryIO], None],
    describe: Callable[[list[torch.Tensor]], dict[str, Any]],
) -> tuple[list[torch.Tensor], dict[str, Any]]:
    """uint8 tensors of ``shapes`` memory-mapped from the cache named ``key``, and the facts
    ``describe`` gave when it was written; ``fill`` writes their bytes, in order, on a miss."""
    for folder in cache_dirs(root):
        found = _open(folder, key, shapes)
        if found is not None:
            return found
    folder = _write(root, key, shapes, fill)
    tensors = _map(folder / f"{key}.u8", shapes)
    facts = describe(tensors)
    meta = {"format": FORMAT, "root": str(root.resolve()), "shapes": [list(s) for s in shapes], **facts}
    try:
        write_atomically(folder / f"{key}.json", (json.dumps(meta) + "\n").encode())
    except OSError as exc:
        raise _write_error(exc, folder, _nbytes(shapes)) from exc
    _remove_stale(folder, key, meta["root"])
    return tensors, facts


def _nbytes(shapes: list[tuple[int, ...]]) -> int:
    return sum(math.prod(s) for s in shapes)


def _open(folder: Path, key: str, shapes: list[tuple[int, ...]]) -> tuple[list[torch.Tensor], dict] | None:
    """The cache in ``folder`` if it is whole; None if absent, unreadable, truncated or another layout."""
    data, sidecar = folder / f"{key}.u8", folder / f"{key}.json"
    try:
        meta = json.loads(sidecar.read_text())
        whole = meta.get("shapes") == [list(s) for s in shapes] and data.stat().st_size == _nbytes(shapes)
    except (OSError, ValueError, AttributeError):  # missing, unreadable, or not our JSON
        return None
    if not whole:  # a truncated file or a sidecar for other shapes: decode again, over it
        for path in (sidecar, data):
            with contextlib.suppress(OSError):
                path.unlink()
        return None
    try:
        return _map(data, shapes), {k: v for k, v in meta.items() if k not in ("format", "root", "shapes")}
    except DataError:
        return None


def _map(path: Path, shapes: list[tuple[int, ...]]) -> list[torch.Tensor]:
    """Copy-on-write (MAP_PRIVATE) views of the file: a write into them never reaches the disk."""
    try:
        flat = torch.from_file(str(path), shared=False, size=_nbytes(shapes), dtype=torch.uint8)
    except RuntimeError as exc:
        raise DataError(
            f"cannot memory-map the image cache {str(path)!r}: {' '.join(str(exc).split())}",
            hint=f"delete it to decode again, or set {ENV} high enough to hold the images in memory",
        ) from exc
    out, start = [], 0
    for shape in shapes:
        out.append(flat[start : start + math.prod(shape)].view(shape))
        start += math.prod(shape)
    return out


def _write(root: Path, key: str, shapes: list[tuple[int, ...]], fill: Callable[[BinaryIO], None]) -> Path:
    """Decode into the first cache folder that can be written; the folder it went into."""
    nbytes = _nbytes(shapes)
    folder, tmp = _claim(root, key, nbytes)
    try:
        with open(tmp, "wb") as f:
            _check_space(folder, nbytes)
            fill(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / f"{key}.u8")
    except OSError as exc:
        raise _write_error(exc, folder, nbytes) from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()  # gone after the rename; after a failure, no half file is left behind
    return folder


def _claim(root: Path, key: str, nbytes: int) -> tuple[Path, Path]:
    """The first cache folder where a temporary file can be made, and that (empty) file."""
    failures = []
    for folder in cache_dirs(root):
        tmp = folder / f".{key}.{socket.gethostname()}.{os.getpid()}.tmp"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            _remove_abandoned(folder)
            tmp.touch(exist_ok=False)
        except OSError as exc:
            failures.append(f"{str(folder)!r} ({exc.strerror or exc})")
            continue
        return folder, tmp
    raise DataError(
        f"cannot write the decoded-image cache ({gb(nbytes)}) in {' or '.join(failures)}",
        hint=f"make one of them writable, or set {ENV} above {gb(nbytes)} to hold the images in memory",
    )


def _check_space(folder: Path, nbytes: int) -> None:
    with contextlib.suppress(OSError):
        if shutil.disk_usage(folder).free < nbytes:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _write_error(exc: OSError, folder: Path, nbytes: int) -> DataError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DataError(
            f"no space left in {str(folder)!r} for the decoded-image cache ({gb(nbytes)})",
            hint=f"free {gb(nbytes)} there, or set {ENV} above {gb(nbytes)} to hold the images in memory",
        )
    return DataError(
        f"cannot write the decoded-image cache in {str(folder)!r}: {exc.strerror or exc}",
        hint=f"make the folder writable, or set {ENV} above {gb(nbytes)} to hold the images in memory",
    )


def _remove_abandoned(folder: Path) -> None:
    """Temporary files of decodes on this host whose process is gone (killed mid-decode)."""
    host = socket.gethostname()
    for tmp in folder.glob(f".*.{host}.*.tmp"):
        pid = tmp.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                tmp.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but another user's
        return True
    return True


def _remove_stale(folder: Path, key: str, root: str) -> None:
    """Earlier caches of the same tree (before its files changed): a large tree's copy is large."""
    for sidecar in folder.glob("*.json"):
        if sidecar.stem == key:
            continue
        with contextlib.suppress(OSError, ValueError, AttributeError):
            if json.loads(sidecar.read_text()).get("root") == root:
                sidecar.unlink()
                (folder / f"{sidecar.stem}.u8").unlink(missing_ok=True)
