"""Lua chunks shipped as `.lua` files next to the code that runs them (`<package>/chunks/`)."""
from __future__ import annotations

from importlib import resources


def read_chunk(package: str, name: str) -> str:
    """The source of `<package>/chunks/<name>` (installed with the wheel as package data)."""
    return resources.files(package).joinpath("chunks").joinpath(name).read_text("utf-8")
