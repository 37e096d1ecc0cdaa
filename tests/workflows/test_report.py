"""The report of a recipe: mean ± std over seeds, the paired test of the paper's claim, the trained
models' accuracies and the terminal bar chart; checked against literal computations."""

import json
import math
import re
import shutil
import statistics
import subprocess
from pathlib import Path

import pytest
from scipy import stats
from typer.testing import CliRunner

from smu.cli import report as terminal
from smu.cli.app import app
from smu.execution.steps import Step
from smu.workflows.recipes import latex, report
from smu.workflows.recipes import statistics as stats_of

T_975 = {1: 12.706204736174698, 2: 4.302652729911275, 4: 2.7764451051977987}
"""Student's t quantile 0.975 by degrees of freedom, from a printed table."""


def literal_interval(dense, sparse):
    d = [s - x for x, s in zip(dense, sparse, strict=True)]
    mean = sum(d) / len(d)
    sd = math.sqrt(sum((v - mean) ** 2 for v in d) / (len(d) - 1))
    half = T_975[len(d) - 1] * sd / math.sqrt(len(d))
    return mean - half, mean + half


@pytest.mark.parametrize(
    "dense, sparse, verdict",
    [
        ([10.0, 12.0, 11.0], [5.0, 6.5, 5.5], "holds"),
        ([1.0, 1.2, 0.9], [2.0, 2.5, 2.1], "does not hold"),
        ([3.0, 3.0, 3.0], [2.0, 4.5, 2.6], "cannot tell"),
        ([4.0, 5.0], [1.0, 1.5], "holds"),
        ([4.0, 5.0, 6.0, 4.5, 5.5], [4.2, 5.1, 6.3, 4.4, 5.6], "cannot tell"),
    ],
)
def test_the_paired_interval_is_students_t_and_agrees_with_a_paired_t_test(dense, sparse, verdict):
    got = stats_of.paired(dense, sparse)
    low, high = literal_interval(dense, sparse)
    assert got["low"] == pytest.approx(low) and got["high"] == pytest.approx(high)
    assert got["mean"] == pytest.approx(statistics.fmean(sparse) - statistics.fmean(dense))
    assert got["verdict"] == verdict
    p = stats.ttest_rel(sparse, dense).pvalue  # a 95% interval excludes 0 exactly when p < 0.05
    assert (got["verdict"] != "cannot tell") == (p < 0.05)


def test_one_seed_cannot_tell_and_has_no_interval():
    got = stats_of.paired([10.0], [1.0])
    assert got["verdict"] == "cannot tell" and got["low"] is None and got["n"] == 1
    assert report.interval(got) == "-9.00 (one seed)"


def fake_done(gaps: dict[tuple[str, float, str, int], float]) -> list:
    """Finished unlearn steps whose UA is the reference's plus 4 × the wanted Avg. Gap."""
    done = []
    for (scenario, rate, method, seed), g in gaps.items():
        metrics = {"ua": 50.0 + 4 * g, "mia_efficacy": 40.0, "ra": 90.0, "ta": 88.0}
        tags = {"kind": "unlearn", "scenario": scenario, "rate": rate, "method": method, "seed": seed}
        step = Step(f"{scenario} {rate} {method} {seed}", Path("."), f"{len(done)}", lambda: {}, tags)
        done.append((step, {"metrics": metrics, "rte_s": 6.0}, False))
    return done


def test_claims_pair_each_seeds_sparse_gap_with_its_own_dense_gap():
    gaps = {}
    for seed, (dense, sparse) in enumerate([(8.0, 2.0), (9.0, 4.0), (7.0, 2.5)]):
        for rate in (0.0, 0.9):
            gaps[("class:0", rate, "retrain", seed)] = 0.0
        gaps[("class:0", 0.0, "ga", seed)], gaps[("class:0", 0.9, "ga", seed)] = dense, sparse
    done = fake_done(gaps)
    [claim] = stats_of.claims(done)
    assert claim["method"] == "ga" and claim["model"] == "sparse-0.9" and claim["seeds"] == [0, 1, 2]
    assert claim["gap_dense"] == [8.0, 9.0, 7.0] and claim["diffs"] == [-6.0, -5.0, -4.5]
    assert claim["verdict"] == "holds"
    [table] = stats_of.build(done)
    ga = table["rows"][1]["cells"]["sparse-0.9"]["avg_gap"]
    assert ga["mean"] == pytest.approx(statistics.fmean([2.0, 4.0, 2.5])) and ga["n"] == 3
    assert ga["std"] == pytest.approx(statistics.stdev([2.0, 4.0, 2.5]))
    assert table["rates"] == [0.0, 0.9] and table["kind"] == "unlearn"


def test_a_seed_without_its_reference_or_dense_run_is_left_out_of_the_pairing():
    gaps = {("r", 0.0, "retrain", 0): 0.0, ("r", 0.5, "retrain", 0): 0.0, ("r", 0.5, "retrain", 1): 0.0}
    gaps |= {("r", 0.0, "ft", 0): 4.0, ("r", 0.5, "ft", 0): 2.0, ("r", 0.5, "ft", 1): 1.0}
    [claim] = stats_of.claims(fake_done(gaps))
    assert claim["seeds"] == [0] and claim["verdict"] == "cannot tell"


def test_the_terminal_bar_chart_scales_to_the_largest_gap():
    gaps = {("c", r, "retrain", 0): 0.0 for r in (0.0, 0.5)}
    gaps |= {("c", 0.0, "ga", 0): 8.0, ("c", 0.5, "ga", 0): 4.0, ("c", 0.0, "ft", 0): 1.0}
    [chart] = terminal.gap_bars(stats_of.build(fake_done(gaps)))
    bars = [str(cell) for cell in chart.columns[2].cells]  # cells are plain Text (smu.cli.ui.plain)
    assert bars[0] == "█" * report.BAR and bars[1] == "█" * (report.BAR // 2)
    assert report.bar(0.125) == "▏" and report.bar(2.5) == "██▌" and report.bar(0) == ""
    assert [str(cell) for cell in chart.columns[0].cells] == ["ga", "", "ft"]  # retrain has no bar


def test_markdown_switches_to_one_row_per_model_beyond_two_models():
    gaps = {("c", r, m, 0): 1.0 * (m != "retrain") for r in (0.0, 0.5, 0.9) for m in ("retrain", "ft")}
    text = report.markdown(stats_of.build(fake_done(gaps)))
    assert "| Method | Model | UA |" in text and "| ft | sparse-0.9 |" in text
    two = {k: v for k, v in gaps.items() if k[1] != 0.9}
    assert "| Method | dense UA |" in report.markdown(stats_of.build(fake_done(two)))


SEEDS = """
kind: unlearn
dataset: digits
subset: 600
arch: cnn
seeds: [0, 1, 2]
train: {epochs: 3, lr: 0.05, batch_size: 64}
prune: {rates: [0.8], rewind_epoch: 1}
scenarios: ["class:3"]
unlearn:
  retrain: {epochs: 3, lr: 0.05, batch_size: 64}
  ga: {epochs: 1, lr: 1.0e-3}
"""


@pytest.mark.slow
def test_a_three_seed_run_reports_mean_std_and_a_verdict_recomputable_from_its_json(tmp_path):
    recipe = tmp_path / "seeds.yaml"
    recipe.write_text(SEEDS)
    runner = CliRunner()
    result = runner.invoke(app, ["run", str(recipe), "--out", str(tmp_path / "run"), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    [table] = out["report"]
    ga = table["rows"][1]["cells"]
    assert {cell["avg_gap"]["n"] for cell in ga.values()} == {3}
    [claim] = out["claims"]
    assert claim["n"] == 3 and claim["seeds"] == [0, 1, 2]
    for seed, dense, sparse in zip(claim["seeds"], claim["gap_dense"], claim["gap_sparse"], strict=True):
        for model, gap in (("dense", dense), ("sparse-0.8", sparse)):

            def metrics(method, model=model, seed=seed):
                step = tmp_path / "run" / f"seed-{seed}" / "class-3" / model / method / "step.json"
                return json.loads(step.read_text())["result"]["metrics"]

            ref, got = metrics("retrain"), metrics("ga")  # step.json: full precision; --json: 2 decimals
            assert gap == pytest.approx(
                sum(abs(got[k] - ref[k]) for k in ("ua", "mia_efficacy", "ra", "ta")) / 4, abs=0.005
            )
    low, high = literal_interval(claim["gap_dense"], claim["gap_sparse"])  # from the rounded gaps
    assert (claim["low"], claim["high"]) == (pytest.approx(low, abs=0.05), pytest.approx(high, abs=0.05))
    assert claim["verdict"] == ("holds" if high < 0 else "does not hold" if low > 0 else "cannot tell")
    rows = {row["method"]: row["cells"][""] for row in out["models"]["rows"]}
    assert rows["sparse-0.8"]["sparsity"]["mean"] == pytest.approx(80, abs=0.5)
    assert rows["dense"]["train_acc"]["n"] == 3 and 0 < rows["dense"]["train_acc"]["mean"] <= 100
    shown = runner.invoke(app, ["run", str(recipe), "--out", str(tmp_path / "run")])  # reuses every step
    assert shown.exit_code == 0 and "± " in shown.stdout and claim["verdict"] in shown.stdout
    assert "Avg. Gap to retrain, forget class:3" in shown.stdout and "█" in shown.stdout
    markdown = (tmp_path / "run" / "report.md").read_text()
    assert "paired over seeds" in markdown and "the trained models" in markdown
    tex = (tmp_path / "run" / "report.tex").read_text()  # the same tables, for a paper
    assert out["latex"] == str(tmp_path / "run" / "report.tex") and tex_numbers(tex) == md_numbers(markdown)
    assert tex.count(r"\toprule") == 3 and r"\caption{the trained models (percent)}" in tex


NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def md_numbers(text):
    """The numbers in the body rows of report.md's tables, in order."""
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| Method")]
    return [NUMBER.findall(row) for row in rows]


def tex_numbers(text):
    """The numbers in the body rows of report.tex's tables (between \\midrule and \\bottomrule)."""
    rows, inside = [], False
    for line in text.splitlines():
        inside = (inside or line == r"\midrule") and line != r"\bottomrule"
        if inside and line != r"\midrule":
            rows.append(NUMBER.findall(line))
    return rows


def two_seeds(methods=("retrain", "ft"), rates=(0.0, 0.5)):
    gaps = {
        ("c", r, m, s): (s + 1 + 2 * r) * (m != "retrain") for r in rates for m in methods for s in (0, 1)
    }
    done = fake_done(gaps)
    return stats_of.build(done), stats_of.claims(done)


@pytest.mark.parametrize("rates", [(0.0, 0.5), (0.0, 0.5, 0.9)], ids=["wide", "one row per model"])
def test_report_tex_has_report_mds_tables_with_the_same_numbers_in_booktabs(rates):
    tables, claims = two_seeds(rates=rates)
    md, tex = report.markdown(tables, "", claims), latex.latex(tables, "Command: `smu run x`\n", claims)
    assert md_numbers(md) and tex_numbers(tex) == md_numbers(md)
    assert tex.count(r"\toprule") == tex.count(r"\midrule") == tex.count(r"\bottomrule") == 2
    assert tex.count(r"\begin{tabular}") == tex.count(r"\end{tabular}") == 2
    assert r"& $2.50 \pm 0.71$ \\" in tex  # ft's Avg. Gap on sparse-0.5 over two seeds (2 and 3)
    assert "| 2.50 ± 0.71 |" in md and "±" not in tex and "−" not in tex
    assert tex.startswith("% ") and "\n% Command: `smu run x`\n" in tex  # the provenance as comments
    if len(rates) == 2:  # the paper's layout: a block of columns per model, under a rule
        assert r"\multicolumn{6}{c}{sparse-0.5}" in tex and r"\cmidrule(lr){8-13}" in tex
        assert r"\ifdim\wd0>\linewidth\resizebox{\linewidth}" in tex  # 12 columns: LaTeX scales to fit
    else:
        assert "Method & Model & UA" in tex and "| Method | Model | UA |" in md


def test_names_from_a_recipe_are_escaped_in_report_tex():
    tables, claims = two_seeds(methods=("retrain", "my_ft%&#~^{x}\\"))
    tex = latex.latex(tables, "", claims)
    assert r"my\_ft\%\&\#\textasciitilde{}\textasciicircum{}\{x\}\textbackslash{}" in tex
    assert "my_ft" not in tex
    body = re.sub(r"\\[\\&%#_{}$~^]|\\[a-zA-Z]+", "", tex)  # what LaTeX would read as special
    body = "\n".join(line.split("%")[0] for line in body.splitlines())  # comments end at %
    assert body.count("{") == body.count("}")
    rows = [line for line in tex.splitlines() if line.endswith(r"\\")]
    assert {row.count("&") - row.count(r"\&") for row in rows if "my" in row} == {12, 6}  # no extra column
    assert latex.escape("ε ≥ 6, 10% − 2") == r"$\varepsilon$ $\geq$ 6, 10\% $-$ 2"


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="needs a TeX installation")
@pytest.mark.parametrize("layout", ["onecolumn", "twocolumn"])
def test_report_tex_compiles_without_overfull_boxes_in_a_paper(tmp_path, layout):
    tables, claims = two_seeds(methods=("retrain", "a_very_long_method_name%#&", "ft"))
    (tmp_path / "report.tex").write_text(latex.latex(tables, "Command: `smu run x`\n", claims))
    (tmp_path / "paper.tex").write_text(
        f"\\documentclass[{layout}]{{article}}\n\\usepackage{{booktabs}}\n\\usepackage{{graphicx}}\n"
        "\\begin{document}\nText.\n\\input{report.tex}\n\\end{document}\n"
    )
    run = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "paper.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    log = (tmp_path / "paper.log").read_text(errors="replace")
    assert run.returncode == 0, log[-2000:]
    assert "Overfull" not in log and "a\\_very" in (tmp_path / "report.tex").read_text()
