"""`smu unlearn --method FILE.py:FUNCTION`: two public-solution-style functions end to end, the sparsity
invariant, determinism, resume, help, and every bad input as one line with nothing written."""

import json
from pathlib import Path

import pytest
import torch
from conftest import said, smu
from safetensors.torch import load_file

from smu.io import artifacts

METHODS = Path(__file__).parents[1] / "methods"
SOLUTIONS = METHODS / "competition_solutions.py"
BROKEN = METHODS / "competition_broken.py"


@pytest.fixture(scope="module")
def sparse(pruned_cnn):
    """The 50%-sparse digits cnn and its mask."""
    model = pruned_cnn / "round-1" / "model.safetensors"
    return model, artifacts.load_model(model).mask


def unlearn(model, out, spec, *args):
    return smu("unlearn", "--model", model, "--forget", "class:3", "--method", spec, *args, "--out", out)


def pruned_weights(path, mask):
    weights = load_file(path)
    return torch.cat([weights[name][keep == 0] for name, keep in mask.items()])


@pytest.mark.parametrize(
    "function", ["reinit_and_finetune", pytest.param("neggrad_then_finetune", marks=pytest.mark.slow)]
)
def test_a_public_solution_unlearns_a_sparse_model_and_is_measured_like_any_method(
    sparse, tmp_path, function
):
    model, mask = sparse
    spec = f"{SOLUTIONS}:{function}"
    result = unlearn(model, tmp_path / "u", spec, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)  # what the function prints went to stderr: stdout is the JSON alone
    assert out["method"] == spec and out["rte_s"] > 0 and out["config"]["batch_size"] == 64
    assert out["metrics"]["ua"] > 50 and out["metrics"]["ta"] > 50  # it forgot class 3 and kept the rest
    assert out["sparsity"] == pytest.approx(50, abs=0.5) and out["revived"] > 0  # fine-tuning revives
    assert not pruned_weights(out["model"], mask).any()
    assert out["code"]["sha256"] and out["start_epoch"] is None


def test_a_function_that_revives_every_pruned_weight_is_reported_and_saved_sparse(sparse, tmp_path):
    model, mask = sparse
    result = unlearn(model, tmp_path / "u", f"{BROKEN}:revive_every_weight", "--no-eval", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    pruned, _ = mask.counts()
    assert out["revived"] == pruned > 0  # the warning line: tests/methods/test_plugins.py
    saved = pruned_weights(out["model"], mask)
    assert len(saved) == pruned and not saved.any()
    manifest = json.loads(Path(out["manifest"]).read_text())
    assert manifest["result"]["revived"] == pruned


def test_a_registered_method_reports_revived_zero(sparse, tmp_path):
    model, _ = sparse
    result = unlearn(model, tmp_path / "u", "none", "--no-eval", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["revived"] == 0


def test_the_same_seed_gives_the_same_bytes_and_resume_runs_the_function_again(sparse, tmp_path):
    model, _ = sparse
    spec = f"{SOLUTIONS}:neggrad_then_finetune"
    assert unlearn(model, tmp_path / "a", spec, "--seed", 3, "--no-eval", "-q").exit_code == 0
    first = (tmp_path / "a" / "model.safetensors").read_bytes()
    # --resume cannot resume a function mid-way: it runs it again, from the same seed, to the same bytes.
    again = unlearn(model, tmp_path / "a", spec, "--seed", 3, "--no-eval", "--resume", "--json")
    assert again.exit_code == 0, again.output
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == first
    assert json.loads(again.stdout)["start_epoch"] is None
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "forget.safetensors",
        "manifest.json",
        "mask.safetensors",
        "model.safetensors",
    ]


def test_help_for_a_function_shows_its_options_only():
    result = smu("unlearn", "--method", f"{SOLUTIONS}:reinit_and_finetune", "--help")
    assert result.exit_code == 0
    assert "--timeout" in result.stdout and "--batch-size" in result.stdout and "--aug" in result.stdout
    assert "--alpha" not in result.stdout and "--epochs" not in result.stdout
    assert "FILE.py:FUNCTION" in smu("unlearn", "--help").stdout


def test_smu_debug_shows_the_functions_traceback(sparse, tmp_path, monkeypatch):
    from smu.cli.app import main
    from smu.core.usercode import UserCodeError

    model, _ = sparse
    monkeypatch.setenv("SMU_DEBUG", "1")
    args = ["unlearn", "--model", model, "--forget", "class:3", "--method", f"{BROKEN}:raises"]
    with pytest.raises(UserCodeError) as e:
        main([*map(str, args), "--out", str(tmp_path / "o")])
    assert isinstance(e.value.__cause__, ValueError)


def bad_files(folder):
    (folder / "syntax.py").write_text("def unlearning(net, retain_loader, forget_loader, val_loader)\n")
    (folder / "fails.py").write_text("raise RuntimeError('no GPU here')\n")
    return folder


@pytest.mark.parametrize(
    "spec, args, code, message",
    [
        ("{tmp}/missing.py:unlearning", [], 2, "no file"),
        ("{broken}:nope", [], 2, "has no function 'nope'"),
        ("{broken}:raise_s", [], 2, "did you mean 'raises'?"),
        ("python:no_such_module_for_smu:unlearning", [], 2, "no module 'no_such_module_for_smu'"),
        ("foo:bar", [], 2, "is neither a method's name nor FILE.py:FUNCTION"),
        ("{broken}:", [], 2, "is neither a method's name"),
        ("python:a..b:fn", [], 2, "is neither a method's name"),
        ("{broken}:NOT_A_FUNCTION", [], 2, "'NOT_A_FUNCTION' is of type int, not a function"),
        ("{broken}:three_arguments", [], 2, "cannot be called with the competition's four arguments"),
        ("{tmp}/syntax.py:unlearning", [], 1, "importing syntax.py raised SyntaxError"),
        ("{tmp}/fails.py:unlearning", [], 1, "importing fails.py raised RuntimeError: no GPU here"),
        ("{broken}:raises", [], 1, "raised ValueError: the forget set is too small; SMU_DEBUG=1"),
        ("{broken}:returns_none", [], 1, "returned None, not the model (an nn.Module)"),
        ("{broken}:returns_a_tensor", [], 1, "returned a Tensor, not the model"),
        ("{broken}:eleven_classes", [], 1, "returned a model with 11 outputs, not 10"),
        ("{broken}:wrapped", [], 1, "returned a model of another architecture without normalize.mean"),
        (
            "{broken}:loops_forever",
            ["--timeout", "0.5"],
            1,
            "ran past its --timeout of 0.5 s and was stopped",
        ),
        ("{broken}:returns_none", ["--timeout", "0"], 2, "--timeout 0.0 must be > 0"),
        ("{broken}:returns_none", ["--epochs", "2"], 2, "--epochs does not apply to --method"),
        ("ft", ["--timeout", "5"], 2, "--timeout does not apply to --method ft"),
    ],
)
def test_bad_input_is_one_line_and_writes_no_model(sparse, tmp_path, spec, args, code, message):
    model, _ = sparse
    spec = spec.format(tmp=bad_files(tmp_path), broken=BROKEN)
    result = unlearn(model, tmp_path / "o", spec, *args)
    assert result.exit_code == code, result.output
    assert message in result.stderr and said(result.stderr).count("\n") == 1, result.stderr
    assert "Traceback" not in result.output and result.stdout == ""
    assert not (tmp_path / "o" / "model.safetensors").exists() and not (tmp_path / "o").exists()


def test_the_readme_example_runs_as_written(sparse, tmp_path, monkeypatch):
    import re

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme[readme.index("## Your own unlearning function") :]
    (tmp_path / "my_solution.py").write_text(re.search(r"```python\n(.*?)```", section, re.S).group(1))
    monkeypatch.chdir(tmp_path)
    model, mask = sparse
    result = unlearn(model, "runs/mine", "my_solution.py:unlearning", "--no-eval", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["method"] == "my_solution.py:unlearning" and not pruned_weights(out["model"], mask).any()
