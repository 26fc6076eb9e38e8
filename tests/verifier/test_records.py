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


# --- the findings not reached through a collected store (tests/adversarial/test_adv_record_log.py) ---

from verifier.records import LOG_NAME, check_record, header_fields, read_log  # noqa: E402


def _log(tmp_path: Path, lines: list[bytes]) -> Path:
    (tmp_path / LOG_NAME).write_bytes(b"".join(line + b"\n" for line in lines))
    return tmp_path / LOG_NAME


def _chain(count: int) -> list[bytes]:
    from verifier.records import line_hash

    lines = [make_line(header_fields(KEY.public_key(), "2026-01-01T00:00:00Z"), KEY)]
    for seq in range(1, count + 1):
        fields = {**record_fields(path=f"d/{seq}.envelope", sha256_hex="0" * 64, size=1, device="d",
                                  nonce=f"{seq:02x}", started=None, received="2026-02-01T00:00:00Z", trusted=True,
                                  reasons=[]),
                  "seq": seq, "prev": line_hash(lines[-1]), "key": key_fingerprint(KEY.public_key())}
        lines.append(make_line(fields, KEY))
    return lines


def test_missing_log_unpinned_key_invalid_line_and_broken_chain(tmp_path: Path) -> None:
    assert [f.id for f in read_log(tmp_path / LOG_NAME, KEY.public_key()).problems] == ["record.log_missing"]
    lines = _chain(3)
    assert [f.id for f in read_log(_log(tmp_path, lines), None).problems] == ["record.key_not_pinned"]
    assert "record.line_invalid" in {f.id for f in read_log(_log(tmp_path, [*lines, b"{ }"]), KEY.public_key()).problems}
    fields = parse_line(lines[2])
    fields["prev"] = "1" * 64
    fields.pop("sig")
    lines[2] = make_line(fields, KEY)  # re-signed by the key holder, but the chain no longer links
    assert [f.id for f in read_log(_log(tmp_path, lines), KEY.public_key()).problems] == ["record.chain_broken"]


def test_a_record_that_differs_from_the_file_and_an_envelope_older_than_the_log(tmp_path: Path) -> None:
    from hashlib import sha256

    from verifier.records import baseline_fields, line_hash

    lines = _chain(1)
    baseline = {**baseline_fields([("d/0.envelope", sha256(b"x").hexdigest())]), "seq": 2,
                "prev": line_hash(lines[-1]), "key": key_fingerprint(KEY.public_key())}
    checked = read_log(_log(tmp_path, [*lines, make_line(baseline, KEY)]), KEY.public_key())
    assert not checked.problems
    jsonschema.validate(parse_line(make_line(baseline, KEY)), SCHEMA)
    meta = {"device": "d", "nonce": "01", "received": "2026-02-01T00:00:00Z"}
    mismatch = check_record(checked, "d/1.envelope", b"x", meta, {"trusted": True})
    assert [f.id for f in mismatch] == ["record.mismatch"] and mismatch[0].expected == "0" * 64
    # no verdict beside it: "unknown", compared with the record's trusted, never skipped
    unknown = check_record(checked, "d/1.envelope", b"x", meta, None)
    assert [(f.expected, f.found) for f in unknown][1] == ("True", "None")
    listed = {**meta, "nonce": "ff", "received": "2025-01-01T00:00:00Z"}
    old = check_record(checked, "d/0.envelope", b"x", listed, None)
    assert [(f.id, str(f.severity)) for f in old] == [("record.before_log", "warning")]
    changed = check_record(checked, "d/0.envelope", b"y", listed, None)
    assert [(f.id, str(f.severity)) for f in changed] == [("record.mismatch", "error")]
    # dated before the log but in no baseline: missing, whatever its metadata claims
    unlisted = check_record(checked, "d/8.envelope", b"x", listed, None)
    assert [(f.id, str(f.severity)) for f in unlisted] == [("record.missing", "error")]
    new = check_record(checked, "d/9.envelope", b"x", {**meta, "nonce": "ff"}, None)
    assert [(f.id, str(f.severity)) for f in new] == [("record.missing", "error")]
