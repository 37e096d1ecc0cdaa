"""What an artifact is, where it came from, and whether it is intact (``smu inspect``)."""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path
from typing import Any

import torch

from smu.core.errors import SmuError, shown
from smu.io import files, tensorfile
from smu.io import schema as S


def inspect_artifact(path: str | Path, search: int = 2) -> dict[str, Any]:
    """Metadata, per-layer sparsity, the chain of parent hashes, and every problem found in the file.

    Parents are looked up among the ``*.safetensors`` files in the file's folder and the ``search - 1``
    folders above it (where a run keeps them); a parent not found is still listed by its hash.
    """
    path = Path(path)
    meta = tensorfile.read_metadata(path, check=False)
    kind = meta.get(S.KIND, "?")
    problems: list[str] = []
    if kind not in S.ALL:
        problems.append(f"unknown kind {shown(kind)}")
    if meta.get(S.FORMAT) != tensorfile.FORMAT_VERSION:
        problems.append(
            f"format version {shown(meta.get(S.FORMAT))}, this smu writes {tensorfile.FORMAT_VERSION!r}"
        )
    problems += S.problems(meta)
    try:
        tensors = tensorfile.read_tensors(path)
    except SmuError as e:
        return {
            "path": str(path),
            "kind": kind,
            "sha256": files.sha256_file(path),
            "metadata": meta,
            "intact": False,
            "problems": [*problems, str(e)],
            "per_layer": {},
            "sparsity": None,
            "provenance": [],
        }
    bad = tensorfile.nonfinite(tensors)
    if kind == S.AUDIT and "epsilon" in bad and not torch.isnan(tensors["epsilon"]).any():
        bad.remove("epsilon")  # ε = ∞ is a verdict: the ensembles were told apart perfectly
    problems += [f"{k} holds NaN or Inf" for k in bad[:3]]
    weights = tensorfile.weight_problem(tensors) if kind == S.MODEL and not bad else None
    problems += [weights] if weights else []
    per_layer: dict[str, float] = {}
    if kind == S.MODEL:
        per_layer = model_sparsity(path, meta, tensors, problems)
    elif kind == S.MASK:
        per_layer = {k: zero_percent(m) for k, m in tensors.items()}
        odd = [
            k
            for k, m in tensors.items()
            if not bool(((tensorfile.widened(m) == 0) | (tensorfile.widened(m) == 1)).all())
        ]
        problems += [f"{k} holds values other than 0 and 1" for k in odd[:3]]
    elif kind == S.FORGET_SET:
        check_forget(meta, tensors, problems)
    sizes = {k: tensors[k].numel() for k in per_layer}  # a model's per-layer names are its own tensors
    total = sum(sizes.values())
    sparsity = sum(per_layer[k] * sizes[k] for k in per_layer) / total if total else None
    return {
        "path": str(path),
        "kind": kind,
        "sha256": files.sha256_file(path),
        "metadata": meta,
        "intact": not problems,
        "problems": problems,
        "sparsity": sparsity,
        "per_layer": per_layer,
        "provenance": provenance(path, meta, search),
    }


def model_sparsity(
    path: Path, meta: dict[str, str], tensors: dict[str, torch.Tensor], problems: list[str]
) -> dict[str, float]:
    """Per-layer sparsity in percent under the model's mask (checked against the model), else zeros in
    conv weights."""
    mask_name = meta.get(S.MASK_FILE)
    if mask_name and S.fits(S.MASK_FILE, mask_name):  # a name that is no file name is a problem already
        mask_path = path.with_name(mask_name)
        if not mask_path.is_file():
            problems.append(f"its mask {shown(mask_name)} is missing")
        elif files.sha256_file(mask_path) != meta.get(S.MASK_SHA256):
            problems.append(f"{shown(mask_name)} is not the mask it was saved with (sha256 differs)")
        else:
            mask = {k: tensorfile.widened(m) for k, m in tensorfile.read_tensors(mask_path).items()}
            fit = {k: m for k, m in mask.items() if k in tensors and m.shape == tensors[k].shape}
            problems += [
                f"the mask's {shown(k)} fits no tensor of the model" for k in list(set(mask) - set(fit))[:3]
            ]
            alive = [k for k, m in fit.items() if bool((tensorfile.widened(tensors[k])[m == 0] != 0).any())]
            problems += [f"{k} has non-zero weights where the mask is 0" for k in alive[:3]]
            return {k: zero_percent(m) for k, m in fit.items()}
    return {k: zero_percent(t) for k, t in tensors.items() if k.endswith(".weight") and t.ndim == 4}


def zero_percent(t: torch.Tensor) -> float:
    """Percent of ``t`` that is 0: sparsity as results report it."""
    return 100.0 * (1.0 - float(tensorfile.widened(t).count_nonzero()) / t.numel()) if t.numel() else 0.0


def check_forget(meta: dict[str, str], tensors: dict[str, torch.Tensor], problems: list[str]) -> None:
    idx = tensors.get("indices")
    if idx is None:
        problems.append("no indices tensor")
        return
    if idx.ndim != 1 or idx.dtype != torch.int64:
        problems.append(f"indices is a {idx.dtype} tensor of shape {tuple(idx.shape)}, not an int64 list")
        return
    if str(len(idx)) != meta.get(S.SIZE):
        problems.append(f"{len(idx)} indices, the header says {meta.get(S.SIZE)}")
    train_size = meta.get(S.TRAIN_SIZE, "")
    if not S.fits(S.TRAIN_SIZE, train_size):
        return  # the header's problem is already reported
    if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= int(train_size)):
        problems.append("indices outside the training split")


def provenance(path: Path, meta: dict[str, str], search: int) -> list[dict[str, Any]]:
    """[{sha256, path or None, kind}] from the parent of ``path`` back as far as the files go."""
    roots = [path.resolve().parents[i] for i in range(min(search, len(path.resolve().parents)))]
    index: dict[str, Path] = {}
    hashed: set[Path] = set()  # each root holds the one before it: hash each file once
    for root in roots:
        for candidate in nearby_artifacts(root):
            if candidate not in hashed:
                hashed.add(candidate)
                index.setdefault(files.sha256_file(candidate), candidate)
    chain: list[dict[str, Any]] = []
    parent, seen = meta.get(S.PARENT, ""), set()
    while parent and parent not in seen and len(chain) < 20:
        seen.add(parent)
        found = index.get(parent)
        entry: dict[str, Any] = {"sha256": parent, "path": str(found) if found else None, "kind": None}
        chain.append(entry)
        if found is None:
            break
        try:
            parent_meta = tensorfile.read_metadata(found, check=False)
        except SmuError:  # a broken ancestor ends the chain; inspecting it says why
            break
        entry["kind"] = parent_meta.get(S.KIND)
        parent = parent_meta.get(S.PARENT, "")
    return chain


def nearby_artifacts(root: Path, limit: int = 200, max_folders: int = 2_000) -> list[Path]:
    """Up to ``limit`` ``*.safetensors`` files under ``root``, nearest folders first, in name order.

    A run folder keeps its steps' files a level or two down, so breadth first finds them soon; looking
    into at most ``max_folders`` folders keeps a file that lies under a huge tree (``/``, a home folder)
    from walking the whole disk. Links to folders are not followed.
    """
    found: list[Path] = []
    queue = deque([root])
    for _ in range(max_folders):
        if not queue or len(found) >= limit:
            break
        try:
            with os.scandir(queue.popleft()) as entries:
                listed = sorted(entries, key=lambda e: e.name)
        except OSError:  # unreadable or vanished: look elsewhere
            continue
        for entry in listed:
            if entry.is_dir(follow_symlinks=False):
                queue.append(Path(entry.path))
            elif entry.name.endswith(".safetensors") and entry.is_file():
                found.append(Path(entry.path))
    return found[:limit]
