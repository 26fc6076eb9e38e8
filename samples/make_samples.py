"""Regenerate the sample envelopes in this folder from the emulator, one per scenario.

    python3 samples/make_samples.py [--out DIR]   # rewrites envelopes/, root.pem, trust-store/, expected.json

Every envelope is collected over real SSH from an emulated device (a few are derived from a
collected one by editing bytes, and say so in `expected.json`), stored exactly as received, with
the collector's metadata file beside it (`<name>.envelope.meta.json`: device, nonce sent, time
received) so that `dossier verify samples/envelopes/<name>.envelope --trust-store
samples/trust-store` checks it as an auditor would. `expected.json` says, for each scenario,
whether it must be trusted and which finding id must be among the reasons; the test
`tests/test_samples.py` holds the verifier to it.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import json
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import paramiko  # noqa: E402

from emulator.faults import Fault  # noqa: E402
from emulator.fleet import EmulatedDevice, Fleet  # noqa: E402
from verifier.stored import new_metadata  # noqa: E402 - the stored format's one writer

ITEMS = "packages reboot-history rollback-history system-integrity-snapshot system-inventory"

# scenario -> (trusted?, finding id that must be reported, how it was made)
EXPECTED: dict[str, tuple[bool, str | None, str]] = {
    "valid": (True, None, "collected"),
    "valid-without-certificates": (True, None, "collected without include-certificate: checked against the pinned leaf"),
    "data-changed-after-signing": (False, "signature.invalid", "collected (fault data-changed)"),
    "signature-by-other-key": (False, "signature.invalid", "collected (fault other-key)"),
    "nonce-replayed": (False, "nonce.mismatch", "collected (fault wrong-nonce: a stale nonce, validly signed)"),
    "items-failing": (True, "dossier.item_failed", "collected (fault items-failing)"),
    "not-json": (False, "envelope.invalid_json", "collected (fault not-json)"),
    "truncated": (False, "envelope.invalid_json", "collected (fault drop-mid-output)"),
    "duplicate-key": (False, "envelope.duplicate_key", "derived from valid: a second \"nonce\" member"),
    "trailing-data": (False, "envelope.trailing_data", "derived from valid: text after the JSON object"),
    "leaf-rekeyed": (True, "chain.leaf_rotated", "collected (fault rekeyed-leaf)"),
    "leaf-expired": (False, "chain.leaf_expired", "collected (fault expired-leaf)"),
    "root-replaced": (False, "chain.root_not_enrolled", "collected (fault root-replaced)"),
}


def collect(device: EmulatedDevice, nonce: str, *, include: bool = True) -> tuple[bytes, dict[str, Any]]:
    """Run the dossier command over SSH (host key pinned) and return the exact bytes + metadata."""
    command = (f"show platform security integrity dossier include {ITEMS} nonce {nonce} "
               f"| utility sign nonce {nonce}" + (" include-certificate" if include else ""))
    client = paramiko.SSHClient()
    where, key_type, key_b64 = device.host_key_line.split()
    client.get_host_keys().add(where, key_type, paramiko.PKey.from_type_string(key_type, base64.b64decode(key_b64)))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    started = dt.datetime.now(dt.timezone.utc)
    clock = time.monotonic()
    sock = socket.create_connection((device.host, device.port), timeout=20)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.connect(device.host, port=device.port, username=device.username, password=device.password, sock=sock,
                   look_for_keys=False, allow_agent=False, timeout=20)
    chunks = []
    try:
        channel = client.get_transport().open_session()  # type: ignore[union-attr]
        channel.settimeout(30)
        channel.exec_command(command)
        channel.shutdown_write()
        while True:
            try:
                data = channel.recv(65536)
            except (socket.timeout, EOFError, OSError):
                break
            if not data:
                break
            chunks.append(data)
    finally:
        client.close()
    output = b"".join(chunks)
    received = dt.datetime.now(dt.timezone.utc)
    meta = new_metadata(device=device.name, host=device.host, nonce_hex=nonce, output=output, started=started,
                        received=received, duration_s=time.monotonic() - clock,
                        writer_version="samples/make_samples.py", extra={"command": command})
    return output, meta


def derive(output: bytes, meta: dict[str, Any], edit: Callable[[bytes], bytes]) -> tuple[bytes, dict[str, Any]]:
    changed = edit(output)
    return changed, {**meta, "bytes": len(changed), "sha256": hashlib.sha256(changed).hexdigest()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write into (default: this one)")
    base = parser.parse_args(argv).out.resolve()
    base.mkdir(parents=True, exist_ok=True)
    out = base / "envelopes"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    results: dict[str, tuple[bytes, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        with Fleet(state_dir=Path(tmp), devices=1, provisioned=True, key_type="rsa2048", seed=2026, files=100) as fleet:
            device = fleet.devices[0]
            name = device.name
            root_pem = device.device.certificates("system-trustpoint")[0].public_bytes(  # type: ignore[union-attr]
                __import__("cryptography.hazmat.primitives.serialization", fromlist=["Encoding"]).Encoding.PEM)
            nonces = iter(f"{index:02x}" + "5eed" * 7 + "0001" for index in range(1, 64))

            def take(scenario: str, fault: Fault | None = None, include: bool = True, **params: Any) -> None:
                if fault is not None:
                    fleet.set_fault(name, fault, **params)
                results[scenario] = collect(device, next(nonces), include=include)
                if fault is not None:
                    fleet.clear_faults(name, fault)

            take("valid")
            take("valid-without-certificates", include=False)
            take("data-changed-after-signing", Fault.DATA_CHANGED)
            take("signature-by-other-key", Fault.OTHER_KEY)
            take("nonce-replayed", Fault.WRONG_NONCE, nonce="1580")
            take("items-failing", Fault.ITEMS_FAILING, items=["packages"], result="Failed: timeout collecting data")
            take("not-json", Fault.NOT_JSON)
            take("truncated", Fault.DROP_MID_OUTPUT)
            valid, valid_meta = results["valid"]
            results["duplicate-key"] = derive(valid, valid_meta, lambda b: b.replace(
                b'"signature_version": 1,', b'"signature_version": 1,\n    "nonce": "AAAA",', 1))
            results["trailing-data"] = derive(valid, valid_meta, lambda b: b + b"RP/0/RP0/CPU0:xr-0001#\n")
            take("leaf-rekeyed", Fault.REKEYED_LEAF)
            take("leaf-expired", Fault.EXPIRED_LEAF)
            take("root-replaced", Fault.ROOT_REPLACED)
    for scenario, (output, meta) in results.items():
        (out / f"{scenario}.envelope").write_bytes(output)
        (out / f"{scenario}.envelope.meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    (base / "root.pem").write_bytes(root_pem)
    expected = {
        scenario: {"device": name, "trusted": trusted, "finding": finding, "made": made}
        for scenario, (trusted, finding, made) in EXPECTED.items()
    }
    (base / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    make_trust_store(base / "trust-store", name, base / "root.pem", valid, valid_meta["received"])
    print(f"wrote {len(results)} envelopes to {out}")


def make_trust_store(path: Path, device: str, root_pem: Path, enrolled_envelope: bytes, enrolled: str) -> None:
    """The trust store an auditor would have: the device's root enrolled before collection, and
    the leaf seen at enrollment pinned (so a re-keyed leaf is reported as a rotation)."""
    from cryptography import x509

    from verifier import TrustStore

    shutil.rmtree(path, ignore_errors=True)
    store = TrustStore.open(path, create=True)
    when = dt.datetime.fromisoformat(enrolled.replace("Z", "+00:00")) - dt.timedelta(minutes=1)
    store.add_root(device, x509.load_pem_x509_certificate(root_pem.read_bytes()), enrolled_at=when, source="samples")
    body = json.loads(enrolled_envelope.decode().split("\n", 1)[1])["signed-envelope"]
    leaf_der = base64.b64decode(body["certificates"]["certificate"][-1]["value"])
    store.pin_leaf(device, x509.load_der_x509_certificate(leaf_der))


if __name__ == "__main__":
    main()
