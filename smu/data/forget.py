"""Forget sets: which training samples to unlearn, resolved once and saved so every step uses the same ones.

Indices refer to the training split after the validation hold-out (``Splits.train``). Specs:

- ``class:C``    every training sample of class C (class-wise forgetting; TA then excludes class C)
- ``class:C:N``  N samples of class C, drawn with the forget seed
- ``random:N`` / ``random:P%``  N samples drawn uniformly from all classes (random data forgetting)
- ``indices:FILE``  the user's own list: one index per line, or a JSON list
- ``PATH``       a forget set saved by smu (``forget.safetensors``)

Unlike the original code, no default ever turns a random set into a class: the spec says which.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from smu.core.errors import ArtifactError, UsageError, shown
from smu.core.names import forget_kind
from smu.core.options import SEED_MAX
from smu.data import ImageSet, Splits
from smu.io import schema as S
from smu.io import tensorfile

MAX_INDEX_FILE = 64 << 20
"""Largest indices:FILE read (ImageNet's 1.28 million indices take about 10 MB)."""


@dataclass
class ForgetSet:
    """Sorted indices into ``Splits.train`` plus where they came from."""

    indices: torch.Tensor
    spec: str
    dataset: str
    train_size: int
    val_fraction: float
    split_seed: int
    forget_class: int | None = None
    """Set when a whole class is forgotten: TA and validation accuracy then leave that class out."""
    subset: int = 0
    """The training subset the indices refer to (``Splits.subset``; 0: the whole training set)."""

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def sha256(self) -> str:
        h = hashlib.sha256(
            f"{self.dataset}|{self.train_size}|{self.val_fraction}|{self.split_seed}|".encode()
            + (f"{self.subset}|".encode() if self.subset else b"")  # hashes from before subsets hold
        )
        h.update(self.indices.to(torch.int64).contiguous().numpy().tobytes())
        return h.hexdigest()

    def forget(self, splits: Splits) -> ImageSet:
        return splits.train.subset(self.indices)

    def retain(self, splits: Splits) -> ImageSet:
        return splits.train.subset(self.retain_indices())

    def retain_indices(self) -> torch.Tensor:
        keep = torch.ones(self.train_size, dtype=torch.bool)
        keep[self.indices] = False
        return keep.nonzero().flatten()

    def without_class(self, data: ImageSet) -> ImageSet:
        """``data`` minus the forgotten class (unchanged unless a whole class is forgotten)."""
        if self.forget_class is None:
            return data
        return data.subset((data.y != self.forget_class).nonzero().flatten())

    def summary(self) -> dict:
        return {"spec": self.spec, "size": len(self), "sha256": self.sha256, "class": self.forget_class}

    def save(self, path: Path) -> str:
        meta = {
            S.KIND: S.FORGET_SET,
            S.DATASET: self.dataset,
            S.SPEC: self.spec,
            S.SIZE: len(self),
            S.SHA256: self.sha256,
            S.TRAIN_SIZE: self.train_size,
            S.VAL_FRACTION: self.val_fraction,
            S.SPLIT_SEED: self.split_seed,
            **({S.SUBSET: self.subset} if self.subset else {}),
            S.CLASS: "" if self.forget_class is None else self.forget_class,
        }
        return tensorfile.save_tensors(Path(path), {"indices": self.indices.to(torch.int64)}, meta)


def resolve_forget(spec: str, splits: Splits, seed: int = 0) -> ForgetSet:
    """Turn a ``--forget`` spec into a :class:`ForgetSet` for these splits."""
    spec = spec.strip()
    labels = splits.train.y.cpu()
    n = len(labels)
    if not 0 <= seed <= SEED_MAX:
        raise UsageError(f"--forget-seed {shown(seed)} is outside 0..{SEED_MAX:,}", hint="use a smaller seed")
    kind, rest = forget_kind(spec)
    gen = torch.Generator().manual_seed(seed)
    forget_class = None
    if kind == "class":
        name, _, count = rest.partition(":")
        c = parse_class(name, splits)
        members = (labels == c).nonzero().flatten()
        if count:
            k = parse_count(count, len(members), f"class {c}", spec)
            idx = members[torch.randperm(len(members), generator=gen)[:k]]
        else:
            idx, forget_class = members, c
    elif kind == "random":
        k = parse_count(rest, n, "the training split", spec)
        idx = torch.randperm(n, generator=gen)[:k]
    elif kind == "indices":
        idx = read_indices(Path(rest), n)
    else:
        return load_forget(Path(spec), splits)
    if len(idx) == 0:
        raise UsageError(
            f"--forget {shown(spec)} selects no samples", hint="a forget set needs at least one sample"
        )
    return ForgetSet(
        idx.sort().values,
        spec,
        splits.info.name,
        n,
        splits.val_fraction,
        splits.split_seed,
        forget_class,
        splits.subset,
    )


def parse_class(name: str, splits: Splits) -> int:
    classes = splits.info.classes
    if name in classes:
        return classes.index(name)
    try:
        c = int(name)
    except ValueError:
        c = -1
    if not 0 <= c < len(classes):
        raise UsageError(
            f"--forget class {shown(name)} is not a class of {splits.info.name}",
            hint=f"use 0..{len(classes) - 1} or a class name ({', '.join(classes[:5])}, ...)",
        )
    return c


def parse_count(text: str, available: int, where: str, spec: str) -> int:
    """'500' or '10%' of ``available``; must be between 1 and ``available``."""
    try:
        k = round(float(text[:-1]) / 100 * available) if text.endswith("%") else int(text)
    except (ValueError, OverflowError):  # not a number, NaN or infinite
        raise UsageError(
            f"--forget {shown(spec)}: {shown(text)} is not a count or a percentage",
            hint="e.g. random:500 or random:10%",
        ) from None
    if not 1 <= k <= available:
        raise UsageError(
            f"--forget {shown(spec)} asks for {shown(k)} samples but {where} has {available}",
            hint=f"ask for 1 to {available}",
        )
    return k


def read_indices(path: Path, n: int) -> torch.Tensor:
    """One index per line (blank lines and # comments skipped) or a JSON list; all distinct, in [0, n)
    (the file exists: :func:`smu.core.names.forget_kind` checked)."""
    if path.stat().st_size > MAX_INDEX_FILE:
        raise UsageError(
            f"--forget {str(path)!r} is {path.stat().st_size:,} bytes, more than an index list can be",
            hint="is it the right file?",
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(
            f"--forget {str(path)!r} is not text", hint="write [3, 17, 42] or one index per line"
        ) from None
    if text.lstrip().startswith("["):
        try:
            values = json.loads(text)
        except json.JSONDecodeError as e:
            raise UsageError(
                f"--forget {str(path)!r} is not a valid JSON list ({e.msg}, line {e.lineno})",
                hint="write [3, 17, 42] or one index per line",
            ) from None
        except ValueError:  # a number of more than 4,300 digits
            raise UsageError(
                f"--forget {str(path)!r} holds a number too long to be an index", hint="write [3, 17, 42]"
            ) from None
        except RecursionError:
            raise UsageError(
                f"--forget {str(path)!r} nests lists too deeply", hint="write a flat list: [3, 17, 42]"
            ) from None
        if not isinstance(values, list):
            raise UsageError(f"--forget {str(path)!r} is not a JSON list", hint="write [3, 17, 42]")
    else:
        values = [line.split("#")[0].strip() for line in text.splitlines()]
        values = [v for v in values if v]
    out = []
    for v in values:
        if isinstance(v, bool) or not (
            isinstance(v, int) or (isinstance(v, str) and re.fullmatch(r"-?[0-9]{1,30}", v))
        ):
            raise UsageError(
                f"--forget {str(path)!r}: {shown(v)} is not a whole number",
                hint="indices are positions in the training split, 0-based",
            )
        out.append(int(v))
    if not out:
        raise UsageError(f"--forget {str(path)!r} holds no indices", hint="list at least one index")
    bad = next((i for i in out if not 0 <= i < n), None)
    if bad is not None:
        raise UsageError(
            f"--forget {str(path)!r}: index {shown(bad)} is out of range",
            hint=f"the training split has {n} samples (0..{n - 1}) after the validation hold-out",
        )
    seen: set[int] = set()
    dup = next((i for i in out if i in seen or seen.add(i)), None)
    if dup is not None:
        raise UsageError(f"--forget {str(path)!r}: index {dup} appears twice", hint="list each index once")
    return torch.tensor(out, dtype=torch.int64)


def load_forget(path: Path, splits: Splits) -> ForgetSet:
    """Read a saved forget set and check it was made for these splits."""
    meta = tensorfile.read_metadata(path, "--forget")
    tensorfile.expect_kind(path, meta, S.FORGET_SET, "--forget")
    want = {
        S.DATASET: splits.info.name,
        S.SUBSET: str(splits.subset),
        S.TRAIN_SIZE: str(len(splits.train)),
        S.VAL_FRACTION: str(splits.val_fraction),
        S.SPLIT_SEED: str(splits.split_seed),
    }
    for key, value in want.items():
        made_for = meta.get(key, "0" if key == S.SUBSET else None)  # no subset key: the whole set
        if made_for != value:  # a set for other data is a spec that does not fit, as class:99 (exit 2)
            raise UsageError(
                f"--forget {str(path)!r} was made for {key[4:]} {shown(made_for)}, here it is {value!r}",
                hint="resolve the forget set again for this model's data",
            )
    idx = tensorfile.read_tensors(path).get("indices")
    if idx is None or idx.ndim != 1 or idx.dtype != torch.int64 or len(idx) == 0:
        raise ArtifactError(f"--forget {str(path)!r} holds no int64 list of indices", hint="save it again")
    if int(idx.min()) < 0 or int(idx.max()) >= len(splits.train) or len(idx.unique()) != len(idx):
        raise ArtifactError(
            f"--forget {str(path)!r} holds indices outside the training split, or one twice",
            hint="save it again",
        )
    cls = meta.get(S.CLASS, "")
    fs = ForgetSet(
        idx.to(torch.int64),
        meta.get(S.SPEC, str(path)),
        splits.info.name,
        len(splits.train),
        splits.val_fraction,
        splits.split_seed,
        int(cls) if cls else None,
        splits.subset,
    )
    if fs.sha256 != meta.get(S.SHA256):
        raise ArtifactError(
            f"--forget {str(path)!r} is corrupt: its indices do not match its sha256", hint="save it again"
        )
    return fs
