"""Reading official checkpoints safely, recognising them, and one-line errors for bad files."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from fgaseg.convert import (
    convert_official_checkpoint,
    is_official_checkpoint,
    load_official_model_dict,
    read_checkpoint_file,
)
from fgaseg.errors import WeightsError

from official_keys import VARIANTS, make_official_state_dict, official_state_dict_spec


@pytest.fixture(scope="module")
def catseg_b16_state():
    """The official CAT-Seg ViT-B/16 dict without CLIP's big tensors (reading needs no 600 MB)."""
    full = make_official_state_dict("catseg_vitb16", seed=1)
    return {k: v.contiguous() for k, v in full.items() if ".clip_model." not in k or v.numel() < 10_000}


KEY = "sem_seg_head.predictor.clip_model.visual.class_embedding"


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and message
    return message


def test_detectron2_pth_roundtrip(tmp_path, catseg_b16_state):
    path = tmp_path / "model_final.pth"
    # what detectron2's DefaultTrainer + DetectionCheckpointer write next to the model
    param = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.AdamW([param], lr=2e-4, weight_decay=1e-4)
    param.grad = torch.ones(3)
    optimizer.step()
    trainer = {"iteration": 79999, "optimizer": optimizer.state_dict(),
               "hooks": {"detectron2.engine.hooks.LRScheduler": {"base_lrs": [2e-4], "last_epoch": 79999}}}
    torch.save({"model": catseg_b16_state, "trainer": trainer, "iteration": 79999}, path)
    assert is_official_checkpoint(path)
    model = load_official_model_dict(path)
    assert set(model) == set(catseg_b16_state)
    key = "sem_seg_head.predictor.transformer.conv1.weight"
    assert torch.equal(model[key], catseg_b16_state[key])


def test_detectron2_pkl_of_numpy_arrays(tmp_path, catseg_b16_state):
    path = tmp_path / "model_final.pkl"
    numpy_model = {key: value.numpy() for key, value in catseg_b16_state.items()}
    with open(path, "wb") as handle:
        pickle.dump({"model": numpy_model, "__author__": "detectron2", "matching_heuristics": True}, handle)
    assert is_official_checkpoint(path)
    model = load_official_model_dict(path)
    key = "upsample1.weight"
    assert isinstance(model[key], torch.Tensor)
    assert torch.equal(model[key], catseg_b16_state[key])


def test_bare_model_dict_with_ddp_prefix(catseg_b16_state):
    wrapped = {"module." + key: value for key, value in catseg_b16_state.items()}
    assert is_official_checkpoint(wrapped)
    assert set(load_official_model_dict(wrapped)) == set(catseg_b16_state)


def test_pickle_with_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    path = tmp_path / "evil.pkl"
    with open(path, "wb") as handle:
        pickle.dump({"model": {KEY: Evil()}}, handle)
    with pytest.raises(WeightsError) as exc:
        read_checkpoint_file(path)
    message = _one_line(exc)
    assert "allow-pickle" in message and "builtins.print" in message


def test_pth_with_objects_is_refused_unless_allowed(tmp_path, catseg_b16_state):
    path = tmp_path / "objects.pth"
    torch.save({"model": catseg_b16_state, "cfg": pickle.PickleError("x")}, path)
    with pytest.raises(WeightsError) as exc:
        read_checkpoint_file(path)
    message = _one_line(exc)
    assert "allow_pickle" in message and "pickle.PickleError" in message
    assert "model" in read_checkpoint_file(path, allow_pickle=True)


@pytest.mark.parametrize("case", ["missing", "empty", "folder", "text", "truncated", "garbage_zip"])
def test_unreadable_files_give_one_line_errors(tmp_path, catseg_b16_state, case):
    path = tmp_path / "ckpt.pth"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "folder":
        path.mkdir()
    elif case == "text":
        path.write_text("not a checkpoint\n")
    elif case == "truncated":
        small = {k: v for k, v in list(catseg_b16_state.items())[:20]}
        torch.save({"model": small}, path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif case == "garbage_zip":
        path.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 10)
    with pytest.raises(WeightsError) as exc:
        convert_official_checkpoint(path)
    assert str(path) in _one_line(exc)


def test_truncated_pickle_gives_one_line_error(tmp_path):
    path = tmp_path / "model.pkl"
    data = pickle.dumps({"model": {KEY: np.zeros((100, 100), np.float32)}})
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError) as exc:
        convert_official_checkpoint(path)
    assert "truncated or corrupt" in _one_line(exc)


def test_foreign_checkpoints_are_recognised_as_such(tmp_path):
    # a SAM-like checkpoint: a flat dict of image_encoder/prompt_encoder/mask_decoder tensors
    sam = {
        "image_encoder.patch_embed.proj.weight": torch.zeros(8, 3, 16, 16),
        "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix": torch.zeros(2, 4),
        "mask_decoder.iou_token.weight": torch.zeros(1, 8),
    }
    path = tmp_path / "sam_vit_b.pth"
    torch.save(sam, path)
    assert not is_official_checkpoint(path)
    with pytest.raises(WeightsError) as exc:
        convert_official_checkpoint(path)
    message = _one_line(exc)
    assert "not an official CAT-Seg / FGA-seg checkpoint" in message and "image_encoder" in message

    # a Mask2Former-like detectron2 model also has sem_seg_head.predictor.* keys, but no CLIP
    mask2former = tmp_path / "model_final_m2f.pth"
    torch.save({"model": {"backbone.res2.0.conv1.weight": torch.zeros(2),
                          "sem_seg_head.predictor.query_embed.weight": torch.zeros(2)}}, mask2former)
    assert not is_official_checkpoint(mask2former)
    with pytest.raises(WeightsError, match="not an official CAT-Seg / FGA-seg checkpoint"):
        convert_official_checkpoint(mask2former)

    plain = tmp_path / "random.pkl"
    with open(plain, "wb") as handle:
        pickle.dump([1, 2, 3], handle)
    assert not is_official_checkpoint(plain)
    with pytest.raises(WeightsError):
        convert_official_checkpoint(plain)


def test_variants_have_distinct_key_sets():
    specs = {name: official_state_dict_spec(name) for name in VARIANTS}
    assert len({tuple(sorted(spec.items())) for spec in specs.values()}) == len(specs)


def test_legacy_torch_format_and_allow_pickle_for_plain_pickles(tmp_path):
    small = {"model": {KEY: torch.randn(4, 1, 7, 7)}}
    legacy = tmp_path / "legacy.pth"
    torch.save(small, legacy, _use_new_zipfile_serialization=False)
    assert is_official_checkpoint(legacy)
    loaded = read_checkpoint_file(legacy)
    assert torch.equal(loaded["model"][KEY],
                       small["model"][KEY])
    plain = tmp_path / "plain.pkl"
    with open(plain, "wb") as handle:
        pickle.dump({"model": {k: v.numpy() for k, v in small["model"].items()}}, handle)
    for allow in (False, True):
        loaded = read_checkpoint_file(plain, allow_pickle=allow)
        assert isinstance(loaded["model"][KEY], torch.Tensor)


def test_safetensors_files_are_read_and_recognised_by_their_keys(tmp_path):
    from safetensors.torch import save_file

    official = tmp_path / "official.safetensors"
    save_file({KEY: torch.ones(4, 1, 7, 7)}, str(official))
    assert is_official_checkpoint(official)
    assert torch.equal(load_official_model_dict(official)[KEY],
                       torch.ones(4, 1, 7, 7))
    ours = tmp_path / "model.safetensors"
    save_file({"head.conv1.weight": torch.ones(4, 1, 7, 7)}, str(ours))
    assert not is_official_checkpoint(ours)


def test_fgaseg_pkl_is_recognised_although_its_clip_keys_come_late(tmp_path):
    # FGA-seg's predictor registers DCDT and proj before clip_model: ~25 MB precede the CLIP keys
    model = {"sem_seg_head.predictor.DCDT.gamma_text": np.zeros(512, np.float32),
             "sem_seg_head.predictor.proj.vis.1.0.weight": np.zeros((512, 512, 3, 3), np.float32),
             "sem_seg_head.predictor.proj.txt.weight": np.zeros((2305, 512), np.float32),
             KEY: np.zeros(768, np.float32)}
    path = tmp_path / "fgaseg.pkl"
    with open(path, "wb") as handle:
        pickle.dump({"model": model}, handle)
    assert is_official_checkpoint(path)
