"""Metrics, class sampling and label remapping of the synthetic benchmark."""

import math

import numpy as np
import torch

from fgaseg.synth.evaluate import (
    attribute_accuracy, attribute_chance, confusion_matrix, harmonic_mean, iou_per_class, summarize,
)
from fgaseg.synth.report import fmt_mean_std, mean_std_table
from fgaseg.synth.segtrain import remap_labels, sample_classes


def test_iou_matches_a_hand_count():
    truth = np.array([[0, 0, 1], [1, 2, 255]])
    pred = np.array([[0, 1, 1], [1, 0, 2]])
    conf = confusion_matrix(pred, truth, 3)
    assert conf.sum() == 5  # the ignore pixel is not counted
    iou = iou_per_class(conf)
    # class 0: tp 1, gt 2, pred 2 -> 1/3; class 1: tp 2, gt 2, pred 3 -> 2/3; class 2: tp 0 -> 0
    np.testing.assert_allclose(iou, [1 / 3, 2 / 3, 0.0])


def test_absent_classes_are_left_out_and_seen_unseen_are_split():
    truth = np.array([[0, 0, 1, 1]])
    pred = np.array([[0, 0, 1, 2]])
    conf = confusion_matrix(pred, truth, 4)
    result = summarize(conf, unseen_mask=np.array([False, True, True, True]))
    assert math.isnan(iou_per_class(conf)[3]) and math.isnan(iou_per_class(conf)[2])
    assert result["mIoU_seen"] == 100.0
    assert result["mIoU_unseen"] == 50.0
    assert abs(result["hIoU"] - 2 * 100 * 50 / 150) < 1e-9
    assert harmonic_mean(0.0, 0.0) == 0.0


def test_attribute_accuracy_counts_each_word_separately():
    # classes: 0 = (red, solid, circle), 1 = (red, solid, square), 2 = (blue, striped, circle)
    attributes = [(0, 0, 0), (0, 0, 1), (1, 1, 0)]
    truth = np.array([0, 0, 0, 0, 2, 2])
    pred = np.array([0, 1, 2, 0, 2, 0])
    acc = attribute_accuracy(confusion_matrix(pred, truth, 3), attributes)
    # colour right where pred and truth share colour: 0->0, 0->1, 0->0, 2->2 = 4 of 6
    assert math.isclose(acc["colour"], 100 * 4 / 6) and math.isclose(acc["pattern"], 100 * 4 / 6)
    # shape: 0->0, 0->2 (both circles), 0->0, 2->2, 2->0 (circles) = 5 of 6
    assert math.isclose(acc["shape"], 100 * 5 / 6)
    assert attribute_chance(attributes) == {"colour": 50.0, "pattern": 50.0, "shape": 50.0}


def test_sample_classes_keeps_present_and_adds_only_seen_negatives():
    rng = np.random.default_rng(0)
    seen = np.arange(0, 54)
    present = np.zeros(72, dtype=bool)
    present[[1, 5, 9]] = True
    chosen = sample_classes(present, seen, 10, rng)
    assert len(chosen) == len(set(chosen.tolist())) == 10
    assert {1, 5, 9} <= set(chosen.tolist()) and set(chosen.tolist()) <= set(seen.tolist())
    many = np.zeros(72, dtype=bool)
    many[:20] = True
    assert len(sample_classes(many, seen, 10, rng)) == 20  # never drops a present class


def test_shape_negatives_come_first_from_the_present_classes_siblings():
    from fgaseg.synth.segtrain import _shape_siblings
    from fgaseg.synth.vocabulary import build_vocabulary

    vocab = build_vocabulary(0)
    siblings = _shape_siblings(vocab)
    attributes = np.asarray(vocab.attributes)
    assert not siblings.diagonal().any() and siblings.sum(1).tolist() == [3] * 72
    seen = np.asarray(vocab.seen_ids)
    present = np.zeros(72, dtype=bool)
    present[seen[0]] = True
    related = [c for c in seen if siblings[seen[0], c]]
    chosen = sample_classes(present, seen, 1 + len(related), np.random.default_rng(0), siblings)
    assert set(chosen.tolist()) == {int(seen[0]), *map(int, related)}
    assert (attributes[chosen, :2] == attributes[seen[0], :2]).all()


def test_remap_labels_to_positions_in_the_class_list():
    labels = torch.tensor([[7, 3, 255], [3, 9, 7]])
    out = remap_labels(labels, np.array([3, 7]))
    assert out.tolist() == [[1, 0, 255], [0, 255, 1]]


def test_mean_std_table_reports_paired_differences():
    groups = {"full": [{"mIoU_seen": 10, "mIoU_unseen": 8, "hIoU": 9}, {"mIoU_seen": 12, "mIoU_unseen": 8, "hIoU": 11}],
              "off": [{"mIoU_seen": 9, "mIoU_unseen": 7, "hIoU": 8}, {"mIoU_seen": 10, "mIoU_unseen": 7, "hIoU": 8}]}
    table = mean_std_table(groups, reference="full")
    assert "| off | 2 | 9.5 ± 0.7 | 7.0 ± 0.0 | 8.0 ± 0.0 | -2.0 ± 1.4 |" in table
    assert fmt_mean_std([1.0]) == "1.0" and fmt_mean_std([]) == "–"


def test_paired_differences_pair_by_seed_not_by_position():
    def run(seed, h):
        return {"seed": seed, "mIoU_seen": h, "mIoU_unseen": h, "hIoU": h}

    # a resumed ablation part-way: the full model has seeds 0-2, the variant only 1 and 2
    groups = {"full": [run(0, 50), run(1, 60), run(2, 70)], "off": [run(1, 61), run(2, 73)]}
    table = mean_std_table(groups, reference="full")
    assert "| +2.0 ± 1.4 |" in table  # (61 - 60, 73 - 70); by position it would be +12 and +13


def test_default_training_steps_list_every_seen_class_and_no_unseen_one():
    """As the paper trains (its whole training vocabulary every iteration): all 54 seen phrases."""
    from types import SimpleNamespace

    import pytest

    from fgaseg.errors import ConfigError
    from fgaseg.synth.segtrain import SegTrainConfig, train_segmentation
    from fgaseg.synth.world import WorldConfig, generate_scenes
    from fgaseg.synth.vocabulary import build_vocabulary

    vocab = build_vocabulary(0)
    scenes = generate_scenes(WorldConfig(image_size=32), 8, 0, "train", vocab.seen_ids, vocab)
    seen_lists = []

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def parameter_groups(self, lr, clip_lr_multiplier, weight_decay):
            return [{"params": [self.w], "lr": lr}]

        def forward(self, images, names, targets):
            seen_lists.append(list(names))
            assert int(targets[targets != 255].max()) < len(names)
            loss = self.w * 0 + 1.0
            return SimpleNamespace(loss=loss, losses={"loss_sem_seg": loss})

    config = SegTrainConfig(steps=3, batch_size=2, warmup_steps=1)
    assert config.classes_per_step is None
    train_segmentation(Recorder(), scenes, config, progress=False)
    seen_phrases = {vocab.phrases[i] for i in vocab.seen_ids}
    assert len(seen_lists) == 3 and all(set(names) == seen_phrases and len(names) == 54 for names in seen_lists)
    with pytest.raises(ConfigError, match="classes_per_step"):
        SegTrainConfig(classes_per_step=0)
