"""pyproject.toml metadata that setuptools would warn about (issue #16.7)."""

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_license_is_an_spdx_expression_with_a_setuptools_that_reads_it():
    meta = tomllib.loads(PYPROJECT.read_text("utf-8"))
    assert meta["project"]["license"] == "Apache-2.0"  # not the deprecated {text = ...} table
    assert not any(c.startswith("License ::") for c in meta["project"].get("classifiers", []))
    setuptools = [r for r in meta["build-system"]["requires"] if r.startswith("setuptools")]
    assert setuptools and int(re.search(r">=(\d+)", setuptools[0]).group(1)) >= 77
