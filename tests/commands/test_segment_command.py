"""`fgaseg segment` with a weightless stand-in segmenter: outputs, bad inputs, exit codes."""

import json

import numpy as np
import pytest
from PIL import Image

import fgaseg.commands.segment as segment_command
from fgaseg.cli import main
from fgaseg.predict.reference import ColourSegmenter


@pytest.fixture
def stand_in(monkeypatch):
    """Replace weight loading by the colour segmenter; records what was asked for."""
    asked = {}

    def load(weights, method, device):
        asked.update(weights=weights, method=method, device=device)
        return ColourSegmenter()

    monkeypatch.setattr(segment_command, "load_segmenter", load)
    return asked


def _image(path, left=(255, 0, 0), right=(0, 0, 255), size=(24, 16)):
    pixels = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    pixels[:, : size[0] // 2] = left
    pixels[:, size[0] // 2:] = right
    Image.fromarray(pixels).save(path)
    return path


def _run(capsys, *argv):
    code = main(["segment", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.err


def test_writes_label_png_overlay_and_json(tmp_path, capsys, stand_in):
    image = _image(tmp_path / "pic.png")
    out = tmp_path / "out"
    code, err = _run(capsys, image, "--classes", "red, blue, green", "--weights", "W",
                     "--out", out, "--opacity", "0.7", "--device", "cpu", "--topk", "2")
    assert code == 0, err
    assert stand_in == {"weights": "W", "method": "fgaseg", "device": "cpu"}
    labels = Image.open(out / "pic_labels.png")
    assert labels.mode == "P" and labels.size == (24, 16)
    values = np.asarray(labels)
    assert (values[:, :12] == 0).all() and (values[:, 12:] == 1).all()
    overlay = Image.open(out / "pic_overlay.png")
    assert overlay.size[0] > 24 and overlay.size[1] >= 16
    summary = json.loads((out / "pic.json").read_text(encoding="utf-8"))
    assert summary["classes"] == ["red", "blue", "green"]
    assert summary["pixel_share"] == {"red": 0.5, "blue": 0.5, "green": 0.0}
    assert summary["size"] == [24, 16] and summary["method"] == "fgaseg"
    assert {"load", "inference", "total"} <= set(summary["timings"])
    assert "segmented 1 of 1" in err


def test_folder_with_one_bad_file_processes_the_rest(tmp_path, capsys, stand_in):
    folder = tmp_path / "imgs"
    folder.mkdir()
    _image(folder / "a.png")
    _image(folder / "c.jpg")
    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    code, err = _run(capsys, folder, "--classes", "red,blue", "--weights", "W", "--out", out)
    assert code == 1
    failed = [line for line in err.splitlines() if line.startswith("failed:")]
    assert len(failed) == 1 and "b.png" in failed[0]
    assert sorted(p.name for p in out.iterdir()) == [
        "a.json", "a_labels.png", "a_overlay.png", "c.json", "c_labels.png", "c_overlay.png"]
    assert "segmented 2 of 3" in err and "1 failed" in err


def test_missing_input_is_reported_and_others_done(tmp_path, capsys, stand_in):
    image = _image(tmp_path / "ok.png")
    code, err = _run(capsys, image, tmp_path / "gone.png", "--classes", "red", "--weights",
                     "W", "--out", tmp_path / "out")
    assert code == 1 and "gone.png" in err
    assert (tmp_path / "out" / "ok_labels.png").exists()


def test_same_stem_in_two_folders_and_output_in_input_folder(tmp_path, capsys, stand_in):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    _image(tmp_path / "x" / "p.png")
    _image(tmp_path / "y" / "p.png")
    code, _ = _run(capsys, tmp_path / "x", tmp_path / "y", "--classes", "red", "--weights",
                   "W", "--out", tmp_path / "x")
    assert code == 0
    assert (tmp_path / "x" / "p_labels.png").exists() and (tmp_path / "x" / "p-2.json").exists()
    # a second run into the same folder does not segment its own outputs
    code, err = _run(capsys, tmp_path / "x", "--classes", "red", "--weights", "W",
                     "--out", tmp_path / "x", "--overwrite")
    assert code == 0 and "segmented 1 of 1" in err


def test_never_overwrites_an_input(tmp_path, capsys, stand_in):
    _image(tmp_path / "a.png")
    precious = _image(tmp_path / "a_labels.png", left=(0, 255, 0))
    before = precious.read_bytes()
    code, err = _run(capsys, tmp_path / "a.png", precious, "--classes", "red",
                     "--weights", "W", "--out", tmp_path)
    assert code == 2 and "a_labels.png already exists" in err  # refused up front
    assert precious.read_bytes() == before and not (tmp_path / "a.json").exists()
    code, err = _run(capsys, tmp_path / "a.png", precious, "--classes", "red",
                     "--weights", "W", "--out", tmp_path, "--overwrite")
    assert code == 1 and "refusing to overwrite input file" in err  # even with --overwrite
    assert precious.read_bytes() == before
    assert (tmp_path / "a_labels_labels.png").exists()


def test_classes_file_and_exit_code_2_for_bad_classes(tmp_path, capsys, stand_in):
    image = _image(tmp_path / "a.png")
    (tmp_path / "classes.txt").write_text("red\nblue\n", encoding="utf-8")
    code, _ = _run(capsys, image, "--classes-file", tmp_path / "classes.txt", "--weights", "W",
                   "--out", tmp_path / "o1")
    assert code == 0
    for bad in ("", "red,,blue", "red, Red"):
        code, err = _run(capsys, image, "--classes", bad, "--weights", "W", "--out",
                         tmp_path / "o2")
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    code, err = _run(capsys, image, "--classes-file", tmp_path / "none.txt", "--weights", "W",
                     "--out", tmp_path / "o2")
    assert code == 2 and "not found" in err
    assert not (tmp_path / "o2").exists()


def test_usage_errors_exit_2(tmp_path, capsys, stand_in):
    image = _image(tmp_path / "a.png")
    base = [image, "--weights", "W", "--out", tmp_path / "o"]
    assert _run(capsys, *base, "--classes", "red", "--opacity", "2")[0] == 2
    assert _run(capsys, *base, "--classes", "red", "--topk", "-1")[0] == 2
    assert _run(capsys, tmp_path / "empty-dir-missing", "--classes", "red", "--weights", "W",
                "--out", tmp_path / "o")[0] == 1
    (tmp_path / "empty").mkdir()
    code, err = _run(capsys, tmp_path / "empty", "--classes", "red", "--weights", "W",
                     "--out", tmp_path / "o")
    assert code == 2 and "no image files" in err
    with pytest.raises(SystemExit) as info:  # argparse: classes options are exclusive
        main(["segment", str(image), "--classes", "a", "--vocab", "ade150", "--weights", "W",
              "--out", str(tmp_path / "o")])
    assert info.value.code == 2


def test_vocab_option(tmp_path, capsys, stand_in):
    pytest.importorskip("fgaseg.data")
    image = _image(tmp_path / "a.png")
    code, err = _run(capsys, image, "--vocab", "ade150", "--weights", "W", "--out",
                     tmp_path / "o")
    assert code == 0, err
    summary = json.loads((tmp_path / "o" / "a.json").read_text(encoding="utf-8"))
    assert len(summary["classes"]) == 150
    code, err = _run(capsys, image, "--vocab", "no-such-vocab", "--weights", "W", "--out",
                     tmp_path / "o")
    assert code == 2 and err.startswith("error:")


def test_missing_weights_is_one_line_exit_2(tmp_path, capsys):
    image = _image(tmp_path / "a.png")
    code, err = _run(capsys, image, "--classes", "red", "--weights", tmp_path / "nope",
                     "--out", tmp_path / "o", "--device", "cpu")
    assert code == 2 and "nope" in err and err.count("\n") == 1


def test_cuda_request_without_gpu(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    image = _image(tmp_path / "a.png")
    code, err = _run(capsys, image, "--classes", "red", "--weights", "W", "--out",
                     tmp_path / "o", "--device", "cuda")
    assert code == 2 and "CUDA" in err


def test_existing_outputs_are_refused_before_any_image_is_segmented(tmp_path, capsys,
                                                                     stand_in):
    # issue #16.3: a second run (other classes) silently replaced the first run's outputs
    _image(tmp_path / "a.png")
    _image(tmp_path / "b.png")
    out = tmp_path / "out"
    assert _run(capsys, tmp_path / "a.png", "--classes", "red, blue", "--weights", "W",
                "--out", out)[0] == 0
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    stand_in.clear()
    code, err = _run(capsys, tmp_path / "b.png", tmp_path / "a.png", "--classes", "green",
                     "--weights", "W", "--out", out)
    assert code == 2 and err.strip().count("\n") == 0
    assert "a_labels.png already exists (and 2 more output file(s)); pass --overwrite" in err
    assert stand_in == {}  # refused before the model was even loaded
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first  # b.png not written either
    code, _ = _run(capsys, tmp_path / "b.png", tmp_path / "a.png", "--classes", "green",
                   "--weights", "W", "--out", out, "--overwrite")
    assert code == 0 and json.loads((out / "a.json").read_text())["classes"] == ["green"]


@pytest.mark.parametrize("value", ["-5", "-1"])
def test_negative_max_side_is_a_usage_error_up_front(tmp_path, capsys, stand_in, value):
    # issue #16.7: it used to fail per image (exit 1, no file name)
    _image(tmp_path / "a.png")
    code, err = _run(capsys, tmp_path / "a.png", "--classes", "red", "--weights", "W",
                     "--out", tmp_path / "out", "--max-side", value)
    assert code == 2 and f"--max-side must be positive (or 0 for no limit), got {value}" in err
    assert not (tmp_path / "out").exists() and stand_in == {}
