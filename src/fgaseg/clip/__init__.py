"""CLIP in plain PyTorch: OpenAI ViT models, dense features, tokenizer, weight loading."""

from fgaseg.clip.build import build_clip
from fgaseg.clip.config import CLIPConfig, get_config, list_models
from fgaseg.clip.loading import infer_config, load_clip, load_clip_state_dict, save_clip
from fgaseg.clip.model import CLIP
from fgaseg.clip.preprocess import CLIP_MEAN, CLIP_STD, normalize, preprocess, preprocess_batch
from fgaseg.clip.templates import IMAGENET_TEMPLATES, PROMPT_TEMPLATES_SINGLE
from fgaseg.clip.text import encode_class_names, first_synonym
from fgaseg.clip.tokenizer import EOT_TOKEN, SOT_TOKEN, decode, tokenize
from fgaseg.clip.vision import DenseFeatures, VisionTransformer

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "infer_config",
    "load_clip",
    "load_clip_state_dict",
    "normalize",
    "preprocess",
    "preprocess_batch",
    "save_clip",
    "CLIP",
    "CLIPConfig",
    "DenseFeatures",
    "EOT_TOKEN",
    "IMAGENET_TEMPLATES",
    "PROMPT_TEMPLATES_SINGLE",
    "SOT_TOKEN",
    "VisionTransformer",
    "build_clip",
    "decode",
    "encode_class_names",
    "first_synonym",
    "get_config",
    "list_models",
    "tokenize",
]
