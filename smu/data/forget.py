"""Forget sets: which training samples to unlearn, resolved once and saved so every step uses the same ones.

Indices refer to the training split after the validation hold-out (``Splits.train``). Specs:

- ``class:C``    every training sample of class C (class-wise forgetting; TA then excludes class C)
- ``class:C:N``  N samples of class C, drawn with the forget seed
- ``subclass:NAME``  every training sample of sub-class NAME (cifar20, a two-level image folder): the
  model predicts the class, and TA and validation accuracy then leave the sub-class out
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

from smu.core.errors import ArtifactError, UnknownNameError, UsageError, shown
from smu.core.names import forget_kind
from smu.core.options import SEED_MAX
from smu.core.registry import suggest
from smu.data import ImageSet, Splits
from smu.io import schema as S
from smu.io import tensorfile

MAX_INDEX_FILE = 64 << 20
"""Largest indices:FILE read (ImageNet's 1.28 million indices take about 10 MB)."""
NEEDS_SUBCLASSES = "sub-classes come with cifar20, or with an imagefolder tree train/<coarse>/<fine>/"


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
    forget_subclass: int | None = None
    """Set when a whole sub-class is forgotten (its fine label): TA and validation accuracy then leave
    that sub-class out, and its test images are measured on their own."""
    subclass_name: str | None = None
    """That sub-class's name."""
    subclass_of: int | None = None
    """The class that sub-class belongs to (the label its images keep)."""

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
        """``data`` minus the forgotten class or sub-class (unchanged unless a whole class or sub-class is
        forgotten)."""
        if self.forget_class is not None:
            return data.subset((data.y != self.forget_class).nonzero().flatten())
        if self.forget_subclass is not None:
            return data.subset((self._fine_of(data) != self.forget_subclass).nonzero().flatten())
        return data

    def subclass_images(self, data: ImageSet) -> ImageSet | None:
        """The images of ``data`` of the forgotten sub-class; None unless a sub-class is forgotten."""
        if self.forget_subclass is None:
            return None
        return data.subset((self._fine_of(data) == self.forget_subclass).nonzero().flatten())

    def _fine_of(self, data: ImageSet) -> torch.Tensor:
        if data.fine is None:
            raise UsageError(
                f"--forget {shown(self.spec)} forgets a sub-class, but these images have no sub-classes",
                hint=NEEDS_SUBCLASSES,
            )
        return data.fine

    def summary(self) -> dict:
        out = {"spec": self.spec, "size": len(self), "sha256": self.sha256, "class": self.forget_class}
        if self.forget_subclass is not None:
            out["subclass"] = {
                "name": self.subclass_name,
                "index": self.forget_subclass,
                "class": self.subclass_of,
            }
        return out

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
        if self.forget_subclass is not None:  # only then: other sets' headers stay as they were
            meta |= {
                S.SUBCLASS: self.forget_subclass,
                S.SUBCLASS_NAME: self.subclass_name,
                S.SUBCLASS_OF: self.subclass_of,
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
    forget_class = fine = None
    if kind == "class":
        name, _, count = rest.partition(":")
        c = parse_class(name, splits)
        members = (labels == c).nonzero().flatten()
        if count:
            k = parse_count(count, len(members), f"class {c}", spec)
            idx = members[torch.randperm(len(members), generator=gen)[:k]]
        else:
            idx, forget_class = members, c
    elif kind == "subclass":
        fine = parse_subclass(rest, splits)
        idx = (splits.train.fine.cpu() == fine).nonzero().flatten()
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
        *subclass_fields(fine, splits),
    )


def subclass_fields(fine: int | None, splits: Splits) -> tuple[int | None, str | None, int | None]:
    """(index, name, class) of sub-class ``fine`` of these splits; all None for None."""
    if fine is None:
        return None, None, None
    return fine, splits.info.fine_classes[fine], splits.info.fine_parent[fine]


def parse_subclass(name: str, splits: Splits) -> int:
    """The fine label of sub-class ``name``: its name, CLASS/NAME where names repeat across classes, or
    its index."""
    info = splits.info
    if not info.fine_classes or splits.train.fine is None:
        raise UsageError(
            f"--forget {shown('subclass:' + name)} needs a dataset with sub-classes "
            f"(cifar20, or an imagefolder tree train/<coarse>/<fine>/)",
            hint=f"{info.name} has none; forget a whole class with class:C",
        )
    qualified = [f"{info.classes[c]}/{f}" for f, c in zip(info.fine_classes, info.fine_parent, strict=True)]
    if name in qualified:
        return qualified.index(name)
    named = [i for i, f in enumerate(info.fine_classes) if f == name]
    if len(named) > 1:
        raise UsageError(
            f"--forget subclass {shown(name)} names a sub-class of {len(named)} classes",
            hint="name one as CLASS/SUB-CLASS: " + ", ".join(repr(qualified[i]) for i in named),
        )
    if named:
        return named[0]
    if re.fullmatch(r"[0-9]{1,9}", name) and int(name) < len(info.fine_classes):
        return int(name)
    choices = list(dict.fromkeys(info.fine_classes))
    close = suggest(name, choices)
    listed = ", ".join(choices[:30]) + (f", ... ({len(choices)} in all)" if len(choices) > 30 else "")
    raise UnknownNameError(
        f"--forget subclass {shown(name)} is not a sub-class of {info.name}",
        hint=(f"did you mean {close!r}? " if close else "") + f"choices: {listed}",
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


def qualified_subclass(fine: int, splits: Splits) -> str:
    """The name ``subclass:`` takes for sub-class ``fine``: its own, or CLASS/NAME where it repeats."""
    info = splits.info
    name = info.fine_classes[fine]
    if info.fine_classes.count(name) == 1:
        return name
    return f"{info.classes[info.fine_parent[fine]]}/{name}"


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
    fine = load_subclass(path, meta, splits)
    fs = ForgetSet(
        idx.to(torch.int64),
        meta.get(S.SPEC, str(path)),
        splits.info.name,
        len(splits.train),
        splits.val_fraction,
        splits.split_seed,
        int(cls) if cls else None,
        splits.subset,
        *subclass_fields(fine, splits),
    )
    if fs.sha256 != meta.get(S.SHA256):
        raise ArtifactError(
            f"--forget {str(path)!r} is corrupt: its indices do not match its sha256", hint="save it again"
        )
    return fs


def load_subclass(path: Path, meta: dict[str, str], splits: Splits) -> int | None:
    """The sub-class a saved set forgets (None for other sets, and for files from before sub-classes),
    checked to be the same sub-class of these splits."""
    text = meta.get(S.SUBCLASS, "")
    if not text:
        return None
    fine, info = int(text), splits.info
    name = meta.get(S.SUBCLASS_NAME)
    if not info.fine_classes or splits.train.fine is None:
        raise UsageError(
            f"--forget {str(path)!r} forgets sub-class {shown(name)}, but {info.name} has no sub-classes",
            hint=NEEDS_SUBCLASSES,
        )
    here = (
        (info.fine_classes[fine], str(info.fine_parent[fine])) if 0 <= fine < len(info.fine_classes) else None
    )
    if here != (name, meta.get(S.SUBCLASS_OF)):
        raise UsageError(
            f"--forget {str(path)!r} was made for sub-class {shown(name)} ({fine}), "
            f"here it is {shown(here and here[0])}",
            hint="resolve the forget set again for this model's data",
        )
    return fine
