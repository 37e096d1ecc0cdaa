"""The metadata of smu's safetensors files: every key, its type and meaning, in one place.

Every writer and reader uses these names; docs/ARTIFACTS.md is generated from :data:`KEYS` (a test
keeps it in sync), so another tool can read a smu file with plain ``safetensors``. All values are
strings in the file (the safetensors header allows nothing else); the type says how to read them.
"""

from __future__ import annotations

import json
import math
import re

MODEL, MASK, FORGET_SET, CHECKPOINT = "model", "mask", "forget-set", "checkpoint"
SALIENCY, AUDIT, MEMBER_STATS = "saliency", "audit", "member-stats"
ALL = (MODEL, MASK, FORGET_SET, CHECKPOINT, SALIENCY, AUDIT, MEMBER_STATS)


class Key(str):
    """A metadata key: the string itself, plus what the docs say about it."""

    kinds: tuple[str, ...]
    type: str
    meaning: str

    def __new__(cls, name: str, type_: str, kinds: tuple[str, ...], meaning: str) -> Key:
        key = super().__new__(cls, name)
        key.type, key.kinds, key.meaning = type_, kinds, meaning
        return key


KEYS: list[Key] = []


def key(name: str, type_: str, kinds: tuple[str, ...], meaning: str) -> Key:
    KEYS.append(Key(name, type_, kinds, meaning))
    return KEYS[-1]


# Every file
FORMAT = key("smu.format", "int", ALL, "version of this schema; this smu writes 1")
KIND = key("smu.kind", "str", ALL, "what the file is: " + ", ".join(ALL))

# What a model is and what it was made for (masks repeat the first four, so a mismatch is caught)
ARCH = key(
    "smu.arch",
    "str",
    (MODEL, MASK, SALIENCY, AUDIT),
    "architecture spec: resnet18, vit, torchvision:NAME, timm:NAME@SIZE, ...",
)
DATASET = key("smu.dataset", "str", (MODEL, MASK, FORGET_SET, SALIENCY, AUDIT), "dataset name")
NUM_CLASSES = key("smu.num_classes", "int", (MODEL, MASK, SALIENCY, AUDIT), "classes of the classifier head")
INPUT_SHAPE = key(
    "smu.input_shape", "CxHxW", (MODEL, MASK, SALIENCY, AUDIT), "image shape the model takes, e.g. 3x32x32"
)
SEED = key("smu.seed", "int", (MODEL, MASK, MEMBER_STATS), "--seed of the run that wrote it")
VAL_FRACTION = key(
    "smu.val_fraction",
    "float",
    (MODEL, FORGET_SET, AUDIT),
    "share of each training class held out for validation",
)
SPLIT_SEED = key(
    "smu.split_seed",
    "int",
    (MODEL, FORGET_SET, AUDIT),
    "seed of that hold-out: forget indices refer to its split",
)
SUBSET = key(
    "smu.subset",
    "int",
    (MODEL, FORGET_SET, AUDIT),
    "images drawn from the official training set before the hold-out (--subset; absent: all of them)",
)
COMMAND = key(
    "smu.command",
    "str",
    (MODEL, MASK),
    "the shell line that wrote it and makes it again (a recipe step: its run's smu run line)",
)
PARENT = key(
    "smu.parent",
    "sha256",
    (MODEL, SALIENCY, AUDIT),
    "sha256 of the file it was made from (empty for a new model)",
)

# Sparsity
SPARSITY = key(
    "smu.sparsity", "float", (MODEL, MASK), "fraction of the masked weights that are 0 (0 = dense)"
)
SCOPE = key("smu.scope", "str", (MODEL, MASK), "weights the mask covers: conv or all (conv and linear)")
MASK_FILE = key("smu.mask", "file", (MODEL,), "a sparse model's mask, a file name beside the model")
MASK_SHA256 = key("smu.mask_sha256", "sha256", (MODEL,), "sha256 of that mask file, checked on load")

# Training and pruning history
EPOCH = key("smu.epoch", "int", (MODEL, CHECKPOINT), "epochs trained when it was written")
REWIND = key("smu.rewind", "file", (MODEL,), "a dense model's rewind checkpoint, a file name beside it")
REWIND_EPOCH = key("smu.rewind_epoch", "int", (MODEL,), "the epoch of that rewind checkpoint")
PRUNE_METHOD = key("smu.prune.method", "str", (MODEL,), "pruning method of the run")
PRUNE_ROUND = key("smu.prune.round", "int", (MODEL,), "pruning round that produced it (IMP: 1..--times)")
PRUNE_RATE = key("smu.prune.rate", "float", (MODEL,), "--rate of the pruning run")
PRUNE_REWIND_EPOCH = key(
    "smu.prune.rewind_epoch", "int", (MODEL,), "epoch rewound to after pruning (empty when pruned at init)"
)
CHECKPOINT_KEY = key(
    "smu.key",
    "str",
    (CHECKPOINT,),
    "hash of everything that decides the run; another run's checkpoint is ignored",
)

# Unlearning
UNLEARN_METHOD = key("smu.unlearn.method", "str", (MODEL,), "unlearning method that produced the model")
UNLEARN_CONFIG = key("smu.unlearn.config", "json", (MODEL,), "that method's hyper-parameters")
FORGET_SHA256 = key(
    "smu.forget.sha256",
    "sha256",
    (MODEL, SALIENCY, AUDIT, MEMBER_STATS),
    "hash of the forget set's indices (as its smu.sha256)",
)
FORGET_SPEC = key("smu.forget.spec", "str", (MODEL,), "the forget set's spec, e.g. class:3 or random:10%")

SALIENCY_RATIO = key(
    "smu.saliency.ratio", "float", (SALIENCY,), "fraction of the weights SalUn may change (1 = salient)"
)

AUDIT_METHOD = key("smu.audit.method", "str", (AUDIT,), "the audited unlearning method")
AUDIT_STATISTIC = key("smu.audit.statistic", "str", (AUDIT,), "the per-example statistic ε was computed on")
AUDIT_SIDES = key("smu.audit.sides", "str", (AUDIT,), "which threshold attacks F tried: both or above")
AUDIT_MODELS = key("smu.audit.models", "int", (AUDIT,), "models in each ensemble (N)")

# Forget sets (one int64 tensor "indices", sorted, into the training split)
SPEC = key(
    "smu.spec",
    "str",
    (FORGET_SET,),
    "how the set was chosen: class:C, subclass:NAME, random:P%, indices:FILE, poison:...",
)
SIZE = key("smu.size", "int", (FORGET_SET,), "number of indices")
SHA256 = key("smu.sha256", "sha256", (FORGET_SET,), "sha256 of the indices as little-endian int64")
TRAIN_SIZE = key("smu.train_size", "int", (FORGET_SET,), "size of the training split the indices refer to")
CLASS = key("smu.class", "int", (FORGET_SET,), "the forgotten class for class-wise forgetting, else empty")
SUBCLASS = key(
    "smu.subclass",
    "int",
    (FORGET_SET,),
    "the forgotten sub-class (its fine label) for sub-class forgetting (subclass:NAME); absent otherwise",
)
SUBCLASS_NAME = key(
    "smu.subclass.name", "str", (FORGET_SET,), "that sub-class's name, checked against the data on load"
)
SUBCLASS_OF = key("smu.subclass.class", "int", (FORGET_SET,), "the class that sub-class belongs to")

# Backdoor study and imports
POISON = key("smu.poison", "str", (MODEL,), "a Trojan model's poisoning spec (trigger, target, amount)")
POISON_SHA256 = key("smu.poison.sha256", "sha256", (MODEL,), "hash of the poisoned indices")
IMPORTED_FROM = key("smu.imported_from", "str", (MODEL,), "file name of the checkpoint smu import read")

MODEL_IDENTITY = (ARCH, DATASET, NUM_CLASSES, INPUT_SHAPE)
"""What a model file must say about itself; a mask repeats it."""
SPLIT = (VAL_FRACTION, SPLIT_SEED, SUBSET)
"""The validation hold-out a model was trained with: forget indices only mean the same images under it."""

LIMITS = {
    NUM_CLASSES: (1, 1_000_000),
    SIZE: (0, 10**12),
    TRAIN_SIZE: (0, 10**12),
    SUBSET: (0, 10**12),
    VAL_FRACTION: (0.0, 0.99),
    SPARSITY: (0.0, 1.0),
    SALIENCY_RATIO: (0.0, 1.0),
}
"""The values a number key can take (bounds included); other number keys need only be numbers."""
REQUIRED = {MODEL: MODEL_IDENTITY}
"""Keys a file of this kind cannot be used without."""


def problems(meta: dict[str, str]) -> list[str]:
    """What is wrong with a header: a required key missing, or a key whose value is not of its type (an
    empty value stands for "none" and is allowed, except for the required keys). Values are quoted short,
    so a hostile header gives a short message."""
    from smu.core.errors import shown

    found = [f"no {k}" for k in REQUIRED.get(meta.get(KIND, ""), ()) if not meta.get(k)]
    for k in KEYS:
        value = meta.get(k)
        if value and not fits(k, value):
            bounds = f" from {LIMITS[k][0]:,} to {LIMITS[k][1]:,}" if k in LIMITS else ""
            found.append(f"{k} is {shown(value)}, not {TYPES[k.type]}{bounds}")
    return found


TYPES = {
    "int": "an integer",
    "float": "a finite number",
    "sha256": "a sha256 (64 hex digits)",
    "file": "a file name beside it",
    "CxHxW": "channels x height x width (e.g. 3x32x32)",
    "json": "JSON",
    "str": "text",
}


def fits(k: Key, value: str) -> bool:
    if k.type == "int":
        low, high = LIMITS.get(k, (-(1 << 63), (1 << 63) - 1))
        return re.fullmatch(r"-?[0-9]{1,19}", value) is not None and low <= int(value) <= high
    if k.type == "float":
        try:
            low, high = LIMITS.get(k, (-math.inf, math.inf))
            return len(value) < 40 and math.isfinite(float(value)) and low <= float(value) <= high
        except ValueError:
            return False
    if k.type == "sha256":
        return re.fullmatch(r"[0-9a-f]{64}", value) is not None
    if k.type == "file":  # a name, never a path: a header must not point smu anywhere but beside the file
        return len(value) <= 255 and value not in (".", "..") and not re.search(r"[/\\\x00]", value)
    if k.type == "CxHxW":
        dims = re.fullmatch(r"([0-9]{1,3})x([0-9]{1,5})x([0-9]{1,5})", value)
        return (
            dims is not None and 1 <= int(dims[1]) <= 64 and all(1 <= int(d) <= 16384 for d in dims.groups())
        )
    if k.type == "json":
        try:
            json.loads(value)
            return True
        except (ValueError, RecursionError):
            return False
    return True
