"""The synthetic world: determinism, the seen/unseen split and label correctness."""

import numpy as np
import pytest
import torch

from fgaseg.errors import ConfigError
from fgaseg.synth.render import IGNORE, shape_mask, _grid
from fgaseg.synth.vocabulary import COLOURS, PATTERNS, SHAPES, build_vocabulary
from fgaseg.synth.world import WorldConfig, caption_for, generate_scenes, make_scene


def test_vocabulary_size_and_split_partition():
    vocab = build_vocabulary(0)
    assert vocab.num_classes == len(COLOURS) * len(PATTERNS) * len(SHAPES) == 72
    assert len(set(vocab.phrases)) == 72
    seen, unseen = set(vocab.seen_ids), set(vocab.unseen_ids)
    assert len(unseen) == 18 and not seen & unseen and seen | unseen == set(range(72))


@pytest.mark.parametrize("split_seed", [0, 1, 5])
def test_every_word_and_word_pair_of_unseen_classes_is_seen(split_seed):
    vocab = build_vocabulary(split_seed)
    seen_words = {w for p in vocab.seen_phrases for w in p.split()}
    seen_pairs = {(a[0], a[2]) for i, a in enumerate(vocab.attributes) if i in vocab.seen_ids}
    for i in vocab.unseen_ids:
        assert set(vocab.phrases[i].split()) <= seen_words
        assert (vocab.attributes[i][0], vocab.attributes[i][2]) in seen_pairs


def test_split_depends_on_seed_only():
    assert build_vocabulary(3) == build_vocabulary(3)
    assert build_vocabulary(0).unseen_ids != build_vocabulary(1).unseen_ids


def test_scenes_are_deterministic_and_order_independent():
    world = WorldConfig(image_size=32)
    a = generate_scenes(world, 4, seed=7, split="train")
    b = generate_scenes(world, 4, seed=7, split="train")
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    vocab = build_vocabulary(0)
    alone = make_scene(world, vocab, 7, "train", 3)  # generated on its own, not after 0..2
    np.testing.assert_array_equal(alone.image, a.images[3])
    other = generate_scenes(world, 4, seed=8, split="train")
    assert not np.array_equal(a.images, other.images)
    test = generate_scenes(world, 4, seed=7, split="test")
    assert not np.array_equal(a.images, test.images)


def test_training_scenes_use_only_allowed_classes_and_labels_are_valid():
    vocab = build_vocabulary(0)
    world = WorldConfig(image_size=48)
    scenes = generate_scenes(world, 30, seed=1, split="train", allowed_ids=vocab.seen_ids)
    values = set(np.unique(scenes.labels).tolist())
    assert IGNORE in values  # background is labelled ignore
    assert values - {IGNORE} <= set(vocab.seen_ids)
    assert not scenes.present[:, list(vocab.unseen_ids)].any()
    # every scene shows 2..4 objects, each with visible pixels
    counts = scenes.present.sum(1)
    assert counts.min() >= 1 and counts.max() <= world.max_objects


def test_label_pixels_carry_the_object_colour():
    """Solid objects' labelled pixels must be close to the class colour (labels match pixels)."""
    from fgaseg.synth.render import outline_mask

    vocab = build_vocabulary(0)
    solid = [i for i, a in enumerate(vocab.attributes) if PATTERNS[a[1]] == "solid"]
    scenes = generate_scenes(WorldConfig(image_size=64), 20, seed=2, split="test", allowed_ids=solid)
    for image, label in zip(scenes.images, scenes.labels):
        inside = ~outline_mask(label, WorldConfig().scaled_outline())  # the dark outline aside
        for class_id in np.unique(label[label != IGNORE]):
            mean = image[(label == class_id) & inside].astype(float).mean(0)
            distances = {
                name: np.linalg.norm(mean - np.asarray(rgb)) for name, rgb in COLOURS.items()
            }
            assert min(distances, key=distances.get) == vocab.phrases[class_id].split()[0]


def test_caption_lists_every_visible_object():
    vocab = build_vocabulary(0)
    world = WorldConfig(image_size=48)
    for index in range(5):
        scene = make_scene(world, vocab, 3, "test", index)
        for class_id in scene.class_ids:
            assert vocab.phrases[class_id] in scene.caption
    assert caption_for(["red solid circle"]) == "a red solid circle"
    assert caption_for(["x", "y", "z"]) == "a x, a y and a z"


def test_shapes_have_comparable_areas():
    yy, xx = _grid(64)
    areas = {s: shape_mask(s, yy, xx, (32, 32), 12, 0.3).sum() for s in SHAPES}
    assert max(areas.values()) < 2.0 * min(areas.values())


def test_dataset_items_follow_the_contract():
    scenes = generate_scenes(WorldConfig(image_size=32), 3, seed=0, split="test")
    image, label = scenes[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert label.shape == (32, 32) and label.dtype == torch.int64
    assert scenes.ignore_index == 255 and len(scenes.class_names) == 72


def test_bad_world_config_raises_config_error():
    with pytest.raises(ConfigError):
        WorldConfig(min_objects=3, max_objects=2)
    with pytest.raises(ConfigError, match="min_visible"):
        WorldConfig(min_visible=1.0)
    with pytest.raises(ConfigError, match="outline"):
        WorldConfig(outline=-1)


def test_rotation_limit_keeps_squares_upright():
    """max_rotation 0: a square is axis-aligned, so it fills its bounding box."""
    from fgaseg.synth.vocabulary import build_vocabulary

    vocab = build_vocabulary(0)
    squares = [i for i, a in enumerate(vocab.attributes) if SHAPES[a[2]] == "square"]
    for max_rotation, upright in ((0.0, True), (180.0, False)):
        world = WorldConfig(max_rotation=max_rotation)
        fills = []
        for i in range(8):
            label = generate_scenes(world, 1, i, "clip-singles", allowed_ids=squares, vocab=vocab,
                                    num_objects=1, centred=True).labels[0]
            ys, xs = np.nonzero(label != 255)
            fills.append(len(ys) / ((np.ptp(ys) + 1) * (np.ptp(xs) + 1)))
        assert (min(fills) > 0.9) == upright, fills


def test_the_first_world_is_still_drawn_pixel_for_pixel():
    """The world of the first sessions (any rotation, radius 9-17) stays reproducible: its knobs
    only map the same random draws, so the test scene 0 sums to what it did then."""
    world = WorldConfig(min_radius=9, max_radius=17, max_rotation=180, pattern_dark=(0.2, 0.4), noise=7,
                        outline=0, min_visible=0.45)
    scene = generate_scenes(world, 1, 0, "test").images[0]
    assert int(scene.astype(np.int64).sum()) == 1308413


def test_outline_marks_object_boundaries_only():
    from fgaseg.synth.render import outline_mask

    label = np.full((10, 10), 255, dtype=np.uint8)
    label[2:8, 2:8] = 1
    label[3:7, 5:10] = 2  # touches the right image border and object 1
    edge = outline_mask(label, 1)
    assert not edge[label == 255].any()  # background is never outlined
    assert edge[2, 2:8].all() and edge[2:8, 2].all()  # object 1's outer boundary
    assert edge[4, 4] and edge[4, 5]  # both sides of the boundary between objects 1 and 2
    assert not edge[4:6, 9].any()  # the image border is not an edge
    assert not edge[4, 3] and not edge[4, 8]  # interiors (no other label within one step)
    thick = outline_mask(label, 2)
    assert (thick >= edge).all() and thick[4, 3] and thick[4, 8]


def test_outline_darkens_the_silhouette():
    """Default world: object pixels on the boundary are much darker than those inside."""
    plain = generate_scenes(WorldConfig(outline=0), 4, 0, "clip-singles", num_objects=1, centred=True)
    lined = generate_scenes(WorldConfig(), 4, 0, "clip-singles", num_objects=1, centred=True)
    from fgaseg.synth.render import outline_mask

    assert (plain.labels == lined.labels).all()  # same draws, only the pixels differ
    for image, label in zip(lined.images, lined.labels):
        edge = outline_mask(label, WorldConfig().scaled_outline())
        inside = (label != 255) & ~edge
        assert edge.any() and image[edge].mean() < 0.5 * image[inside].mean()
    assert WorldConfig(image_size=32).scaled_outline() == 1 and WorldConfig(outline=0).scaled_outline() == 0


def test_scenes_rendered_by_several_processes_equal_those_rendered_by_one():
    world = WorldConfig(image_size=32)
    one = generate_scenes(world, 600, 3, "train", workers=1)
    two = generate_scenes(world, 600, 3, "train", workers=2)
    assert np.array_equal(one.images, two.images) and np.array_equal(one.labels, two.labels)
    assert one.captions == two.captions and np.array_equal(one.present, two.present)
