"""What the verifier asks of a JSON Schema: a fast yes or no, the messages for a no, and two
bounds read off the schema itself.

The yes/no check is `jsonschema-rs` (`yes_no_check`): it walks a large file-system inventory
faster than the text is parsed, so every document pays for it. When it says no, `jsonschema`
(`ecma_validator`) names what departs, so the slow path runs only on refused input. Should the
two disagree, the verifier fails closed on a dossier (`verify._report_departures`); the trust
store reads a file of its own that `jsonschema` accepts. Both follow draft 2020-12: booleans are not numbers, 1.0
is an integer, `format` is an annotation, and `pattern` is a search with ECMA-262's `$` (the end
of the text: Python's `re` also matches it before a final newline, so "0/RP0/CPU0\n" would pass
for a node name; `ecma_regex` rewrites it for `jsonschema`, and tests hold the two sides equal).
`instance_depth_bound` and `numbers_within` read the schema itself: how deep a valid document can
nest, and whether its numbers all lie where orjson and `json` read them alike.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = [
    "UnsupportedSchema", "ecma_regex", "ecma_validator", "instance_depth_bound", "numbers_within", "pattern_search",
    "yes_no_check",
]

_IGNORED = frozenset({"$schema", "$id", "$defs", "$comment", "title", "description", "format", "default", "examples"})
_SIMPLE = frozenset({"type", "const", "enum", "pattern", "minLength", "maxLength", "minimum", "maximum"})
# The keywords `numbers_within` weighs (any other makes it say False).
_OBJECT_AND_COMBINATORS = frozenset({
    "$ref", "required", "properties", "additionalProperties", "propertyNames", "items",
    "oneOf", "anyOf", "allOf", "not",
})


class UnsupportedSchema(ValueError):
    """A `$ref` that is not local to the schema."""


def yes_no_check(schema: dict[str, Any]) -> Callable[[Any], bool]:
    """Whether an instance is valid against `schema`, by jsonschema-rs. An instance it cannot
    take in (a string holding a lone surrogate, which is not Unicode text) is not valid: the
    caller's `ecma_validator` then says what it finds."""
    import jsonschema_rs

    is_valid = jsonschema_rs.validator_for(schema).is_valid

    def check(instance: Any) -> bool:
        try:
            return is_valid(instance)
        except (ValueError, OverflowError):  # UnicodeEncodeError is a ValueError
            return False

    return check


def ecma_regex(pattern: str) -> str:
    """`pattern` for Python's `re` with ECMA-262's `$` (the end of the text, `\\Z`): an
    unescaped `$` outside a character class is rewritten."""
    out: list[str] = []
    index, in_class = 0, False
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            out.append(pattern[index:index + 2])
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            out.append(char)
            index += 1
            for literal in ("^", "]"):  # "[^" and a ']' first in a class are not its end
                if pattern[index:index + 1] == literal:
                    out.append(literal)
                    index += 1
            continue
        elif char == "$":
            char = "\\Z"
        out.append(char)
        index += 1
    return "".join(out)


def pattern_search(pattern: str) -> Callable[[str], Any]:
    """The `search` of `pattern` with JSON Schema's (ECMA-262's) meaning of `$`."""
    return re.compile(ecma_regex(pattern)).search


def ecma_validator(schema: dict[str, Any]) -> Any:
    """A `jsonschema` Draft 2020-12 validator for `schema` whose `pattern` means what
    jsonschema-rs's does (`ecma_regex`): the two must agree, as `yes_no_check` says yes or no
    and `jsonschema` explains a no."""
    return _ecma_validator_class()(schema)


def _ecma_validator_class() -> Any:
    global _ECMA_CLASS
    if _ECMA_CLASS is None:
        import jsonschema
        from jsonschema.exceptions import ValidationError

        def pattern(validator: Any, expected: str, instance: Any, _schema: Any) -> Any:
            if validator.is_type(instance, "string") and not pattern_search(expected)(instance):
                yield ValidationError(f"{instance!r} does not match {expected!r}")

        _ECMA_CLASS = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": pattern})
    return _ECMA_CLASS


_ECMA_CLASS: Any = None


_SCALAR_TYPES = frozenset({"string", "number", "integer", "boolean", "null"})


def instance_depth_bound(schema: dict[str, Any]) -> int | None:
    """The deepest nesting (as `_strictjson.check_depth` counts it: a scalar 0, `{}` 1) of any
    instance valid against `schema`, or None when the schema allows any depth.

    A document that passed the schema check therefore needs no separate depth count when the
    bound is within the policy's limit. An upper bound, not exact: where it cannot tell (no
    `type`, `not`, a recursive `$ref`), it says unbounded.
    """

    def bound(node: Any, visiting: frozenset[int]) -> int | None:
        if node is False:
            return 0  # nothing is valid: any bound holds
        if not isinstance(node, dict) or id(node) in visiting:
            return None  # `true`, `{}` or recursion: any depth
        visiting = visiting | {id(node)}
        conjuncts: list[int | None] = []  # an instance satisfies every one: the least bound holds
        kinds = node.get("type")
        if kinds is not None:
            kinds = [kinds] if isinstance(kinds, str) else kinds
            per_kind: list[int | None] = []
            for kind in kinds:
                if kind in _SCALAR_TYPES:
                    per_kind.append(0)
                elif kind == "object":
                    extra = node.get("additionalProperties", True)
                    members = [bound(sub, visiting) for sub in node.get("properties", {}).values()]
                    members.append(0 if extra is False else bound(extra, visiting))
                    per_kind.append(None if None in members else 1 + max(members))
                elif kind == "array":
                    items = bound(node.get("items", True), visiting)
                    per_kind.append(None if items is None else 1 + items)
                else:
                    per_kind.append(None)
            conjuncts.append(None if None in per_kind else max(per_kind))
        if "const" in node or "enum" in node:
            values = node["enum"] if "enum" in node else [node["const"]]
            conjuncts.append(0 if all(not isinstance(value, (dict, list)) for value in values) else None)
        if "$ref" in node:
            try:
                target = _resolve_local(schema, node["$ref"])
            except UnsupportedSchema:
                target = True  # not followed: unbounded
            conjuncts.append(bound(target, visiting))
        for sub in node.get("allOf", ()):
            conjuncts.append(bound(sub, visiting))
        for keyword in ("oneOf", "anyOf"):  # valid against one branch at least: the largest bound
            if keyword in node:
                branches = [bound(sub, visiting) for sub in node[keyword]]
                conjuncts.append(None if None in branches else max(branches))
        known = [value for value in conjuncts if value is not None]
        return min(known) if known else None

    return bound(schema, frozenset())


def numbers_within(schema: dict[str, Any], low: int, high: int) -> bool:
    """Whether every number in every instance valid against `schema` lies within [low, high].

    Like `instance_depth_bound`, a sound under-approximation: where it cannot tell (an open
    object, untyped items, recursion, `not`), it says False.
    """

    def bounded(node: Any, visiting: frozenset[int]) -> bool:
        if node is False:
            return True
        if not isinstance(node, dict) or id(node) in visiting:
            return False
        if set(node) - _IGNORED - _SIMPLE - _OBJECT_AND_COMBINATORS:
            return False  # a keyword not weighed here (patternProperties, prefixItems, ...)
        visiting = visiting | {id(node)}
        proofs: list[bool] = []  # an instance satisfies every part: one proof is enough
        if "const" in node or "enum" in node:
            values = node["enum"] if "enum" in node else [node["const"]]
            proofs.append(all(type(value) in (str, bool, type(None))
                              or (type(value) in (int, float) and low <= value <= high) for value in values))
        kinds = node.get("type")
        if kinds is not None:
            kinds = [kinds] if isinstance(kinds, str) else kinds
            per_kind = []
            for kind in kinds:
                if kind in ("number", "integer"):
                    per_kind.append(low <= node.get("minimum", low - 1) and node.get("maximum", high + 1) <= high)
                elif kind in ("string", "boolean", "null"):
                    per_kind.append(True)
                elif kind == "object":
                    extra = node.get("additionalProperties", True)
                    per_kind.append(all(bounded(sub, visiting) for sub in node.get("properties", {}).values())
                                    and bounded(extra, visiting))
                elif kind == "array":
                    per_kind.append(bounded(node.get("items", True), visiting))
                else:
                    per_kind.append(False)
            proofs.append(all(per_kind))
        if "$ref" in node:
            try:
                proofs.append(bounded(_resolve_local(schema, node["$ref"]), visiting))
            except UnsupportedSchema:
                pass
        proofs.extend(bounded(sub, visiting) for sub in node.get("allOf", ()))
        for keyword in ("oneOf", "anyOf"):
            if keyword in node:
                proofs.append(all(bounded(sub, visiting) for sub in node[keyword]))
        return any(proofs)

    return bounded(schema, frozenset())


def _resolve_local(root: dict[str, Any], reference: str) -> Any:
    """The subschema a local `$ref` ("#/a/b") points to; UnsupportedSchema for any other."""
    if not reference.startswith("#/"):
        raise UnsupportedSchema(f"only local $ref is supported, found {reference!r}")
    node: Any = root
    for part in reference[2:].split("/"):
        node = node[part]
    return node
