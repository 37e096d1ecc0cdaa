"""Models, masks and run manifests on disk: safetensors with string metadata, written atomically.

Never pickle: a safetensors file holds only tensors and a string->string header, so opening one
cannot run code. Every file is written to a temporary name in the same folder and renamed into
place, so a crash leaves either the old file or the new one, never half of one. Under torchrun only
rank 0 writes (``smu.execution.distributed.on_main``); every rank finds the file there once the call returns.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as st_save
from torch import nn

from smu.errors import ArtifactError, UsageError, shown
from smu.execution import distributed
from smu.io import schema as S
from smu.masks import Mask, scope_parameters

FORMAT_VERSION = "1"


def atomic_write(path: Path, data: bytes) -> None:
    """Write bytes to ``path`` via a temporary file and a rename (rank 0 only, under torchrun)."""
    distributed.on_main(_write, Path(path), data)


def remove_tree(path: Path) -> None:
    """Delete a folder and everything in it (rank 0 only, under torchrun)."""
    distributed.on_main(shutil.rmtree, path)


def _write(path: Path, data: bytes) -> None:
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
        _write(Path(path), data)
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
        raise ArtifactError(
            f"{what}: no such file", hint="check the path (smu prune -q prints the paths it wrote)"
        )
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


def model_meta(model: nn.Module, meta: dict[str, Any]) -> dict[str, Any]:
    """Defaults for a model header; ``meta`` must hold arch, dataset, num_classes and input_shape."""
    for key in S.MODEL_IDENTITY:
        if key not in meta:
            raise ValueError(f"model metadata needs {key}")
    return {S.KIND: S.MODEL, S.SPARSITY: "0", **meta}


def save_model(
    path: Path,
    model: nn.Module,
    meta: dict[str, Any],
    mask: Mask | None = None,
    mask_path: Path | None = None,
) -> str:
    """Save a model (and its mask beside it, when sparse); returns the model file's sha256."""
    meta = model_meta(model, meta)
    if mask is not None:
        mask_path = Path(mask_path or Path(path).with_name("mask.safetensors"))
        mask_meta = {k: v for k, v in meta.items() if k in (*S.MODEL_IDENTITY, S.COMMAND, S.SEED)}
        mask_sha = save_mask(mask_path, mask, mask_meta)
        meta.update(
            {
                S.SPARSITY: f"{mask.sparsity():.6f}",
                S.MASK_FILE: mask_path.name,
                S.MASK_SHA256: mask_sha,
                S.SCOPE: mask.scope,
            }
        )
    return save_tensors(Path(path), model.state_dict(), meta)


def save_mask(path: Path, mask: Mask, meta: dict[str, Any]) -> str:
    """Save a mask as one uint8 0/1 tensor per pruned parameter."""
    meta = {**meta, S.KIND: S.MASK, S.SCOPE: mask.scope, S.SPARSITY: f"{mask.sparsity():.6f}"}
    return save_tensors(Path(path), {n: m.to(torch.uint8) for n, m in mask.items()}, meta)


def input_shape(meta: dict[str, str]) -> tuple[int, int, int]:
    c, h, w = (int(v) for v in meta[S.INPUT_SHAPE].split("x"))
    return c, h, w


@dataclass
class LoadedModel:
    """A model read from disk, ready to use, with its header and (when sparse) its mask."""

    model: nn.Module
    meta: dict[str, str]
    mask: Mask | None
    path: Path
    sha256: str

    @property
    def arch(self) -> str:
        return self.meta[S.ARCH]

    @property
    def dataset(self) -> str:
        return self.meta[S.DATASET]

    def check_same_split(self, other: LoadedModel, option: str = "--reference") -> None:
        """Forget indices refer to a training split; two models compared on one set must share it."""
        for key in S.SPLIT:
            if self.meta.get(key) != other.meta.get(key):
                raise ArtifactError(
                    f"{option} {str(self.path)!r} was trained with another validation split than "
                    f"{str(other.path)!r} ({key[4:]} {shown(self.meta.get(key))} vs "
                    f"{shown(other.meta.get(key))})",
                    hint="compare models made with the same --seed "
                    "and --val-fraction, or the forget indices would mean different images",
                )


def state_mismatch(tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> str | None:
    """How ``tensors`` fail to match ``expected`` (a model's state dict, its parameters): the first few
    missing or unexpected names, or the first shape that differs; None when every name and shape fits."""
    missing = sorted(set(expected) - set(tensors))
    if missing:
        return f"missing {shown(missing)}"
    extra = sorted(set(tensors) - set(expected))
    if extra:
        return f"unexpected {shown(extra)}"
    for k, t in expected.items():
        if tensors[k].shape != t.shape:
            return f"{k} is {tuple(tensors[k].shape)}, the model expects {tuple(t.shape)}"
    return None


def load_model(
    path: str | Path,
    device: str | torch.device = "cpu",
    mask: str | Path | None = None,
    option: str = "--model",
) -> LoadedModel:
    """Rebuild the architecture named in the header, load the weights strictly and apply the mask.

    The mask is ``mask`` when given, else the one the header names (written beside the model by
    ``smu prune``), checked against the hash the model recorded.
    """
    from smu.models import ARCHS, build_model

    path = Path(path)
    meta = read_metadata(path, option)
    expect_kind(path, meta, S.MODEL, option)
    what = f"{option} {str(path)!r}" if option else repr(str(path))
    if meta[S.ARCH] not in ARCHS:
        raise ArtifactError(
            f"{what} is a {shown(meta[S.ARCH])}, an architecture this smu does not have",
            hint=f"smu knows {', '.join(ARCHS)}",
        )
    tensors = read_tensors(path)
    broken = weight_problem(tensors)
    if broken:
        raise ArtifactError(
            f"{what} is not intact: {broken}",
            hint="use the model it was made from (smu inspect lists every problem)",
        )
    c, h, _ = input_shape(meta)
    sizes = dict(
        in_channels=c, image_size=h, num_classes=int(meta[S.NUM_CLASSES]), mean=[0.0] * c, std=[1.0] * c
    )
    with torch.device("meta"):  # the shapes the header implies, before any memory is spent on them
        detail = state_mismatch(tensors, build_model(meta[S.ARCH], **sizes).state_dict())
    detail = detail or next(
        (f"{k} is {t.dtype}" for k, t in tensors.items() if t.is_complex() or t.dtype == torch.bool), None
    )
    if detail:
        raise ArtifactError(
            f"{what} does not fit architecture {meta[S.ARCH]!r}: {detail}",
            hint="the file's header and tensors disagree; write it again",
        )
    model = build_model(meta[S.ARCH], **sizes)
    model.load_state_dict(tensors, strict=True)
    model.to(device)
    loaded_mask = None
    if mask is not None:
        loaded_mask = load_mask(mask, model, meta)
    elif meta.get(S.MASK_FILE):
        mask_path = path.with_name(meta[S.MASK_FILE])
        if not mask_path.is_file():
            raise ArtifactError(
                f"{str(path)!r} is sparse but its mask {str(mask_path)!r} is missing",
                hint="keep mask.safetensors beside the model, or pass it with --mask",
            )
        if sha256_file(mask_path) != meta.get(S.MASK_SHA256):
            raise ArtifactError(
                f"{str(mask_path)!r} is not the mask {str(path)!r} was saved with",
                hint="pass the right mask with --mask",
            )
        loaded_mask = load_mask(mask_path, model, meta)
    if loaded_mask is not None:
        loaded_mask.apply(model)
    return LoadedModel(model=model, meta=meta, mask=loaded_mask, path=path, sha256=sha256_file(path))


def load_mask(path: str | Path, model: nn.Module, model_meta: dict[str, str] | None = None) -> Mask:
    """Read a mask and check it fits ``model``: same architecture, known parameters, same shapes, 0/1."""
    path = Path(path)
    meta = read_metadata(path, "--mask")
    expect_kind(path, meta, S.MASK, "--mask")
    if model_meta is not None:
        for key, what in (
            (S.ARCH, "architecture"),
            (S.NUM_CLASSES, "class count"),
            (S.INPUT_SHAPE, "input shape"),
        ):
            if meta.get(key) != model_meta.get(key):
                raise ArtifactError(
                    f"mask {str(path)!r} is for {what} {shown(meta.get(key))} but the model is "
                    f"{shown(model_meta.get(key))}",
                    hint="pass the mask written with this model",
                )
    params = dict(model.named_parameters())
    scope = meta.get(S.SCOPE, "conv")
    tensors = read_tensors(path)
    out = {}
    for name, m in tensors.items():
        if name not in params:
            raise ArtifactError(
                f"mask {str(path)!r} names {shown(name)}, which the model does not have",
                hint="pass the mask written with this model",
            )
        if m.shape != params[name].shape:
            raise ArtifactError(
                f"mask {str(path)!r}: {name} is {tuple(m.shape)}, the model's is {tuple(params[name].shape)}",
                hint="pass the mask written with this model",
            )
        if not bool(((widened(m) == 0) | (widened(m) == 1)).all()):
            raise ArtifactError(
                f"mask {str(path)!r}: {name} holds values other than 0 and 1",
                hint="a mask is one 0/1 tensor per pruned weight; write it again",
            )
        p = params[name]
        out[name] = widened(m).to(device=p.device, dtype=p.dtype)
    if not out:
        raise ArtifactError(f"mask {str(path)!r} holds no tensors", hint="write it again with smu prune")
    missing = set(scope_parameters(model, scope)) - set(out) if scope in ("conv", "all") else set()
    if missing:
        raise ArtifactError(
            f"mask {str(path)!r} does not cover {sorted(missing)[0]!r} of scope {scope!r}",
            hint="pass the mask written with this model",
        )
    return Mask(out, scope)


def prepare_out_dir(out: str | Path, force: bool) -> Path:
    """Create the run folder; refuse a non-empty one unless ``force``, and fail early if unwritable."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a file, not a folder", hint="pass a folder path")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UsageError(
            f"--out {str(out)!r} exists and is not empty",
            hint="pass --force to write into it, or choose another --out",
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
def run_dir(out: str | Path, force: bool) -> Iterator[Path]:
    """``prepare_out_dir``; on failure, remove the folder again if this run created it and left it empty."""
    out = Path(out)
    created = not out.exists()
    path = prepare_out_dir(out, force)
    try:
        yield path
    except BaseException:
        if created and distributed.is_main():  # no waiting for the other ranks: one may be gone
            for d in sorted((p for p in path.rglob("*") if p.is_dir()), reverse=True):
                if not any(d.iterdir()):
                    d.rmdir()
            if not any(path.iterdir()):
                path.rmdir()
        raise


def write_manifest(out: Path, manifest: dict[str, Any]) -> Path:
    """manifest.json: what was run, with which options and versions, what it produced and measured."""
    path = Path(out) / "manifest.json"
    write_json(path, manifest)
    return path
