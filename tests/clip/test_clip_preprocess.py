"""CPU preprocessing without torchvision."""

import numpy as np
import pytest
import torch
from PIL import Image

from fgaseg.clip import CLIP_MEAN, CLIP_STD, normalize, preprocess, preprocess_batch
from fgaseg.clip.preprocess import (center_crop, load_image, pad_to, pad_to_multiple, resize,
                                    resize_shorter_side, to_tensor)
from fgaseg.errors import ImageError


def test_to_tensor_accepts_pil_numpy_tensor_and_path(tmp_path):
    array = np.random.RandomState(0).randint(0, 256, (20, 30, 3), dtype=np.uint8)
    expected = torch.from_numpy(array).permute(2, 0, 1).float() / 255
    Image.fromarray(array).save(tmp_path / "x.png")
    for source in (array, Image.fromarray(array), tmp_path / "x.png", str(tmp_path / "x.png"),
                   torch.from_numpy(array).permute(2, 0, 1)):
        assert torch.allclose(to_tensor(source), expected)
    gray = to_tensor(array[:, :, 0])
    assert gray.shape == (3, 20, 30) and torch.equal(gray[0], gray[2])
    rgba = np.concatenate([array, np.zeros((20, 30, 1), np.uint8)], axis=2)
    assert torch.allclose(to_tensor(rgba), expected)
    assert torch.equal(to_tensor(expected), expected)  # float tensors are taken as [0, 1]


def test_bad_images_raise_image_error(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ImageError, match="cannot read"):
        to_tensor(tmp_path / "bad.png")
    with pytest.raises(ImageError):
        to_tensor(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(ImageError):
        to_tensor(42)


def test_normalize_uses_clip_mean_and_std():
    image = torch.rand(3, 4, 5)
    out = normalize(image)
    for c in range(3):
        assert torch.allclose(out[c], (image[c] - CLIP_MEAN[c]) / CLIP_STD[c])
    batch = normalize(image[None].repeat(2, 1, 1, 1))
    assert torch.allclose(batch[1], out)


def test_resize_crop_and_pad_geometry():
    image = torch.rand(3, 100, 200)
    assert resize_shorter_side(image, 50).shape == (3, 50, 100)
    assert center_crop(image, (100, 100)).shape == (3, 100, 100)
    assert torch.equal(center_crop(image, (100, 100)), image[:, :, 50:150])
    padded = pad_to(image, (200, 200))
    assert padded.shape == (3, 200, 200) and torch.equal(padded[:, 50:150], image)
    assert torch.allclose(normalize(padded)[:, :50], torch.zeros(3, 50, 200), atol=1e-6)
    multiple = pad_to_multiple(torch.rand(3, 33, 47), 16)
    assert multiple.shape == (3, 48, 48)
    constant = torch.full((3, 37, 53), 0.3)
    assert torch.allclose(resize(constant, (24, 24)), torch.full((3, 24, 24), 0.3), atol=1e-5)
    checker = (torch.arange(50)[:, None] + torch.arange(50)[None]) % 2
    upsampled = resize(checker.float().expand(3, 50, 50), (80, 80))  # bicubic overshoots: clamped
    assert upsampled.min() >= 0 and upsampled.max() <= 1


def test_preprocess_modes():
    array = np.random.RandomState(1).randint(0, 256, (60, 90, 3), dtype=np.uint8)
    for mode in ("crop", "pad", "resize"):
        out = preprocess(array, size=32, mode=mode)
        assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    # OpenAI's pipeline on an image already at the target size is only normalisation
    small = np.random.RandomState(2).randint(0, 256, (32, 32, 3), dtype=np.uint8)
    assert torch.allclose(preprocess(small, 32), normalize(to_tensor(small)))
    assert preprocess_batch([array, small], size=16).shape == (2, 3, 16, 16)
    with pytest.raises(ValueError):
        preprocess(array, 32, mode="zoom")
