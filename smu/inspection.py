"""What an artifact is, where it came from, and whether it is intact (``smu inspect``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from smu import artifacts
from smu import schema as S
from smu.errors import SmuError


def inspect_artifact(path: str | Path, search: int = 2) -> dict[str, Any]:
    """Metadata, per-layer sparsity, the chain of parent hashes, and every problem found in the file.

    Parents are looked up among the ``*.safetensors`` files in the file's folder and the ``search - 1``
    folders above it (where a run keeps them); a parent not found is still listed by its hash.
    """
    path = Path(path)
    meta = artifacts.read_metadata(path)
    kind = meta.get(S.KIND, "?")
    problems: list[str] = []
    if kind not in S.ALL:
        problems.append(f"unknown kind {kind!r}")
    if meta.get(S.FORMAT) != artifacts.FORMAT_VERSION:
        problems.append(
            f"format version {meta.get(S.FORMAT)!r}, this smu writes {artifacts.FORMAT_VERSION!r}"
        )
    try:
        tensors = artifacts.read_tensors(path)
    except SmuError as e:
        return {
            "path": str(path),
            "kind": kind,
            "sha256": artifacts.sha256_file(path),
            "metadata": meta,
            "intact": False,
            "problems": [*problems, str(e)],
            "per_layer": {},
            "sparsity": None,
            "provenance": [],
        }
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if kind == S.AUDIT and "epsilon" in bad and not torch.isnan(tensors["epsilon"]).any():
        bad.remove("epsilon")  # ε = ∞ is a verdict: the ensembles were told apart perfectly
    problems += [f"{k} holds NaN or Inf" for k in bad[:3]]
    per_layer: dict[str, float] = {}
    if kind == S.MODEL:
        per_layer = model_sparsity(path, meta, tensors, problems)
    elif kind == S.MASK:
        per_layer = {k: 1.0 - float(m.count_nonzero()) / m.numel() for k, m in tensors.items()}
    elif kind == S.FORGET_SET:
        check_forget(meta, tensors, problems)
    sizes = {k: tensors[k].numel() for k in per_layer}
    total = sum(sizes.values())
    sparsity = sum(per_layer[k] * sizes[k] for k in per_layer) / total if total else None
    return {
        "path": str(path),
        "kind": kind,
        "sha256": artifacts.sha256_file(path),
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
    """Per-layer sparsity under the model's mask (checked against the model), else zeros in conv weights."""
    mask_name = meta.get(S.MASK_FILE)
    if mask_name:
        mask_path = path.with_name(mask_name)
        if not mask_path.is_file():
            problems.append(f"its mask {mask_name!r} is missing")
        elif artifacts.sha256_file(mask_path) != meta.get(S.MASK_SHA256):
            problems.append(f"{mask_name!r} is not the mask it was saved with (sha256 differs)")
        else:
            mask = artifacts.read_tensors(mask_path)
            alive = [k for k, m in mask.items() if k in tensors and bool((tensors[k][m == 0] != 0).any())]
            problems += [f"{k} has non-zero weights where the mask is 0" for k in alive[:3]]
            return {k: 1.0 - float(m.count_nonzero()) / m.numel() for k, m in mask.items()}
    return {
        k: 1.0 - float(t.count_nonzero()) / t.numel()
        for k, t in tensors.items()
        if k.endswith(".weight") and t.ndim == 4
    }


def check_forget(meta: dict[str, str], tensors: dict[str, torch.Tensor], problems: list[str]) -> None:
    idx = tensors.get("indices")
    if idx is None:
        problems.append("no indices tensor")
        return
    if str(len(idx)) != meta.get(S.SIZE):
        problems.append(f"{len(idx)} indices, the header says {meta.get(S.SIZE)}")
    if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= int(meta.get(S.TRAIN_SIZE, math.inf))):
        problems.append("indices outside the training split")


def provenance(path: Path, meta: dict[str, str], search: int) -> list[dict[str, Any]]:
    """[{sha256, path or None, kind}] from the parent of ``path`` back as far as the files go."""
    roots = [path.resolve().parents[i] for i in range(min(search, len(path.resolve().parents)))]
    index: dict[str, Path] = {}
    for root in roots:
        for candidate in sorted(root.rglob("*.safetensors"))[:200]:
            index.setdefault(artifacts.sha256_file(candidate), candidate)
    chain: list[dict[str, Any]] = []
    parent, seen = meta.get(S.PARENT, ""), set()
    while parent and parent not in seen and len(chain) < 20:
        seen.add(parent)
        found = index.get(parent)
        entry: dict[str, Any] = {"sha256": parent, "path": str(found) if found else None, "kind": None}
        chain.append(entry)
        if found is None:
            break
        parent_meta = artifacts.read_metadata(found)
        entry["kind"] = parent_meta.get(S.KIND)
        parent = parent_meta.get(S.PARENT, "")
    return chain
