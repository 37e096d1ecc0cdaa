"""safetensors files as smu writes and reads them: canonical bytes (sorted header: equal artifacts are
byte-identical), the header checked against the schema before anything else is read, tensors read
with clear errors, and the checks of what was read (NaN, Inf, a normalisation that cannot be).

Never pickle: a safetensors file holds only tensors and a string->string header, so opening one
cannot run code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as st_save

from smu.core.errors import ArtifactError, no_such_file, shown
from smu.execution import distributed
from smu.io import schema as S
from smu.io.files import sha256_bytes, write_atomically

FORMAT_VERSION = "1"


def canonical(data: bytes) -> bytes:
    """Re-serialise a safetensors header with sorted keys.

    The safetensors writer emits its header from a hash map, so the same tensors and metadata give
    different bytes from one call to the next; sorting makes equal artifacts byte-identical.
    """
    n = int.from_bytes(data[:8], "little")
    text = json.dumps(json.loads(data[8 : 8 + n]), sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header to an 8-byte boundary with spaces
    return len(text).to_bytes(8, "little") + text + data[8 + n :]


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> str:
    """Save tensors with ``meta`` (values turned into strings); returns the file's sha256."""
    header = {"format": "pt", str(S.FORMAT): FORMAT_VERSION, **{str(k): str(v) for k, v in meta.items()}}

    def write() -> str:
        data = canonical(
            st_save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=header)
        )
        write_atomically(Path(path), data)
        return sha256_bytes(data)

    # Rank 0's hash for every rank: the parent hash later files record is that of the file on disk.
    return distributed.on_main(write)


MAX_HEADER = 4 << 20
"""Largest safetensors header read (smu's are a few KB; ResNet-50's tensor table is about 30 KB)."""


def read_metadata(path: str | Path, option: str = "", check: bool = True) -> dict[str, str]:
    """The header of a safetensors file written by smu, with clear errors for anything else.

    With ``check``, a header whose values do not have their schema's types is refused (``smu inspect``
    reads without it, to report such values rather than stop at the first).
    """
    path = Path(path)
    what = f"{option} {str(path)!r}" if option else repr(str(path))
    if not path.is_file():
        raise no_such_file(path, option)
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
    if size > MAX_HEADER:
        raise ArtifactError(
            f"{what} is not a readable safetensors file (its header would be {size:,} bytes; "
            f"smu reads {MAX_HEADER:,} at most)",
            hint="smu reads only .safetensors files it wrote; is it the right file?",
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error type for any malformed header
        raise ArtifactError(
            f"{str(path)!r} is not a readable safetensors file ({shown(str(e))})",
            hint="smu reads only .safetensors files it wrote; is the file truncated?",
        ) from None
    if S.KIND not in meta:
        raise ArtifactError(
            f"{str(path)!r} has no smu metadata (smu.kind)",
            hint="pass a model.safetensors or mask.safetensors written by smu",
        )
    bad = S.problems(meta) if check else []
    if bad:
        raise ArtifactError(
            f"{what} has a broken header: {bad[0]}",
            hint="it was not written by smu, or was edited since; write it again (smu inspect shows it all)",
        )
    return meta


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is no dict)
    except Exception as e:
        raise ArtifactError(f"{str(path)!r} is corrupt: {shown(str(e))}", hint="write it again") from None


COMPUTABLE = (torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32)


COMPUTABLE += (torch.int16, torch.int8, torch.uint8, torch.bool)
"""Tensor types every comparison and count works on (a file may hold float8 or uint64, which lack some)."""


def widened(t: torch.Tensor) -> torch.Tensor:
    """``t`` as a type that comparisons, counts and isfinite accept: float32 when it is another one."""
    if t.dtype in COMPUTABLE:
        return t
    if t.is_complex():  # a real number where the imaginary part is 0, else NaN (never 0/1, never finite)
        t = torch.where(t.imag == 0, t.real, torch.nan)
    return t.to(torch.float32)


def nonfinite(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors that hold NaN or Inf."""
    return [k for k, t in tensors.items() if t.is_floating_point() and not bool(widened(t).isfinite().all())]


def weight_problem(tensors: dict[str, torch.Tensor]) -> str | None:
    """Why a model's weights cannot give finite outputs: a tensor with NaN or Inf, or a normalisation
    that divides by zero or below; None when they can."""
    broken = nonfinite(tensors)
    if broken:
        return f"{broken[0][:80]} holds NaN or Inf"
    std = tensors.get("normalize.std")
    if std is not None and std.is_floating_point() and not bool((widened(std) > 0).all()):
        return "normalize.std is not positive"
    return None


def expect_kind(path: Path, meta: dict[str, str], kind: str, option: str = "") -> None:
    got = meta.get(S.KIND)
    if got != kind:
        where = f"{option} " if option else ""
        hint = f"{where}takes a {kind} file" + (
            " (a sparse model's mask sits beside it and is found by itself)" if got == S.MASK else ""
        )
        got = got if got in S.ALL else shown(got)
        raise ArtifactError(f"{where}{str(path)!r} is a {got}, not a {kind}", hint=hint)
