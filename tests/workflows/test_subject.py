"""open_subject: what every workflow works on, loaded and checked in one place."""

import torch

from smu.workflows.subject import open_subject


def test_a_subject_opens_from_paths_as_from_strings(pruned_cnn, tmp_path):
    model = pruned_cnn / "round-1" / "model.safetensors"
    cpu = torch.device("cpu")
    by_spec = open_subject(str(model), "random:10%", device=cpu, forget_seed=3, reference=str(model))
    by_spec.forget.save(tmp_path / "forget.safetensors")
    by_path = open_subject(model, tmp_path / "forget.safetensors", device=cpu, reference=model)
    assert by_path.forget.sha256 == by_spec.forget.sha256 and len(by_path.forget.indices) > 0
    assert by_path.loaded.sha256 == by_spec.loaded.sha256 == by_path.reference.sha256
    assert by_path.loaded.mask is not None  # the sparse model's own mask, found beside it
    assert torch.equal(by_path.splits.train.y, by_spec.splits.train.y)
