"""A tiny stand-in with FGASeg's training interface (used by the trainer tests).

forward(images, class_names, targets) -> out.loss / out.losses / out.logits;
parameter_groups(lr, clip_lr_multiplier, weight_decay); segment_logits(...).
"""

import zlib
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn


class TinySeg(nn.Module):
    def __init__(self, dropout: float = 0.0, width: int = 8, nan_calls=()):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1)
        self.norm = nn.GroupNorm(2, width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.drop = nn.Dropout2d(dropout)
        self.text = nn.Embedding(64, width)  # plays the role of CLIP (lower lr group)
        self.nan_calls = set(nan_calls)      # forward calls whose loss is made NaN
        self.calls = 0

    def class_embeddings(self, class_names):
        ids = torch.tensor([zlib.crc32(n.encode()) % 64 for n in class_names],
                           device=self.text.weight.device)
        return self.text(ids)

    def logits(self, images, class_names):
        x = self.drop(F.relu(self.norm(self.conv1(images))))
        x = self.conv2(x)
        return torch.einsum("bchw,tc->bthw", x, self.class_embeddings(class_names))

    def forward(self, images, class_names, targets=None):
        logits = self.logits(images, class_names)
        losses = {}
        loss = None
        if targets is not None:
            valid = targets != 255
            onehot = F.one_hot(targets.clamp(max=len(class_names) - 1), len(class_names))
            onehot = onehot.permute(0, 3, 1, 2).float() * valid[:, None]
            loss = F.binary_cross_entropy_with_logits(logits, onehot)
            self.calls += 1
            if self.calls in self.nan_calls:
                loss = loss * float("nan")
            losses = {"loss_seg": loss}
        return SimpleNamespace(logits=logits, losses=losses, loss=loss)

    def parameter_groups(self, lr, clip_lr_multiplier, weight_decay):
        text = [self.text.weight]
        rest = [p for n, p in self.named_parameters() if not n.startswith("text.")]
        return [{"params": rest, "lr": lr, "weight_decay": weight_decay},
                {"params": text, "lr": lr * clip_lr_multiplier, "weight_decay": weight_decay}]

    @torch.no_grad()
    def segment_logits(self, images, class_names, *, sliding=False, topk=None):
        return self.logits(images, class_names)


def make_model(config=None, dropout: float = 0.0):
    torch.manual_seed(0)
    return TinySeg(dropout=dropout)
