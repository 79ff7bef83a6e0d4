"""Saved model folders: checksums, permissions and one-line errors (issue #16.4, .5, .7)."""

import json
import os
import struct

import pytest
import torch

from fgaseg.errors import WeightsError
from fgaseg.model import FGASeg, fgaseg_tiny
from fgaseg.model.pretrained import CONFIG_NAME, WEIGHTS_NAME
from fgaseg.train import checkpoint as ckpt


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    return FGASeg(fgaseg_tiny()).save_pretrained(tmp_path_factory.mktemp("w") / "tiny")


def copy_of(folder, tmp_path):
    out = tmp_path / "copy"
    out.mkdir()
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        (out / name).write_bytes((folder / name).read_bytes())
    return out


def test_weights_and_config_get_the_same_permissions(saved):
    weights = os.stat(saved / WEIGHTS_NAME).st_mode & 0o777
    assert weights == os.stat(saved / CONFIG_NAME).st_mode & 0o777
    assert weights & 0o044  # readable by others, like config.json (umask 022)


def test_a_flipped_byte_in_the_weights_is_a_clear_error(saved, tmp_path, monkeypatch):
    folder = copy_of(saved, tmp_path)
    data = bytearray((folder / WEIGHTS_NAME).read_bytes())
    data[len(data) - 1000] ^= 0x01  # inside some tensor: safetensors itself cannot notice
    (folder / WEIGHTS_NAME).write_bytes(bytes(data))
    with pytest.raises(WeightsError) as info:
        FGASeg.from_pretrained(folder)
    message = str(info.value)
    assert str(folder / WEIGHTS_NAME) in message and "corrupt" in message and "\n" not in message
    monkeypatch.setenv("FGASEG_VERIFY_CHECKSUMS", "0")  # the documented opt-out
    FGASeg.from_pretrained(folder)


def test_folders_without_a_checksum_still_load(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    meta = json.loads((folder / CONFIG_NAME).read_text())
    assert meta["checksums"][WEIGHTS_NAME].startswith("sha256:")
    del meta["checksums"]  # written before checksums existed
    (folder / CONFIG_NAME).write_text(json.dumps(meta))
    FGASeg.from_pretrained(folder)


def test_a_wrong_type_in_config_json_names_the_file(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    meta = json.loads((folder / CONFIG_NAME).read_text())
    meta["config"]["hidden_dim"] = "big"
    (folder / CONFIG_NAME).write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match=r"config\.json: 'hidden_dim' expects integer, got 'big'"):
        FGASeg.from_pretrained(folder)


def test_weights_without_config_json_say_so(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    (folder / CONFIG_NAME).unlink()
    for source in (folder, folder / WEIGHTS_NAME):
        with pytest.raises(WeightsError, match="holds model.safetensors but no config.json"):
            FGASeg.from_pretrained(source)


def test_a_flipped_byte_in_a_checkpoint_is_a_clear_error(tmp_path, monkeypatch):
    folder = tmp_path / "checkpoints"
    ckpt.save_checkpoint({"model": {"w": torch.arange(1000.0)}, "step": 1}, folder, step=1, keep=0)
    path = folder / "last.pt"
    data = path.read_bytes()
    at = data.index(struct.pack("<f", 500.0))
    path.write_bytes(data[:at] + struct.pack("<f", 501.0) + data[at + 4:])
    with pytest.raises(WeightsError, match="last.pt is corrupt"):
        ckpt.load_checkpoint(path)
    monkeypatch.setenv("FGASEG_VERIFY_CHECKSUMS", "off")
    assert ckpt.load_checkpoint(path)["model"]["w"][500] == 501.0
