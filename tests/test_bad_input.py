"""Bad input, through the real entry point: one line on stderr, the right exit code, nothing left behind."""

import json
from pathlib import Path

import pytest
import torch

from smu import artifacts
from smu.cli import main
from smu.data import load_splits
from smu.data.forget import resolve_forget
from smu.models import build_model


@pytest.fixture(scope="module")
def files(tmp_path_factory, pruned_cnn):
    """A small pruned digits model and assorted broken or mismatched files."""
    folder = tmp_path_factory.mktemp("bad")
    model = pruned_cnn / "round-1" / "model.safetensors"
    data = model.read_bytes()
    (folder / "junk.safetensors").write_bytes(b"this is not a safetensors file")
    (folder / "cut.safetensors").write_bytes(data[: len(data) // 2])
    loaded = artifacts.load_model(model)
    dense_meta = {k: v for k, v in loaded.meta.items() if not k.startswith("smu.mask")}
    artifacts.save_model(
        folder / "fm" / "model.safetensors", loaded.model, dense_meta | {"smu.dataset": "mnist"}
    )
    torch.manual_seed(0)
    five = build_model("cnn", in_channels=1, image_size=8, num_classes=5, mean=[0.3], std=[0.3])
    artifacts.save_model(folder / "five" / "model.safetensors", five, dense_meta | {"smu.num_classes": 5})
    other = build_model("resnet20", in_channels=1, image_size=8, num_classes=10, mean=[0.3], std=[0.3])
    from smu.masks import Mask

    artifacts.save_mask(
        folder / "r20-mask.safetensors", Mask.ones(other), loaded.meta | {"smu.arch": "resnet20"}
    )
    resolve_forget("random:10", load_splits("digits", seed=4)).save(folder / "other-split.safetensors")
    for name, text in {
        "dup.txt": "1\n1\n",
        "word.txt": "one\n",
        "big.txt": "99999\n",
        "empty.txt": "\n",
        "floats.json": "[1.5]",
    }.items():
        (folder / name).write_text(text)
    (folder / "busy").mkdir()
    (folder / "busy" / "mine.txt").write_text("keep")
    (folder / "a-file").write_text("not a folder")
    (folder / "unknown.yaml").write_text("datset: digits\n")
    (folder / "wrongtype.yaml").write_text("train: {epochs: ten}\n")
    return folder, model


def cases(f, m):
    mask = m.with_name("mask.safetensors")
    base_prune = ["prune", "--epochs", "2", "--rewind-epoch", "1"]
    unlearn = ["unlearn", "--model", m, "--forget", "class:1", "--method", "ft"]
    ev = ["eval", "--model", m, "--forget"]
    return [
        # files
        ([*base_prune, "--model", f / "missing.safetensors"], 1, "no such file"),
        ([*base_prune, "--model", f / "junk.safetensors"], 1, "not a readable safetensors file"),
        ([*base_prune, "--model", f / "cut.safetensors"], 1, "cut.safetensors"),
        ([*base_prune, "--model", mask], 1, "is a mask, not a model"),
        ([*unlearn, "--mask", m], 1, "is a model, not a mask"),
        (
            [*unlearn, "--mask", f / "r20-mask.safetensors"],
            1,
            "is for architecture 'resnet20' but the model is 'cnn'",
        ),
        ([*ev, "class:1", "--reference", f / "fm" / "model.safetensors"], 1, "was made for dataset 'mnist'"),
        (
            [*ev, "class:1", "--reference", f / "five" / "model.safetensors"],
            1,
            "was made for num_classes '5'",
        ),
        (["inspect", f / "junk.safetensors"], 1, "not a readable safetensors file"),
        (
            ["import", f / "junk.safetensors", "--arch", "cnn", "--dataset", "digits"],
            1,
            "not a readable PyTorch",
        ),
        # names
        ([*base_prune, "--method", "omq"], 2, "unknown pruning method 'omq'; did you mean 'omp'?"),
        ([*base_prune, "--arch", "resnet2"], 2, "did you mean 'resnet20'?"),
        ([*base_prune, "--dataset", "fashion_mnist"], 2, "did you mean 'fashion-mnist'?"),
        ([*base_prune, "--scope", "convs"], 2, "--scope 'convs' must be one of conv, all"),
        ([*base_prune, "--device", "gpu"], 2, "unknown device 'gpu'"),
        ([*unlearn[:-1], "f_t"], 2, "did you mean 'ft'?"),
        # numbers
        ([*base_prune, "--rate", "1.5"], 2, "--rate 1.5 must be in (0, 1)"),
        ([*base_prune, "--subset", "5000"], 2, "--subset 5000 must be between 0 (all) and the 1437"),
        ([*base_prune, "--rate", "0"], 2, "--rate 0.0 must be in (0, 1)"),
        (["prune", "--epochs", "0"], 2, "--epochs 0 must be >= 1"),
        ([*base_prune, "--lr", "-0.1"], 2, "--lr -0.1 must be > 0"),
        ([*base_prune, "--batch-size", "0"], 2, "--batch-size 0 must be >= 1"),
        ([*base_prune, "--epochs", "abc"], 2, "Invalid value for '--epochs'"),
        ([*unlearn, "--epochs", "-3"], 2, "--epochs -3 must be >= 1"),
        # forget specs
        ([*ev, "class:99"], 2, "'99' is not a class of digits"),
        ([*ev, "random:0"], 2, "asks for 0 samples"),
        ([*ev, "random:200%"], 2, "asks for"),
        ([*ev, "randm:3"], 2, "is not a forget-set spec"),
        ([*ev, f"indices:{f / 'dup.txt'}"], 2, "index 1 appears twice"),
        ([*ev, f"indices:{f / 'word.txt'}"], 2, "'one' is not a whole number"),
        ([*ev, f"indices:{f / 'floats.json'}"], 2, "1.5 is not a whole number"),
        ([*ev, f"indices:{f / 'big.txt'}"], 2, "index 99999 is out of range"),
        ([*ev, f"indices:{f / 'empty.txt'}"], 2, "holds no indices"),
        ([*ev, f / "other-split.safetensors"], 2, "was made for split_seed '4'"),
        # output folders, data, devices
        ([*base_prune, "--out", f / "busy"], 2, "exists and is not empty"),
        ([*base_prune, "--out", f / "a-file" / "sub"], 2, "cannot be written"),
        ([*base_prune, "--dataset", "cifar10", "--data", f / "no-cifar"], 1, "cifar10 is missing under"),
        # recipes
        (["run", f / "unknown.yaml"], 2, "unknown key 'datset' (did you mean 'dataset'?)"),
        (["run", f / "wrongtype.yaml"], 2, "train.epochs must be int, got 'ten'"),
        (["run", f / "missing.yaml"], 2, "is neither a file nor a shipped recipe"),
        # divergence
        (
            [
                "unlearn",
                "--model",
                m,
                "--forget",
                "class:1",
                "--method",
                "ga",
                "--lr",
                "1e12",
                "--epochs",
                "3",
            ],
            1,
            "ga diverged in epoch",
        ),
        (
            ["unlearn", "--model", m, "--forget", "class:1", "--method", "ff", "--alpha", "1e40"],
            1,
            "ff produced NaN or Inf weights",
        ),
    ]


@pytest.mark.parametrize("i", range(len(cases(Path("f"), Path("m")))))
def test_bad_input_gives_one_line_the_right_exit_code_and_no_half_written_output(
    files, i, capsys, monkeypatch, tmp_path
):
    import smu.data.sources as sources

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(sources, "_download", offline)
    folder, model = files
    args, code, message = cases(folder, model)[i]
    args = [str(a) for a in args]
    out = tmp_path / "out"
    if args[0] in ("prune", "unlearn", "import") and "--out" not in args:
        args += ["--out", str(out)]
    with pytest.raises(SystemExit) as e:
        main(args)
    stdout, stderr = capsys.readouterr()
    assert e.value.code == code, stderr
    assert message in stderr, stderr
    assert stderr.strip().count("\n") == 0 and "Traceback" not in stderr
    assert stdout == ""
    assert not out.exists()


def test_smu_debug_shows_the_traceback(files, monkeypatch):
    folder, model = files
    monkeypatch.setenv("SMU_DEBUG", "1")
    from smu.errors import ArtifactError

    with pytest.raises(ArtifactError):
        main(["eval", "--model", str(folder / "junk.safetensors"), "--forget", "class:1"])


def test_the_device_cuda_without_cuda_is_a_usage_error(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SystemExit) as e:
        main(["prune", "--device", "cuda"])
    assert e.value.code == 2 and "CUDA is not available" in capsys.readouterr().err


def test_eval_json_is_byte_identical_between_runs(files, capsys):
    _, model = files
    outputs = []
    for _ in range(2):
        with pytest.raises(SystemExit):
            main(["eval", "--model", str(model), "--forget", "random:10%", "--json"])
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] and json.loads(outputs[0])["forget"]["size"] > 0
