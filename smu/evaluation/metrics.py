"""Extra metrics beyond the paper's four: a registry listed once, like the methods, which plug-ins join
through the entry-point group ``smu.metrics`` (docs/PLUGINS.md).

A metric declares itself as a :class:`Metric`: its name, a one-line summary, what it needs besides the
model (:data:`NEEDS`), a function from :class:`MetricInputs` to a number (or a dict of numbers), and when
the number means something. ``smu eval --metrics``, ``smu unlearn --metrics`` and a recipe's ``metrics:``
read the declarations. The built-ins compare float32 softmax outputs on the forget set D_f (evaluation
mode, under ``torch.inference_mode()``, batched by :func:`smu.execution.engine.predict`), or parameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from smu.core.errors import SmuError, UsageError
from smu.core.names import METRICS_GROUP
from smu.core.registry import Registry
from smu.data import ImageSet, Splits
from smu.data.forget import ForgetSet
from smu.evaluation.divergence import activation_distance, js_divergence, weight_distance
from smu.execution.engine import predict

NEEDS = {
    "reference": "the retrained model: --reference (in a recipe, retrain of that seed, scenario and model)",
    "random": "a randomly initialised model of the same architecture, drawn from the metric seed",
}
"""What a metric may ask for besides the model and the data."""


@dataclass
class MetricInputs:
    """What a metric is computed from: the model, D_f (``forget``: its images and labels), the whole
    data for a metric that needs more of it, and the extras the metric declared."""

    model: nn.Module | None
    """None where an ``outputs_only`` metric is computed from saved logits (``smu audit``)."""
    forget: ImageSet
    splits: Splits
    forget_set: ForgetSet
    reference: nn.Module | None = None
    random: nn.Module | None = None
    batch_size: int | None = None
    logits: dict[str, torch.Tensor] = field(default_factory=dict)
    """Outputs on D_f by role, computed once and shared by every metric of one measurement."""

    def outputs(self, role: str = "model") -> torch.Tensor:
        """float32 logits on D_f of the ``model``, the ``reference`` or the ``random`` model."""
        if role not in self.logits:
            self.logits[role] = predict(getattr(self, role), self.forget, self.batch_size).float()
        return self.logits[role]

    def softmax(self, role: str = "model") -> torch.Tensor:
        """The softmax of :meth:`outputs`."""
        return self.outputs(role).softmax(1)


Value = float | Mapping[str, Any]


@dataclass(frozen=True)
class Metric:
    """An extra metric: everything smu needs to offer it wherever metrics are taken."""

    name: str
    """What users type: ``--metrics NAME``, an entry of a recipe's ``metrics:``; the key of its value."""
    summary: str
    """One line for help, listings and the README."""
    compute: Callable[[MetricInputs], Value]
    """``compute(inputs) -> number``, or a dict of numbers (nested dicts allowed) holding ``headline``."""
    needs: frozenset[str] = frozenset()
    """Extras from :data:`NEEDS` it is computed with."""
    note: str = ""
    """When the number is meaningful, and what to compare it with."""
    label: str = ""
    """Its row or column header in tables (default: the name)."""
    headline: str = ""
    """For a metric that returns a dict: the key of the number tables show."""
    limits: tuple[float | None, float | None] = (0.0, None)
    """The range its values lie in (None: unbounded); a figure clips error bars to it."""
    source: str = ""
    """The official code it was pinned against, if any."""
    differs: str = ""
    """Where it differs from the paper's definition or that code, and why."""
    outputs_only: bool = False
    """Its compute reads nothing but logits on D_f (``inputs.outputs(role)``, ``inputs.softmax(role)``):
    ``smu audit`` then computes it from the logits its members saved, with no model in ``inputs``. Any
    other metric needs the members' weights there (``--keep-models``)."""

    @property
    def header(self) -> str:
        return self.label or self.name


def metric_problems(metric: Any, registry: Any) -> list[str]:
    """What keeps a plug-in's ``metric`` from working like a built-in; empty when nothing does."""
    found = [] if callable(metric.compute) else ["its compute is not callable"]
    unknown = set(metric.needs) - set(NEEDS)
    if unknown:
        found.append(f"it needs {sorted(unknown)}, which smu does not provide (known: {', '.join(NEEDS)})")
    if "," in metric.name:
        found.append(f"its name {metric.name!r} holds a comma, which separates names in --metrics")
    return found


SOURCE = "vikram2000b/bad-teaching-unlearning metrics.py (if-loops/selective-synaptic-dampening copies it)"
OFFICIAL_JS = (
    "JS is the official code's JSDiv: 0.5·KL(m‖p) + 0.5·KL(m‖q), m = (p+q)/2, each averaged over examples "
    "and classes; the paper's JS takes KL(p‖m) and KL(q‖m) summed over classes, per example"
)


def zrf(inputs: MetricInputs) -> float:
    return 1.0 - js_divergence(inputs.outputs("model"), inputs.outputs("random"))


def js(inputs: MetricInputs) -> float:
    return js_divergence(inputs.outputs("model"), inputs.outputs("reference"))


def activation(inputs: MetricInputs) -> float:
    return activation_distance(inputs.outputs("model"), inputs.outputs("reference"))


def weights(inputs: MetricInputs) -> dict[str, Any]:
    try:
        return weight_distance(inputs.model, inputs.reference)
    except ValueError as e:
        raise UsageError(
            f"metric 'weight_distance' compares models of one architecture: {e}",
            hint="give a --reference of the model's architecture, or leave weight_distance out",
        ) from None


BUILTINS = [
    Metric(
        "zrf",
        "Zero Retrain Forgetting: 1 − JS(model, random model) on D_f (Chundawat et al. 2023)",
        zrf,
        frozenset({"random"}),
        note="Near 1: on D_f the model answers as uninformatively as a random model; compare it with the "
        "retrained model's ZRF (below 1: it still generalises to D_f), at one metric seed",
        label="ZRF",
        limits=(None, 1.0),
        source=SOURCE,
        outputs_only=True,
        differs=f"{OFFICIAL_JS}. Both models in evaluation mode (as the authors' notebook; SSD's scripts "
        "leave the random teacher in training mode); always on the training forget set D_f (SSD measures "
        "class forgetting on the class's test images)",
    ),
    Metric(
        "js",
        "JS divergence between the model's and the retrained model's softmax outputs on D_f",
        js,
        frozenset({"reference"}),
        note="0: the model answers on D_f as the retrained model does; the JS of ZRF, so the two compare",
        label="JS",
        source=SOURCE,
        differs=OFFICIAL_JS,
        outputs_only=True,
    ),
    Metric(
        "activation_distance",
        "mean over D_f of the l2 distance between the model's and the retrained model's softmax vectors",
        activation,
        frozenset({"reference"}),
        note="0: the same outputs on D_f as the retrained model; at most √2",
        label="Actv. dist",
        limits=(0.0, math.sqrt(2)),
        source=SOURCE,
        outputs_only=True,
    ),
    Metric(
        "weight_distance",
        "l2 distance between the model's and the retrained model's parameters, per tensor and in total",
        weights,
        frozenset({"reference"}),
        note="Only meaningful when both start from one initialisation (smu's retrain starts from the "
        "original's when run with the --seed it was trained with); parameters only, not buffers",
        label="Weight dist",
        headline="total",
    ),
]


METRICS: Registry[Metric] = Registry(METRICS_GROUP, Metric, "metric", BUILTINS, metric_problems)
"""name -> metric: the built-ins, then plug-ins."""


def metric_names(metrics: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"zrf,js"`` (or a list) -> ``("zrf", "js")``, each a registered metric (else an error with the
    closest name); duplicates dropped, the order kept."""
    if metrics is None:
        return ()
    items = metrics.split(",") if isinstance(metrics, str) else metrics
    names = tuple(dict.fromkeys(str(m).strip() for m in items if str(m).strip()))
    for name in names:
        METRICS.get_spec(name)
    return names


def check_needs(names: Sequence[str], reference: bool, option: str = "--reference") -> None:
    """A usage error naming the first metric that needs a reference when there is none."""
    if reference:
        return
    for name in names:
        if "reference" in METRICS.get_spec(name).needs:
            raise UsageError(
                f"metric {name!r} compares with the retrained model: give it with {option}",
                hint="smu eval --help lists what each metric needs",
            )


def random_model(arch: str, splits: Splits, seed: int, like: nn.Module) -> nn.Module:
    """A randomly initialised ``arch`` for the data of ``splits`` (the incompetent teacher of ZRF), on
    ``like``'s device and with its input normalisation. It is the second model built after
    ``torch.manual_seed(seed)``, as the official code draws its teacher right after the model it then loads
    weights into: so it is never the initialisation smu trains a model of that seed from (the first)."""
    from smu.models import build_for

    with torch.random.fork_rng(devices=[]):  # the caller's random stream stays as it was
        torch.manual_seed(seed)
        build_for(arch, splits.info)
        net = build_for(arch, splits.info)
    own, theirs = getattr(net, "normalize", None), getattr(like, "normalize", None)
    if own is not None and theirs is not None:
        own.load_state_dict(theirs.state_dict())
    return net.to(next(like.parameters()).device).eval()


def compute(metric: Metric, inputs: MetricInputs) -> Value:
    """One metric's value as plain numbers (a 0-d tensor, a numpy float become floats), its plug-in's
    failure named as such."""
    with METRICS.plugin_code(metric.name):
        value = metric.compute(inputs)
    try:
        return plain(value)
    except (TypeError, ValueError, RuntimeError):
        raise SmuError(
            f"metric {metric.name!r} returned a {type(value).__name__}, not a number or a dict of numbers",
            hint=f"report it to the authors of {METRICS.packages.get(metric.name, 'smu')}",
        ) from None


def plain(value: Any) -> Value:
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, bool | str):
        raise TypeError(type(value).__name__)
    return float(value)


def headline(metric: Metric, value: Any) -> float | None:
    """The number of ``value`` that tables show (None where there is none, or it is not finite)."""
    if isinstance(value, Mapping):
        value = value.get(metric.headline) if metric.headline else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def measure(
    names: Sequence[str],
    model: nn.Module,
    splits: Splits,
    forget_set: ForgetSet,
    *,
    arch: str,
    reference: nn.Module | None = None,
    seed: int = 0,
    batch_size: int | None = None,
) -> dict[str, Any]:
    """The metrics ``names`` of ``model`` on ``forget_set``: ``{"metrics": {name: value}, "reference":
    {name: value} of the reference for those that need no reference (None without one), "options":
    {"seed": seed}}``. ``arch`` (a spec) and ``seed`` draw the random model, where a metric needs it."""
    specs = [METRICS.get_spec(n) for n in names]
    check_needs(names, reference is not None)
    forget = forget_set.forget(splits)
    drawn = None
    if any("random" in s.needs for s in specs):
        drawn = random_model(arch, splits, seed, like=model)
    inputs = MetricInputs(model, forget, splits, forget_set, reference, drawn, batch_size)
    result: dict[str, Any] = {"metrics": {s.name: compute(s, inputs) for s in specs}, "reference": None}
    own = [s for s in specs if "reference" not in s.needs]
    if reference is not None and own:
        shared = {k: v for k, v in inputs.logits.items() if k == "random"}
        mirror = MetricInputs(reference, forget, splits, forget_set, None, drawn, batch_size, shared)
        result["reference"] = {s.name: compute(s, mirror) for s in own}
    result["options"] = {"seed": seed}
    return result
