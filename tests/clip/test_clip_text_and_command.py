"""encode_class_names (templates, synonyms, averaging) and the `fgaseg encode` command."""

import numpy as np
import pytest
import torch
from PIL import Image

from fgaseg.cli import main
from fgaseg.clip import (IMAGENET_TEMPLATES, PROMPT_TEMPLATES_SINGLE, build_clip,
                         encode_class_names, save_clip, tokenize)
from fgaseg.errors import ClassNamesError


@pytest.fixture(scope="module")
def tiny():
    return build_clip("tiny", seed=0).eval()


def test_templates():
    assert PROMPT_TEMPLATES_SINGLE == ["A photo of a {} in the scene"]
    assert len(IMAGENET_TEMPLATES) == 80 and len(set(IMAGENET_TEMPLATES)) == 80
    assert all(t.count("{}") == 1 for t in IMAGENET_TEMPLATES)
    assert "a photo of a {}." in IMAGENET_TEMPLATES


def test_encode_class_names_shapes_and_normalisation(tiny):
    templates = IMAGENET_TEMPLATES[:3]
    with torch.no_grad():
        per_template = encode_class_names(tiny, ["cat", "traffic light"], templates)
        averaged = encode_class_names(tiny, ["cat", "traffic light"], templates, average=True)
        single = encode_class_names(tiny, ["cat"])
        direct = tiny.encode_text(tokenize(["a bad photo of a cat.", "A photo of a cat in the scene"]))
    assert per_template.shape == (2, 3, 128) and averaged.shape == (2, 128)
    assert torch.allclose(per_template.norm(dim=-1), torch.ones(2, 3), atol=1e-5)
    assert torch.allclose(averaged.norm(dim=-1), torch.ones(2), atol=1e-5)
    mean = per_template.mean(dim=1)
    assert torch.allclose(averaged, mean / mean.norm(dim=-1, keepdim=True), atol=1e-6)
    assert torch.allclose(per_template[0, 0], direct[0] / direct[0].norm(), atol=1e-5)
    assert torch.allclose(single[0, 0], direct[1] / direct[1].norm(), atol=1e-5)


def test_first_synonym_is_used(tiny):
    with torch.no_grad():
        a = encode_class_names(tiny, ["person, people, human"])
        b = encode_class_names(tiny, ["person"])
    assert torch.allclose(a, b)


def test_bad_class_names(tiny):
    with pytest.raises(ClassNamesError):
        encode_class_names(tiny, [])
    with pytest.raises(ClassNamesError):
        encode_class_names(tiny, ["cat", "  "])
    with pytest.raises(ClassNamesError):
        encode_class_names(tiny, ["cat"], ["no placeholder"])


@pytest.fixture()
def image_file(tmp_path):
    path = tmp_path / "image.png"
    array = np.random.RandomState(0).randint(0, 256, (40, 50, 3), dtype=np.uint8)
    Image.fromarray(array).save(path)
    return path


def test_encode_command_random_weights_says_so(image_file, capsys):
    rc = main(["encode", str(image_file), "--classes", "cat, dog", "--model", "tiny",
               "--templates", "single", "--dense"])
    out, err = capsys.readouterr()
    assert rc == 0
    assert "RANDOMLY INITIALISED" in err and "RANDOM weights" in out
    lines = out.strip().splitlines()
    assert lines[1].split() == ["class", "cosine", "probability", "patch", "share"]
    rows = [line.split() for line in lines[2:]]
    assert [r[0] for r in rows] == ["cat", "dog"]
    assert abs(sum(float(r[2]) for r in rows) - 1) < 1e-3
    assert abs(sum(float(r[3]) for r in rows) - 1) < 1e-3


def test_encode_command_with_weights_matches_the_api(image_file, tmp_path, capsys):
    from fgaseg.clip import preprocess

    model = build_clip("tiny", seed=5).eval()
    weights = save_clip(model, tmp_path / "clip.safetensors")
    rc = main(["encode", str(image_file), "--classes", "cat,dog", "--weights", str(weights),
               "--templates", "single"])
    out, err = capsys.readouterr()
    assert rc == 0 and "RANDOM" not in out + err
    with torch.no_grad():
        image = model.encode_image(preprocess(image_file, 64)[None])
        text = encode_class_names(model, ["cat", "dog"], average=True)
    cosine = (image / image.norm()) @ text.t()
    printed = [float(line.split()[1]) for line in out.strip().splitlines()[2:]]
    assert np.allclose(printed, cosine[0].numpy(), atol=1e-4)


def test_encode_command_errors(image_file, tmp_path, capsys):
    assert main(["encode", str(image_file), "--classes", " , ", "--model", "tiny"]) == 2
    assert main(["encode", str(tmp_path / "no.png"), "--classes", "a", "--model", "tiny"]) == 2
    assert main(["encode", str(image_file), "--classes", "a", "--weights", str(tmp_path / "w.pt")]) == 2
    err = capsys.readouterr().err
    assert "error: no class names" in err and "error: image file not found" in err
    assert "error: weights file not found" in err
