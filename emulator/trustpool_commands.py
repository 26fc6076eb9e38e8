"""The trust pool commands of the IOS XR personality: `crypto ca trustpool import url
<url>|clean` and `show crypto ca trustpool [policy]`. The device side of `emulator.pki.trustpool`:
the built-in bundle it ships, the folder the downloaded bundle is kept in, the configured
`crypto ca trustpool policy`, and the CA stores a download over https is checked against."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cryptography import x509

from . import iosxe
from .grammar import Match
from .pki import PkiError
from .pki.trustpool import (
    MAX_CRL_BYTES,
    Anchor,
    PoolEntry,
    TrustpoolPolicy,
    active_entries,
    auto_update_due,
    fetch_url,
    format_policy,
    format_trustpool,
    load_downloaded,
    parse_bundle,
    save_downloaded,
    validate_peer_certificate,
)

if TYPE_CHECKING:
    from .commands import Session
    from .device import Device

__all__ = ["POLICY_SECTION", "built_in_bundle", "h_show_trustpool", "h_trustpool_import", "peer_anchors"]

POLICY_SECTION = "crypto ca trustpool policy"
_CLEAN = "clean"


def built_in_bundle(device: Device) -> list[x509.Certificate]:
    """The vendor CAs the emulated router ships (the seed's "built-in CA certificate bundle"):
    the fleet's emulated SUDI root and sub-CA, which issue every IOS XE device's SUDI."""
    authority = iosxe.load_authority(device.folder.parent)
    return [authority.root, authority.sub_ca]


def _policy(device: Device) -> TrustpoolPolicy:
    node = device.running.find(POLICY_SECTION)
    if node is None:
        return TrustpoolPolicy()
    return TrustpoolPolicy(
        cabundle_url=node.value("cabundle url"),
        crl_optional=node.find("crl optional") is not None,
        description=node.value("description"),
    )


def peer_anchors(device: Device, entries: list[PoolEntry], policy: TrustpoolPolicy) -> list[Anchor]:
    """Every trustpoint's CA (with the trustpoint's `crl optional`), then the pool's CAs (with
    the pool policy's): the seed's order when a CA is in both."""
    anchors = []
    for name in device.trustpoint_names_with_certs():
        ca_cert, _ = device.certificates(name)
        if ca_cert is None:
            continue
        node = device.running.find(f"crypto ca trustpoint {name}")
        optional = node is not None and node.find("crl optional") is not None
        anchors.append(Anchor(ca_cert, f"trustpoint {name}", optional))
    return anchors + [Anchor(entry.certificate, "trustpool", policy.crl_optional) for entry in entries]


def _download(device: Device, url: str, entries: list[PoolEntry], policy: TrustpoolPolicy) -> list[x509.Certificate]:
    """Fetch and parse the bundle at `url`. Call it without `device.lock`: the fetch may take up
    to the fetch deadline, and the device (its other sessions, the fleet's alert thread) must not
    wait for it. The CA stores the server is checked against are read under the lock first."""
    with device.lock:
        anchors = peer_anchors(device, entries, policy)
        now = device.clock.now()

    def check_server(leaf: x509.Certificate, host: str) -> Anchor:
        return validate_peer_certificate(
            leaf, anchors, host=host, now=now,
            fetch_crl=lambda crl_url: fetch_url(crl_url, max_bytes=MAX_CRL_BYTES),
        )

    return parse_bundle(fetch_url(url, check_server=check_server))


def _pool(device: Device) -> tuple[list[PoolEntry], TrustpoolPolicy, str]:
    """The active pool, its policy, and a warning when a due automatic update failed.

    Whether the update is due is decided under `device.lock`; the download runs without it (a
    slow or trickling server must not freeze the device), and the lock is taken again to save."""
    folder = device.folder / "trustpool"
    with device.lock:
        policy = _policy(device)
        entries = active_entries(built_in_bundle(device), load_downloaded(folder))
        if not auto_update_due(entries, policy, device.clock.now()):
            return entries, policy, ""
    assert policy.cabundle_url is not None
    try:
        bundle = _download(device, policy.cabundle_url, entries, policy)
    except PkiError as error:
        # The pool stays as it was; the next use tries again (the seed retries on a schedule).
        return entries, policy, f"% Trustpool automatic update failed: {error.message.lstrip('% ')}\n"
    with device.lock:
        save_downloaded(folder, bundle)
    return active_entries(built_in_bundle(device), bundle), policy, ""


def h_show_trustpool(s: Session, m: Match) -> str:
    entries, policy, warning = _pool(s.device)
    if m.args.get("policy"):
        return warning + format_policy(policy, entries)
    return warning + format_trustpool(entries)


def h_trustpool_import(s: Session, m: Match) -> str:
    url = m.args["url"]
    device = s.device
    folder = device.folder / "trustpool"
    if url.lower() == _CLEAN:
        with device.lock:
            save_downloaded(folder, [])
        return ""
    entries, policy, _ = _pool(device)
    s.term.write(f"Reading file from {url}\n")
    bundle = _download(device, url, entries, policy)
    with device.lock:
        save_downloaded(folder, bundle)
    return f"% CA certificate bundle imported: {len(bundle)} CA certificates in the trustpool download\n"
