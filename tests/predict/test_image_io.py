"""Image loading: every input kind, every PIL mode we convert, and every bad file we refuse."""

import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from fgaseg.errors import ImageError
from fgaseg.predict.image_io import MAX_PIXELS, load_image


def _png_header_only(path, width, height):
    """A PNG that claims width x height but holds (almost) no pixel data: a cheap huge image."""
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))
    return path


def test_rgb_png_round_trip(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert out.shape == (7, 9, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out * 255, pixels, atol=1e-3)
    np.testing.assert_allclose(load_image(str(tmp_path / "a.png")), out)


def test_grayscale_becomes_three_equal_channels(tmp_path):
    gray = np.arange(20, dtype=np.uint8).reshape(4, 5) * 10
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    assert out.shape == (4, 5, 3)
    for c in range(3):
        np.testing.assert_allclose(out[..., c] * 255, gray, atol=1e-3)


def test_16bit_grayscale_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 256, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    out = load_image(tmp_path / "g16.png")
    np.testing.assert_allclose(out[0, :, 0], values[0] / 65535.0, atol=1e-6)
    # clipping (PIL's convert("RGB")) would have made 256 and 32768 both white
    assert out[0, 1, 0] < 0.01 and 0.49 < out[0, 2, 0] < 0.51


def test_rgba_is_composited_over_white(tmp_path):
    rgba = np.zeros((1, 3, 4), dtype=np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)   # opaque red
    rgba[0, 1] = (255, 0, 0, 0)     # fully transparent -> white
    rgba[0, 2] = (0, 0, 0, 128)     # half transparent black -> mid gray
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    np.testing.assert_allclose(out[0, 0], [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(out[0, 1], [1, 1, 1], atol=1e-6)
    np.testing.assert_allclose(out[0, 2], [127 / 255] * 3, atol=1e-2)


def test_la_mode(tmp_path):
    Image.new("LA", (2, 2), (100, 255)).save(tmp_path / "la.png")
    np.testing.assert_allclose(load_image(tmp_path / "la.png"), 100 / 255, atol=1e-6)


def test_palette_image_uses_palette_colours(tmp_path):
    image = Image.new("P", (3, 1))
    image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)
    image.putdata([0, 1, 2])
    image.save(tmp_path / "p.png")
    out = load_image(tmp_path / "p.png")
    np.testing.assert_allclose(out[0], np.eye(3), atol=1e-6)


def test_palette_with_transparency(tmp_path):
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 255, 0, 0, 0] + [0] * 762)
    image.putdata([0, 1])
    image.save(tmp_path / "pt.png", transparency=1)
    out = load_image(tmp_path / "pt.png")
    np.testing.assert_allclose(out[0], [[0, 0, 1], [1, 1, 1]], atol=1e-6)


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=100)
    out = load_image(tmp_path / "c.jpg")
    assert out.shape == (8, 8, 3)
    np.testing.assert_allclose(out.mean((0, 1)), [1, 0, 0], atol=0.05)  # red


def test_one_bit_image(tmp_path):
    Image.new("1", (3, 2), 1).save(tmp_path / "b.png")
    np.testing.assert_allclose(load_image(tmp_path / "b.png"), 1.0)


def test_exif_rotation_is_applied(tmp_path):
    stored = np.zeros((20, 40, 3), dtype=np.uint8)
    stored[:, :20] = (255, 0, 0)
    stored[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(stored).save(tmp_path / "r.jpg", exif=exif, quality=95)
    out = load_image(tmp_path / "r.jpg")
    assert out.shape == (40, 20, 3)  # displayed portrait
    assert out[:15, :, 0].mean() > 0.9 and out[:15, :, 2].mean() < 0.1   # left half -> top
    assert out[25:, :, 2].mean() > 0.9 and out[25:, :, 0].mean() < 0.1


def test_first_frame_of_animated_gif(tmp_path):
    frames = [Image.new("RGB", (4, 4), c) for c in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    out = load_image(tmp_path / "a.gif")
    np.testing.assert_allclose(out.mean((0, 1)), [1, 0, 0], atol=0.02)


def test_pil_numpy_and_tensor_inputs_agree():
    pixels = np.random.default_rng(1).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    reference = pixels.astype(np.float32) / 255
    np.testing.assert_allclose(load_image(Image.fromarray(pixels)), reference, atol=1e-6)
    np.testing.assert_allclose(load_image(pixels), reference, atol=1e-6)
    np.testing.assert_allclose(load_image(reference), reference, atol=1e-6)
    chw = torch.from_numpy(reference).permute(2, 0, 1)
    np.testing.assert_allclose(load_image(chw), reference, atol=1e-6)
    np.testing.assert_allclose(load_image(torch.from_numpy(pixels).permute(2, 0, 1)),
                               reference, atol=1e-6)
    np.testing.assert_allclose(load_image(chw.double()), reference, atol=1e-6)


def test_numpy_uint16_gray_and_rgba_arrays():
    gray16 = np.array([[0, 65535]], dtype=np.uint16)
    np.testing.assert_allclose(load_image(gray16)[0, :, 1], [0, 1])
    rgba = np.array([[[0, 0, 0, 0]]], dtype=np.uint8)
    np.testing.assert_allclose(load_image(rgba)[0, 0], [1, 1, 1])


@pytest.mark.parametrize("bad, message", [
    (np.zeros((0, 5, 3), np.uint8), "zero size"),
    (np.zeros((5, 5, 2), np.uint8), "expected"),
    (np.full((2, 2, 3), np.nan, np.float32), "NaN"),
    (np.full((2, 2, 3), 200.0, np.float32), "[0, 1]"),
    (torch.zeros(5, 4, 4), "expected"),
    (torch.zeros(3, 0, 4), "zero size"),
    ("not-an-image-object".encode(), "cannot use"),
])
def test_bad_arrays_raise_one_line_image_error(bad, message):
    with pytest.raises(ImageError) as info:
        load_image(bad)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_zero_size_pil_image():
    with pytest.raises(ImageError, match="zero size"):
        load_image(Image.new("RGB", (0, 3)))


def _error_for(path):
    with pytest.raises(ImageError) as info:
        load_image(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


def test_missing_file(tmp_path):
    assert "no such file" in _error_for(tmp_path / "nope.png")


def test_folder_is_not_an_image(tmp_path):
    assert "folder" in _error_for(tmp_path)


def test_empty_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert "empty" in _error_for(tmp_path / "empty.jpg")


def test_garbage_file(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"this is not a png at all" * 10)
    assert "not an image" in _error_for(tmp_path / "junk.png")


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_file(tmp_path, suffix):
    pixels = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / f"full{suffix}")
    data = (tmp_path / f"full{suffix}").read_bytes()
    (tmp_path / f"cut{suffix}").write_bytes(data[: len(data) // 2])
    assert "truncated" in _error_for(tmp_path / f"cut{suffix}")


def test_corrupt_png_data(tmp_path):
    pixels = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "ok.png")
    data = bytearray((tmp_path / "ok.png").read_bytes())
    data[60:90] = b"\xff" * 30  # inside the IDAT stream
    (tmp_path / "bad.png").write_bytes(bytes(data))
    assert "corrupt" in _error_for(tmp_path / "bad.png")


def test_unreadable_file(tmp_path):
    import os

    path = tmp_path / "secret.png"
    Image.new("RGB", (2, 2)).save(path)
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):  # root ignores permissions
            pytest.skip("running as root: permission bits are not enforced")
        assert "permission" in _error_for(path)
    finally:
        path.chmod(0o644)


def test_read_permission_error_even_as_root(tmp_path, monkeypatch):
    path = tmp_path / "locked.png"
    Image.new("RGB", (2, 2)).save(path)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Image, "open", denied)
    assert "permission denied" in _error_for(path)


def test_png_header_with_zero_size(tmp_path):
    message = _error_for(_png_header_only(tmp_path / "zero.png", 0, 0))
    assert "zero size" in message or "corrupt" in message or "not an image" in message


def test_huge_image_refused_before_decoding(tmp_path):
    side = int(MAX_PIXELS ** 0.5) + 100   # just over 40 MP, header only
    message = _error_for(_png_header_only(tmp_path / "big.png", side, side))
    assert "MP" in message and "limit" in message


def test_decompression_bomb_is_an_image_error(tmp_path):
    message = _error_for(_png_header_only(tmp_path / "bomb.png", 100_000, 100_000))
    assert "large" in message or "limit" in message
    with pytest.raises(ImageError, match=r"100000x100000 = 10000\.0 MP, more than the limit of "
                                         r"\d+(\.\d+)? MP"):
        load_image(_png_header_only(tmp_path / "bomb2.png", 100_000, 100_000),
                   max_pixels=10**12)  # only PIL's own guard is left


def test_240_megapixels_message_gives_size_and_limit_like_50(tmp_path):
    # issue #16.7: past PIL's guard (~179 MP) the message lacked both numbers
    for width, height in ((10_000, 5_000), (20_000, 12_000)):
        message = _error_for(_png_header_only(tmp_path / f"{width}.png", width, height))
        assert f"{width}x{height} = {width * height / 1e6:.1f} MP" in message
        assert "more than the limit of 40 MP" in message


def test_pixel_limit_is_adjustable():
    with pytest.raises(ImageError, match="limit"):
        load_image(np.zeros((20, 20, 3), np.uint8), max_pixels=399)
    assert load_image(np.zeros((20, 20, 3), np.uint8), max_pixels=400).shape == (20, 20, 3)
