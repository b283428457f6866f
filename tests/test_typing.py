"""The package says it is typed (PEP 561), so a user's type checker reads nudgesim's hints
instead of treating every name as Any; mypy itself runs in .ci/run."""

from __future__ import annotations

import tomllib
from importlib.resources import files
from pathlib import Path

PYPROJECT = Path(__file__).parents[1] / "pyproject.toml"


def test_py_typed_is_in_the_package_and_in_its_package_data():
    assert files("nudgesim").joinpath("py.typed").is_file()
    config = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["nudgesim"]
    mypy = config["tool"]["mypy"]
    assert mypy["packages"] == ["nudgesim"] and "pydantic.mypy" in mypy["plugins"]
