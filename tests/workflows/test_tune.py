"""smu tune: the search space comes from the method, trials never read the test split, the reported number
is the held-out draw's, a killed study continues without losing a trial, and bad input is one line."""

import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from conftest import said, smu

from smu.core.errors import UsageError
from smu.core.options import Space, search_space, tunable
from smu.core.units import reported
from smu.data import Splits, splits_of
from smu.execution.steps import run_steps
from smu.methods.unlearning import METHODS
from smu.methods.unlearning.gradient_ascent import GAConfig
from smu.workflows.recipes.config import parse_recipe

pytestmark = pytest.mark.slow  # see pyproject.toml: pytest -m "not slow" is the inner loop

optuna = pytest.importorskip("optuna")
# A short GA search on the shared digits cnn: a few seconds per trial, references of 4 epochs.
TUNE = ["--forget", "class:3", "--method", "ga", "--batch-size", "64", "--retrain-epochs", "4"]
TUNE += ["--retrain-batch-size", "64", "--space", "epochs=1:3", "--seed", "1"]


def test_each_method_declares_what_it_searches_and_space_narrows_widens_or_fixes_it():
    assert tunable(GAConfig) == {"epochs": Space(1, 10, integer=True), "lr": Space(1e-5, 1e-1, log=True)}
    assert all(not tunable(METHODS[m].config) for m in ("retrain", "none"))
    assert all(tunable(spec.config) for name, spec in METHODS.items() if name not in ("retrain", "none"))
    changed = search_space(GAConfig, ["lr=1e-4:1e-2:log", "--momentum=0:0.99"], fixed=["epochs"])
    assert changed == {"lr": Space(1e-4, 1e-2, log=True), "momentum": Space(0, 0.99)}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("lrr=1e-4:1e-2", "lrr is not a numeric option of this method (did you mean lr?)"),
        ("lr=1e-2:1e-4", "is an empty range: LOW must be below HIGH"),
        ("lr=0:1e-2:log", "is log-uniform, so LOW must be > 0"),
        ("lr=-1:1", "leaves the range of lr, which must be > 0"),
        ("epochs=1.5:3", "needs whole numbers for an integer option"),
        ("lr", "is not NAME=LOW:HIGH[:log]"),
        ("lr=a:b", "needs numbers"),
    ],
)
def test_a_bad_space_is_a_usage_error_naming_it(change, message):
    with pytest.raises(UsageError, match="--space") as e:
        search_space(GAConfig, [change])
    assert message in str(e.value)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--space", "nope=1:2"], "--space 'nope=1:2': nope is not a numeric option of this method"),
        (["--space", "lr=1:1"], "--space 'lr=1:1' is an empty range"),
        (["--trials", "0"], "--trials 0 must be >= 1"),
        (["--lr", "1e-3", "--epochs", "2"], "nothing to tune"),
        (["--method", "retrain"], "--method retrain is the reference"),
        (["--method", "none"], "nothing to tune"),
        (["--forget", "indices:{idx}"], "has no second draw"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_folder(pruned_cnn, tmp_path, args, message):
    (tmp_path / "idx.txt").write_text("1\n2\n")
    args = [a.replace("{idx}", str(tmp_path / "idx.txt")) for a in args]
    model = pruned_cnn / "round-1" / "model.safetensors"
    base = ["tune", "--model", model, "--forget", "class:3", "--method", "ga", "--out", tmp_path / "t"]
    result = smu(*base, *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "t").exists()


def test_without_optuna_smu_tune_says_how_to_install_it(pruned_cnn, tmp_path):
    code = "import sys\nsys.modules['optuna'] = None\nfrom smu.cli.app import main\nmain(sys.argv[1:])"
    model = pruned_cnn / "round-1" / "model.safetensors"
    args = [
        "tune",
        "--model",
        str(model),
        "--forget",
        "class:3",
        "--method",
        "ga",
        "--out",
        str(tmp_path / "t"),
    ]
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "Error: smu tune needs Optuna, which is not installed; pip install 'smu[tune]'"
    ]


class GuardedSplits(Splits):
    """Splits whose test set raises while ``studying`` is set (during the references of the tuning draw
    and every trial): the proof that tuning never reads it."""

    studying = False

    @property
    def test(self):
        assert not GuardedSplits.studying, "the test split was read while tuning"
        return self.__dict__["test"]


def test_trials_never_read_the_test_split_and_the_number_reported_is_the_held_out_one(
    pruned_cnn, tmp_path, monkeypatch
):
    from smu.io import artifacts
    from smu.methods.unlearning import make_config
    from smu.workflows import tune as tuning

    loaded = artifacts.load_model(pruned_cnn / "round-1" / "model.safetensors", "cpu")
    splits = splits_of(loaded, None, torch.device("cpu"))
    splits.__class__ = GuardedSplits
    subject = tuning.load_subject(loaded, splits, "class:3", 0)
    heldout = tuning.load_subject(loaded, splits, "class:4", 0)
    study, measured = tuning.run_study, []

    def guarded_study(*args, **kwargs):
        GuardedSplits.studying = True
        try:
            return study(*args, **kwargs)
        finally:
            GuardedSplits.studying = False

    def counting_measure(*args, **kwargs):
        measured.append(args[0].forget.spec)
        return measure(*args, **kwargs)

    measure = tuning.measure
    monkeypatch.setattr(tuning, "run_study", guarded_study)
    monkeypatch.setattr(tuning, "measure", counting_measure)
    space = search_space(GAConfig, ["epochs=1:3"], fixed=["batch_size"])
    steps = tuning.plan(
        lambda: subject,
        lambda: heldout,
        {"parent": loaded.sha256, "forget": subject.forget.sha256, "heldout": heldout.forget.sha256},
        "ga",
        {"batch_size": 64},
        space,
        make_config("retrain", {"epochs": 4, "batch_size": 64}),
        tuning.TuneConfig(trials=4, prune=False),
        1,
        tmp_path,
    )
    done = run_steps(steps)
    result = tuning.summary(subject, steps, done, "ga", space, {"batch_size": 64}, tmp_path, 0.0)
    assert measured == ["class:4"]  # the chosen setting ran once more, on the other class
    assert (
        result["heldout"]["forget"]["spec"] == "class:4" and result["tuning"]["forget"]["spec"] == "class:3"
    )
    assert set(result["tuning"]["reference"]) == {"ua", "mia_efficacy", "ra", "val_acc"}  # no TA
    assert "ta" in result["heldout"]["metrics"] and "ta" in result["heldout"]["gap"]
    best = min((t for t in result["trials"] if t["state"] == "complete"), key=lambda t: t["value"])
    assert result["best"]["params"] == best["params"] and result["tuning"]["avg_gap"] == best["value"]
    assert all(set(t["metrics"]) == {"ua", "mia_efficacy", "ra", "val_acc"} for t in result["trials"])
    # the trials' models are gone; the references and the held-out model stay
    assert not list((tmp_path / "trials").rglob("model.safetensors"))
    assert (tmp_path / "ga" / "heldout" / "model.safetensors").is_file()


@pytest.fixture(scope="module")
def tuned(pruned_cnn, tmp_path_factory):
    out = tmp_path_factory.mktemp("tune") / "run"
    model = pruned_cnn / "round-1" / "model.safetensors"
    result = smu("tune", "--model", model, *TUNE, "--trials", "5", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    return model, out, json.loads(result.stdout)


def test_the_snippet_runs_in_a_recipe_and_the_printed_command_gives_the_held_out_number(tuned, tmp_path):
    model, out, result = tuned
    snippet = yaml.safe_load((out / "tuned-ga.yaml").read_text())
    assert json.loads((out / "ga" / "tune.json").read_text())["best"] == result["best"]
    assert (out / "ga" / "manifest.json").is_file()
    assert snippet == yaml.safe_load(result["recipe"])
    values = snippet["unlearn"]["ga"]
    assert values == {k: result["config"][k] for k in values} and values["batch_size"] == 64
    assert set(result["best"]["params"]) <= set(values)
    recipe = parse_recipe(
        "tuned", yaml.safe_dump({"dataset": "digits", "unlearn": {"retrain": {}, **snippet["unlearn"]}})
    )
    assert recipe.unlearn["ga"] == values  # smu run takes it as it is
    words = shlex.split(result["reproduce"])
    assert words[:2] == ["smu", "unlearn"] and "--reference" in words
    again = smu(*words[1:], "--out", tmp_path / "again", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["gap"] == result["heldout"]["gap"]


def test_a_study_continues_where_a_killed_one_stopped_and_loses_no_trial(tuned, tmp_path):
    model, _, first = tuned
    out = tmp_path / "run"
    args = [
        sys.executable,
        "-m",
        "smu",
        "tune",
        "--model",
        str(model),
        *TUNE,
        "--trials",
        "8",
        "--out",
        str(out),
    ]
    proc = subprocess.Popen([*args, "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    try:
        while complete(out) < 2 or not running(out):  # two trials done, a third under way
            assert proc.poll() is None and time.time() < deadline, "the study never got two trials done"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        proc.kill()
    before = trials(out)
    again = smu("tune", "--model", model, *TUNE, "--trials", "8", "--out", out, "--json")
    assert again.exit_code == 0, again.output
    after = [
        {k: t[k] for k in ("number", "state", "value", "params")} for t in json.loads(again.stdout)["trials"]
    ]
    # every trial finished before the kill is still there, with its values and score
    done_before = [reported(t) for t in before if t["state"] in ("complete", "pruned")]  # as --json rounds
    assert done_before and all(t in after for t in done_before)
    counted = [t for t in after if t["state"] in ("complete", "pruned", "diverged")]
    assert len(counted) == 8
    # the trial the kill cut short (none if it finished in the instant before): run again, same values
    lost = [t for t in after if t["state"] == "lost (rerun)"]
    assert len(lost) <= 1
    for cut in lost:
        assert [t["params"] for t in after if t["state"] != "lost (rerun)"].count(cut["params"]) == 1
    # the first 5 trials of the same settings match the study run in one go (a seeded sampler)
    assert [t["params"] for t in after[:2]] == [t["params"] for t in first["trials"][:2]]


def trials(out):
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{out / 'study.db'}")
    return [
        {"number": t.number, "state": t.state.name.lower(), "value": t.value, "params": dict(t.params)}
        for t in study.get_trials()
        if t.state.name != "RUNNING"
    ]


def running(out) -> bool:
    """A trial under way, which has said which process runs it."""
    try:
        study = optuna.load_study(study_name=None, storage=f"sqlite:///{out / 'study.db'}")
        return any(t.state.name == "RUNNING" and "worker" in t.user_attrs for t in study.get_trials())
    except Exception:  # the study is being created
        return False


def complete(out) -> int:
    if not (out / "study.db").is_file():
        return 0
    try:
        return sum(t["state"] == "complete" for t in trials(out))
    except Exception:  # the study is being created
        return 0


def test_a_search_where_every_trial_diverges_ends_in_one_line(pruned_cnn, tmp_path):
    model = pruned_cnn / "round-1" / "model.safetensors"
    args = [*TUNE, "--space", "lr=1e6:1e9:log", "--trials", "2", "--no-prune", "--out", tmp_path / "t"]
    result = smu("tune", "--model", model, *args)
    assert result.exit_code == 1
    assert said(result.stderr).startswith("Error: no trial of ga finished: 2 pruned, diverged or lost")


def test_importance_is_given_when_two_options_are_searched(tuned):
    _, _, result = tuned
    assert set(result["best"]["params"]) == {"epochs", "lr"}
    assert sum(t["state"] == "complete" for t in result["trials"]) >= 4  # enough for fANOVA
    assert set(result["importance"]) == {"epochs", "lr"}
    assert abs(sum(result["importance"].values()) - 1) < 1e-6


TUNED_RECIPE = [
    "seeds=[0]",
    "train.epochs=4",
    "prune.rewind_epoch=1",
    "unlearn={retrain: {epochs: 4, batch_size: 64}, ga: {epochs: 2, batch_size: 64}}",
    "tune.methods=[ga]",
    "tune.trials=3",
    'tune.space={ga: ["lr=1e-4:1e-2:log"]}',
]


def test_a_recipe_tunes_its_methods_and_reports_them_on_their_held_out_draws(tmp_path):
    out = tmp_path / "run"
    first = smu("run", "quickstart", *TUNED_RECIPE, "--out", out, "--json")
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    [tuned] = [t for t in report["report"] if t["title"].startswith("tuned")]
    assert tuned["title"] == "tuned on forget class:3, measured on the held-out draw class:4"
    assert [r["method"] for r in tuned["rows"]] == ["ga"] and tuned["groups"] == ["dense", "sparse-0.9"]
    for cells in tuned["rows"][0]["cells"].values():
        assert cells["heldout_gap"]["n"] == 1 and cells["tuning_min"]["mean"] > 0
    # two models: a tuning and a held-out reference, a worker and the held-out run each; epochs fixed at 2
    studies = list(out.glob("seed-0/class-3/*/tune/study.db"))
    assert len(studies) == 2
    for db in studies:
        [summary] = optuna.get_all_study_summaries(f"sqlite:///{db}")
        assert summary.n_trials == 3
        trials = optuna.load_study(study_name=summary.study_name, storage=f"sqlite:///{db}").trials
        assert all(set(t.params) == {"lr"} for t in trials)  # the recipe's epochs stay fixed
    again = smu("run", "quickstart", *TUNED_RECIPE, "--out", out, "--json")
    assert json.loads(again.stdout)["steps"]["ran"] == 0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("tune.methods=[retrain]", "tune: 'retrain' is not one of this recipe's approximate methods"),
        ("tune.methods=[ft]", "tune: 'ft' is not one of this recipe's approximate methods"),
        ('tune.space={ga: ["lr=1:0.1"]}', "tune.space.ga: --space 'lr=1:0.1' is an empty range"),
    ],
)
def test_a_bad_tune_section_is_refused_before_any_step(override, message, tmp_path):
    args = [a for a in TUNED_RECIPE if not a.startswith("tune.space")]
    result = smu("run", "quickstart", *args, override, "--out", tmp_path / "run")
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert not (tmp_path / "run").exists()


def test_the_held_out_draw_is_the_next_class_or_the_next_seed(digits):
    from smu.data.forget import resolve_forget
    from smu.workflows.tune import heldout_forget

    assert heldout_forget(resolve_forget("class:3", digits), digits, 0) == ("class:4", 0)
    assert heldout_forget(resolve_forget("class:9:20", digits), digits, 5) == ("class:0:20", 5)
    assert heldout_forget(resolve_forget("random:10%", digits, 2), digits, 2) == ("random:10%", 3)


def test_a_broken_study_database_is_one_line(pruned_cnn, tmp_path):
    out = tmp_path / "t"
    out.mkdir()
    (out / "study.db").write_text("\x1b[31mnot a database\n")
    model = pruned_cnn / "round-1" / "model.safetensors"
    result = smu("tune", "--model", model, *TUNE, "--trials", "1", "--out", out)
    assert result.exit_code == 2, result.output
    [line] = said(result.stderr).strip().splitlines()
    assert line.startswith("Error: ") and "is not an Optuna study database smu can open" in line
