"""ONNX export with a fixed class list: faithfulness (onnxruntime vs PyTorch), metadata, CLI."""

import json

import numpy as np
import pytest
import torch

from fgaseg.cli import main
from fgaseg.errors import ClassNamesError, ConfigError
from fgaseg.predict.reference import ColourSegmenter

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from fgaseg.export import FixedClassSegmenter, export_onnx  # noqa: E402


def _run_onnx(path, images):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": images.numpy()})[0]


def test_colour_segmenter_round_trip(tmp_path):
    segmenter = ColourSegmenter()
    report = export_onnx(segmenter, "red, blue, green", tmp_path / "m.onnx", image_size=(24, 40),
                         exporter="torchscript")
    assert report.max_abs_diff is not None and report.max_abs_diff <= 1e-3
    images = torch.rand(1, 3, 24, 40)
    expected = segmenter.segment_logits(images, ["red", "blue", "green"])
    np.testing.assert_allclose(_run_onnx(tmp_path / "m.onnx", images), expected.numpy(),
                               atol=1e-4)
    model = onnx.load(str(tmp_path / "m.onnx"))
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["fgaseg.class_names"]) == ["red", "blue", "green"]
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 24, 40]
    sidecar = json.loads((tmp_path / "m.onnx.json").read_text(encoding="utf-8"))
    assert sidecar["image_size"] == [24, 40] and sidecar["class_names"][0] == "red"


def test_training_free_clip_export_matches_pytorch(tmp_path):
    from fgaseg.clip import build_clip
    from fgaseg.training_free import TrainingFreeSegmenter

    segmenter = TrainingFreeSegmenter(build_clip("tiny", seed=0), templates=["a photo of a {}."])
    names = ["cat", "grass", "sky", "猫"]
    for sliding in (False, True):
        report = export_onnx(segmenter, names, tmp_path / "tf.onnx", image_size=(64, 96),
                             sliding=sliding, seed=1, exporter="torchscript")
        assert report.max_abs_diff <= 1e-3
        images = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(7))
        expected = segmenter.segment_logits(images, names, sliding=sliding)
        np.testing.assert_allclose(_run_onnx(tmp_path / "tf.onnx", images), expected.numpy(),
                                   atol=1e-3)
    # the trace-time patch of the CLIP tower is undone
    assert "resized_positional_embedding" not in vars(segmenter.clip.visual)


def test_unfaithful_graph_is_detected(tmp_path):
    class DataDependent(ColourSegmenter):
        """Python-side branch on pixel values: tracing freezes one branch."""

        def segment_logits(self, images, class_names, **kw):
            logits = super().segment_logits(images, class_names, **kw)
            return logits * 3 if float(images[0, 0, 0, 0]) > 0.5 else logits

    with pytest.raises(RuntimeError, match="differs from PyTorch"):
        for seed in range(8):  # some seed puts the two images on different branches
            export_onnx(DataDependent(), "red, blue", tmp_path / "d.onnx", image_size=(8, 8),
                        seed=seed, exporter="torchscript")


def test_bad_arguments(tmp_path):
    with pytest.raises(ClassNamesError):
        export_onnx(ColourSegmenter(), "red, , blue", tmp_path / "x.onnx")
    with pytest.raises(ConfigError, match="size"):
        export_onnx(ColourSegmenter(), "red", tmp_path / "x.onnx", image_size=(0, 8))


def test_wrapper_forward_is_segment_logits():
    wrapper = FixedClassSegmenter(ColourSegmenter(), ["red", "blue"])
    images = torch.rand(2, 3, 5, 6)
    assert torch.equal(wrapper(images), ColourSegmenter().segment_logits(images, ["red", "blue"]))


def test_export_command_with_training_free_weights(tmp_path, capsys):
    from fgaseg.clip import build_clip
    from fgaseg.clip.loading import save_clip

    weights = save_clip(build_clip("tiny", seed=0), tmp_path / "clip.safetensors")
    code = main(["export", "--onnx", str(tmp_path / "out" / "tf.onnx"), "--weights", str(weights),
                 "--method", "training-free", "--classes", "cat, sky", "--size", "64x64",
                 "--exporter", "torchscript"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "matches PyTorch" in err and (tmp_path / "out" / "tf.onnx").exists()


@pytest.mark.parametrize("extra, message", [
    (["--size", "64xabc"], "--size"), (["--size", "0x64"], "--size"),
    (["--classes-file", "/no/such/classes.txt"], "not found")])
def test_export_command_usage_errors(tmp_path, capsys, monkeypatch, extra, message):
    import fgaseg.predict.loading as loading

    monkeypatch.setattr(loading, "load_segmenter", lambda *a, **k: ColourSegmenter())
    args = ["export", "--onnx", str(tmp_path / "x.onnx"), "--weights", "W"]
    if "--classes-file" not in extra:
        args += ["--classes", "cat"]
    assert main(args + extra) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


def test_export_command_missing_weights(tmp_path, capsys):
    code = main(["export", "--onnx", str(tmp_path / "x.onnx"), "--weights",
                 str(tmp_path / "none"), "--classes", "cat"])
    err = capsys.readouterr().err
    assert code == 2 and "none" in err and err.count("\n") == 1


@pytest.mark.slow
def test_export_command_with_fgaseg_weights(tmp_path, capsys):
    """The trained model end to end: save_pretrained -> fgaseg export -> onnxruntime check."""
    pytest.importorskip("onnxscript")  # FGASeg needs the dynamo exporter
    from fgaseg.model import FGASeg, fgaseg_tiny

    torch.manual_seed(0)
    weights = FGASeg(fgaseg_tiny()).save_pretrained(tmp_path / "w")
    out = tmp_path / "fgaseg.onnx"
    code = main(["export", "--onnx", str(out), "--weights", str(weights),
                 "--classes", "cat, grass, sky", "--size", "64x64"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "matches PyTorch" in err
    model = FGASeg.from_pretrained(weights).eval()
    images = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(11))
    expected = model.segment_logits(images, ["cat", "grass", "sky"], topk=0)
    np.testing.assert_allclose(_run_onnx(out, images), expected.numpy(), atol=1e-3)
