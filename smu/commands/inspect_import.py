"""`smu inspect` (what an artifact is, where it came from, is it intact) and `smu import`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from smu import artifacts
from smu.commands import common as c
from smu.importer import import_checkpoint
from smu.inspection import inspect_artifact
from smu.ui import emit, table

IMPORT_EPILOG = (
    "Example:\n\n"
    "smu import 0model_SA_best.pth.tar --arch resnet18 --dataset cifar10 --out runs/imported\n\n"
    "Only tensors are read (torch.load weights_only=True): a file that would run code is refused."
)


@c.errors_handled
def inspect(
    artifact: Annotated[Path, typer.Argument(help="A .safetensors file written by smu.")],
    json_out: c.Json = False,
    quiet: c.Quiet = False,
) -> None:
    """Show an artifact's metadata, per-layer sparsity, provenance chain, and whether it is intact."""
    result = inspect_artifact(artifact)
    emit(
        result,
        as_json=json_out,
        quiet=quiet,
        paths=[result["path"]] if result["intact"] else [],
        render=lambda: render(result),
    )
    if not result["intact"]:
        raise typer.Exit(1)


def render(r: dict) -> list:
    meta = [[k, v] for k, v in sorted(r["metadata"].items()) if k != "format"]
    state = "intact" if r["intact"] else "NOT intact: " + "; ".join(r["problems"])
    shown = [table(f"{r['path']} ({r['kind']}, sha256 {r['sha256'][:16]}…): {state}", ["Key", "Value"], meta)]
    if r["per_layer"]:
        sparsity = "–" if r["sparsity"] is None else f"{r['sparsity']:.4f}"
        rows = [[k, f"{v:.4f}"] for k, v in r["per_layer"].items()]
        shown.append(table(f"Per-layer sparsity (overall {sparsity})", ["Layer", "Sparsity"], rows))
    if r["provenance"]:
        rows = [
            [p["sha256"][:16] + "…", p["kind"] or "–", p["path"] or "(not found nearby)"]
            for p in r["provenance"]
        ]
        shown.append(table("Provenance (parent first)", ["sha256", "Kind", "Path"], rows))
    return shown


@c.errors_handled
def import_(
    ctx: typer.Context,
    checkpoint: Annotated[Path, typer.Argument(help="A .pth / .pth.tar of the original research code.")],
    arch: Annotated[
        str,
        typer.Option("--arch", "-a", help="Its architecture: resnet18, resnet20, vgg16_bn, resnet50 or cnn."),
    ],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="The dataset it was trained on.")],
    image_size: Annotated[
        int | None, typer.Option("--image-size", help="Image size (only for imagefolder).")
    ] = None,
    out: c.Out = None,
    force: c.Force = False,
    json_out: c.Json = False,
    quiet: c.Quiet = False,
) -> None:
    """Convert a research-code checkpoint into model.safetensors (+ mask.safetensors), safely."""
    out_dir = out or c.default_out("import", dataset, arch)
    with artifacts.run_dir(out_dir, force) as out_dir:
        result = import_checkpoint(
            checkpoint, arch, dataset, out_dir, image_size=image_size, command=c.command_line(ctx)
        )
    paths = [result["model"]] + ([result["mask"]] if result["mask"] else [])
    rows = [[k, v] for k, v in result.items()]
    emit(
        result, as_json=json_out, quiet=quiet, paths=paths, render=lambda: table("smu import", ["", ""], rows)
    )
