"""Benchmark evaluation: run a segmenter over a dataset and accumulate a confusion matrix.

Protocol (CAT-Seg / FGA-seg, detectron2): each image is resized so its shortest side is
``min_size`` (640, longest side <= 2560), the segmenter returns class scores for it
(``segment_logits(..., sliding=...)``; sliding = 640x640 resize + 384 windows + global view,
inside the model), the scores are resized back to the original size, argmaxed, mapped
(VOC-20b: every class >= 20 -> background) and compared with the ground truth.
Under torchrun every process takes every ``world_size``-th image and the confusion matrices
are summed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F

from fgaseg.data.transforms import shortest_edge_size
from fgaseg.eval.metrics import ConfusionMatrix
from fgaseg.train import distributed as dist_utils


@dataclass
class EvalSettings:
    sliding: bool = False              # sliding-window inference (the paper's setting)
    topk: Optional[int] = None         # TopK class pruning (None = the model's default)
    min_size: Optional[int] = 640      # detectron2 MIN_SIZE_TEST (None/0 = original size)
    max_size: int = 2560               # detectron2 MAX_SIZE_TEST
    class_chunk: int = 128             # classes resized at a time when upsampling scores
    limit: Optional[int] = None        # only the first N images (quick checks)
    amp_dtype: Optional[torch.dtype] = None  # autocast dtype on GPU (None = float32)
    progress: bool = True
    protocol: str = "default"          # "official": the official code's final scores (FGASeg only)


def argmax_resized(scores: torch.Tensor, size: Sequence[int], chunk: int = 128) -> torch.Tensor:
    """``argmax`` over classes of ``scores (T, h, w)`` bilinearly resized to ``size``, computed
    ``chunk`` classes at a time (A-847 at full size would otherwise need gigabytes)."""
    size = tuple(int(s) for s in size)
    if tuple(scores.shape[1:]) == size and scores.shape[0] <= chunk:
        return scores.argmax(0)
    best_value = best_index = None
    for start in range(0, scores.shape[0], chunk):
        part = scores[start:start + chunk].float()
        if tuple(part.shape[1:]) != size:
            part = F.interpolate(part[None], size=size, mode="bilinear", align_corners=False)[0]
        value, index = part.max(0)
        if best_value is None:
            best_value, best_index = value, index
        else:
            better = value > best_value
            best_value = torch.where(better, value, best_value)
            best_index = torch.where(better, index + start, best_index)
    return best_index


@torch.no_grad()
def evaluate(segmenter, dataset, settings: Optional[EvalSettings] = None,
             class_names: Optional[Sequence[str]] = None) -> Dict[str, object]:
    """mIoU & co. of ``segmenter`` (Segmenter protocol) on ``dataset`` (see module doc).

    ``class_names`` (default ``dataset.class_names``) are the prompts; the metric counts
    ``dataset.num_classes`` classes named ``dataset.metric_class_names``.
    """
    settings = settings or EvalSettings()
    if settings.protocol != "default":
        from fgaseg.model.official_protocol import protocol_kwargs

        protocol_kwargs(segmenter, settings.protocol)  # one-line error for other segmenters
    names = list(class_names if class_names is not None else dataset.class_names)
    device = segmenter.device
    segmenter.eval()
    rank, world = 0, 1
    if dist_utils.is_enabled():
        import torch.distributed as dist
        rank, world = dist.get_rank(), dist.get_world_size()
    count = len(dataset) if settings.limit is None else min(settings.limit, len(dataset))
    indices = range(rank, count, world)
    confusion = ConfusionMatrix(getattr(dataset, "num_classes", len(names)), device)
    iterator = indices
    if settings.progress and rank == 0:
        from tqdm.auto import tqdm
        iterator = tqdm(indices, desc=f"eval {getattr(dataset, 'name', '')}", unit="img",
                        dynamic_ncols=True)
    start = time.perf_counter()
    for index in iterator:
        image, label = dataset[index]
        height, width = label.shape
        image = image.to(device)
        if settings.min_size:
            size = shortest_edge_size(height, width, settings.min_size, settings.max_size)
            if size != (height, width) and settings.protocol == "official":
                from fgaseg.model.official_protocol import detectron2_resize

                image = detectron2_resize(image, size)  # PIL on 8-bit pixels, as detectron2
            elif size != (height, width):
                image = F.interpolate(image[None], size=size, mode="bilinear",
                                      align_corners=False, antialias=True)[0].clamp_(0, 1)
        autocast = (torch.autocast(device.type, dtype=settings.amp_dtype)
                    if settings.amp_dtype is not None and device.type == "cuda"
                    else torch.autocast(device.type, enabled=False))
        # official: the probabilities are resized once, straight to the label size
        official = ({"protocol": "official", "output_size": (height, width)}
                    if settings.protocol == "official" else {})
        with autocast:
            scores = segmenter.segment_logits(image[None], names, sliding=settings.sliding,
                                              topk=settings.topk, **official)[0]
        prediction = argmax_resized(scores, (height, width), settings.class_chunk)
        if hasattr(dataset, "map_prediction"):
            prediction = dataset.map_prediction(prediction)
        confusion.update(prediction, label.to(device))
    seconds = time.perf_counter() - start
    confusion.all_reduce()
    results = confusion.compute(getattr(dataset, "metric_class_names", names))
    results.update({"dataset": getattr(dataset, "name", None), "num_images": count,
                    "sliding": settings.sliding, "topk": settings.topk,
                    "protocol": settings.protocol,
                    "seconds_per_image": seconds / max(1, len(indices))})
    results["confusion_matrix"] = confusion.matrix.cpu()
    return results
