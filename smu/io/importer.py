"""Import checkpoints of the original research code (.pth / .pth.tar) safely into smu's artifacts.

Only ``torch.load(weights_only=True)`` is used: it unpickles tensors and plain containers and refuses
anything that would run code. Layouts understood: a bare state_dict or one under ``state_dict`` /
``model_state_dict`` / ``model``; ``module.`` prefixes (DataParallel); ``weight_orig`` /
``weight_mask`` pairs from ``torch.nn.utils.prune`` (the weight becomes orig × mask and the masks
become the mask artifact); the ``normalize`` module of the research code's networks.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from smu.core.errors import ArtifactError, UsageError, shown
from smu.core.masks import Mask
from smu.core.registry import lookup
from smu.io import artifacts, files, tensorfile
from smu.io import schema as S
from smu.models import build_model

SHAPES = {
    "digits": (1, 8),
    "mnist": (1, 28),
    "fashion-mnist": (1, 28),
    "cifar10": (3, 32),
    "cifar100": (3, 32),
    "svhn": (3, 32),
}
"""Channels and image size of the named datasets (imagefolder needs --image-size)."""
CONTAINERS = ("state_dict", "model_state_dict", "model")


def refusal_reason(error: Exception) -> str:
    """The unpickler's own reason (e.g. "unsupported GLOBAL posix.system"), without torch's advice
    paragraphs around it."""
    paragraphs = [p.strip() for p in str(error).split("\n\n") if p.strip()]
    advice = ("Weights only load failed", "Please file", "Check the documentation")
    reasons = [p for p in paragraphs if not p.startswith(advice)]
    return reasons[0].splitlines()[0][:120] if reasons else type(error).__name__


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a research-code checkpoint, loaded without running any of its code."""
    if not path.is_file():
        raise ArtifactError(f"{str(path)!r}: no such file", hint="check the path")
    if compressed(path):  # a small file that inflates to gigabytes when torch reads it
        raise ArtifactError(
            f"{str(path)!r} holds compressed entries, which torch.save never writes",
            hint="re-save the model's state_dict with torch.save",
        )
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on stderr; the error says it all
            warnings.simplefilter("ignore")
            obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ArtifactError(
            f"refused {str(path)!r}: unpickling it would run code ({refusal_reason(e)})",
            hint="smu loads only tensors; re-save the model's state_dict with torch.save",
        ) from None
    except Exception as e:  # a truncated or foreign file
        raise ArtifactError(
            f"{str(path)!r} is not a readable PyTorch checkpoint ({type(e).__name__})",
            hint="pass a .pth/.pth.tar written by torch.save",
        ) from None
    for key in CONTAINERS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if (
        not isinstance(obj, dict)
        or not obj
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    ):
        raise ArtifactError(
            f"{str(path)!r} holds no state_dict of tensors",
            hint=f"expected a state_dict, possibly under one of {', '.join(CONTAINERS)}",
        )
    return {k.removeprefix("module."): v for k, v in obj.items()}


def compressed(path: Path) -> bool:
    """Whether ``path`` is a zip archive (torch.save's format) with an entry that is not stored as is."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(entry.compress_type != zipfile.ZIP_STORED for entry in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):  # no zip: torch.load says what it is
        return False


def convert(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(smu state_dict keys, masks): ``net.`` prefixes, and pruning pairs folded into weights and masks."""
    tensors, masks = {}, {}
    for key, value in state.items():
        if key.endswith("_mask"):
            continue
        if key.endswith("_orig"):
            base = key.removesuffix("_orig")
            mask = state.get(f"{base}_mask")
            mask = None if mask is None else tensorfile.widened(mask)
            if mask is None or mask.shape != value.shape or not bool(((mask == 0) | (mask == 1)).all()):
                raise ArtifactError(
                    f"{shown(key)} has no matching {shown(base)}_mask of 0s and 1s",
                    hint="the checkpoint is incomplete",
                )
            value = tensorfile.widened(value) * mask
            masks[f"net.{base}"] = mask.to(torch.uint8)
            key = base
        tensors[key if key.startswith("normalize.") else f"net.{key}"] = value
    return tensors, masks


def import_checkpoint(
    path: str | Path, arch: str, dataset: str, out: Path, *, image_size: int | None = None, command: str = ""
) -> dict[str, Any]:
    """Write ``out/model.safetensors`` (and ``mask.safetensors`` when pruned) from a research checkpoint."""
    path = Path(path)
    lookup({"imagefolder": 0, **SHAPES}, dataset, "dataset")
    if dataset not in SHAPES and image_size is None:
        raise UsageError(f"--dataset {dataset} has no fixed image size", hint="pass --image-size")
    tensors, masks = convert(read_checkpoint(path))
    channels, size = SHAPES.get(dataset, (3, image_size))
    head = [k for k in tensors if k.endswith(".weight") and tensors[k].ndim == 2]
    if not head:
        raise ArtifactError(f"{str(path)!r} has no classifier layer", hint="is it a classification model?")
    classes = tensors[head[-1]].shape[0]
    sizes = dict(in_channels=channels, image_size=image_size or size, num_classes=classes)
    sizes |= dict(mean=[0.0] * channels, std=[1.0] * channels)
    with torch.device("meta"):  # the shapes --arch implies, before any memory is spent on them
        expected = build_model(arch, **sizes).state_dict()
    for key in ("normalize.mean", "normalize.std"):  # research networks without a normalize module
        tensors.setdefault(key, torch.tensor(sizes[key.removeprefix("normalize.")]))
    what = artifacts.state_mismatch(tensors, expected)
    if what:
        raise ArtifactError(
            f"{str(path)!r} does not fit --arch {arch}: {what}",
            hint="check --arch (and --dataset for the input channels)",
        )
    broken = tensorfile.weight_problem(tensors)
    if broken:
        raise ArtifactError(
            f"{str(path)!r} is not intact: {broken}", hint="import the checkpoint it was made from"
        )
    model = build_model(arch, **sizes)
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()})
    mask = None
    if masks:
        # Complete the mask over its scope: weights the research code left unpruned are all ones.
        params = dict(model.named_parameters())
        if not set(masks) <= set(params):
            raise ArtifactError(
                f"{str(path)!r} prunes {shown(sorted(set(masks) - set(params)))}, which are no weights",
                hint="the checkpoint is not a pruned model of --arch",
            )
        mask = Mask.ones(model, "conv" if all(params[k].ndim == 4 for k in masks) else "all")
        for key, m in masks.items():
            mask.tensors[key] = m.to(params[key].dtype)
    meta = {
        S.ARCH: arch,
        S.DATASET: dataset,
        S.NUM_CLASSES: classes,
        S.INPUT_SHAPE: f"{channels}x{image_size or size}x{image_size or size}",
        S.SEED: 0,
        S.VAL_FRACTION: 0.1,
        S.SPLIT_SEED: 0,
        S.COMMAND: command,
        S.IMPORTED_FROM: path.name,
        S.PARENT: files.sha256_file(path),
    }
    artifacts.save_model(out / "model.safetensors", model, meta, mask=mask)
    return {
        "model": str(out / "model.safetensors"),
        "mask": str(out / "mask.safetensors") if mask else None,
        "arch": arch,
        "dataset": dataset,
        "num_classes": classes,
        "sparsity": mask.sparsity() if mask else 0.0,
        "source": str(path),
        "source_sha256": meta[S.PARENT],
    }
