"""`SegmentationResult`: what `predict()` returns for one image, and how it is saved."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch.nn.functional as F
from PIL import Image

from fgaseg.predict.image_io import to_uint8
from fgaseg.predict.overlay import render_overlay
from fgaseg.predict.palette import png_palette
from fgaseg.predict.scores import ClassScores


@dataclass
class SegmentationResult:
    """Segmentation of one image.

    Attributes:
        labels: int64 ``(H, W)`` class index per pixel, at the original image size.
        class_names: the T names, index = label value.
        class_scores: the per-class scores from the segmenter (higher = more likely; logits
            or probabilities depending on the mode) at the size the model saw
            (``inference_size``), compact: classes the model pruned share one stored map.
            ``scores`` (all T maps) and ``score_maps(...)`` (a few, any size) read it.
        image: uint8 ``(H, W, 3)`` RGB input as segmented (after EXIF rotation), or None.
        source: the input's path (or a description), for reports.
        timings: seconds spent per stage (``load``, ``inference``, ``postprocess``).
    """

    labels: np.ndarray
    class_scores: ClassScores
    class_names: list[str]
    image: Optional[np.ndarray] = None
    source: Optional[str] = None
    timings: dict[str, float] = field(default_factory=dict)
    _dense: Optional[np.ndarray] = field(default=None, repr=False, compare=False)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the label map and original image."""
        return int(self.labels.shape[1]), int(self.labels.shape[0])

    @property
    def inference_size(self) -> tuple[int, int]:
        """(width, height) at which the model ran."""
        height, width = self.class_scores.size
        return width, height

    @property
    def scores(self) -> np.ndarray:
        """float32 ``(T, h, w)``: every class's map at the inference size.

        Built on first use and kept: T x h x w floats (3000 classes at 640x480 are 3.7 GB), so
        with many classes prefer ``score_maps`` for the classes you need.
        """
        if self._dense is None:
            self._dense = self.class_scores.to_dense().numpy()
        return self._dense

    def score_maps(self, classes: Sequence[Union[str, int]], *,
                   size: str = "original") -> np.ndarray:
        """float32 ``(n, H, W)`` score maps of the given class names (or indices).

        ``size="original"``: bilinearly resized to the image size, as the labels were computed;
        ``"inference"``: as the model produced them (``inference_size``).
        """
        if size not in ("original", "inference"):
            raise ValueError(f"size must be 'original' or 'inference', not {size!r}")
        index = [self._class_index(c) for c in classes]
        maps = self.class_scores.maps(index)
        height, width = self.labels.shape
        if size == "original" and tuple(maps.shape[-2:]) != (height, width):
            maps = F.interpolate(maps[None], size=(height, width), mode="bilinear",
                                 align_corners=False)[0]
        return maps.numpy()

    def _class_index(self, name: Union[str, int]) -> int:
        if isinstance(name, (int, np.integer)) and not isinstance(name, bool):
            if not 0 <= int(name) < len(self.class_names):
                raise IndexError(f"class index {name} out of range 0..{len(self.class_names) - 1}")
            return int(name)
        try:
            return self.class_names.index(name)
        except ValueError:
            raise KeyError(f"{name!r} is not one of this result's classes") from None

    @property
    def pixel_share(self) -> dict[str, float]:
        """Fraction of pixels per class name, in class order; sums to 1."""
        counts = np.bincount(self.labels.reshape(-1), minlength=len(self.class_names))
        total = max(int(self.labels.size), 1)
        return {name: float(counts[i]) / total for i, name in enumerate(self.class_names)}

    def overlay(self, image: Union[np.ndarray, Image.Image, None] = None, opacity: float = 0.5,
                *, legend: bool = True) -> Image.Image:
        """The image with class colours blended in (`opacity` of colour) and a legend panel.

        Without `image`, the stored input is used. The legend lists present classes with their
        pixel share, largest first; the image itself keeps its size in the top-left corner.
        """
        base = self._base_image(image)
        return render_overlay(base, self.labels, self.class_names, self.pixel_share,
                              opacity=opacity, legend=legend)

    def label_image(self) -> Image.Image:
        """Indexed PNG-ready label map: mode "P" with the class palette for up to 255 classes,
        16-bit grayscale ("I;16") beyond (PNG palettes hold 256 entries)."""
        if len(self.class_names) <= 255:
            indices = np.ascontiguousarray(self.labels, dtype=np.uint8)
            image = Image.frombytes("P", self.size, indices.tobytes())
            image.putpalette(png_palette(len(self.class_names)))
            return image
        return Image.fromarray(self.labels.astype(np.uint16))

    def summary(self) -> dict[str, Any]:
        """JSON-ready description: classes, pixel share, sizes, timings."""
        share = self.pixel_share
        return {
            "source": self.source,
            "size": list(self.size),
            "inference_size": list(self.inference_size),
            "classes": list(self.class_names),
            "pixel_share": share,
            "present": [name for name, value in sorted(share.items(), key=lambda kv: -kv[1])
                        if value > 0],
            "timings": {name: round(value, 4) for name, value in self.timings.items()},
        }

    def save(self, out_dir: Union[str, Path], stem: Optional[str] = None, *,
             opacity: float = 0.5, extra: Optional[dict[str, Any]] = None) -> dict[str, Path]:
        """Write ``<stem>_labels.png``, ``<stem>_overlay.png`` (if the image is kept) and
        ``<stem>.json`` into `out_dir`; returns the paths by kind."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = stem or (Path(self.source).stem if self.source else "result")
        paths = {"labels": out_dir / f"{stem}_labels.png", "json": out_dir / f"{stem}.json"}
        self.label_image().save(paths["labels"])
        if self.image is not None:
            paths["overlay"] = out_dir / f"{stem}_overlay.png"
            self.overlay(opacity=opacity).save(paths["overlay"])
        summary = self.summary()
        summary["outputs"] = {kind: path.name for kind, path in paths.items()}
        summary.update(extra or {})
        paths["json"].write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n",
                                 encoding="utf-8")
        return paths

    def _base_image(self, image: Union[np.ndarray, Image.Image, None]) -> np.ndarray:
        if image is None:
            if self.image is None:
                raise ValueError("this result keeps no image; pass image= to overlay()")
            return self.image
        if isinstance(image, Image.Image):
            image = np.asarray(image.convert("RGB"))
        elif image.dtype != np.uint8:
            image = to_uint8(image)
        if image.shape[:2] != self.labels.shape:
            raise ValueError(f"image is {image.shape[1]}x{image.shape[0]} but the label map is "
                             f"{self.size[0]}x{self.size[1]}")
        return image

    def __repr__(self) -> str:
        present = [name for name, share in self.pixel_share.items() if share > 0]
        return (f"SegmentationResult(size={self.size}, classes={len(self.class_names)}, "
                f"present={present[:8]}{'...' if len(present) > 8 else ''})")
