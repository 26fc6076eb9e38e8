"""The JSON Schemas of the API's responses (`schemas/api-*.schema.json`) as the OpenAPI document
and the tests use them: a `$ref` to another schema file ("api-device-row.schema.json") is
replaced by that schema, so each response schema stands alone."""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

import schemas

__all__ = ["response_schema"]

_SCHEMA_SUFFIX = ".schema.json"


@cache
def _bundled(name: str) -> dict[str, Any]:
    return _inline(copy.deepcopy(schemas.load(name)), top=True)  # type: ignore[no-any-return]


def response_schema(name: str) -> dict[str, Any]:
    """The schema `schemas/<name>.schema.json` with the other files it refers to inlined."""
    return copy.deepcopy(_bundled(name))


def _inline(node: Any, *, top: bool = False) -> Any:
    if isinstance(node, dict):
        reference = node.get("$ref")
        if isinstance(reference, str) and reference.endswith(_SCHEMA_SUFFIX):
            return _bundled(reference.removesuffix(_SCHEMA_SUFFIX))
        inlined = {key: _inline(value) for key, value in node.items()}
        if not top:
            # An inlined schema keeps its `$id`: it is then an embedded resource, and its own
            # "#/$defs/..." references resolve within it.
            inlined.pop("$schema", None)
        return inlined
    if isinstance(node, list):
        return [_inline(item) for item in node]
    return node
