"""The scenarios that ship with nudgesim, as package data.

Why here and not only in the repository: `pip install nudgesim` users have no checkout,
yet `nudgesim run` and `nudgesim viz` need a default scenario. The repository's
``experiments/scenarios`` is a link to this folder, so the docs' paths keep working.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

BOROUGH = "borough"
SMALL_TOWN = "small_town"


def folder() -> Path:
    """The folder holding the shipped scenario files."""
    root = resources.files(__name__)
    if not isinstance(root, Path):  # e.g. imported from a zip archive
        raise RuntimeError(f"nudgesim's scenarios are not files on disk ({root}); install "
                           "nudgesim unzipped")
    return root


def path(name: str) -> Path:
    """The file of a shipped scenario: ``path("borough")``."""
    return folder() / f"{name}.toml"


def names() -> list[str]:
    """Names of every shipped scenario."""
    return sorted(p.stem for p in folder().glob("*.toml"))
