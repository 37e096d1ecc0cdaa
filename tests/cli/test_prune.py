import json

import pytest
import torch
from conftest import smu
from safetensors.torch import load_file

from smu import __version__

FAST = ["--dataset", "digits", "--arch", "cnn", "--epochs", "3", "--lr", "0.05", "--batch-size", "128"]


def test_version_and_help_list_the_prune_command():
    assert smu("--version").stdout.strip() == f"smu {__version__}"
    result = smu("--help")
    assert result.exit_code == 0 and "prune" in result.stdout
    help_text = smu("prune", "--help").stdout
    for option in (
        "--method",
        "--rate",
        "--times",
        "--rewind-epoch",
        "--scope",
        "--device",
        "--json",
        "--quiet",
    ):
        assert option in help_text


def test_omp_prunes_to_the_rate_and_every_masked_weight_in_the_file_is_zero(tmp_path):
    result = smu(
        "prune",
        *FAST,
        "--method",
        "omp",
        "--rate",
        "0.9",
        "--rewind-epoch",
        "1",
        "--out",
        tmp_path / "run",
        "--json",
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["sparsity"] == pytest.approx(90, abs=0.5) and out["test_acc"] > 30
    weights, mask = load_file(out["model"]), load_file(out["mask"])
    pruned = sum(int((m == 0).sum()) for m in mask.values())
    assert round(100 * pruned / sum(m.numel() for m in mask.values()), 2) == out["sparsity"]  # in percent
    for name, m in mask.items():
        assert bool((weights[name][m == 0] == 0).all()), name
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["versions"]["torch"] == torch.__version__
    assert [r["round"] for r in out["rounds"]] == [1] and out["dense"]["test_acc"] > 30


@pytest.mark.slow
def test_amp_trains_in_bf16_keeps_masked_weights_zero_and_is_recorded(tmp_path):
    args = ["prune", *FAST, "--rate", "0.8", "--rewind-epoch", "1", "--json", "--out"]
    result = smu(*args, tmp_path / "amp", "--amp")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    weights, mask = load_file(out["model"]), load_file(out["mask"])
    assert all(w.dtype == torch.float32 for w in weights.values() if w.is_floating_point())
    for name, m in mask.items():
        assert bool((weights[name][m == 0] == 0).all()), name
    assert json.loads((tmp_path / "amp" / "manifest.json").read_text())["options"]["amp"] is True
    plain = json.loads(smu(*args, tmp_path / "plain").stdout)
    plain_weights = load_file(plain["model"])
    assert plain_weights.keys() == weights.keys()
    assert plain["sparsity"] == out["sparsity"] and abs(plain["test_acc"] - out["test_acc"]) < 15
    assert any(plain_weights[k].ne(w).any() for k, w in weights.items())  # bf16 rounding shows


def test_imp_keeps_every_round_and_ends_at_one_minus_keep_to_the_three(tmp_path):
    result = smu(
        "prune",
        *FAST,
        "--method",
        "imp",
        "--rate",
        "0.2",
        "--times",
        "3",
        "--rewind-epoch",
        "1",
        "--out",
        tmp_path,
        "--json",
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["sparsity"] == pytest.approx(48.8, abs=0.5)
    assert [r["sparsity"] for r in out["rounds"]] == pytest.approx([20, 36, 48.8], abs=0.5)
    for k in (1, 2, 3):
        assert (tmp_path / f"round-{k}" / "model.safetensors").is_file()
    assert (tmp_path / "dense" / "model.safetensors").is_file()


def test_quiet_prints_only_the_model_path_so_it_can_be_piped(tmp_path):
    result = smu("prune", *FAST, "--method", "random", "--rate", "0.5", "--out", tmp_path, "-q")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(tmp_path / "round-1" / "model.safetensors")


@pytest.mark.slow
def test_the_same_seed_gives_byte_identical_models(tmp_path):
    for run in ("a", "b"):
        assert (
            smu(
                "prune",
                *FAST,
                "--method",
                "omp",
                "--rate",
                "0.5",
                "--rewind-epoch",
                "1",
                "--seed",
                "3",
                "--out",
                tmp_path / run,
                "-q",
            ).exit_code
            == 0
        )
    a = (tmp_path / "a" / "round-1" / "model.safetensors").read_bytes()
    assert a == (tmp_path / "b" / "round-1" / "model.safetensors").read_bytes()


def test_from_a_dense_model_reuses_its_rewind_checkpoint_and_a_mask_is_refused(tmp_path):
    assert (
        smu("prune", *FAST, "--rate", "0.5", "--rewind-epoch", "1", "--out", tmp_path / "a", "-q").exit_code
        == 0
    )
    dense = tmp_path / "a" / "dense" / "model.safetensors"
    result = smu(
        "prune", "--model", dense, "--epochs", "3", "--rate", "0.7", "--out", tmp_path / "b", "--json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["sparsity"] == pytest.approx(70, abs=0.5)
    result = smu("prune", "--model", tmp_path / "a" / "round-1" / "mask.safetensors", "--out", tmp_path / "c")
    assert result.exit_code == 1
    assert "is a mask, not a model" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--method", "omq"], 2, "did you mean 'omp'"),
        (["--rate", "1.5"], 2, "--rate 1.5 must be in (0, 1)"),
        (["--epochs", "0"], 2, "--epochs 0 must be >= 1"),
        (["--arch", "resnet2"], 2, "did you mean 'resnet20'"),
        (["--dataset", "fashion_mnist"], 2, "did you mean 'fashion-mnist'"),
        (["--device", "gpu"], 2, "unknown device 'gpu'"),
        (["--scope", "lineal"], 2, "--scope 'lineal' must be one of conv, linear, all"),
        (["--method", "omp", "--times", "3"], 2, "--times 3 must be 1 for --method omp"),
        (["--model", "missing.safetensors"], 1, "no such file"),
    ],
)
def test_bad_input_is_one_clear_line_with_the_right_exit_code(tmp_path, args, code, message):
    result = smu("prune", "--epochs", "2", "--rewind-epoch", "1", *args, "--out", tmp_path / "out")
    assert result.exit_code == code, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_an_existing_out_folder_is_refused_without_force(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    result = smu("prune", *FAST, "--rewind-epoch", "1", "--out", tmp_path)
    assert result.exit_code == 2 and "--force" in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
