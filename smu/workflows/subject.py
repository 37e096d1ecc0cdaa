"""What a workflow works on, opened and checked in one place before any compute: the model (with its
mask), the splits it was trained on, the forget set and, where given, the reference model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from smu.data import Splits, check_fits, splits_of
from smu.data.forget import ForgetSet, resolve_forget
from smu.io import artifacts
from smu.io.artifacts import LoadedModel
from smu.methods.unlearning import METHODS


@dataclass
class Subject:
    loaded: LoadedModel
    splits: Splits
    forget: ForgetSet
    reference: LoadedModel | None = None


def open_subject(
    model: str | Path,
    forget: str | Path,
    *,
    device: torch.device,
    forget_seed: int = 0,
    mask: str | Path | None = None,
    reference: str | Path | None = None,
    data: str | Path | None = None,
    method: str | None = None,
) -> Subject:
    """Load ``model`` (with ``mask`` instead of its own, if given) and ``reference``, open the splits the
    model was trained on, check that the reference fits them and shares the model's validation split
    (forget indices mean the same images for both), and resolve the forget set, which ``method`` (if
    given) must be able to forget (UNSIR forgets classes only)."""
    loaded = artifacts.load_model(model, device, mask=mask)
    ref = artifacts.load_model(reference, device, option="--reference") if reference else None
    splits = splits_of(loaded, data, device)
    if ref is not None:
        check_fits(ref, splits, "--reference")
        ref.check_same_split(loaded)
    forget_set = resolve_forget(str(forget), splits, forget_seed)
    if method is not None:
        METHODS.get_spec(method).check_forget(forget_set)
    return Subject(loaded, splits, forget_set, ref)
