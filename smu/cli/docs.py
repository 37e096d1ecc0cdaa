"""The tables of README.md and docs/ that come from the registries and the artifact schema.

    python -m smu.cli.docs      # rewrite them after adding a method or a metadata key

Each table sits between ``<!-- smu:NAME -->`` and ``<!-- /smu:NAME -->``; a test fails when one is
out of date, so the docs cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

FILES = ("README.md", "docs/ARTIFACTS.md")


def value(v: object) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, tuple | list):
        return ",".join(map(str, v))
    return str(v)


def defaults(config: type | None) -> str:
    if config is None:
        return "–"
    cfg = config()
    return ", ".join(f"`{f.name}` {value(getattr(cfg, f.name))}" for f in dataclasses.fields(config))


def unlearning_methods() -> str:
    from smu.execution.engine import TrainConfig
    from smu.methods.unlearning import METHODS

    base = {f.name: getattr(TrainConfig(), f.name) for f in dataclasses.fields(TrainConfig)}
    rows = ["| method | what it does | options and defaults (training options: see below) |", "|---|---|---|"]
    for name, spec in METHODS.items():
        cfg = spec.config()
        # Training options are listed only where the method's default differs from TrainConfig's.
        own = [
            f"`{f.name}` {value(getattr(cfg, f.name))}"
            for f in dataclasses.fields(spec.config)
            if f.name not in base or getattr(cfg, f.name) != base[f.name]
        ]
        rows.append(f"| `{name}` | {spec.summary} | {', '.join(own) or '–'} |")
    return "\n".join(rows)


def method_data() -> str:
    from smu.methods.unlearning import METHODS

    def feed(f: Any, cfg: Any) -> str:
        batch = "per sample" if f.batch == "per-sample" else f"batches of {getattr(cfg, f.batch)}"
        aug = "augmented" if f.augment else "not augmented"
        return f"{f.purpose}: {f.data}, {f.mode} mode, {batch}, {f.order}, {aug}"

    rows = [
        "| method | what a default run feeds the model | pinned against | where smu differs |",
        "|---|---|---|---|",
    ]
    for name, spec in METHODS.items():
        feeds = "<br>".join(feed(f, spec.config()) for f in spec.feeds) or "–"
        rows.append(f"| `{name}` | {feeds} | {spec.source or '–'} | {spec.differs or '–'} |")
    return "\n".join(rows)


def pruning_methods() -> str:
    from smu.methods.pruning import METHODS

    rows = ["| method | what it does | default `--rate` | own options |", "|---|---|---|---|"]
    for name, spec in METHODS.items():
        rows.append(f"| `{name}` | {spec.summary} | {spec.default_rate} | {defaults(spec.config)} |")
    return "\n".join(rows)


def artifact_keys() -> str:
    from smu.io.schema import KEYS, LIMITS

    def kind(k: object) -> str:
        return f"{k.type} {LIMITS[k][0]:,}..{LIMITS[k][1]:,}" if k in LIMITS else k.type

    rows = ["| key | type | in | meaning |", "|---|---|---|---|"]
    rows += [f"| `{k}` | {kind(k)} | {', '.join(k.kinds)} | {k.meaning} |" for k in KEYS]
    return "\n".join(rows)


def metrics() -> str:
    from smu.evaluation.metrics import METRICS

    needed = {"reference": "`--reference`", "random": "a random model (`--metric-seed`)"}
    rows = ["| metric | what it measures | needs | when it means something |", "|---|---|---|---|"]
    for name, spec in METRICS.items():
        needs = ", ".join(needed[n] for n in sorted(spec.needs)) or "–"
        rows.append(f"| `{name}` | {spec.summary} | {needs} | {spec.note or '–'} |")
    return "\n".join(rows)


def recipes() -> str:
    from smu.workflows.recipes.catalog import shipped

    rows = ["| recipe | what | dataset | time |", "|---|---|---|---|"]
    rows += [
        f"| `{r['name']}` | {r['description']} | {r['dataset']} | {r['estimated_time']} |"
        for r in (recipe.about() for recipe in shipped())
    ]
    return "\n".join(rows)


BLOCKS: dict[str, Callable[[], str]] = {
    "recipes": recipes,
    "unlearning-methods": unlearning_methods,
    "method-data": method_data,
    "pruning-methods": pruning_methods,
    "metrics": metrics,
    "artifact-keys": artifact_keys,
}


def rendered(text: str) -> str:
    """``text`` with every generated block filled in anew."""
    for name, make in BLOCKS.items():
        pattern = re.compile(rf"(<!-- smu:{name} -->\n).*?(<!-- /smu:{name} -->)", re.S)
        text = pattern.sub(lambda m, make=make: m.group(1) + make() + "\n" + m.group(2), text)
    return text


def main(root: Path = Path(__file__).resolve().parents[2]) -> int:
    for name in FILES:
        path = root / name
        text = path.read_text(encoding="utf-8")
        new = rendered(text)
        if new != text:
            path.write_text(new, encoding="utf-8")
            print(f"updated {name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
