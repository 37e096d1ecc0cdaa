"""The extra metrics of ``smu audit --metrics`` (:mod:`smu.evaluation.metrics`): each unlearned member k
against retrained member k, averaged over the pairs with a 95% t-interval, as ToW is.

Members drop their weights once measured, so what a metric reads must be kept while they exist: an
``outputs_only`` metric (ZRF, JS, the activation distance) is computed from the float32 logits on D_f each
member then saves beside its statistics; any other metric (the weight distance) from the weights
``--keep-models`` keeps. What members keep is part of their step key only when the audit asks for more
than statistics (:func:`member_keys`), so the members of an audit without metrics stay valid, and a
member that kept more serves an audit that asks for less.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smu.core.errors import ArtifactError, UsageError
from smu.evaluation.judges import t_interval
from smu.evaluation.metrics import METRICS, Metric, MetricInputs, compute, random_model
from smu.execution.engine import predict
from smu.execution.steps import recorded_key
from smu.io import artifacts, tensorfile
from smu.io import schema as S
from smu.io.files import digest
from smu.workflows.subject import Subject

KEEPS = ("statistics", "outputs", "weights")
"""What a member keeps, each with everything before it: its per-example statistics; its logits on D_f
(``logits``: float32, examples x classes, in stats.safetensors), for ``outputs_only`` metrics; its
weights, for the others."""


def member_keeps(names: Sequence[str]) -> str:
    """What the members must keep for the metrics ``names`` (registered names)."""
    if not names:
        return KEEPS[0]
    return "outputs" if all(METRICS.get_spec(n).outputs_only for n in names) else "weights"


def check_keep_models(names: Sequence[str], keep_models: bool) -> None:
    """A usage error naming the first metric that reads the members' weights, where none are kept."""
    if keep_models:
        return
    for name in names:
        if not METRICS.get_spec(name).outputs_only:
            raise UsageError(
                f"metric {name!r} reads the members' weights, which the audit keeps only with --keep-models",
                hint=f"add --keep-models, or leave {name} out",
            )


def member_keys(identity: dict[str, Any], folder: Path, keeps: str) -> str:
    """The step key of a member (``identity``: everything that decides it) that keeps ``keeps``: the key
    the member has without extra metrics, where it keeps only statistics; else one naming what it keeps.
    A member already done in ``folder`` that kept at least as much keeps its key, and is reused."""
    keys = [digest(identity | ({"keeps": k} if i else {})) for i, k in enumerate(KEEPS)]
    done = recorded_key(folder)
    wanted = keys[KEEPS.index(keeps) :]
    return done if done in wanted else wanted[0]


def member_outputs(stats: Path, device: torch.device) -> torch.Tensor:
    """The float32 logits on D_f a member saved with its statistics."""
    tensorfile.expect_kind(stats, tensorfile.read_metadata(stats), S.MEMBER_STATS)
    logits = tensorfile.read_tensors(stats).get("logits")
    if logits is None or logits.ndim != 2:
        raise ArtifactError(
            f"{str(stats)!r} holds no logits for the extra metrics", hint="run the audit again"
        )
    return logits.float().to(device)


def ensemble_metrics(
    names: Sequence[str],
    references: list[dict[str, Any]],
    members: list[dict[str, Any]],
    s: Subject,
    seed: int,
) -> dict[str, Any]:
    """``{"metrics": {name: {"mean", "low", "high"}}, "reference": {name: ...} | None, "options": {"seed"}}``:
    member k (``members``' results, with their ``stats`` paths) against retrained member k, and the
    retrained members' own values of the metrics that need no reference (ZRF), as ``smu eval --metrics``
    reports them for one model. A dict-valued metric has its mean, low and high in its own shape."""
    specs = [METRICS.get_spec(n) for n in names]
    device = next(s.loaded.model.parameters()).device
    forget = s.forget.forget(s.splits)
    drawn = None
    shared: dict[str, torch.Tensor] = {}
    if any("random" in spec.needs for spec in specs):
        drawn = random_model(s.loaded.arch, s.splits, seed, like=s.loaded.model)
        shared["random"] = predict(drawn, forget).float()
    weights = not all(spec.outputs_only for spec in specs)

    def inputs(own: dict[str, Any], reference: dict[str, Any] | None) -> MetricInputs:
        logits = dict(shared, model=member_outputs(Path(own["stats"]), device))
        ref_model = None
        if reference is not None:
            logits["reference"] = member_outputs(Path(reference["stats"]), device)
            ref_model = member_model(reference, device) if weights else None
        model = member_model(own, device) if weights else None
        return MetricInputs(model, forget, s.splits, s.forget, ref_model, drawn, None, logits)

    def measured(chosen: list[Metric], found: Iterator[MetricInputs]) -> dict[str, Any]:
        # One pair at a time: with --keep-models, no more than two members' weights are loaded at once.
        values = [{spec.name: compute(spec, one) for spec in chosen} for one in found]
        return {spec.name: spread([v[spec.name] for v in values], spec.limits) for spec in chosen}

    pairs = (inputs(m, r) for m, r in zip(members, references, strict=True))
    result: dict[str, Any] = {"metrics": measured(specs, pairs), "reference": None}
    own = [spec for spec in specs if "reference" not in spec.needs]
    if own:
        result["reference"] = measured(own, (inputs(r, None) for r in references))
    result["options"] = {"seed": seed}
    return result


def member_model(result: dict[str, Any], device: torch.device) -> torch.nn.Module:
    """The weights ``--keep-models`` kept beside a member's statistics."""
    return artifacts.load_model(Path(result["stats"]).parent / "model.safetensors", device).model


def spread(values: list[Any], limits: tuple[float | None, float | None] = (None, None)) -> dict[str, Any]:
    """``{"mean", "low", "high"}`` of one value per member pair: the 95% t-interval, as ToW's, kept to the
    metric's ``limits`` (with 3 pairs a distance's interval may otherwise reach below 0); for dict values,
    each of the three in the values' shape."""
    if isinstance(values[0], Mapping):
        parts = {k: spread([v[k] for v in values], limits) for k in values[0]}
        return {side: {k: part[side] for k, part in parts.items()} for side in ("mean", "low", "high")}
    found = t_interval(np.array(values, dtype=float))
    bottom, top = limits
    low = found.low if bottom is None else max(found.low, bottom)
    high = found.high if top is None else min(found.high, top)
    return {"mean": found.mean, "low": low, "high": high}
