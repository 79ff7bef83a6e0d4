import subprocess
import sys

from fgaseg import __version__
from fgaseg.cli import COMMANDS, HELP, main


def test_version(capsys):
    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert __version__ in capsys.readouterr().out


def test_help_lists_every_command(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out
    assert set(HELP) == set(COMMANDS)


def test_unknown_command_fails(capsys):
    try:
        rc = main(["no-such-command"])
    except SystemExit as exc:
        rc = exc.code
    assert rc != 0


def test_console_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "fgaseg", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and __version__ in out.stdout


def test_an_os_error_while_working_is_one_line_not_a_traceback(monkeypatch, tmp_path, capsys):
    import errno

    import fgaseg.synth.benchmark as benchmark
    from fgaseg.cli import main

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "results.json"))

    monkeypatch.setattr(benchmark, "run_benchmark", disk_full)
    assert main(["demo", "--smoke", "--quiet", "--out", str(tmp_path / "demo")]) == 1
    err = capsys.readouterr().err
    assert err == f"failed: {tmp_path / 'results.json'}: No space left on device\n"
