"""smu audit --metrics: the extra metrics of each member pair, computed from what the members kept, equal
to what smu eval measures of the two models; where they show (--json, the table, the trackers, an audit
recipe's report); which members train again for them; and the usage errors."""

import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from smu import loggers
from smu.cli.app import app, main
from smu.core.errors import UsageError
from smu.execution.steps import Step
from smu.io.files import digest
from smu.workflows.audit_metrics import member_keys

runner = CliRunner()
ALL = ["zrf", "js", "activation_distance", "weight_distance"]
OUTPUTS = "zrf,js,activation_distance"
SMALL = dict(forget="class:3:30", models=3, retrain_epochs=2, retrain_batch_size=64)


@pytest.fixture(scope="module")
def measured(pruned_cnn, tmp_path_factory):
    """No unlearning audited with every built-in metric, the members' weights kept: (folder, the audited
    model, the API's result, in full precision)."""
    import smu

    out = tmp_path_factory.mktemp("audit-metrics")
    model = pruned_cnn / "dense" / "model.safetensors"
    result = smu.audit(model=model, method="none", metrics=ALL, keep_models=True, out=out, **SMALL)
    return out, model, result


def test_each_pair_is_what_smu_eval_measures_of_its_two_models(measured):
    import smu

    out, _, result = measured
    extra = result["extra"]
    pairs, own = [], []
    for k in range(3):
        member, reference = (
            out / folder / f"seed-{k}" / "model.safetensors" for folder in ("none", "reference")
        )
        pairs.append(
            smu.evaluate(model=member, forget="class:3:30", reference=reference, metrics=ALL)["extra"]
        )
        own.append(smu.evaluate(model=reference, forget="class:3:30", metrics=["zrf"])["extra"])
    for name in ("zrf", "js", "activation_distance"):
        values = [p["metrics"][name] for p in pairs]
        assert extra["metrics"][name]["mean"] == pytest.approx(np.mean(values), rel=1e-12), name
    totals = [p["metrics"]["weight_distance"]["total"] for p in pairs]
    weights = extra["metrics"]["weight_distance"]
    assert weights["mean"]["total"] == pytest.approx(np.mean(totals), rel=1e-12)
    assert weights["mean"]["layers"].keys() == pairs[0]["metrics"]["weight_distance"]["layers"].keys()
    assert 0 <= weights["low"]["total"] <= min(totals) <= max(totals) <= weights["high"]["total"]  # kept ≥ 0
    # Beside them, the retrained models' own ZRF; the metrics that compare with them have none.
    zrf = [o["metrics"]["zrf"] for o in own]
    assert extra["reference"]["zrf"]["mean"] == pytest.approx(np.mean(zrf), rel=1e-12)
    assert set(extra["reference"]) == {"zrf"} and extra["options"] == {"seed": 0}
    js = extra["metrics"]["js"]
    assert 0 < js["low"] < js["mean"] < js["high"]  # three retrained models: three different JS


def test_no_unlearning_is_n_copies_of_the_original_model_and_so_is_its_zrf(measured):
    import smu

    _, model, result = measured
    original = smu.evaluate(model=model, forget="class:3:30", metrics=["zrf"])["extra"]["metrics"]["zrf"]
    assert result["extra"]["metrics"]["zrf"] == pytest.approx(
        {"mean": original, "low": original, "high": original}, rel=1e-12
    )


def audit(model, out, *args):
    """The fixture's audit through the CLI, with ``args`` added: its stdout."""
    small = ["--forget", "class:3:30", "--models", "3", "--retrain-epochs", "2", "--retrain-batch-size", "64"]
    command = ["audit", "--model", str(model), "--method", "none", "--out", str(out), *small, *args]
    result = runner.invoke(app, command)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_json_table_and_trackers_show_them_and_a_second_run_trains_nothing(measured):
    out, model, result = measured
    shown = json.loads(audit(model, out, "--metrics", OUTPUTS, "--json"))
    assert shown["steps"] == {"total": 7, "ran": 1, "reused": 6}  # the members kept more than these read
    assert list(shown["extra"]["metrics"]) == OUTPUTS.split(",")
    for name, value in shown["extra"]["metrics"].items():
        assert value == pytest.approx(result["extra"]["metrics"][name], rel=5e-4)  # 4 significant digits
    numbers = loggers.numbers(shown)  # what --log sends as the run's final metrics
    assert numbers["extra/metrics/zrf/mean"] == shown["extra"]["metrics"]["zrf"]["mean"]
    assert "extra/reference/zrf/high" in numbers and not any("seed" in k for k in numbers)
    table = re.sub(r"[│┃┏━┓┡┩└┘─┴┬┼╇╈┳┗┛\s]", "", audit(model, out, "--metrics", OUTPUTS))  # wrapping undone
    assert "0stepsrun,7reused" in table and "Extrametricsontheforgetset" in table
    zrf = shown["extra"]["metrics"]["zrf"]["mean"]
    assert f"ZRF{zrf:.4f}{shown['extra']['reference']['zrf']['mean']:.4f}[" in table  # none's has no spread


def test_an_audit_without_metrics_reuses_members_that_kept_more(measured):
    out, model, _ = measured
    plain = json.loads(audit(model, out, "--json"))
    assert plain["steps"] == {"total": 7, "ran": 1, "reused": 6} and "extra" not in plain  # judged again


def test_members_train_again_only_when_they_kept_less_than_the_metrics_read(tmp_path):
    decides = {"member": "ga", "config": {"epochs": 1}, "seed": 0, "parent": "abc"}
    statistics, outputs, weights = (
        member_keys(decides, tmp_path, k) for k in ("statistics", "outputs", "weights")
    )
    assert statistics == digest(decides)  # the key of every member cached before extra metrics
    assert len({statistics, outputs, weights}) == 3

    def done_with(key):
        (tmp_path / "step.json").write_text(json.dumps({"key": key, "result": {}}))

    done_with(statistics)
    assert member_keys(decides, tmp_path, "statistics") == statistics  # reused
    assert member_keys(decides, tmp_path, "outputs") == outputs  # kept no logits: trains again
    done_with(outputs)
    assert member_keys(decides, tmp_path, "statistics") == outputs  # reused: it kept more
    assert member_keys(decides, tmp_path, "weights") == weights
    done_with(weights)
    assert {member_keys(decides, tmp_path, k) for k in ("statistics", "outputs", "weights")} == {weights}


@pytest.mark.parametrize(
    "metrics, message",
    [
        (
            "zrf,weight_distance",
            "metric 'weight_distance' reads the members' weights, which the audit keeps "
            "only with --keep-models",
        ),
        ("zrf,jss", "unknown metric 'jss'; did you mean 'js'?"),
    ],
)
def test_bad_metrics_are_one_line_and_exit_2(pruned_cnn, tmp_path, capsys, metrics, message):
    model = pruned_cnn / "dense" / "model.safetensors"
    args = ["audit", "--model", str(model), "--forget", "class:3:30", "--method", "none"]
    with pytest.raises(SystemExit) as e:
        main([*args, "--metrics", metrics, "-o", str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "a").exists()


# ── An audit recipe's metrics: ──────────────────────────────────────────────────────────────────────

RECIPE = """
kind: audit
dataset: digits
arch: cnn
train: {epochs: 2, lr: 0.05, batch_size: 64}
prune: {rates: []}
scenarios: ["class:3:30"]
audit: {models: 3}
unlearn:
  retrain: {epochs: 2, lr: 0.05, batch_size: 64}
  none: {}
"""


def test_an_audit_recipe_takes_the_metrics_of_outputs_but_not_weight_distance(tmp_path):
    from smu.workflows.recipes.config import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text(RECIPE)
    assert load_recipe(path, ["metrics=[zrf,js,activation_distance]"]).metrics == OUTPUTS.split(",")
    with pytest.raises(UsageError, match="metrics: weight_distance reads the members' weights"):
        load_recipe(path, ["metrics=[zrf,weight_distance]"])


def test_an_audit_report_has_a_column_per_metric_after_the_judges(tmp_path):
    from smu.workflows.recipes.report import markdown
    from smu.workflows.recipes.statistics import AUDIT_COLUMNS, audit_tables

    def verdict(method, seed, zrf, total):
        extra = {"zrf": {"mean": zrf, "low": 0, "high": 1}, "weight_distance": {"mean": {"total": total}}}
        result = {"forgetting_quality": 0.5, "score": 0.4, "ulira": {"mean": 60.0}, "tow": {"mean": 0.9}}
        result |= {"unlearned": {"ua": 1.0, "ra": 2.0, "ta": 3.0}, "rte_s": 6.0, "extra": {"metrics": extra}}
        tags = {"kind": "audit", "scenario": "class:3:30", "rate": 0.0, "method": method, "seed": seed}
        return Step("judge", tmp_path, "k", lambda: {}, tags), result, True

    done = [verdict("retrain", 0, 0.9, 1.0), verdict("ga", 0, 0.7, 5.0), verdict("ga", 1, 0.8, 7.0)]
    [table] = audit_tables(done)
    assert table["columns"] == [*AUDIT_COLUMNS, ("ZRF", "zrf"), ("Weight dist", "weight_distance")]
    retrain, ga = (row["cells"]["dense"] for row in table["rows"])
    assert retrain["zrf"]["mean"] == 0.9 and ga["zrf"]["mean"] == pytest.approx(0.75)  # over seeds
    assert ga["weight_distance"]["mean"] == 6.0 and ga["zrf"]["n"] == 2
    assert "| dense ZRF | dense Weight dist |" in markdown([table])


@pytest.mark.slow
def test_an_audit_recipe_reports_the_metrics_of_its_member_pairs(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE + "metrics: [zrf, js]\n")
    result = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "run"), "--json"])
    assert result.exit_code == 0, result.output
    [table] = [t for t in json.loads(result.stdout)["report"] if t["kind"] == "audit"]
    assert table["columns"][-2:] == [["ZRF", "zrf"], ["JS", "js"]]
    retrain, nothing = (row["cells"]["dense"] for row in table["rows"])
    assert 0 < retrain["js"]["mean"] < nothing["js"]["mean"]  # retrained with other seeds: close, not equal
    [verdict] = (tmp_path / "run" / "seed-0").rglob("none/logit-both/audit.json")
    assert json.loads(verdict.read_text())["extra"]["options"] == {"seed": 0}
