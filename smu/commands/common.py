"""Options every command shares, defined once, and the error boundary at the command edge."""

from __future__ import annotations

import functools
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from smu import __version__
from smu.engine import TrainConfig
from smu.errors import SmuError
from smu.registry import field_help
from smu.ui import show_error

F = TypeVar("F", bound=Callable[..., Any])

TRAIN_HELP = field_help(TrainConfig)
DEFAULT_TRAIN = TrainConfig()

Device = Annotated[
    str,
    typer.Option(
        "--device",
        help="auto, cpu, cuda, cuda:N or mps; auto picks CUDA, then MPS, then CPU.",
        rich_help_panel="Run",
    ),
]
Amp = Annotated[
    bool,
    typer.Option(
        "--amp",
        help="bf16 autocast in training steps: faster on recent GPUs and on CPUs with bf16 "
        "instructions; results change by bf16 rounding (FF, IU and evaluation stay float32).",
        rich_help_panel="Run",
    ),
]
Compile = Annotated[
    bool,
    typer.Option(
        "--compile",
        help="torch.compile the model for training steps: pays off on long GPU runs (the first "
        "batches take longer).",
        rich_help_panel="Run",
    ),
]
Seed = Annotated[
    int,
    typer.Option(
        "--seed",
        help="Seed for initialisation, data order, augmentation and the validation split.",
        rich_help_panel="Run",
    ),
]
Out = Annotated[
    Path | None,
    typer.Option(
        "--out",
        "-o",
        help="Folder for the artifacts (default: "
        "runs/<command>-<dataset>-<arch>-<time>); must be empty unless --force.",
        rich_help_panel="Output",
    ),
]
Force = Annotated[
    bool, typer.Option("--force", help="Write into a non-empty --out folder.", rich_help_panel="Output")
]
Resume = Annotated[
    bool,
    typer.Option(
        "--resume",
        help="Continue an interrupted run in --out from its last "
        "checkpoint (the result is the same as an uninterrupted run).",
        rich_help_panel="Output",
    ),
]
Json = Annotated[
    bool,
    typer.Option(
        "--json", help="Print one JSON object on stdout instead of tables.", rich_help_panel="Output"
    ),
]
Quiet = Annotated[
    bool,
    typer.Option(
        "--quiet",
        "-q",
        help="Print only the paths written, one per line; no progress.",
        rich_help_panel="Output",
    ),
]
Dataset = Annotated[
    str | None,
    typer.Option(
        "--dataset",
        "-d",
        help="digits (embedded), fashion-mnist, mnist, "
        "cifar10, cifar100, svhn or imagefolder (default: digits, or the "
        "model's).",
        rich_help_panel="Data",
    ),
]
DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="Where dataset files are (or are downloaded to) (default: $SMU_DATA or ~/.cache/smu/data).",
        rich_help_panel="Data",
    ),
]
ValFraction = Annotated[
    float,
    typer.Option(
        "--val-fraction",
        help="Share of each training class held out for validation, as in the paper.",
        rich_help_panel="Data",
    ),
]
Arch = Annotated[
    str | None,
    typer.Option(
        "--arch",
        "-a",
        help="resnet18 (the paper's), resnet20, vgg16_bn, "
        "resnet50 or cnn (default: resnet18, or the model's).",
        rich_help_panel="Model",
    ),
]


def train_option(name: str, *flags: str) -> Any:
    """A typer.Option for a TrainConfig field, its help taken from the field's docstring."""
    return typer.Option(
        *(flags or (f"--{name.replace('_', '-')}",)), help=TRAIN_HELP[name], rich_help_panel="Training"
    )


Epochs = Annotated[int, train_option("epochs")]
Lr = Annotated[float, train_option("lr")]
BatchSize = Annotated[int, train_option("batch_size")]
Momentum = Annotated[float, train_option("momentum")]
WeightDecay = Annotated[float, train_option("weight_decay")]
Schedule = Annotated[str, train_option("schedule")]
DecreasingLr = Annotated[str, train_option("decreasing_lr")]
Warmup = Annotated[int, train_option("warmup")]
NoAug = Annotated[
    bool,
    typer.Option("--no-aug", help="Turn off pad-and-crop and flip augmentation.", rich_help_panel="Training"),
]


def parse_epochs(text: str, option: str = "--decreasing-lr") -> tuple[int, ...]:
    """'91,136' -> (91, 136)."""
    try:
        return tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not a comma-separated list of epochs, e.g. 91,136", param_hint=option
        ) from None


def train_config(
    epochs: int,
    lr: float,
    batch_size: int,
    momentum: float,
    weight_decay: float,
    schedule: str,
    decreasing_lr: str,
    warmup: int,
    no_aug: bool,
) -> TrainConfig:
    """The training options every training command shares, checked."""
    return TrainConfig(
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        momentum=momentum,
        weight_decay=weight_decay,
        schedule=schedule,
        decreasing_lr=parse_epochs(decreasing_lr),
        warmup=warmup,
        augment=not no_aug,
    ).validate()


def default_out(command: str, *parts: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / "-".join([command, *[p for p in parts if p], stamp])


def command_line(ctx: typer.Context) -> str:
    """The command as options, for the artifacts' headers (the same options give the same string)."""
    words = [ctx.command_path]
    for key, value in sorted(ctx.params.items()):
        if value is None or value is False or key in ("json_out", "quiet", "force", "out", "resume"):
            continue
        flag = "--" + key.rstrip("_").replace("_", "-")
        words.append(flag if value is True else f"{flag} {value}")
    return " ".join(words)


def jsonable_params(ctx: typer.Context) -> dict[str, Any]:
    """The parsed options, paths as strings, for manifest.json."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in ctx.params.items()}


def versions(device: Any) -> dict[str, str]:
    import torch

    return {
        "smu": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if getattr(device, "type", "") == "cuda"
        else platform.processor() or platform.machine(),
    }


def errors_handled(fn: F) -> F:
    """Turn SmuError into one line on stderr and its exit code; a traceback only with SMU_DEBUG=1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SmuError as e:
            if os.environ.get("SMU_DEBUG") == "1":
                raise
            show_error(e)
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            print("Interrupted.", file=sys.stderr)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]
