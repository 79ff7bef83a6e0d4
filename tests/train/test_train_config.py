"""YAML configs: the shipped recipes load with the paper's values; overrides and errors."""

from pathlib import Path

import pytest

from fgaseg.errors import ConfigError
from fgaseg.train.config import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name,preset", [("fgaseg_vitb16_384", "fgaseg_vitb16_384"),
                                         ("fgaseg_vitl14_336", "fgaseg_vitl14_336")])
def test_recipe_configs(name, preset):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert cfg.model.preset == preset
    assert cfg.optim.lr == 2e-4 and cfg.optim.clip_lr_multiplier == 0.01
    assert cfg.optim.weight_decay == 1e-4 and cfg.optim.grad_clip == 0.01
    assert cfg.optim.warmup_iters == 0
    assert cfg.max_iters == 80000 and cfg.batch_size == 8
    assert cfg.data.dataset == "coco171" and cfg.data.flip and cfg.data.photometric


def test_tiny_config_and_overrides():
    cfg = load_config(CONFIGS / "tiny_cpu.yaml", ["optim.lr=1e-4", "max_iters=7",
                                                   "data.root=/tmp/x", "model.overrides={topk: 4}"])
    assert cfg.data.dataset == "folder"
    assert cfg.optim.lr == 1e-4 and cfg.max_iters == 7 and cfg.data.root == "/tmp/x"
    assert cfg.model.overrides == {"topk": 4}


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key"):
        load_config(None, ["optim.learning_rate=1"])
    with pytest.raises(ConfigError, match="divisible"):
        load_config(None, ["batch_size=8", "grad_accum=3"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_iters: [1,\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="expects float"):
        load_config(None, ["optim.lr=fast"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["max_iters"])
