"""The record-log format (verifier/records.py): what is serialised parses back to the same
fields, byte for byte, and verifies; a line that conforms also validates against its schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from verifier.records import key_fingerprint, make_line, parse_line, record_fields
from verifier.records import _signature_ok  # the check an auditor runs per line

KEY = Ed25519PrivateKey.generate()
SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "record-log-line.schema.json").read_text())
text = st.text(max_size=40)


@settings(max_examples=200, deadline=None)
@given(path=text, digest=st.text("0123456789abcdef", min_size=64, max_size=64), size=st.integers(0, 2**40),
       device=text, nonce=st.text("0123456789abcdef", max_size=32), started=st.none() | text, received=text,
       trusted=st.none() | st.booleans(), reasons=st.lists(text, max_size=4), seq=st.integers(1, 2**40))
def test_a_record_round_trips_and_verifies(path: str, digest: str, size: int, device: str, nonce: str,
                                           started: str | None, received: str, trusted: bool | None,
                                           reasons: list[str], seq: int) -> None:
    fields = {**record_fields(path=path, sha256_hex=digest, size=size, device=device, nonce=nonce, started=started,
                              received=received, trusted=trusted, reasons=reasons),
              "seq": seq, "prev": "0" * 64, "key": key_fingerprint(KEY.public_key())}
    line = make_line(fields, KEY)
    parsed = parse_line(line)
    assert {name: value for name, value in parsed.items() if name != "sig"} == fields
    assert _signature_ok(parsed, KEY.public_key())
    assert not _signature_ok({**parsed, "seq": seq + 1}, KEY.public_key())
    jsonschema.validate(parsed, SCHEMA)
