"""Training augmentations: image/label alignment, determinism, photometric ranges."""

import colorsys

import pytest
import torch

from fgaseg.data.transforms import (PhotometricDistortion, TrainTransform, hsv_to_rgb, pad_to,
                                    random_crop, resize_pair, rgb_to_hsv, shortest_edge_size)


def coded_pair(height, width, block=4, classes=7, seed=0):
    """A label constant on ``block x block`` tiles and an image whose red channel encodes it."""
    g = torch.Generator().manual_seed(seed)
    tiles = torch.randint(0, classes, (height // block, width // block), generator=g)
    label = tiles.repeat_interleave(block, 0).repeat_interleave(block, 1)
    image = torch.stack([label.float() / 10, torch.rand(height, width, generator=g),
                         torch.zeros(height, width)])
    return image, label


def decode(image):
    return (image[0] * 10).round().long()


@pytest.mark.parametrize("seed", range(5))
def test_geometry_keeps_alignment(seed):
    image, label = coded_pair(64, 96, block=8, seed=seed)
    transform = TrainTransform(crop_size=40, min_size=32, max_size=1000, photometric=False)
    out_image, out_label = transform(image, label, torch.Generator().manual_seed(seed))
    assert out_image.shape == (3, 40, 40) and out_label.shape == (40, 40)
    # 64x96 -> 32x48 (exact /2 on 4x4 tiles keeps the coding exact), crop 40 -> padded rows
    valid = out_label != 255
    assert valid.sum() == 32 * 40
    # bilinear resizing blends colours across tile borders; inside tiles the code is exact
    padded = torch.nn.functional.pad(out_label[None, None].float(), (1, 1, 1, 1), value=-1)
    same = (torch.nn.functional.max_pool2d(padded, 3, 1) ==
            -torch.nn.functional.max_pool2d(-padded, 3, 1))[0, 0]
    interior = valid & same
    assert interior.sum() > 0.15 * valid.sum()
    assert torch.equal(decode(out_image)[interior], out_label[interior])
    assert (out_image[:, ~valid] == 128 / 255).all()   # padding value of the official mapper


def test_flip_happens_and_keeps_alignment():
    image, label = coded_pair(16, 16)
    flips = 0
    for seed in range(20):
        transform = TrainTransform(crop_size=16, min_size=0, photometric=False)
        out_image, out_label = transform(image, label, torch.Generator().manual_seed(seed))
        assert torch.equal(decode(out_image), out_label)
        flips += int(torch.equal(out_label, label.flip(-1)) and not torch.equal(label,
                                                                             label.flip(-1)))
    assert 3 <= flips <= 17


def test_same_seed_same_sample_different_seed_different():
    image, label = coded_pair(48, 64)
    transform = TrainTransform(crop_size=24, min_size=32, max_size=512)
    a = transform(image, label, torch.Generator().manual_seed(5))
    b = transform(image, label, torch.Generator().manual_seed(5))
    c = transform(image, label, torch.Generator().manual_seed(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_shortest_edge_and_crop_helpers():
    assert shortest_edge_size(480, 640, 384, 1333) == (384, 512)
    assert shortest_edge_size(100, 2000, 384, 1333) == (67, 1333)
    image, label = coded_pair(8, 8)
    same = resize_pair(image, label, (8, 8))
    assert same[0] is image
    crop_image, crop_label = random_crop(image, label, 4, torch.Generator().manual_seed(0))
    assert crop_image.shape == (3, 4, 4) and torch.equal(decode(crop_image), crop_label)
    padded = pad_to(crop_image, crop_label, 6, ignore_index=99)
    assert padded[1][4:].eq(99).all() and padded[1][:, 4:].eq(99).all()


def test_category_area_constraint():
    label = torch.zeros(32, 32, dtype=torch.long)
    label[:, 28:] = 1  # one class covers most of the image
    image = torch.rand(3, 32, 32)
    _, window = random_crop(image, label, 8, torch.Generator().manual_seed(0),
                            single_category_max_area=0.9)
    counts = torch.bincount(window.flatten(), minlength=2)
    assert counts.max() / counts.sum() < 0.9   # found a window with both classes


def test_hsv_round_trip_matches_colorsys():
    x = torch.rand(3, 10, 10, generator=torch.Generator().manual_seed(0))
    hsv = rgb_to_hsv(x)
    torch.testing.assert_close(hsv_to_rgb(hsv), x, atol=1e-5, rtol=0)
    for i, j in [(0, 0), (3, 7), (9, 2)]:
        expected = colorsys.rgb_to_hsv(*x[:, i, j].tolist())
        torch.testing.assert_close(hsv[:, i, j], torch.tensor(expected), atol=1e-5, rtol=0)


def test_photometric_changes_colour_within_range_only():
    image = torch.rand(3, 20, 20, generator=torch.Generator().manual_seed(1))
    changed = 0
    for seed in range(10):
        out = PhotometricDistortion()(image, torch.Generator().manual_seed(seed))
        assert out.shape == image.shape and out.min() >= 0 and out.max() <= 1
        changed += int(not torch.allclose(out, image))
    assert changed >= 7  # 4 independent coin flips: nearly always something changes
