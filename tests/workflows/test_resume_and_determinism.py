"""Killed runs resume to the same bytes; the same command and seed give the same bytes."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import flags, quick
from safetensors import safe_open

from smu.methods.unlearning import METHODS

pytestmark = pytest.mark.slow  # see pyproject.toml: pytest -m "not slow" is the inner loop

SMU = [sys.executable, "-m", "smu"]


def in_new_process(*args, check=True):
    """``smu ARGS...`` in a process of its own (a fresh interpreter), its output as text."""
    return subprocess.run([*SMU, *map(str, args)], check=check, capture_output=True, text=True)


def in_process(*args):
    """Run smu in this process (no interpreter start-up), expecting success."""
    from smu.cli.app import main

    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    assert e.value.code == 0


def saved_epoch(checkpoint) -> int | None:
    """The epoch a checkpoint file holds, or None while there is none (or it is being replaced)."""
    try:
        with safe_open(str(checkpoint), "pt") as f:
            return int(f.metadata()["smu.epoch"])
    except Exception:
        return None


def kill_after_checkpoint(args, checkpoint, timeout=120) -> int:
    """Start smu, SIGKILL it as soon as ``checkpoint`` holds a saved epoch, and return the epoch the
    checkpoint holds after the kill: the point a resumed run must continue from."""
    proc = subprocess.Popen([*SMU, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while saved_epoch(checkpoint) is None:
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail("the run ended before it saved a checkpoint to be killed after")
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    epoch = saved_epoch(checkpoint)
    assert epoch is not None, "the run finished before it could be killed"
    return epoch


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
    "4",
    "--rewind-epoch",
    "1",
    "--batch-size",
    "64",
    "--seed",
    "3",
    "-q",
]


def test_a_killed_imp_prune_resumes_from_its_checkpoint_to_byte_identical_models(tmp_path):
    in_process(*PRUNE, "--out", tmp_path / "whole")  # only the run to kill needs a process of its own
    epoch = kill_after_checkpoint(
        [*PRUNE, "--out", tmp_path / "cut"], tmp_path / "cut" / "round-2" / "checkpoint.safetensors"
    )
    assert 2 <= epoch < 4  # round 2 rewinds to epoch 1, so its first checkpoint is epoch 2
    assert not (tmp_path / "cut" / "round-2" / "model.safetensors").exists()
    resumed = json.loads(in_new_process(*PRUNE[:-1], "--json", "--out", tmp_path / "cut", "--resume").stdout)
    # The dense model and round 1 are reused; round 2 continues at the checkpoint and runs only the rest.
    assert resumed["dense"]["start_epoch"] is None and resumed["rounds"][0]["start_epoch"] is None
    assert resumed["rounds"][1]["start_epoch"] == epoch and resumed["rounds"][1]["epochs_run"] == 4 - epoch
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


# A real SIGKILL, in a process of its own, for two methods; every training method's resume is checked
# in this process by test_every_training_method_resumes_from_its_checkpoint_to_the_same_bytes.
@pytest.mark.parametrize("method, forget", [("retrain", "class:2"), ("ga", "random:60%")])
def test_a_killed_unlearning_run_resumes_from_its_checkpoint_to_the_same_model(
    trained, tmp_path, method, forget
):
    epochs = 5
    args = [
        "unlearn",
        "--model",
        trained,
        "--forget",
        forget,
        "--method",
        method,
        "--epochs",
        epochs,
        "--batch-size",
        "16",
        "--no-eval",
        "-q",
    ]
    in_process(*args, "--out", tmp_path / "whole")  # only the run to kill needs a process of its own
    epoch = kill_after_checkpoint(
        [*args, "--out", tmp_path / "cut"], tmp_path / "cut" / "checkpoint.safetensors"
    )
    assert 1 <= epoch < epochs
    in_process(*args, "--out", tmp_path / "cut", "--resume")
    result = json.loads((tmp_path / "cut" / "manifest.json").read_text())["result"]
    assert result["start_epoch"] == epoch and result["epochs_run"] == epochs - epoch
    fresh = json.loads((tmp_path / "whole" / "manifest.json").read_text())["result"]
    assert fresh["start_epoch"] == 0 and fresh["epochs_run"] == epochs
    whole = (tmp_path / "whole" / "model.safetensors").read_bytes()
    assert (tmp_path / "cut" / "model.safetensors").read_bytes() == whole


def test_a_killed_recipe_run_continues_and_gives_the_same_report(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("""
dataset: digits
arch: cnn
train: {epochs: 4, lr: 0.05, batch_size: 16}
prune: {rates: [0.5], rewind_epoch: 1}
scenarios: ["class:3"]
unlearn:
  retrain: {epochs: 3, lr: 0.05, batch_size: 16}
  ft: {epochs: 1, batch_size: 16}
""")
    whole = in_new_process("run", recipe, "--out", tmp_path / "whole", "--json").stdout
    models = tmp_path / "cut" / "seed-0" / "models"
    kill_after_checkpoint(
        ["run", recipe, "--out", tmp_path / "cut", "-q"],
        models / "rate-0.5" / "round-1" / "checkpoint.safetensors",
    )
    again = json.loads(in_new_process("run", recipe, "--out", tmp_path / "cut", "--json").stdout)
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


class Interrupted(Exception):
    """Stands for a kill between two epochs: raised after an epoch, before its checkpoint is written."""


@pytest.mark.parametrize("method", [name for name, spec in METHODS.items() if spec.trains])
def test_every_training_method_resumes_from_its_checkpoint_to_the_same_bytes(trained, tmp_path, method):
    """In this process, for every method that trains (the registry's: a new one needs no row here): a
    run stopped after epoch 2 of 3 resumes from epoch 1's checkpoint to the uninterrupted run's model."""
    from smu.data import splits_of
    from smu.data.forget import resolve_forget
    from smu.io.artifacts import load_model
    from smu.methods.unlearning import make_config
    from smu.workflows.unlearn import run_unlearn

    splits = splits_of(load_model(trained))
    forget = resolve_forget("class:3" if METHODS[method].classwise else "random:5%", splits)
    cfg = make_config(method, quick(method) | {"epochs": 3})

    def run(out, **options):
        model = load_model(trained)  # each run from the file: a method changes its model in place
        return run_unlearn(model, splits, forget, method, cfg, out=out, seed=7, evaluate=False, **options)

    def stop(epoch, model):
        if epoch == 2:
            raise Interrupted

    whole = run(tmp_path / "whole")
    with pytest.raises(Interrupted):
        run(tmp_path / "cut", on_epoch_end=stop)
    assert saved_epoch(tmp_path / "cut" / "checkpoint.safetensors") == 1
    resumed = run(tmp_path / "cut", resume=True)
    # Epochs 2 and 3 again, and any later phase whole (UNSIR's repair epoch)
    assert (resumed["start_epoch"], resumed["epochs_run"]) == (1, whole["epochs_run"] - 1)
    assert whole["epochs_run"] == 3 + (METHODS[method].config().repair_epochs if method == "unsir" else 0)
    model = (tmp_path / "whole" / "model.safetensors").read_bytes()
    assert (tmp_path / "cut" / "model.safetensors").read_bytes() == model


@pytest.mark.parametrize("method", list(METHODS))
def test_every_unlearning_method_gives_the_same_bytes_twice(trained, tmp_path, method):
    options = flags(quick(method) | ({"epochs": 1} if METHODS[method].trains else {}))
    # One run in a fresh process, one in this one, after other tests: no state outside the command counts.
    for run, runner in (("a", in_new_process), ("b", in_process)):
        runner(
            "unlearn",
            "--model",
            trained,
            "--forget",
            "class:3" if METHODS[method].classwise else "random:5%",
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
