"""Before a command trains it says what it will do and about how long that takes (the plan, also in
``--json`` and alone with ``--dry-run``); while it runs, a log (stderr not a terminal) gets timestamped
progress lines; ``-q`` silences both."""

import json
import re

import pytest
from conftest import smu

from smu.data import load_splits

STAMP = re.compile(r"^\[\d\d:\d\d:\d\d\] ")
PRUNE = ["prune", "--dataset", "digits", "--arch", "cnn", "--method", "imp", "--times", "2"]
PRUNE += ["--epochs", "3", "--rewind-epoch", "1", "--batch-size", "64"]


def planned_images(n_train: int, checks: int, dense: int, rounds: int, each: int, models: int) -> int:
    """Training images of a prune run, plus its evaluations at a third of a training image each."""
    return n_train * (dense + rounds * each) + round(models * checks / 3)


def test_dry_run_prints_the_plan_writes_nothing_and_counts_every_training_image(tmp_path):
    out = tmp_path / "p"
    result = smu(*PRUNE, "--out", out, "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["dry_run"] and not out.exists()
    splits = load_splits("digits", seed=0)
    checks = len(splits.test) + len(splits.val)
    est = plan["estimate"]
    assert est["images"] == planned_images(len(splits.train), checks, dense=3, rounds=2, each=2, models=3)
    assert (
        est["work"]
        == f"imp: dense 3 epochs, then 2 rounds of 2 epochs from epoch 1, {len(splits.train):,} images each"
    )
    assert est["seconds"] == pytest.approx(est["images"] / est["images_per_second"], rel=0.01)  # 3 digits
    text = smu(*PRUNE, "--out", out, "--dry-run")
    assert text.stdout.startswith("plan: imp: dense 3 epochs") and f"would write into {out}" in text.stdout


def test_a_run_in_a_log_says_its_plan_first_then_timestamped_progress_and_json_carries_it(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("SMU_LOG_EVERY", "0")  # every update: the test's run is short
    result = smu(*PRUNE, "--out", tmp_path / "p", "--json")
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines and all(STAMP.match(line) for line in lines), lines
    assert "plan: imp: dense 3 epochs" in lines[0]
    assert any("dense: epoch 3/3" in line and "job " in line and " left" in line for line in lines)
    assert any(line.endswith("round 2: sparsity 36.00%, test accuracy " + line.split()[-1]) for line in lines)
    done = [line for line in lines if ": ended after " in line]
    assert [d.split("] ")[1].split(":")[0] for d in done] == ["dense", "round 1/2", "round 2/2"]
    printed = json.loads(result.stdout)["estimate"]
    planned = json.loads(smu(*PRUNE, "--out", tmp_path / "q", "--dry-run", "--json").stdout)["estimate"]
    assert printed["images"] == planned["images"] and printed["work"] == planned["work"]


def test_a_log_gets_at_most_one_update_line_per_interval_and_quiet_gets_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("SMU_LOG_EVERY", "3600")
    result = smu(*PRUNE, "--out", tmp_path / "p")
    assert result.exit_code == 0, result.output
    assert not [line for line in result.stderr.splitlines() if "job " in line and ": epoch" in line]
    assert "plan: " in result.stderr and ": ended after " in result.stderr  # events still reach the log
    quiet = smu(*PRUNE, "--out", tmp_path / "q", "-q")
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_every_command_that_trains_has_a_dry_run_with_its_plan(tmp_path):
    model = tmp_path / "p" / "round-1" / "model.safetensors"
    assert (
        smu(
            *PRUNE[:6], "omp", "--epochs", "2", "--rewind-epoch", "1", "--out", tmp_path / "p", "-q"
        ).exit_code
        == 0
    )
    runs = {
        "unlearn": ["unlearn", "--model", model, "--forget", "class:3", "--method", "salun", "--epochs", "2"],
        "audit": ["audit", "--model", model, "--forget", "class:3", "--method", "ga", "--models", "3"],
        "tune": ["tune", "--model", model, "--forget", "class:3", "--method", "ga", "--trials", "4"],
        "backdoor-cleanse": ["backdoor-cleanse", "--arch", "cnn", "--epochs", "2", "--rewind-epoch", "1"],
        "run": ["run", "quickstart"],
    }
    for name, args in runs.items():
        out = tmp_path / f"dry-{name}"
        result = smu(*args, "--out", out, "--dry-run", "--json")
        assert result.exit_code == 0, (name, result.output)
        est = json.loads(result.stdout)["estimate"]
        assert est["images"] > 0 and est["seconds"] > 0, (name, est)
        assert not out.exists(), name
    unlearn = json.loads(smu(*runs["unlearn"], "--dry-run", "--json").stdout)["estimate"]
    assert unlearn["work"].startswith("salun: saliency 1x forget")
    recipe = json.loads(smu(*runs["run"], "--out", tmp_path / "r", "--dry-run", "--json").stdout)["estimate"]
    assert recipe["work"] == "27 of 27 steps to run (3 models, 24 unlearn)"
