"""The installed version of Parley, read from the package metadata (one source: pyproject)."""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError, version


@cache
def package_version() -> str:
    """The installed distribution's version, e.g. ``0.1.0``."""
    try:
        return version("parley")
    except PackageNotFoundError:  # a source tree run without being installed
        return "0+unknown"
