"""Image folders larger than the memory limit: decoded once into a cache file, memory-mapped, read lazily.

Every mapped path is checked against the in-memory one it replaces: the same pixels, statistics,
batches and, end to end, the same model files byte for byte.
"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import smu
from PIL import Image

import smu.data as data_module
from smu.core.errors import DataError, UsageError
from smu.data import ImageSet, cache, imagefolder, load_splits
from smu.data.batches import Augment, batches
from smu.data.forget import resolve_forget
from smu.data.poison import Trigger, poison, triggered_test
from smu.data.sources import read_source
from smu.execution.engine import predict
from smu.models import build_model

COLOURS = ((200, 40, 40), (40, 200, 40), (40, 40, 200))


def write_tree(root: Path, size: int = 32, train: int = 6, val: int = 2) -> Path:
    """3 classes of noisy PNGs, each class around its own colour (so a model can learn them)."""
    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("val", val)):
        for label, colour in enumerate(COLOURS):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = np.clip(rng.normal(colour, 40, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


@pytest.fixture
def tree(tmp_path):
    return write_tree(tmp_path / "tree")


@pytest.fixture(autouse=True)
def own_cache_home(monkeypatch, tmp_path):
    """No test writes to the real ~/.cache, and every load reads the tree again."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home-cache"))
    monkeypatch.delenv(cache.ENV, raising=False)
    data_module._read_cached.cache_clear()
    yield
    data_module._read_cached.cache_clear()


@pytest.fixture
def decodes(monkeypatch):
    """A list that grows by one path per image decoded."""
    seen: list[Path] = []
    decode = imagefolder._decode

    def counting(path, size):
        seen.append(path)
        return decode(path, size)

    monkeypatch.setattr(imagefolder, "_decode", counting)
    return seen


def mapped_read(tree: Path, monkeypatch):
    monkeypatch.setenv(cache.ENV, "0")
    return read_source("imagefolder", tree)


def cache_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*") if p.is_file()) if folder.is_dir() else []


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "text, size",
    [("0", 0), ("100", 100), ("512MB", 512 << 20), ("4GB", 4 << 30), ("4g", 4 << 30), ("1.5 GiB", 3 << 29)],
)
def test_memory_sizes_read_like_people_write_them(text, size):
    assert cache.parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "-1GB", "4 PB", "GB"])
def test_a_bad_smu_data_memory_is_a_usage_error_with_an_example(monkeypatch, text):
    monkeypatch.setenv(cache.ENV, text)
    with pytest.raises(UsageError, match="SMU_DATA_MEMORY") as caught:
        cache.memory_limit()
    assert "SMU_DATA_MEMORY=4GB" in caught.value.hint


def test_the_default_limit_is_a_quarter_of_the_available_memory(monkeypatch):
    monkeypatch.setattr(cache, "available_memory", lambda: 8 << 30)
    assert cache.memory_limit() == 2 << 30
    monkeypatch.setenv(cache.ENV, "1GB")
    assert cache.memory_limit() == 1 << 30


def test_the_real_available_memory_is_a_plausible_number():
    assert 1 << 20 < cache.available_memory() < 1 << 50


def test_a_tree_under_the_limit_is_held_in_memory_and_writes_no_cache(tree):
    raw = read_source("imagefolder", tree)
    assert not raw.mapped and raw.train_x.shape == (18, 3, 32, 32)
    assert not (tree / ".smu-cache").exists()


def test_a_tree_over_the_limit_is_mapped_with_the_same_pixels_labels_and_statistics(tree, monkeypatch):
    held = read_source("imagefolder", tree)
    mapped = mapped_read(tree, monkeypatch)
    assert mapped.mapped and len(cache_files(tree / ".smu-cache")) == 2  # the data and its sidecar
    for name in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(held, name), getattr(mapped, name)), name
    assert mapped.train_x.is_contiguous() and mapped.test_x.is_contiguous()
    assert (held.mean, held.std, held.classes, held.crop_pad) == (
        mapped.mean,
        mapped.std,
        mapped.classes,
        mapped.crop_pad,
    )


def test_the_cache_is_decoded_once_and_reused(tree, monkeypatch, decodes):
    mapped_read(tree, monkeypatch)
    assert len(decodes) == 24
    (data,) = (tree / ".smu-cache").glob("*.u8")
    stamp = data.stat().st_mtime_ns
    again = mapped_read(tree, monkeypatch)
    assert len(decodes) == 24 and data.stat().st_mtime_ns == stamp
    assert again.mapped and again.mean == read_source("imagefolder", tree).mean


def test_the_same_tree_named_from_another_folder_finds_its_cache(tree, monkeypatch, decodes):
    mapped_read(tree, monkeypatch)
    monkeypatch.chdir(tree / "train")
    raw = mapped_read(Path("..") / ".." / tree.name, monkeypatch)
    assert raw.mapped and len(decodes) == 24


def test_a_changed_tree_is_decoded_again_and_its_old_cache_removed(tree, monkeypatch, decodes):
    mapped_read(tree, monkeypatch)
    (old,) = (tree / ".smu-cache").glob("*.u8")
    Image.new("RGB", (32, 32), (0, 0, 0)).save(tree / "train" / "class0" / "0.png")  # new pixels, same name
    raw = mapped_read(tree, monkeypatch)
    assert len(decodes) == 48 and (raw.train_x[0] == 0).all()
    assert not old.exists() and len(cache_files(tree / ".smu-cache")) == 2


def test_a_truncated_cache_is_decoded_again_not_trusted(tree, monkeypatch, decodes):
    expected = mapped_read(tree, monkeypatch).train_x.clone()
    (data,) = (tree / ".smu-cache").glob("*.u8")
    with open(data, "r+b") as f:
        f.truncate(1000)
    raw = mapped_read(tree, monkeypatch)
    assert len(decodes) == 48 and torch.equal(raw.train_x, expected)
    assert data.stat().st_size == 24 * 3 * 32 * 32


def test_a_decode_killed_before_its_sidecar_was_written_is_not_trusted(tree, monkeypatch, decodes):
    mapped_read(tree, monkeypatch)
    (sidecar,) = (tree / ".smu-cache").glob("*.json")
    sidecar.unlink()
    # ... and a temporary file a killed process left behind is cleared away.
    abandoned = tree / ".smu-cache" / f".{sidecar.stem}.{os.uname().nodename}.999999999.tmp"
    abandoned.write_bytes(b"half")
    mapped_read(tree, monkeypatch)
    assert len(decodes) == 48 and not abandoned.exists() and sidecar.exists()


def test_an_unwritable_cache_beside_the_data_falls_back_to_the_users_cache(tree, monkeypatch, tmp_path):
    (tree / ".smu-cache").write_text("a file where the folder would go")
    raw = mapped_read(tree, monkeypatch)
    assert raw.mapped and len(cache_files(tmp_path / "home-cache" / "smu" / "imagefolder")) == 2


def test_no_writable_cache_folder_is_one_data_error_naming_both(tree, monkeypatch, tmp_path):
    (tree / ".smu-cache").write_text("in the way")
    (tmp_path / "home-cache").write_text("in the way too")
    with pytest.raises(DataError, match="cannot write the decoded-image cache") as caught:
        mapped_read(tree, monkeypatch)
    message = str(caught.value)
    assert ".smu-cache" in message and "home-cache" in message and "\n" not in message
    assert "SMU_DATA_MEMORY" in caught.value.hint


def test_a_full_disk_is_one_data_error_and_leaves_no_half_file(tree, monkeypatch):
    def full(folder, nbytes):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(cache, "_check_space", full)
    with pytest.raises(DataError, match="no space left") as caught:
        mapped_read(tree, monkeypatch)
    assert "SMU_DATA_MEMORY" in caught.value.hint and "\n" not in str(caught.value)
    assert cache_files(tree / ".smu-cache") == []


def test_a_disk_that_fills_up_while_writing_is_one_data_error(tree, monkeypatch):
    written = []

    def write(self, data):
        written.append(len(data))
        if len(written) > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(imagefolder, "_write_rows", lambda f, arrays: [write(f, a) for a in arrays])
    with pytest.raises(DataError, match="no space left"):
        mapped_read(tree, monkeypatch)
    assert cache_files(tree / ".smu-cache") == []


def test_a_broken_image_stops_the_decode_with_its_name_and_no_cache(tree, monkeypatch):
    (tree / "train" / "class1" / "3.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="3.png"):
        mapped_read(tree, monkeypatch)
    assert cache_files(tree / ".smu-cache") == []


def test_writing_into_a_mapped_tensor_never_reaches_the_cache_file(tree, monkeypatch):
    raw = mapped_read(tree, monkeypatch)
    (data,) = (tree / ".smu-cache").glob("*.u8")
    before = sha(data)
    raw.train_x[:5] = 0
    del raw
    data_module._read_cached.cache_clear()
    assert sha(data) == before and (mapped_read(tree, monkeypatch).train_x[:5] != 0).any()


# ImageSet: a lazy set against the in-memory one it stands for.


def pair(n: int = 40) -> tuple[ImageSet, ImageSet]:
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 5, (n,), generator=gen)
    return ImageSet(x, y), ImageSet.mapped(x, y, "cpu")


def same(a: ImageSet, b: ImageSet) -> bool:
    return len(a) == len(b) and torch.equal(a.x, b.x) and torch.equal(a.y, b.y)


def test_a_lazy_set_reads_the_same_images_as_the_set_in_memory():
    held, lazy = pair()
    assert lazy.lazy and not held.lazy and same(held, lazy)
    idx = torch.tensor([7, 3, 3, 39])
    assert torch.equal(lazy.take(idx), held.take(idx)) and torch.equal(lazy.take(slice(5, 9)), held.x[5:9])
    pick = torch.tensor([30, 2, 11, 12, 0])
    assert lazy.subset(pick).lazy and same(held.subset(pick), lazy.subset(pick))
    assert same(
        held.subset(pick).subset(torch.tensor([4, 1])), lazy.subset(pick).subset(torch.tensor([4, 1]))
    )
    assert same(held.subset(slice(0, 7)), lazy.subset(slice(0, 7)))
    assert same(held.to("cpu"), lazy.to("cpu")) and lazy.to("cpu").lazy


def test_joins_and_relabellings_of_lazy_sets_stay_lazy_and_equal():
    held, lazy = pair()
    a, b = torch.tensor([1, 5, 9]), torch.tensor([0, 2, 30, 31])
    joined = ImageSet.join([lazy.subset(a), lazy.subset(b)])
    assert joined.lazy and same(joined, ImageSet.join([held.subset(a), held.subset(b)]))
    minus = torch.full((3,), -1)
    assert lazy.subset(a).with_labels(minus).lazy and same(
        held.subset(a).with_labels(minus), lazy.subset(a).with_labels(minus)
    )


def test_shuffled_augmented_batches_of_a_lazy_set_are_those_of_the_set_in_memory():
    held, lazy = pair(45)
    aug = Augment(crop_pad=2, flip=True)
    streams = [
        list(batches(s, 16, shuffle=True, gen=torch.Generator().manual_seed(3), aug=aug))
        for s in (held, lazy)
    ]
    assert len(streams[0]) == 3
    for (x1, y1), (x2, y2) in zip(*streams, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_a_lazy_set_stamps_a_trigger_as_rows_are_read_and_never_writes_its_images():
    held, lazy = pair()
    pristine = lazy._images.clone()
    trigger = Trigger(size=3, value=255, target=1)
    idx = torch.tensor([2, 5, 17])
    stamped_held, stamped_lazy = held.stamped(idx, trigger.apply), lazy.stamped(idx, trigger.apply)
    assert same(stamped_held, stamped_lazy) and torch.equal(lazy._images, pristine)
    pick = torch.tensor([17, 0, 5])
    assert same(stamped_held.subset(pick), stamped_lazy.subset(pick))
    joined = ImageSet.join([stamped_lazy.subset(pick), stamped_lazy.subset(torch.tensor([2, 3]))])
    assert joined.lazy and torch.equal(joined.x, torch.cat([stamped_held.x[pick], stamped_held.x[[2, 3]]]))
    assert same(held.stamped(None, trigger.apply), lazy.stamped(None, trigger.apply))


def test_splits_of_a_mapped_tree_are_lazy_and_equal_to_those_in_memory(tree, monkeypatch):
    held = load_splits("imagefolder", data_dir=tree, val_fraction=0.2)
    monkeypatch.setenv(cache.ENV, "1KB")
    mapped = load_splits("imagefolder", data_dir=tree, val_fraction=0.2)
    for name in ("train", "val", "test"):
        a, b = getattr(held, name), getattr(mapped, name)
        assert b.lazy and not a.lazy and same(a, b), name
    assert held.info == mapped.info


def on_file(images: ImageSet) -> str | None:
    """What a set's images lie in, by /proc/self/maps: a file's path, '[heap]', or None (anonymous)."""
    address = images._images.data_ptr()
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        low, high = (int(a, 16) for a in fields[0].split("-"))
        if low <= address < high:
            return fields[5].strip() if len(fields) > 5 else None
    return None


def test_no_set_made_from_a_mapped_tree_copies_its_images_into_memory(tree, monkeypatch):
    monkeypatch.setenv(cache.ENV, "0")
    splits = load_splits("imagefolder", data_dir=tree, val_fraction=0.2)
    forget = resolve_forget("class:1", splits)
    poisoned, _ = poison(splits, "10%", Trigger(size=2, target=0))
    sets = [splits.train, splits.val, splits.test, forget.forget(splits), forget.retain(splits)]
    sets += [ImageSet.join([sets[3], sets[4]]), poisoned.train, triggered_test(splits.test, Trigger(2))]
    (data,) = (tree / ".smu-cache").glob("*.u8")
    assert all(s.lazy and on_file(s) == str(data) for s in sets)
    monkeypatch.delenv(cache.ENV)
    assert on_file(load_splits("imagefolder", data_dir=tree).train) != str(data)  # under the limit: in memory


def test_poisoning_a_mapped_tree_leaves_its_cache_file_as_it_was(tree, monkeypatch):
    held = load_splits("imagefolder", data_dir=tree)
    monkeypatch.setenv(cache.ENV, "0")
    mapped = load_splits("imagefolder", data_dir=tree)
    (data,) = (tree / ".smu-cache").glob("*.u8")
    before = sha(data)
    trigger = Trigger(size=4, value=0, target=2)
    (p_held, f_held), (p_mapped, f_mapped) = (poison(s, "25%", trigger, seed=1) for s in (held, mapped))
    assert torch.equal(f_held.indices, f_mapped.indices) and p_mapped.train.lazy
    assert same(p_held.train, p_mapped.train) and not same(held.train, p_mapped.train)
    assert same(triggered_test(held.test, trigger), triggered_test(mapped.test, trigger))
    assert same(f_held.forget(p_held), f_mapped.forget(p_mapped))
    del p_mapped, mapped
    assert sha(data) == before


# End to end: smu prune, unlearn and eval on a 224x224 tree, held in memory and mapped.


def pipeline(tree: Path) -> list[bytes]:
    """prune -> unlearn -> eval in the current folder; eval's JSON and the bytes of every file written."""
    common = ["--seed", "0", "-q"]
    result = smu(
        "prune", "--dataset", "imagefolder", "--data", tree, "--arch", "cnn", "--method", "random",
        "--rate", "0.5", "--epochs", "1", "--batch-size", "16", "--out", "pruned", *common,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (model,) = (line for line in result.stdout.split() if line.endswith("model.safetensors"))
    data_module._read_cached.cache_clear()  # as each command in a fresh process: read the tree again
    result = smu(
        "unlearn", "--model", model, "--forget", "class:0", "--method", "ft",
        "--epochs", "1", "--batch-size", "16", "--data", tree, "--out", "unlearned", *common,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data_module._read_cached.cache_clear()
    (model,) = (line for line in result.stdout.split() if line.endswith("model.safetensors"))
    result = smu("eval", "--model", model, "--forget", "class:0", "--data", tree, "--json")
    assert result.exit_code == 0, result.output
    return [result.stdout.encode()] + [p.read_bytes() for p in sorted(Path(".").rglob("*.safetensors"))]


def test_a_224_pixel_tree_mapped_gives_the_batches_and_predictions_it_gives_in_memory(tmp_path, monkeypatch):
    tree = write_tree(tmp_path / "tree", size=224)
    held = load_splits("imagefolder", data_dir=tree)
    monkeypatch.setenv(cache.ENV, "1MB")  # the tree decodes to 3.6 MB
    mapped = load_splits("imagefolder", data_dir=tree)
    assert mapped.train.lazy and held.info == mapped.info
    aug = Augment(mapped.info.crop_pad, mapped.info.flip)
    streams = [
        list(batches(s.train, 8, shuffle=True, gen=torch.Generator().manual_seed(0), aug=aug))
        for s in (held, mapped)
    ]
    for (x1, y1), (x2, y2) in zip(*streams, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    torch.manual_seed(0)
    model = build_model(
        "cnn", in_channels=3, image_size=224, num_classes=3, mean=held.info.mean, std=held.info.std
    )
    assert torch.equal(predict(model, held.test, 4), predict(model, mapped.test, 4))


@pytest.mark.slow
def test_prune_unlearn_and_eval_of_a_224_pixel_tree_give_the_same_bytes_in_memory_and_mapped(
    tmp_path, monkeypatch, decodes
):
    tree = write_tree(tmp_path / "tree", size=224, train=4, val=2)
    (tmp_path / "held").mkdir()
    monkeypatch.chdir(tmp_path / "held")
    held = pipeline(tree)
    assert not (tree / ".smu-cache").exists() and len(decodes) == 3 * 18  # each command decoded it
    monkeypatch.setenv(cache.ENV, "1KB")
    (tmp_path / "mapped").mkdir()
    monkeypatch.chdir(tmp_path / "mapped")
    mapped = pipeline(tree)
    assert len(decodes) == 4 * 18  # decoded once into the cache; unlearn and eval mapped it
    assert len(cache_files(tree / ".smu-cache")) == 2
    assert len(held) == 6 and held == mapped  # eval's JSON; prune's model and mask; unlearn's 3
