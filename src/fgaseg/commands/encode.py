"""`fgaseg encode IMAGE --classes "cat, dog"`: CLIP similarities between an image and class names."""

from __future__ import annotations

import argparse
import sys

HELP = "encode an image and class names with CLIP and print their similarities"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", help="image file (any format Pillow reads)")
    parser.add_argument("--classes", required=True,
                        help='comma-separated class names, e.g. "cat, dog, grass"')
    parser.add_argument("--weights", default=None,
                        help="CLIP weights: OpenAI .pt, open_clip checkpoint, transformers folder or "
                             "safetensors file, or a hub id such as openai/clip-vit-base-patch16")
    parser.add_argument("--model", default="ViT-B/16",
                        help="architecture to initialise randomly when no --weights (default ViT-B/16)")
    parser.add_argument("--size", type=int, default=None,
                        help="input side in pixels (default: the model's native resolution)")
    parser.add_argument("--resize", choices=["crop", "pad", "resize"], default="crop",
                        help="fit the image by center crop (default, as CLIP), padding or stretching")
    parser.add_argument("--templates", choices=["imagenet", "single"], default="imagenet",
                        help="prompt templates: OpenAI's 80 ImageNet prompts averaged, or "
                             "'A photo of a {} in the scene'")
    parser.add_argument("--dense", action="store_true",
                        help="also print each class's share of image patches (dense CLIP tokens)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")


def parse_class_list(text: str) -> list:
    """``"cat, dog ,grass"`` -> ``["cat", "dog", "grass"]``; ClassNamesError if empty."""
    from fgaseg.errors import ClassNamesError

    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ClassNamesError("no class names given; use e.g. --classes \"cat, dog\"")
    if len(set(names)) != len(names):
        raise ClassNamesError(f"class names repeat in {text!r}")
    return names


def run(args: argparse.Namespace) -> int:
    import torch

    from fgaseg.clip import (IMAGENET_TEMPLATES, PROMPT_TEMPLATES_SINGLE, build_clip,
                             encode_class_names, load_clip, preprocess)
    from fgaseg.errors import ImageError

    names = parse_class_list(args.classes)
    if args.weights:
        model = load_clip(args.weights).eval()
        source = f"weights {args.weights}"
    else:
        model = build_clip(args.model, seed=args.seed).eval()
        source = "RANDOM weights"
        print(f"warning: no --weights given, so {args.model} is RANDOMLY INITIALISED and the "
              "similarities below are meaningless; pass --weights (e.g. a CLIP .pt file or "
              "openai/clip-vit-base-patch16) for real results", file=sys.stderr)
    size = args.size or model.config.image_resolution
    patch = model.config.vision_patch_size
    if size % patch:
        raise ImageError(f"--size {size} is not a multiple of the patch size {patch}")
    images = preprocess(args.image, size=size, mode=args.resize)[None].to(model.device)
    templates = IMAGENET_TEMPLATES if args.templates == "imagenet" else PROMPT_TEMPLATES_SINGLE
    with torch.no_grad():
        text = encode_class_names(model, names, templates, average=True)  # (N, D)
        dense = model.encode_image_dense(images) if args.dense else None
        image = model.encode_image(images)
        image = image / image.norm(dim=-1, keepdim=True)
        cosine = (image @ text.t())[0]
        probability = (model.logit_scale.exp() * cosine).softmax(dim=-1)
    print(f"model: {_describe(model)} ({source}); input {size}x{size}; "
          f"{len(templates)} template(s)")
    width = max(len("class"), *(len(n) for n in names))
    header = f"{'class':<{width}}  cosine  probability"
    if dense is not None:
        tokens = dense.tokens[0] / dense.tokens[0].norm(dim=-1, keepdim=True)
        winner = (tokens @ text.t()).argmax(dim=-1)
        share = torch.bincount(winner, minlength=len(names)).float() / winner.numel()
        header += "  patch share"
    print(header)
    for i, name in enumerate(names):
        line = f"{name:<{width}}  {cosine[i].item():6.4f}  {probability[i].item():11.4f}"
        if dense is not None:
            line += f"  {share[i].item():11.4f}"
        print(line)
    return 0


def _describe(model) -> str:
    from fgaseg.clip import get_config, list_models

    for name in list_models():
        if get_config(name) == model.config:
            return name
    c = model.config
    return f"ViT (patch {c.vision_patch_size}, width {c.vision_width}, {c.vision_layers} layers)"
