"""Training-free dense-CLIP segmenter: CLIP weights in, masks out, no training.

The last vision block is replaced by a method's variant (see ``last_block.py``); patch tokens go
through ``ln_post`` and ``proj``, are L2-normalised and compared by cosine with template-averaged
L2-normalised text embeddings; the scaled cosines are upsampled bilinearly to the input size.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from fgaseg.clip import IMAGENET_TEMPLATES, encode_class_names
from fgaseg.clip.preprocess import CLIP_MEAN, CLIP_STD
from fgaseg.errors import ClassNamesError, ConfigError, ImageError
from fgaseg.training_free.background import apply_background_threshold, output_class_names
from fgaseg.training_free.last_block import DEFAULT_LOGIT_SCALES, LAST_BLOCKS
from fgaseg.training_free.sliding import sliding_window

METHODS: Tuple[str, ...] = tuple(LAST_BLOCKS)
IntPair = Union[int, Tuple[int, int]]


def _pair(value: IntPair, what: str) -> Tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or any(int(v) != v or v <= 0 for v in pair):
        raise ConfigError(f"{what} must be a positive integer or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


class TrainingFreeSegmenter(nn.Module):
    """Open-vocabulary segmentation from plain CLIP weights (MaskCLIP/SCLIP/ClearCLIP/NACLIP).

    Arguments:
        clip: a ``fgaseg.clip.CLIP`` (any size, e.g. the tiny test configs).
        method: "clearclip" (default), "sclip", "naclip" or "maskclip".
        templates: prompt templates with a ``{}``; embeddings are averaged over templates.
        logit_scale: multiplier of the cosine similarity (default: the method's own, 40-100).
        temperature: alternatively ``1 / logit_scale`` (e.g. 0.02); give at most one of the two.
        background_threshold: if set, pixels whose top class probability (softmax over the
            scaled cosines) is below it are labelled "background" (see ``output_class_names``).
        sliding: default for ``segment_logits(sliding=None)``.
        window, stride: sliding-window size and step in pixels (int or ``(h, w)``); default
            window = CLIP's input resolution, stride = half the window.
        gaussian_std: NACLIP's Gaussian width in patches.
        text_batch_size: prompts per text-encoder call.
    """

    def __init__(
        self,
        clip: nn.Module,
        method: str = "clearclip",
        templates: Sequence[str] = IMAGENET_TEMPLATES,
        *,
        logit_scale: Optional[float] = None,
        temperature: Optional[float] = None,
        background_threshold: Optional[float] = None,
        sliding: bool = False,
        window: Optional[IntPair] = None,
        stride: Optional[IntPair] = None,
        gaussian_std: float = 5.0,
        text_batch_size: int = 1024,
        cache_size: int = 4096,
    ) -> None:
        super().__init__()
        method = str(method).lower().replace("-", "")
        if method not in LAST_BLOCKS:
            raise ConfigError(
                f"unknown training-free method {method!r}; choose one of: {', '.join(METHODS)}"
            )
        templates = list(templates)
        if not templates or any(not isinstance(t, str) or "{}" not in t for t in templates):
            raise ConfigError("every prompt template must be a string with a '{}' placeholder")
        if logit_scale is not None and temperature is not None:
            raise ConfigError("give either logit_scale or temperature, not both")
        if temperature is not None:
            if temperature <= 0:
                raise ConfigError(f"temperature must be positive, got {temperature}")
            logit_scale = 1.0 / temperature
        if logit_scale is None:
            logit_scale = DEFAULT_LOGIT_SCALES[method]
        if logit_scale <= 0:
            raise ConfigError(f"logit_scale must be positive, got {logit_scale}")
        if background_threshold is not None and not 0.0 < background_threshold <= 1.0:
            raise ConfigError(f"background_threshold must be in (0, 1], got {background_threshold}")
        if gaussian_std <= 0:
            raise ConfigError(f"gaussian_std must be positive, got {gaussian_std}")

        self.clip = clip
        self.method = method
        self.templates = templates
        self.logit_scale = float(logit_scale)
        self.background_threshold = background_threshold
        self.sliding = bool(sliding)
        resolution = int(clip.visual.image_resolution)
        self.window = _pair(window if window is not None else resolution, "window")
        default_stride = (max(1, self.window[0] // 2), max(1, self.window[1] // 2))
        self.stride = _pair(stride if stride is not None else default_stride, "stride")
        self.gaussian_std = float(gaussian_std)
        self.text_batch_size = max(1, int(text_batch_size))
        self.cache_size = max(1, int(cache_size))
        self._text_cache: "OrderedDict[str, torch.Tensor]" = OrderedDict()
        mean, std = torch.tensor(CLIP_MEAN), torch.tensor(CLIP_STD)
        self.register_buffer("pixel_mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", std.view(1, 3, 1, 1), persistent=False)
        self.training = False  # inference only; the CLIP's own mode is left to its owner

    @classmethod
    def from_clip(
        cls, source: Any, *, device: Optional[Union[str, torch.device]] = None, **kwargs: Any
    ) -> "TrainingFreeSegmenter":
        """From a CLIP instance or anything ``fgaseg.clip.load_clip`` accepts (file, hub id)."""
        if isinstance(source, nn.Module):
            clip = source.to(device) if device is not None else source
        else:
            from fgaseg.clip import load_clip

            clip = load_clip(source, device=device)
        return cls(clip, **kwargs)

    # --- protocol --------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.clip.visual.conv1.weight.device

    def predict(self, image_or_list: Any, classes: Sequence[str], **kwargs: Any) -> Any:
        """Segment image(s); see ``fgaseg.predict.api.predict``."""
        from fgaseg.predict.api import predict

        return predict(self, image_or_list, classes, **kwargs)

    def output_class_names(self, class_names: Sequence[str]) -> List[str]:
        """Names of the channels ``segment_logits`` returns (+ "background" if thresholding)."""
        if self.background_threshold is None:
            return list(class_names)
        return output_class_names(class_names)

    @torch.no_grad()
    def segment_logits(
        self,
        images: torch.Tensor,
        class_names: Sequence[str],
        *,
        sliding: Optional[bool] = None,
        topk: Optional[int] = None,
    ) -> torch.Tensor:
        """Scores ``(B, T, H, W)``, higher = more likely, for images ``(B, 3, H, W)`` in ``[0, 1]``.

        uint8 images are divided by 255.

        Scores are ``logit_scale * cosine``; with ``background_threshold`` they are
        log-probabilities with a "background" channel (``T + 1`` channels unless a class is
        already named "background"). ``sliding=None`` uses the constructor's default.
        ``topk`` is accepted for the Segmenter protocol and ignored: every class costs one
        dot product here, so class pruning saves nothing.
        """
        names = self._check_class_names(class_names)
        images = self._check_images(images)
        text = self.encode_classes(names)  # (T, D)
        device = self.device
        mean, std = self.pixel_mean.to(device), self.pixel_std.to(device)
        normalised = (images.to(device, torch.float32) - mean) / std
        use_sliding = self.sliding if sliding is None else bool(sliding)
        score_fn = lambda crop: self._crop_logits(crop, text)  # noqa: E731
        if use_sliding:
            logits = sliding_window(score_fn, normalised, self.window, self.stride)
        else:
            logits = score_fn(normalised)
        if self.background_threshold is not None:
            logits, _ = apply_background_threshold(logits, names, self.background_threshold)
        return logits

    # --- features --------------------------------------------------------------------------
    def dense_features(self, images: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """L2-normalised patch embeddings ``(B, h*w, D)`` and the grid ``(h, w)``.

        ``images`` are CLIP-normalised with sides divisible by the patch size.
        """
        visual = self.clip.visual
        x = visual.embed(images.to(self.clip_dtype))  # (B, 1 + h*w, W)
        patch = visual.patch_size
        grid = (images.shape[-2] // patch, images.shape[-1] // patch)
        blocks = visual.transformer.resblocks
        for block in blocks[:-1]:
            x = block(x)
        last = LAST_BLOCKS[self.method]
        if self.method == "naclip":
            x = last(blocks[-1], x, grid, gaussian_std=self.gaussian_std)
        else:
            x = last(blocks[-1], x, grid)
        tokens = (visual.ln_post(x[:, 1:]) @ visual.proj).float()
        return F.normalize(tokens, dim=-1), grid

    @property
    def clip_dtype(self) -> torch.dtype:
        return self.clip.visual.conv1.weight.dtype

    def _crop_logits(self, images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Scaled cosine ``(B, T, H, W)`` of CLIP-normalised images of any size."""
        height, width = images.shape[-2:]
        patch = self.clip.visual.patch_size
        pad_h, pad_w = (-height) % patch, (-width) % patch
        if pad_h or pad_w:  # zero = the mean colour after normalisation
            images = F.pad(images, (0, pad_w, 0, pad_h))
        tokens, (gh, gw) = self.dense_features(images)
        cosine = torch.einsum("bnd,td->btn", tokens, text).reshape(tokens.shape[0], -1, gh, gw)
        cosine = F.interpolate(
            cosine, size=(height + pad_h, width + pad_w), mode="bilinear", align_corners=False
        )
        return cosine[:, :, :height, :width] * self.logit_scale

    # --- text ------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_classes(self, class_names: Sequence[str]) -> torch.Tensor:
        """Template-averaged, L2-normalised text embeddings ``(T, D)`` in float32 (cached)."""
        names = self._check_class_names(class_names)
        missing = list(dict.fromkeys(n for n in names if n not in self._text_cache))
        per_call = max(1, self.text_batch_size // len(self.templates))
        for start in range(0, len(missing), per_call):
            chunk = missing[start : start + per_call]
            embeddings = encode_class_names(self.clip, chunk, self.templates, average=True)
            for name, embedding in zip(chunk, embeddings.float()):
                self._text_cache[name] = embedding
        rows = []
        for name in names:
            self._text_cache.move_to_end(name)
            rows.append(self._text_cache[name])
        while len(self._text_cache) > max(self.cache_size, len(names)):
            self._text_cache.popitem(last=False)
        return torch.stack(rows).to(self.device)

    def clear_cache(self) -> None:
        """Forget cached text embeddings (call after changing the CLIP weights)."""
        self._text_cache.clear()

    # --- checks ----------------------------------------------------------------------------
    @staticmethod
    def _check_class_names(class_names: Sequence[str]) -> List[str]:
        if isinstance(class_names, str):
            raise ClassNamesError("class names must be a list of strings, not a single string")
        names = list(class_names)
        if not names:
            raise ClassNamesError("the list of class names is empty")
        for name in names:
            if not isinstance(name, str) or not name.strip():
                raise ClassNamesError(f"class names must be non-empty strings, got {name!r}")
        return names

    @staticmethod
    def _check_images(images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor):
            raise ImageError(f"expected an image tensor (B, 3, H, W), got {type(images).__name__}")
        if images.dim() != 4 or images.shape[1] != 3:
            raise ImageError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        if images.shape[0] == 0 or images.shape[-1] == 0 or images.shape[-2] == 0:
            raise ImageError(f"images are empty: shape {tuple(images.shape)}")
        if images.dtype == torch.uint8:
            return images.float() / 255.0
        if not images.is_floating_point():
            raise ImageError(f"expected float images in [0, 1] or uint8, got {images.dtype}")
        return images

    def extra_repr(self) -> str:
        return (
            f"method={self.method!r}, templates={len(self.templates)}, "
            f"logit_scale={self.logit_scale:g}, background_threshold={self.background_threshold}, "
            f"window={self.window}, stride={self.stride}"
        )
