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
