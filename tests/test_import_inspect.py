import json
import os
import pickle

import pytest
import torch
from torch.nn.utils import prune as torch_prune
from typer.testing import CliRunner

from smu import artifacts
from smu.cli import app
from smu.models import build_model

runner = CliRunner()


def smu(*args):
    return runner.invoke(app, [str(a) for a in args])


def research_checkpoint(path, arch="resnet20", prune_amount=0.6, wrap=True, data_parallel=True):
    """A checkpoint laid out like the original code's: pruning pairs, a normalize module, extra keys."""
    torch.manual_seed(1)
    model = build_model(
        arch, in_channels=3, image_size=32, num_classes=10, mean=[0.49, 0.48, 0.45], std=[0.25, 0.24, 0.26]
    )
    net = model.net
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch_prune.l1_unstructured(m, "weight", amount=prune_amount)
    state = {f"normalize.{k}": v for k, v in model.normalize.state_dict().items()}
    state |= net.state_dict()
    if data_parallel:
        state = {f"module.{k}": v for k, v in state.items()}
    torch.save({"state_dict": state, "epoch": 182, "best_sa": 93.1} if wrap else state, path)
    return model


def test_a_pruned_research_checkpoint_imports_to_the_same_function_and_mask(tmp_path):
    original = research_checkpoint(tmp_path / "0model_SA_best.pth.tar")
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
    assert out["sparsity"] == pytest.approx(0.6, abs=0.01) and out["num_classes"] == 10
    loaded = artifacts.load_model(out["model"])
    x = torch.rand(4, 3, 32, 32)
    original.eval()
    with torch.no_grad():
        assert torch.allclose(loaded.model.eval()(x), original(x), atol=1e-5)
    assert loaded.mask is not None and loaded.mask.sparsity() == pytest.approx(out["sparsity"])
    assert loaded.meta["smu.imported_from"] == "0model_SA_best.pth.tar"


def test_a_plain_state_dict_of_the_papers_resnet18_imports(tmp_path):
    research_checkpoint(
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
    assert result.stdout.split() == [
        str(tmp_path / "out" / "model.safetensors"),
        str(tmp_path / "out" / "mask.safetensors"),
    ]


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
    assert out["intact"] and out["kind"] == "model" and out["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert out["metadata"]["smu.arch"] == "cnn" and len(out["per_layer"]) == 3
    assert [p["path"] for p in out["provenance"]] == [str(pruned_cnn / "dense" / "model.safetensors")]
    table = smu("inspect", pruned_cnn / "round-1" / "mask.safetensors")
    assert table.exit_code == 0 and "Per-layer sparsity" in table.stdout


def test_inspect_flags_a_weight_alive_under_its_mask(pruned_cnn, tmp_path):
    loaded = artifacts.load_model(pruned_cnn / "round-1" / "model.safetensors")
    state = loaded.model.state_dict()
    name, m = next(iter(loaded.mask.items()))
    state[name][m == 0] = 1.0
    meta = dict(loaded.meta)
    artifacts.save_tensors(tmp_path / "model.safetensors", state, meta)
    (tmp_path / "mask.safetensors").write_bytes((pruned_cnn / "round-1" / "mask.safetensors").read_bytes())
    result = smu("inspect", tmp_path / "model.safetensors", "--json")
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert not out["intact"] and f"{name} has non-zero weights where the mask is 0" in out["problems"]
