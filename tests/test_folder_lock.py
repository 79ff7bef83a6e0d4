"""Two jobs never write one output folder at once."""

import pytest

from fgaseg.errors import ConfigError
from fgaseg.folder_lock import folder_lock

pytest.importorskip("fcntl")


def test_a_second_holder_is_refused_in_one_line_and_the_lock_is_released(tmp_path):
    with folder_lock(tmp_path / "out", "job"):
        with pytest.raises(ConfigError, match=r"being written by another job \(pid \d+\)") as error:
            with folder_lock(tmp_path / "out", "job"):
                pass
        assert "\n" not in str(error.value)
    with folder_lock(tmp_path / "out", "job"):  # free again once the first holder is done
        pass


def test_a_second_ablation_into_a_busy_folder_is_refused_before_any_work(tmp_path):
    from fgaseg.synth.ablation import run_ablations
    from fgaseg.synth.benchmark import smoke_config

    with folder_lock(tmp_path, "fgaseg ablation"):
        with pytest.raises(ConfigError, match="being written by another fgaseg ablation"):
            run_ablations(smoke_config(), tmp_path, seeds=(0,), progress=False, log=lambda *_: None)
    assert not (tmp_path / "ablations.json").exists()
