"""Provenance replays: the command every artifact stores (``smu.command``) is a shell line that, run again
from the folder the first run started in, writes the same files byte for byte, tensors and metadata.

Walks the registries, so a new unlearning or pruning method is replayed the day it is added: every
unlearning method (``none`` included), every pruning method, backdoor-cleanse and import."""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from typer.testing import CliRunner

from smu.cli.app import app
from smu.methods.pruning import METHODS as PRUNING
from smu.methods.unlearning import METHODS
from tests.conftest import flags, quick

# Kept in the fast tier whatever their cost: the three the reviewer replays by hand.
FAST = {"salun", "scrub"}


def smu(*args: object) -> str:
    """Run ``smu ARGS`` in this process; its stdout (the run must succeed)."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout


def stored_command(path: Path) -> str | None:
    with safe_open(str(path), "pt") as f:
        return f.metadata().get("smu.command")


def replayed(first: Path) -> dict[str, bytes]:
    """Run the command stored in the first run's artifacts again, as the shell would split it, after
    moving that run aside; return both runs' safetensors files (by path in the run) for comparison."""
    commands = {stored_command(p) for p in first.rglob("*.safetensors")} - {None}
    assert len(commands) == 1, commands  # one run, one command in every file that has one
    command = commands.pop()
    words = shlex.split(command)
    assert words[0] == "smu" and "None" not in words, command
    aside = first.with_name(first.name + "-first")
    first.rename(aside)  # nothing the replay reads may come from the first run's folder
    before = set(Path("runs").glob("*")) if Path("runs").is_dir() else set()
    smu(*words[1:])
    (again,) = set(Path("runs").glob("*")) - before  # no --out is stored: a new default folder
    files = {p.relative_to(aside): p.read_bytes() for p in aside.rglob("*.safetensors")}
    redone = {p.relative_to(again): p.read_bytes() for p in again.rglob("*.safetensors")}
    assert sorted(redone) == sorted(files), command
    assert files, command
    return {str(name): (files[name], redone[name]) for name in files}


def assert_same_bytes(first: Path) -> None:
    for name, (a, b) in replayed(first).items():
        assert a == b, f"{name} differs on replay"


SMALL = ["--arch", "cnn", "--subset", "240"]
"""A small cnn on 240 digits (216 after the validation hold-out): every later command uses the same
images, so each replayed run takes about a second."""


@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
    """One small pruned model (dense/ and round-1/) that every replay here starts from."""
    folder = tmp_path_factory.mktemp("replay-pruned")
    smu("prune", *SMALL, "--epochs", "2", "--rewind-epoch", "1", "--rate", "0.5", "--out", folder, "-q")
    return folder


@pytest.fixture
def here(tmp_path, monkeypatch, pruned):
    """A fresh working folder, and the pruned model by a path relative to it (as a user writes it:
    paths are stored as given, relative to where the run started)."""
    monkeypatch.chdir(tmp_path)
    return Path(os.path.relpath(pruned, tmp_path))


def unlearn_cases() -> list:
    return [pytest.param(name, marks=[] if name in FAST else [pytest.mark.slow], id=name) for name in METHODS]


@pytest.mark.parametrize("method", unlearn_cases())
def test_an_unlearned_model_replays_to_the_same_bytes(method, here):
    options = quick(method) | ({"epochs": 1} if METHODS[method].trains else {})
    smu(
        "unlearn",
        "--model",
        here / "round-1" / "model.safetensors",
        "--forget",
        "class:3" if METHODS[method].classwise else "random:20",
        "--method",
        method,
        *flags(options),
        "--no-eval",
        "--out",
        "first",
    )
    assert_same_bytes(Path("first"))


def test_the_api_stores_the_cli_line_and_it_replays(here):
    """smu.unlearn(...) from Python stores the line the CLI would, with an option that was not given
    (SalUn's --saliency) left out and a path with a space quoted."""
    import smu as api

    shutil.copytree(here / "round-1", "my model")
    result = api.unlearn(
        model="my model/model.safetensors",
        forget="class:3",
        method="salun",
        epochs=1,
        batch_size=64,
        no_eval=True,
        out="first",
    )
    command = stored_command(Path(result["model"]))
    assert "--saliency " not in command and "--model 'my model/model.safetensors'" in command
    assert_same_bytes(Path("first"))


def test_a_salun_model_given_a_saliency_mask_replays_to_the_same_bytes(here):
    model = here / "round-1" / "model.safetensors"
    common = ["--model", model, "--forget", "class:3", "--method", "salun", "--epochs", "1", "--no-eval"]
    smu("unlearn", *common, "--saliency-ratio", "0.3", "--out", "a")
    smu("unlearn", *common, "--saliency", "a/saliency.safetensors", "--out", "first")
    assert "--saliency a/saliency.safetensors" in stored_command(Path("first/model.safetensors"))
    assert_same_bytes(Path("first"))


def prune_cases() -> list:
    cases = []
    for name, spec in PRUNING.items():
        options = ["--epochs", "1"] if spec.at_init else ["--epochs", "2", "--rewind-epoch", "1"]
        options += ["--times", "2"] if spec.iterative else []
        options += ["--synflow-iterations", "5"] if name == "synflow" else []
        cases.append(pytest.param(name, options, id=name))
    return cases


@pytest.mark.parametrize(("method", "options"), prune_cases())
def test_a_pruned_model_replays_to_the_same_bytes(method, options, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    smu("prune", *SMALL, "--dataset", "digits", "--method", method, *options, "--out", "first")
    assert_same_bytes(Path("first"))


def test_pruning_a_given_model_replays_to_the_same_bytes(here):
    model = here / "dense" / "model.safetensors"
    smu("prune", "--model", model, "--rate", "0.7", "--epochs", "2", "--no-aug", "--out", "first")
    assert "--no-aug" in stored_command(Path("first/round-1/model.safetensors"))
    assert_same_bytes(Path("first"))


def test_a_backdoor_cleanse_replays_to_the_same_bytes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    smu(
        "backdoor-cleanse",
        *SMALL,
        "--epochs",
        "2",
        "--rates",
        "0,0.5",
        "--rewind-epoch",
        "1",
        "--method",
        "ft",
        "--unlearn-epochs",
        "1",
        "--poison",
        "5%",
        "--out",
        "first",
    )
    assert_same_bytes(Path("first"))


def test_an_imported_model_replays_to_the_same_bytes(here):
    """The checkpoint is the command's argument, --no-strict (an off switch whose default is on) is
    written, and a file name with a space survives the shell."""
    # The research code's keys (no "net." prefix, no normalisation), less the head: --no-strict's case.
    state = {k.removeprefix("net."): v for k, v in _state(here).items() if k.startswith("net.features.")}
    Path("their weights").mkdir()
    torch.save(state, "their weights/ckpt.pth")
    smu(
        "import",
        "their weights/ckpt.pth",
        "--arch",
        "cnn",
        "--dataset",
        "digits",
        "--no-strict",
        "-o",
        "first",
    )
    command = stored_command(Path("first/model.safetensors"))
    assert command.startswith("smu import 'their weights/ckpt.pth' ") and "--no-strict" in command
    assert_same_bytes(Path("first"))


def _state(here: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(here / "dense" / "model.safetensors"))


RECIPE = [
    "seeds=[0]",
    "subset=240",
    "train.epochs=2",
    "prune.rewind_epoch=1",
    "unlearn={retrain: {epochs: 1, batch_size: 64}, ga: {epochs: 1, lr: 3.0e-4, batch_size: 64}}",
]


@pytest.mark.slow
def test_a_recipe_steps_artifacts_name_the_run_that_replays_them(tmp_path, monkeypatch):
    """A recipe step stores its run's command (recipe.yaml's header), not a line for the step alone:
    run again, it remakes every step's files, byte for byte."""
    monkeypatch.chdir(tmp_path)
    smu("run", "quickstart", *RECIPE, "--out", "first")
    header = Path("first/recipe.yaml").read_text().splitlines()[0].removeprefix("# ")
    assert stored_command(Path("first/seed-0/class-3/sparse-0.9/ga/model.safetensors")) == header
    assert_same_bytes(Path("first"))


@pytest.mark.slow
def test_an_audit_member_kept_replays_to_the_same_bytes(here):
    model = here / "round-1" / "model.safetensors"
    smu(
        "audit",
        "--model",
        model,
        "--forget",
        "random:10",
        "--method",
        "ga",
        "--epochs",
        "1",
        "--lr",
        "1e-3",
        "--models",
        "3",
        "--retrain-epochs",
        "1",
        "--keep-models",
        "--out",
        "first",
    )
    assert_same_bytes(Path("first"))


def test_a_stored_line_splits_back_into_the_values_it_was_made_from():
    """What no run above exercises: a repeated option (smu tune's --space), a value the shell would
    split or expand, and a config's off switch and unset field."""
    from smu.methods.unlearning.salun import SalUnConfig
    from smu.workflows.common import command_line

    spaces = ["lr=1e-5:1e-1:log", "epochs=1:3"]
    odd = "runs/it's $HOME; *.safetensors"
    line = command_line(
        "smu tune",
        {"space": spaces, "model": odd, "out": "elsewhere", "reference": None, "no_eval": False},
        SalUnConfig(augment=False),
        repeated=("space",),
    )
    words = shlex.split(line)
    assert words[words.index("--model") + 1] == odd
    assert [words[i + 1] for i, w in enumerate(words) if w == "--space"] == spaces
    assert "--no-aug" in words and "--aug" not in words
    assert not {"None", "--out", "--reference", "--no-eval", "--saliency"} & set(words)
