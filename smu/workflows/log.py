"""`smu log`: send a finished run folder to experiment trackers, from its files: for runs made before a
tracker was set up, or on a machine without network.

What a live run sends, read back: the parameters from the provenance string and the versions in
``manifest.json`` (``report.json`` and ``recipe.yaml`` for a recipe), the tags kept beside them, the
final metrics from the result, each step (``step.json``) as a child run, and the per-epoch curves where
the run kept them (``metrics.csv``, written by ``--log csv``). The folder is only read.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from smu import loggers
from smu.core.errors import ArtifactError, UsageError
from smu.workflows.audit import epsilon_bins
from smu.workflows.recipe import report_numbers


def send(
    run_dir: str | Path,
    to: Sequence[str],
    log_dir: str | Path | None = None,
    tracking_uri: str | None = None,
    wandb_project: str | None = None,
    wandb_entity: str | None = None,
    log_models: bool = False,
) -> dict[str, Any]:
    """Send the run in ``run_dir`` (a command's folder, a recipe run, an audit, a study) to the trackers
    ``to``; returns the runs sent: {"run_dir", "to", "runs": [{"name", "metrics", "curves"}]}."""
    root = Path(run_dir)
    if not root.is_dir():
        raise UsageError(f"RUN_DIR {str(root)!r} is not a folder", hint=RUN_HINT)
    if not to:
        raise UsageError(
            "--to names no tracker", hint="--to mlflow, --to tensorboard, --to wandb or --to csv"
        )
    tracking = loggers.settings(to, log_dir, tracking_uri, wandb_project, wandb_entity, log_models)
    top = top_record(root)
    sent: list[dict[str, Any]] = []
    with loggers.tracked(
        tracking, name=root.name, folder=root, params=top["params"], tags=top["tags"], fresh=True
    ) as run:
        sent.append(replay(run, root.name, root, top["final"]))
        markers = sorted(root.rglob("step.json"))
        for marker in markers:
            record = read_json(marker)
            folder = marker.parent
            with loggers.step_run(
                str(record.get("title", folder.name)), folder, mapping(record.get("tags")), fresh=True
            ) as child:
                final = loggers.numbers(mapping(record.get("result")))
                sent.append(replay(child, record.get("title", folder.name), folder, final))
                if child is not None and log_models:
                    child.artifacts(sorted(folder.rglob("*.safetensors")))
        if run is not None:
            files = [root / name for name in ("manifest.json", "recipe.yaml", "report.md", "report.json")]
            files += [top["home"] / "manifest.json"] + sorted((root / "figures").glob("*.*"))
            if log_models and not markers:  # a job's models went with its steps
                files += sorted(root.rglob("*.safetensors"))
            run.artifacts(list(dict.fromkeys(files)))
    return {"run_dir": str(root), "to": list(tracking.kinds), "runs": sent}


def replay(run: loggers.Run | None, name: str, folder: Path, final: dict[str, float]) -> dict[str, Any]:
    """A run's curves (from its metrics.csv, if it kept one) and final metrics, sent to ``run``."""
    curves = kept_curves(folder)
    if run is not None:
        for (label, step), values in curves.items():
            run.series(label, step, values)
        run.final(final)
    return {"name": name, "metrics": len(final), "curves": len(curves)}


def kept_curves(folder: Path) -> dict[tuple[str, int], dict[str, float]]:
    """(phase, step) -> values, from the metrics.csv ``--log csv`` wrote in ``folder`` (empty without one)."""
    path = folder / "metrics.csv"
    points: dict[tuple[str, int], dict[str, float]] = defaultdict(dict)
    if not path.is_file():
        return points
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            if row.get("step") and "/" in row.get("name", ""):
                label, name = row["name"].split("/", 1)
                points[(label, int(row["step"]))][name] = float(row["value"])
    return points


def top_record(root: Path) -> dict[str, Any]:
    """The whole run's parameters, tags and final metrics: from root/manifest.json (prune, unlearn,
    backdoor-cleanse), root/report.json (a recipe), or the one manifest.json below (an audit's verdict,
    a study's method folder)."""
    manifests = (
        [root / "manifest.json"]
        if (root / "manifest.json").is_file()
        else sorted(root.rglob("manifest.json"))
    )
    if (root / "report.json").is_file():
        report = read_json(root / "report.json")
        header = recipe_header(root / "recipe.yaml")
        try:
            result = loggers.numbers(report_numbers(report))
        except (AttributeError, KeyError, TypeError):  # an edited or foreign report.json
            raise ArtifactError(f"{str(root / 'report.json')!r} holds no smu report", hint=RUN_HINT) from None
        command, versions, tags, home = (
            header.removeprefix("# "),
            report.get("versions"),
            report.get("tags"),
            root,
        )
    elif manifests:
        manifest = read_json(manifests[0])
        command, versions = str(manifest.get("command", "")), manifest.get("versions")
        result = loggers.numbers(mapping(manifest.get("result")) | epsilon_bins(manifests[0].parent))
        tags, home = manifest.get("tags"), manifests[0].parent
    else:
        raise UsageError(
            f"{str(root)!r} holds no manifest.json or report.json: it is no finished smu run", hint=RUN_HINT
        )
    versions, tags = mapping(versions), mapping(tags)
    params = loggers.params_of(command) if command else {}
    params |= {"smu_version": versions.get("smu", ""), "device": versions.get("device", "")}
    if versions.get("torch"):
        params["torch_version"] = versions["torch"]
    return {"params": params, "tags": loggers.tags_of(tags), "final": result, "home": home}


RUN_HINT = "give the --out of a finished smu run"


def recipe_header(path: Path) -> str:
    """The first line of a recipe run's recipe.yaml: ``# smu run RECIPE OVERRIDES...``, its command."""
    try:
        return path.read_text().splitlines()[0] if path.is_file() else ""
    except (OSError, ValueError, IndexError):
        return ""


def mapping(value: Any) -> dict[str, Any]:
    """A part of a file smu wrote that should be an object; anything else (an edited file) counts as empty."""
    return value if isinstance(value, dict) else {}


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object smu wrote, or one line saying which file is not one (cut short, edited, foreign)."""
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ArtifactError(
            f"{str(path)!r} is not readable JSON ({type(e).__name__})", hint=RUN_HINT
        ) from None
    if not isinstance(found, dict):
        raise ArtifactError(f"{str(path)!r} holds no JSON object", hint=RUN_HINT)
    return found
