"""`smu inspect` (what an artifact is, where it came from, is it intact) and `smu import`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from smu.cli import flags
from smu.cli.ui import table
from smu.cli.wrap import START_OVER, cli
from smu.core.errors import UsageError
from smu.data.imagefolder import tree_shape
from smu.io import files
from smu.io.importer import import_checkpoint
from smu.io.inspection import inspect_artifact
from smu.workflows import common as wc

IMPORT_EPILOG = (
    "Examples:\n\n"
    "smu import 0model_SA_best.pth.tar --arch resnet18 --dataset cifar10 --out runs/imported\n\n"
    "smu import resnet18.pth --arch torchvision:resnet18 --dataset cifar10 --no-strict\n\n"
    "smu import ~/.cache/huggingface/hub/models--timm--vit_tiny_patch16_224.augreg_in21k_ft_in1k/snapshots/* "
    "--dataset cifar10 --arch timm:vit_tiny_patch16_224@224 --no-strict\n\n"
    "Only tensors are read (torch.load weights_only=True): a file that would run code is refused."
)


def inspect(
    artifact: Annotated[
        Path, typer.Argument(help="A .safetensors file written by smu (model, mask, forget set, checkpoint).")
    ],
    reporter: Any = None,
) -> dict[str, Any]:
    """Show an artifact's metadata, per-layer sparsity, provenance chain, and whether it is intact."""
    return inspect_artifact(artifact)


MAX_ROWS = 100


def render(r: dict) -> list:
    meta = [[k, v] for k, v in sorted(r["metadata"].items()) if k != "format"]
    if len(meta) > MAX_ROWS:  # a header can hold thousands of keys; --json has them all
        meta = meta[:MAX_ROWS] + [["…", f"{len(meta) - MAX_ROWS:,} more keys (--json shows them)"]]
    state = "intact" if r["intact"] else "NOT intact: " + "; ".join(r["problems"])
    shown = [table(f"{r['path']} ({r['kind']}, sha256 {r['sha256'][:16]}…): {state}", ["Key", "Value"], meta)]
    if r["per_layer"]:
        sparsity = "–" if r["sparsity"] is None else f"{r['sparsity']:.2f}%"
        rows = [[k, v] for k, v in r["per_layer"].items()]
        shown.append(table(f"Per-layer sparsity (overall {sparsity})", ["Layer", "Sparsity %"], rows))
    if r["provenance"]:
        rows = [
            [p["sha256"][:16] + "…", p["kind"] or "–", p["path"] or "(not found nearby)"]
            for p in r["provenance"]
        ]
        shown.append(table("Provenance (parent first)", ["sha256", "Kind", "Path"], rows))
    return shown


def import_(
    checkpoint: Annotated[
        Path,
        typer.Argument(
            help="Weights trained elsewhere: a .safetensors, a .pt/.pth/.bin/.pth.tar state dict, or a "
            "folder with model.safetensors (and timm's config.json)."
        ),
    ],
    dataset: Annotated[
        str, typer.Option("--dataset", "-d", help="The dataset it was trained on (its images).")
    ],
    arch: Annotated[
        str | None,
        typer.Option(
            "--arch",
            "-a",
            help="Its architecture: an smu one (resnet18, vit, swin_t, ...), torchvision:NAME or timm:NAME, "
            "@SIZE to resize the images to the size it was trained at (default: the folder's config.json).",
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict/--no-strict",
            help="Every tensor must fit; --no-strict loads what fits and starts the rest fresh (a new "
            "head for another class count) and says which.",
        ),
    ] = True,
    mean: Annotated[
        str | None,
        typer.Option(
            "--mean",
            help="Per-channel mean the weights were trained with, e.g. 0.485,0.456,0.406 (default: the "
            "checkpoint's, the config's, the library's, else none).",
        ),
    ] = None,
    std: Annotated[str | None, typer.Option("--std", help="Per-channel std that goes with --mean.")] = None,
    data: Annotated[
        Path | None,
        typer.Option("--data", help="imagefolder: the tree it was trained on (its image size and classes)."),
    ] = None,
    image_size: Annotated[
        int | None, typer.Option("--image-size", help="imagefolder: the image side, without --data.")
    ] = None,
    seed: flags.Seed = 0,
    out: flags.Out = None,
    force: flags.Force = False,
    reporter: Any = None,
) -> dict[str, Any]:
    """Turn weights trained elsewhere into model.safetensors (+ mask.safetensors), safely."""
    given = {k: v for k, v in locals().items() if k != "reporter"}
    stats = [numbers(flag, text) for flag, text in (("--mean", mean), ("--std", std))]
    classes = None
    if dataset == "imagefolder" and data is not None:
        side, classes = tree_shape(Path(data))
        image_size = image_size or side
    out = Path(out) if out else wc.default_out("import", dataset, arch or "model")
    with files.run_dir(out, force) as folder:
        return import_checkpoint(
            checkpoint,
            arch,
            dataset,
            folder,
            image_size=image_size,
            num_classes=classes,
            strict=strict,
            mean=stats[0],
            std=stats[1],
            seed=seed,
            command=import_command_line(given),
        )


def import_command_line(given: dict[str, Any]) -> str:
    """``smu import CHECKPOINT ...`` as it runs again: the checkpoint is the argument, and --no-strict,
    an off switch whose default is on, is written."""
    options = {k: v for k, v in given.items() if k not in ("checkpoint", "strict")}
    return wc.command_line(
        "smu import", options | {"no_strict": not given["strict"]}, arguments=(given["checkpoint"],)
    )


def numbers(flag: str, text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise UsageError(
            f"{flag} {text!r} is not a comma-separated list of numbers", hint=f"e.g. {flag} 0.5,0.5,0.5"
        ) from None


def inspect_command(focus: str | None = None) -> Any:
    return cli(
        inspect,
        render=render,
        paths=lambda r: [r["path"]] if r["intact"] else [],
        fail_when=lambda r: not r["intact"],
    )


def import_command(focus: str | None = None) -> Any:
    return cli(
        import_,
        render=lambda r: table("smu import", ["", ""], [[k, v] for k, v in r.items()]),
        paths=lambda r: [r["model"]] + ([r["mask"]] if r["mask"] else []),
        again=START_OVER,
    )
