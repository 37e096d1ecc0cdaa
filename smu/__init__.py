"""smu: prune image classifiers, unlearn data, and measure how well it worked.

The Python API behind the CLI::

    from smu import load_splits, build_model, load_model, run_prune, TrainConfig, PruneConfig
"""

__version__ = "0.1.0"

from smu.artifacts import LoadedModel, load_mask, load_model, save_model  # noqa: E402
from smu.data import load_splits  # noqa: E402
from smu.data.forget import ForgetSet, resolve_forget  # noqa: E402
from smu.engine import TrainConfig, accuracy, fit, predict, resolve_device  # noqa: E402
from smu.evaluation import gap, unlearning_metrics  # noqa: E402
from smu.masks import Mask  # noqa: E402
from smu.models import build_model  # noqa: E402
from smu.pruning import PruneConfig  # noqa: E402
from smu.pruning.pipeline import run_prune  # noqa: E402

__all__ = [
    "ForgetSet",
    "LoadedModel",
    "Mask",
    "PruneConfig",
    "TrainConfig",
    "__version__",
    "accuracy",
    "build_model",
    "fit",
    "gap",
    "load_mask",
    "load_model",
    "load_splits",
    "predict",
    "resolve_device",
    "resolve_forget",
    "run_prune",
    "save_model",
    "unlearning_metrics",
]
