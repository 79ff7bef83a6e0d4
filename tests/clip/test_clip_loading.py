"""load_clip: round trips through every accepted format, and every user error."""

import json

import pytest
import torch
from torch import nn

from fgaseg.clip import CLIPConfig, build_clip, load_clip, save_clip
from fgaseg.clip.key_mapping import hf_config_dict, pack_attention, to_hf
from fgaseg.errors import WeightsError


class _Root(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _module_holding(state):
    """An nn.Module whose state_dict is exactly ``state`` (for TorchScript archives)."""
    root = _Root()
    for key, value in state.items():
        *path, leaf = key.split(".")
        module = root
        for part in path:
            if not hasattr(module, part):
                module.add_module(part, nn.Module())
            module = getattr(module, part)
        if value.is_floating_point():
            module.register_parameter(leaf, nn.Parameter(value.clone(), requires_grad=False))
        else:
            module.register_buffer(leaf, value.clone())
    return root


# small vocabulary and context keep the files tiny; heads = width // 64 as in OpenAI's models
SMALL = CLIPConfig(embed_dim=64, image_resolution=32, vision_layers=2, vision_width=128,
                   vision_patch_size=8, context_length=16, vocab_size=500,
                   transformer_width=64, transformer_layers=2)


@pytest.fixture(scope="module")
def reference():
    return build_clip(SMALL, seed=0).eval()


@pytest.fixture(scope="module")
def inputs():
    generator = torch.Generator().manual_seed(0)
    ids = torch.zeros(2, 16, dtype=torch.long)
    ids[0, :5] = torch.tensor([498, 7, 30, 200, 499])  # 499 plays EOT (the largest id)
    ids[1, :3] = torch.tensor([498, 12, 499])
    return torch.randn(2, 3, 32, 48, generator=generator), ids


def _outputs(model, inputs):
    images, ids = inputs
    with torch.no_grad():
        dense = model.encode_image_dense(images, layers=(1,))
        return [model.encode_image(images), model.encode_text(ids), dense.tokens, dense.layers[0]]


def _assert_same(model, reference, inputs):
    assert model.config == reference.config
    for got, expected in zip(_outputs(model, inputs), _outputs(reference, inputs)):
        assert torch.equal(got, expected)


def _openai_state(model):
    """OpenAI layout: packed in_proj_weight plus the int entries OpenAI's archives hold."""
    state = pack_attention(model.state_dict())
    state["input_resolution"] = torch.tensor(model.config.image_resolution)
    state["context_length"] = torch.tensor(model.config.context_length)
    state["vocab_size"] = torch.tensor(model.config.vocab_size)
    return state


def _write_hf_folder(model, folder):
    transformers = pytest.importorskip("transformers")
    hf = transformers.CLIPModel(transformers.CLIPConfig(**hf_config_dict(model.config)))
    hf.load_state_dict(to_hf(model.state_dict()), strict=False)
    hf.save_pretrained(folder)
    return folder


def _write(kind, model, tmp_path):
    from safetensors.torch import save_file

    state = {k: v.clone() for k, v in model.state_dict().items()}
    if kind == "openai_torchscript":
        path = tmp_path / "ViT-tiny.pt"
        torch.jit.script(_module_holding(_openai_state(model))).save(str(path))
    elif kind == "openai_state_dict":
        path = tmp_path / "openai.pt"
        torch.save(_openai_state(model), path)
    elif kind == "open_clip_pt":
        path = tmp_path / "epoch_3.pt"
        packed = pack_attention(state)
        torch.save({"epoch": 3, "name": "run", "state_dict": {f"module.{k}": v for k, v in packed.items()}}, path)
    elif kind == "open_clip_bin":
        path = tmp_path / "open_clip_pytorch_model.bin"
        torch.save(pack_attention(state), path)
    elif kind == "open_clip_safetensors":
        path = tmp_path / "open_clip_model.safetensors"
        save_file({k: v.contiguous() for k, v in pack_attention(state).items()}, str(path))
    elif kind == "catseg_split_state_dict":
        path = tmp_path / "clip_split.pth"
        torch.save(state, path)
    elif kind == "hf_folder":
        path = _write_hf_folder(model, tmp_path / "hf")
    elif kind == "hf_safetensors_file":
        path = _write_hf_folder(model, tmp_path / "hf") / "model.safetensors"
    elif kind == "fgaseg_safetensors":
        path = save_clip(model, tmp_path / "clip.safetensors")
    return path


FORMATS = ["openai_torchscript", "openai_state_dict", "open_clip_pt", "open_clip_bin",
           "open_clip_safetensors", "catseg_split_state_dict", "hf_folder",
           "hf_safetensors_file", "fgaseg_safetensors"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("kind", FORMATS)
def test_round_trip_gives_identical_outputs(kind, reference, inputs, tmp_path):
    path = _write(kind, reference, tmp_path)
    model = load_clip(str(path))
    assert not model.training
    _assert_same(model, reference, inputs)


def test_save_clip_keeps_non_default_head_counts(inputs, tmp_path):
    model = build_clip(CLIPConfig(**{**SMALL.to_dict(), "vision_heads": 4}), seed=1)
    loaded = load_clip(save_clip(model, tmp_path / "c.safetensors"))
    assert loaded.config.vision_heads == 4
    _assert_same(loaded, model.eval(), inputs)


def _error(source, **kwargs):
    with pytest.raises(WeightsError) as info:
        load_clip(source, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_file(tmp_path):
    assert "not found" in _error(str(tmp_path / "nope.pt"))
    assert "not found" in _error(tmp_path / "dir" / "clip.safetensors")


def test_unknown_format(tmp_path):
    path = tmp_path / "weights.pt"
    path.write_text("this is not a checkpoint\n")
    assert "unknown weights format" in _error(path)
    torch.save({"epoch": 1, "note": "no tensors"}, tmp_path / "empty.pt")
    assert "unknown weights format" in _error(tmp_path / "empty.pt")
    (tmp_path / "emptydir").mkdir()
    assert "no weights in folder" in _error(tmp_path / "emptydir")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("kind", ["openai_state_dict", "openai_torchscript", "fgaseg_safetensors"])
def test_truncated_file(kind, reference, tmp_path):
    path = _write(kind, reference, tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "truncated or corrupt" in _error(path)


def test_missing_and_unexpected_keys_are_named(reference, tmp_path):
    state = dict(reference.state_dict())
    del state["visual.ln_post.bias"]
    state["extra.head.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "bad.pt")
    message = _error(tmp_path / "bad.pt")
    assert "missing keys (1): visual.ln_post.bias" in message
    assert "unexpected keys (1): extra.head.weight" in message


def test_shape_mismatch(reference, tmp_path):
    state = dict(reference.state_dict())
    state["visual.proj"] = torch.zeros(128, 32)
    torch.save(state, tmp_path / "bad.pt")
    message = _error(tmp_path / "bad.pt")
    assert "shape mismatch for visual.proj" in message and "(128, 32)" in message
    good = save_clip(reference, tmp_path / "good.safetensors")
    other = type(reference.config)(**{**reference.config.to_dict(), "embed_dim": 32})
    assert "shape mismatch for" in _error(good, config=other)


def test_not_a_clip_checkpoint_and_resnet(tmp_path):
    torch.save({"backbone.conv.weight": torch.zeros(2)}, tmp_path / "other.pt")
    assert "not a CLIP ViT checkpoint" in _error(tmp_path / "other.pt")
    torch.save({"visual.layer1.0.conv1.weight": torch.zeros(2)}, tmp_path / "rn50.pt")
    assert "ResNet" in _error(tmp_path / "rn50.pt")


def test_hf_config_with_gelu_is_refused(reference, tmp_path):
    folder = _write_hf_folder(reference, tmp_path / "hf")
    config = json.loads((folder / "config.json").read_text())
    config["vision_config"]["hidden_act"] = "gelu"
    (folder / "config.json").write_text(json.dumps(config))
    assert "'gelu'" in _error(folder)


def test_hub_id_offline_and_uncached_says_how_to_pass_a_file(monkeypatch):
    huggingface_hub = pytest.importorskip("huggingface_hub")

    def offline(*args, **kwargs):
        raise huggingface_hub.errors.LocalEntryNotFoundError(
            "Cannot find the requested files in the disk cache and outgoing traffic has been\ndisabled."
        )

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    message = _error("openai/clip-vit-base-patch16")
    assert "Hugging Face hub" in message and "local file" in message


def test_hub_id_uses_the_downloaded_snapshot(reference, inputs, tmp_path, monkeypatch):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    folder = _write_hf_folder(reference, tmp_path / "snapshot")
    calls = []

    def cached(repo_id, filename, **kwargs):
        calls.append((repo_id, filename))
        return str(folder / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", cached)
    _assert_same(load_clip("someone/tiny-clip"), reference, inputs)
    assert calls[0] == ("someone/tiny-clip", "model.safetensors")
