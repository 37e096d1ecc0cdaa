"""`smu eval`: the paper's unlearning metrics (UA, MIA-Efficacy, RA, TA) of a model on a forget set, and
the gap to a reference."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from smu import loggers
from smu.evaluation import compare
from smu.evaluation.metrics import check_needs, measure, metric_names
from smu.execution.engine import Reporter, resolve_device
from smu.workflows.common import command_line, tracked
from smu.workflows.subject import open_subject


def evaluate(
    model: str | Path,
    forget: str | Path,
    reference: str | Path | None = None,
    mask: str | Path | None = None,
    forget_seed: int = 0,
    save_forget: str | Path | None = None,
    mia_features: str | Sequence[str] = "confidence",
    privacy: bool = False,
    metrics: str | Sequence[str] | None = None,
    metric_seed: int = 0,
    data: str | Path | None = None,
    device: str = "auto",
    log: Sequence[str] = (),
    log_dir: str | Path | None = None,
    tracking_uri: str | None = None,
    wandb_project: str | None = None,
    wandb_entity: str | None = None,
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Measure UA, MIA-Efficacy, RA and TA of a model on a forget set, and the gap to a reference.

    ``save_forget`` writes the resolved forget set (forget.safetensors) for later commands. ``metrics``
    names extra metrics (``"zrf,js"``: :data:`smu.evaluation.metrics.METRICS`), reported under
    ``result["extra"]``; ``metric_seed`` draws the random model ZRF compares with. Returns what
    ``smu eval --json`` prints. With ``log``, the measurement is a run of its own in those
    trackers, named ``eval`` under the model's folder (a new run each time).
    """
    given = {k: v for k, v in locals().items() if k != "reporter"}
    given = without_metrics(given) if not metrics else given
    tracking = loggers.settings(log, log_dir, tracking_uri, wandb_project, wandb_entity)
    dev = resolve_device(device)
    features = mia_feature_list(mia_features)
    extra = metric_names(metrics)  # checked before any model is loaded
    check_needs(extra, reference is not None)
    subject = open_subject(
        model, forget, device=dev, forget_seed=forget_seed, mask=mask, reference=reference, data=data
    )
    loaded, ref, fs = subject.loaded, subject.reference, subject.forget
    result = {"model": str(loaded.path)} | compare(
        loaded.model, subject.splits, fs, ref.model if ref else None, features=features, privacy=privacy
    )
    result |= {
        "reference_model": str(ref.path) if ref else None,
        "forget": fs.summary(),
        "sparsity": loaded.mask.percent() if loaded.mask is not None else 0.0,
        "dataset": subject.splits.info.name,
    }
    if extra:  # only when asked: the result of a plain smu eval stays as it was
        result["extra"] = measure(
            extra,
            loaded.model,
            subject.splits,
            fs,
            arch=loaded.arch,
            reference=ref.model if ref else None,
            seed=metric_seed,
        )
    if save_forget is not None:
        fs.save(Path(save_forget))
        result["forget"]["path"] = str(save_forget)
    if tracking.kinds:
        command = command_line("smu eval", given)
        tags = {"command": "eval", "scenario": fs.spec, "dataset": loaded.dataset, "model": loaded.arch}
        tags["sparsity"] = f"{result['sparsity']:.1f}"
        home = Path(log_dir) if log_dir else loaded.path.parent
        with tracked(tracking, home / "eval", command, tags, dev, root=home, fresh=True) as track:
            track.done(result, home / "eval")
    return result


def without_metrics(given: dict[str, Any]) -> dict[str, Any]:
    """A command's values without the extra metrics' options, when none was asked for: the command line a
    run records (in its model's header too) stays what it was before smu had them."""
    return {k: v for k, v in given.items() if k not in ("metrics", "metric_seed")}


def mia_feature_list(features: str | Sequence[str]) -> tuple[str, ...]:
    """'confidence,entropy' (or a list) -> ('confidence', 'entropy'); empty means the paper's confidence."""
    items = features.split(",") if isinstance(features, str) else features
    return tuple(f.strip() for f in items if f.strip()) or ("confidence",)
