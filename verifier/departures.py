"""How a dossier departs from schemas/dossier.schema.json, each departure told tolerable or not.

The schema's payload members are inferred from Cisco's YANG models, not from every release's
output. A newer or older IOS XR release may add a member or an item, or leave a payload member
out: the dossier is still authentic and fresh, only shaped otherwise, so such a departure is
*tolerable* (a warning unless the policy is strict). A value that breaks its rule (wrong type,
out of range, not in the enumeration) or a missing member the verifier itself reads is not: it
makes the content ambiguous.

`jsonschema` names the departures; this module only sorts them and says each one plainly (the
JSON path, the rule, what was expected and what was found).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["Departure", "departures"]

# Members the verifier reads itself: without them it cannot tell what the dossier says.
RELIED_ON = frozenset({"model-name", "nonce", "result-code"})
_SHOWN_CHARS = 80  # a found value is shown up to this many characters (device text is untrusted)
_ARRAY_INDEX = re.compile(r"/\d+(?=/|$)")


@dataclass(frozen=True, slots=True)
class Departure:
    """One way the dossier differs from the schema; `places` counts where it recurs (the same
    rule and member at other array indices: a new member in every file entry is one departure)."""

    path: str  # JSON Pointer of the member or value (RFC 6901)
    rule: str  # the schema keyword that failed, with its value when short
    expected: str
    found: str
    tolerable: bool
    places: int = 1

    def message(self) -> str:
        more = f" (and {self.places - 1} more place(s) like it)" if self.places > 1 else ""
        kind = "unexpected content" if self.tolerable else "content the schema does not allow"
        return (f"{self.path or '/'}: {kind}, rule {self.rule}: expected {self.expected}, "
                f"found {self.found}{more}")


def departures(errors: Iterable[Any]) -> list[Departure]:
    """The departures `jsonschema`'s errors describe, alike ones at other array indices merged,
    ambiguous ones first."""
    merged: dict[tuple[bool, str, str], Departure] = {}
    for error in errors:
        for one in _leaves(error):
            key = (one.tolerable, one.rule, _ARRAY_INDEX.sub("/*", one.path))
            seen = merged.get(key)
            if seen is None:
                merged[key] = one
            elif seen.path != one.path:
                merged[key] = Departure(seen.path, seen.rule, seen.expected, seen.found, seen.tolerable,
                                        seen.places + 1)
    return sorted(merged.values(), key=lambda d: d.tolerable)


def _leaves(error: Any) -> list[Departure]:
    if error.validator in ("oneOf", "anyOf") and error.context:
        # The instance failed every alternative: judge it by the one it comes closest to (an
        # item whose result-code is "Success" by the success shape, a failed item by the other).
        branches: dict[Any, list[Any]] = {}
        for sub in error.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        candidates = [list(dict.fromkeys(leaf for sub in subs for leaf in _leaves(sub))) for subs in branches.values()]
        return min(candidates, key=lambda leaves: (sum(not leaf.tolerable for leaf in leaves), len(leaves)))
    path = _pointer(error.absolute_path)
    if error.validator == "additionalProperties" and error.validator_value is False and isinstance(error.instance, dict):
        allowed = error.schema.get("properties", {})
        return [
            Departure(f"{path}/{_escape(name)}", "additionalProperties: false",
                      "only the members " + ", ".join(map(repr, allowed)), f"the member {name!r} = {_show(value)}",
                      tolerable=True)
            for name, value in error.instance.items() if name not in allowed
        ]
    if error.validator == "required" and isinstance(error.instance, dict):
        return [
            Departure(f"{path}/{_escape(name)}", "required", f"the member {name!r}", "none",
                      tolerable=name not in RELIED_ON)
            for name in error.validator_value if name not in error.instance
        ]
    return [Departure(path, f"{error.validator}: {_show(error.validator_value)}", _show(error.validator_value),
                      _show(error.instance), tolerable=False)]


def _pointer(parts: Iterable[Any]) -> str:
    return "".join(f"/{_escape(str(part))}" for part in parts)


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=True, default=str)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "..."
