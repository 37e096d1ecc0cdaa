import importlib.util
import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from smu.cli.app import app
from smu.cli.run import run
from smu.core.errors import SmuWarning
from smu.evaluation.judges import forgetting_quality
from smu.execution.engine import Reporter
from smu.io import tensorfile

pytestmark = pytest.mark.slow  # see pyproject.toml: pytest -m "not slow" is the inner loop

# matplotlib is an optional extra (smu[plot]); the test of its absence runs either way.
needs_matplotlib = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="smu[plot]")
runner = CliRunner()
TINY = [
    "seeds=[0,1]",
    "subset=300",
    "train.epochs=2",
    "prune.rewind_epoch=1",
    "unlearn.retrain.epochs=2",
    "unlearn.ft.epochs=1",
    "unlearn.ga.epochs=1",
    "unlearn.l1-sparse.epochs=1",
]
DC = "{http://purl.org/dc/elements/1.1/}"


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """A real quickstart run over two seeds, cut down to seconds, and its figures."""
    from smu.workflows.plot import plot_run

    folder = tmp_path_factory.mktemp("quick") / "run"
    run("quickstart", overrides=TINY, out=folder, reporter=Reporter())
    # What the figures are drawn from: report.json, its numbers rounded by their units (smu.core.units).
    report = json.loads((folder / "report.json").read_text())
    return folder, report, plot_run(folder)


def read(figure):
    """The data a figure was drawn from, as written beside it."""
    return json.loads(Path(figure["data"]).read_text())


def by_name(result):
    return {f["name"]: f for f in result["figures"]}


FILES = ("png", "svg", "json")
"""What smu plot writes of each figure, in the order it lists them."""


def plot(*args):
    """``smu plot ARGS...`` in this process."""
    return runner.invoke(app, ["plot", *map(str, args)])


@needs_matplotlib
def test_a_run_gets_its_figures_as_png_svg_and_the_data_drawn(quick):
    import matplotlib.image

    folder, _, result = quick
    assert result["out"] == str(folder / "figures")
    figures = by_name(result)
    assert set(figures) == {"avg-gap-class-3", "metrics-class-3", "models"}  # no backdoor, audit or IMP
    for figure in figures.values():
        png, svg = (Path(f) for f in figure["files"])
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        data = read(figure)
        image = matplotlib.image.imread(png)
        panels = len(data["panels"])
        assert image.ndim == 3 and image.shape[2] == 4 and image.shape[1] >= 900 and image.shape[0] >= 600
        root = ET.parse(svg).getroot()
        assert root.tag.endswith("svg") and root.find(f".//{DC}title").text == figure["title"]
        assert data["title"] == figure["title"] and data["name"] == figure["name"] and panels >= 1
    assert "Avg. Gap to retrain" in figures["avg-gap-class-3"]["title"]
    assert "forget class:3" in figures["metrics-class-3"]["title"]


@needs_matplotlib
def test_the_bars_are_the_reports_avg_gap_means_with_the_std_over_seeds(quick):
    _, report, result = quick
    [panel] = read(by_name(result)["avg-gap-class-3"])["panels"]
    table = report["report"][0]
    rows = [row for row in table["rows"] if row["method"] != "retrain"]
    assert panel["x"] == ["ft", "ga", "l1-sparse"]
    assert [s["label"] for s in panel["series"]] == table["groups"] == ["dense", "sparse-0.9"]
    for s in panel["series"]:
        assert s["y"] == [row["cells"][s["label"]]["avg_gap"]["mean"] for row in rows]
        assert s["err"] == [row["cells"][s["label"]]["avg_gap"]["std"] for row in rows]
        assert s["n"] == [2, 2, 2]


@needs_matplotlib
def test_the_metrics_figure_draws_every_column_for_every_method_retrain_included(quick):
    _, report, result = quick
    data = read(by_name(result)["metrics-class-3"])
    table = report["report"][0]
    assert [p["title"] for p in data["panels"]] == [label for label, _ in table["columns"]]
    ua = data["panels"][0]
    assert [s["label"] for s in ua["series"]] == ["retrain", "ft", "ga", "l1-sparse"]
    assert ua["series"][0]["x"] == [0.0, 90.0] and ua["series"][0]["y"] == [100.0, 100.0]
    gap = data["panels"][-1]["series"][2]
    assert gap["y"] == [table["rows"][2]["cells"][g]["avg_gap"]["mean"] for g in table["groups"]]
    models = read(by_name(result)["models"])["panels"]
    assert len(models) == 1 and [s["label"] for s in models[0]["series"]] == ["train", "validation", "test"]
    test_acc = [row["cells"][""]["test_acc"]["mean"] for row in report["models"]["rows"]]
    assert models[0]["series"][2]["y"] == test_acc


@needs_matplotlib
def test_every_figure_says_which_command_and_run_made_it(quick):
    folder, _, result = quick
    command = (folder / "recipe.yaml").read_text().splitlines()[0].removeprefix("# ")
    assert command.startswith("smu run quickstart 'seeds=[0,1]'")
    from PIL import Image

    for figure in result["figures"]:
        png, svg = figure["files"]
        info = Image.open(png).info
        assert info["Source"] == f"{command} (run folder {folder.name})"  # not under the tests' folder
        assert str(folder.parent) not in Path(png).read_bytes().decode("latin-1")
        assert figure["title"] in info["Description"]
        root = ET.parse(svg).getroot()
        assert command in root.find(f".//{DC}source").text
        drawn = " ".join(" ".join(re.findall(r"<!-- (.*?) -->", Path(svg).read_text())).split())
        assert " ".join(command.split()) in drawn  # the footer, drawn on the figure
        assert read(figure)["command"] == command


@needs_matplotlib
def test_the_same_run_gives_the_same_svg_bytes_and_format_picks_the_files(quick, tmp_path):
    folder, _, first = quick
    result = plot(folder, "--out", tmp_path / "again", "--format", "svg", "--json")
    assert result.exit_code == 0, result.output
    again = json.loads(result.stdout)
    for figure in again["figures"]:
        [svg] = figure["files"]
        assert svg.endswith(".svg")
        assert Path(svg).read_bytes() == Path(by_name(first)[figure["name"]]["files"][1]).read_bytes()
    assert sorted(p.suffix for p in (tmp_path / "again").iterdir()) == [".json"] * 3 + [".svg"] * 3
    quiet = plot(folder, "--out", tmp_path / "again", "--format", "png", "-q")
    assert quiet.exit_code == 0 and quiet.stdout.split() == [
        str(tmp_path / "again" / f"{f['name']}.png") for f in again["figures"]
    ]
    table = plot(folder, "--out", tmp_path / "again")  # the Files column: each path on lines of its own
    column = [line.split("│")[-2].strip() for line in table.stdout.splitlines() if line.count("│") == 4]
    listed = [str(tmp_path / "again" / f"{f['name']}.{ext}") for f in again["figures"] for ext in FILES]
    assert table.exit_code == 0 and "".join(column) == "".join(listed), table.stdout


def test_without_matplotlib_smu_plot_says_how_to_install_it(tmp_path, monkeypatch):
    folder = write_run(tmp_path / "run", [])
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    result = plot(folder, "--out", tmp_path / "figures")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "Error: smu plot needs matplotlib, which is not installed; pip install 'smu[plot]'"
    ]
    assert not (tmp_path / "figures").exists()


def bad_folder(tmp_path, case):
    folder = tmp_path / "run"
    if case == "missing":
        return folder
    if case == "no report":
        folder.mkdir()
    if case == "not json":
        write_run(folder, []).joinpath("report.json").write_text("{half")
    if case == "older smu":  # before the claims, the models table and the tables' kinds and rates
        report = json.loads(write_run(folder, []).joinpath("report.json").read_text())
        del report["claims"], report["models"]
        (folder / "report.json").write_text(json.dumps(report))
    return folder


@pytest.mark.parametrize(
    "case, code, message",
    [
        ("missing", 2, "does not exist"),
        ("no report", 2, "holds no report.json"),
        ("not json", 1, "report.json' is not JSON"),
        ("older smu", 1, "was written by an older smu"),
    ],
)
def test_a_bad_run_folder_is_one_line_naming_it_and_writes_nothing(tmp_path, case, code, message):
    folder = bad_folder(tmp_path, case)
    result = plot(folder)
    assert result.exit_code == code, result.output
    [line] = result.stderr.strip().splitlines()
    assert message in line and str(folder) in line and "Traceback" not in result.output
    if case in ("not json", "older smu"):
        assert f"smu run {folder / 'recipe.yaml'} --out {folder}" in line
    assert not (folder / "figures").exists()


def stats(mean, std=0.0, n=1):
    return {"mean": mean, "std": std, "n": n}


def write_run(folder, tables, models=None, recipe=""):
    folder.mkdir(parents=True)
    models = models or {"kind": "models", "rows": [], "rounds": []}
    report = {
        "out": str(folder),
        "report": tables,
        "claims": [],
        "models": models,
        "markdown": "",
        "wall_s": 1,
    }
    (folder / "report.json").write_text(json.dumps(report))
    (folder / "recipe.yaml").write_text(f"# smu run synthetic.yaml\n{recipe}")
    return folder


@needs_matplotlib
def test_a_backdoor_run_gets_sa_and_asr_and_imp_rounds_a_line_per_seed(tmp_path):
    from smu.workflows.plot import plot_run

    def cells(before, after):
        return {
            "sa_before": stats(90),
            "asr_before": stats(before),
            "sa_after": stats(88),
            "asr_after": stats(after),
        }

    backdoor = {
        "kind": "backdoor",
        "title": "Trojan cleanse (percent)",
        "scenario": "trojan",
        "groups": ["dense", "sparse-0.9"],
        "rates": [0.0, 0.9],
        "columns": [],
        "rows": [{"method": "ft", "cells": {"dense": cells(99, 40), "sparse-0.9": cells(98, 10)}}],
    }
    rows = [
        {"method": name, "rate": rate, "cells": {"": {"sparsity": stats(100 * rate), "test_acc": stats(acc)}}}
        for name, rate, acc in (("dense", 0.0, 95.0), ("sparse-0.9", 0.9, 93.0))
    ]
    rounds = [
        {"seed": s, "sparsity": sp, "test_acc": 95 - s - sp / 10} for s in (0, 1) for sp in (0.0, 50.0, 75.0)
    ]
    folder = write_run(tmp_path / "run", [backdoor], {"kind": "models", "rows": rows, "rounds": rounds})
    figures = by_name(plot_run(folder, formats=("png",)))
    assert set(figures) == {"backdoor", "models"}
    sa, asr = read(figures["backdoor"])["panels"]
    assert [s["label"] for s in asr["series"]] == ["before cleansing", "after ft"]
    assert (
        asr["series"][0]["y"] == [99, 98]
        and asr["series"][1]["y"] == [40, 10]
        and sa["series"][1]["y"] == [88, 88]
    )
    assert asr["series"][0]["x"] == [0.0, 90.0] and asr["series"][0]["err"] == [None, None]
    accuracy, imp = read(figures["models"])["panels"]
    assert accuracy["series"][2]["y"] == [95.0, 93.0] and accuracy["series"][0]["y"] == [None, None]
    assert [s["label"] for s in imp["series"]] == ["seed 0", "seed 1"]
    assert imp["series"][1]["x"] == [0.0, 50.0, 75.0] and imp["series"][1]["y"] == [94.0, 89.0, 86.5]


@needs_matplotlib
def test_an_audit_run_gets_the_histogram_of_epsilon_of_each_method_beside_retrains(tmp_path):
    from smu.workflows.plot import plot_run

    judged = {"forgetting_quality": stats(0.5), "ua": stats(10.0)}
    audit = {
        "kind": "audit",
        "title": "audit: forget random:10%",
        "scenario": "random:10%",
        "groups": ["dense"],
        "rates": [0.0],
        "columns": [["F", "forgetting_quality"], ["UA", "ua"]],
        "rows": [{"method": m, "cells": {"dense": judged}} for m in ("retrain", "ga")],
    }
    folder = write_run(
        tmp_path / "run", [audit], recipe="seeds: [0, 1]\naudit: {statistic: loss, thresholds: above}\n"
    )
    rng = np.random.default_rng(0)
    epsilons = {}
    for method, scale in (("retrain", 0.5), ("ga", 4.0)):
        for seed in (0, 1):
            eps = np.append(rng.exponential(scale, 40), np.inf)
            epsilons.setdefault(method, []).append(eps)
            where = (
                folder / f"seed-{seed}" / "random-10-" / "dense" / method / "loss-above" / "audit.safetensors"
            )
            tensorfile.save_tensors(where, {"epsilon": torch.from_numpy(eps)}, {"smu.kind": "audit"})
            stale = where.parent.parent / "logit-both" / "audit.safetensors"  # another setting's verdict
            tensorfile.save_tensors(
                stale, {"epsilon": torch.zeros(3, dtype=torch.float64)}, {"smu.kind": "audit"}
            )
    figures = by_name(plot_run(folder, formats=("svg",)))
    assert set(figures) == {"audit-random-10", "audit-epsilon-random-10-dense"}
    [panel] = read(figures["audit-epsilon-random-10-dense"])["panels"]
    assert panel["title"] == "ga vs retrain" and len(panel["x"]) == 13
    for s, method in zip(panel["series"], ("retrain", "ga"), strict=True):
        pooled = np.concatenate(epsilons[method])
        quality, bins, _ = forgetting_quality(pooled)
        assert s["examples"] == 82 and s["count"] == [int((bins == k).sum()) for k in range(1, 14)]
        assert s["forgetting_quality"] == pytest.approx(quality) and sum(s["y"]) == pytest.approx(100)
        assert s["label"].startswith(method)
    assert panel["series"][1]["count"][-1] >= 2  # ε = ∞ lands in the last bin


@needs_matplotlib
def test_output_into_a_foreign_folder_needs_force(quick, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    result = plot(quick[0], "--out", tmp_path)
    assert result.exit_code == 2 and "--force" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@needs_matplotlib
def test_smu_run_draws_the_figures_itself(quick):
    folder, report, _ = quick
    assert report["figures"] and all(Path(f).is_file() for f in report["figures"])
    assert {Path(f).parent for f in report["figures"]} == {folder / "figures"}


def test_smu_run_without_matplotlib_still_reports_and_says_how_to_get_the_figures(quick, monkeypatch):
    folder, report, _ = quick
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    warning = "figures not drawn: smu plot needs matplotlib, which is not installed; pip install 'smu[plot]'"
    with pytest.warns(SmuWarning, match=re.escape(warning)) as said:  # the CLI shows it as one line
        result = runner.invoke(
            app, ["run", str(folder / "recipe.yaml"), "--out", str(folder)]
        )  # no step runs
    assert result.exit_code == 0, result.output
    assert len(said) == 1 and "Traceback" not in result.output
    again = json.loads((folder / "report.json").read_text())
    assert again["figures"] == [] and again["report"] == json.loads(json.dumps(report["report"]))


def unlearn_table(methods=("retrain", "ft", "l1-sparse"), seeds=3):
    """An unlearn table whose stds reach past 0 and 100, as three seeds of a small run do."""
    near = {"ua": (6.66, 10.62), "mia_efficacy": (97.0, 8.0), "ra": (99.5, 3.0), "ta": (50.0, 5.0)}
    cells = {key: stats(m, s, seeds) for key, (m, s) in near.items()}
    cells |= {"rte_min": stats(0.01, 0.05, seeds), "avg_gap": stats(1.5, 4.0, seeds)}
    return {
        "kind": "unlearn",
        "title": "forget class:3",
        "scenario": "class:3",
        "groups": ["dense", "sparse-0.9"],
        "rates": [0.0, 0.9],
        "columns": [["UA", "ua"], ["MIA-Eff", "mia_efficacy"], ["RA", "ra"], ["TA", "ta"]]
        + [["RTE min", "rte_min"], ["Avg. Gap", "avg_gap"]],
        "rows": [{"method": m, "cells": {"dense": cells, "sparse-0.9": cells}} for m in methods],
    }


def models_table(seeds=3):
    rows = [
        {
            "method": name,
            "rate": rate,
            "cells": {"": {"sparsity": stats(100 * rate), "test_acc": stats(98.0, 4.0, seeds)}},
        }
        for name, rate in (("dense", 0.0), ("sparse-0.9", 0.9))
    ]
    return {"kind": "models", "rows": rows, "rounds": []}


def drawn_figures(result):
    """Each figure redrawn from its JSON alone, as matplotlib Figures, with its data."""
    from smu.workflows.plot import figure

    return [(read(f), figure(read(f))) for f in result["figures"]]


def error_bar_ends(fig):
    """(panel title, low, high) of every error bar drawn on the figure, read from its artists."""
    from matplotlib.container import ErrorbarContainer

    ends = []
    for ax in fig.axes:
        for container in ax.containers:
            if isinstance(container, ErrorbarContainer):
                _, caps, [bars] = container.lines
                ends += [(ax.get_title(), *sorted((a[1], b[1]))) for a, b in bars.get_segments()]
                ends += [(ax.get_title(), y, y) for cap in caps for y in cap.get_ydata()]
    return ends


def assert_bars_within_limits(result):
    checked = 0
    for data, fig in drawn_figures(result):
        limits = {p.get("title", ""): p["limits"] for p in data["panels"]}
        for title, low, high in error_bar_ends(fig):
            bottom, top = limits[title]
            assert low >= bottom - 1e-9 and (top is None or high <= top + 1e-9), (data["name"], title)
            checked += 1
    return checked


@needs_matplotlib
def test_no_error_bar_leaves_its_metrics_range_and_the_rest_span_the_std(tmp_path):
    from smu.workflows.plot import plot_run

    folder = write_run(tmp_path / "run", [unlearn_table()], models_table())
    result = plot_run(folder, formats=("png",))
    assert assert_bars_within_limits(result) > 0
    metrics = next(fig for data, fig in drawn_figures(result) if data["name"] == "metrics-class-3")
    ta = [(low, high) for title, low, high in error_bar_ends(metrics) if title == "TA" and low < high]
    assert ta and all((low, high) == pytest.approx((45.0, 55.0)) for low, high in ta)  # inside: the full std
    ua = [low for title, low, _ in error_bar_ends(metrics) if title == "UA"]
    assert min(ua) == 0.0  # 6.66 ± 10.62: cut at 0, not at -3.96
    assert "clipped to the metric's range" in read(by_name(result)["metrics-class-3"])["title"]


@needs_matplotlib
def test_the_error_bars_of_a_real_run_stay_in_range(quick):
    assert assert_bars_within_limits(quick[2]) > 0


@needs_matplotlib
def test_every_line_has_its_own_marker_and_the_reference_is_drawn_on_top(tmp_path):
    from smu.workflows.plot import plot_run

    methods = ("retrain", "ft", "ga", "l1-sparse", "salun", "scrub")  # all with the same numbers
    folder = write_run(tmp_path / "run", [unlearn_table(methods)])
    result = plot_run(folder, formats=("svg",))
    [(data, fig)] = [(d, f) for d, f in drawn_figures(result) if d["name"] == "metrics-class-3"]
    for ax in fig.axes:
        lines = {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}
        assert list(lines) == list(methods)
        looks = [(line.get_marker(), line.get_linestyle()) for line in lines.values()]
        assert len(set(looks)) == len(looks) and len({marker for marker, _ in looks}) == len(looks)
        reference = lines.pop("retrain")
        assert reference.get_linestyle() == "--" and all(ln.get_linestyle() != "--" for ln in lines.values())
        assert all(reference.get_zorder() > line.get_zorder() for line in lines.values())
        sizes = [line.get_markersize() for line in lines.values()]
        assert sizes == sorted(sizes, reverse=True)  # a later, smaller marker sits inside an earlier one


@needs_matplotlib
@pytest.mark.parametrize("where", ["above", "elsewhere"])
def test_a_footer_names_the_run_folder_relative_to_where_it_ran_never_a_machine_path(
    tmp_path, monkeypatch, where
):
    from PIL import Image

    from smu.workflows.plot import plot_run

    folder = write_run(tmp_path / "work" / "runs" / "table", [unlearn_table()])
    recipe = tmp_path / "work" / "exp.yaml"
    (folder / "recipe.yaml").write_text(f"# smu run {recipe} 'seeds=[0,1]'\n")
    here = tmp_path / ("work" if where == "above" else "other")
    here.mkdir(exist_ok=True)
    monkeypatch.chdir(here)
    result = plot_run(folder)
    run, command = ("runs/table", "smu run exp.yaml") if where == "above" else ("table", "smu run exp.yaml")
    for figure in result["figures"]:
        png, svg = figure["files"]
        data = read(figure)
        assert data["run"] == run and data["command"] == f"{command} 'seeds=[0,1]'"
        assert Image.open(png).info["Source"] == f"{data['command']} (run folder {run})"
        assert f"run folder {run}" in " ".join(re.findall(r"<!-- (.*?) -->", Path(svg).read_text()))
        for path in (png, svg, figure["data"]):
            assert str(tmp_path).encode() not in Path(path).read_bytes()


@needs_matplotlib
def test_the_paper_style_is_a_column_wide_serif_pdf_and_png_without_title_or_footer(tmp_path):
    from PIL import Image

    from smu.workflows.plot import COLUMN, plot_run

    folder = write_run(tmp_path / "run", [unlearn_table()], models_table())
    result = plot(folder, "--style", "paper", "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["out"] == str(folder / "figures-paper") and len(shown["figures"]) == 3
    svgs = by_name(plot_run(folder, tmp_path / "svg", ("svg",), style="paper"))
    for figure in shown["figures"]:
        pdf, png = (Path(f) for f in figure["files"])
        assert pdf.suffix == ".pdf" and pdf.read_bytes()[:5] == b"%PDF-"
        assert b"/Type3" not in pdf.read_bytes()  # TrueType fonts, which paper checkers accept
        assert b"Serif" in pdf.read_bytes() and b"DejaVuSans" not in pdf.read_bytes()
        assert Image.open(png).size[0] == pytest.approx(COLUMN * 300, abs=2)
        data = read(figure)
        assert data["style"] == "paper"
        drawn = " ".join(re.findall(r"<!-- (.*?) -->", Path(svgs[figure["name"]]["files"][0]).read_text()))
        assert data["command"] not in drawn and data["title"] not in drawn  # the caption's job
    again = plot_run(folder, tmp_path / "again", ("pdf",), style="paper")
    first = [Path(f["files"][0]).read_bytes() for f in shown["figures"]]
    assert [Path(f["files"][0]).read_bytes() for f in again["figures"]] == first  # no creation date
    wrong = plot(folder, "--style", "poster")
    assert wrong.exit_code == 2 and "--style 'poster'" in wrong.stderr
