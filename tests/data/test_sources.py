"""The dataset readers: shapes, splits, file formats and the errors a user sees when data is missing."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from smu.core.errors import DataError, UnknownNameError
from smu.data import sources
from smu.data.idx import read_idx
from smu.data.sources import SOURCES, RawData, default_data_dir, read_source

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def write_idx(path: Path, array: np.ndarray, *, magic_type: int = 0x08) -> Path:
    """Write ``array`` (uint8) as an IDX file, gzip-compressed when the name ends in .gz."""
    header = bytes([0, 0, magic_type, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def write_mnist_files(folder: Path, *, train: int = 6, test: int = 4, gz: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", train), ("t10k", test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 28, 28)))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", np.arange(n) % 10)


def write_png(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (16, 16)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


@pytest.fixture
def offline(monkeypatch):
    """Make every torchvision download fail at once, as on a machine without network."""

    def fail(*args, **kwargs):
        raise OSError("no route to host")

    monkeypatch.setattr(sources, "_download", fail)


def assert_well_formed(raw: RawData) -> None:
    for x, y in ((raw.train_x, raw.train_y), (raw.test_x, raw.test_y)):
        assert x.dtype == torch.uint8 and x.dim() == 4 and x.is_contiguous() and x.device.type == "cpu"
        assert y.dtype == torch.int64 and y.shape == (len(x),)
        assert int(y.min()) >= 0 and int(y.max()) < len(raw.classes)
    assert len(raw.mean) == len(raw.std) == raw.train_x.shape[1]


def test_sources_are_exactly_the_documented_datasets_each_with_a_one_line_summary():
    assert set(SOURCES) == {
        *("digits", "fashion-mnist", "mnist", "cifar10", "cifar100", "cifar20", "svhn", "imagefolder")
    }
    for source in SOURCES.values():
        assert source.summary and "\n" not in source.summary


def test_default_data_dir_follows_smu_data_and_falls_back_to_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("SMU_DATA", str(tmp_path))
    assert default_data_dir() == tmp_path
    monkeypatch.delenv("SMU_DATA")
    assert default_data_dir() == Path.home() / ".cache" / "smu" / "data"


def test_digits_has_1437_train_and_360_test_images_of_ten_classes():
    raw = read_source("digits")
    assert_well_formed(raw)
    assert raw.train_x.shape == (1437, 1, 8, 8) and raw.test_x.shape == (360, 1, 8, 8)
    assert raw.classes == [str(d) for d in range(10)]
    assert (raw.crop_pad, raw.flip) == (0, False)
    assert int(raw.train_x.max()) == 255 and int(raw.train_x.min()) == 0


def test_digits_split_is_stratified_so_every_class_is_in_both_splits():
    raw = read_source("digits")
    train_counts = torch.bincount(raw.train_y, minlength=10)
    test_counts = torch.bincount(raw.test_y, minlength=10)
    assert (test_counts > 0).all() and (train_counts > 0).all()
    # Stratified: each class's test share is 20% up to rounding.
    share = test_counts.double() / (train_counts + test_counts).double()
    assert torch.allclose(share, torch.full_like(share, 0.2), atol=0.01)


def test_digits_split_and_statistics_are_the_same_on_every_call():
    first, second = read_source("digits"), read_source("digits")
    assert torch.equal(first.train_x, second.train_x) and torch.equal(first.test_y, second.test_y)
    assert first.mean == second.mean and first.std == second.std
    expected = (first.train_x.double() / 255).mean().item()
    assert first.mean[0] == pytest.approx(expected)


@pytest.mark.parametrize("name", ["labels.idx", "labels.idx.gz"])
def test_idx_reader_reads_raw_and_gzip_files_alike(tmp_path, name):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    tensor = read_idx(write_idx(tmp_path / name, array))
    assert tensor.dtype == torch.uint8 and torch.equal(tensor, torch.from_numpy(array))


def test_idx_reader_reads_big_endian_int32_as_native_integers(tmp_path):
    path = tmp_path / "ints.idx"
    path.write_bytes(bytes([0, 0, 0x0C, 1]) + struct.pack(">I", 3) + struct.pack(">3i", -1, 2, 70000))
    assert read_idx(path).tolist() == [-1, 2, 70000]


def test_idx_file_with_a_bad_magic_number_is_a_data_error_naming_the_file(tmp_path):
    path = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((1, 2, 2)), magic_type=0x42)
    with pytest.raises(DataError, match="train-images-idx3-ubyte") as caught:
        read_idx(path)
    assert "magic number" in caught.value.message and caught.value.hint


def test_truncated_idx_file_is_a_data_error_naming_the_file(tmp_path):
    path = write_idx(tmp_path / "cut.idx", np.zeros((4, 2, 2)))
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DataError, match="cut.idx"):
        read_idx(path)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_reads_idx_files_in_torchvisions_raw_folder(tmp_path, gz):
    write_mnist_files(tmp_path / "MNIST" / "raw", gz=gz)
    raw = read_source("mnist", tmp_path)
    assert_well_formed(raw)
    assert raw.train_x.shape == (6, 1, 28, 28) and raw.test_x.shape == (4, 1, 28, 28)
    assert raw.train_y.tolist() == [0, 1, 2, 3, 4, 5] and (raw.mean, raw.flip) == ((0.1307,), False)


def test_missing_mnist_files_say_where_we_looked_and_how_to_get_them(tmp_path, offline):
    with pytest.raises(DataError) as caught:
        read_source("mnist", tmp_path)
    assert str(tmp_path / "MNIST" / "raw") in caught.value.message
    assert "no route to host" in caught.value.message and "--data" in caught.value.hint


@pytest.mark.skipif(
    not DEBIAN_FASHION_MNIST.is_dir(),
    reason="Debian's dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)",
)
def test_fashion_mnist_loads_from_the_debian_package(tmp_path):
    raw = read_source("fashion-mnist", tmp_path)  # an empty --data falls through to the Debian path
    assert_well_formed(raw)
    assert raw.train_x.shape == (60000, 1, 28, 28) and raw.test_x.shape == (10000, 1, 28, 28)
    assert len(raw.classes) == 10 and raw.classes[9] == "Ankle boot"
    assert torch.bincount(raw.test_y).tolist() == [1000] * 10
    assert (raw.crop_pad, raw.flip) == (2, True)
    # The published constant matches the data, which shows the bytes were read correctly.
    assert (raw.train_x.double() / 255).mean().item() == pytest.approx(raw.mean[0], abs=1e-3)


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "svhn"])
def test_torchvision_dataset_offline_is_a_data_error_naming_the_directory_and_a_fix(tmp_path, offline, name):
    with pytest.raises(DataError) as caught:
        read_source(name, tmp_path)
    assert str(tmp_path) in caught.value.message and "no route to host" in caught.value.message
    assert "network access" in caught.value.hint and "--data DIR" in caught.value.hint


def test_cifar10_hint_names_the_folder_to_place_under_data(tmp_path, offline):
    with pytest.raises(DataError, match="cifar10") as caught:
        read_source("cifar10", tmp_path)
    assert "cifar-10-batches-py/" in caught.value.hint


def test_imagefolder_reads_class_folders_in_train_and_val(tmp_path):
    for split, count in (("train", 3), ("val", 2)):
        for name, color in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
            for i in range(count):
                write_png(tmp_path / split / name / f"{i}.png", color)
    raw = read_source("imagefolder", tmp_path)
    assert_well_formed(raw)
    assert raw.classes == ["cat", "dog"] and raw.train_x.shape == (6, 3, 16, 16) and len(raw.test_x) == 4
    assert raw.train_y.tolist() == [0, 0, 0, 1, 1, 1]
    # Every cat is pure red and every dog pure blue, so labels and pixels line up.
    assert (raw.test_x[raw.test_y == 0][:, 0] == 255).all()
    assert (raw.test_x[raw.test_y == 1][:, 2] == 255).all()
    assert (raw.crop_pad, raw.flip) == (2, True)
    assert raw.mean == pytest.approx((0.5, 0.0, 0.5))


def test_imagefolder_reads_tinyimagenets_val_annotations_layout(tmp_path):
    for wnid in ("n01", "n02"):
        write_png(tmp_path / "train" / wnid / "images" / f"{wnid}_0.JPEG", (10, 20, 30))
    (tmp_path / "train" / "n01" / "n01_boxes.txt").write_text("not an image\n")
    write_png(tmp_path / "val" / "images" / "val_0.JPEG", (1, 2, 3))
    write_png(tmp_path / "val" / "images" / "val_1.JPEG", (1, 2, 3))
    annotations = "val_0.JPEG\tn02\t0\t0\t8\t8\nval_1.JPEG\tn01\t0\t0\t8\t8\n"  # TinyImageNet adds a box
    (tmp_path / "val" / "val_annotations.txt").write_text(annotations)
    raw = read_source("imagefolder", tmp_path)
    assert raw.classes == ["n01", "n02"] and raw.train_y.tolist() == [0, 1] and raw.test_y.tolist() == [1, 0]


def test_imagefolder_resizes_every_image_to_the_first_training_images_size(tmp_path):
    write_png(tmp_path / "train" / "a" / "0.png", (0, 0, 0), size=(8, 8))
    write_png(tmp_path / "train" / "a" / "1.png", (0, 0, 0), size=(20, 12))
    Image.new("L", (5, 5), 128).save(tmp_path / "train" / "a" / "2.png")  # greyscale becomes RGB
    write_png(tmp_path / "val" / "a" / "0.png", (0, 0, 0), size=(3, 30))
    raw = read_source("imagefolder", tmp_path)
    assert raw.train_x.shape == (3, 3, 8, 8) and raw.test_x.shape == (1, 3, 8, 8)
    assert (raw.train_x[2] == 128).all()


def test_imagefolder_val_class_missing_from_train_is_a_data_error(tmp_path):
    write_png(tmp_path / "train" / "cat" / "0.png", (0, 0, 0))
    write_png(tmp_path / "val" / "zebra" / "0.png", (0, 0, 0))
    with pytest.raises(DataError, match="'zebra'") as caught:
        read_source("imagefolder", tmp_path)
    assert "train/<class>/" in caught.value.hint


@pytest.mark.parametrize("missing", ["train", "val"])
def test_imagefolder_without_train_or_val_is_a_data_error_showing_the_layout(tmp_path, missing):
    other = "val" if missing == "train" else "train"
    write_png(tmp_path / other / "cat" / "0.png", (0, 0, 0))
    with pytest.raises(DataError, match=f"no {missing}/ folder") as caught:
        read_source("imagefolder", tmp_path)
    assert "val_annotations.txt" in caught.value.hint


def test_imagefolder_class_without_images_is_a_data_error(tmp_path):
    write_png(tmp_path / "train" / "cat" / "0.png", (0, 0, 0))
    (tmp_path / "train" / "empty").mkdir()
    write_png(tmp_path / "val" / "cat" / "0.png", (0, 0, 0))
    with pytest.raises(DataError, match="empty"):
        read_source("imagefolder", tmp_path)


def test_imagefolder_unreadable_image_is_a_data_error_naming_the_file(tmp_path):
    write_png(tmp_path / "train" / "cat" / "0.png", (0, 0, 0))
    (tmp_path / "train" / "cat" / "1.png").write_bytes(b"not a png")
    write_png(tmp_path / "val" / "cat" / "0.png", (0, 0, 0))
    with pytest.raises(DataError, match="1.png"):
        read_source("imagefolder", tmp_path)


def test_an_unreadable_first_image_is_a_data_error_too(tmp_path):
    (tmp_path / "train" / "cat").mkdir(parents=True)
    (tmp_path / "train" / "cat" / "0.png").write_bytes(b"not a png")  # its header gives every image's size
    write_png(tmp_path / "val" / "cat" / "0.png", (0, 0, 0))
    with pytest.raises(DataError, match="0.png"):
        read_source("imagefolder", tmp_path)


def test_unknown_dataset_name_suggests_the_closest_one():
    with pytest.raises(UnknownNameError, match="fashion_mnist") as caught:
        read_source("fashion_mnist")
    assert "did you mean 'fashion-mnist'?" in caught.value.hint


def test_data_dir_that_is_a_file_is_a_data_error(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("")
    with pytest.raises(DataError, match="data.txt"):
        read_source("mnist", path)
