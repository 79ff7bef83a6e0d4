"""Two jobs never write one output folder at once."""

import pytest

from fgaseg.errors import ConfigError
from fgaseg.folder_lock import folder_lock

pytest.importorskip("fcntl")


def test_a_second_holder_is_refused_in_one_line_and_the_lock_is_released(tmp_path):
    with folder_lock(tmp_path / "out", "job"):
        with pytest.raises(ConfigError, match="being written by another job right now") as error:
            with folder_lock(tmp_path / "out", "job"):
                pass
        assert "\n" not in str(error.value)
    with folder_lock(tmp_path / "out", "job"):  # free again once the first holder is done
        pass
    assert not (tmp_path / "out").exists()  # no lock file left behind, and the empty new folder gone


def test_a_file_in_place_of_the_folder_is_one_line(tmp_path):
    (tmp_path / "out").write_text("keep")
    with pytest.raises(ConfigError, match="exists and is not a folder"):
        with folder_lock(tmp_path / "out", "job"):
            pass
    assert (tmp_path / "out").read_text() == "keep"


def test_a_second_ablation_into_a_busy_folder_is_refused_before_any_work(tmp_path):
    from fgaseg.synth.ablation import run_ablations
    from fgaseg.synth.benchmark import smoke_config

    with folder_lock(tmp_path, "fgaseg ablation"):
        with pytest.raises(ConfigError, match="being written by another fgaseg ablation"):
            run_ablations(smoke_config(), tmp_path, seeds=(0,), progress=False, log=lambda *_: None)
    assert not (tmp_path / "ablations.json").exists()


def test_a_folder_made_for_a_job_that_wrote_nothing_is_removed(tmp_path):
    with pytest.raises(RuntimeError):
        with folder_lock(tmp_path / "new", "job"):
            raise RuntimeError("failed before writing")
    assert not (tmp_path / "new").exists()
    with folder_lock(tmp_path / "new", "job"):
        (tmp_path / "new" / "result.json").write_text("{}")
    assert (tmp_path / "new" / "result.json").exists()


def test_a_second_training_into_a_busy_folder_is_refused(tmp_path):
    from fgaseg.train.config import TrainConfig
    from fgaseg.train.loop.run import run_training

    config = TrainConfig()
    config.out_dir = str(tmp_path / "run")
    with folder_lock(tmp_path / "run", "fgaseg train"):
        with pytest.raises(ConfigError, match="being written by another fgaseg train"):
            run_training(config)
