"""A command line's mistakes are found before torch is imported, all in one line, the most basic first;
the names the check knows are the registries' own, and no valid line is refused."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from smu.cli.app import BY_NAME, build_command, main
from smu.cli.precheck import COMMANDS, precheck, range_flags
from smu.core import names
from smu.core.errors import ArtifactError, SmuError, UsageError

ROOT = Path(__file__).parents[2]


def test_the_names_the_check_knows_are_the_registries():
    from smu.data.sources import SOURCES
    from smu.methods.pruning import METHODS as PRUNING
    from smu.methods.unlearning import METHODS as UNLEARNING
    from smu.models import ARCHS
    from smu.models.external import LIBRARIES

    assert tuple(SOURCES) == names.DATASETS
    assert tuple(ARCHS) == names.ARCHS
    assert tuple(LIBRARIES) == names.LIBRARIES
    builtins = [name for name in PRUNING if name not in PRUNING.packages]
    assert tuple(builtins) == names.PRUNING_METHODS
    assert tuple(n for n in builtins if PRUNING[n].iterative) == names.PRUNING_ITERATIVE
    assert tuple(n for n in builtins if PRUNING[n].at_init) == names.PRUNING_AT_INIT
    assert tuple(name for name in UNLEARNING if name not in UNLEARNING.packages) == names.UNLEARNING_METHODS


def option_of(command, flag):
    found = [p for p in command.params if flag in p.opts or flag in p.secondary_opts]
    assert found, f"{command.name} has no option {flag}"
    return found[0]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_option_the_check_reads_is_its_command_s_spelled_required_and_valued_alike(name):
    checks, command = COMMANDS[name], build_command(BY_NAME[name])
    read = [*checks.names, *checks.files, *checks.forget, *checks.values]
    read += [flag for cls in checks.ranges for flag in range_flags(cls)]
    for flag in read:
        assert not option_of(command, flag).is_flag, flag  # takes a value
    for short, flag in checks.short.items():
        assert short in option_of(command, flag).opts, short
    required = {p.opts[0] for p in command.params if p.required and p.param_type_name == "option"}
    assert set(checks.required) == required
    for flag in checks.required:  # spelled as Typer spells a missing option: every spelling the check knows
        shorts = {s for s, long in checks.short.items() if long == flag}
        assert shorts == set(option_of(command, flag).opts) - {flag}, flag
    if checks.argument is not None:  # every option known, so that no value is taken for the argument
        options = [p for p in command.params if p.param_type_name == "option"]
        assert {o for p in options for o in (*p.opts, *p.secondary_opts)} == {
            *read,
            *checks.short,
            *checks.switches,
        }
        assert all(option_of(command, switch).is_flag for switch in checks.switches)
        assert any(p.param_type_name == "argument" for p in command.params)


def refused(command, *args):
    with pytest.raises(SmuError) as e:
        precheck(command, [str(a) for a in args])
    return e.value


def test_a_misspelt_dataset_comes_before_the_ranges_and_every_problem_is_in_one_message(tmp_path):
    e = refused("prune", "--dataset", "digitz", "--epochs", "2")
    assert isinstance(e, UsageError) and e.message == "unknown dataset 'digitz'"  # not the rewind epoch
    assert e.hint.startswith("did you mean 'digits'? choices: digits, fashion-mnist")
    e = refused(
        "prune",
        "-d",
        "digitz",
        "--arch=resnt",
        "--epochs",
        "0",
        "--rate",
        "2",
        "-m",
        "omq",
        "--model",
        tmp_path / "x",
    )
    assert e.message == (
        "unknown dataset 'digitz' (did you mean 'digits'?); unknown architecture 'resnt' (did you mean "
        f"'resnet50'?); unknown pruning method 'omq' (did you mean 'omp'?); --model '{tmp_path / 'x'}': no "
        "such file; --epochs 0 must be >= 1; --rate 2.0 must be in (0, 1)"
    )
    assert e.exit_code == 2 and e.hint == "see 'smu prune --help'"


def test_a_range_that_depends_on_the_method_waits_for_the_method():
    e = refused("prune", "--epochs", "2")
    assert e.message == "--rewind-epoch 8 must be below --epochs 2 (0 rewinds to init)"
    assert refused(
        "prune", "--method", "imp", "--epochs", "3", "--rewind-epoch", "3", "--times", "0"
    ).message == ("--times 0 must be >= 1")
    assert refused("prune", "--method", "omp", "--times", "2", "--epochs", "9").message == (
        "--times 2 must be 1 for --method omp: only iterative methods (imp) repeat"
    )
    assert refused("prune", "--method", "omq", "--epochs", "2").message == "unknown pruning method 'omq'"


@pytest.mark.parametrize(
    "command,args,message",
    [
        (
            "unlearn",
            [],
            "Missing option '--model'; Missing option '--forget' / '-f'; Missing option '--method' / '-m'",
        ),
        (
            "unlearn",
            ["--model", "m", "-f", "randm:1", "-m", "f_t"],
            "unknown unlearning method 'f_t' (did you mean",
        ),
        (
            "eval",
            ["--model", "m", "--forget", "indices:nowhere.txt"],
            "--forget indices file 'nowhere.txt' does not",
        ),
        (
            "tune",
            ["--model", "m", "-f", "class:1", "-m", "ga", "--holdout-forget", "x:1"],
            "--forget 'x:1' is not a",
        ),
        ("backdoor-cleanse", ["--prune", "omq", "--method", "ft"], "unknown pruning method 'omq'"),
        ("audit", ["--model", "m", "-f", "class:1", "-m", "ft", "--device", "gpu"], "unknown device 'gpu'"),
        ("import", ["x.pt", "--arch", "torchvision:resnet18@0"], "the size after @ must be an integer"),
        ("import", ["x.pt", "--arch", "foo:resnet18"], "--arch 'foo:resnet18': unknown library 'foo'"),
        (
            "run",
            ["--out", "o", "quickstrat", "x=1"],
            "recipe 'quickstrat' is neither a file nor a shipped recipe",
        ),
        ("inspect", ["--json", "nowhere.safetensors"], "'nowhere.safetensors': no such file"),
    ],
)
def test_each_kind_of_mistake_is_found_without_the_registries(command, args, message):
    assert message in str(refused(command, *args))


def test_files_that_are_not_there_are_a_failure_not_a_usage_error(tmp_path):
    e = refused("eval", "--model", tmp_path / "m", "--forget", "class:1", "--reference", tmp_path / "r")
    assert isinstance(e, ArtifactError) and e.exit_code == 1
    single = refused("prune", "--model", tmp_path / "m")
    assert str(single) == (
        f"--model '{tmp_path / 'm'}': no such file; check the path (smu prune -q prints the paths it wrote)"
    )


@pytest.mark.parametrize(
    "command,args",
    [
        (
            "prune",
            [
                "--dataset",
                "digits",
                "--arch",
                "torchvision:resnet18@32",
                "--method",
                "synflow",
                "--epochs",
                "1",
            ],
        ),
        (
            "prune",
            ["--arch", "timm:no_such_net", "--epochs", "4", "--rewind-epoch", "1", "--device", "CUDA:3"],
        ),
        ("prune", ["--model", "MODEL", "--epochs", "2"]),  # the model's own rewind epoch may fit
        ("prune", ["--epochs", "abc", "--lr", "x"]),  # Typer's to say, in its words
        ("prune", ["--dataset", "nope", "--help"]),
        (
            "prune",
            ["--epochs=10", "--decreasing-lr", "3,6", "--schedule", "cosine", "--no-aug", "--device", "auto"],
        ),
        (
            "unlearn",
            ["--model", "MODEL", "-f", "random:10%", "-m", "solution.py:unlearning", "--mask", "MODEL"],
        ),
        ("unlearn", ["--model", "MODEL", "-f", "FILE", "-m", "ft", "--note", "--model"]),
        ("eval", ["--model", "MODEL", "--forget", "class:airplane:3", "-r", "MODEL"]),
        ("run", ["--exekutor", "ray", "quickstrat"]),  # an unknown option may take the next word
        ("run", ["quickstart", "--dry-run", "seeds=[1]"]),
        ("run", ["--dry-run", "--", "quickstart"]),
        ("demo", ["--out", "anywhere"]),
        ("inspect", ["MODEL"]),
    ],
)
def test_no_valid_line_is_refused(command, args, tmp_path):
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"")
    (tmp_path / "forget.safetensors").write_bytes(b"")
    words = [
        str(model) if a == "MODEL" else str(tmp_path / "forget.safetensors") if a == "FILE" else a
        for a in args
    ]
    precheck(command, words)


def test_a_plug_in_s_method_is_known_by_its_entry_point_without_importing_it(tmp_path, monkeypatch):
    info = tmp_path / "smu_other-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: smu-other\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[smu.unlearning]\nshrink = smu_other_missing:METHOD\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert names.plugin_names(names.UNLEARNING_GROUP) == ["shrink"]
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"")
    precheck("unlearn", ["--model", str(model), "-f", "class:1", "-m", "shrink"])  # the module does not exist
    assert "unknown unlearning method 'shrnk'" in str(
        refused("unlearn", "--model", model, "-f", "class:1", "-m", "shrnk")
    )


def smu_process(*args):
    """``python -X importtime -m smu ARGS``: the error lines, and the modules it imported."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "smu", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
    )
    lines = proc.stderr.splitlines()
    imported = {line.rsplit("|", 1)[1].strip() for line in lines if line.startswith("import time:")}
    return proc.returncode, [line for line in lines if not line.startswith("import time:")], imported


@pytest.mark.parametrize(
    "args,code,start",
    [
        (
            ["prune", "--dataset", "digitz", "--epochs", "2"],
            2,
            "Error: unknown dataset 'digitz'; did you mean",
        ),
        (["unlearn", "--forget", "class:1"], 2, "Error: Missing option '--model'; Missing option '--method'"),
        (["eval", "--model", "nowhere.safetensors", "--forget", "class:1"], 1, "Error: --model 'nowhere"),
    ],
)
def test_a_mistake_is_one_line_from_a_process_that_never_imports_torch(args, code, start):
    returncode, errors, imported = smu_process(*args)
    assert returncode == code and len(errors) == 1 and errors[0].startswith(start), errors
    assert "smu.cli.precheck" in imported and not {"torch", "torchvision", "numpy"} & imported


def test_the_main_entry_point_shows_the_check_s_error_as_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["prune", "--dataset", "digitz", "--arch", "resnt"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert err.startswith("Error: unknown dataset 'digitz' (did you mean 'digits'?); unknown architecture")
