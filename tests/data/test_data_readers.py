"""Readers of every prepared layout and of the generic folder format, on tiny generated data."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fgaseg.data import build_dataset
from fgaseg.data.benchmarks import BENCHMARKS
from fgaseg.errors import DatasetError

H, W = 6, 8


def write_pair(image_dir, label_dir, stem, label, label_ext):
    image_dir.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(0).integers(0, 255, (*label.shape, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(image_dir / f"{stem}.jpg")
    Image.fromarray(label).save(label_dir / f"{stem}{label_ext}",
                                "TIFF" if label_ext == ".tif" else "PNG")


def make_layout(root, name, split, label):
    spec = BENCHMARKS[name]
    image_dir, label_dir = spec.splits[split]
    base = root / spec.top
    write_pair(base / image_dir, base / label_dir, "img_001", label, spec.label_ext)
    # an image without a label map is not part of the set
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(base / image_dir / "img_002.jpg")


# (name, stored values, expected values after reading)
CASES = [
    ("coco171", np.array([0, 170, 255, 3], np.uint8), [0, 170, 255, 3]),
    ("ade150", np.array([0, 149, 255, 7], np.uint8), [0, 149, 255, 7]),
    ("ade847", np.array([0, 846, 65535, 300], np.uint16), [0, 846, 65535, 300]),
    ("pc59", np.array([0, 58, 255, 10], np.uint8), [0, 58, 255, 10]),
    ("pc459", np.array([0, 458, 459, 65535], np.uint16), [0, 458, 65535, 65535]),
    ("voc20", np.array([0, 19, 255, 5], np.uint8), [0, 19, 255, 5]),
    ("voc20b", np.array([0, 20, 255, 19], np.uint8), [0, 20, 255, 19]),
]


@pytest.mark.parametrize("name,stored,expected", CASES)
def test_benchmark_layouts(tmp_path, name, stored, expected):
    label = np.resize(stored, (H, W)).astype(stored.dtype)
    split = BENCHMARKS[name].default_split
    make_layout(tmp_path, name, split, label)
    dataset = build_dataset(name, tmp_path)
    assert len(dataset) == 1
    image, target = dataset[0]
    assert image.shape == (3, H, W) and image.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert target.dtype == torch.int64 and target.shape == (H, W)
    assert target.flatten()[:4].tolist() == expected
    assert dataset.ignore_index == (255 if dataset.num_classes <= 255 else 65535)
    # the root may also be the dataset folder itself
    if "/" not in BENCHMARKS[name].top:
        assert len(build_dataset(name, tmp_path / BENCHMARKS[name].top)) == 1


def test_voc20b_scoring():
    """59 prompts, 21 metric classes; predictions of the 39 extra names count as background."""
    spec = BENCHMARKS["voc20b"]
    assert spec.num_classes == 21 and spec.background_id == 20


def test_voc20b_dataset_attributes(tmp_path):
    make_layout(tmp_path, "voc20b", "val", np.zeros((H, W), np.uint8))
    dataset = build_dataset("voc20b", tmp_path)
    assert len(dataset.class_names) == 59 and dataset.num_classes == 21
    assert dataset.metric_class_names[-1] == "background"
    mapped = dataset.map_prediction(torch.tensor([0, 19, 20, 21, 58]))
    assert mapped.tolist() == [0, 19, 20, 20, 20]


def test_folder_format(tmp_path):
    root = tmp_path / "mine"
    for split in ("train", "val"):
        write_pair(root / split / "images", root / split / "masks", "a",
                   np.array([[0, 1, 2, 255]] * 2, np.uint8), ".png")
    (root / "classes.txt").write_text("sky\ntree\nroad\n")
    dataset = build_dataset("folder", root, "train")
    assert dataset.class_names == ["sky", "tree", "road"] and dataset.ignore_index == 255
    image, label = dataset[0]
    assert label[0].tolist() == [0, 1, 2, 255]
    assert build_dataset("folder", root, "val", vocabulary=str(root / "classes.txt"))


def test_folder_errors(tmp_path):
    root = tmp_path / "mine"
    write_pair(root / "images", root / "masks", "a", np.full((2, 2), 7, np.uint8), ".png")
    with pytest.raises(DatasetError, match="classes.txt"):
        build_dataset("folder", root)
    (root / "classes.txt").write_text("a\nb\n")
    dataset = build_dataset("folder", root)
    with pytest.raises(DatasetError, match="class id 7"):
        dataset[0]
    with pytest.raises(DatasetError, match="not found"):
        build_dataset("folder", tmp_path / "missing")
    with pytest.raises(DatasetError, match="unknown dataset"):
        build_dataset("imagenet", tmp_path)
    with pytest.raises(DatasetError, match="not found under"):
        build_dataset("ade150", tmp_path)
    with pytest.raises(DatasetError, match="no split"):
        build_dataset("ade150", tmp_path, split="train")


def test_unreadable_files_name_the_reason_not_only_the_exception_type(tmp_path):
    # issue #16.7: eval said "cannot read image x.png: OSError"
    from fgaseg.data.io import read_image, read_label_array
    from fgaseg.errors import DatasetError

    bad = tmp_path / "x.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    for reader in (read_image, read_label_array):
        with pytest.raises(DatasetError) as info:
            reader(bad)
        message = str(info.value)
        assert message.startswith("cannot read ") and str(bad) in message
        detail = message.split(f"{bad}: ", 1)[1]
        assert " " in detail  # a sentence from the reader, not a bare class name


def test_out_of_range_mask_values_as_docs_datasets_says(tmp_path):
    # issue #16.7: docs/datasets.md said both "ignored" and "an error"; the rule is: ignored in
    # the prepared benchmarks (tested above), an error naming the file in the folder format
    from fgaseg.data.folder import FolderDataset

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    Image.new("RGB", (4, 4)).save(tmp_path / "images" / "a.png")
    mask = np.array([[0, 1, 255, 7]] * 4, np.uint8)
    Image.fromarray(mask).save(tmp_path / "masks" / "a.png")
    with pytest.raises(DatasetError, match="mask a.png holds class id 7 but classes.txt lists 2"):
        FolderDataset(tmp_path)[0]
    text = " ".join((Path(__file__).resolve().parents[2] / "docs" / "datasets.md").read_text().split())
    assert "neither a class id nor 255 is an error naming the mask file" in text
