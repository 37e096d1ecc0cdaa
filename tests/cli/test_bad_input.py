"""Bad input, through the real entry point: one line on stderr, the right exit code, nothing left behind."""

import json
import re
from pathlib import Path

import pytest
import torch
from conftest import said

from smu.cli.app import main
from smu.data import load_splits
from smu.data.forget import resolve_forget
from smu.io import artifacts, tensorfile
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
    from smu.core.masks import Mask

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
    hostile_files(folder, model)
    (folder / "busy").mkdir()
    (folder / "busy" / "mine.txt").write_text("keep")
    (folder / "a-file").write_text("not a folder")
    (folder / "unknown.yaml").write_text("datset: digits\n")
    (folder / "wrongtype.yaml").write_text("train: {epochs: ten}\n")
    return folder, model


def hostile_files(folder, model):
    """Files made by hand, as someone else could: broken weights, masks and headers, and YAML bombs."""
    from smu.io import schema as S

    dense = model.parent.parent / "dense" / "model.safetensors"
    tensors, meta = tensorfile.read_tensors(dense), tensorfile.read_metadata(dense)
    for name, layer, value in (("nan", "net.features.0.weight", "nan"), ("inf", "net.fc.bias", "-inf")):
        broken = dict(tensors)
        broken[layer] = tensors[layer].clone().flatten()
        broken[layer][3] = float(value)
        tensorfile.save_tensors(
            folder / f"{name}.safetensors", {**broken, layer: broken[layer].view_as(tensors[layer])}, meta
        )
    for name, bad in {
        "classes": {S.NUM_CLASSES: "1e9"},
        "shape": {S.INPUT_SHAPE: "1x100000x8"},
        "escape": {S.MASK_FILE: "../../etc/passwd", S.MASK_SHA256: "0" * 64},
        "no-arch": {S.ARCH: ""},
        "arch": {S.ARCH: "\x1b[31m[bold]resnet"},
    }.items():
        tensorfile.save_tensors(folder / f"header-{name}.safetensors", tensors, meta | bad)
    mask = model.with_name("mask.safetensors")
    twos = {k: m * 2 for k, m in tensorfile.read_tensors(mask).items()}
    tensorfile.save_tensors(folder / "twos-mask.safetensors", twos, tensorfile.read_metadata(mask))
    data = dense.read_bytes()
    (folder / "huge-header.safetensors").write_bytes((1 << 40).to_bytes(8, "little") + data[8:])
    flipped = bytearray(data)
    flipped[data.index(b'"F32"') + 2] ^= 0x55  # a bit flip in the header: the dtype is no dtype
    (folder / "flipped.safetensors").write_bytes(bytes(flipped))
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"{b}: &{b} [{', '.join([f'*{a}'] * 10)}]" for a, b in zip("abcdefg", "bcdefgh", strict=True)]
    (folder / "bomb.yaml").write_text("\n".join([*levels, "seeds: *h", ""]))  # 10^8 seeds in 600 bytes
    (folder / "loop.yaml").write_text("seeds: &s [1, *s]\n")
    (folder / "deep.yaml").write_text("seeds: " + "[" * 100 + "]" * 100 + "\n")
    (folder / "huge.yaml").write_text("# padding\n" * 200_000)
    (folder / "twice.yaml").write_text("recipe: quickstart\nseeds: [1]\nmethods: [ft]\nseeds: [2]\n")


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
            "not a readable safetensors file",
        ),
        # hostile files (made by hand: tests/fuzz/test_fuzz.py tries many more)
        (
            ["eval", "--model", f / "nan.safetensors", "--forget", "class:1"],
            1,
            "is not intact: net.features.0.weight holds NaN or Inf",
        ),
        (
            [*unlearn[:2], f / "inf.safetensors", *unlearn[3:]],
            1,
            "is not intact: net.fc.bias holds NaN or Inf",
        ),
        ([*base_prune, "--model", f / "nan.safetensors"], 1, "holds NaN or Inf"),
        (
            ["audit", "--model", f / "inf.safetensors", "--forget", "class:1", "--method", "ft"],
            1,
            "holds NaN or Inf",
        ),
        (
            ["tune", "--model", f / "nan.safetensors", "--forget", "class:1", "--method", "ga"],
            1,
            "holds NaN or Inf",
        ),
        (["backdoor-cleanse", "--model", f / "inf.safetensors", "--method", "ft"], 1, "holds NaN or Inf"),
        ([*ev, "class:1", "--reference", f / "nan.safetensors"], 1, "--reference"),
        ([*unlearn, "--mask", f / "twos-mask.safetensors"], 1, "holds values other than 0 and 1"),
        (
            [*ev, "class:1", "--model", f / "huge-header.safetensors"],
            1,
            "its header would be 1,099,511,627,776 bytes",
        ),
        ([*ev, "class:1", "--model", f / "flipped.safetensors"], 1, "not a readable safetensors file"),
        (
            [*ev, "class:1", "--model", f / "header-classes.safetensors"],
            1,
            "smu.num_classes is '1e9', not an integer",
        ),
        ([*ev, "class:1", "--model", f / "header-shape.safetensors"], 1, "smu.input_shape is '1x100000x8'"),
        (
            [*ev, "class:1", "--model", f / "header-escape.safetensors"],
            1,
            "smu.mask is '../../etc/passwd', not a file name",
        ),
        (
            [*ev, "class:1", "--model", f / "header-no-arch.safetensors"],
            1,
            "has a broken header: no smu.arch",
        ),
        (
            [*ev, "class:1", "--model", f / "header-arch.safetensors"],
            1,
            "is a '\\x1b[31m[bold]resnet', an architecture",
        ),
        (
            ["run", f / "bomb.yaml", "--dry-run"],
            2,
            "expands to more than 100,000 values (aliases that multiply",
        ),
        (["run", f / "loop.yaml", "--dry-run"], 2, "expands to more than 100,000 values"),
        (["run", "quickstart", "--dry-run", "seeds=&a [1, *a]"], 2, "override 'seeds=&a [1, *a]' expands to"),
        (["run", f / "deep.yaml", "--dry-run"], 2, "nests deeper than 32 levels"),
        (["run", f / "huge.yaml", "--dry-run"], 2, "is 2,000,000 characters long"),
        (["run", f / "twice.yaml", "--dry-run"], 2, "sets 'seeds' twice (lines 2 and 4)"),
        # names
        ([*base_prune, "--method", "omq"], 2, "unknown pruning method 'omq'; did you mean 'omp'?"),
        ([*base_prune, "--arch", "resnet2"], 2, "did you mean 'resnet20'?"),
        ([*base_prune, "--dataset", "fashion_mnist"], 2, "did you mean 'fashion-mnist'?"),
        ([*base_prune, "--scope", "convs"], 2, "--scope 'convs' must be one of conv, linear, all"),
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
    error = said(stderr)  # without a log's progress lines, before an error that comes mid-run
    assert error.strip().count("\n") == 0 and "Traceback" not in stderr and len(error) <= 500
    assert stdout == ""
    assert not out.exists()


def test_smu_debug_shows_the_traceback(files, monkeypatch):
    folder, model = files
    monkeypatch.setenv("SMU_DEBUG", "1")
    from smu.core.errors import ArtifactError

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


HOSTILE = "[bold red]INJECTED[/] \x1b]0;pwned-title\x07 \x1b[31mred\x1b[0m \u202eevil\r\nfake row"


def test_text_from_files_reaches_the_terminal_as_plain_text(files, capsys, tmp_path):
    """Metadata and file names may hold Rich markup and terminal escapes: shown, never obeyed."""
    _, model = files
    dense = model.parent.parent / "dense" / "model.safetensors"
    folder = tmp_path / "evil\x1b[2J"
    keys = {"smu.command": HOSTILE, "smu.prune.method": HOSTILE, "smu.forget.spec": HOSTILE, HOSTILE: "x"}
    tensorfile.save_tensors(
        folder / "model.safetensors", tensorfile.read_tensors(dense), tensorfile.read_metadata(dense) | keys
    )
    shown = {}
    for command in (["inspect"], ["eval", "--forget", "class:1", "--model"]):
        with pytest.raises(SystemExit) as e:
            main([*command, str(folder / "model.safetensors")])
        out, err = capsys.readouterr()
        assert e.value.code == 0, err
        assert not any(raw in out + err for raw in ("\x1b", "\x07", "\u202e", "\r")), out
        shown[command[0]] = "".join(re.sub(r"[│┃┏━┓┡┩└┘─┴┬┼╇╈\s]", "", out))  # the table, wrapping undone
    table = shown["inspect"]
    assert "[boldred]INJECTED[/]\\x1b]0;pwned-title\\x07\\x1b[31mred\\x1b[0m\\u202eevil\\r\\nfakerow" in table
    assert "evil\\x1b[2J" in table  # the folder's name, in the title


def test_inspect_reports_a_mask_of_values_other_than_0_and_1(files):
    from smu.io.inspection import inspect_artifact

    folder, _ = files
    report = inspect_artifact(folder / "twos-mask.safetensors")
    assert not report["intact"] and any("holds values other than 0 and 1" in p for p in report["problems"])
