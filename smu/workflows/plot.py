"""Figures of a recipe run (``smu plot``), drawn with matplotlib, an optional extra (``smu[plot]``).

Each figure is first built as data — panels of bars or lines, every series with its mean, std and n
over seeds, every panel with the range its metric lies in — which is written beside the picture as
``<name>.json``; the picture is then drawn from that data alone, so the JSON holds exactly what is
plotted and anyone can redraw it. Every picture says where it came from (the run's command and folder,
named relative to the current directory) in a footer and in the file's metadata, and the same run gives
the same SVG bytes. Nothing is written until every figure has been drawn. Two styles: ``default`` for
the screen, ``paper`` for a two-column paper (serif, 3.3 in wide, PDF).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shlex
import textwrap
from pathlib import Path
from typing import Any

from smu.core.errors import ArtifactError, SmuError, UsageError
from smu.core.text import jsonable
from smu.io import files, tensorfile
from smu.io import schema as S
from smu.workflows.recipes.statistics import bounds
from smu.workflows.recipes.yaml_reader import load_yaml

INSTALL = "pip install 'smu[plot]'"
FORMATS = ("png", "svg", "pdf")
DPI = 150
STYLES: dict[str, dict[str, Any]] = {
    "default": {"formats": ("png", "svg"), "folder": "figures", "rc": {"font.size": 9}},
    "paper": {
        "formats": ("pdf", "png"),
        "folder": "figures-paper",
        "rc": {
            "font.family": "serif",
            "font.serif": ["Times New Roman", "Nimbus Roman", "TeX Gyre Termes", "DejaVu Serif"],
            "mathtext.fontset": "dejavuserif",
            "font.size": 7,
            "axes.linewidth": 0.6,
            "lines.linewidth": 1.0,
            "pdf.fonttype": 42,  # TrueType, not Type 3: the fonts conference checkers accept
        },
    },
}
"""How each ``--style`` draws: its formats and folder by default, and matplotlib's settings."""
COLUMN = 3.3
"""A two-column paper's column width in inches (NeurIPS' and ICML's templates, IEEE's 3.5)."""
SALT = "smu"
"""svg.hashsalt: the SVG's element ids, hence its bytes, depend on the drawing alone."""
TABLE_KEYS = ("kind", "title", "scenario", "groups", "rates", "columns", "rows")


def matplotlib_module() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise UsageError("smu plot needs matplotlib, which is not installed", hint=INSTALL) from None
    return matplotlib


def plot_run(
    run_dir: Path,
    out: Path | None = None,
    formats: tuple[str, ...] | None = None,
    force: bool = False,
    style: str = "default",
) -> dict[str, Any]:
    """Draw the figures of the run in ``run_dir`` (the folder ``smu run`` wrote) into ``out`` (default
    ``run_dir/figures``, ``run_dir/figures-paper`` for ``style="paper"``), each as every format of
    ``formats`` (default: the style's) with its data as JSON; only the figures whose data the run has.
    Returns {"figures": [{"name", "title", "files", "data"}], "out"}."""
    run_dir = Path(run_dir)
    if style not in STYLES:
        raise UsageError(f"figure style {style!r} is not one of {', '.join(STYLES)}", hint="choose one")
    formats = STYLES[style]["formats"] if formats is None else formats
    if not formats or set(formats) - set(FORMATS):
        raise UsageError(
            f"figure formats {list(formats)!r}: smu plot draws {', '.join(FORMATS)}", hint="choose from them"
        )
    report = load_report(run_dir)
    out = Path(out) if out is not None else run_dir / STYLES[style]["folder"]
    if out.is_dir() and any(out.iterdir()) and not any(is_ours(p) for p in out.glob("*.json")) and not force:
        raise UsageError(
            f"--out {str(out)!r} is not empty and holds no figures of smu plot",
            hint="choose another --out, or pass --force",
        )
    matplotlib_module()
    recipe = read_recipe(run_dir)
    source = {"command": display_command(recipe["command"]), "run": display_path(run_dir)}
    source |= {"style": style} if style != "default" else {}
    try:
        specs = figures(report, run_dir, recipe["resolved"])
        drawn = [(spec | source, render(spec | source, formats)) for spec in specs]
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:  # edited by hand, or cut
        raise ArtifactError(
            f"{str(run_dir / 'report.json')!r} is damaged: its tables do not hold what smu run writes "
            f"({type(e).__name__}: {e})",
            hint=refresh_hint(run_dir),
        ) from e
    shown = []
    for spec, images in drawn:  # every figure drawn before the first file is written
        written = []
        for fmt, data in images.items():
            files.atomic_write(out / f"{spec['name']}.{fmt}", data)
            written.append(str(out / f"{spec['name']}.{fmt}"))
        files.write_json(out / f"{spec['name']}.json", jsonable(spec))  # NaN and ∞ as null
        shown.append(
            {
                "name": spec["name"],
                "title": spec["title"],
                "files": written,
                "data": str(out / f"{spec['name']}.json"),
            }
        )
    return {"figures": shown, "out": str(out)}


def load_report(run_dir: Path) -> dict[str, Any]:
    """report.json of a run folder, checked to hold what the figures need."""
    path = run_dir / "report.json"
    if not run_dir.is_dir():
        raise UsageError(
            f"run folder {str(run_dir)!r} does not exist", hint="give the --out folder of smu run"
        )
    if not path.is_file():
        raise UsageError(
            f"{str(run_dir)!r} holds no report.json",
            hint="give the --out folder of a finished smu run (run it again to finish it)",
        )
    refresh = refresh_hint(run_dir)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{str(path)!r} is not JSON ({e})", hint=refresh) from None
    if not current(report):
        raise ArtifactError(
            f"{str(path)!r} was written by an older smu and lacks what smu plot draws", hint=refresh
        )
    return report


def refresh_hint(run_dir: Path) -> str:
    return f"refresh it with: smu run {run_dir / 'recipe.yaml'} --out {run_dir} (it reruns no step)"


def current(report: Any) -> bool:
    """Does report.json have the tables' kinds and rates, the claims and the models table?"""
    if not isinstance(report, dict) or not all(k in report for k in ("report", "claims", "models")):
        return False
    tables, models = report["report"], report["models"]
    return (
        isinstance(tables, list)
        and all(isinstance(t, dict) and all(k in t for k in TABLE_KEYS) for t in tables)
        and isinstance(models, dict)
        and models.get("kind") == "models"
        and isinstance(models.get("rows"), list)
    )


def read_recipe(run_dir: Path) -> dict[str, Any]:
    """The command that made the run (recipe.yaml's first line) and the resolved recipe."""
    try:
        text = (run_dir / "recipe.yaml").read_text(encoding="utf-8")
        resolved = load_yaml(text, "recipe.yaml")
    except (OSError, UnicodeDecodeError, SmuError):
        text, resolved = "", None
    first = text.splitlines()[0] if text else ""
    command = (
        first.removeprefix("# ")
        if first.startswith("# smu ")
        else "smu run (command unknown: no recipe.yaml)"
    )
    return {"command": command, "resolved": resolved if isinstance(resolved, dict) else {}}


def display_path(path: Path) -> str:
    """A path as a figure names it: relative to the current directory when it lies below it, else its
    last name alone. Figures travel into papers and repositories; a machine's folders should not."""
    full = Path(path).resolve()
    try:
        here = Path.cwd().resolve()
    except OSError:  # the current directory was removed
        return full.name
    return str(full.relative_to(here)) if full != here and full.is_relative_to(here) else full.name or "/"


def display_command(command: str) -> str:
    """The command with each absolute path in it (a word, or the value of key=value) named as
    :func:`display_path` names the run folder."""
    try:
        words = shlex.split(command)
    except ValueError:  # not a command smu wrote
        return command
    changed = []
    for word in words:
        key, sep, value = word.partition("=")
        try:
            if os.path.isabs(word):
                word = display_path(Path(word))
            elif sep and os.path.isabs(value):
                word = f"{key}={display_path(Path(value))}"
        except (ValueError, OSError):  # a NUL byte, a name too long: a recipe.yaml edited by hand
            pass
        changed.append(word)
    return shlex.join(changed) if changed != words else command


def is_ours(path: Path) -> bool:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("kind") == "figure"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return False


# ── Drawing: a figure's data to PNG and SVG bytes ────────────────────────────────────────────────


def render(spec: dict[str, Any], formats: tuple[str, ...]) -> dict[str, bytes]:
    """The figure ``spec`` (title, panels, command, run, style) in each format, as bytes. Each format is
    drawn on a figure of its own: a layout computed for one format shifts the next by rounding, and the
    SVG's ids hash those positions, so its bytes would depend on whether a PNG was drawn first."""
    matplotlib = matplotlib_module()
    style = spec.get("style", "default")
    description = f"{spec['title']}. Drawn by smu plot; the data is in {spec['name']}.json"
    source = f"{spec['command']} (run folder {spec['run']})"
    provenance = {"Title": spec["title"], "Description": description, "Source": source}
    meta = {
        "png": provenance,
        "svg": provenance | {"Date": None},
        # PDF's info dictionary has no Description or Source; no CreationDate: the same bytes each time
        "pdf": {"Title": spec["title"], "Subject": f"{description}. {source}", "CreationDate": None},
    }
    images = {}
    with matplotlib.rc_context({"svg.hashsalt": SALT, **STYLES[style]["rc"]}):
        for fmt in formats:
            buffer = io.BytesIO()
            figure(spec).savefig(buffer, format=fmt, metadata=meta[fmt])
            images[fmt] = buffer.getvalue()
    return images


def figure(spec: dict[str, Any]) -> Any:
    """A matplotlib Figure of the spec: its panels in a grid, one legend, the title, and the footer. The
    paper style leaves out the title and the footer, which a paper's caption replaces; the provenance
    stays in the file's metadata and the JSON."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: no global backend switched, no figure left open

    panels, paper = spec["panels"], spec.get("style") == "paper"
    cols = min(len(panels), 2 if paper else spec.get("columns", 3))
    rows = math.ceil(len(panels) / cols)
    if paper:
        width, height = COLUMN, 1.3 * rows + (0.35 if len(panels) > 1 else 0.3)
    else:
        width, height = max(spec.get("width", 4.3) * cols, 6.0), 3.3 * rows + 1.0
    fig = Figure(figsize=(width, height), dpi=DPI * (2 if paper else 1), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, panel in zip(axes, panels, strict=False):
        (draw_bars if panel["kind"] == "bars" else draw_lines)(ax, panel, paper)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    for ax in axes[: len(panels) - cols] if paper else []:  # the x label once, under the lowest panels
        ax.set_xlabel("")
    labels = [[s["label"] for s in p["series"]] for p in panels]
    small = 6 if paper else 8
    if len(panels) > 1 and all(ls == labels[0] for ls in labels):  # the same series: one legend
        handles, names = axes[0].get_legend_handles_labels()
        if paper:  # below the panels: the column has no width to spare
            fig.legend(handles, names, loc="outside lower center", ncols=min(len(names), 4), fontsize=small)
        else:
            fig.legend(handles, names, loc="outside right center", fontsize=small)  # clear of the title
    else:
        for ax in axes[: len(panels)]:
            ax.legend(fontsize=small)
    if paper:
        return fig
    fig.suptitle("\n".join(textwrap.wrap(spec["title"], int(width * 10))), fontsize=11)
    footer = textwrap.wrap(f"{spec['command']}  ·  run folder {spec['run']}", int(width * 18))
    # A figure-wide x label is what constrained layout keeps clear of the axes: the footer.
    fig.supxlabel("\n".join(footer), x=0.005, ha="left", fontsize=6.5, color="0.35")
    return fig


def nan(values: list[float | None]) -> list[float]:
    return [math.nan if v is None else v for v in values]


def extent(y: float, err: float, limits: list[float | None]) -> tuple[float, float]:
    """How far an error bar reaches below and above ``y``: mean ± std, clipped to the metric's range
    (``limits``, None where it has no bound). Over three seeds a std can exceed the distance to a
    bound — a UA of 6.66 ± 10.62 — and a bar below 0% would claim values no seed can have; the std
    itself stays in the figure's JSON."""
    low, high = limits
    below = err if low is None else min(err, y - low)
    above = err if high is None else min(err, high - y)
    return max(below, 0.0), max(above, 0.0)


def error_bars(
    ax: Any, points: list[tuple[float, float | None, float | None]], panel: dict, **kw: Any
) -> None:
    """Error bars at (x, mean, std), clipped to the panel's ``limits``, where a std is known."""
    points = [(x, y, e) for x, y, e in points if e is not None and y is not None]
    if points:
        limits = panel.get("limits", [None, None])
        x, y, e = zip(*points, strict=True)
        below, above = zip(*(extent(m, s, limits) for m, s in zip(y, e, strict=True)), strict=True)
        ax.errorbar(x, y, yerr=[below, above], fmt="none", **kw)


def draw_bars(ax: Any, panel: dict[str, Any], paper: bool = False) -> None:
    """Grouped bars: one group per category of ``x``, one bar per series, error bars where n > 1."""
    series, categories = panel["series"], panel["x"]
    width = 0.8 / len(series)
    values = panel.get("values") and not (paper and len(categories) > 5)
    for i, s in enumerate(series):
        positions = [k - 0.4 + width * (i + 0.5) for k in range(len(categories))]
        ax.bar(positions, nan(s["y"]), width, label=s["label"], color=s.get("color", palette(i)))
        points = list(zip(positions, s["y"], s["err"], strict=True))
        error_bars(ax, points, panel, ecolor="0.15", **thin(paper))
        if values:  # each bar's mean written above it, clear of its error bar
            for p, y, e in zip(positions, s["y"], s["err"], strict=True):
                if y is not None:
                    below, above = extent(y, e or 0.0, panel.get("limits", [None, None]))
                    ax.annotate(
                        f"{y:.2f}",
                        (p, y + above if y >= 0 else y - below),
                        xytext=(0, 2 if y >= 0 else -2),
                        textcoords="offset points",
                        ha="center",
                        va="bottom" if y >= 0 else "top",
                        fontsize=5 if paper else 7,
                    )
    rotation = panel.get("rotation", 45 if paper and len(categories) > 4 else None)
    tilted = {"rotation": rotation, "ha": "right", "rotation_mode": "anchor"} if rotation else {}
    ax.set_xticks(range(len(categories)), categories, **tilted)
    decorate(ax, panel, paper)


MARKERS = "s^vDPX<>phd*H8"
"""A marker of its own for each series but the reference (13 methods and more stay apart)."""
LINESTYLES = ("-", "-.", ":")
"""Line styles the series take in turn; dashes ("--") are the reference's alone."""


def draw_lines(ax: Any, panel: dict[str, Any], paper: bool = False) -> None:
    """One line per series over its own ``x``, error bars where n > 1. Series often coincide (UA 100 for
    retrain and every method that forgets): each has its own marker and line style, earlier markers
    are larger so later ones sit inside them, and the reference — black, dashed, a hollow ring — is
    drawn above them all."""
    k = 0  # the series' place among those that are not the reference
    for i, s in enumerate(panel["series"]):
        color = s.get("color", palette(i))
        if s.get("reference"):
            # long gaps and a thinner line: a series under the reference shows between its dashes
            look = {
                "marker": "o",
                "ms": 7,
                "mfc": "none",
                "mew": 1.2,
                "ls": (0, (4, 3)),
                "lw": 1.2,
                "zorder": 3,
            }
        else:
            look = {"marker": MARKERS[k % len(MARKERS)], "ms": max(6.0 - 0.4 * k, 3.0), "zorder": 2}
            look["ls"], k = LINESTYLES[k % len(LINESTYLES)], k + 1
        if paper:
            look |= {"ms": look["ms"] * 0.6, "mew": 0.8}
        ax.plot(s["x"], nan(s["y"]), label=s["label"], color=color, **look)
        points = list(zip(s["x"], s["y"], s["err"], strict=True))
        error_bars(ax, points, panel, ecolor=color, zorder=look["zorder"], **thin(paper))
    if "ticks" in panel:
        ticks = panel["ticks"]
        close = any(
            b - a < 0.06 * (max(ticks) - min(ticks)) for a, b in zip(ticks[:-1], ticks[1:], strict=True)
        )
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks], rotation=60 if close else 0)  # 90 and 95 apart
    decorate(ax, panel, paper)


def thin(paper: bool) -> dict[str, float]:
    """Error bars' line width and caps, finer on a column-wide figure."""
    return {"elinewidth": 0.6, "capsize": 1.5} if paper else {"elinewidth": 1, "capsize": 3}


def palette(i: int) -> Any:
    """Series colours: matplotlib's ten, then the light halves of tab20, so 13 methods stay apart."""
    if i < 10:
        return f"C{i}"
    from matplotlib import colormaps

    return colormaps["tab20"]((2 * (i - 10) + 1) % 20)


def decorate(ax: Any, panel: dict[str, Any], paper: bool = False) -> None:
    """Titles, labels and grid; the paper style, short of room, writes no y label that repeats the title."""
    title, y_label = panel.get("title", ""), panel.get("y_label", "")
    ax.set_title(title, fontsize=7 if paper else 9)
    ax.set_xlabel(panel.get("x_label", ""))
    if not paper or y_label != title:
        ax.set_ylabel(y_label)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    if paper:
        ax.tick_params(labelsize=6, length=2.5, width=0.6)


# ── The figures' data, from the run's tables ─────────────────────────────────────────────────────


def figures(report: dict[str, Any], run_dir: Path, recipe: dict[str, Any]) -> list[dict[str, Any]]:
    """Every figure the run has data for, as {"kind": "figure", "name", "title", "panels", ...}."""
    specs = []
    for t in report["report"]:
        if t["kind"] == "unlearn":
            specs += [avg_gap_figure(t), metrics_figure(t, "metrics", "The metrics")]
        elif t["kind"] == "audit":
            specs.append(metrics_figure(t, "audit", "The audit's judges"))
            specs += epsilon_figures(t, run_dir, recipe)
        elif t["kind"] == "backdoor":
            specs.append(backdoor_figure(t))
    specs.append(models_figure(report["models"]))
    return [{"kind": "figure", **s} for s in specs if s is not None]


REFERENCE = {"color": "black", "ls": "--", "reference": True}
"""How a panel's reference line (retrain; the model before cleansing) is told apart: drawn on top."""
CLIPPED = "bars clipped to the metric's range"
"""What the titles say of the error bars (see :func:`extent`)."""


def series(cells: list[dict[str, Any] | None]) -> dict[str, list[Any]]:
    """Mean, std (None where one seed: no error bar) and n of the cells, None where a cell is missing."""
    found = [c if c and c.get("n") else None for c in cells]
    return {
        "y": [c["mean"] if c else None for c in found],
        "err": [c["std"] if c and c["n"] > 1 else None for c in found],
        "n": [c["n"] if c else 0 for c in found],
    }


def reference_of(t: dict[str, Any]) -> str | None:
    from smu.workflows.recipes.config import reference_method

    return reference_method([row["method"] for row in t["rows"]])


def slug(text: str, name: bool = False) -> str:
    """The run's folder name of a scenario (``random-10-``), or, trimmed, a figure's (``random-10``): at
    most 64 characters, a longer name cut and told apart from others by a hash of the whole."""
    from smu.workflows.recipes.config import slug

    if not name:
        return slug(text)
    trimmed = slug(text).strip("-")
    if len(trimmed) <= 64:
        return trimmed
    return f"{trimmed[:55]}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def folder_name(text: str) -> bool:
    """Is ``text`` a name smu run gives a model's or a method's folder? A report.json from someone else
    may say ``../..``: the audit files are read only from inside the run."""
    return text not in (".", "..") and text == slug(text) != "" and len(text.encode()) <= 255  # NAME_MAX


def avg_gap_figure(t: dict[str, Any]) -> dict[str, Any] | None:
    """The paper's headline: per approximate method, a bar per model (dense, each sparsity)."""
    exact = reference_of(t)
    rows = [row for row in t["rows"] if row["method"] != exact]
    bars = [
        {"label": group, "rate": rate, **series([row["cells"].get(group, {}).get("avg_gap") for row in rows])}
        for group, rate in zip(t["groups"], t["rates"], strict=True)
    ]
    if not any(n for s in bars for n in s["n"]):
        return None
    panel = {
        "kind": "bars",
        "x": [row["method"] for row in rows],
        "x_label": "method",
        "y_label": f"Avg. Gap to {exact} (points)",
        "limits": bounds("avg_gap"),
        "series": bars,
        "values": len(bars) <= 3,  # written above each bar while they fit
    }
    title = (
        f"Avg. Gap to {exact} at the same sparsity, forget {t['scenario']} "
        f"(lower is closer; mean ± std over seeds, {CLIPPED})"
    )
    return {
        "name": f"avg-gap-{slug(t['scenario'], name=True)}",
        "title": title,
        "panels": [panel],
        "width": 1.1 * len(rows) + 2,
    }


def metrics_figure(t: dict[str, Any], prefix: str, what: str) -> dict[str, Any]:
    """Each column of the table against sparsity, a line per method (the reference included)."""
    order = sorted(range(len(t["rates"])), key=lambda i: t["rates"][i])
    x = [100 * t["rates"][i] for i in order]
    groups = [t["groups"][i] for i in order]
    exact = reference_of(t)
    panels = [
        {
            "kind": "lines",
            "title": label,
            "x_label": "sparsity (%)",
            "y_label": label,
            "ticks": x,
            "limits": bounds(key),
            "series": [
                {
                    "label": row["method"],
                    "x": x,
                    **series([row["cells"].get(g, {}).get(key) for g in groups]),
                    **(REFERENCE if row["method"] == exact else {}),
                }
                for row in t["rows"]
            ],
        }
        for label, key in t["columns"]
    ]
    dashed = f"; {exact} dashed, on top" if exact else ""
    title = f"{what} against sparsity, forget {t['scenario']} (mean ± std over seeds, {CLIPPED}{dashed})"
    return {
        "name": f"{prefix}-{slug(t['scenario'], name=True)}",
        "title": title,
        "panels": panels,
        "columns": 3 if len(panels) <= 6 else 4,
    }


def backdoor_figure(t: dict[str, Any]) -> dict[str, Any]:
    """SA and ASR against sparsity: the Trojan model before cleansing, and after each method."""
    order = sorted(range(len(t["rates"])), key=lambda i: t["rates"][i])
    x = [100 * t["rates"][i] for i in order]
    groups = [t["groups"][i] for i in order]

    def lines(key: str) -> list[dict[str, Any]]:
        first = t["rows"][0]  # before cleansing is the same model whichever method cleanses it
        before = {
            "label": "before cleansing",
            "x": x,
            **series([first["cells"].get(g, {}).get(f"{key}_before") for g in groups]),
        }
        after = [
            {
                "label": f"after {row['method']}",
                "x": x,
                **series([row["cells"].get(g, {}).get(f"{key}_after") for g in groups]),
            }
            for row in t["rows"]
        ]
        return [before | REFERENCE, *after]

    panels = [
        {
            "kind": "lines",
            "title": title,
            "x_label": "sparsity (%)",
            "y_label": f"{key.upper()} (%)",
            "ticks": x,
            "limits": bounds(f"{key}_after"),
            "series": lines(key),
        }
        for key, title in (
            ("sa", "SA: accuracy on clean test images"),
            ("asr", "ASR: triggered images sent to the target"),
        )
    ]
    title = "Trojan cleanse against sparsity: clean accuracy (SA) and attack success (ASR), before and after"
    return {"name": "backdoor", "title": title, "panels": panels}


def models_figure(models: dict[str, Any]) -> dict[str, Any] | None:
    """The trained models' accuracies against their sparsity; IMP's test accuracy per round and seed."""
    rows = sorted(models["rows"], key=lambda row: row["cells"][""]["sparsity"]["mean"])
    if not rows:
        return None
    x = [row["cells"][""]["sparsity"]["mean"] for row in rows]
    rounds: dict[Any, list[dict[str, Any]]] = {}
    for rd in models.get("rounds", []):
        rounds.setdefault(rd["seed"], []).append(rd)
    panels = [
        {
            "kind": "lines",
            "title": "the models the methods start from" if rounds else "",
            "x_label": "sparsity (%)",
            "y_label": "accuracy (%)",
            "limits": bounds("test_acc"),
            "series": [
                {"label": label, "x": x, **series([row["cells"][""].get(key) for row in rows])}
                for label, key in (("train", "train_acc"), ("validation", "val_acc"), ("test", "test_acc"))
            ],
        }
    ]
    if rounds:
        panels.append(
            {
                "kind": "lines",
                "title": "IMP: every round",
                "x_label": "sparsity (%)",
                "y_label": "test accuracy (%)",
                "limits": bounds("test_acc"),
                "series": [
                    {
                        "label": f"seed {seed}",
                        "x": [rd["sparsity"] for rd in found],
                        "y": [rd["test_acc"] for rd in found],
                        "err": [None] * len(found),
                        "n": [1] * len(found),
                    }
                    for seed, found in rounds.items()
                ],
            }
        )
    title = f"The trained models: accuracy against sparsity (mean ± std over seeds, {CLIPPED})" + (
        "; IMP's test accuracy per round" if rounds else ""
    )
    return {"name": "models", "title": title, "panels": panels, "width": 5.0}


BIN_LABELS = [f"{0.5 * k:g}–{0.5 * (k + 1):g}" for k in range(12)] + ["≥ 6"]
"""The competition's bins of ε (n_s = 1 … 13, H_s = 2 / 2^n_s): ε < 0.5 counts as forgotten, ε ≥ 6 (∞
too) as not."""


def epsilon_figures(t: dict[str, Any], run_dir: Path, recipe: dict[str, Any]) -> list[dict[str, Any]]:
    """Per model of an audit table: the histogram of per-example ε of each method's verdict beside
    retrain's own (what a perfect method scores at this N), pooled over the seeds."""
    import numpy as np

    from smu.evaluation.judges import BIN_EDGES

    audit = recipe.get("audit") or {}
    verdict = f"{audit.get('statistic', 'logit')}-{audit.get('thresholds', 'both')}"
    seeds = recipe.get("seeds") or sorted(
        int(p.name.removeprefix("seed-")) for p in run_dir.glob("seed-*") if p.name[5:].isdigit()
    )
    exact = reference_of(t)
    found: list[dict[str, Any]] = []
    if not (folder_name(slug(t["scenario"])) and folder_name(verdict) and isinstance(seeds, list)):
        return found  # not what smu run writes (a recipe.yaml or report.json from someone else)
    seeds = [s for s in seeds if isinstance(s, int) and not isinstance(s, bool)]
    for group in filter(folder_name, t["groups"]):
        histograms = {}
        for row in filter(lambda row: folder_name(row["method"]), t["rows"]):
            paths = [
                run_dir
                / f"seed-{seed}"
                / slug(t["scenario"])
                / group
                / row["method"]
                / verdict
                / "audit.safetensors"
                for seed in seeds
            ]
            eps = [epsilons(p) for p in paths if p.is_file()]
            if eps:
                bins = np.digitize(np.concatenate(eps), BIN_EDGES)
                counts = [int((bins == k).sum()) for k in range(1, 14)]
                quality = float((2.0 / 2.0**bins).mean())
                histograms[row["method"]] = {
                    "label": f"{row['method']} (F = {quality:.3g})",
                    "y": [100 * c / len(bins) for c in counts],
                    "err": [None] * 13,
                    "n": [len(eps)] * 13,
                    "count": counts,
                    "examples": len(bins),
                    "forgetting_quality": quality,
                }
        if not histograms:
            continue
        ceiling = [histograms[exact] | {"color": "0.6"}] if exact in histograms else []
        panels = [
            {
                "kind": "bars",
                "title": f"{method} vs {exact}" if ceiling else method,
                "x": BIN_LABELS,
                "x_label": "ε",
                "y_label": "forget examples (%)",
                "rotation": 60,
                "series": [*ceiling, histograms[method] | {"color": "C3"}],
            }
            for method in histograms
            if method != exact
        ] or [
            {
                "kind": "bars",
                "title": exact,
                "x": BIN_LABELS,
                "x_label": "ε",
                "y_label": "forget examples (%)",
                "rotation": 60,
                "series": ceiling,
            }
        ]
        title = (
            f"Audit, forget {t['scenario']}, {group}: per-example ε ({verdict}; pooled over {len(seeds)} "
            f"seed{'s' if len(seeds) > 1 else ''}); {exact}'s own verdict is what a perfect method scores"
        )
        found.append(
            {
                "name": f"audit-epsilon-{slug(t['scenario'], name=True)}-{slug(group, name=True)}",
                "title": title,
                "panels": panels,
            }
        )
    return found


def epsilons(path: Path) -> Any:
    """The per-example ε of an audit.safetensors, checked (a run folder may come from someone else)."""
    tensorfile.expect_kind(path, tensorfile.read_metadata(path), S.AUDIT)
    eps = tensorfile.read_tensors(path).get("epsilon")
    if eps is None or eps.ndim != 1 or not eps.is_floating_point() or len(eps) == 0:
        raise ArtifactError(f"{str(path)!r} holds no list of ε values (epsilon)", hint="run the audit again")
    return eps.double().numpy()
