"""What every command shares: the options spelled the same way everywhere, the run folder and its
manifest, and the provenance string written into every artifact.

A command is one library function (``smu.unlearn(...)`` is ``smu unlearn``): keyword arguments named
like the CLI options, returning the dict ``--json`` prints. ``smu.commands.wrap.cli`` turns it into a
Typer command, with the options ``smu.commands.generate`` makes from the hyper-parameter dataclasses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import platform
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from smu import __version__
from smu.commands.generate import option_flag, show
from smu.options import SEED_MAX, flag_of

# ── Options every command spells the same way ─────────────────────────────────────────────────────

Model = Annotated[
    Path,
    typer.Option(
        "--model",
        help="model.safetensors to work on (a sparse model's mask is found beside it).",
        rich_help_panel="Model",
    ),
]
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
SyncBn = Annotated[
    bool,
    typer.Option(
        "--sync-bn",
        help="Under torchrun on GPUs: BatchNorm normalises with the statistics of the global batch "
        "(SyncBatchNorm), as one process would; without it each rank uses its own part's.",
        rich_help_panel="Run",
    ),
]
Seed = Annotated[
    int,
    typer.Option(
        "--seed",
        min=0,
        max=SEED_MAX,
        help="Seed for initialisation, data order, augmentation and the validation split.",
        rich_help_panel="Run",
    ),
]
Out = Annotated[
    Path | None,
    typer.Option(
        "--out",
        "-o",
        help="Folder for the artifacts (default: runs/<command>-<dataset>-<arch>-<time>); must be empty "
        "unless --force.",
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
        help="Continue an interrupted run in --out from its last checkpoint (the result is the same as an "
        "uninterrupted run).",
        rich_help_panel="Output",
    ),
]
Dataset = Annotated[
    str | None,
    typer.Option(
        "--dataset",
        "-d",
        help="digits (embedded), fashion-mnist, mnist, cifar10, cifar100, svhn or imagefolder "
        "(default: digits, "
        "or the model's).",
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
Subset = Annotated[
    int,
    typer.Option(
        "--subset",
        help="Use this many images of the official training set, drawn at random with --seed (the "
        "hold-out is taken from them; the test set stays whole); 0 = all.",
        rich_help_panel="Data",
    ),
]
Arch = Annotated[
    str | None,
    typer.Option(
        "--arch",
        "-a",
        help="resnet18 (the paper's), resnet20, vgg16_bn, resnet50, cnn or cnn_gn "
        "(default: resnet18, or the model's).",
        rich_help_panel="Model",
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

# "\\[": Typer's help reads [...] as Rich markup, and would drop "[ray]".
ExecutorName = Annotated[
    str,
    typer.Option(
        "--executor",
        help="serial: one step after another in this process; ray: every step as a Ray task once the steps "
        "it needs are done, on a local Ray or the cluster at --address (pip install 'smu\\[ray]'). The run "
        "folder must then be on a filesystem every Ray worker sees.",
        rich_help_panel="Executor",
    ),
]
Address = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="--executor ray: auto (the cluster `ray start` made on this machine), HOST:PORT, or "
        "ray://HOST:PORT (Ray Client) (default: $RAY_ADDRESS, or a cluster running here, else a new local "
        "Ray).",
        rich_help_panel="Executor",
    ),
]
CpusPerStep = Annotated[
    float | None,
    typer.Option(
        "--cpus-per-step",
        help="--executor ray: CPUs each step holds, and its torch threads (default: 1 where steps get a "
        "GPU; else this machine's torch threads, so that the report equals a serial run here).",
        rich_help_panel="Executor",
    ),
]
GpusPerStep = Annotated[
    float | None,
    typer.Option(
        "--gpus-per-step",
        help="--executor ray: GPUs each step holds (default: 1 where the cluster has GPUs, else 0; 0.5 "
        "puts two steps on a GPU).",
        rich_help_panel="Executor",
    ),
]


def refuse_unknown(options: dict[str, Any], known: set[str], command: str) -> None:
    """An option (keyword) no part of the command takes is an error with the closest one, not ignored."""
    from smu.errors import UsageError
    from smu.registry import suggest

    for key in options:
        if key not in known:
            close = suggest(key, sorted(known))
            guess = f" (did you mean {flag_of(close)}?)" if close else ""
            raise UsageError(f"unknown option {flag_of(key)}{guess}", hint=f"smu {command} --help lists them")


def default_out(command: str, *parts: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / "-".join([command, *[p for p in parts if p], stamp])


OUTPUT_OPTIONS = (
    "out",
    "force",
    "resume",
    "reporter",
    "executor",
    "address",
    "cpus_per_step",
    "gpus_per_step",
)


def command_line(
    command: str,
    values: dict[str, Any],
    *configs: Any,
    prefix: Callable[[Any, str], str] = lambda cfg, name: "",
) -> str:
    """The command as options, for the artifacts' headers: the command's own ``values``, then every field
    of each resolved config (None skipped; ``prefix(config, field)`` before a flag, as backdoor-cleanse's
    --unlearn-epochs), so the same run gives the same string whether it came from the CLI or the API."""
    words = [command]
    for key, value in sorted(values.items()):
        if value is None or value is False or key in OUTPUT_OPTIONS:
            continue
        flag = flag_of(key.rstrip("_"))
        words.append(flag if value is True else f"{flag} {show(value)}")
    for cfg in (c for c in configs if c is not None):
        for f in dataclasses.fields(cfg):
            value, flags = (
                getattr(cfg, f.name),
                option_flag(type(cfg), f.name, prefix(cfg, f.name)).split("/"),
            )
            if isinstance(value, bool):
                words += [flags[0]] if value else flags[1:]
            else:
                words.append(f"{flags[0]} {show(value)}")
    return " ".join(words)


def jsonable(values: dict[str, Any]) -> dict[str, Any]:
    """Options for manifest.json: paths and tuples as JSON values, the reporter left out."""
    return {
        k: str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v
        for k, v in values.items()
        if k != "reporter"
    }


def versions(device: Any) -> dict[str, Any]:
    import torch

    from smu.execution import distributed

    ranks = {"ranks": distributed.world_size()} if distributed.active() else {}
    return {
        "smu": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if getattr(device, "type", "") == "cuda"
        else platform.processor() or platform.machine(),
        **ranks,
    }


@contextlib.contextmanager
def run_folder(
    out: Path, *, force: bool, amp: bool = False, compile: bool = False, sync_bn: bool = False
) -> Iterator[Path]:
    """The run folder (refused when it holds something, unless ``force``; removed again if this run made
    it and failed), with the training runtime (--amp, --compile, --sync-bn) set for everything inside."""
    from smu.engine import runtime
    from smu.io import artifacts

    with runtime(amp, compile, sync_bn), artifacts.run_dir(out, force) as folder:
        yield folder


def write_manifest(
    out: Path, command: str, options: dict[str, Any], result: dict[str, Any], device: Any
) -> str:
    """manifest.json beside the artifacts: what ran, with which options and versions, and what it gave."""
    from smu.io import artifacts

    manifest = {
        "command": command,
        "options": jsonable(options),
        "result": result,
        "versions": versions(device),
    }
    return str(artifacts.write_manifest(out, manifest))
