"""The built-in TPM of each node of an emulated device: an AK, PCRs from the device's state, quotes.

`DeviceTpm` answers what the NETCONF agent asks (certificate chain, quote, boot and IMA logs)
and applies the device's TPM faults to what it reports; the PCRs themselves always follow the
device's state (emulator.tpm.measure).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..faults import Fault
from . import measure, structures
from .authority import TpmAuthority, load_authority
from .swtpm import Swtpm

__all__ = ["AK_CERTIFICATE_ID", "DeviceTpm", "Quote", "TpmError"]

AK_CERTIFICATE_ID = "aik"  # the one certificate-identifier a node answers
STALE_NONCE = bytes(16)  # TPM_NONCE_UNBOUND's default extraData
DEFAULT_MISMATCH_BOOT_PCR = 4
DEFAULT_UNKNOWN_FILE = "/tmp/.x/implant"
DEFAULT_BACKWARDS_UPTIME_S = 5


class TpmError(Exception):
    """A request the TPM cannot serve (unknown node, PCR index out of range)."""


@dataclass(frozen=True)
class Quote:
    """What attest-platform-config-registers reports for one node."""

    node: str
    up_time: int
    pcrs: dict[int, bytes]  # the values reported (index -> 32 bytes)
    attest: bytes  # marshalled TPMS_ATTEST
    signature: bytes  # marshalled TPMT_SIGNATURE


def _file_stem(node: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", node)


class DeviceTpm:
    """One TPM per node of `device`; AK keys and certificates kept in the device's folder.

    Built in by default; after `use_swtpm()` each node's TPM is a real swtpm process (its AK,
    quotes and signatures are the TPM's), until `close()`.
    """

    def __init__(self, device: Any) -> None:
        self.device = device
        self.folder = Path(device.folder) / "tpm"
        self._keys: dict[str, tuple[ec.EllipticCurvePrivateKey | None, x509.Certificate]] = {}
        self._lock = threading.RLock()
        self._swtpm: dict[str, Swtpm] | None = None

    def use_swtpm(self) -> None:
        """Back every node with swtpm from now on (raises SwtpmError if it cannot start)."""
        with self._lock:
            if self._swtpm is None:
                self._swtpm = {}
                self._keys.clear()

    def close(self) -> None:
        """Stop the swtpm processes, if any."""
        with self._lock:
            for swtpm in (self._swtpm or {}).values():
                swtpm.close()
            if self._swtpm is not None:
                self._swtpm = {}

    def _swtpm_of(self, node: str) -> Swtpm | None:
        with self._lock:
            if self._swtpm is None:
                return None
            swtpm = self._swtpm.get(node)
            if swtpm is None:
                swtpm = Swtpm(self.folder / f"{_file_stem(node)}.swtpm")
                swtpm.folder.mkdir(parents=True, exist_ok=True)
                swtpm.start()
                self._swtpm[node] = swtpm
            return swtpm

    @property
    def authority(self) -> TpmAuthority:
        return load_authority(Path(self.device.folder).parent)

    def nodes(self, location: str | None) -> list[str]:
        """The nodes a request covers: `location`, or every node when it is None."""
        nodes = list(self.device.facts.nodes)
        if location is None:
            return nodes
        if location not in nodes:
            raise TpmError(f"unknown location {location!r}: expected one of {', '.join(nodes)}")
        return [location]

    def ak(self, node: str) -> tuple[ec.EllipticCurvePrivateKey | None, x509.Certificate]:
        """The node's AK (None: it is inside swtpm) and its certificate (made and certified on
        first use, then kept)."""
        with self._lock:
            if node in self._keys:
                return self._keys[node]
            swtpm = self._swtpm_of(node)
            if swtpm is not None:
                cert = self._swtpm_certificate(node, swtpm)
                self._keys[node] = (None, cert)
                return None, cert
            key_path = self.folder / f"{_file_stem(node)}.ak.key"
            cert_path = self.folder / f"{_file_stem(node)}.ak.pem"
            if key_path.exists() and cert_path.exists():
                key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
                if not isinstance(key, ec.EllipticCurvePrivateKey):
                    raise TpmError(f"AK key {key_path} is damaged: expected an EC private key")
                cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            else:
                from ..iosxe import _write  # one way to write a state file atomically

                key = ec.generate_private_key(ec.SECP256R1())
                facts = self.device.facts
                cert = self.authority.issue_ak(key.public_key(), hostname=self.device.hostname, node=node,
                                               chassis_serial=facts.chassis_serial, now=self.device.clock.now())
                _write(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()), 0o600)
                _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
            self._keys[node] = (key, cert)
            return key, cert

    def _swtpm_certificate(self, node: str, swtpm: Swtpm) -> x509.Certificate:
        from ..iosxe import _write

        public = swtpm.ak_public()
        cert_path = swtpm.folder / "ak.cert.pem"
        if cert_path.exists():
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            if cert.public_key() == public:
                return cert
        cert = self.authority.issue_ak(public, hostname=self.device.hostname, node=node,
                                       chassis_serial=self.device.facts.chassis_serial, now=self.device.clock.now())
        _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        return cert

    def chain(self, node: str) -> list[tuple[str, x509.Certificate]]:
        """(name, certificate) leaf first: the AK, the attestation sub-CA, the vendor root."""
        authority = self.authority
        return [(AK_CERTIFICATE_ID, self.ak(node)[1]), ("tpm-ca", authority.sub_ca), ("tpm-root", authority.root)]

    def sign(self, node: str, data: bytes) -> bytes:
        """ECDSA-SHA256 (DER) signature by the node's AK over `data`."""
        key = self.ak(node)[0]
        if key is None:
            swtpm = self._swtpm_of(node)
            assert swtpm is not None
            return swtpm.sign(data)
        return key.sign(data, ec.ECDSA(hashes.SHA256()))

    # -- state ---------------------------------------------------------------------------------
    def _fault(self, fault: Fault, node: str) -> dict[str, Any] | None:
        faults = self.device.faults
        if fault not in faults:
            return None
        params = faults.params(fault)
        wanted = params.get("node")
        return params if wanted in (None, node) else None

    def true_up_time(self, node: str) -> int:
        return max(0, int(self.device.clock.timestamp() - self.device.facts.last_boot_time(node)))

    def up_time(self, node: str) -> int:
        """Seconds since the node booted, as reported (TPM_UPTIME_BACKWARDS lowers it)."""
        backwards = self._fault(Fault.TPM_UPTIME_BACKWARDS, node)
        if backwards is not None:
            return int(float(backwards.get("seconds", DEFAULT_BACKWARDS_UPTIME_S)))
        return self.true_up_time(node)

    def _files(self, node: str) -> dict[str, Any] | None:
        inventories = self.device.fsinv
        if inventories is None or node not in inventories:
            return None
        inventory = inventories[node]
        inventory.advance_to(self.device.clock.timestamp())
        return inventory.current_files()

    def boot_log(self, node: str) -> list[measure.BootEvent]:
        """The boot event log as reported (TPM_BOOT_LOG_MISMATCH alters one event's digest)."""
        events = measure.boot_log(self.device.facts, node)
        mismatch = self._fault(Fault.TPM_BOOT_LOG_MISMATCH, node)
        if mismatch is not None:
            pcr = int(float(mismatch.get("pcr", DEFAULT_MISMATCH_BOOT_PCR)))
            for position, event in enumerate(events):
                if event.pcr_index == pcr:
                    events[position] = measure.BootEvent(event.number, event.event_type, pcr,
                                                         bytes(b ^ 0xFF for b in event.digest), event.data)
                    break
        return events

    def ima_log(self, node: str) -> list[measure.ImaEvent]:
        """The IMA log: what the node measured (TPM_IMA_UNKNOWN_FILE: it also ran a stray file)."""
        extra: list[tuple[str, bytes]] = []
        unknown = self._fault(Fault.TPM_IMA_UNKNOWN_FILE, node)
        if unknown is not None:
            path = str(unknown.get("path", DEFAULT_UNKNOWN_FILE))
            extra.append((path, measure.digest_of(f"unknown|{path}".encode())))
        return measure.ima_log(self.device.facts, node, self._files(node), extra)

    def measurements(self, node: str) -> list[tuple[int, bytes]]:
        """(PCR, digest) of every measurement the node's TPM took, in order: boot, then IMA."""
        boot = [(event.pcr_index, event.digest) for event in measure.boot_log(self.device.facts, node)]
        return boot + [(entry.pcr_index, entry.template_hash) for entry in self.ima_log(node)]

    def pcrs(self, node: str, measurements: list[tuple[int, bytes]] | None = None) -> dict[int, bytes]:
        """Every PCR of the node's SHA-256 bank (0-23) as the TPM holds it."""
        values = {index: measure.ZERO_PCR for index in range(structures.PCR_BANK_SIZE)}
        values.update(measure.replay(measurements if measurements is not None else self.measurements(node)))
        return values

    # -- quote ---------------------------------------------------------------------------------
    def quote(self, node: str, indexes: list[int], nonce: bytes) -> Quote:
        """TPM2_Quote of `indexes` (ascending, distinct) with `nonce` as extraData, faults applied."""
        for index in indexes:
            if not 0 <= index < structures.PCR_BANK_SIZE:
                raise TpmError(f"PCR index {index} out of range: expected 0-{structures.PCR_BANK_SIZE - 1}")
        key, _ = self.ak(node)
        measurements = self.measurements(node)
        held = self.pcrs(node, measurements)
        selected = sorted(set(indexes))
        extra_data = nonce
        unbound = self._fault(Fault.TPM_NONCE_UNBOUND, node)
        if unbound is not None:
            extra_data = bytes.fromhex(unbound["nonce"]) if unbound.get("nonce") else STALE_NONCE
        up_time = self.up_time(node)
        history = self.device.facts.reboots.get(node, [])
        clock = structures.ClockInfo(clock_ms=up_time * 1000, reset_count=len(history))
        swtpm = self._swtpm_of(node)
        if swtpm is not None:
            with self._lock:
                swtpm.measure(measurements)
                attest, signature = swtpm.quote(selected, extra_data)
        else:
            assert key is not None
            attest = structures.quote_attest(
                signer_name=structures.object_name(key.public_key()), extra_data=extra_data, clock=clock,
                indexes=selected, digest=structures.pcr_digest(held[i] for i in selected))
            signature = structures.sign_attest(key, attest)
        if self._fault(Fault.TPM_OTHER_KEY, node) is not None:
            signature = structures.sign_attest(ec.generate_private_key(ec.SECP256R1()), attest)
        reported = {index: held[index] for index in selected}
        mismatch = self._fault(Fault.TPM_PCR_MISMATCH, node)
        if mismatch is not None:
            pcr = int(float(mismatch.get("pcr", selected[0])))
            if pcr in reported:
                reported[pcr] = measure.digest_of(b"not-what-was-quoted" + reported[pcr])
        return Quote(node, up_time, reported, attest, signature)
