"""`smu inspect` (what an artifact is, where it came from, is it intact) and `smu import`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from smu.cli import flags
from smu.cli.ui import table
from smu.cli.wrap import cli
from smu.io import files
from smu.io.importer import import_checkpoint
from smu.io.inspection import inspect_artifact
from smu.workflows import common as wc

IMPORT_EPILOG = (
    "Example:\n\n"
    "smu import 0model_SA_best.pth.tar --arch resnet18 --dataset cifar10 --out runs/imported\n\n"
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


def import_(
    checkpoint: Annotated[Path, typer.Argument(help="A .pth / .pth.tar of the original research code.")],
    arch: Annotated[
        str,
        typer.Option(
            "--arch", "-a", help="Its architecture: resnet18, resnet20, vgg16_bn, resnet50, cnn or cnn_gn."
        ),
    ],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="The dataset it was trained on.")],
    image_size: Annotated[
        int | None, typer.Option("--image-size", help="Image size (only for imagefolder).")
    ] = None,
    out: flags.Out = None,
    force: flags.Force = False,
    reporter: Any = None,
) -> dict[str, Any]:
    """Convert a research-code checkpoint into model.safetensors (+ mask.safetensors), safely."""
    given = {k: v for k, v in locals().items() if k != "reporter"}
    out = Path(out) if out else wc.default_out("import", dataset, arch)
    with files.run_dir(out, force) as folder:
        return import_checkpoint(
            checkpoint,
            arch,
            dataset,
            folder,
            image_size=image_size,
            command=wc.command_line("smu import", given),
        )


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
    )
