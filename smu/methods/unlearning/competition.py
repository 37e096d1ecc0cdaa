"""Your own function with the NeurIPS 2023 Machine Unlearning competition's interface, as a method.

The competition (Kaggle, "NeurIPS 2023 - Machine Unlearning") asked for one function,
``unlearning(net, retain_loader, forget_loader, val_loader) -> net``, and hundreds of public solutions
follow it. ``--method FILE.py:FUNCTION`` or ``--method python:PACKAGE.MODULE:FUNCTION`` runs one
wherever a method runs. The registry resolves such a spec here (:func:`resolve`), and only a spec a
user gave (an option, a recipe's ``unlearn:`` key, an API argument): a name read from a file's
metadata never loads code.

What the function gets: a copy of the model in train mode on the run's device (the caller's model is
untouched until the function has returned a model that fits), and three ``torch.utils.data.DataLoader``
of ``(images, labels)`` on that device, images as floats in [0, 1] (smu's models normalise inside):
the retain set and the forget set, shuffled, and the validation split (the hold-out of
``--val-fraction``, never the test set) in order; batches of ``--batch-size`` (64, as the
competition's starting kit), the last partial batch kept, augmented only with ``--aug``. The shuffles
and augmentation draw from ``--seed``, and torch's, Python's and NumPy's global generators are seeded
with it just before the call, so one seed gives one model, byte for byte.

What smu does with what it returns: it must be an ``nn.Module`` with the model's state-dict keys and
shapes and its number of outputs; anything else is an error naming the function, and nothing is
written. A function that raises, or runs past ``--timeout`` (:mod:`smu.core.timelimit`), is reported
in one line. What it prints goes to stderr, so stdout stays smu's data (``--json``, ``-q``). The run
then treats the result as any method's: the NaN check, the mask re-applied (what it revived is
counted), RTE, the model saved with the spec as its method and the sha256 of the code.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import random
import re
import sys
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from smu.core.errors import SmuError, UsageError, shown
from smu.core.options import Checked, param
from smu.core.timelimit import TimeLimitExceeded, time_limit
from smu.core.usercode import DEBUG, FORMS, UserCodeError, load_function, said
from smu.data import ImageSet
from smu.data.batches import Augment, augment, to_float
from smu.io.files import sha256_bytes
from smu.methods.unlearning.base import Context, UnlearnData, UnlearnMethod

INTERFACE = "unlearning(net, retain_loader, forget_loader, val_loader) -> net"
PATTERN = "FILE.py:FUNCTION"
"""How listings and ``--help`` name every such method (the options are the same whatever the function)."""
HINT = "README: Your own unlearning function"


@dataclass
class CompetitionConfig(Checked):
    batch_size: int = param(64, ge=1)
    """Images per batch of the three loaders (the competition's starting kit used 64)."""
    augment: bool = param(False, flag="--aug/--no-aug")
    """Pad-and-random-crop and flip the retain and forget batches, where the dataset allows (the
    competition's loaders did not)."""
    timeout: float | None = param(None, gt=0)
    """Seconds the function may run; past them it is stopped and nothing is written (None: no limit)."""


def is_function(name: str) -> bool:
    """Whether ``name`` names a function (``FILE.py:FUNCTION``, ``python:MODULE:FUNCTION``): a registered
    method's name never holds a colon."""
    return ":" in name


def resolve(spec: str) -> UnlearnMethod | None:
    """The method that runs the function ``spec`` names, its code loaded now; None when ``spec`` is not
    a function's (a plain name is the registry's to look up)."""
    if not is_function(spec):
        return None
    user = load_function(spec, hint=HINT)
    try:
        inspect.signature(user.function).bind(None, None, None, None)
    except TypeError:
        raise UsageError(
            f"method {shown(spec)}: {user.function.__name__}{inspect.signature(user.function)} cannot be "
            "called with the competition's four arguments",
            hint=f"define it as {INTERFACE}",
        ) from None
    except ValueError:  # no signature to read (a builtin): the call will tell
        pass
    return UnlearnMethod(
        spec,
        f"your function {spec}: {INTERFACE}",
        CompetitionConfig,
        functools.partial(run, function=user.function, spec=spec),
        code={"spec": spec, "file": user.file, "sha256": user.sha256},
    )


def refuse(*args: Any) -> Any:
    raise UsageError(f"give {FORMS} to run your function", hint=HINT)


TEMPLATE = UnlearnMethod(
    PATTERN, f"your function with the competition's interface, {INTERFACE}", CompetitionConfig, refuse
)
"""Every function's options, under :data:`PATTERN`, for ``--help`` and option checks: nothing is loaded."""


def folder_name(spec: str) -> str:
    """``spec`` as one folder name (``tests/sol.py:fn`` -> ``tests-sol.py-fn``), for run folders."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", spec).strip("-.") or "function"
    return name if len(name) <= 80 else f"{name[-60:].lstrip('-.')}-{sha256_bytes(spec.encode())[:8]}"


class Images(Dataset):
    """An in-memory image set as ``(image in [0, 1], label)`` on its device; a batch is one gather."""

    def __init__(self, images: ImageSet):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return to_float(self.images.x[i]), self.images.y[i]

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        index = torch.as_tensor(indices, device=self.images.y.device)
        return list(zip(to_float(self.images.x[index]).unbind(), self.images.y[index].unbind(), strict=True))


def loader(
    images: ImageSet, cfg: CompetitionConfig, seed: int, stream: int, shuffle: bool, aug: Augment
) -> DataLoader:
    """One loader, its order and augmentation drawn from generators of its own (``stream``)."""
    order, crops = (torch.Generator().manual_seed(seed + (2 * stream + k) * 2**33) for k in (1, 2))

    def collate(samples: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = torch.stack([s[0] for s in samples]), torch.stack([s[1] for s in samples])
        return (augment(x, aug, crops) if cfg.augment and aug else x), y

    return DataLoader(Images(images), cfg.batch_size, shuffle=shuffle, generator=order, collate_fn=collate)


def run(
    model: nn.Module, data: UnlearnData, cfg: CompetitionConfig, ctx: Context, *, function: Any, spec: str
) -> nn.Module:
    """Call ``function`` on a copy of ``model``; load what it returns into ``model`` once it fits."""
    retain = loader(data.retain, cfg, ctx.seed, 0, True, data.aug)
    forget = loader(data.forget, cfg, ctx.seed, 1, True, data.aug)
    val = loader(data.splits.val, cfg, ctx.seed, 2, False, data.aug)
    net = copy.deepcopy(model).train()
    seed_everything(ctx.seed)
    try:  # what it prints goes to stderr: stdout is smu's data (--json, -q)
        with time_limit(cfg.timeout) as expired, contextlib.redirect_stdout(sys.stderr):
            returned = function(net, retain, forget, val)
    except TimeLimitExceeded:
        raise timed_out(spec, cfg.timeout) from None
    except SmuError:
        raise
    except Exception as e:
        raise UserCodeError(f"method {shown(spec)} raised {said(e)}", hint=DEBUG) from e
    if expired():  # it caught the stop and went on
        raise timed_out(spec, cfg.timeout)
    check_returned(spec, returned, model, data.retain.x[:1])
    model.load_state_dict(returned.state_dict())
    return model


def seed_everything(seed: int) -> None:
    import numpy as np

    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def timed_out(spec: str, seconds: float | None) -> UserCodeError:
    return UserCodeError(
        f"method {shown(spec)} ran past its --timeout of {seconds:g} s and was stopped",
        hint="nothing was written; raise --timeout, or make it faster",
    )


def check_returned(spec: str, net: Any, model: nn.Module, probe: torch.Tensor) -> None:
    """``net`` must be a module with ``model``'s state-dict keys and shapes and its number of outputs."""
    fix = "return the net it was given (changed in place) or one of its architecture; nothing was written"
    if not isinstance(net, nn.Module):
        what = "None" if net is None else f"a {type(net).__name__}"
        raise UserCodeError(f"method {shown(spec)} returned {what}, not the model (an nn.Module)", hint=fix)
    mine, theirs = model.state_dict(), net.state_dict()
    missing, extra = [k for k in mine if k not in theirs], [k for k in theirs if k not in mine]
    if missing or extra:
        lost = f"without {', '.join(missing[:3])}" if missing else f"with {', '.join(extra[:3])} added"
        raise UserCodeError(f"method {shown(spec)} returned a model of another architecture {lost}", hint=fix)
    want, got = outputs(model, probe), outputs(net, probe, spec)
    if got != want:
        shape = f"{got} outputs" if isinstance(got, int) else f"an output that is {got}"
        raise UserCodeError(f"method {shown(spec)} returned a model with {shape}, not {want}", hint=fix)
    for k, v in mine.items():
        if theirs[k].shape != v.shape:
            raise UserCodeError(
                f"method {shown(spec)} returned a model of another architecture: {k} is "
                f"{tuple(theirs[k].shape)}, not {tuple(v.shape)}",
                hint=fix,
            )


def outputs(model: nn.Module, probe: torch.Tensor, spec: str = "") -> Any:
    """What ``model`` outputs per image (its class count), in eval mode, its own mode kept."""
    was = model.training
    device = next(model.parameters(), probe).device
    try:
        with torch.no_grad():
            out = model.eval()(to_float(probe).to(device))
    except Exception as e:
        if not spec:
            raise
        failed = f"method {shown(spec)} returned a model that fails on an image: {said(e)}"
        raise UserCodeError(failed, hint=DEBUG) from e
    finally:
        model.train(was)
    if isinstance(out, torch.Tensor):
        return out.shape[1] if out.ndim == 2 else f"of shape {tuple(out.shape)}"
    return f"a {type(out).__name__}"
