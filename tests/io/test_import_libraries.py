"""Weights trained elsewhere: torchvision and timm state dicts, safetensors files, model folders,
strict and partial loading, the normalisation they were trained with."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import smu
from safetensors.torch import save_file

from smu.io import artifacts
from smu.models import build_model


def library_model(arch: str, channels: int, size: int, classes: int):
    torch.manual_seed(1)
    return build_model(
        arch, in_channels=channels, image_size=size, num_classes=classes, mean=[0] * 3, std=[1] * 3
    ).net


def imported(tmp_path, *args):
    result = smu("import", *args, "--out", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_torchvision_state_dict_saved_with_torch_save_imports_with_imagenet_normalisation(tmp_path):
    net = library_model("torchvision:resnet18", 3, 8, 10)
    torch.save(net.state_dict(), tmp_path / "resnet18.pth")
    out = imported(
        tmp_path, tmp_path / "resnet18.pth", "--arch", "torchvision:resnet18", "--dataset", "digits"
    )
    assert out["loaded"] == "122 of 122 tensors" and out["not_loaded"] is None
    model = artifacts.load_model(out["model"]).model.eval()
    assert model.normalize.mean.tolist() == pytest.approx([0.485, 0.456, 0.406])
    x = torch.rand(3, 1, 8, 8)
    net.eval()
    with torch.no_grad():  # the logits of the network it was, on grey images repeated to RGB
        expected = net(
            (x.expand(-1, 3, -1, -1) - model.normalize.mean[:, None, None])
            / model.normalize.std[:, None, None]
        )
        assert torch.allclose(model(x), expected, atol=1e-5)


def test_a_timm_vit_in_safetensors_needs_no_strict_for_a_new_head_and_says_so(tmp_path):
    net = library_model("timm:vit_tiny_patch16_224@32", 3, 32, 1000)  # an "ImageNet" head
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, tmp_path / "vit.safetensors")
    args = (tmp_path / "vit.safetensors", "--arch", "timm:vit_tiny_patch16_224@32", "--dataset", "digits")
    refused = smu("import", *args, "--out", tmp_path / "refused")
    assert refused.exit_code != 0 and not (tmp_path / "refused" / "model.safetensors").exists()
    assert "other shape 2" in refused.stderr and "--no-strict" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    out = imported(tmp_path, *args, "--no-strict")
    assert out["loaded"] == "150 of 152 tensors" and "net.head.weight" in out["not_loaded"]
    state = artifacts.load_model(out["model"]).model.state_dict()
    assert torch.equal(state["net.blocks.0.attn.qkv.weight"], net.state_dict()["blocks.0.attn.qkv.weight"])
    assert state["net.head.weight"].shape == (10, 192)


def test_a_timm_folder_names_its_architecture_and_normalisation_in_config_json(tmp_path):
    net = library_model("timm:resnet18", 3, 8, 10)
    folder = tmp_path / "hub"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, folder / "model.safetensors")
    config = {
        "architecture": "resnet18",
        "num_classes": 10,
        "pretrained_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3},
    }
    (folder / "config.json").write_text(json.dumps(config))
    out = imported(tmp_path, folder, "--dataset", "cifar10")
    assert out["arch"] == "timm:resnet18" and out["not_loaded"] is None
    assert artifacts.load_model(out["model"]).model.normalize.std.tolist() == [0.5] * 3


def test_a_state_dict_of_another_architecture_is_one_line_and_writes_nothing(tmp_path):
    torch.save(library_model("torchvision:resnet18", 3, 8, 10).state_dict(), tmp_path / "r18.pth")
    for strict in ("--strict", "--no-strict"):
        result = smu(
            "import",
            tmp_path / "r18.pth",
            "--arch",
            "vit",
            "--dataset",
            "digits",
            strict,
            "--out",
            tmp_path / "o",
        )
        assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1, result.output
        assert "does not fit --arch vit" in result.stderr or "no weight that fits" in result.stderr
        assert not (tmp_path / "o" / "model.safetensors").exists()


@pytest.mark.slow
def test_an_imported_torchvision_resnet18_is_pruned_unlearned_and_evaluated(tmp_path):
    torch.save(library_model("torchvision:resnet18", 3, 8, 10).state_dict(), tmp_path / "resnet18.pth")
    out = imported(
        tmp_path, tmp_path / "resnet18.pth", "--arch", "torchvision:resnet18", "--dataset", "digits"
    )
    pruned = smu(
        "prune",
        "--model",
        out["model"],
        "--method",
        "omp",
        "--rate",
        "0.5",
        "--epochs",
        "1",
        "--subset",
        "300",
        "--out",
        tmp_path / "p",
        "-q",
    )
    assert pruned.exit_code == 0, pruned.output
    model = tmp_path / "p" / "round-1" / "model.safetensors"
    unlearned = smu(
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
        tmp_path / "u",
        "--json",
    )
    assert unlearned.exit_code == 0, unlearned.output
    loaded = artifacts.load_model(tmp_path / "u" / "model.safetensors")
    assert loaded.mask.sparsity() == pytest.approx(0.5, abs=1e-3)
    assert loaded.mask.revived(loaded.model) == 0
    evaluated = smu("eval", "--model", tmp_path / "u" / "model.safetensors", "--forget", "class:3", "--json")
    assert evaluated.exit_code == 0, evaluated.output
    assert set(json.loads(evaluated.stdout)["metrics"]) >= {"ua", "ra", "ta", "mia_efficacy"}


@pytest.mark.slow
def test_a_pretrained_torchvision_model_unlearns_on_a_224_pixel_imagefolder(tmp_path):
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    for split, count in (("train", 4), ("val", 2)):
        for label, name in enumerate(("cat", "dog", "fox")):
            folder = tmp_path / "tree" / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = (torch.rand(224, 224, 3, generator=gen) * 80).byte() + 60 * label
                Image.fromarray(pixels.numpy()).save(folder / f"{i}.png")
    # "Pretrained": an ImageNet-shaped state dict (1000 classes), as torch.save writes it.
    torch.save(
        library_model("torchvision:mobilenet_v3_small", 3, 224, 1000).state_dict(), tmp_path / "mnv3.pth"
    )
    tree = tmp_path / "tree"
    out = imported(
        tmp_path,
        tmp_path / "mnv3.pth",
        "--arch",
        "torchvision:mobilenet_v3_small",
        "--dataset",
        "imagefolder",
        "--data",
        tree,
        "--no-strict",
    )
    assert out["num_classes"] == 3 and "net.classifier.3.weight" in out["not_loaded"]
    common = ("--model", out["model"], "--forget", "class:1", "--data", tree)
    unlearned = smu(
        "unlearn",
        *common,
        "--method",
        "ft",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--out",
        tmp_path / "u",
        "-q",
    )
    assert unlearned.exit_code == 0, unlearned.output
    evaluated = smu(
        "eval",
        "--model",
        tmp_path / "u" / "model.safetensors",
        "--forget",
        "class:1",
        "--data",
        tree,
        "--json",
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert 0 <= json.loads(evaluated.stdout)["metrics"]["ta"] <= 100


@pytest.mark.parametrize(
    "config,message",
    [
        ({"architecture": "x" * 100_000}, "timm has no classification model"),
        ({"architecture": "resnet18", "pretrained_cfg": ["not", "a", "dict"]}, None),
        ({"architecture": "resnet18", "mean": ["a", 1, 2], "std": [1, 1, 1]}, "mean and std are"),
        ("{not json", "is not JSON"),
    ],
)
def test_a_hostile_config_json_is_one_short_line_or_ignored(tmp_path, config, message):
    folder = tmp_path / "hub"
    folder.mkdir()
    net = library_model("timm:resnet18", 3, 8, 10)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, folder / "model.safetensors")
    (folder / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    result = smu("import", folder, "--dataset", "cifar10", "--out", tmp_path / "o")
    if message is None:  # a pretrained_cfg that is no mapping is ignored: the library's statistics
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code in (1, 2) and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and len(result.stderr) < 500
    assert "Traceback" not in result.output and not (tmp_path / "o" / "model.safetensors").exists()
