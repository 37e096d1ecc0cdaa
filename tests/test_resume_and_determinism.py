"""Killed runs resume to the same bytes; the same command and seed give the same bytes."""

import os
import signal
import subprocess
import sys
import time

import pytest

from smu.unlearning import METHODS

SMU = [sys.executable, "-m", "smu"]


def smu(*args, check=True):
    return subprocess.run([*SMU, *map(str, args)], check=check, capture_output=True, text=True)


def in_process(*args):
    """Run smu in this process (no interpreter start-up), expecting success."""
    from smu.cli import main

    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    assert e.value.code == 0


def kill_when(args, ready, timeout=120):
    """Start smu, wait until ``ready()`` (a checkpoint exists), give it a moment, then SIGKILL it."""
    proc = subprocess.Popen([*SMU, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while not ready() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.15)  # into the next epoch
    finished = proc.poll() is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return not finished


PRUNE = [
    "prune",
    "--dataset",
    "digits",
    "--arch",
    "resnet20",
    "--method",
    "imp",
    "--rate",
    "0.5",
    "--times",
    "2",
    "--epochs",
    "5",
    "--rewind-epoch",
    "1",
    "--batch-size",
    "32",
    "--seed",
    "3",
    "-q",
]


def test_a_killed_imp_prune_resumes_to_byte_identical_models(tmp_path):
    smu(*PRUNE, "--out", tmp_path / "whole")
    killed = kill_when(
        [*PRUNE, "--out", tmp_path / "cut"],
        lambda: (tmp_path / "cut" / "round-2" / "checkpoint.safetensors").exists(),
    )
    assert killed, "the run finished before it could be killed"
    assert not (tmp_path / "cut" / "round-2" / "model.safetensors").exists()
    smu(*PRUNE, "--out", tmp_path / "cut", "--resume")
    for name in (
        "dense/model.safetensors",
        "round-1/model.safetensors",
        "round-2/model.safetensors",
        "round-2/mask.safetensors",
    ):
        assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    assert not (tmp_path / "cut" / "round-2" / "checkpoint.safetensors").exists()


@pytest.fixture(scope="module")
def trained(pruned_cnn):
    return pruned_cnn / "round-1" / "model.safetensors"


@pytest.mark.parametrize("method", ["retrain", "ft", "l1-sparse"])
def test_a_killed_unlearning_run_resumes_to_the_same_model(trained, tmp_path, method):
    args = [
        "unlearn",
        "--model",
        trained,
        "--forget",
        "class:2",
        "--method",
        method,
        "--epochs",
        "8",
        "--batch-size",
        "16",
        "--no-eval",
        "-q",
    ]
    smu(*args, "--out", tmp_path / "whole")
    killed = kill_when(
        [*args, "--out", tmp_path / "cut"], lambda: (tmp_path / "cut" / "checkpoint.safetensors").exists()
    )
    assert killed
    smu(*args, "--out", tmp_path / "cut", "--resume")
    whole = (tmp_path / "whole" / "model.safetensors").read_bytes()
    assert (tmp_path / "cut" / "model.safetensors").read_bytes() == whole


def test_a_killed_recipe_run_continues_and_gives_the_same_report(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("""
dataset: digits
arch: cnn
train: {epochs: 6, lr: 0.05, batch_size: 16}
prune: {rates: [0.5], rewind_epoch: 1}
scenarios: ["class:3"]
unlearn:
  retrain: {epochs: 6, lr: 0.05, batch_size: 16}
  ft: {epochs: 2, batch_size: 16}
""")
    whole = smu("run", recipe, "--out", tmp_path / "whole", "--json").stdout
    models = tmp_path / "cut" / "seed-0" / "models"
    killed = kill_when(
        ["run", recipe, "--out", tmp_path / "cut", "-q"],
        lambda: (models / "rate-0.5" / "round-1" / "checkpoint.safetensors").exists(),
    )
    assert killed
    import json

    again = json.loads(smu("run", recipe, "--out", tmp_path / "cut", "--json").stdout)
    assert again["report"] == json.loads(whole)["report"] or _same_metrics(again, json.loads(whole))
    retrain = "seed-0/class-3/sparse-0.5/retrain/model.safetensors"
    assert (tmp_path / "cut" / retrain).read_bytes() == (tmp_path / "whole" / retrain).read_bytes()


def _same_metrics(a, b):
    """Reports equal apart from run times (RTE differs between runs)."""
    for ta, tb in zip(a["report"], b["report"], strict=True):
        for ra, rb in zip(ta["rows"], tb["rows"], strict=True):
            for group in ra["cells"]:
                for key in ("ua", "mia_efficacy", "ra", "ta", "avg_gap"):
                    if ra["cells"][group][key] != rb["cells"][group][key]:
                        return False
    return True


@pytest.mark.parametrize("method", list(METHODS))
def test_every_unlearning_method_gives_the_same_bytes_twice(trained, tmp_path, method):
    options = {
        "retrain": ["--epochs", "2"],
        "ft": ["--epochs", "1"],
        "ga": ["--epochs", "1"],
        "l1-sparse": ["--epochs", "1"],
        "ff": [],
        "iu": ["--iu-samples", "50"],
    }[method]
    for run in ("a", "b"):
        smu(
            "unlearn",
            "--model",
            trained,
            "--forget",
            "random:5%",
            "--method",
            method,
            *options,
            "--seed",
            "7",
            "--no-eval",
            "--out",
            tmp_path / run,
            "-q",
        )
    for name in ("model.safetensors", "mask.safetensors", "forget.safetensors"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
