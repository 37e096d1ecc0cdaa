import json
import re

import pytest
from conftest import smu

from smu.core.errors import UsageError
from smu.workflows.recipes.catalog import find, shipped
from smu.workflows.recipes.config import load_recipe

pytestmark = pytest.mark.slow  # see pyproject.toml: pytest -m "not slow" is the inner loop

NAMES = [r.name for r in shipped()]

TINY = """
# A tiny recipe for tests.
kind: unlearn
dataset: digits
arch: cnn
train: {epochs: 4, lr: 0.05, batch_size: 64}
prune: {rates: [0.8], rewind_epoch: 1}
scenarios: ["class:3"]
unlearn:
  retrain: {epochs: 4, lr: 0.05, batch_size: 64}
  ft: {epochs: 1, batch_size: 64}
  ga: {epochs: 1}
"""


def write(tmp_path, text=TINY, name="tiny.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", NAMES)
def test_every_shipped_recipe_loads_validates_and_shows_its_command(name):
    recipe = load_recipe(name)
    assert recipe.seeds and recipe.unlearn and recipe.description and recipe.estimated_time
    header = [line for line in find(name).text().splitlines() if line.startswith("#")]
    assert any(f"smu run {name}" in line for line in header)


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith("cifar10/")])
def test_the_cifar10_recipes_pass_a_dry_run(name):
    result = smu("run", name, "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["recipe"]["dataset"] == "cifar10" and out["recipe"]["arch"] == "resnet18"
    epochs = 30 if name == "cifar10/audit" else 182  # the audit trains as the competition did
    assert out["recipe"]["train"]["epochs"] == epochs and len(out["steps"]) >= 5


def test_overrides_set_dotted_keys_with_yaml_values(tmp_path):
    recipe = load_recipe(
        write(tmp_path),
        ["unlearn.ft.lr=0.02", "seeds=[1,2]", "prune.rates=[0.5,0.9]", "train.decreasing_lr=[2]"],
    )
    assert recipe.unlearn["ft"]["lr"] == 0.02 and recipe.seeds == [1, 2] and recipe.prune.rates == [0.5, 0.9]
    assert recipe.train.decreasing_lr == (2,)
    assert not recipe.amp and load_recipe(write(tmp_path), ["amp=true", "compile=true"]).amp
    with pytest.raises(UsageError, match="amp must be bool"):
        load_recipe(write(tmp_path), ["amp=fast"])


def test_every_mistake_is_counted_at_once_and_named_with_the_nearest_key_while_the_line_stays_short(tmp_path):
    with pytest.raises(UsageError) as e:
        load_recipe(
            write(tmp_path),
            [
                "trian.epochs=3",
                "train.lr=fast",
                "unlearn.fT.lr=1",
                "unlearn.ft.lrr=1",
                "dataset=cifar1",
                "scenarios=[clas:3]",
            ],
        )
    message = str(e.value)
    parts = [
        "train.lr must be float, got 'fast'",
        "unknown key 'trian' (did you mean 'train'?)",
        "unknown method 'fT' (did you mean 'ft'?)",
        "unknown option unlearn.ft.lrr for --method ft (did you mean unlearn.ft.lr?)",
        "dataset: unknown 'cifar1' (did you mean 'cifar10'?)",
        "'clas:3' is not a forget spec",
    ]
    named = [p for p in parts if p in message]
    assert len(named) >= 4, message
    more = re.search(r"and (\d+) more", message)
    assert len(named) + (int(more[1]) if more else 0) == len(parts) and len(message) < 500


@pytest.mark.parametrize(
    "text, message",
    [
        ("kind: unlearn\n  bad: [", "is not valid YAML"),
        ("- a list", "not a mapping"),
        ("unlearn: {ft: {}}", "add unlearn.retrain"),
        ("prune: {rates: [1.5]}", "outside (0, 1)"),
        ("prune: {rates: [0.5, 0.8, 0.5]}", "prune.rates: 0.5 given more than once"),
        ("prune: {method: imp, rates: [0.9, 0.895]}", "0.9 and 0.895 both take IMP round 10"),
        ("kind: audit\nunlearn: {ga: {}}", "an audit's reference ensemble trains with unlearn.retrain's"),
        ("kind: audit\naudit: {models: 2}", "audit.models 2 must be >= 3"),
        ("kind: audit\naudit: {statistic: los}", "audit.statistic 'los' must be one of logit, loss"),
        ("kind: audti", "kind: unknown 'audti' (did you mean 'audit'?)"),
    ],
)
def test_broken_recipes_are_clear_errors(tmp_path, text, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        load_recipe(write(tmp_path, text))


def test_a_missing_recipe_or_a_bad_override_is_exit_code_2(tmp_path):
    result = smu("run", tmp_path / "nope.yaml")
    assert result.exit_code == 2 and "is neither a file nor a shipped recipe" in result.stderr
    result = smu("run", write(tmp_path), "seeds")
    assert result.exit_code == 2 and "is not key=value" in result.stderr


def test_a_run_reports_the_paper_table_and_a_second_run_reuses_every_step(tmp_path):
    recipe = write(tmp_path)
    first = smu("run", recipe, "--out", tmp_path / "run", "--json")
    assert first.exit_code == 0, first.output
    out = json.loads(first.stdout)
    assert out["steps"] == {"total": 7, "ran": 7, "skipped": 0}
    table = out["report"][0]
    assert table["title"] == "forget class:3" and table["groups"] == ["dense", "sparse-0.8"]
    assert [row["method"] for row in table["rows"]] == ["retrain", "ft", "ga"]
    retrain = table["rows"][0]["cells"]["dense"]
    assert retrain["ua"]["mean"] == 100.0 and retrain["avg_gap"]["mean"] == 0.0
    assert table["rows"][1]["cells"]["sparse-0.8"]["avg_gap"]["mean"] > 0
    ft_dense = json.loads(
        (tmp_path / "run" / "seed-0" / "class-3" / "dense" / "ft" / "step.json").read_text()
    )
    cell = table["rows"][1]["cells"]["dense"]
    assert cell["rte_min"]["mean"] == pytest.approx(ft_dense["result"]["rte_s"] / 60, rel=0.01)  # 3 digits
    assert cell["ua"]["mean"] == ft_dense["result"]["metrics"]["ua"]
    tables, claims = (tmp_path / "run" / "report.md").read_text().split("### does sparsity close the gap?")
    assert tables.count("| ft |") == 1 and claims.count("| ft | sparse-0.8 |") == 1  # wide: a row a method
    assert "kind: unlearn" in (tmp_path / "run" / "recipe.yaml").read_text()
    again = json.loads(smu("run", recipe, "--out", tmp_path / "run", "--json").stdout)
    assert again["steps"] == {"total": 7, "ran": 0, "skipped": 7} and again["report"] == out["report"]
    changed = json.loads(smu("run", recipe, "unlearn.ft.lr=0.02", "--out", tmp_path / "run", "--json").stdout)
    assert changed["steps"]["ran"] == 2  # ft on the dense and on the sparse model, nothing else


def test_a_pruning_method_s_own_options_sit_beside_the_prune_keys_and_are_checked(tmp_path):
    recipe = load_recipe(write(tmp_path), ["prune.method=synflow", "prune.synflow_iterations=7"])
    assert recipe.prune.options == {"synflow_iterations": 7}
    result = smu("run", write(tmp_path), "prune.method=synflow", "prune.synflow_iterations=0", "--dry-run")
    assert result.exit_code == 2 and "prune.synflow_iterations 0 must be >= 1" in result.stderr
    result = smu("run", write(tmp_path), "prune.synflow_iterations=7", "--dry-run")
    assert result.exit_code == 2 and "unknown key 'prune.synflow_iterations'" in result.stderr


def test_a_run_does_not_take_over_a_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("keep")
    result = smu("run", write(tmp_path, name="r.yaml"), "--out", tmp_path)
    assert result.exit_code == 2 and "holds no smu run" in result.stderr


def test_a_backdoor_recipe_reports_sa_and_asr(tmp_path):
    text = """
kind: backdoor
dataset: digits
arch: cnn
train: {epochs: 10, lr: 0.05, batch_size: 64}
prune: {rates: [0.5], rewind_epoch: 1}
backdoor: {poison: 10%, trigger_size: 3}
unlearn:
  ft: {epochs: 3, batch_size: 64}
"""
    result = smu("run", write(tmp_path, text), "--out", tmp_path / "run", "--json")
    assert result.exit_code == 0, result.output
    table = json.loads(result.stdout)["report"][0]
    assert [row["method"] for row in table["rows"]] == ["ft"] and table["groups"] == ["dense", "sparse-0.5"]
    assert table["kind"] == "backdoor" and table["rates"] == [0.0, 0.5]
    cells = table["rows"][0]["cells"]["dense"]
    assert cells["asr_before"]["mean"] > 50 and cells["asr_after"]["mean"] < cells["asr_before"]["mean"]


def test_an_audit_recipe_judges_every_method_per_model_and_reuses_its_steps(tmp_path):
    text = """
kind: audit
dataset: digits
subset: 900
arch: cnn
train: {epochs: 6, lr: 0.05, batch_size: 64}
prune: {rates: [0.5], rewind_epoch: 1}
scenarios: ["class:3"]
audit: {models: 3}
unlearn:
  retrain: {epochs: 6, lr: 0.05, batch_size: 64}
  none: {}
"""
    recipe = write(tmp_path, text)
    result = smu("run", recipe, "--out", tmp_path / "run", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    # models, then per model: 3 references, 3 + 3 members and 2 verdicts
    assert out["steps"] == {"total": 1 + 2 * 11, "ran": 23, "skipped": 0}
    table = out["report"][0]
    assert table["title"] == "audit: forget class:3" and table["groups"] == ["dense", "sparse-0.5"]
    rows = {row["method"]: row["cells"] for row in table["rows"]}
    assert set(rows) == {"retrain", "none"}
    for model in ("dense", "sparse-0.5"):
        assert rows["none"][model]["ulira"]["mean"] == 100 and rows["none"][model]["ua"]["mean"] < 20
        assert (
            rows["retrain"][model]["forgetting_quality"]["mean"]
            > 50 * rows["none"][model]["forgetting_quality"]["mean"]
        )
    verdict = tmp_path / "run" / "seed-0" / "class-3" / "sparse-0.5" / "none" / "logit-both" / "audit.json"
    written = json.loads(verdict.read_text())
    assert written["forgetting_quality"] == rows["none"]["sparse-0.5"]["forgetting_quality"]["mean"]
    assert "| none |" in (tmp_path / "run" / "report.md").read_text()
    again = json.loads(smu("run", recipe, "--out", tmp_path / "run", "--json").stdout)
    assert again["steps"]["ran"] == 0 and again["report"] == out["report"]
    judged = json.loads(
        smu("run", recipe, "audit.thresholds=above", "--out", tmp_path / "run", "--json").stdout
    )
    assert judged["steps"]["ran"] == 4  # only the verdicts: the members are the same


def test_an_imp_sweep_reports_each_rates_round_and_every_rounds_accuracy(tmp_path):
    overrides = ["subset=400", "prune.method=imp", "prune.imp_rate=0.5", "prune.rates=[0.5,0.75]"]
    result = smu(
        "run",
        write(tmp_path),
        *overrides,
        "unlearn={retrain: {epochs: 2}, ga: {}}",
        "--out",
        tmp_path / "r",
        "--json",
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["report"][0]["groups"] == ["dense", "sparse-0.5", "sparse-0.75"]
    models = {row["method"]: row["cells"][""] for row in out["models"]["rows"]}
    assert models["sparse-0.5"]["sparsity"]["mean"] == pytest.approx(50, abs=0.1)
    assert models["sparse-0.75"]["sparsity"]["mean"] == pytest.approx(75, abs=0.1)
    rounds = out["models"]["rounds"]
    assert [round(r["sparsity"]) for r in rounds] == [0, 50, 75] and all(r["seed"] == 0 for r in rounds)
    assert rounds[-1]["test_acc"] == pytest.approx(models["sparse-0.75"]["test_acc"]["mean"])
    assert [c["model"] for c in out["claims"]] == ["sparse-0.5", "sparse-0.75"]


def test_a_class_wise_method_runs_in_the_class_scenarios_and_leaves_the_others_empty(tmp_path):
    """UNSIR forgets classes: a recipe plans it for class:3 and not for random:5%, whose table has no row
    for it, where a run of it alone would be refused."""
    path = tmp_path / "r.yaml"
    path.write_text("""
kind: unlearn
dataset: digits
arch: cnn
train: {epochs: 2, lr: 0.05, batch_size: 64}
prune: {rates: []}
scenarios: ["class:3", "random:5%"]
unlearn:
  retrain: {epochs: 1, batch_size: 64}
  unsir: {noise_steps: 2, noise_copies: 2}
""")
    result = smu("run", path, "--out", tmp_path / "run", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["steps"]["total"] == 4  # the models, retrain twice, unsir once
    methods = {table["scenario"]: [row["method"] for row in table["rows"]] for table in out["report"]}
    assert methods == {"class:3": ["retrain", "unsir"], "random:5%": ["retrain"]}
    seed = tmp_path / "run" / "seed-0"
    assert (seed / "class-3" / "dense" / "unsir").is_dir() and (
        seed / "random-5-" / "dense" / "retrain"
    ).is_dir()
    assert not (seed / "random-5-" / "dense" / "unsir").exists()
