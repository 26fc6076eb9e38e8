"""The emulator's NETCONF agent as real clients see it: hellos, framing, errors, ports, access."""

from __future__ import annotations

import base64
from pathlib import Path

import paramiko
import pytest
from lxml import etree
from ncclient.operations.rpc import RPCError
from ncclient.transport.errors import AuthenticationError, SSHError

from emulator.faults import Fault
from emulator.netconf.attestation import CAPABILITY, NS
from emulator.nonce import NonceError, parse_base64_nonce
from nc_helpers import BASE_NS, VIEWER, VIEWER_PASSWORD, call, connect, find, raw_session, rpc

BASE_1_0 = "urn:ietf:params:netconf:base:1.0"
BASE_1_1 = "urn:ietf:params:netconf:base:1.1"


@pytest.mark.parametrize("which", ["ssh-port", "netconf-port"])
def test_ncclient_hello_lists_both_bases_and_the_model_on_either_port(nc_fleet, which: str) -> None:
    entry = nc_fleet["xr-0001"]
    with connect(entry, port=entry.port if which == "ssh-port" else entry.netconf_port) as session:
        capabilities = list(session.server_capabilities)
        assert {BASE_1_0, BASE_1_1, CAPABILITY} <= set(capabilities)
        assert session.session_id
        assert etree.fromstring(session.get().xml.encode()).find(f"{{{BASE_NS}}}data") is not None


def test_scrapli_speaks_base_1_0_and_1_1(nc_fleet, work: Path) -> None:
    scrapli = pytest.importorskip("scrapli")
    from scrapli.netconf import Version

    entry = nc_fleet["xr-0001"]
    known_hosts = work / "known_hosts"
    known_hosts.write_text(entry.device.host_key_line(entry.host, entry.netconf_port) + "\n")
    for version in (Version.VERSION_1_0, Version.VERSION_1_1):
        client = scrapli.Netconf(
            entry.host, port=entry.netconf_port, options=scrapli.NetconfOptions(preferred_version=version),
            auth_options=scrapli.AuthOptions(username=entry.username, password=entry.password),
            transport_options=scrapli.TransportBinOptions(known_hosts_path=str(known_hosts), enable_strict_key=True))
        with client:
            result = client.raw_rpc(f'<get-certificate xmlns="{NS}"/>')
            assert not result.failed, result.result
            assert "<name>aik</name>" in result.result
            refused = client.raw_rpc(f'<no-such-rpc xmlns="{NS}"/>')
            assert refused.failed and "operation-not-supported" in refused.result


def test_end_of_message_framing_without_base_1_1(nc_fleet) -> None:
    with raw_session(nc_fleet["xr-0001"]) as raw:
        hello = etree.fromstring(raw.hello(BASE_1_0))
        assert hello.findtext(f"{{{BASE_NS}}}session-id")
        raw.send(f'<rpc message-id="7" xmlns="{BASE_NS}"><get/></rpc>]]>]]>'.encode())
        reply = etree.fromstring(raw.read_until(b"]]>]]>"))
        assert reply.get("message-id") == "7" and reply.find(f"{{{BASE_NS}}}data") is not None
        raw.send(f'<rpc message-id="8" xmlns="{BASE_NS}"><close-session/></rpc>]]>]]>'.encode())
        assert etree.fromstring(raw.read_until(b"]]>]]>")).find(f"{{{BASE_NS}}}ok") is not None


def _error(raw, message: bytes) -> tuple[str | None, str, str]:
    raw.send(message + b"]]>]]>")
    reply = etree.fromstring(raw.read_until(b"]]>]]>"))
    error = reply.find(f"{{{BASE_NS}}}rpc-error")
    return reply.get("message-id"), error.findtext(f"{{{BASE_NS}}}error-tag"), error.findtext(f"{{{BASE_NS}}}error-message")


def test_bad_xml_missing_message_id_and_entities_get_rpc_errors(nc_fleet) -> None:
    with raw_session(nc_fleet["xr-0001"]) as raw:
        raw.hello(BASE_1_0)
        _, tag, message = _error(raw, b"<rpc message-id='1'><get>")
        assert tag == "malformed-message" and "expected well-formed XML" in message
        _, tag, message = _error(raw, f'<rpc xmlns="{BASE_NS}"><get/></rpc>'.encode())
        assert tag == "missing-attribute" and "message-id" in message
        billion = (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">]>'
                   b'<rpc message-id="2" xmlns="' + BASE_NS.encode() + b'"><get>&a;</get></rpc>')
        _, tag, message = _error(raw, billion)
        assert tag == "malformed-message" and "DOCTYPE" in message
        message_id, tag, _ = _error(raw, f'<rpc message-id="3" xmlns="{BASE_NS}"><get-config/></rpc>'.encode())
        assert (message_id, tag) == ("3", "operation-not-supported")
        # the session survived every error
        raw.send(f'<rpc message-id="4" xmlns="{BASE_NS}"><get/></rpc>]]>]]>'.encode())
        assert etree.fromstring(raw.read_until(b"]]>]]>")).get("message-id") == "4"


def test_a_message_over_the_size_bound_ends_the_session(nc_fleet) -> None:
    from emulator.netconf.framing import MAX_MESSAGE_BYTES

    with raw_session(nc_fleet["xr-0001"]) as raw:
        raw.hello(BASE_1_0, BASE_1_1)  # chunked from here
        raw.send(b"\n#%d\n" % (MAX_MESSAGE_BYTES + 1))
        raw.send(b"x" * 4096)
        data = b""
        while True:  # the device answers once, then closes: it never buffers the megabyte
            chunk = raw.channel.recv(65536)
            if not chunk:
                break
            data += chunk
        assert b"malformed-message" in data and b"larger than" in data


def test_unknown_rpc_and_bad_inputs_raise_rpc_errors_in_ncclient(nc_fleet) -> None:
    with connect(nc_fleet["xr-0001"]) as session:
        with pytest.raises(RPCError) as unknown:
            session.dispatch(rpc("get-everything"))
        assert unknown.value.tag == "operation-not-supported"
        cases = [
            (rpc("attest-platform-config-registers", nonce="AAEC"), "missing-element", "pcr-index"),
            (rpc("attest-platform-config-registers", pcr_index=24), "invalid-value", "0-23"),
            (rpc("attest-platform-config-registers", pcr_index=0, nonce="%%%"), "invalid-value", "base64"),
            (rpc("attest-platform-config-registers", pcr_index=0, nonce="A" * 88), "invalid-value", "at most 64"),
            (rpc("get-certificate", location="0/RP9/CPU0"), "invalid-value", "expected one of 0/RP0/CPU0"),
            (rpc("get-certificate", certificate_identifier="sudi"), "invalid-value", "expected one of aik, system-identity"),
            (rpc("get-platform-ima-event-logs", start_event_number=5, end_event_number=2), "invalid-value", ">="),
        ]
        for element, tag, text in cases:
            with pytest.raises(RPCError) as error:
                session.dispatch(element)
            assert error.value.tag == tag and text in error.value.message, (tag, error.value.message)


BAD_BASE64_NONCES = ["AA==", base64.b64encode(bytes(16)).decode(), base64.b64encode(b"\x01" * 65).decode(),
                     "%%%", "FY A=", "FYA", "FYA=AAAA"]
NONCE_RPCS = {"get-certificate": {}, "attest-platform-config-registers": {"pcr_index": 0}}


@pytest.mark.parametrize("bad", BAD_BASE64_NONCES)
def test_attestation_rpcs_refuse_a_bad_nonce_by_the_emulators_one_rule(nc_fleet, bad: str) -> None:
    with pytest.raises(NonceError) as caught:
        parse_base64_nonce(bad)
    with connect(nc_fleet["xr-0001"]) as session:
        for name, leaves in NONCE_RPCS.items():
            with pytest.raises(RPCError) as error:
                session.dispatch(rpc(name, nonce=bad, **leaves))
            info = etree.fromstring(error.value.info.encode())
            assert error.value.tag == "invalid-value", (name, error.value.tag)
            assert info.findtext(f"{{{BASE_NS}}}bad-element") == "nonce", (name, error.value.info)
            assert error.value.message == caught.value.message.removeprefix("% "), (name, error.value.message)


def test_attestation_rpcs_take_an_empty_nonce_as_the_model_allows(nc_fleet) -> None:
    with connect(nc_fleet["xr-0001"]) as session:
        for name, leaves in NONCE_RPCS.items():
            reply = call(session, name, nonce="", **leaves)
            assert find(reply, ".//a:nonce") and all(not nonce.text for nonce in find(reply, ".//a:nonce")), name


def test_a_user_without_crypto_read_is_denied_attestation(nc_fleet) -> None:
    with connect(nc_fleet["xr-0001"], username=VIEWER, password=VIEWER_PASSWORD) as session:
        session.get()  # the session itself is allowed
        with pytest.raises(RPCError) as denied:
            session.dispatch(rpc("get-certificate"))
        assert denied.value.tag == "access-denied" and "read crypto" in denied.value.message


def test_wrong_password_and_rate_limit_apply_as_for_the_cli(nc_fleet, faulty: str) -> None:
    entry = nc_fleet[faulty]
    with pytest.raises(AuthenticationError):
        connect(entry, password="wrong")
    nc_fleet.set_fault(faulty, Fault.RATE_LIMIT)
    with pytest.raises(SSHError):  # refused before SSH, as the CLI's port refuses
        connect(entry)


def test_the_netconf_port_serves_only_netconf_and_closes_without_the_agent(nc_fleet, faulty: str) -> None:
    entry = nc_fleet[faulty]
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(entry.host, port=entry.netconf_port, username=entry.username, password=entry.password,
                   look_for_keys=False, allow_agent=False, timeout=30)
    try:
        with pytest.raises(paramiko.SSHException):
            client.exec_command("show version", timeout=10)
    finally:
        client.close()
    device = entry.device
    agent = device.running.find("netconf-yang agent")
    device.running.children.remove(agent)
    try:
        with pytest.raises(SSHError):
            connect(entry)
    finally:
        device.running.children.append(agent)
    with connect(entry) as session:
        assert find(call(session, "get-certificate"), "a:system-certificates")
