"""smu: prune image classifiers, unlearn data, and measure how well it worked.

One call per command, with the CLI's options as keyword arguments, returning what ``--json`` prints (in
full precision: ``--json`` rounds it)::

    import smu
    pruned = smu.prune(dataset="digits", arch="cnn", rate=0.9, epochs=6, lr=0.05, batch_size=64,
                       rewind_epoch=1, out="runs/p")
    gone = smu.unlearn(model=pruned["model"], forget="class:3", method="ga", epochs=5, lr=2e-3,
                       batch_size=64, out="runs/u")
    smu.evaluate(model=gone["model"], forget="class:3")["metrics"]["ua"]  # 98.5: the digit is forgotten

and the pieces underneath (``load_splits``, ``build_model``, ``fit``, ``load_model``, ``run_prune``,
``run_unlearn``, ``unlearning_metrics``, the method registries). Names load on first use, so
``import smu`` (and ``smu --version``) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

API = {
    # one call per command
    "prune": "smu.workflows.prune",
    "unlearn": "smu.workflows.unlearn",
    "evaluate": "smu.workflows.evaluate",
    "audit": "smu.workflows.audit",
    "tune": "smu.workflows.tune",
    "backdoor_cleanse": "smu.workflows.backdoor",
    "run": "smu.workflows.recipe",
    "demo": "smu.workflows.recipe",
    # the library underneath
    "ForgetSet": "smu.data.forget",
    "resolve_forget": "smu.data.forget",
    "load_splits": "smu.data",
    "splits_of": "smu.data",
    "LoadedModel": "smu.io.artifacts",
    "load_mask": "smu.io.artifacts",
    "load_model": "smu.io.artifacts",
    "save_model": "smu.io.artifacts",
    "TrainConfig": "smu.execution.engine",
    "accuracy": "smu.execution.engine",
    "fit": "smu.execution.engine",
    "predict": "smu.execution.engine",
    "resolve_device": "smu.execution.engine",
    "gap": "smu.evaluation",
    "unlearning_metrics": "smu.evaluation",
    "Mask": "smu.core.masks",
    "build_model": "smu.models",
    "PruneConfig": "smu.methods.pruning",
    "run_prune": "smu.workflows.prune",
    "UnlearnMethod": "smu.methods.unlearning",
    "make_config": "smu.methods.unlearning",
    "run_unlearn": "smu.workflows.unlearn",
}
__all__ = ["__version__", *API]


def __getattr__(name: str) -> Any:
    if name in API:
        value = getattr(importlib.import_module(API[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'smu' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
