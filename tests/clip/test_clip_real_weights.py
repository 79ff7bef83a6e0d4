"""Checks with real CLIP weights; run only when FGASEG_CLIP_WEIGHTS names a file, folder or hub id.

Example: FGASEG_CLIP_WEIGHTS=~/.cache/clip/ViT-B-16.pt pytest tests/clip/test_clip_real_weights.py
"""

import os

import pytest
import torch

from fgaseg.clip import encode_class_names, get_config, list_models, load_clip, normalize

SOURCE = os.environ.get("FGASEG_CLIP_WEIGHTS")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SOURCE, reason="set FGASEG_CLIP_WEIGHTS to run with real CLIP weights"),
]


@pytest.fixture(scope="module")
def clip():
    return load_clip(os.path.expanduser(SOURCE))


def test_architecture_is_an_openai_model(clip):
    assert any(get_config(name) == clip.config for name in list_models() if name.startswith("ViT"))


def test_text_similarities_are_semantic(clip):
    with torch.no_grad():
        text = encode_class_names(clip, ["cat", "kitten", "truck"], ["a photo of a {}."])[:, 0]
    similarity = text @ text.t()
    assert similarity[0, 1] > similarity[0, 2] + 0.05


def test_colour_images_are_recognised_globally_and_densely(clip):
    colours = {"red": (1.0, 0.0, 0.0), "green": (0.0, 0.8, 0.0), "blue": (0.0, 0.0, 1.0)}
    size = clip.config.image_resolution
    images = torch.stack([torch.tensor(rgb).view(3, 1, 1).expand(3, size, size)
                          for rgb in colours.values()])
    with torch.no_grad():
        text = encode_class_names(clip, list(colours), ["a photo of the color {}."], average=True)
        image = clip.encode_image(normalize(images))
        dense = clip.encode_image_dense(normalize(images))
    image = image / image.norm(dim=-1, keepdim=True)
    assert (image @ text.t()).argmax(dim=-1).tolist() == [0, 1, 2]
    tokens = dense.tokens / dense.tokens.norm(dim=-1, keepdim=True)
    winners = (tokens @ text.t()).argmax(dim=-1)  # (3, h*w)
    for index in range(3):
        assert (winners[index] == index).float().mean() > 0.5
