"""What the attestation RPCs return, checked as a verifier and tpm2-tools would: the AK chain,
quotes tpm2_checkquote accepts (and rejects when faulty), logs that replay to the quoted PCRs."""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ncclient.operations.rpc import RPCError

from emulator.facts import node_integrity, tamper_package
from emulator.faults import Fault
from emulator.tpm.swtpm import TOOLS as SWTPM_TOOLS
from nc_helpers import b64, call, connect, find, pcr_values, require_tpm_tools, tpm2_checkquote

ALL_PCRS = list(range(11))


def _text(element, path: str) -> str:
    return find(element, path)[0].text


def _chain(session, node: str) -> list[x509.Certificate]:
    reply = call(session, "get-certificate", location=node)
    return [x509.load_der_x509_certificate(base64.b64decode(value.text))
            for value in find(reply, "a:system-certificates/a:certificates/a:certificate/a:value")]


def _attest(session, nonce: bytes, pcrs=ALL_PCRS, **leaves):
    reply = call(session, "attest-platform-config-registers", pcr_index=pcrs,
                 nonce=base64.b64encode(nonce).decode(), **leaves)
    return find(reply, "a:node-data")


def _replay(pairs) -> dict[int, bytes]:
    pcrs: dict[int, bytes] = {}
    for index, digest in pairs:
        pcrs[index] = hashlib.sha256(pcrs.get(index, bytes(32)) + digest).digest()
    return pcrs


def _boot_log(session, node: str, **leaves):
    reply = call(session, "get-platform-boot-integrity-event-logs", location=node, **leaves)
    return find(reply, "a:node-data/a:event_log")


def _ima_log(session, node: str, **leaves):
    reply = call(session, "get-platform-ima-event-logs", location=node, **leaves)
    return find(reply, "a:node-data/a:ima-event-log")


def test_certificate_chain_leads_to_the_fleet_tpm_root_and_its_signature_binds_the_nonce(nc_fleet) -> None:
    entry = nc_fleet["xr-0001"]
    nonce = os.urandom(32)
    with connect(entry) as session:
        reply = call(session, "get-certificate", nonce=base64.b64encode(nonce).decode())
    systems = find(reply, "a:system-certificates")
    assert [_text(s, "a:node-location") for s in systems] == entry.device.facts.nodes
    system = systems[0]
    names = [n.text for n in find(system, "a:certificates/a:certificate/a:name")]
    assert names == ["aik", "tpm-ca", "tpm-root"]
    ders = [base64.b64decode(v.text) for v in find(system, "a:certificates/a:certificate/a:value")]
    ak, sub_ca, root = (x509.load_der_x509_certificate(der) for der in ders)
    assert root == nc_fleet.tpm_authority().root
    ak.verify_directly_issued_by(sub_ca)
    sub_ca.verify_directly_issued_by(root)
    assert b64(system, "a:nonce") == nonce
    version = int(_text(system, "a:signature_version"))
    signed = nonce + struct.pack(">I", version) + b"".join(ders)
    ak.public_key().verify(b64(system, "a:signature"), signed, ec.ECDSA(hashes.SHA256()))


def test_tpm2_checkquote_accepts_the_quote_and_the_logs_replay_to_its_pcrs(nc_fleet, work: Path) -> None:
    entry = nc_fleet["xr-0001"]
    node = entry.device.facts.nodes[0]
    nonce = os.urandom(20)
    with connect(entry) as session:
        ak = _chain(session, node)[0]
        node_data = _attest(session, nonce, location=node)[0]
        boot = _boot_log(session, node)
        ima = _ima_log(session, node)
        later = _ima_log(session, node, start_event_number=len(ima) - 2)
    checked = tpm2_checkquote(work, ak, node_data, nonce)
    assert checked.returncode == 0, checked.stderr
    quoted = pcr_values(node_data)
    assert sorted(quoted) == ALL_PCRS and int(_text(node_data, "a:up-time")) > 0
    boot_pcrs = _replay((int(_text(e, "a:pcr-index")), b64(e, "a:digest-list/a:digest")) for e in boot)
    assert all(boot_pcrs[i] == quoted[i] for i in range(10))
    assert all(int(_text(e, "a:event-size")) == len(b64(e, "a:event-data")) for e in boot)
    assert _replay((10, b64(e, "a:template-hash")) for e in ima)[10] == quoted[10]
    assert _text(ima[0], "a:filename-hint") == "boot_aggregate"
    assert b64(ima[0], "a:filedata-hash") == hashlib.sha256(b"".join(quoted[i] for i in range(10))).digest()
    inventory = entry.device.fsinv[node].current_files()
    for event in ima[1:]:  # every runtime measurement has a reference value in the inventory
        record = inventory[_text(event, "a:filename-hint")]
        assert base64.b64decode(record[9]) == b64(event, "a:filedata-hash")
    assert [int(_text(e, "a:event-number")) for e in later] == [len(ima) - 1, len(ima)]
    # the dossier's system-integrity-snapshot reports the quoted boot PCRs
    dossier = node_integrity(entry.device.facts, node)
    assert [bytes.fromhex(p["value"]) for p in dossier["pcrs"]] == [quoted[i] for i in range(10)]


def test_a_changed_package_changes_pcr9_and_its_boot_event(nc_fleet, faulty: str) -> None:
    device = nc_fleet[faulty].device
    node = device.facts.nodes[0]
    with connect(nc_fleet[faulty]) as session:
        before = pcr_values(_attest(session, b"n1", location=node)[0])
        package = device.facts.packages[-1]
        tamper_package(device.facts, package.name)
        after = pcr_values(_attest(session, b"n2", location=node)[0])
        events = _boot_log(session, node)
    assert [i for i in ALL_PCRS if before[i] != after[i]] == [9, 10]  # PCR 10: boot_aggregate covers 9
    package_event = [e for e in events if b64(e, "a:event-data") == f"package {package.full_name}".encode()][0]
    assert b64(package_event, "a:digest-list/a:digest") == bytes.fromhex(package.runtime_fingerprint)


def _checked(nc_fleet, name: str, work: Path, nonce: bytes):
    with connect(nc_fleet[name]) as session:
        node = nc_fleet[name].device.facts.nodes[0]
        ak = _chain(session, node)[0]
        node_data = _attest(session, nonce, location=node)[0]
    return node_data, tpm2_checkquote(work, ak, node_data, nonce)


def test_tpm2_checkquote_rejects_each_faulty_quote(nc_fleet, faulty: str, work: Path) -> None:
    nonce = os.urandom(16)
    for fault, params in [(Fault.TPM_OTHER_KEY, {}), (Fault.TPM_NONCE_UNBOUND, {}),
                          (Fault.TPM_PCR_MISMATCH, {"pcr": 4.0})]:
        nc_fleet.set_fault(faulty, fault, **params)
        try:
            node_data, checked = _checked(nc_fleet, faulty, work, nonce)
        finally:
            nc_fleet.clear_faults(faulty, fault)
        assert checked.returncode != 0, (fault, checked.stdout)
        assert b64(node_data, "a:pcr-quote")[:4] == b"\xffTCG"  # still a quote: the fault is the binding
    node_data, checked = _checked(nc_fleet, faulty, work, nonce)
    assert checked.returncode == 0, checked.stderr


def test_log_and_uptime_faults(nc_fleet, faulty: str) -> None:
    entry = nc_fleet[faulty]
    node = entry.device.facts.nodes[0]
    with connect(entry) as session:
        quoted = pcr_values(_attest(session, b"n", location=node)[0])
        honest_up_time = int(_text(_attest(session, b"n", location=node)[0], "a:up-time"))
        nc_fleet.set_fault(faulty, Fault.TPM_BOOT_LOG_MISMATCH, pcr=4)
        boot = _boot_log(session, node)
        replayed = _replay((int(_text(e, "a:pcr-index")), b64(e, "a:digest-list/a:digest")) for e in boot)
        assert [i for i in range(10) if replayed[i] != quoted[i]] == [4]
        nc_fleet.clear_faults(faulty)
        nc_fleet.set_fault(faulty, Fault.TPM_IMA_UNKNOWN_FILE, path="/usr/bin/implant")
        ima = _ima_log(session, node)
        node_data = _attest(session, b"n", location=node)[0]
        assert _text(ima[-1], "a:filename-hint") == "/usr/bin/implant"
        assert "/usr/bin/implant" not in entry.device.fsinv[node].current_files()
        assert _replay((10, b64(e, "a:template-hash")) for e in ima)[10] == pcr_values(node_data)[10]
        nc_fleet.clear_faults(faulty)
        nc_fleet.set_fault(faulty, Fault.TPM_UPTIME_BACKWARDS)
        reported = int(_text(_attest(session, b"n", location=node)[0], "a:up-time"))
        assert reported < honest_up_time
        assert len(entry.device.facts.reboots[node]) == len(entry.device.facts.reboots[node])  # no reboot recorded


def test_a_swtpm_backed_device_quotes_what_the_built_in_model_computes(nc_fleet, work: Path) -> None:
    """xr-0002's quotes come from a real TPM (swtpm) extended with the device's logs: its PCR
    digest is the one the built-in model computes from the same logs."""
    require_tpm_tools(*SWTPM_TOOLS, "tpm2_checkquote")
    entry = nc_fleet["xr-0002"]
    node = entry.device.facts.nodes[0]
    nonce = os.urandom(32)
    with connect(entry) as session:
        reply = call(session, "get-certificate", location=node, nonce=base64.b64encode(nonce).decode())
        ak = _chain(session, node)[0]
        node_data = _attest(session, nonce, location=node)[0]
    system = find(reply, "a:system-certificates")[0]
    ders = [base64.b64decode(v.text) for v in find(system, "a:certificates/a:certificate/a:value")]
    ak.public_key().verify(b64(system, "a:signature"), nonce + struct.pack(">I", 1) + b"".join(ders),
                           ec.ECDSA(hashes.SHA256()))
    checked = tpm2_checkquote(work, ak, node_data, nonce)
    assert checked.returncode == 0, checked.stderr
    quoted = pcr_values(node_data)
    attest = b64(node_data, "a:pcr-quote")
    assert attest[-32:] == hashlib.sha256(b"".join(quoted[i] for i in sorted(quoted))).digest()
    assert quoted == {i: v for i, v in entry.device.tpm.pcrs(node).items() if i in quoted}


def test_the_cli_attest_certificate_and_the_rpc_answer_alike(nc_fleet) -> None:
    """`show platform security attest certificate aik ... json` is the get-certificate RPC: the
    same AK chain, signed by the AK; `system-identity` over NETCONF is the CLI's trustpoint chain."""
    import json

    import paramiko

    entry = nc_fleet["xr-0001"]
    node = entry.device.facts.nodes[0]
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(entry.host, port=entry.port, username=entry.username, password=entry.password,
                   look_for_keys=False, allow_agent=False, timeout=30)
    try:
        _, stdout, _ = client.exec_command(
            f"show platform security attest certificate aik location {node} nonce 0a0b0c json", timeout=30)
        text = stdout.read().decode()
    finally:
        client.close()
    cli = json.loads(text[text.index("{"):])["get-certificate-response"]["system-certificates"][0]
    with connect(entry) as session:
        ak = _chain(session, node)[0]
        with pytest.raises(RPCError) as unprovisioned:  # no system trustpoint on this fleet
            call(session, "get-certificate", certificate_identifier="system-identity")
    assert unprovisioned.value.tag == "operation-failed"
    ders = [base64.b64decode(c["value"]) for c in cli["certificates"]["certificate"]]
    assert [c["name"] for c in cli["certificates"]["certificate"]] == ["aik", "tpm-ca", "tpm-root"]
    assert x509.load_der_x509_certificate(ders[0]) == ak
    ak.public_key().verify(base64.b64decode(cli["signature"]), bytes.fromhex("0a0b0c") + struct.pack(">I", 1)
                           + b"".join(ders), ec.ECDSA(hashes.SHA256()))
