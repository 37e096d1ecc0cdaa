"""The extra metrics (smu.evaluation.metrics): each against a slow, literal copy of the official code it
is pinned to, their edge cases by hand, and where they show: smu eval, smu unlearn, a recipe's report,
a plug-in's metric, the trackers."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import smu
from torch.utils.data import DataLoader, TensorDataset

from smu import loggers
from smu.core import names
from smu.core.errors import UnknownNameError, UsageError
from smu.core.units import reported
from smu.data.batches import to_float
from smu.data.forget import resolve_forget
from smu.evaluation.divergence import activation_distance, js_divergence, weight_distance
from smu.evaluation.metrics import METRICS, measure, metric_names, random_model
from smu.execution.engine import TrainConfig, fit
from smu.io import artifacts
from smu.models import build_for
from smu.workflows.prune import base_meta

ALL = ["zrf", "js", "activation_distance", "weight_distance"]
ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def models(tmp_path_factory, digits):
    """full.safetensors trained on all of digits; without3.safetensors retrained without class 3 from the
    same initialisation (seed 0), so that their weights compare."""
    folder = tmp_path_factory.mktemp("models")
    retain = resolve_forget("class:3", digits).retain(digits)
    for name, data in (("full", digits.train), ("without3", retain)):
        torch.manual_seed(0)
        m = build_for("cnn", digits.info)
        fit(m, data, TrainConfig(epochs=8, batch_size=64, lr=0.05))
        artifacts.save_model(folder / f"{name}.safetensors", m, base_meta(digits, "cnn", 0, "test"))
    return folder


def load(models, name):
    return artifacts.load_model(models / f"{name}.safetensors").model


# ── The official code, copied literally (vikram2000b/bad-teaching-unlearning metrics.py) ──────────────


def official_js(p, q):
    m = (p + q) / 2
    return 0.5 * F.kl_div(torch.log(p), m) + 0.5 * F.kl_div(torch.log(q), m)


def official_unlearning_score(tmodel, gold_model, forget_dl):
    model_preds = []
    gold_model_preds = []
    with torch.no_grad():
        for batch in forget_dl:
            x, y, cy = batch
            model_output = tmodel(x)
            gold_model_output = gold_model(x)
            model_preds.append(F.softmax(model_output, dim=1).detach().cpu())
            gold_model_preds.append(F.softmax(gold_model_output, dim=1).detach().cpu())
    model_preds = torch.cat(model_preds, axis=0)
    gold_model_preds = torch.cat(gold_model_preds, axis=0)
    return 1 - official_js(model_preds, gold_model_preds)


def official_actv_dist(model1, model2, dataloader):
    distances = []
    with torch.no_grad():
        for batch in dataloader:
            x, _, _ = batch
            diff = torch.sqrt(
                torch.sum(torch.square(F.softmax(model1(x), dim=1) - F.softmax(model2(x), dim=1)), axis=1)
            )
            distances.append(diff.detach().cpu())
    return torch.cat(distances, axis=0).mean()


def forget_loader(digits, batch_size):
    forget = resolve_forget("class:3", digits).forget(digits)
    x = to_float(forget.take(slice(0, len(forget))))
    return DataLoader(TensorDataset(x, forget.y, forget.y), batch_size=batch_size)


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides")  # F.kl_div's, in the official code
def test_zrf_js_and_activation_distance_are_the_official_code_s_numbers_whatever_its_batch_size(
    models, digits
):
    model, retrained = load(models, "full").eval(), load(models, "without3").eval()
    forget = resolve_forget("class:3", digits)
    got = measure(ALL[:3], model, digits, forget, arch="cnn", reference=retrained, seed=3)
    teacher = random_model("cnn", digits, 3, like=model)
    for batch_size in (128, 7):  # one JSDiv over every output at once: the batches change nothing
        loader = forget_loader(digits, batch_size)
        zrf = official_unlearning_score(model, teacher, loader)
        assert got["metrics"]["zrf"] == pytest.approx(zrf.item(), abs=1e-6)
        js = 1 - official_unlearning_score(retrained, model, loader)  # the authors' notebook's "JS Div"
        assert got["metrics"]["js"] == pytest.approx(js.item(), abs=1e-6)
        actv = official_actv_dist(model, retrained, loader)
        assert got["metrics"]["activation_distance"] == pytest.approx(actv.item(), abs=1e-6)
    assert got["reference"] == {
        "zrf": pytest.approx(official_unlearning_score(retrained, teacher, loader).item())
    }
    assert got["options"] == {"seed": 3}


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides")
def test_the_official_js_takes_both_kls_from_the_mixture_and_averages_over_the_classes_too():
    p = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    q = torch.tensor([[0.2, 0.5, 0.3], [0.3, 0.3, 0.4]])
    m = (p + q) / 2
    from_mixture = 0.5 * (m * (m / p).log()).sum(1) + 0.5 * (m * (m / q).log()).sum(1)
    by_hand = from_mixture.mean().item() / 3  # "mean": over examples and the 3 classes
    assert js_divergence(p.log(), q.log()) == pytest.approx(by_hand, rel=1e-6)
    assert official_js(p, q).item() == pytest.approx(by_hand, rel=1e-6)
    textbook = 0.5 * (p * (p / m).log()).sum(1) + 0.5 * (q * (q / m).log()).sum(1)  # the paper's JS
    assert by_hand != pytest.approx(textbook.mean().item() / 3, rel=1e-3)


def test_js_and_activation_distance_of_a_model_to_itself_are_exactly_zero_and_weight_distance_too(
    models, digits
):
    model = load(models, "full")
    got = measure(ALL, model, digits, resolve_forget("class:3", digits), arch="cnn", reference=model)
    assert got["metrics"]["js"] == 0.0 and got["metrics"]["activation_distance"] == 0.0
    assert got["metrics"]["weight_distance"]["total"] == 0.0
    logits = torch.randn(64, 10) * 30  # confident outputs: probabilities far below float32's epsilon
    assert js_divergence(logits, logits) == 0.0 and activation_distance(logits, logits) == 0.0


def test_a_probability_that_underflowed_to_zero_leaves_the_divergence_finite():
    a = torch.tensor([[0.0, 200.0, 0.0]])  # softmax: exactly 0 for two classes in float32
    b = torch.zeros(1, 3)
    with pytest.warns(UserWarning):
        assert math.isinf(official_js(a.softmax(1), b.softmax(1)).item())  # the official code's log(0)
    value = js_divergence(a, b)
    assert math.isfinite(value) and value > 0


def test_weight_distance_per_layer_squares_sum_to_the_total_squared(models):
    got = weight_distance(load(models, "full"), load(models, "without3"))
    layers = got["layers"]
    assert set(layers) == {n for n, _ in load(models, "full").named_parameters()} and all(
        d > 0 for d in layers.values()
    )
    assert sum(d * d for d in layers.values()) == pytest.approx(got["total"] ** 2, rel=1e-12)


def test_a_model_that_never_saw_the_class_is_closer_to_a_random_model_on_it(models, digits):
    forget = resolve_forget("class:3", digits)
    got = measure(
        ["zrf"], load(models, "full"), digits, forget, arch="cnn", reference=load(models, "without3")
    )
    assert got["reference"]["zrf"] > got["metrics"]["zrf"] + 0.05  # retrain: the higher ZRF


def test_the_random_model_is_repeatable_by_its_seed_and_is_not_a_training_initialisation(models, digits):
    like = load(models, "full")
    first = random_model("cnn", digits, 0, like).state_dict()
    again, other = random_model("cnn", digits, 0, like).state_dict(), random_model("cnn", digits, 1, like)
    torch.manual_seed(0)
    initial = build_for("cnn", digits.info).state_dict()  # what smu trains a seed-0 model from
    weight = "net.fc.weight"
    assert torch.equal(first[weight], again[weight]) and not torch.equal(first[weight], initial[weight])
    assert not torch.equal(first[weight], other.state_dict()[weight])
    assert torch.equal(first["normalize.mean"], like.state_dict()["normalize.mean"])


def test_names_are_checked_with_a_did_you_mean_and_the_quick_check_knows_the_built_ins():
    assert metric_names("zrf, js,zrf") == ("zrf", "js") and metric_names(None) == ()
    with pytest.raises(UnknownNameError, match="unknown metric 'jss'") as e:
        metric_names("zrf,jss")
    assert "did you mean 'js'?" in e.value.hint
    assert tuple(n for n in METRICS if n not in METRICS.packages) == names.METRICS
    with pytest.raises(
        UsageError, match="metric 'js' compares with the retrained model: give it with --reference"
    ):
        measure(["zrf", "js"], torch.nn.Linear(1, 1), None, None, arch="cnn")


def test_a_metric_s_value_becomes_plain_numbers_and_anything_else_is_one_error(models, digits):
    from smu.core.errors import SmuError
    from smu.evaluation.metrics import Metric, MetricInputs, compute

    forget = resolve_forget("class:3", digits)
    inputs = MetricInputs(load(models, "full"), forget.forget(digits), digits, forget)

    def confidence(i):
        return {"mean": i.softmax().max(1).values.mean(), "first": {"logit": i.outputs()[0, 0]}}

    value = compute(Metric("confidence", "mean top-1 probability", confidence), inputs)
    assert type(value["mean"]) is float and type(value["first"]["logit"]) is float
    with pytest.raises(SmuError, match="metric 'words' returned a str, not a number or a dict of numbers"):
        compute(Metric("words", "not a number", lambda i: "high"), inputs)


# ── Where they show ──────────────────────────────────────────────────────────────────────────────────


def test_eval_metrics_json_holds_them_under_extra_and_the_table_as_rows(models):
    base = [
        "eval",
        "--model",
        models / "full.safetensors",
        "-f",
        "class:3",
        "-r",
        models / "without3.safetensors",
    ]
    result = smu(*base, "--metrics", ",".join(ALL), "--metric-seed", "2", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    plain = json.loads(smu(*base, "--json").stdout)
    assert "extra" not in plain and {k: v for k, v in out.items() if k != "extra"} == plain
    extra = out["extra"]
    assert list(extra["metrics"]) == ALL and extra["options"] == {"seed": 2}
    assert 0 < extra["metrics"]["zrf"] < extra["reference"]["zrf"] <= 1 and list(extra["reference"]) == [
        "zrf"
    ]
    assert (
        extra["metrics"]["weight_distance"]["total"] > 0
        and len(extra["metrics"]["weight_distance"]["layers"]) > 4
    )
    assert extra == reported(extra)  # rounded as scores are: 4 significant digits
    table = smu(*base, "--metrics", "zrf,js,weight_distance").stdout
    for label in ("ZRF", "JS", "Weight dist", "Avg. Gap"):
        assert label in table


def test_a_metric_that_needs_the_reference_without_one_is_one_line_naming_both(models):
    result = smu(
        "eval",
        "--model",
        models / "full.safetensors",
        "-f",
        "class:3",
        "--metrics",
        "zrf,activation_distance",
    )
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "'activation_distance'" in result.stderr
    assert "--reference" in result.stderr


def test_an_unknown_metric_is_one_line_with_the_closest_name_before_torch_is_needed(models):
    result = smu(
        "eval", "--model", models / "full.safetensors", "-f", "class:3", "--metrics", "zrf,activaton_distance"
    )
    assert result.exit_code == 2
    assert "unknown metric 'activaton_distance'" in result.stderr and "'activation_distance'" in result.stderr


def test_unlearn_evaluates_the_extra_metrics_and_refuses_them_with_no_eval(models, tmp_path):
    args = [
        "unlearn",
        "--model",
        models / "full.safetensors",
        "-f",
        "class:3",
        "--method",
        "ft",
        "--epochs",
        "1",
    ]
    refused = smu(*args, "--metrics", "zrf", "--no-eval", "--out", tmp_path / "x")
    assert refused.exit_code == 2 and "--no-eval" in refused.stderr and not (tmp_path / "x").exists()
    result = smu(
        *args, "-r", models / "without3.safetensors", "--metrics", "zrf,js", "--out", tmp_path / "u", "--json"
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert set(out["extra"]["metrics"]) == {"zrf", "js"} and out["extra"]["metrics"]["js"] > 0
    assert "--metrics zrf,js" in artifacts.load_model(out["model"]).meta["smu.command"]
    numbers = loggers.numbers(out)  # what a tracker gets as the run's final metrics
    assert {"extra/metrics/zrf", "extra/metrics/js", "extra/reference/zrf"} <= set(numbers)
    assert "extra/options/seed" not in numbers
    plain = smu(*args, "--out", tmp_path / "p", "--json")
    assert "--metric" not in artifacts.load_model(json.loads(plain.stdout)["model"]).meta["smu.command"]


# ── A plug-in's metric (docs/PLUGINS.md: Your own metric) ────────────────────────────────────────────


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The plug-in of docs/PLUGINS.md as pip leaves it: its module, and a .dist-info with its entry point."""
    folder = tmp_path_factory.mktemp("site")
    section = (ROOT / "docs" / "PLUGINS.md").read_text().split("## Your own metric")[1]
    pyproject = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
    group, name, target = re.search(r'entry-points\."([^"]+)"\]\n(\S+) = "([^"]+)"', pyproject).groups()
    (folder / "smu_agreement.py").write_text(re.search(r"```python\n(.*?)```", section, re.S).group(1))
    info = folder / "smu_agreement-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: smu-agreement\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{name}={target}\n")
    return folder


def smu_with(site, *args):
    """``smu ARGS...`` in a process of its own that finds the plug-in installed in ``site``."""
    env = dict(os.environ, PYTHONPATH=str(site))
    return subprocess.run(
        [sys.executable, "-m", "smu", *map(str, args)], capture_output=True, text=True, env=env
    )


@pytest.mark.slow
def test_a_plugin_metric_joins_through_its_entry_point_like_a_built_in(site, models):
    base = ["eval", "--model", models / "full.safetensors", "-f", "class:3"]
    result = smu_with(
        site, *base, "-r", models / "without3.safetensors", "--metrics", "zrf,agreement", "--json"
    )
    assert result.returncode == 0, result.stderr
    extra = json.loads(result.stdout)["extra"]
    assert list(extra["metrics"]) == ["zrf", "agreement"] and 0 <= extra["metrics"]["agreement"] < 50
    assert "agreement: top-1 agreement with the retrained model" in smu_with(site, "eval", "--help").stdout
    missing = smu_with(site, *base, "--metrics", "agreement")  # it declared that it needs the reference
    assert (
        missing.returncode == 2 and "metric 'agreement' compares with the retrained model" in missing.stderr
    )
    typo = smu_with(site, *base, "--metrics", "agreemnt")  # known by its entry point, before it is imported
    assert typo.returncode == 2 and "did you mean 'agreement'?" in typo.stderr


# ── A recipe's metrics: ─────────────────────────────────────────────────────────────────────────────

RECIPE = """
kind: unlearn
dataset: digits
arch: cnn
train: {epochs: 3, lr: 0.05, batch_size: 64}
prune: {rates: []}
scenarios: ["class:3"]
unlearn:
  retrain: {epochs: 3, lr: 0.05, batch_size: 64}
  ft: {epochs: 1, batch_size: 64}
"""


def test_a_recipe_s_metrics_are_checked_with_the_rest(tmp_path):
    from smu.workflows.recipes.config import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text(RECIPE)
    assert (
        load_recipe(path, ["metrics=[zrf,js]"]).metrics == ["zrf", "js"] and load_recipe(path).metrics == []
    )
    with pytest.raises(UsageError, match=r"metrics: unknown 'jss' \(did you mean 'js'\?\)"):
        load_recipe(path, ["metrics=[zrf,jss]"])
    # An audit recipe's metrics: tests/workflows/test_audit_metrics.py
    with pytest.raises(UsageError, match="metrics: extra metrics are columns of kind: unlearn and audit"):
        load_recipe(path, ["kind=backdoor", "metrics=[zrf]"])


@pytest.mark.slow
def test_a_recipe_s_metrics_are_extra_columns_measured_from_the_saved_models_of_a_finished_run(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(RECIPE)
    first = smu("run", path, "--out", tmp_path / "run", "--json")
    assert first.exit_code == 0, first.output
    before = json.loads(first.stdout)["report"][0]
    result = smu("run", path, "metrics=[zrf,js,weight_distance]", "--out", tmp_path / "run", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["steps"] == {"total": 4, "ran": 1, "skipped": 3}  # only the metrics step ran
    table = out["report"][0]
    assert table["columns"] == [
        *before["columns"],
        ["ZRF", "zrf"],
        ["JS", "js"],
        ["Weight dist", "weight_distance"],
    ]
    retrain, ft = (row["cells"]["dense"] for row in table["rows"])
    assert retrain["js"]["mean"] == 0.0 and ft["js"]["mean"] > 0 and ft["weight_distance"]["mean"] > 0
    assert 0 < ft["zrf"]["mean"] < 1 and retrain["zrf"]["n"] == 1
    for key, cell in before["rows"][1]["cells"]["dense"].items():
        assert ft[key] == cell  # the paper's columns as they were
    from smu.workflows.recipe import report_numbers  # what the run's trackers get as its final metrics

    assert report_numbers(out)["class:3/ft/dense/zrf"] == ft["zrf"]["mean"]
    report = (tmp_path / "run" / "report.md").read_text()
    assert "| dense ZRF | dense JS | dense Weight dist |" in report
    step = json.loads(
        (tmp_path / "run" / "seed-0" / "class-3" / "dense" / "metrics" / "step.json").read_text()
    )
    assert step["result"]["options"] == {"seed": 0} and set(step["result"]["metrics"]) == {"retrain", "ft"}
