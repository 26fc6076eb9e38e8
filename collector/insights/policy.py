"""The appraisal policy: a YAML (or JSON) file that says what good looks like.

    format: trust-dossier/policy/1
    rules:
      software-versions: {level: enforce, allowed: ["7.1.2"]}
      secure-boot: {level: enforce}
      known-good-files: {level: enforce, lists: [known-good.csv]}
      commits: {level: warn, max: 5, period-days: 1}

Each rule has a level: `enforce`, `warn` or `skip` (as notation's trust policy does). An
empty, unreadable or schema-invalid policy raises PolicyError: it never means "allow all".
Known-good hash lists are CSV (`path,algorithm,digest`, header optional) or JSON (a list of
`{"path", "algorithm", "digest"}`, or `{"files": [...]}`); digests in hex or base64.

`reference-values` rules are an extension point: `register_reference_provider(name, provider)`
plugs in a checker without changing this module; `cisco-kgv` (Cisco Known Good Values files,
authenticated by the verifier's `kgv` profile) is built in. A policy naming an unregistered
provider is an error.
"""

from __future__ import annotations

import base64
import binascii
import csv
import enum
import hashlib
import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

import schemas

from .errors import PolicyError

__all__ = [
    "POLICY_FORMAT",
    "AppraisalPolicy",
    "KnownGood",
    "Level",
    "Rule",
    "load_hash_list",
    "load_policy",
    "ReferenceChecker",
    "ReferenceProvider",
    "register_reference_provider",
]

POLICY_FORMAT = "trust-dossier/policy/1"
#: A policy is a few KB; hash lists may hold a whole release's files (~100k lines).
MAX_POLICY_BYTES = 1024 * 1024
MAX_HASH_LIST_BYTES = 64 * 1024 * 1024


class Level(enum.StrEnum):
    ENFORCE = "enforce"
    WARN = "warn"
    SKIP = "skip"


@dataclass(frozen=True)
class Rule:
    name: str
    level: Level
    params: dict[str, Any] = field(default_factory=dict)


def _normal_algorithm(name: str) -> str:
    return name.replace("-", "").replace("_", "").lower()


def _digest_bytes(text: str, where: str) -> bytes:
    text = text.strip()
    if len(text) % 2 == 0 and len(text) >= 32 and all(c in "0123456789abcdefABCDEF" for c in text):
        return bytes.fromhex(text)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise PolicyError(f"{where}: expected a digest in hex or base64, found {text[:40]!r}") from None


class KnownGood:
    """Reference digests by path: `check(path, algorithm, digest_b64)` -> None when unlisted.

    Digests are kept as canonical base64 (what dossiers carry), so checking a 20,000-file
    inventory is one dict lookup and one string comparison per file, no decoding.
    """

    def __init__(self) -> None:
        self._by_path: dict[str, dict[str, set[str]]] = {}
        self._algorithms: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._by_path)

    def add(self, path: str, algorithm: str, digest: str, where: str) -> None:
        canonical = base64.b64encode(_digest_bytes(digest, where)).decode("ascii")
        self._by_path.setdefault(path, {}).setdefault(_normal_algorithm(algorithm), set()).add(canonical)

    def lists(self, path: str) -> bool:
        """Whether any reference digest is listed for `path`."""
        return path in self._by_path

    def check(self, path: str, algorithm: str, digest_b64: str) -> bool | None:
        """True: a listed digest; False: listed path, other digest; None: nothing to compare."""
        listed = self._by_path.get(path)
        if listed is None:
            return None
        normal = self._algorithms.get(algorithm)
        if normal is None:
            normal = self._algorithms[algorithm] = _normal_algorithm(algorithm)
        wanted = listed.get(normal)
        if wanted is None:
            return None
        return digest_b64 in wanted


def load_hash_list(path: Path, into: KnownGood | None = None) -> KnownGood:
    """Read a CSV or JSON known-good list; raises PolicyError naming the file and line."""
    known = into if into is not None else KnownGood()
    try:
        if path.stat().st_size > MAX_HASH_LIST_BYTES:
            raise PolicyError(f"{path}: over {MAX_HASH_LIST_BYTES} bytes; not a hash list")
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read known-good list {path}: {exc}") from None
    if not text.strip():
        raise PolicyError(f"known-good list {path} is empty; a list must name at least one file")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise PolicyError(f"{path}: not JSON ({exc})") from None
        entries = data.get("files") if isinstance(data, dict) else data
        if not isinstance(entries, list) or not entries:
            raise PolicyError(f"{path}: expected a non-empty list of {{path, algorithm, digest}} "
                              "(or {\"files\": [...]}), found something else")
        for number, entry in enumerate(entries):
            if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("path", "algorithm", "digest")):
                raise PolicyError(f"{path}: entry {number}: expected path, algorithm and digest strings, "
                                  f"found {entry!r:.80}")
            known.add(entry["path"], entry["algorithm"], entry["digest"], f"{path}: entry {number}")
        return known
    rows = csv.reader(io.StringIO(text))
    for number, row in enumerate(rows, start=1):
        cells = [cell.strip() for cell in row]
        if not cells or not any(cells) or cells[0].startswith("#"):
            continue
        if number == 1 and [c.lower() for c in cells] == ["path", "algorithm", "digest"]:
            continue
        if len(cells) != 3:
            raise PolicyError(f"{path}: line {number}: expected 3 columns (path,algorithm,digest), "
                              f"found {len(cells)}")
        known.add(cells[0], cells[1], cells[2], f"{path}: line {number}")
    if not len(known):
        raise PolicyError(f"known-good list {path} lists no file")
    return known


#: A loaded reference-value check of an `Evidence` (its dossier or its measurements): messages,
#: one per violation, or None when the evidence lacks what it needs.
ReferenceChecker = Callable[[Any], "list[str] | None"]
#: A provider builds a checker from the rule's parameters once, when the policy loads (reading
#: and authenticating its reference file then); it raises PolicyError when it cannot.
ReferenceProvider = Callable[[Mapping[str, Any], "Path | None"], ReferenceChecker]


def _cisco_kgv(params: Mapping[str, Any], base: Path | None) -> ReferenceChecker:
    from .kgv import kgv_checker  # imports the verifier's KGV profile only when a policy uses it

    return kgv_checker(params, base)


_REFERENCE_PROVIDERS: dict[str, ReferenceProvider] = {"cisco-kgv": _cisco_kgv}


def register_reference_provider(name: str, provider: ReferenceProvider) -> None:
    """Plug in a reference-value provider for `reference-values: {provider: NAME, ...}` rules."""
    _REFERENCE_PROVIDERS[name] = provider


@dataclass
class AppraisalPolicy:
    """A loaded policy: rules by name, with reference lists read once."""

    rules: dict[str, Rule]
    name: str = "policy"
    source: str | None = None
    sha256: str | None = None
    known_good: KnownGood = field(default_factory=KnownGood)
    reference_checker: ReferenceChecker | None = None

    def rule(self, name: str) -> Rule | None:
        return self.rules.get(name)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "sha256": self.sha256,
                "rules": {name: str(rule.level) for name, rule in sorted(self.rules.items())}}

    @classmethod
    def from_document(cls, document: Any, *, where: str = "policy", base: Path | None = None,
                      digest: str | None = None) -> AppraisalPolicy:
        """Build a policy from parsed YAML/JSON; raises PolicyError when it is empty or invalid."""
        if document is None or document == {} or document == "":
            raise PolicyError(f"{where} is empty; an empty policy would pass everything, so it is "
                              "refused. Write at least one rule (see schemas/policy.schema.json)")
        validator = jsonschema.Draft202012Validator(schemas.load("policy"))
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
        if errors:
            shown = "; ".join(f"/{'/'.join(map(str, e.absolute_path))}: {e.message[:160]}" for e in errors[:5])
            raise PolicyError(f"{where} does not match schemas/policy.schema.json: {shown}")
        rules = {name: Rule(name, Level(body["level"]), {k: v for k, v in body.items() if k != "level"})
                 for name, body in document["rules"].items()}
        policy = cls(rules=rules, name=document.get("name", "policy"), source=where, sha256=digest)
        good = rules.get("known-good-files")
        if good is not None and good.level is not Level.SKIP:
            for entry in good.params.get("files", []):
                policy.known_good.add(entry["path"], entry["algorithm"], entry["digest"], f"{where}: files")
            for listed in good.params.get("lists", []):
                list_path = Path(listed)
                if not list_path.is_absolute() and base is not None:
                    list_path = base / list_path
                load_hash_list(list_path, policy.known_good)
        reference = rules.get("reference-values")
        if reference is not None and reference.level is not Level.SKIP:
            provider = reference.params["provider"]
            if provider not in _REFERENCE_PROVIDERS:
                raise PolicyError(
                    f"{where}: reference-values names provider {provider!r}, but none is registered "
                    f"(registered: {', '.join(sorted(_REFERENCE_PROVIDERS)) or 'none'}); set the rule "
                    "to `level: skip` or install the provider")
            policy.reference_checker = _REFERENCE_PROVIDERS[provider](reference.params, base)
        return policy


def load_policy(path: str | Path) -> AppraisalPolicy:
    """Read and check a policy file; raises PolicyError when it is missing, empty or invalid."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_POLICY_BYTES:
            raise PolicyError(f"{path}: over {MAX_POLICY_BYTES} bytes; not a policy file")
        raw = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"cannot read policy {path}: {exc.strerror or exc}; expected a YAML "
                          "policy file (schemas/policy.schema.json)") from None
    try:
        document = yaml.safe_load(raw.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise PolicyError(f"policy {path} is not readable YAML/JSON: {exc}") from None
    return AppraisalPolicy.from_document(document, where=str(path), base=path.parent,
                                digest=hashlib.sha256(raw).hexdigest())
