"""The options every command spells the same way: a Typer type per option (flag, help, panel), which
``smu.commands.wrap.cli`` lays over the parameter of the same name of the workflow a command runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from smu.options import SEED_MAX

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
