"""Import weights trained elsewhere safely into smu's artifacts: the original research code's
checkpoints, torchvision and timm state dicts, Hugging Face style folders.

Files read: ``.safetensors`` (tensors only by design), or ``.pt``/``.pth``/``.bin``/``.pth.tar`` through
``torch.load(weights_only=True)``, which unpickles tensors and plain containers and refuses anything
that would run code; a folder holding ``model.safetensors`` (or ``pytorch_model.bin``) and
optionally the ``config.json`` timm writes beside it (its ``architecture`` names the model, its
``mean``/``std`` the normalisation). Layouts understood: a bare state_dict or one under
``state_dict`` / ``model_state_dict`` / ``model``; ``module.`` prefixes (DataParallel);
``weight_orig`` / ``weight_mask`` pairs from ``torch.nn.utils.prune`` (the weight becomes orig × mask
and the masks become the mask artifact); the ``normalize`` module of the research code's networks.
"""

from __future__ import annotations

import json
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from smu.core.errors import ArtifactError, UsageError, shown
from smu.core.masks import Mask, scope_parameters
from smu.core.registry import lookup
from smu.io import artifacts, files, tensorfile
from smu.io import schema as S
from smu.models import build_model, parse_arch

SHAPES = {
    "digits": (1, 8, 10),
    "mnist": (1, 28, 10),
    "fashion-mnist": (1, 28, 10),
    "cifar10": (3, 32, 10),
    "cifar100": (3, 32, 100),
    "cifar20": (3, 32, 20),
    "svhn": (3, 32, 10),
}
"""Channels, image size and classes of the named datasets (imagefolder: --image-size, and the classes
of the checkpoint's head)."""
FOLDER_FILES = ("model.safetensors", "pytorch_model.bin")
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


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], Path]:
    """(tensors, the folder's config.json or {}, the file read) of a checkpoint file or a model folder."""
    config: dict[str, Any] = {}
    if path.is_dir():
        found = [path / name for name in FOLDER_FILES if (path / name).is_file()]
        if not found:
            raise ArtifactError(
                f"{str(path)!r} holds no {' or '.join(FOLDER_FILES)}",
                hint="pass the weights file itself, or a folder as timm and Hugging Face write them",
            )
        if (path / "config.json").is_file():
            config = read_config(path / "config.json")
        path = found[0]
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise ArtifactError(f"{str(path)!r}: no such file", hint="check the path")
        try:
            state = tensorfile.read_tensors(path)
        except ArtifactError as e:
            raise ArtifactError(
                f"{str(path)!r} is not a readable safetensors file ({e.message.split(': ', 1)[-1]})",
                hint="pass the weights as safetensors.torch.save_file wrote them",
            ) from None
        if not state:
            raise ArtifactError(f"{str(path)!r} holds no tensors", hint="pass the model's weights")
    else:
        state = read_checkpoint(path)
    return {k.removeprefix("module."): v for k, v in state.items()}, config, path


MAX_CONFIG = 1 << 20
"""Largest config.json read (timm's are about 1 KB)."""


def read_config(path: Path) -> dict[str, Any]:
    """The config.json beside a model's weights; anything else than a small JSON object is refused."""
    if path.stat().st_size > MAX_CONFIG:
        raise ArtifactError(
            f"{str(path)!r} is over {MAX_CONFIG:,} bytes", hint="is it the model's config.json?"
        )
    try:
        config = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{str(path)!r} is not JSON ({shown(str(e))})", hint="fix or remove it") from None
    return config if isinstance(config, dict) else {}


def fit_report(tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> tuple[dict, str]:
    """(the tensors that fit, by name and shape; one line on those that do not)."""
    fits = {k: v for k, v in tensors.items() if k in expected and v.shape == expected[k].shape}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    reshaped = sorted(k for k in set(tensors) & set(expected) if tensors[k].shape != expected[k].shape)
    parts = [
        f"{what} {len(keys)} ({shown(keys[:3])}{', ...' if len(keys) > 3 else ''})"
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("other shape", reshaped))
        if keys
    ]
    return fits, "; ".join(parts)


def statistics(
    arch: str, tensors: dict[str, torch.Tensor], config: dict[str, Any], channels: int
) -> tuple[list[float], list[float]]:
    """The normalisation the weights were trained with: the checkpoint's own ``normalize`` buffers, the
    folder's config.json, the library's for torchvision and timm models, else none (mean 0, std 1)."""
    if "normalize.mean" in tensors and "normalize.std" in tensors:
        return tensors["normalize.mean"].tolist(), tensors["normalize.std"].tolist()
    stats = config.get("pretrained_cfg", config)
    stats = stats if isinstance(stats, dict) else {}
    mean, std = stats.get("mean"), stats.get("std")
    if isinstance(mean, list) and isinstance(std, list):
        numbers = [v for v in mean + std if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if len(numbers) != len(mean) + len(std) or len(mean) != len(std):
            raise ArtifactError(
                f"the config.json's mean and std are {shown(mean)} and {shown(std)}",
                hint="one number per channel in each, or pass --mean and --std",
            )
        return [float(v) for v in mean], [float(v) for v in std]
    spec = parse_arch(arch)
    if spec.library is not None:
        from smu.models import external

        mean, std = external.LIBRARIES[spec.library].statistics(spec.name)
        return list(mean), list(std)
    return [0.0] * channels, [1.0] * channels


def import_checkpoint(
    path: str | Path,
    arch: str | None,
    dataset: str,
    out: Path,
    *,
    image_size: int | None = None,
    num_classes: int | None = None,
    strict: bool = True,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    seed: int = 0,
    command: str = "",
) -> dict[str, Any]:
    """Write ``out/model.safetensors`` (and ``mask.safetensors`` when pruned) from weights trained elsewhere.

    ``strict``: every tensor of the model must be in the file with its shape, and nothing else; without
    it, what fits is loaded, the rest starts fresh (seeded by ``seed``: e.g. a new head for another
    class count) and the result says which keys did not fit.
    """
    path = Path(path)
    lookup({"imagefolder": 0, **SHAPES}, dataset, "dataset")
    if dataset not in SHAPES and image_size is None:
        raise UsageError(
            f"--dataset {dataset} has no fixed image size", hint="pass --data (the tree) or --image-size"
        )
    state, config, read = read_weights(path)
    if arch is None:
        if not isinstance(config.get("architecture"), str):
            raise UsageError(
                "--arch is needed", hint="name the architecture, e.g. --arch torchvision:resnet18"
            )
        arch = f"timm:{config['architecture']}"  # the config.json that timm writes beside its weights
    spec = parse_arch(arch)
    if spec.library is None and spec.name == "swin_t":
        from smu.models.swin import from_original

        state = from_original(state)
    tensors, masks = convert(state)
    channels, size, classes = SHAPES.get(dataset, (3, image_size, num_classes or 0))
    size = image_size or size
    if not classes:  # imagefolder: as many classes as the checkpoint's head has
        head = [k for k in tensors if k.endswith(".weight") and tensors[k].ndim == 2]
        if not head:
            raise ArtifactError(
                f"{str(path)!r} has no classifier layer", hint="is it a classification model?"
            )
        classes = tensors[head[-1]].shape[0]
    if (mean is None) != (std is None):
        raise UsageError("--mean and --std go together", hint="pass both, one value per channel")
    if mean is None or std is None:
        mean, std = statistics(arch, tensors, config, channels)
    sizes = dict(in_channels=channels, image_size=size, num_classes=classes, mean=mean, std=std)
    with torch.device("meta"):  # the shapes --arch implies, before any memory is spent on them
        expected = build_model(arch, **sizes).state_dict()
    normalization = {"normalize.mean": torch.tensor(mean), "normalize.std": torch.tensor(std)}
    tensors = {k: v for k, v in tensors.items() if not k.startswith("normalize.")} | normalization
    fits, report = fit_report(tensors, expected)
    if report and strict:
        raise ArtifactError(
            f"{str(path)!r} does not fit --arch {arch} on --dataset {dataset}: {report}",
            hint="check --arch and --dataset, or pass --no-strict to load what fits and start the rest fresh",
        )
    if len(fits) <= len(normalization):
        raise ArtifactError(
            f"{str(path)!r} has no weight that fits --arch {arch}: {report}", hint="check --arch"
        )
    broken = tensorfile.weight_problem(fits)
    if broken:
        raise ArtifactError(
            f"{str(path)!r} is not intact: {broken}", hint="import the checkpoint it was made from"
        )
    torch.manual_seed(seed)  # what does not fit starts from a repeatable initialisation
    model = build_model(arch, **sizes)
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in fits.items()}, strict=False)
    mask = None
    if masks:
        # Complete the mask over its scope: weights the research code left unpruned are all ones.
        params = dict(model.named_parameters())
        if not set(masks) <= set(params):
            raise ArtifactError(
                f"{str(path)!r} prunes {shown(sorted(set(masks) - set(params)))}, which are no weights",
                hint="the checkpoint is not a pruned model of --arch",
            )
        scope = next(s for s in ("conv", "linear", "all") if set(masks) <= set(scope_parameters(model, s)))
        mask = Mask.ones(model, scope)
        for key, m in masks.items():
            mask.tensors[key] = m.to(params[key].dtype)
    meta = {
        S.ARCH: arch,
        S.DATASET: dataset,
        S.NUM_CLASSES: classes,
        S.INPUT_SHAPE: f"{channels}x{size}x{size}",
        S.SEED: seed,
        S.VAL_FRACTION: 0.1,
        S.SPLIT_SEED: 0,
        S.COMMAND: command,
        S.IMPORTED_FROM: read.name,
        S.PARENT: files.sha256_file(read),
    }
    artifacts.save_model(out / "model.safetensors", model, meta, mask=mask)
    return {
        "model": str(out / "model.safetensors"),
        "mask": str(out / "mask.safetensors") if mask else None,
        "arch": arch,
        "dataset": dataset,
        "num_classes": classes,
        "sparsity": mask.percent() if mask else 0.0,
        "loaded": f"{len(fits) - len(normalization)} of {len(expected) - len(normalization)} tensors",
        "not_loaded": report or None,
        "source": str(read),
        "source_sha256": meta[S.PARENT],
    }
