"""One rule for every command that writes: existing outputs are refused up front (exit 2, one
line, nothing touched) unless --overwrite / --force (issue #16.3)."""

import pytest

from fgaseg.cli import main


@pytest.mark.parametrize("command,make_args,existing", [
    ("eval", lambda t: ["--dataset", "folder", "--root", str(t / "nodata"), "--weights",
                        str(t / "noweights"), "--out", str(t / "r.json")], "r.json"),
    ("export", lambda t: ["--onnx", str(t / "m.onnx"), "--weights", str(t / "noweights"),
                          "--classes", "cat"], "m.onnx.json"),
    ("convert", lambda t: [str(t / "nockpt.pth"), "--out", str(t)], "config.json"),
    ("segment", lambda t: [str(t / "x.png"), "--classes", "cat", "--weights",
                           str(t / "noweights"), "--out", str(t)], "x.json"),
])
def test_existing_output_is_refused_before_any_work(tmp_path, capsys, command, make_args,
                                                    existing):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    (tmp_path / existing).write_text("earlier result")
    assert main([command, *make_args(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert f"{existing} already exists" in err and "--overwrite" in err
    assert (tmp_path / existing).read_text() == "earlier result"
    # with the flag the command goes on and fails on the missing weights / data instead
    for flag in ("--overwrite", "--force"):
        code = main([command, *make_args(tmp_path), flag])
        assert code == 2 and "already exists" not in capsys.readouterr().err
