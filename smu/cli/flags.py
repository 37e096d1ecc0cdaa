"""Every option of every command, spelled once: a Typer type per option (flag, help, panel), which
``smu.cli.wrap.cli`` lays over the parameter of the same name of the workflow a command runs. The
options made from method and training dataclasses are generated (``smu.cli.generate``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from smu.core.options import SEED_MAX, SPEC_HELP

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
Threads = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        help="torch's CPU threads (default: the physical cores this process may use; $OMP_NUM_THREADS if "
        "set; under torchrun the cores shared among its processes). On a machine busy with other work "
        "fewer are faster. Results differ in the last bits with the count; the manifest records it.",
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
        help="digits (embedded), fashion-mnist, mnist, cifar10, cifar100, cifar20 (CIFAR-100's images, "
        "20 super-classes), svhn or imagefolder (default: digits, or the model's).",
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
        help="resnet18 (the paper's), resnet20, vgg16_bn, resnet50, cnn, cnn_gn, vit, swin_t, "
        "torchvision:NAME or timm:NAME; @SIZE resizes the images to SIZE inside the model "
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
        help="serial: one step after another in this process; local: steps side by side in worker processes "
        "on this machine, one per core (or per GPU), each started once the steps it needs are done; ray: "
        "every step as a Ray task, on a local Ray or the cluster at --address (pip install 'smu\\[ray]'), "
        "the run folder on a filesystem every Ray worker sees.",
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
        help="--executor local or ray: CPUs each step holds, and its torch threads (local: default 1, and "
        "as many workers as fit in the physical cores; ray: default 1 where steps get a GPU, else this "
        "machine's torch threads, so that the report equals a serial run here).",
        rich_help_panel="Executor",
    ),
]
GpusPerStep = Annotated[
    float | None,
    typer.Option(
        "--gpus-per-step",
        help="--executor local or ray: GPUs each step holds (default: 1 where the machine or cluster has "
        "GPUs, else 0; 0.5 puts two steps on a GPU).",
        rich_help_panel="Executor",
    ),
]

Log = Annotated[
    list[str] | None,
    typer.Option(
        "--log",
        help="Send parameters, per-epoch curves, final metrics and files to an experiment tracker: "
        "tensorboard, mlflow, wandb or csv (repeat for several). A failing tracker is one warning; the "
        "run goes on. README: Experiment tracking.",
        rich_help_panel="Tracking",
    ),
]
LogDir = Annotated[
    Path | None,
    typer.Option(
        "--log-dir",
        help="Where TensorBoard's event files and the CSV files go (default: the run folder).",
        rich_help_panel="Tracking",
    ),
]
TrackingUri = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow's store or server (default: $MLFLOW_TRACKING_URI, else mlflow.db beside the run "
        "folder, which needs no server).",
        rich_help_panel="Tracking",
    ),
]
WandbProject = Annotated[
    str | None,
    typer.Option(
        "--wandb-project",
        help="The W&B project (default: $WANDB_PROJECT, else smu).",
        rich_help_panel="Tracking",
    ),
]
WandbEntity = Annotated[
    str | None,
    typer.Option("--wandb-entity", help="The W&B entity (team or user).", rich_help_panel="Tracking"),
]
LogModels = Annotated[
    bool,
    typer.Option(
        "--log-models",
        help="Send the model files to the trackers too (they can be large).",
        rich_help_panel="Tracking",
    ),
]

# Groups of the options above that several commands take together (a command's table adds its own).
DATA = {"arch": Arch, "dataset": Dataset, "data": DataDir, "val_fraction": ValFraction, "subset": Subset}
"""What to train on, for the commands that train a model from scratch."""
RUNTIME = {"device": Device, "amp": Amp, "compile": Compile, "sync_bn": SyncBn, "threads": Threads}
"""Where and how training runs."""
TRACKING = {
    "log": Log,
    "log_dir": LogDir,
    "tracking_uri": TrackingUri,
    "wandb_project": WandbProject,
    "wandb_entity": WandbEntity,
    "log_models": LogModels,
}
"""Which experiment trackers hear of the run (``smu.loggers``)."""
EXECUTOR = {
    "executor": ExecutorName,
    "address": Address,
    "cpus_per_step": CpusPerStep,
    "gpus_per_step": GpusPerStep,
}
"""Which executor runs a plan's steps, for the commands that run many."""


# ── smu unlearn (and the commands that run a method) ──────────────────────────────────────────────

Method = Annotated[
    str,
    typer.Option(
        "--method",
        "-m",
        help="The unlearning method (the methods and their options are listed below; --method X --help shows "
        "only X's).",
        rich_help_panel="Method",
    ),
]
NoEval = Annotated[
    bool, typer.Option("--no-eval", help="Skip the evaluation after unlearning.", rich_help_panel="Metrics")
]

# ── smu eval (and the commands that take a forget set) ────────────────────────────────────────────

Forget = Annotated[
    str, typer.Option("--forget", "-f", help=f"The forget set: {SPEC_HELP}.", rich_help_panel="Forget set")
]
ForgetSeed = Annotated[
    int,
    typer.Option(
        "--forget-seed",
        min=0,
        max=SEED_MAX,
        help="Seed that draws random and class:C:N forget sets.",
        rich_help_panel="Forget set",
    ),
]
MiaFeatures = Annotated[
    str,
    typer.Option(
        "--mia-features",
        help="Comma-separated attack features: confidence, entropy, m_entropy, prob, correctness; "
        "the first is "
        "MIA-Efficacy.",
        rich_help_panel="Metrics",
    ),
]
Reference = Annotated[
    Path | None,
    typer.Option(
        "--reference",
        "-r",
        help="A model to compare with, normally the one retrained without the forget set.",
        rich_help_panel="Metrics",
    ),
]
Mask = Annotated[
    Path | None,
    typer.Option("--mask", help="Apply this mask instead of the model's own.", rich_help_panel="Model"),
]
SaveForget = Annotated[
    Path | None,
    typer.Option(
        "--save-forget",
        help="Write the resolved forget set here (forget.safetensors) for later commands.",
        rich_help_panel="Forget set",
    ),
]
Privacy = Annotated[
    bool,
    typer.Option(
        "--privacy",
        help="Also report MIA-Privacy (attack accuracy on held-out halves of retain and test).",
        rich_help_panel="Metrics",
    ),
]
Metrics = Annotated[
    str | None,
    typer.Option(
        "--metrics",
        help="Comma-separated extra metrics on the forget set: zrf, js, activation_distance, "
        "weight_distance, or a plug-in's (smu eval --help lists them and what each needs: all but zrf "
        "compare with --reference).",
        rich_help_panel="Metrics",
        show_default=False,
    ),
]
MetricSeed = Annotated[
    int,
    typer.Option(
        "--metric-seed",
        min=0,
        max=SEED_MAX,
        help="Seed that draws the random model of the same architecture ZRF compares with.",
        rich_help_panel="Metrics",
    ),
]

# ── smu prune ─────────────────────────────────────────────────────────────────────────────────────

StartModel = Annotated[
    Path | None,
    typer.Option(
        "--model",
        help="Start from this trained dense model.safetensors instead of training one (omp, imp).",
        rich_help_panel="Model",
    ),
]
RewindFrom = Annotated[
    Path | None,
    typer.Option(
        "--rewind-from",
        help="With --model: the weights to rewind to (default: the rewind checkpoint saved beside it).",
        rich_help_panel="Model",
    ),
]

# ── smu tune ──────────────────────────────────────────────────────────────────────────────────────

Space = Annotated[
    list[str] | None,
    typer.Option(
        "--space",
        help="NAME=LOW:HIGH or NAME=LOW:HIGH:log: search this numeric option in this range instead of the "
        "method's own (repeat for several).",
        rich_help_panel="Tuning",
    ),
]
HoldoutForget = Annotated[
    str | None,
    typer.Option(
        "--holdout-forget",
        help="The forget set the chosen setting is measured on (default: the next class for class:C, the "
        "next sub-class of the same class for subclass:NAME, the next --forget-seed for random:N).",
        rich_help_panel="Tuning",
    ),
]
Workers = Annotated[
    int,
    typer.Option(
        "--workers",
        min=1,
        help="Study workers running trials side by side, in local worker processes (--executor local) or "
        "as Ray tasks (--executor ray); each adds trials to the one study in --out until it has --trials.",
        rich_help_panel="Executor",
    ),
]
TuneReference = Annotated[
    Path | None,
    typer.Option(
        "--reference",
        help="A model retrained without the forget set to tune against (default: smu retrains one with the "
        "--retrain-* options, cached in --out).",
        rich_help_panel="Reference",
    ),
]

# ── smu run and smu demo ──────────────────────────────────────────────────────────────────────────

Recipe = Annotated[str, typer.Argument(help="A recipe file, or the name of a shipped recipe (smu recipes).")]
Overrides = Annotated[
    list[str] | None,
    typer.Argument(help="key=value overrides by dotted key, e.g. unlearn.ft.lr=0.02 seeds=[1,2]."),
]
DryRun = Annotated[
    bool,
    typer.Option(
        "--dry-run", help="Check everything, print the resolved recipe and the planned steps; run nothing."
    ),
]
PlanOnly = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Check the options, build the model and print the plan with its time estimate (a few "
        "training steps timed on the device); train nothing, write nothing.",
        rich_help_panel="Output",
    ),
]
RunOut = Annotated[
    Path | None,
    typer.Option(
        "--out",
        "-o",
        help="Run folder (default: runs/<recipe name>). Run again with the same folder to continue.",
    ),
]
RunResume = Annotated[
    bool,
    typer.Option(
        "--resume",
        help="Accepted for symmetry with prune and unlearn: a run always continues where it stopped.",
    ),
]

# ── smu audit ─────────────────────────────────────────────────────────────────────────────────────

KeepModels = Annotated[
    bool,
    typer.Option(
        "--keep-models",
        help="Keep every member's weights (they are deleted once measured).",
        rich_help_panel="Audit",
    ),
]
AuditMetrics = Annotated[
    str | None,
    typer.Option(
        "--metrics",
        help="Comma-separated extra metrics of each unlearned model against the retrained model of its "
        "index, mean and 95% t-interval over the N pairs: zrf, js, activation_distance (kept from each "
        "model's outputs), weight_distance (needs --keep-models), or a plug-in's (smu eval --help lists "
        "them).",
        rich_help_panel="Metrics",
        show_default=False,
    ),
]
AuditOut = Annotated[
    Path | None,
    typer.Option(
        "--out",
        "-o",
        help="Audit folder (default: runs/audit-<dataset>-<arch>-<time>); audit another method into the "
        "same folder to reuse the retrained ensemble.",
        rich_help_panel="Output",
    ),
]

# ── smu backdoor-cleanse ──────────────────────────────────────────────────────────────────────────

PoisonSeed = Annotated[
    int,
    typer.Option(
        "--forget-seed",
        min=0,
        max=SEED_MAX,
        help="Seed that draws the poisoned samples.",
        rich_help_panel="Attack",
    ),
]
TrojanPrune = Annotated[
    str,
    typer.Option(
        "--prune",
        help="How the sparse Trojan models are pruned (a one-shot method).",
        rich_help_panel="Models",
    ),
]
Rate = Annotated[
    float | None,
    typer.Option("--rate", help="One sparsity to cleanse at (same as --rates R).", rich_help_panel="Models"),
]
Rates = Annotated[
    str | None,
    typer.Option(
        "--rates",
        help="Comma-separated sparsities to compare, 0 = dense (default: 0).",
        rich_help_panel="Models",
    ),
]
TrojanRewindEpoch = Annotated[
    int,
    typer.Option(
        "--rewind-epoch",
        help="Rewind epoch after pruning (0 = initialisation).",
        rich_help_panel="Models",
    ),
]
TrojanScope = Annotated[
    str, typer.Option("--scope", help="Weights pruned: conv or all.", rich_help_panel="Models")
]
TrojanModel = Annotated[
    Path | None,
    typer.Option(
        "--model",
        help="Cleanse this Trojan model (with its mask) instead of training one; --poison and "
        "--forget-seed "
        "must match its training.",
        rich_help_panel="Models",
    ),
]
