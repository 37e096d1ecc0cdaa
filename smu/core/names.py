"""What a user types, readable without torch: the names of datasets, architectures, devices, scopes and
built-in methods, the syntax of an architecture spec and of a forget-set spec.

The CLI checks a command line against these before it imports torch (``smu.cli.precheck``), so a typo
costs a fraction of a second instead of torch's import. The registries that build things are keyed by
the same names; where a registry cannot read its names from here (its entries are functions of modules
that import torch), ``tests/cli/test_precheck.py`` proves the two equal.
"""

from __future__ import annotations

from pathlib import Path

from smu.core.errors import UsageError, shown
from smu.core.options import SPEC_HELP

DATASETS = ("digits", "fashion-mnist", "mnist", "cifar10", "cifar100", "cifar20", "svhn", "imagefolder")
"""The keys of ``smu.data.sources.SOURCES``, in its order."""
ARCHS = ("resnet18", "resnet20", "vgg16_bn", "resnet50", "cnn", "cnn_gn", "vit", "swin_t")
"""The keys of ``smu.models.ARCHS``, in its order."""
LIBRARIES = ("torchvision", "timm")
"""The libraries an arch spec may name before a colon (``torchvision:resnet18``): the keys of
``smu.models.external.LIBRARIES``."""
MAX_SIDE = 4096
"""Largest ``@SIZE``: a file's header names its spec, and a model built for a huge side would be huge."""
DEVICES = ("cpu", "cuda", "mps")
"""The device kinds ``--device`` takes besides ``auto`` (``cuda:N`` names a GPU)."""
SCOPES = {
    "conv": "the convolution weights (the paper's scope for CNNs)",
    "linear": "a transformer's attention and MLP projections: every linear weight but the classifier head",
    "all": "convolution and linear weights, the head and attention projections included",
}
"""What global pruning ranks, by scope name (``smu.core.masks`` finds each scope's weights)."""

PRUNING_GROUP = "smu.pruning"
"""The entry-point group of pruning plug-ins."""
PRUNING_METHODS = ("omp", "imp", "synflow", "random")
"""The built-in pruning methods, in the registry's order."""
PRUNING_ITERATIVE = ("imp",)
"""The built-ins that prune in rounds (``--times``)."""
PRUNING_AT_INIT = ("synflow", "random")
"""The built-ins that prune at initialisation: no dense training first, so nothing to rewind to."""
UNLEARNING_GROUP = "smu.unlearning"
"""The entry-point group of unlearning plug-ins."""
UNLEARNING_METHODS = (
    *("retrain", "ft", "ga", "ff", "iu", "l1-sparse"),
    *("rl", "salun", "scrub", "neggrad+", "ssd", "boundary-shrink", "boundary-expand"),
    *("bad-teacher", "unsir", "amnesiac", "lf-ssd", "jit", "none"),
)
"""The built-in unlearning methods, in the registry's order."""
METRICS_GROUP = "smu.metrics"
"""The entry-point group of metric plug-ins."""
METRICS = ("zrf", "js", "activation_distance", "weight_distance")
"""The built-in extra metrics (``--metrics``, a recipe's ``metrics:``), in the registry's order."""


def plugin_names(group: str) -> list[str]:
    """The names of the plug-ins of entry-point ``group``, read from the installed packages' metadata
    without importing them (an entry point's name is its method's name: the registry skips a plug-in
    whose names differ)."""
    from importlib.metadata import entry_points

    return [entry.name for entry in entry_points(group=group)]


def split_arch(spec: str) -> tuple[str | None, str, int | None]:
    """``(library, name, size)`` of an architecture spec (``resnet18``, ``torchvision:resnet18@224``): the
    syntax only; ``smu.models.parse_arch`` then checks the name against the library's."""
    text, size = spec, None
    if "@" in spec:
        spec, _, side = spec.partition("@")
        if not side.isdigit() or not 1 <= int(side) <= MAX_SIDE:
            raise UsageError(
                f"--arch {shown(text)}: the size after @ must be an integer from 1 to {MAX_SIDE}",
                hint="e.g. torchvision:vit_b_16@224",
            )
        size = int(side)
    library, _, name = spec.rpartition(":")
    if library and library not in LIBRARIES:
        raise UsageError(
            f"--arch {shown(text)}: unknown library {shown(library)}",
            hint="use torchvision:NAME or timm:NAME",
        )
    return library or None, name, size


def is_file(path: str) -> bool:
    """``Path(path).is_file()``, false for what cannot name a file (too long, a NUL byte)."""
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False


def whole_class(spec: str) -> bool:
    """Whether a ``--forget`` spec names a whole class or sub-class (``class:C``, ``subclass:NAME``), read
    from the spec alone: a saved set or a list of indices may hold one too, but only loading tells."""
    kind, _, rest = spec.strip().partition(":")
    return kind == "subclass" or (kind == "class" and ":" not in rest)


def forget_kind(spec: str) -> tuple[str, str]:
    """``(kind, rest)`` of a ``--forget`` spec: ``class``, ``subclass`` or ``random`` (rest: what follows
    the colon, checked against the data later), ``indices`` (rest: the file of indices, which must exist) or
    ``file`` (a saved forget.safetensors); anything else is a usage error."""
    spec = spec.strip()
    kind, _, rest = spec.partition(":")
    if kind in ("class", "subclass", "random") and rest:
        return kind, rest
    if kind == "indices" and rest:
        if not is_file(rest):
            raise UsageError(f"--forget indices file {shown(rest)} does not exist", hint="check the path")
        return kind, rest
    if is_file(spec):
        return "file", spec
    raise UsageError(f"--forget {shown(spec)} is not a forget-set spec", hint=f"use {SPEC_HELP}")
