import json

import pytest
import torch
from conftest import flags, quick, said, smu
from safetensors.torch import load_file

from smu.methods.unlearning import METHODS

RETRAIN = ["--epochs", "3", "--batch-size", "64", "--lr", "0.05"]


@pytest.fixture(scope="module")
def sparse(tmp_path_factory):
    """A 90%-sparse cnn on digits, made by smu prune, and a retrained reference."""
    folder = tmp_path_factory.mktemp("unlearn")
    result = smu(
        "prune",
        "--dataset",
        "digits",
        "--arch",
        "cnn",
        "--epochs",
        "6",
        "--batch-size",
        "64",
        "--lr",
        "0.05",
        "--rate",
        "0.9",
        "--rewind-epoch",
        "1",
        "--out",
        folder / "p",
        "-q",
    )
    assert result.exit_code == 0, result.output
    model = result.stdout.strip()
    ref = smu(
        "unlearn",
        "--model",
        model,
        "--forget",
        "class:3",
        "--method",
        "retrain",
        *RETRAIN,
        "--out",
        folder / "retrain",
        "-q",
    )
    assert ref.exit_code == 0, ref.output
    return model, folder


@pytest.mark.parametrize("method", list(METHODS))
def test_unlearn_end_to_end_writes_a_sparse_model_and_reports_rte_and_gaps(sparse, tmp_path, method):
    model, folder = sparse
    result = smu(
        "unlearn",
        "--model",
        model,
        "--forget",
        folder / "retrain" / "forget.safetensors",
        "--method",
        method,
        *flags(quick(method)),
        "--reference",
        folder / "retrain" / "model.safetensors",
        "--out",
        tmp_path,
        "--json",
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["method"] == method and out["rte_s"] > 0 and out["sparsity"] == pytest.approx(90, abs=0.5)
    assert set(out["metrics"]) >= {"ua", "ra", "ta", "mia_efficacy"}
    keys = ("ua", "mia_efficacy", "ra", "ta")
    expected = {k: abs(out["metrics"][k] - out["reference"][k]) for k in keys}
    assert out["gap"] == pytest.approx(expected | {"avg": sum(expected.values()) / 4}, abs=0.011)  # rounded
    assert out["forget"]["spec"] == "class:3"
    weights, mask = load_file(out["model"]), load_file(out["mask"])
    zeros = sum(int((weights[n][m == 0] == 0).sum()) for n, m in mask.items())
    assert zeros == sum(int((m == 0).sum()) for m in mask.values())
    assert (tmp_path / "forget.safetensors").is_file() and (tmp_path / "manifest.json").is_file()


def test_retrain_forgets_the_class_completely(sparse):
    _, folder = sparse
    result = smu("eval", "--model", folder / "retrain" / "model.safetensors", "--forget", "class:3", "--json")
    assert json.loads(result.stdout)["metrics"]["ua"] == 100.0


def test_the_table_shows_rte_in_minutes(sparse, tmp_path):
    model, _ = sparse
    result = smu(
        "unlearn",
        "--model",
        model,
        "--forget",
        "class:3",
        "--method",
        "ga",
        "--epochs",
        "1",
        "--out",
        tmp_path,
    )
    assert result.exit_code == 0 and "UA" in result.stdout
    rte_s = json.loads((tmp_path / "manifest.json").read_text())["result"]["rte_s"]
    row = next(line for line in result.stdout.splitlines() if "RTE (min)" in line)
    assert f"{rte_s / 60:.2f}" in row


def test_rte_is_converted_from_seconds_to_minutes():
    from rich.console import Console

    from smu.cli.unlearn import render

    def shown(result):
        console = Console(width=200, record=True)
        for item in render(result):
            console.print(item)
        return console.export_text()

    assert "RTE 1.50 min (90.0 s)" in shown({"rte_s": 90.0, "method": "ga", "model": "m", "metrics": None})
    metrics = {
        "ua": 1.0,
        "ra": 2.0,
        "ta": 3.0,
        "mia_efficacy": 4.0,
        "val_acc": 5.0,
        "mia": {"confidence": 4.0},
    }
    full = {
        "rte_s": 90.0,
        "method": "ga",
        "model": "m",
        "metrics": metrics,
        "reference": None,
        "gap": None,
        "forget": {"spec": "class:3", "size": 10},
        "sparsity": 0.0,
    }
    row = next(line for line in shown(full).splitlines() if "RTE (min)" in line)
    assert row.split("│")[2].strip() == "1.50"


def test_no_eval_skips_the_metrics_and_quiet_prints_the_model_path(sparse, tmp_path):
    model, _ = sparse
    result = smu(
        "unlearn",
        "--model",
        model,
        "--forget",
        "random:20",
        "--method",
        "ft",
        "--epochs",
        "1",
        "--no-eval",
        "--out",
        tmp_path,
        "-q",
    )
    assert result.exit_code == 0 and result.stdout.strip() == str(tmp_path / "model.safetensors")
    meta = json.loads((tmp_path / "manifest.json").read_text())["result"]
    assert meta["metrics"] is None and meta["method"] == "ft"


def test_a_diverging_gradient_ascent_writes_nothing(sparse, tmp_path):
    model, _ = sparse
    result = smu(
        "unlearn",
        "--model",
        model,
        "--forget",
        "class:3",
        "--method",
        "ga",
        "--lr",
        "1e12",
        "--epochs",
        "3",
        "--out",
        tmp_path / "ga",
    )
    assert result.exit_code == 1 and "ga diverged in epoch" in result.stderr and "lower --lr" in result.stderr
    assert not (tmp_path / "ga").exists()


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--method", "f_t"], 2, "did you mean 'ft'"),
        (["--method", "ft", "--alpha", "0.1"], 2, "--alpha does not apply to --method ft"),
        (["--method", "ff", "--epochs", "3"], 2, "--epochs does not apply to --method ff"),
        (["--method", "ft", "--epochs", "0"], 2, "--epochs 0 must be >= 1"),
        (["--method", "ft", "--lr", "-1"], 2, "--lr -1.0 must be > 0"),
        (["--method", "ft", "--mask", "nope.safetensors"], 1, "no such file"),
    ],
)
def test_bad_unlearn_input_is_one_clear_line(sparse, tmp_path, args, code, message):
    model, _ = sparse
    result = smu("unlearn", "--model", model, "--forget", "class:3", *args, "--out", tmp_path / "o")
    assert result.exit_code == code, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_a_model_file_passed_as_the_mask_is_refused(sparse, tmp_path):
    model, _ = sparse
    result = smu(
        "unlearn",
        "--model",
        model,
        "--mask",
        model,
        "--forget",
        "class:3",
        "--method",
        "ft",
        "--out",
        tmp_path / "o",
    )
    assert result.exit_code == 1 and "is a model, not a mask" in result.stderr


def test_salun_keeps_every_weight_outside_its_saliency_mask_and_its_mask_can_be_reused(sparse, tmp_path):
    model, _ = sparse
    args = ["unlearn", "--model", model, "--forget", "class:3", "--method", "salun", "--epochs", "2"]
    first = smu(*args, "--out", tmp_path / "a", "--json")  # the default weight decay and momentum
    assert first.exit_code == 0, first.output
    out = json.loads(first.stdout)
    saliency = out["extras"]["saliency.safetensors"]
    before, after, keep = load_file(model), load_file(out["model"]), load_file(saliency)
    assert set(keep) == {
        k for k in before if not k.startswith("normalize.") and "running" not in k and "num_batches" not in k
    }
    kept = sum(int(k.sum()) for k in keep.values())
    assert kept == int(0.5 * sum(k.numel() for k in keep.values()))  # the default ratio
    for name, k in keep.items():
        assert torch.equal(after[name][k == 0], before[name][k == 0]), name  # bit-identical
    assert any(not torch.equal(after[n][k == 1], before[n][k == 1]) for n, k in keep.items())
    again = smu(*args, "--saliency", saliency, "--out", tmp_path / "b", "--json")
    assert again.exit_code == 0, again.output
    reused = load_file(json.loads(again.stdout)["model"])
    assert all(torch.equal(reused[n], t) for n, t in after.items())  # the same weights (the header differs)


def test_bad_salun_input_is_one_line_exit_2_and_nothing_written(sparse, tmp_path):
    from smu.io import tensorfile

    model, folder = sparse
    args = ["unlearn", "--model", model, "--forget", "class:3", "--method", "salun", "--epochs", "1"]
    made = json.loads(smu(*args, "--out", tmp_path / "a", "--json").stdout)["extras"]["saliency.safetensors"]
    meta = tensorfile.read_metadata(made) | {"smu.arch": "resnet20"}
    tensorfile.save_tensors(tmp_path / "other.safetensors", tensorfile.read_tensors(made), meta)
    for extra, code, message in (
        (["--saliency-ratio", "1.5"], 2, "--saliency-ratio 1.5 must be in (0, 1]"),
        (["--saliency-ratio", "0"], 2, "--saliency-ratio 0.0 must be in (0, 1]"),
        (["--saliency", tmp_path / "other.safetensors"], 2, "was made for arch 'resnet20'"),
        (["--selection", "3"], 2, "--selection does not apply to --method salun"),
        (["--saliency", folder / "retrain" / "model.safetensors"], 1, "is a model, not a saliency"),
    ):
        result = smu(*args, *extra, "--out", tmp_path / "bad")
        assert result.exit_code == code, (extra, result.output)
        assert message in result.stderr and said(result.stderr).count("\n") == 1, result.stderr
        assert not (tmp_path / "bad").exists()
