"""Models and masks on disk: a model.safetensors with its header (arch, dataset, provenance) and, when
sparse, the mask.safetensors beside it, checked against each other and against the architecture on
load (``LoadedModel``). The bytes go through ``tensorfile``, the writes through ``files``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from smu.core.errors import ArtifactError, UsageError, shown
from smu.core.masks import SCOPES, Mask, scope_parameters
from smu.io import schema as S
from smu.io.files import sha256_file
from smu.io.tensorfile import expect_kind, read_metadata, read_tensors, save_tensors, weight_problem, widened


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
    from smu.models import build_model, parse_arch

    path = Path(path)
    meta = read_metadata(path, option)
    expect_kind(path, meta, S.MODEL, option)
    what = f"{option} {str(path)!r}" if option else repr(str(path))
    try:
        parse_arch(meta[S.ARCH])
    except UsageError as e:
        raise ArtifactError(
            f"{what} is a {shown(meta[S.ARCH])}, an architecture this smu cannot build ({e.message})",
            hint=e.hint or "use an smu that has it",
        ) from None
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
    missing = set(scope_parameters(model, scope)) - set(out) if scope in SCOPES else set()
    if missing:
        raise ArtifactError(
            f"mask {str(path)!r} does not cover {sorted(missing)[0]!r} of scope {scope!r}",
            hint="pass the mask written with this model",
        )
    return Mask(out, scope)
