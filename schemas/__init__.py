"""JSON Schemas for every file format trust-dossier reads or writes.

`load(name)` returns a parsed schema, e.g. `load("dossier")` for `dossier.schema.json`.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["load", "names"]


@cache
def load(name: str) -> dict[str, Any]:
    """Return the schema `<name>.schema.json`; raises FileNotFoundError if there is none."""
    text = resources.files(__name__).joinpath(f"{name}.schema.json").read_text("utf-8")
    return json.loads(text)


def names() -> list[str]:
    """Names of every schema shipped in this package."""
    return sorted(
        entry.name.removesuffix(".schema.json")
        for entry in resources.files(__name__).iterdir()
        if entry.name.endswith(".schema.json")
    )
