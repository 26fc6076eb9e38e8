"""API tokens: a name, a scope (`read` or `admin`) and a secret shown once; the tokens file keeps
only a salted hash of each secret (schemas/service-tokens.schema.json), mode 0600.

A secret is 32 random bytes, so one salted SHA-256 is enough: a slow password hash protects
guessable secrets, and these are not guessable (docs/design/service.md).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ServiceError

__all__ = ["ADMIN", "READ", "SCOPES", "TOKEN_PREFIX", "TOKENS_FORMAT", "Token", "Tokens"]

TOKENS_FORMAT = "trust-dossier/service-tokens/1"
READ, ADMIN = "read", "admin"
#: Each scope and the scopes it includes.
SCOPES = {READ: frozenset({READ}), ADMIN: frozenset({READ, ADMIN})}
#: Secrets start with this, so a leaked one is recognisable (secret scanners, logs).
TOKEN_PREFIX = "dtk_"
_SECRET_BYTES = 32
#: A tokens file larger than this is not one we wrote (a few hundred bytes per token).
MAX_TOKENS_FILE_BYTES = 1024 * 1024
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


@dataclass(frozen=True)
class Token:
    """One token as the file keeps it (no secret)."""

    name: str
    scope: str
    salt: str
    sha256: str
    created: str

    def matches(self, secret: str) -> bool:
        digest = hashlib.sha256(bytes.fromhex(self.salt) + secret.encode("utf-8", "surrogatepass")).hexdigest()
        return hmac.compare_digest(digest, self.sha256)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "scope": self.scope, "salt": self.salt, "sha256": self.sha256,
                "created": self.created}


class Tokens:
    """The tokens of a tokens file (empty when the file does not exist)."""

    def __init__(self, path: Path | None, tokens: list[Token] | None = None) -> None:
        self.path = path
        self.tokens = tokens or []

    @classmethod
    def load(cls, path: Path | None) -> Tokens:
        """Read `path`; raises ServiceError when it is not a tokens file."""
        if path is None or not path.exists():
            return cls(path)
        try:
            with path.open("rb") as handle:
                raw = handle.read(MAX_TOKENS_FILE_BYTES + 1)
        except OSError as exc:
            raise ServiceError(f"cannot read the tokens file {path}: {exc.strerror}") from None
        if len(raw) > MAX_TOKENS_FILE_BYTES:
            raise ServiceError(f"expected a tokens file under {MAX_TOKENS_FILE_BYTES} bytes at {path}, found a "
                               "larger file")
        try:
            data = json.loads(raw)
            if data.get("format") != TOKENS_FORMAT:
                raise ValueError(f"format {data.get('format')!r}")
            tokens = [Token(**{key: str(entry[key]) for key in ("name", "scope", "salt", "sha256", "created")})
                      for entry in data["tokens"]]
            for token in tokens:
                if token.scope not in SCOPES:
                    raise ValueError(f"scope {token.scope!r}")
                bytes.fromhex(token.salt)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ServiceError(f"expected a tokens file ({TOKENS_FORMAT}) at {path}, found something else: {exc}; "
                               "remove it and add the tokens again") from None
        return cls(path, tokens)

    def __bool__(self) -> bool:
        return bool(self.tokens)

    def add(self, name: str, scope: str) -> str:
        """Add a token and save the file; returns its secret (shown once, never stored)."""
        if not name or len(name) > 64 or not set(name) <= _NAME_CHARS:
            raise ServiceError(f"expected a token name of 1 to 64 letters, digits, '.', '_' or '-', found {name!r}")
        if scope not in SCOPES:
            raise ServiceError(f"expected a scope of {', '.join(SCOPES)}, found {scope!r}")
        if any(token.name == name for token in self.tokens):
            raise ServiceError(f"expected a new token name, found {name!r} already in {self.path}; remove it first")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(_SECRET_BYTES)
        salt = secrets.token_bytes(16)
        self.tokens.append(Token(name, scope, salt.hex(), hashlib.sha256(salt + secret.encode()).hexdigest(),
                                 dt.datetime.now(dt.UTC).isoformat(timespec="seconds")))
        self.save()
        return secret

    def remove(self, name: str) -> None:
        """Remove the token `name` and save; raises ServiceError when there is none."""
        kept = [token for token in self.tokens if token.name != name]
        if len(kept) == len(self.tokens):
            raise ServiceError(f"expected a token named {name!r} in {self.path}, found none")
        self.tokens = kept
        self.save()

    def save(self) -> None:
        """Write the file (0600, replaced atomically)."""
        if self.path is None:
            raise ServiceError("expected a tokens file path (--tokens), found none")
        body = json.dumps({"format": TOKENS_FORMAT, "tokens": [t.to_json() for t in self.tokens]}, indent=2) + "\n"
        temporary = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except OSError as exc:
            raise ServiceError(f"cannot write the tokens file {self.path}: {exc.strerror}") from None

    def scope_of(self, secret: str) -> tuple[str, str] | None:
        """(name, scope) of the token whose secret this is; None when none is."""
        if not secret.startswith(TOKEN_PREFIX):
            return None
        for token in self.tokens:
            if token.matches(secret):
                return token.name, token.scope
        return None
