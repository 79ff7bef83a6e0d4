"""Turn whatever a user calls an image into an RGB float array, or fail with one clear line.

Accepted sources: a path (``str`` / ``os.PathLike``), a ``PIL.Image.Image``, a numpy array
``(H, W)``, ``(H, W, 1|3|4)`` or a torch tensor ``(H, W)``, ``(1|3|4, H, W)``.

Conversions (documented in docs/usage.md):

- EXIF orientation is applied (the image is segmented as a viewer shows it);
- grayscale, palette, CMYK, YCbCr and 1-bit images become RGB; 16-bit images are scaled by
  ``1/65535`` (not clipped at 255); float images are taken as ``[0, 1]``;
- transparency (RGBA, LA, palette with a transparent index) is composited over white;
- multi-frame files (GIF, TIFF) use their first frame.

Refused with :class:`fgaseg.errors.ImageError`: missing, unreadable, empty, corrupt or truncated
files, zero-size images, images over ``max_pixels`` (default :data:`MAX_PIXELS`, 40 MP),
PIL decompression bombs, arrays with an unusable shape or dtype, and NaN/inf values.
"""

from __future__ import annotations

import os
import struct
import threading
import warnings
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fgaseg.errors import ImageError

#: Largest image (width x height) accepted for segmentation: 40 megapixels.
MAX_PIXELS = 40_000_000

#: File extensions picked up when a folder is given to the CLI.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp",
                    ".ppm", ".pgm", ".pbm", ".jfif")

ImageSource = Union[str, os.PathLike, Image.Image, np.ndarray, Any]


def describe(source: Any) -> str:
    """A short name for `source` to use in error messages."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, Image.Image):
        return f"PIL image {source.mode} {source.size[0]}x{source.size[1]}"
    shape = getattr(source, "shape", None)
    if shape is not None:
        return f"{type(source).__name__} of shape {tuple(shape)}"
    return type(source).__name__


def load_image(source: ImageSource, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read `source` as RGB.

    Returns:
        float32 array ``(H, W, 3)`` with values in ``[0, 1]``.
    Raises:
        ImageError: one line naming the input and what is wrong with it.
    """
    if isinstance(source, (str, os.PathLike)):
        return _load_path(Path(source), max_pixels)
    if isinstance(source, Image.Image):
        _check_size(source.size[0], source.size[1], max_pixels, describe(source))
        return pil_to_rgb_float(source, describe(source))
    if isinstance(source, np.ndarray):
        return _array_to_rgb_float(source, channels_first=False, name=describe(source),
                                   max_pixels=max_pixels)
    if _is_tensor(source):
        array = source.detach().to("cpu")
        if array.is_floating_point():
            array = array.float()
        return _array_to_rgb_float(array.numpy(), channels_first=True, name=describe(source),
                                   max_pixels=max_pixels)
    raise ImageError(f"cannot use a {type(source).__name__} as an image "
                     "(expected a path, PIL image, numpy array or torch tensor)")


def _is_tensor(obj: Any) -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return False
    return isinstance(obj, torch.Tensor)


def _check_size(width: int, height: int, max_pixels: int, name: str) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"{name}: image has zero size ({width}x{height})")
    if width * height > max_pixels:
        raise ImageError(f"{name}: image is {width}x{height} = {width * height / 1e6:.1f} MP, "
                         f"more than the limit of {max_pixels / 1e6:g} MP; downscale it first")


def _load_path(path: Path, max_pixels: int) -> np.ndarray:
    name = str(path)
    if not path.exists():
        raise ImageError(f"{name}: no such file")
    if path.is_dir():
        raise ImageError(f"{name}: is a folder, not an image file")
    try:
        if path.stat().st_size == 0:
            raise ImageError(f"{name}: file is empty (0 bytes)")
        with warnings.catch_warnings():
            # our own pixel limit applies; PIL's bomb *warning* would only be noise
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                _check_size(image.size[0], image.size[1], max_pixels, name)
                image.load()
                return pil_to_rgb_float(image, name)
    except ImageError:
        raise
    except PermissionError:
        raise ImageError(f"{name}: permission denied") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image file, or a format PIL cannot read") from None
    except Image.DecompressionBombError:
        size = _header_size(path)  # PIL refused before our own check could name the size
        if size is not None:
            _check_size(size[0], size[1], min(max_pixels, _pil_limit()), name)
        raise ImageError(f"{name}: image is too large (PIL decompression-bomb guard)") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as exc:
        # truncated / corrupt data surfaces as any of these depending on the codec
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise ImageError(f"{name}: corrupt or truncated image ({detail})") from None


_PIL_GUARD = threading.Lock()


def _pil_limit() -> int:
    """Pixels above which PIL refuses to open an image (twice its warning limit)."""
    return 2 * int(Image.MAX_IMAGE_PIXELS or 0) or 2 ** 62


def _header_size(path: Path) -> Optional[tuple[int, int]]:
    """(width, height) from the file header with PIL's bomb guard off (nothing is decoded)."""
    with _PIL_GUARD:
        limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            with Image.open(path) as image:
                return int(image.size[0]), int(image.size[1])
        except Exception:  # the original error is reported instead
            return None
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def pil_to_rgb_float(image: Image.Image, name: str = "image") -> np.ndarray:
    """Convert any PIL image to float32 ``(H, W, 3)`` RGB in ``[0, 1]`` (see module doc)."""
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block must not make a readable image unusable
        pass
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(image).astype(np.float32)
        scale = 65535.0 if mode != "I" or values.max(initial=0) > 255 else 255.0
        gray = np.clip(values / scale, 0.0, 1.0)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "F":
        return _array_to_rgb_float(np.asarray(image), channels_first=False, name=name,
                                   max_pixels=None)
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info):
        return _composite_on_white(np.asarray(image.convert("RGBA")))
    if mode != "RGB":
        try:
            image = image.convert("RGB")
        except ValueError:
            raise ImageError(f"{name}: unsupported image mode {mode!r}") from None
    return np.asarray(image, dtype=np.float32) / 255.0


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """``(H, W, 4)`` uint8 -> ``(H, W, 3)`` float, transparent areas shown as white."""
    rgb = rgba[..., :3].astype(np.float32) / 255.0
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    return rgb * alpha + (1.0 - alpha)


def _array_to_rgb_float(array: np.ndarray, *, channels_first: bool, name: str,
                        max_pixels: int | None) -> np.ndarray:
    if array.ndim == 3 and channels_first:
        if array.shape[0] not in (1, 3, 4):
            raise ImageError(f"{name}: expected a (3, H, W) tensor (or 1/4 channels)")
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ImageError(f"{name}: expected (H, W), (H, W, 3) or (H, W, 4) pixels")
    height, width = array.shape[:2]
    if max_pixels is not None:
        _check_size(width, height, max_pixels, name)
    elif height == 0 or width == 0:
        raise ImageError(f"{name}: image has zero size ({width}x{height})")
    values = _to_unit_range(array, name)
    if values.shape[2] == 1:
        values = np.repeat(values, 3, axis=2)
    elif values.shape[2] == 4:
        alpha = values[..., 3:4]
        values = values[..., :3] * alpha + (1.0 - alpha)
    return np.ascontiguousarray(values, dtype=np.float32)


def _to_unit_range(array: np.ndarray, name: str) -> np.ndarray:
    """Scale by dtype: uint8 /255, uint16 /65535, bool 0/1, float as-is (must be finite)."""
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    if np.issubdtype(array.dtype, np.floating):
        values = array.astype(np.float32)
        if not np.isfinite(values).all():
            raise ImageError(f"{name}: pixel values contain NaN or infinity")
        if values.min(initial=0.0) < -1e-3 or values.max(initial=0.0) > 1.0 + 1e-3:
            raise ImageError(f"{name}: float pixels must lie in [0, 1] "
                             f"(found {values.min():.3g}..{values.max():.3g}); divide by 255?")
        return np.clip(values, 0.0, 1.0)
    if np.issubdtype(array.dtype, np.integer):
        low, high = int(array.min(initial=0)), int(array.max(initial=0))
        if low < 0 or high > 65535:
            raise ImageError(f"{name}: integer pixels must lie in 0..255 or 0..65535")
        return array.astype(np.float32) / (255.0 if high <= 255 else 65535.0)
    raise ImageError(f"{name}: unsupported pixel type {array.dtype}")


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """float ``(H, W, 3)`` in [0, 1] -> uint8 ``(H, W, 3)``."""
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside `folder` (by extension, sorted by name)."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
