import pytest
import torch
from safetensors import safe_open

from smu.core.errors import ArtifactError, UsageError
from smu.core.masks import Mask
from smu.io import artifacts, files, tensorfile
from smu.models import build_model

META = {
    "smu.arch": "cnn",
    "smu.dataset": "digits",
    "smu.num_classes": 10,
    "smu.input_shape": "1x8x8",
    "smu.seed": 0,
}


def half_mask(model):
    mask = Mask.ones(model, "conv")
    return mask.prune_lowest({n: torch.rand(m.shape) for n, m in mask.items()}, mask.counts()[1] // 2)


def test_a_model_round_trips_with_its_metadata_and_mask(tmp_path, tiny_model):
    mask = half_mask(tiny_model)
    mask.apply(tiny_model)
    sha = artifacts.save_model(tmp_path / "model.safetensors", tiny_model, META, mask=mask)
    loaded = artifacts.load_model(tmp_path / "model.safetensors")
    assert loaded.sha256 == sha and loaded.meta["smu.kind"] == "model" and loaded.arch == "cnn"
    assert loaded.meta["smu.sparsity"] == f"{mask.sparsity():.6f}" and loaded.meta["smu.format"] == "1"
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[k], v), k
    for k, m in mask.items():
        assert torch.equal(loaded.mask.tensors[k], m)
    with safe_open(str(tmp_path / "mask.safetensors"), "pt") as f:
        assert f.metadata()["smu.kind"] == "mask"
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.uint8}  # noqa: SIM118


def test_saving_the_same_model_twice_gives_the_same_bytes(tmp_path, tiny_model):
    a = artifacts.save_model(tmp_path / "a.safetensors", tiny_model, META)
    b = artifacts.save_model(tmp_path / "b.safetensors", tiny_model, META)
    assert a == b


def test_a_mask_passed_as_a_model_and_a_model_as_a_mask_are_refused(tmp_path, tiny_model):
    artifacts.save_model(tmp_path / "model.safetensors", tiny_model, META, mask=half_mask(tiny_model))
    with pytest.raises(ArtifactError, match="is a mask, not a model"):
        artifacts.load_model(tmp_path / "mask.safetensors", option="--from")
    with pytest.raises(ArtifactError, match="is a model, not a mask"):
        artifacts.load_mask(tmp_path / "model.safetensors", tiny_model)


def test_a_mask_from_another_architecture_is_refused_naming_both(tmp_path, tiny_model):
    torch.manual_seed(0)
    other = build_model("resnet20", in_channels=1, image_size=8, num_classes=10, mean=[0.5], std=[0.5])
    artifacts.save_mask(tmp_path / "mask.safetensors", half_mask(other), META | {"smu.arch": "resnet20"})
    with pytest.raises(ArtifactError, match="architecture 'resnet20' but the model is 'cnn'"):
        artifacts.load_mask(tmp_path / "mask.safetensors", tiny_model, META | {"smu.num_classes": "10"})
    with pytest.raises(ArtifactError, match="which the model does not have"):
        artifacts.load_mask(tmp_path / "mask.safetensors", tiny_model)


def test_missing_truncated_and_foreign_files_are_clear_errors(tmp_path, tiny_model):
    with pytest.raises(ArtifactError, match="no such file"):
        artifacts.load_model(tmp_path / "nope.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(ArtifactError, match="not a readable safetensors"):
        artifacts.load_model(tmp_path / "junk.safetensors")
    artifacts.save_model(tmp_path / "model.safetensors", tiny_model, META)
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) - 100])
    with pytest.raises(ArtifactError):
        artifacts.load_model(tmp_path / "cut.safetensors")


def test_a_sparse_model_whose_mask_was_swapped_is_refused(tmp_path, tiny_model):
    artifacts.save_model(tmp_path / "model.safetensors", tiny_model, META, mask=half_mask(tiny_model))
    artifacts.save_mask(tmp_path / "mask.safetensors", half_mask(tiny_model), META)
    with pytest.raises(ArtifactError, match="is not the mask"):
        artifacts.load_model(tmp_path / "model.safetensors")


def test_writes_are_atomic_and_leave_no_temporary_files(tmp_path):
    files.atomic_write(tmp_path / "f.bin", b"abc")
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


WRITE_UNTIL_THE_DISK_REFUSES = """
import resource, signal, sys
from smu.io.files import atomic_write
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
atomic_write(sys.argv[1], b"new" * 100_000)
"""


@pytest.mark.slow
def test_a_write_that_fails_half_way_keeps_the_old_file_and_leaves_no_partial_one(tmp_path):
    """A real failure in the middle of writing (the file-size limit, like a full disk), whatever way the
    bytes are written: the old file must survive whole."""
    import subprocess
    import sys

    target = tmp_path / "model.safetensors"
    target.write_bytes(b"old" * 1000)
    proc = subprocess.run(
        [sys.executable, "-c", WRITE_UNTIL_THE_DISK_REFUSES, str(target)], capture_output=True, text=True
    )
    assert proc.returncode != 0 and "File too large" in proc.stderr, proc.stderr
    assert target.read_bytes() == b"old" * 1000
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_a_serialiser_failure_keeps_the_old_model_and_leaves_no_partial_file(
    tmp_path, tiny_model, monkeypatch
):
    path = tmp_path / "model.safetensors"
    artifacts.save_model(path, tiny_model, META)
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise RuntimeError("serialiser failed")

    monkeypatch.setattr(tensorfile, "st_save", broken)
    with pytest.raises(RuntimeError, match="serialiser failed"):
        artifacts.save_model(path, tiny_model, META | {"smu.seed": 1})
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_a_non_empty_out_folder_needs_force_and_a_failed_run_removes_the_folder_it_made(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep")
    with pytest.raises(UsageError, match="--force"):
        files.prepare_out_dir(tmp_path / "full", force=False)
    assert files.prepare_out_dir(tmp_path / "full", force=True).is_dir()
    with pytest.raises(RuntimeError), files.run_dir(tmp_path / "new", force=False) as out:
        (out / "sub").mkdir()
        raise RuntimeError("boom")
    assert not (tmp_path / "new").exists()
