import json

import pytest
import torch

from smu.core.errors import ArtifactError, UsageError
from smu.data import load_splits
from smu.data.forget import resolve_forget


def test_class_forgetting_takes_every_training_sample_of_that_class_and_nothing_else(digits):
    fs = resolve_forget("class:3", digits)
    labels = digits.train.y
    assert torch.equal(fs.indices, (labels == 3).nonzero().flatten())
    assert fs.forget_class == 3 and len(fs) == int((labels == 3).sum())
    assert set(fs.forget(digits).y.tolist()) == {3} and 3 not in fs.retain(digits).y.tolist()


def test_part_of_a_class_is_drawn_with_the_forget_seed(digits):
    a, b, c = (resolve_forget("class:3:50", digits, seed=s) for s in (0, 0, 1))
    assert len(a) == 50 and set(a.forget(digits).y.tolist()) == {3} and a.forget_class is None
    assert torch.equal(a.indices, b.indices) and not torch.equal(a.indices, c.indices)


def test_random_forgetting_draws_a_count_or_a_percentage_over_all_classes(digits):
    n = len(digits.train)
    tenth = resolve_forget("random:10%", digits)
    assert len(tenth) == round(0.1 * n) and len(set(tenth.forget(digits).y.tolist())) == 10
    assert tenth.forget_class is None
    assert len(resolve_forget("random:200", digits)) == 200
    assert torch.equal(
        resolve_forget("random:200", digits, 4).indices, resolve_forget("random:200", digits, 4).indices
    )


def test_forget_and_retain_partition_the_training_split(digits):
    fs = resolve_forget("random:7%", digits, seed=2)
    both = torch.cat([fs.indices, fs.retain_indices()]).sort().values
    assert torch.equal(both, torch.arange(len(digits.train)))


def test_a_class_name_works_like_its_number(fashion):
    assert fashion.info.classes[7] == "Sneaker"
    by_name, by_number = resolve_forget("class:Sneaker", fashion), resolve_forget("class:7", fashion)
    assert by_name.forget_class == 7 and torch.equal(by_name.indices, by_number.indices)
    assert torch.equal(by_name.indices, (fashion.train.y == 7).nonzero().flatten())


def test_indices_files_take_one_per_line_or_a_json_list(tmp_path, digits):
    (tmp_path / "a.txt").write_text("# my deletion requests\n5\n\n2\n9  # late\n")
    (tmp_path / "b.json").write_text("[9, 2, 5]")
    a = resolve_forget(f"indices:{tmp_path / 'a.txt'}", digits)
    b = resolve_forget(f"indices:{tmp_path / 'b.json'}", digits)
    assert a.indices.tolist() == b.indices.tolist() == [2, 5, 9]


@pytest.mark.parametrize(
    "content, message",
    [
        ("1\n2\n2\n", "appears twice"),
        ("1\nfive\n", "'five' is not a whole number"),
        ("[1, 2.5]", "2.5 is not a whole number"),
        ("[1, true]", "True is not a whole number"),
        ("99999\n", "index 99999 is out of range"),
        ("-1\n", "index -1 is out of range"),
        ("\n# nothing\n", "holds no indices"),
        ("[1, 2", "not a valid JSON list"),
    ],
)
def test_bad_indices_files_are_clear_errors(tmp_path, digits, content, message):
    (tmp_path / "f").write_text(content)
    with pytest.raises(UsageError, match=message):
        resolve_forget(f"indices:{tmp_path / 'f'}", digits)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("class:10", "not a class of digits"),
        ("class:cat", "not a class of digits"),
        ("class:3:100000", "asks for 100000 samples but class 3 has"),
        ("random:0", "asks for 0 samples"),
        ("random:150%", "asks for"),
        ("random:lots", "not a count or a percentage"),
        ("randm:10", "is not a forget-set spec"),
        ("indices:/no/such/file", "does not exist"),
        ("class:", "is not a forget-set spec"),
    ],
)
def test_bad_specs_are_clear_errors(digits, spec, message):
    with pytest.raises(UsageError, match=message):
        resolve_forget(spec, digits)


def test_a_saved_forget_set_loads_back_the_same_samples(tmp_path, digits):
    fs = resolve_forget("random:10%", digits, seed=3)
    fs.save(tmp_path / "forget.safetensors")
    back = resolve_forget(str(tmp_path / "forget.safetensors"), digits)
    assert torch.equal(back.indices, fs.indices) and back.sha256 == fs.sha256 and back.spec == "random:10%"
    cls = resolve_forget("class:4", digits)
    cls.save(tmp_path / "class.safetensors")
    assert resolve_forget(str(tmp_path / "class.safetensors"), digits).forget_class == 4


def test_a_forget_set_made_for_another_dataset_or_split_is_refused(tmp_path, digits):
    resolve_forget("random:10", digits).save(tmp_path / "f.safetensors")
    other_split = load_splits("digits", seed=1)
    with pytest.raises(UsageError, match="split_seed"):
        resolve_forget(str(tmp_path / "f.safetensors"), other_split)


def test_a_forget_set_made_for_another_dataset_is_refused(tmp_path, digits, fashion):
    resolve_forget("random:10", digits).save(tmp_path / "f.safetensors")
    with pytest.raises(UsageError, match="made for dataset 'digits'"):
        resolve_forget(str(tmp_path / "f.safetensors"), fashion)


def test_a_tampered_forget_set_is_refused(tmp_path, digits):
    from smu.io import tensorfile

    fs = resolve_forget("random:10", digits)
    meta = {
        "smu.kind": "forget-set",
        "smu.dataset": "digits",
        "smu.train_size": len(digits.train),
        "smu.val_fraction": 0.1,
        "smu.split_seed": 0,
        "smu.sha256": fs.sha256,
        "smu.spec": "random:10",
    }
    tensorfile.save_tensors(tmp_path / "f.safetensors", {"indices": fs.indices + 1}, meta)
    with pytest.raises(ArtifactError, match="corrupt"):
        resolve_forget(str(tmp_path / "f.safetensors"), digits)


def test_json_list_with_a_nested_value_is_refused(tmp_path, digits):
    (tmp_path / "f.json").write_text(json.dumps([1, [2]]))
    with pytest.raises(UsageError, match="not a whole number"):
        resolve_forget(f"indices:{tmp_path / 'f.json'}", digits)
