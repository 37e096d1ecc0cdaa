import json

import pytest
import torch
from conftest import smu

from smu.data.forget import resolve_forget
from smu.execution.engine import TrainConfig, fit
from smu.io import artifacts
from smu.models import build_model
from smu.workflows.prune import base_meta


@pytest.fixture(scope="module")
def models(tmp_path_factory, digits):
    """full.safetensors trained on all of digits; without3.safetensors trained without class 3."""
    folder = tmp_path_factory.mktemp("models")
    retain = resolve_forget("class:3", digits).retain(digits)
    for name, data in (("full", digits.train), ("without3", retain)):
        torch.manual_seed(0)
        m = build_model(
            "cnn", in_channels=1, image_size=8, num_classes=10, mean=digits.info.mean, std=digits.info.std
        )
        fit(m, data, TrainConfig(epochs=12, batch_size=64, lr=0.05))
        artifacts.save_model(folder / f"{name}.safetensors", m, base_meta(digits, "cnn", 0, "test"))
    return folder


@pytest.mark.slow
def test_eval_against_the_retrained_model_reports_metrics_and_gaps(models):
    result = smu(
        "eval",
        "--model",
        models / "full.safetensors",
        "--forget",
        "class:3",
        "--reference",
        models / "without3.safetensors",
        "--json",
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    m, ref, g = out["metrics"], out["reference"], out["gap"]
    assert m["ua"] < 10 and ref["ua"] == 100.0 and ref["mia_efficacy"] > 95
    for k in ("ua", "mia_efficacy", "ra", "ta"):  # each rounded to 2 decimals on its own
        assert g[k] == pytest.approx(abs(m[k] - ref[k]), abs=0.011)
    assert g["avg"] == pytest.approx(sum(g[k] for k in ("ua", "mia_efficacy", "ra", "ta")) / 4, abs=0.011)
    assert out["forget"]["spec"] == "class:3" and out["forget"]["size"] > 100 and out["sparsity"] == 0.0


def test_the_table_shows_every_metric_and_the_average_gap(models):
    result = smu(
        "eval", "--model", models / "full.safetensors", "-f", "class:3", "-r", models / "without3.safetensors"
    )
    assert result.exit_code == 0, result.output
    for word in ("UA", "MIA-Efficacy", "RA", "TA", "Avg. Gap", "Reference"):
        assert word in result.stdout


@pytest.mark.parametrize("spec, size", [("random:10%", None), ("class:3:50", 50)])
def test_a_saved_forget_set_reproduces_the_same_samples(models, digits, tmp_path, spec, size):
    first = smu(
        "eval",
        "--model",
        models / "full.safetensors",
        "--forget",
        spec,
        "--forget-seed",
        "7",
        "--save-forget",
        tmp_path / "f.safetensors",
        "--json",
    )
    assert first.exit_code == 0, first.output
    a = json.loads(first.stdout)["forget"]
    assert a["size"] == (size or round(0.1 * len(digits.train)))
    again = json.loads(
        smu(
            "eval", "--model", models / "full.safetensors", "--forget", tmp_path / "f.safetensors", "--json"
        ).stdout
    )
    assert (
        again["forget"]["sha256"] == a["sha256"] and again["metrics"] == json.loads(first.stdout)["metrics"]
    )


def test_quiet_prints_the_saved_forget_set_path(models, tmp_path):
    result = smu(
        "eval",
        "--model",
        models / "full.safetensors",
        "--forget",
        "random:5",
        "--save-forget",
        tmp_path / "f.safetensors",
        "-q",
    )
    assert result.exit_code == 0 and result.stdout.strip() == str(tmp_path / "f.safetensors")


def test_a_reference_trained_on_another_split_is_refused(models, digits, tmp_path):
    other = artifacts.load_model(models / "without3.safetensors")
    meta = dict(other.meta) | {"smu.split_seed": "5"}
    artifacts.save_model(tmp_path / "other.safetensors", other.model, meta)
    result = smu(
        "eval",
        "--model",
        models / "full.safetensors",
        "--forget",
        "class:3",
        "--reference",
        tmp_path / "other.safetensors",
    )
    assert result.exit_code == 1 and "another validation split" in result.stderr


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--forget", "class:11"], 2, "not a class of digits"),
        (["--forget", "random:0"], 2, "asks for 0 samples"),
        (["--forget", "random:5", "--mia-features", "confidance"], 2, "did you mean 'confidence'"),
        (["--forget", "random:5", "--device", "tpu"], 2, "unknown device"),
    ],
)
def test_bad_eval_input_is_one_clear_line(models, args, code, message):
    result = smu("eval", "--model", models / "full.safetensors", *args)
    assert result.exit_code == code, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1 and "Traceback" not in result.output


def test_a_missing_model_file_is_exit_code_1(tmp_path):
    result = smu("eval", "--model", tmp_path / "nope.safetensors", "--forget", "class:1")
    assert result.exit_code == 1 and "no such file" in result.stderr
