"""Conversion scripts on tiny fake "official downloads": outputs, resume, and the readers."""

import json
import pickle

import numpy as np
import pytest
from PIL import Image

from fgaseg.data import build_dataset
from fgaseg.data.io import read_label_array
from fgaseg.data.prepare import (ade20k_150, ade20k_847, coco_stuff, pascal_context_59,
                                 pascal_context_459, rle, toy_shapes, voc)


def save(path, array, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, fmt)


def rgb(h, w):
    return np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_coco_stuff(tmp_path):
    label = np.array([[0, 11, 12, 181], [255, 90, 91, 182]], np.uint8)
    save(tmp_path / "coco-stuff/annotations/val2017/a.png", label)
    save(tmp_path / "coco-stuff/images/val2017/a.jpg", rgb(2, 4))
    assert coco_stuff.main([str(tmp_path), "--splits", "val2017", "--no-progress",
                            "--workers", "2"]) == 0
    out = read_label_array(tmp_path / "coco-stuff/annotations_detectron2/val2017/a.png")
    # id 11 (unused) -> 255; 12 -> 11 (one unused id before it); 181 -> 170; 90 unused
    assert out.tolist() == [[0, 255, 11, 170], [255, 255, 80, 255]]
    assert build_dataset("coco171", tmp_path, "val")[0][1].tolist() == out.tolist()


def test_ade20k_150_and_resume(tmp_path):
    src = tmp_path / "ADEChallengeData2016/annotations/validation"
    save(src / "x.png", np.array([[0, 1, 150]], np.uint8))
    save(src / "y.png", np.array([[2, 2, 2]], np.uint8))
    save(tmp_path / "ADEChallengeData2016/images/validation/x.jpg", rgb(1, 3))
    out_dir = tmp_path / "ADEChallengeData2016/annotations_detectron2/validation"
    out_dir.mkdir(parents=True)
    save(out_dir / "y.png", np.array([[7, 7, 7]], np.uint8))  # "finished before a stop"
    assert ade20k_150.main([str(tmp_path), "--no-progress"]) == 0
    assert read_label_array(out_dir / "x.png").tolist() == [[255, 0, 149]]
    assert read_label_array(out_dir / "y.png").tolist() == [[7, 7, 7]]  # skipped, not redone
    assert not list(out_dir.glob(".*tmp"))


def test_voc(tmp_path):
    voc_dir = tmp_path / "VOCdevkit/VOC2012"
    (voc_dir / "ImageSets/Segmentation").mkdir(parents=True)
    (voc_dir / "ImageSets/Segmentation/val.txt").write_text("a\nb\n")
    palette = Image.fromarray(np.array([[0, 1, 20, 255]], np.uint8), "P")
    palette.putpalette([0, 0, 0, 128, 0, 0] + [0] * 762)
    (voc_dir / "SegmentationClass").mkdir()
    palette.save(voc_dir / "SegmentationClass/a.png")
    save(voc_dir / "SegmentationClass/b.png", np.array([[0, 0, 255, 255]], np.uint8))
    for stem in "ab":
        save(voc_dir / f"JPEGImages/{stem}.jpg", rgb(1, 4))
    assert voc.main([str(tmp_path), "--no-progress"]) == 0
    assert read_label_array(voc_dir / "annotations_detectron2/val/a.png").tolist() == [
        [255, 0, 19, 255]]
    assert read_label_array(voc_dir / "annotations_detectron2_bg/val/a.png").tolist() == [
        [20, 0, 19, 255]]
    assert not (voc_dir / "annotations_detectron2/val/b.png").exists()  # nothing labelled
    assert len(build_dataset("voc20", tmp_path)) == 1
    assert len(build_dataset("voc20b", tmp_path)) == 2


def test_ade20k_847(tmp_path):
    base = tmp_path / "ADE20K_2021_17_01"
    folder = "ADE20K_2021_17_01/images/ADE/validation/scene"
    ids = ade20k_847.ade_ids()
    # object ids as (R // 10) * 256 + G: train id 0 ("wall") and one unknown id (0)
    wall = ids[0]
    seg = np.zeros((600, 700, 3), np.uint8)
    seg[:300, :, 0], seg[:300, :, 1] = (wall // 256) * 10, wall % 256
    save(tmp_path / folder / "ADE_val_00000001_seg.png", seg)
    save(tmp_path / folder / "ADE_val_00000001.jpg", rgb(600, 700))
    save(tmp_path / folder / "ADE_train_00000001.jpg", rgb(4, 4))
    index = {"folder": [folder, folder], "filename": ["ADE_val_00000001.jpg",
                                                      "ADE_train_00000001.jpg"]}
    base.mkdir(parents=True, exist_ok=True)
    (base / "index_ade20k.pkl").write_bytes(pickle.dumps(index))
    assert ade20k_847.main([str(tmp_path), "--no-progress"]) == 0
    label = read_label_array(base / "annotations_detectron2/validation/ADE_val_00000001.tif")
    assert label.dtype == np.uint16 and label.shape == (512, 597)  # short side 600 -> 512
    assert set(np.unique(label[:250])) == {0} and set(np.unique(label[260:])) == {65535}
    dataset = build_dataset("ade847", tmp_path)
    assert len(dataset) == 1 and dataset[0][0].shape == (3, 512, 597)


def test_rle_hand_computed():
    assert rle.counts_from_string("231") == [2, 3, 1]
    assert rle.counts_from_string("123O") == [1, 2, 3, 1]   # 4th stored as 1 - 2 = -1 -> 'O'
    mask = rle.decode({"size": [2, 3], "counts": "231"})
    assert mask.tolist() == [[0, 1, 1], [0, 1, 0]]          # column-major runs
    assert rle.decode({"size": [2, 3], "counts": [2, 3, 1]}).tolist() == mask.tolist()
    long_run = rle.counts_from_string(chr(48 + 0x20 + 4) + chr(48 + 1))  # 4 + (1 << 5) = 36
    assert long_run == [36]
    with pytest.raises(ValueError, match="pixels"):
        rle.decode({"size": [2, 2], "counts": [1, 1]})


def test_pascal_context_59(tmp_path):
    voc_dir = tmp_path / "VOCdevkit/VOC2010"
    voc_dir.mkdir(parents=True)
    data = {"images": [{"image_id": 1, "file_name": "2008_000002.jpg", "height": 2, "width": 3,
                        "phase": "val"},
                       {"image_id": 2, "file_name": "2008_000003.jpg", "height": 2, "width": 3,
                        "phase": "train"}],
            "annos_segmentation": [
                {"image_id": 1, "category_id": 2, "segmentation": {"size": [2, 3],
                                                                    "counts": "231"}},
                {"image_id": 1, "category_id": 9, "segmentation": {"size": [2, 3],
                                                                    "counts": [5, 1]}},
                {"image_id": 2, "category_id": 2, "segmentation": {"size": [2, 3],
                                                                    "counts": [6]}}]}
    (voc_dir / "trainval_merged.json").write_text(json.dumps(data))
    save(voc_dir / "JPEGImages/2008_000002.jpg", rgb(2, 3))
    assert pascal_context_59.main([str(tmp_path), "--no-progress"]) == 0
    out = read_label_array(voc_dir / "annotations_detectron2/pc59_val/2008_000002.png")
    # 459-id 2 = "aeroplane" = PC-59 class 0; 459-id 9 = "bag" = class 1; unlabelled -> 255
    assert out.tolist() == [[255, 0, 0], [255, 0, 1]]
    assert not (voc_dir / "annotations_detectron2/pc59_val/2008_000003.png").exists()
    assert build_dataset("pc59", tmp_path)[0][1].tolist() == out.tolist()


def test_pascal_context_459_with_a_stub_reader(tmp_path, monkeypatch):
    voc_dir = tmp_path / "VOCdevkit/VOC2010"
    (voc_dir / "trainval").mkdir(parents=True)
    (voc_dir / "pascalcontext_val.txt").write_text("2008_000002\n2008_000099\n")
    (voc_dir / "trainval/2008_000002.mat").write_bytes(b"stub")
    save(voc_dir / "JPEGImages/2008_000002.jpg", rgb(2, 2))
    monkeypatch.setattr(pascal_context_459, "load_label_map",
                        lambda path: np.array([[0, 1], [459, 300]], np.uint16))
    assert pascal_context_459.main([str(tmp_path), "--no-progress"]) == 0
    out = read_label_array(voc_dir / "annotations_detectron2/pc459_val/2008_000002.tif")
    assert out.dtype == np.uint16 and out.tolist() == [[65535, 0], [458, 299]]
    _, label = build_dataset("pc459", tmp_path)[0]
    assert label.tolist() == [[65535, 0], [458, 299]]
    assert len(pascal_context_459.val_ids(tmp_path / "nowhere")) == 5104  # the shipped list


def test_pascal_context_459_needs_scipy_message(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_scipy(name, *args, **kwargs):
        if name.startswith("scipy"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_scipy)
    from fgaseg.errors import DatasetError
    with pytest.raises(DatasetError, match="pip install scipy"):
        pascal_context_459.load_label_map(tmp_path / "x.mat")


def test_missing_download_is_a_clear_error(tmp_path, capsys):
    assert ade20k_150.main([str(tmp_path), "--no-progress"]) == 2
    assert "ADEChallengeData2016" in capsys.readouterr().err


def test_toy_shapes(tmp_path):
    assert toy_shapes.main([str(tmp_path / "toy"), "--images", "3", "--val-images", "1",
                            "--size", "24", "--no-progress"]) == 0
    dataset = build_dataset("folder", tmp_path / "toy", "train")
    assert len(dataset) == 3 and dataset.class_names == toy_shapes.CLASSES
