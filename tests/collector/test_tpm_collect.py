"""TPM attestation end to end: the collector polls the emulator's NETCONF agent with ncclient,
stores each reply byte for byte with its metadata, verifies it, and every TPM fault of the
emulator ends in its finding while the other devices of the fleet stay trusted; stored TPM
outputs verify again through `verify_stored` (what `dossier verify` runs)."""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner

import schemas

from collector.collect import CollectOptions, Collector
from collector.enroll import enroll_attestation_key, enroll_root, fetch_attestation_keys, fetch_root
from collector.inventory import Device, Timeouts
from collector.store import Store
from dossier_cli.main import cli
from emulator.faults import Fault
from emulator.fleet import Fleet
from verifier import TrustStore
from verifier.evidence import verify_stored
from collector.insights.policy import AppraisalPolicy
from fleet_setup import enroll_all
from emulator.tpm.swtpm import swtpm_available
from verifier.stored import APPRAISAL_SUFFIX, KINDS, META_SUFFIX, read_sidecar
from verifier.tpm.replies import parse_certificates, parse_quote

SMALL_FILES = 12
#: Each TPM fault -> the finding it must end in (docs/tpm-attestation.md "Faults").
EXPECTED = {
    Fault.TPM_OTHER_KEY: "signature.invalid",
    Fault.TPM_NONCE_UNBOUND: "nonce.mismatch",
    Fault.TPM_PCR_MISMATCH: "tpm.pcr_digest_mismatch",
    Fault.TPM_BOOT_LOG_MISMATCH: "tpm.boot_log_mismatch",
    Fault.TPM_UPTIME_BACKWARDS: "tpm.uptime_decreased",
}
TPM_OUTPUTS = ["certificate", "quote", "boot-log", "ima-log"]
ITEMS = ("packages", "reboot-history", "system-integrity-snapshot", "filesystem-inventory")
#: The quote faults tpm2_checkquote judges too (the others are in the logs or the up-time).
QUOTE_FAULTS = (Fault.TPM_OTHER_KEY, Fault.TPM_NONCE_UNBOUND, Fault.TPM_PCR_MISMATCH)


@dataclasses.dataclass
class Setup:
    fleet: Fleet
    devices: list[Device]
    trust: Path
    inventory: Path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """A fleet with the NETCONF agent on, every device asked for its dossier and its TPM
    evidence, the dossier roots and the TPM vendor root pinned per device."""
    base = tmp_path_factory.mktemp("tpm-fleet")
    with Fleet(state_dir=base / "fleet", devices=len(EXPECTED) + 3, provisioned=True, netconf=True,
               files=SMALL_FILES, seed=7, key_type="ecdsa-p256",
               swtpm=("xr-0001",) if swtpm_available() else ()) as fleet:
        inventory = base / "inventory.yaml"
        fleet.write_inventory(inventory)
        text = inventory.read_text().replace(
            "platform: iosxr", f"platform: iosxr\n  evidence: [dossier, tpm]\n  items: [{', '.join(ITEMS)}]")
        inventory.write_text(text)
        trust = base / "truststore"
        devices = enroll_all(inventory, trust)
        store = TrustStore.open(trust, create=True)
        tpm_root = fleet.tpm_authority().root
        for device in devices:
            store.add_root(device.name, tpm_root, source="tpm-vendor")
            for candidate in fetch_attestation_keys(device, trust_store_path=trust):
                enroll_attestation_key(trust, candidate, source="tofu")
        yield Setup(fleet, devices, trust, inventory)


def _collect(setup: Setup, store: Path, devices: list[Device] | None = None, policy: Any = None) -> dict[str, Any]:
    collector = Collector(Store.open(store), trust_store_path=setup.trust,
                          options=CollectOptions(concurrency=4, retries=0, policy=policy))
    summary = collector.run(devices or setup.devices)
    return {o.device: o for o in summary.outcomes}


def test_tpm_evidence_is_collected_stored_and_verified_beside_the_dossier(setup: Setup, tmp_path: Path) -> None:
    store = tmp_path / "store"
    outcomes = _collect(setup, store)
    assert {o.status for o in outcomes.values()} == {"trusted"}, {n: o.message for n, o in outcomes.items()}
    folder = store / setup.devices[0].name
    metas = [read_sidecar(p) for p in sorted(folder.glob("*" + META_SUFFIX))]
    by_output = {m["output"]: m for m in metas}
    assert set(by_output) == {"dossier", *TPM_OUTPUTS}
    for name in TPM_OUTPUTS:
        meta = by_output[name]
        assert KINDS[meta["kind"]].profile == "xr-tpm" and meta["verdict"]["trusted"], meta
        raw = (folder / meta_name(folder, meta)).read_bytes()
        assert raw.startswith(b"<?xml") or raw.startswith(b"<rpc-reply"), raw[:80]
    assert by_output["quote"]["pcrs"] == list(range(11))
    assert by_output["boot-log"]["quote"].endswith(".envelope")
    assert {by_output[n]["nonce"] for n in TPM_OUTPUTS}.__len__() == 4  # a fresh nonce per RPC
    # What `dossier verify` runs on a stored output: every TPM output verifies again from the store.
    for envelope in sorted(folder.glob("*.envelope")):
        verdict = verify_stored(envelope, trust_store=TrustStore.open(setup.trust))
        assert verdict.trusted, (envelope.name, [f.message for f in verdict.findings])
    # The second poll asks the IMA log only after the last event verified, and still replays.
    again = _collect(setup, store)
    assert {o.status for o in again.values()} == {"trusted"}, {n: o.message for n, o in again.items()}
    ima = [read_sidecar(p) for p in sorted(folder.glob("*" + META_SUFFIX))]
    latest = [m for m in ima if m["output"] == "ima-log"][-1]
    assert "start-event-number" in latest["command"] and latest["ima_start"]


def meta_name(folder: Path, meta: dict[str, Any]) -> str:
    return next(p.name[:-len(META_SUFFIX)] + ".envelope" for p in folder.glob("*" + META_SUFFIX)
                if read_sidecar(p) == meta)


def test_every_tpm_fault_ends_in_its_finding_and_the_rest_stay_trusted(setup: Setup, tmp_path: Path) -> None:
    store = tmp_path / "store"
    first = _collect(setup, store)  # the up-time to compare with, and where each IMA log ended
    assert {o.status for o in first.values()} == {"trusted"}
    faulty = dict(zip([d.name for d in setup.devices[1:-1]], EXPECTED))
    try:
        for name, fault in faulty.items():
            setup.fleet.set_fault(name, fault)
        outcomes = _collect(setup, store)
    finally:
        for name in faulty:
            setup.fleet.clear_faults(name)
    for name, fault in faulty.items():
        outcome = outcomes[name]
        ids = [f["id"] for f in outcome.findings]
        assert outcome.status == "untrusted" and EXPECTED[fault] in ids, (fault, outcome.message, ids)
    assert outcomes[setup.devices[0].name].status == "trusted"
    assert outcomes[setup.devices[-1].name].status == "trusted"
    # tpm2_checkquote beside our verifier, on the quotes as stored: it accepts the good ones (a
    # real swtpm's, the built-in model's) and rejects each faulty one.
    judged = {setup.devices[0].name: True, setup.devices[-1].name: True}
    judged.update({name: False for name, fault in faulty.items() if fault in QUOTE_FAULTS})
    for name, good in judged.items():
        assert _checkquote(store / name, tmp_path / name) is good, name


def _checkquote(folder: Path, work: Path) -> bool:
    """tpm2_checkquote's verdict on the newest stored quote of `folder`, with the AK of the
    poll's certificate reply and the nonce its metadata says was sent."""
    import subprocess

    from cryptography.hazmat.primitives import serialization
    from cryptography import x509

    from tpm_swtpm import _pcrs_file  # the PCR file tpm2-tools reads

    work.mkdir()
    quote_meta = [(p, read_sidecar(p)) for p in sorted(folder.glob("*" + META_SUFFIX))]
    path, meta = [(p, m) for p, m in quote_meta if m["output"] == "quote"][-1]
    envelope = path.with_name(path.name[:-len(META_SUFFIX)] + ".envelope")
    node = parse_quote(envelope.read_bytes())[0]
    leaf = x509.load_der_x509_certificate(parse_certificates((folder / meta["signer"]).read_bytes())[0].certificates[0])
    (work / "ak.pem").write_bytes(leaf.public_key().public_bytes(serialization.Encoding.PEM,
                                                                 serialization.PublicFormat.SubjectPublicKeyInfo))
    (work / "q.msg").write_bytes(node.quote)
    (work / "q.sig").write_bytes(node.signature)
    (work / "q.pcrs").write_bytes(_pcrs_file(node.pcrs))
    done = subprocess.run(["tpm2_checkquote", "-u", "ak.pem", "-m", "q.msg", "-s", "q.sig", "-f", "q.pcrs",
                           "-g", "sha256", "-q", meta["nonce"]], cwd=work, capture_output=True, timeout=30)
    return done.returncode == 0


def test_a_file_measured_without_a_reference_value_is_an_appraisal_finding(setup: Setup, tmp_path: Path) -> None:
    """The emulator runs a file the file-system inventory does not list; the IMA log replays
    (verified, trusted), and the appraisal finds the measurement without reference value."""
    policy = AppraisalPolicy.from_document({"format": "trust-dossier/policy/1",
                                            "rules": {"runtime-measurements": {"level": "enforce"},
                                                      "boot-measurements": {"level": "warn"}}})
    store = tmp_path / "store"
    victim, clean = setup.devices[1].name, setup.devices[2].name
    setup.fleet.set_fault(victim, Fault.TPM_IMA_UNKNOWN_FILE)
    try:
        outcomes = _collect(setup, store, [d for d in setup.devices if d.name in (victim, clean)], policy=policy)
    finally:
        setup.fleet.clear_faults(victim)
    assert outcomes[victim].status == "trusted" and outcomes[victim].appraisal["status"] == "contraindicated"
    assert outcomes[clean].appraisal["status"] == "affirming", outcomes[clean].appraisal
    found = [finding for path in sorted((store / victim).glob("*" + APPRAISAL_SUFFIX))
             for finding in read_sidecar(path, "appraisal")["findings"]]
    unknown = [f for f in found if f["id"] == "appraisal.tpm.measurement_unknown"]
    assert unknown and unknown[0]["subject"] == "/tmp/.x/implant", found


def test_dossier_collect_reports_tpm_outputs(setup: Setup, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["collect", "-i", str(setup.inventory), "--store", str(tmp_path / "s"),
                                      "--trust-store", str(setup.trust), "--json", "--device",
                                      setup.devices[0].name])
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)["devices"][0]
    assert outcome["status"] == "trusted" and "quote=" in outcome["nonce"]


def test_a_netconf_host_key_mismatch_is_refused(setup: Setup, tmp_path: Path) -> None:
    device, other = setup.devices[0], setup.devices[1]
    wrong = dataclasses.replace(device, host_key=other.host_key, evidence=("tpm",))
    outcome = _collect(setup, tmp_path / "s", [wrong])[device.name]
    assert outcome.reason == "ssh.host_key" and "HOST KEY MISMATCH" in outcome.message


def test_a_netconf_server_that_stalls_cannot_hang_the_collector(setup: Setup, tmp_path: Path) -> None:
    """A server that sends an SSH banner, then nothing: the session's deadline ends the poll."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            connection.sendall(b"SSH-2.0-stall\r\n")
            held.append(connection)

    threading.Thread(target=serve, daemon=True).start()
    try:
        device = dataclasses.replace(setup.devices[0], port=listener.getsockname()[1], netconf_port=None,
                                     evidence=("tpm",), timeouts=Timeouts(connect=1, auth=1, command=1, device=3))
        begin = time.monotonic()
        outcome = _collect(setup, tmp_path / "s", [device])[device.name]
        assert outcome.status == "failed" and outcome.reason == "ssh.timeout", outcome.message
        assert time.monotonic() - begin < 10
    finally:
        listener.close()
        for connection in held:
            connection.close()


def test_status_judges_the_whole_poll_not_its_newest_output(setup: Setup, tmp_path: Path) -> None:
    """A poll whose dossier is trusted and whose quote is not: `dossier status` says untrusted
    (the newest stored output, the IMA log, would say trusted alone), and shows each kind."""
    store = tmp_path / "store"
    device = setup.devices[0]
    _collect(setup, store, [device])
    setup.fleet.set_fault(device.name, Fault.TPM_NONCE_UNBOUND)
    try:
        _collect(setup, store, [device])
    finally:
        setup.fleet.clear_faults(device.name)
    result = CliRunner().invoke(cli, ["status", "--store", str(store), "--trust-store", str(setup.trust), "--json"])
    row = json.loads(result.stdout)["devices"][0]
    assert row["last_status"] == "untrusted" and row["evidence"] == {"dossier": "trusted", "tpm": "untrusted"}, row
    assert result.exit_code == 1


def test_the_report_shows_tpm_evidence_beside_the_dossier(setup: Setup, tmp_path: Path) -> None:
    store = tmp_path / "store"
    device, faulty = setup.devices[0], setup.devices[1]
    _collect(setup, store, [device, faulty])
    setup.fleet.set_fault(faulty.name, Fault.TPM_BOOT_LOG_MISMATCH)
    try:
        _collect(setup, store, [faulty])
    finally:
        setup.fleet.clear_faults(faulty.name)
    out = tmp_path / "report.html"
    result = CliRunner().invoke(cli, ["report", "--store", str(store), "--trust-store", str(setup.trust),
                                      "--json", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    jsonschema.validate(report, schemas.load("report"))
    rows = {row["device"]: row for row in report["devices"]}
    assert rows[device.name]["tpm"]["state"] == "trusted" and rows[device.name]["verification"]["state"] == "trusted"
    assert rows[faulty.name]["tpm"]["reason"] == "tpm.boot_log_mismatch"
    assert rows[faulty.name]["verification"]["state"] == "untrusted"
    assert len(rows[device.name]["timeline"]) == 1  # the dossier's timeline, not one point per TPM reply
    assert "TPM attestation" in out.read_text()


def test_dossier_verify_checks_stored_tpm_outputs_like_the_others(setup: Setup, tmp_path: Path) -> None:
    store = tmp_path / "store"
    device = setup.devices[-1]
    _collect(setup, store, [dataclasses.replace(device, evidence=("tpm",))])
    files = sorted(str(p) for p in (store / device.name).glob("*.envelope"))
    result = CliRunner().invoke(cli, ["verify", *files, "--trust-store", str(setup.trust), "--at", "received", "--json"])
    verdicts = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert result.exit_code == 0 and len(verdicts) == 4 and all(v["trusted"] for v in verdicts), result.output
    assert {v["profile"] for v in verdicts} == {"xr-tpm-certificate", "xr-tpm-quote", "xr-tpm-boot-log",
                                                 "xr-tpm-ima-log"}


def test_the_service_judges_a_device_by_its_whole_newest_poll(setup: Setup, tmp_path: Path) -> None:
    """The API's fleet and device rows and the dashboard's pages judge the whole newest poll: a
    trusted dossier beside an untrusted quote is an untrusted device with the quote's finding and
    the dossier's appraisal status (the newest stored output, the IMA log, would say trusted and
    not appraised alone)."""
    from fastapi.testclient import TestClient

    from collector.service.app import create_app
    from collector.service.schemas import response_schema
    from collector.service.settings import ServiceSettings

    store = tmp_path / "store"
    device, faulty = setup.devices[0], setup.devices[1]
    policy = AppraisalPolicy.from_document({"format": "trust-dossier/policy/1",
                                            "rules": {"runtime-measurements": {"level": "enforce"}}})
    _collect(setup, store, [device, faulty], policy=policy)
    setup.fleet.set_fault(faulty.name, Fault.TPM_NONCE_UNBOUND)
    try:
        _collect(setup, store, [faulty], policy=policy)
    finally:
        setup.fleet.clear_faults(faulty.name)
    app = create_app(ServiceSettings(store=store, trust_store=setup.trust, inventory=setup.inventory),
                     start_collector=False)
    with TestClient(app) as client:
        body = client.get("/api/v1/fleet").json()
        jsonschema.Draft202012Validator(response_schema("api-fleet")).validate(body)
        rows = {row["device"]: row for row in body["devices"]}
        good, bad = rows[device.name], rows[faulty.name]
        assert good["verification"]["state"] == "trusted" and good["tpm"]["state"] == "trusted", good
        assert bad["verification"]["state"] == "untrusted" and bad["verification"]["reason"] == "nonce.mismatch", bad
        assert bad["tpm"]["state"] == "untrusted" and bad["tpm"]["reason"] == "nonce.mismatch", bad
        assert bad["status"] != "none" and good["status"] != "none", (good["status"], bad["status"])
        assert bad["last_envelope"] and "tpm" not in bad["last_envelope"]  # the dossier's output
        one = client.get(f"/api/v1/devices/{faulty.name}").json()
        jsonschema.Draft202012Validator(response_schema("api-device")).validate(one)
        assert one["device"]["verification"]["state"] == "untrusted" and one["device"]["tpm"] == bad["tpm"]
        page = client.get("/dashboard/", params={"state": "untrusted"}).text
        assert f'data-device="{faulty.name}"' in page and f'data-device="{device.name}"' not in page
        assert 'data-tpm="untrusted"' in page
        device_page = client.get(f"/dashboard/devices/{faulty.name}").text
        assert 'id="tpm" data-tpm="untrusted"' in device_page
        assert 'class="finding" data-id="nonce.mismatch"' in device_page  # the quote's, not only the IMA log's
        # What the device runs comes from its newest trusted dossier, not its newest trusted output (a TPM reply).
        assert 'id="packages"' in client.get(f"/dashboard/devices/{device.name}").text


def test_a_quote_relayed_from_another_device_is_not_this_devices(setup: Setup, tmp_path: Path) -> None:
    """Both devices' attestation keys chain to the fleet's one TPM vendor root: device A's
    inventory entry pointing at device B (B's NETCONF port, B's host key pinned) gets B's
    genuine quote, which must not verify as A's (A's attestation key is pinned)."""
    victim, relay = setup.devices[2], setup.devices[3]
    relayed = dataclasses.replace(victim, host=relay.host, port=relay.port, netconf_port=relay.netconf_port,
                                  host_key=relay.host_key, username=relay.username, credential=relay.credential,
                                  evidence=("tpm",))
    outcome = _collect(setup, tmp_path / "store", [relayed])[victim.name]
    assert outcome.status == "untrusted" and outcome.reason == "identity.mismatch", (outcome.reason, outcome.message)
    assert "another TPM's" in outcome.message and victim.name in outcome.message, outcome.message


def test_an_unpinned_attestation_key_is_untrusted_and_names_the_command(setup: Setup, tmp_path: Path) -> None:
    device = setup.devices[2]
    trust = tmp_path / "trust"
    enroll_root(trust, fetch_root(device), source="tofu")
    TrustStore.open(trust).add_root(device.name, setup.fleet.tpm_authority().root, source="tpm-vendor")
    collector = Collector(Store.open(tmp_path / "store"), trust_store_path=trust,
                          options=CollectOptions(concurrency=1, retries=0))
    outcome = collector.run([dataclasses.replace(device, evidence=("tpm",))]).outcomes[0]
    assert outcome.status == "untrusted" and outcome.reason == "identity.not_pinned", outcome.message
    assert f"dossier enroll -i INVENTORY --device {device.name}" in outcome.message


def test_dossier_enroll_pins_each_nodes_attestation_key_once_confirmed(setup: Setup, tmp_path: Path) -> None:
    device = setup.devices[2]
    trust = tmp_path / "trust"
    enroll_root(trust, fetch_root(device), source="tofu")
    TrustStore.open(trust).add_root(device.name, setup.fleet.tpm_authority().root, source="tpm-vendor")
    root = TrustStore.open(trust).root_entries(device.name)[0].sha256
    args = ["enroll", "-i", str(setup.inventory), "--trust-store", str(trust), "--device", device.name, "--json",
            "--expect-fingerprint", root]
    refused = CliRunner().invoke(cli, [*args, "--expect-ak-fingerprint", "ab" * 32])
    assert refused.exit_code == 1 and TrustStore.open(trust).pinned_attestation_keys(device.name) == {}
    assert "expected attestation key" in json.loads(refused.stdout)["devices"][-1]["message"], refused.stdout
    offered = fetch_attestation_keys(device, trust_store_path=trust)
    confirmed = CliRunner().invoke(cli, [*args, *(f"--expect-ak-fingerprint={c.sha256}" for c in offered)])
    assert confirmed.exit_code == 0, confirmed.output
    actions = [entry for entry in json.loads(confirmed.stdout)["devices"] if "attestation_key" in entry]
    assert [(e["action"], e["source"]) for e in actions] == [("enrolled", "fingerprint")] * len(offered)
    pinned = TrustStore.open(trust).pinned_attestation_keys(device.name)
    assert sorted(pinned) == sorted(c.location for c in offered)
