"""A killed synthetic training run resumes from its checkpoint with the numbers of a straight run."""

import dataclasses

import pytest
import torch

from fgaseg.errors import ConfigError

pytest.importorskip("fgaseg.model")

from fgaseg.synth.benchmark import build_model, make_train_set, smoke_config  # noqa: E402
from fgaseg.synth.pretrain import pretrained_tiny_clip  # noqa: E402
from fgaseg.synth.segtrain import train_segmentation  # noqa: E402


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def setup():
    config = smoke_config()
    config = dataclasses.replace(config, segtrain=dataclasses.replace(config.segtrain, steps=7))
    clip, _ = pretrained_tiny_clip(config.pretrain, config.world, 0, use_cache=False, progress=False,
                                   log=lambda *_: None)
    init = build_model(clip, config).state_dict()
    return config, clip, init, make_train_set(config, progress=False)


def _fresh(setup):
    config, clip, init, train = setup
    return build_model(clip, config, init_from=init)


def test_a_resumed_run_equals_a_straight_run(setup, tmp_path):
    config, _, _, train = setup
    torch.set_num_threads(1)
    straight = _fresh(setup)
    plain = train_segmentation(straight, train, config.segtrain, seed=3, progress=False)

    killed = _fresh(setup)
    calls = {"n": 0}
    forward = killed.forward

    def dies_at_step_6(*args, **kwargs):  # like a SIGKILL after the step-4 checkpoint
        calls["n"] += 1
        if calls["n"] == 6:
            raise Killed
        return forward(*args, **kwargs)

    killed.forward = dies_at_step_6
    path = tmp_path / "run.pt"
    with pytest.raises(Killed):
        train_segmentation(killed, train, config.segtrain, seed=3, progress=False, checkpoint=path,
                           checkpoint_every=2)
    assert torch.load(path, weights_only=False)["step"] == 4

    resumed = _fresh(setup)
    stats = train_segmentation(resumed, train, config.segtrain, seed=3, progress=False, checkpoint=path,
                               checkpoint_every=2)
    assert stats["resumed_at_step"] == 4
    assert stats["loss_curve"] == plain["loss_curve"]
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_checkpoint_of_another_run_is_refused_in_one_line(setup, tmp_path):
    config, _, _, train = setup
    path = tmp_path / "run.pt"
    train_segmentation(_fresh(setup), train, config.segtrain, seed=0, progress=False, checkpoint=path)
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="another config or seed"):
        train_segmentation(_fresh(setup), train, config.segtrain, seed=1, progress=False, checkpoint=path)
    path.write_bytes(before[:100])  # truncated
    with pytest.raises(ConfigError, match="cannot resume from"):
        train_segmentation(_fresh(setup), train, config.segtrain, seed=0, progress=False, checkpoint=path)


def test_a_checkpoint_with_another_context_is_refused(setup, tmp_path):
    config, _, _, train = setup
    path = tmp_path / "run.pt"
    train_segmentation(_fresh(setup), train, config.segtrain, seed=0, progress=False, checkpoint=path,
                       context={"world": 1})
    with pytest.raises(ConfigError, match="another config or seed"):
        train_segmentation(_fresh(setup), train, config.segtrain, seed=0, progress=False, checkpoint=path,
                           context={"world": 2})


class _Payload:
    ran = False

    def __reduce__(self):  # what a doctored pickle would do on load
        return (_Payload._run, ())

    @staticmethod
    def _run():
        _Payload.ran = True


def test_a_checkpoint_holding_python_objects_is_refused_without_running_them(tmp_path):
    from fgaseg.synth.segtrain import read_run_checkpoint

    path = tmp_path / "run.pt"
    torch.save({"kind": "fgaseg synthetic training run", "payload": _Payload()}, path)
    with pytest.raises(ConfigError, match="cannot resume from"):
        read_run_checkpoint(path)
    assert not _Payload.ran
