"""The synthetic world's vocabulary: attribute words, class phrases and the seen/unseen split.

A class is a composition ``colour × pattern × shape`` written as a phrase, e.g.
``"red striped triangle"``. With 6 colours, 3 patterns and 4 shapes there are 72 phrases.
A quarter of them (18) are *unseen*: they never occur in segmentation training, although each
of their words does (in other compositions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np

from fgaseg.errors import ConfigError

# Colours are chosen to be far apart in RGB so that colour is an easy attribute; the renderer
# jitters them per object.
COLOURS: Dict[str, Tuple[int, int, int]] = {
    "red": (215, 45, 40),
    "green": (40, 170, 60),
    "blue": (45, 80, 215),
    "yellow": (230, 205, 40),
    "purple": (145, 55, 190),
    "cyan": (40, 195, 205),
}
PATTERNS: Tuple[str, ...] = ("solid", "striped", "dotted")
SHAPES: Tuple[str, ...] = ("circle", "square", "triangle", "cross")

# (colour index, pattern index, shape index)
Attributes = Tuple[int, int, int]


@dataclass(frozen=True)
class Vocabulary:
    """All class phrases with their attributes and the seen/unseen split.

    ``phrases[i]`` is class ``i``; ``attributes[i]`` its ``(colour, pattern, shape)`` indices;
    ``seen_ids`` / ``unseen_ids`` partition ``range(len(phrases))``.
    """

    phrases: Tuple[str, ...]
    attributes: Tuple[Attributes, ...]
    seen_ids: Tuple[int, ...]
    unseen_ids: Tuple[int, ...]
    split_seed: int

    @property
    def num_classes(self) -> int:
        return len(self.phrases)

    @property
    def seen_phrases(self) -> List[str]:
        return [self.phrases[i] for i in self.seen_ids]

    @property
    def unseen_phrases(self) -> List[str]:
        return [self.phrases[i] for i in self.unseen_ids]

    def is_unseen(self) -> np.ndarray:
        """Boolean mask ``(num_classes,)``: True for unseen compositions."""
        mask = np.zeros(self.num_classes, dtype=bool)
        mask[list(self.unseen_ids)] = True
        return mask

    def colour_rgb(self, class_id: int) -> Tuple[int, int, int]:
        return COLOURS[list(COLOURS)[self.attributes[class_id][0]]]

    def to_dict(self) -> dict:
        return {
            "phrases": list(self.phrases),
            "seen": self.seen_phrases,
            "unseen": self.unseen_phrases,
            "split_seed": self.split_seed,
        }


def phrase_for(colour: int, pattern: int, shape: int) -> str:
    return f"{list(COLOURS)[colour]} {PATTERNS[pattern]} {SHAPES[shape]}"


def build_vocabulary(split_seed: int = 0) -> Vocabulary:
    """All 72 phrases; 18 unseen chosen by a balanced rule under a seeded relabelling.

    Class ``(c, p, s)`` is unseen when ``(π_c(c) + π_p(p) + π_s(s)) % 4 == 0`` for seeded
    permutations π. Since the three patterns take three different residues, each
    ``(colour, shape)`` pair has at most one unseen pattern, so every pair of words — and thus
    every word — still occurs in seen classes.
    """
    if split_seed < 0:
        raise ConfigError(f"split seed must be non-negative, got {split_seed}")
    rng = np.random.default_rng([split_seed, 7919])
    perm_c = rng.permutation(len(COLOURS))
    perm_p = rng.permutation(len(PATTERNS))
    perm_s = rng.permutation(len(SHAPES))
    phrases, attributes, seen, unseen = [], [], [], []
    for c in range(len(COLOURS)):
        for p in range(len(PATTERNS)):
            for s in range(len(SHAPES)):
                index = len(phrases)
                phrases.append(phrase_for(c, p, s))
                attributes.append((c, p, s))
                if (perm_c[c] + perm_p[p] + perm_s[s]) % 4 == 0:
                    unseen.append(index)
                else:
                    seen.append(index)
    return Vocabulary(tuple(phrases), tuple(attributes), tuple(seen), tuple(unseen), split_seed)
