"""What an operator sees from `dossier verify` and `dossier trust` (issue 17): a stored envelope
that no longer matches its metadata is a verdict, copies in a case folder verify with
--device, no deprecation warning without a DSA key, output a pipe can grep, --verbose."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.serialization import Encoding

import schemas
from dossier_cli.main import cli
from vbuilder import NOW, Device

PROJECT = Path(__file__).resolve().parents[2]
STORED_NAME = "20260601T120000.000000Z-1580.envelope"


def _runner() -> CliRunner:
    return CliRunner()


def _enrolled(tmp_path: Path, device: Device, name: str = "r1") -> Path:
    root = tmp_path / "root.pem"
    root.write_bytes(device.root.public_bytes(Encoding.PEM))
    store = tmp_path / "truststore"
    result = _runner().invoke(cli, ["trust", "add", name, str(root), "--trust-store", str(store)])
    assert result.exit_code == 0, result.output
    return store


def _stored(folder: Path, device: Device, *, device_name: str = "r1", received: dt.datetime = NOW) -> Path:
    """An envelope as the collector stores it: `<folder>/<stamp>-<nonce>.envelope` and its metadata."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = device.envelope()
    path = folder / STORED_NAME
    path.write_bytes(raw)
    meta = {"format": "trust-dossier/envelope-metadata/1", "device": device_name, "host": "192.0.2.1",
            "nonce": device.nonce.hex(), "started": (received - dt.timedelta(seconds=1)).isoformat(),
            "received": received.isoformat(), "bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    Path(f"{path}.meta.json").write_text(json.dumps(meta))
    return path


def _verify_json(*args: str) -> tuple[int, dict]:
    result = _runner().invoke(cli, ["verify", *args, "--at", NOW.isoformat(), "--json"])
    assert result.exit_code in (0, 1), result.output  # a verdict, never an input error
    line = json.loads(result.output)
    jsonschema.validate(line, schemas.load("verdict"))
    assert "error" not in line
    return result.exit_code, line


# -- a stored envelope that does not match its metadata is a verdict ---------------------------

@pytest.mark.parametrize(("change", "recorded"), [
    (lambda raw: raw + b" ", ["bytes", "SHA-256"]),                                   # appended
    (lambda raw: raw[:-40] + bytes([raw[-40] ^ 1]) + raw[-39:], ["SHA-256"]),         # same size
    (lambda raw: raw[: len(raw) // 2], ["bytes", "SHA-256"]),                          # truncated
])
def test_a_changed_stored_envelope_is_not_trusted_and_says_what_differs(tmp_path: Path, device: Device,
                                                                        change, recorded: list[str]) -> None:
    store = _enrolled(tmp_path, device)
    path = _stored(tmp_path / "store" / "r1", device)
    assert _verify_json(str(path), "--trust-store", str(store))[0] == 0
    original = path.read_bytes()
    path.write_bytes(change(original))
    code, line = _verify_json(str(path), "--trust-store", str(store))
    assert code == 1 and line["trusted"] is False
    mismatches = [f for f in line["findings"] if f["id"] == "stored.mismatch"]
    assert [f["severity"] for f in mismatches] == ["error"] * len(recorded)
    for finding, what in zip(mismatches, recorded, strict=True):
        assert what in finding["expected"] and what in finding["found"] and finding["expected"] != finding["found"]
    if "bytes" in recorded:
        assert mismatches[0]["expected"] == f"{len(original)} bytes (the metadata's bytes)"
    assert mismatches[-1]["expected"] == f"SHA-256 {hashlib.sha256(original).hexdigest()} (the metadata's sha256)"


def test_the_table_shows_the_mismatch_and_exits_1(tmp_path: Path, device: Device) -> None:
    store = _enrolled(tmp_path, device)
    path = _stored(tmp_path / "store" / "r1", device)
    path.write_bytes(path.read_bytes() + b"\n")
    result = _runner().invoke(cli, ["verify", str(path), "--trust-store", str(store), "--at", NOW.isoformat()])
    assert result.exit_code == 1, result.output
    assert "NOT TRUSTED" in result.output and "stored.mismatch" in result.output


def test_a_copy_in_a_case_folder_verifies_with_device(tmp_path: Path, device: Device) -> None:
    store = _enrolled(tmp_path, device)
    original = _stored(tmp_path / "store" / "r1", device)
    case = tmp_path / "audit" / "case-42"
    case.mkdir(parents=True)
    copy = Path(shutil.copy2(original, case))
    shutil.copy2(f"{original}.meta.json", case)
    # without --device the folder is the collector's device folder: it contradicts the metadata
    code, line = _verify_json(str(copy), "--trust-store", str(store))
    assert code == 1 and line["findings"][0]["id"] == "stored.mismatch"
    assert "device folder 'case-42'" in line["findings"][0]["message"]
    assert "--device" in line["findings"][0]["message"]
    # --device names the device: the folder's name says nothing then
    code, line = _verify_json(str(copy), "--trust-store", str(store), "--device", "r1")
    assert code == 0 and line["trusted"] and line["device"] == "r1", line["findings"]


def test_a_device_the_metadata_contradicts_is_never_trusted(tmp_path: Path, device: Device) -> None:
    """The trust decision is bound to the device named: verified as --device's, and untrusted
    while the metadata records another device (even when both have the same root)."""
    store = _enrolled(tmp_path, device, "r1")
    root = tmp_path / "root.pem"
    assert _runner().invoke(cli, ["trust", "add", "r2", str(root), "--trust-store", str(store)]).exit_code == 0
    path = _stored(tmp_path / "case", device, device_name="r1")
    code, line = _verify_json(str(path), "--trust-store", str(store), "--device", "r2")
    assert code == 1 and line["device"] == "r2"
    first = line["findings"][0]
    assert first["id"] == "stored.mismatch" and first["severity"] == "error"
    assert (first["expected"], first["found"]) == ("device r2 (--device)", "device r1 (the metadata)")


def test_exit_2_stays_for_what_the_operator_must_fix(tmp_path: Path, device: Device) -> None:
    store = _enrolled(tmp_path, device)
    path = _stored(tmp_path / "store" / "r1", device)
    missing = _runner().invoke(cli, ["verify", str(tmp_path / "nope.envelope"), "--trust-store", str(store)])
    assert missing.exit_code == 2 and "cannot read" in missing.output
    Path(f"{path}.meta.json").write_text("{not json")
    unreadable = _runner().invoke(cli, ["verify", str(path), "--trust-store", str(store), "--json"])
    assert unreadable.exit_code == 2 and "metadata" in json.loads(unreadable.output)["error"]


# -- no deprecation warning from our own code paths ---------------------------------------------

def test_verify_prints_no_dsa_deprecation_warning_without_a_dsa_key(tmp_path: Path, device: Device) -> None:
    """cryptography 51 warns on each use of its DSA names; the helper script deprecates them so
    on any installed version. An ECDSA envelope must not touch them (a real subprocess: the
    warning goes to its stderr, once per place in our code that names DSA)."""
    store = _enrolled(tmp_path, device)
    path = _stored(tmp_path / "store" / "r1", device)
    command = [sys.executable, str(PROJECT / "tests/verifier/run_with_dsa_deprecated.py"), "verify", str(path),
               "--trust-store", str(store), "--at", "received", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT, timeout=120)
    assert done.returncode == 0, ([f["message"] for f in json.loads(done.stdout)["findings"]], done.stderr)
    assert done.stderr == ""


# -- human output: lines a pipe can grep, -v, names as the router prints them -------------------

# The test device's subjects carry serialNumber and unstructuredName, as the router's `crypto ca
# enroll` makes them (tests/verifier/vbuilder.py).
LEAF_SUBJECT = "unstructuredName=r1.example.net,serialNumber=FOC2104R15R,CN=system-trustpoint"
ROOT_SUBJECT = "unstructuredName=r1.example.net,serialNumber=FOC2104R15R,CN=system-trustpoint root"


def test_format_name_uses_the_routers_attribute_names(device: Device) -> None:
    from verifier.chain import format_name

    assert "2.5.4.5=" in device.leaf.subject.rfc4514_string()  # what cryptography prints by itself
    assert format_name(device.leaf.subject) == LEAF_SUBJECT
    assert format_name(device.root.subject) == ROOT_SUBJECT


def test_verbose_lists_the_checks_passed_and_every_message(tmp_path: Path, device: Device) -> None:
    named = device
    store = _enrolled(tmp_path, named)
    path = _stored(tmp_path / "store" / "r1", named)
    result = _runner().invoke(cli, ["verify", str(path), "--trust-store", str(store), "--at", "received", "-v"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1] == f"{path}: TRUSTED (device r1)"
    from verifier.chain import fingerprint

    assert lines[2:7] == [
        f"  passed: signature verified (ECDSA SHA-256) with the ECDSA secp256r1 leaf {LEAF_SUBJECT}",
        f"  passed: chain to the root enrolled for r1 ({ROOT_SUBJECT}, SHA-256 {fingerprint(named.root)})",
        f"  passed: valid at {NOW.isoformat()} (leaf expires in 365 days, root expires in 3650 days)",
        f"  passed: nonce matches the one sent ({named.nonce.hex()})",
        "  passed: dossier: 4 items, 4 collected",
    ], lines
    assert lines[7].startswith("  info record.not_checked: ") and "no record log" in lines[7]
    # an untrusted one: no passed checks, its findings with their messages
    path.write_bytes(path.read_bytes() + b" ")
    result = _runner().invoke(cli, ["verify", str(path), "--trust-store", str(store), "--at", "received", "-v"])
    assert result.exit_code == 1
    assert "passed:" not in result.output
    assert "  error stored.mismatch: " in result.output and "records SHA-256" in result.output
    # --json stays the schema's, -v or not
    as_json = _runner().invoke(cli, ["verify", str(path), "--trust-store", str(store), "--at", "received", "-v",
                                     "--json"])
    jsonschema.validate(json.loads(as_json.output), schemas.load("verdict"))


def test_at_says_once_what_it_accepts() -> None:
    result = _runner().invoke(cli, ["verify", "x.envelope", "--root", "r.pem", "--at", "yesterday"])
    assert result.exit_code == 2
    message = result.output.splitlines()[-1]
    assert message.count("--at") == 1, message
    assert "now, received" in message and "ISO-8601" in message and "'yesterday'" in message
    zoneless = _runner().invoke(cli, ["verify", "x.envelope", "--root", "r.pem", "--at", "2026-01-01T00:00:00"])
    assert zoneless.exit_code == 2 and "no zone" in zoneless.output


def test_trust_list_shows_how_each_root_and_leaf_was_enrolled(tmp_path: Path, device: Device) -> None:
    from verifier.truststore import TrustStore

    named = device
    store = _enrolled(tmp_path, named)
    TrustStore.open(store).pin_leaf("r1", named.leaf, source="fingerprint")
    result = _runner().invoke(cli, ["trust", "list", "--trust-store", str(store)])
    assert result.exit_code == 0, result.output
    [line] = result.output.splitlines()
    fields = _fields(line)
    assert fields["device"] == "r1" and fields["source"] == "manual:root.pem", fields
    assert fields["leaf_source"] == "fingerprint" and fields["subject"] == ROOT_SUBJECT
    listed = json.loads(_runner().invoke(cli, ["trust", "list", "--trust-store", str(store), "--json"]).output)
    assert listed["devices"][0]["roots"][0]["source"] == "manual:root.pem"


def test_output_that_is_not_a_terminal_is_one_line_per_record(tmp_path: Path, device: Device) -> None:
    """A real pipe (not click's runner): long paths, ids and fingerprints are never split or
    boxed, so `grep` finds them in a CI log."""
    store = _enrolled(tmp_path, device)
    deep = tmp_path / ("a-rather-long-folder-name-" * 4) / "r1"
    good = _stored(deep, device)
    bad = _stored(deep.parent / "case", device)
    bad.write_bytes(bad.read_bytes().replace(b"FOC2104R15R", b"FOC2104R15X"))
    env_columns = {"COLUMNS": "40"}  # a narrow terminal would fold; a pipe must not
    command = [sys.executable, "-m", "dossier_cli", "verify", str(good), str(bad), "--trust-store", str(store),
               "--device", "r1", "--at", "received"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT, timeout=120,
                          env={**os.environ, **env_columns})
    assert done.returncode == 1, done.stderr
    lines = [_fields(line) for line in done.stdout.splitlines()]
    assert len(lines) == 2 and not any(ch in done.stdout for ch in "│┃━─")
    assert [lines[0][k] for k in ("device", "file", "verdict")] == ["r1", str(good), "TRUSTED"]
    assert [lines[1][k] for k in ("device", "file", "verdict")] == ["r1", str(bad), "NOT TRUSTED"]
    assert "stored.mismatch" in lines[1]["reasons"] and "signature.invalid" in lines[1]["reasons"]
    listed = subprocess.run([sys.executable, "-m", "dossier_cli", "trust", "list", "--trust-store", str(store)],
                            capture_output=True, text=True, cwd=PROJECT, timeout=120, env={**os.environ, **env_columns})
    assert listed.returncode == 0, listed.stderr
    from verifier.chain import fingerprint

    [line] = listed.stdout.splitlines()
    assert _fields(line)["root_SHA-256"] == fingerprint(device.root)


def _fields(line: str) -> dict[str, str]:
    """A `column=value` record line (`verifier.display.record_line`), as a shell splits it."""
    import shlex

    return dict(field.split("=", 1) for field in shlex.split(line))


def test_enroll_shows_the_candidate_root_with_the_routers_names(device: Device) -> None:
    from collector.enroll import RootCandidate

    shown = RootCandidate("r1", device.root, device.leaf).describe()
    assert shown["subject"] == ROOT_SUBJECT and shown["issuer"] == ROOT_SUBJECT
