"""`fgaseg segment` end to end with real (tiny, random) weights on disk."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from fgaseg.cli import main

model_module = pytest.importorskip("fgaseg.model")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from fgaseg.clip import build_clip
    from fgaseg.clip.loading import save_clip

    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    fgaseg_dir = model_module.FGASeg(model_module.fgaseg_tiny()).save_pretrained(root / "fgaseg")
    clip_file = save_clip(build_clip("tiny", seed=0), root / "clip.safetensors")
    return {"fgaseg": fgaseg_dir, "clip": clip_file}


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((30, 44, 3)) * 255).astype(np.uint8)).save(folder / "a.png")
    Image.fromarray((rng.random((20, 20)) * 255).astype(np.uint8), mode="L").save(folder / "b.jpg")
    return folder


def _run(capsys, *argv):
    code = main(["segment", *map(str, argv)])
    return code, capsys.readouterr().err


def test_fgaseg_weights_folder(capsys, weights, images, tmp_path):
    code, err = _run(capsys, images, "--classes", "cat, grass, 猫", "--weights",
                     weights["fgaseg"], "--out", tmp_path / "out", "--device", "cpu",
                     "--sliding", "--topk", "2")
    assert code == 0, err
    summary = json.loads((tmp_path / "out" / "b.json").read_text(encoding="utf-8"))
    assert summary["size"] == [20, 20] and summary["classes"] == ["cat", "grass", "猫"]
    assert summary["method"] == "fgaseg"
    labels = np.asarray(Image.open(tmp_path / "out" / "a_labels.png"))
    assert labels.shape == (30, 44) and labels.max() < 3


def test_training_free_clip_weights(capsys, weights, images, tmp_path):
    code, err = _run(capsys, images / "a.png", "--classes", "cat, sky", "--weights",
                     weights["clip"], "--method", "training-free", "--out", tmp_path / "out")
    assert code == 0, err
    assert json.loads((tmp_path / "out" / "a.json").read_text())["method"] == "training-free"


@pytest.mark.parametrize("kind, method", [("clip", "fgaseg"), ("fgaseg", "training-free")])
def test_wrong_architecture_is_one_line_exit_2(capsys, weights, images, tmp_path, kind, method):
    code, err = _run(capsys, images, "--classes", "cat", "--weights", weights[kind],
                     "--method", method, "--out", tmp_path / "out")
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert not any((tmp_path / "out").glob("*.json"))


def test_corrupt_weights_file(capsys, images, tmp_path):
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "config.json").write_text("{broken json")
    (tmp_path / "w" / "model.safetensors").write_bytes(b"\x00" * 64)
    code, err = _run(capsys, images, "--classes", "cat", "--weights", tmp_path / "w",
                     "--out", tmp_path / "out")
    assert code == 2 and err.count("\n") == 1, err


def test_bf16_flag_runs_fgaseg_and_is_refused_for_training_free(capsys, weights, images, tmp_path):
    code, err = _run(capsys, images / "a.png", "--classes", "cat, sky", "--weights",
                     weights["fgaseg"], "--out", tmp_path / "out", "--bf16")
    assert code == 0, err
    labels = np.asarray(Image.open(tmp_path / "out" / "a_labels.png"))
    assert labels.shape == (30, 44) and labels.max() < 2
    code, err = _run(capsys, images / "a.png", "--classes", "cat, sky", "--weights",
                     weights["clip"], "--method", "training-free", "--out", tmp_path / "o2",
                     "--bf16")
    assert code == 2 and err.strip().count("\n") == 0 and "--bf16" in err
