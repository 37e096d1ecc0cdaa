import json
import os
import pickle

import pytest
import torch
from conftest import smu

from smu.io import artifacts, tensorfile


def batch_norm(prefix: str, width: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{k}": (width,) for k in ("weight", "bias", "running_mean", "running_var")} | {
        f"{prefix}.num_batches_tracked": ()
    }


def research_resnet20_shapes(classes: int = 10) -> dict[str, tuple[int, ...]]:
    """State-dict names and shapes of the original code's ``resnet20s`` (models/ResNets.py), written out
    from its definition: a ``normalize`` module, ``conv1``/``bn1``, three stages ``layerN`` of three
    BasicBlocks (``conv1 bn1 conv2 bn2``; the option-A ``shortcut`` has no parameters) and ``fc``."""
    shapes = {"normalize.mean": (3,), "normalize.std": (3,), "conv1.weight": (16, 3, 3, 3)}
    shapes |= batch_norm("bn1", 16)
    in_planes = 16
    for stage, planes in enumerate((16, 32, 64), 1):
        for block in range(3):
            p = f"layer{stage}.{block}"
            shapes[f"{p}.conv1.weight"] = (planes, in_planes, 3, 3)
            shapes |= batch_norm(f"{p}.bn1", planes)
            shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            shapes |= batch_norm(f"{p}.bn2", planes)
            in_planes = planes
    return shapes | {"fc.weight": (classes, 64), "fc.bias": (classes,)}


def research_resnet18_shapes(classes: int = 10) -> dict[str, tuple[int, ...]]:
    """The same for the original code's CIFAR ``resnet18`` (models/ResNet.py, torchvision's layout): four
    stages of two BasicBlocks, a ``downsample`` (1x1 conv ``.0`` and BatchNorm ``.1``) opening stages 2-4."""
    shapes = {"normalize.mean": (3,), "normalize.std": (3,), "conv1.weight": (64, 3, 3, 3)}
    shapes |= batch_norm("bn1", 64)
    in_planes = 64
    for stage, planes in enumerate((64, 128, 256, 512), 1):
        for block in range(2):
            p = f"layer{stage}.{block}"
            shapes[f"{p}.conv1.weight"] = (planes, in_planes, 3, 3)
            shapes |= batch_norm(f"{p}.bn1", planes)
            shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            shapes |= batch_norm(f"{p}.bn2", planes)
            if block == 0 and stage > 1:
                shapes[f"{p}.downsample.0.weight"] = (planes, in_planes, 1, 1)
                shapes |= batch_norm(f"{p}.downsample.1", planes)
            in_planes = planes
    return shapes | {"fc.weight": (classes, 512), "fc.bias": (classes,)}


SHAPES = {"resnet20": research_resnet20_shapes, "resnet18": research_resnet18_shapes}


def research_checkpoint(path, arch="resnet20", prune_amount=0.6, wrap=True, data_parallel=True):
    """A checkpoint laid out like the original code's: its key names, ``torch.nn.utils.prune`` pairs
    (``weight_orig`` × ``weight_mask``) on every conv, DataParallel's ``module.`` prefix, extra keys.
    Returns the tensors an import must produce, by the research code's names, and the masks."""
    gen = torch.Generator().manual_seed(1)
    state, expected, masks = {}, {}, {}
    for name, shape in SHAPES[arch]().items():
        if name.endswith("num_batches_tracked"):
            value = torch.tensor(182)
        elif name.endswith(("running_var", "normalize.std")):
            value = torch.rand(shape, generator=gen) + 0.5
        else:
            value = torch.randn(shape, generator=gen) * 0.1
        if len(shape) == 4 and prune_amount > 0:  # a pruned conv: stored as a pair
            mask = (torch.rand(shape, generator=gen) >= prune_amount).float()
            base = name.removesuffix(".weight")
            state[f"{base}.weight_orig"], state[f"{base}.weight_mask"] = value, mask
            value, masks[name] = value * mask, mask
        else:
            state[name] = value
        expected[name] = value
    if data_parallel:
        state = {f"module.{k}": v for k, v in state.items()}
    torch.save({"state_dict": state, "epoch": 182, "best_sa": 93.1} if wrap else state, path)
    return expected, masks


def smu_name(research_name: str) -> str:
    return research_name if research_name.startswith("normalize.") else f"net.{research_name}"


def test_a_pruned_research_checkpoint_imports_every_tensor_to_its_place(tmp_path):
    expected, masks = research_checkpoint(tmp_path / "0model_SA_best.pth.tar")
    result = smu(
        "import",
        tmp_path / "0model_SA_best.pth.tar",
        "--arch",
        "resnet20",
        "--dataset",
        "cifar10",
        "--out",
        tmp_path / "out",
        "--json",
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["sparsity"] == pytest.approx(60, abs=1) and out["num_classes"] == 10
    loaded = artifacts.load_model(out["model"])
    state = loaded.model.state_dict()
    assert set(state) == {smu_name(k) for k in expected}
    for name, value in expected.items():
        assert torch.equal(state[smu_name(name)], value.to(state[smu_name(name)].dtype)), name
    assert set(loaded.mask.tensors) == {smu_name(k) for k in masks}
    for name, m in masks.items():
        assert torch.equal(loaded.mask.tensors[smu_name(name)], m), name
    assert round(loaded.mask.percent(), 2) == out["sparsity"]
    assert loaded.meta["smu.imported_from"] == "0model_SA_best.pth.tar"


def test_a_plain_state_dict_of_the_papers_resnet18_imports(tmp_path):
    expected, _ = research_checkpoint(
        tmp_path / "dense.pth", arch="resnet18", prune_amount=0.0, wrap=False, data_parallel=False
    )
    result = smu(
        "import",
        tmp_path / "dense.pth",
        "--arch",
        "resnet18",
        "--dataset",
        "cifar10",
        "--out",
        tmp_path / "out",
        "-q",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [str(tmp_path / "out" / "model.safetensors")]
    state = artifacts.load_model(tmp_path / "out" / "model.safetensors").model.state_dict()
    assert set(state) == {smu_name(k) for k in expected}
    for name, value in expected.items():
        assert torch.equal(state[smu_name(name)], value.to(state[smu_name(name)].dtype)), name


class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["torch.save", "pickle protocol 4"])
def test_a_checkpoint_that_would_run_code_is_refused_and_the_code_never_runs(tmp_path, writer):
    marker = tmp_path / "pwned"
    payload = Payload()
    payload.marker = marker
    obj = {"state_dict": {"w": torch.zeros(1)}, "evil": payload}
    if writer == "torch.save":
        torch.save(obj, tmp_path / "evil.pth")
    else:
        (tmp_path / "evil.pth").write_bytes(pickle.dumps(obj, protocol=4))
    result = smu(
        "import", tmp_path / "evil.pth", "--arch", "cnn", "--dataset", "digits", "--out", tmp_path / "o"
    )
    assert result.exit_code == 1 and "refused" in result.stderr and "would run code" in result.stderr
    assert "unsupported" in result.stderr.lower()  # the unpickler's reason, not torch's advice
    assert result.stderr.strip().count("\n") == 0  # one line: torch's protocol warning is not shown
    assert not marker.exists() and not (tmp_path / "o").exists()


def test_a_checkpoint_for_another_architecture_is_a_clear_error(tmp_path):
    research_checkpoint(tmp_path / "r20.pth")
    result = smu(
        "import", tmp_path / "r20.pth", "--arch", "resnet18", "--dataset", "cifar10", "--out", tmp_path / "o"
    )
    assert result.exit_code == 1 and "does not fit --arch resnet18" in result.stderr


def test_inspect_shows_metadata_sparsity_and_the_provenance_chain(pruned_cnn):
    result = smu("inspect", pruned_cnn / "round-1" / "model.safetensors", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["intact"] and out["kind"] == "model" and out["sparsity"] == pytest.approx(50, abs=1)
    assert out["metadata"]["smu.arch"] == "cnn" and len(out["per_layer"]) == 3
    assert [p["path"] for p in out["provenance"]] == [str(pruned_cnn / "dense" / "model.safetensors")]
    table = smu("inspect", pruned_cnn / "round-1" / "mask.safetensors")
    assert table.exit_code == 0 and "Per-layer sparsity" in table.stdout


def test_the_search_for_parents_looks_nearest_first_and_stays_bounded(tmp_path):
    from smu.io.inspection import nearby_artifacts

    for folder in ("a/b/c", "z", "y/x"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "m.safetensors").write_bytes(b"")
    (tmp_path / "top.safetensors").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("")
    os.symlink(tmp_path, tmp_path / "loop")  # followed, it would find everything again, forever
    names = [str(p.relative_to(tmp_path)) for p in nearby_artifacts(tmp_path)]
    assert names == ["top.safetensors", "z/m.safetensors", "y/x/m.safetensors", "a/b/c/m.safetensors"]
    assert len(nearby_artifacts(tmp_path, limit=2)) == 2
    assert nearby_artifacts(tmp_path, max_folders=2) == [tmp_path / "top.safetensors"]  # root, then a/


def test_inspect_flags_a_weight_alive_under_its_mask(pruned_cnn, tmp_path):
    loaded = artifacts.load_model(pruned_cnn / "round-1" / "model.safetensors")
    state = loaded.model.state_dict()
    name, m = next(iter(loaded.mask.items()))
    state[name][m == 0] = 1.0
    meta = dict(loaded.meta)
    tensorfile.save_tensors(tmp_path / "model.safetensors", state, meta)
    (tmp_path / "mask.safetensors").write_bytes((pruned_cnn / "round-1" / "mask.safetensors").read_bytes())
    result = smu("inspect", tmp_path / "model.safetensors", "--json")
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert not out["intact"] and f"{name} has non-zero weights where the mask is 0" in out["problems"]
