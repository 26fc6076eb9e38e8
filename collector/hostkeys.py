"""Pin SSH host keys into the inventory: from an OpenSSH known_hosts file, or as a device offers
them once the operator has confirmed the fingerprint.

The inventory is hand-written YAML with comments, which PyYAML cannot write back. So only the
`host_key:` entries change, in the text: an existing pin's value is replaced where it stands, a
new one is added on the line after the device's `name:` (inside `{...}` for a flow mapping).
Every other byte of the file stays as it was, and the result is loaded and checked before it
replaces the file.

A pin carries how it was made after the key (`pinned-by=known-hosts|fingerprint|interactive|
trust-on-first-use`): known_hosts lines allow a comment there, and auditors ask for it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import InventoryError
from .inventory import Device, HostKey, load_inventory

__all__ = ["PIN_METHODS", "Pin", "keys_from_known_hosts", "normalise_ssh_fingerprint", "pin_host_keys"]

log = logging.getLogger(__name__)

#: How a pin was made, recorded after the key.
PIN_METHODS = ("known-hosts", "fingerprint", "interactive", "trust-on-first-use")
#: Key types taken from a known_hosts file when it holds several for one host: strongest first.
KEY_TYPE_PREFERENCE = ("ssh-ed25519", "ecdsa-sha2-nistp521", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp256",
                       "ssh-rsa")


@dataclass(frozen=True)
class Pin:
    """One device's host key to pin, and how it was confirmed."""

    device: str
    key: HostKey
    method: str

    @property
    def line(self) -> str:
        """The inventory's `host_key` value: the known_hosts line, then how it was pinned."""
        head = " ".join(self.key.line.split()[:3]) if len(self.key.line.split()) >= 3 else self.key.line
        return f"{head} pinned-by={self.method}"


def normalise_ssh_fingerprint(text: str) -> str:
    """`SHA256:<base64>` as OpenSSH prints it (padding dropped); raises ValueError otherwise."""
    import base64
    import binascii

    value = text.strip()
    if not value.startswith("SHA256:"):
        raise ValueError(f"expected an OpenSSH fingerprint 'SHA256:<base64>' (ssh-keygen -lf), found {text!r}")
    body = value[len("SHA256:"):].rstrip("=")
    try:
        digest = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except binascii.Error:
        digest = b""
    if len(digest) != 32:
        raise ValueError(f"expected 'SHA256:' and the base64 of 32 bytes, found {text!r}")
    return "SHA256:" + body


def keys_from_known_hosts(path: Path, devices: Iterable[Device]) -> tuple[dict[str, HostKey], list[str]]:
    """Each device's key in an OpenSSH known_hosts file (hashed `|1|` entries too), looked up
    as OpenSSH would (`[host]:port` off port 22). Lines OpenSSH would not use for a host key are
    skipped as it skips them: `@cert-authority` lines (a CA for host certificates, not a host's
    key) and lines it cannot read. Returns the keys found and the names of the devices the file
    has no key for. Raises InventoryError if the file cannot be read, or if the key found for a
    device is also listed `@revoked`."""
    import paramiko
    from paramiko.hostkeys import HostKeyEntry, InvalidHostKey

    try:
        text = path.read_text("utf-8", errors="replace")
    except OSError as exc:
        raise InventoryError(f"cannot read known_hosts file {path}: {exc.strerror or exc}") from exc
    known = paramiko.HostKeys()
    revoked: set[str] = set()  # base64 blobs of keys OpenSSH refuses whatever else the file says
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("@"):
            marker, _, rest = stripped.partition(" ")
            fields = rest.split()
            if marker == "@revoked" and len(fields) >= 3:
                revoked.add(fields[2])
            continue
        try:
            entry = HostKeyEntry.from_line(stripped, number)
        except (InvalidHostKey, paramiko.SSHException, ValueError):
            continue  # as OpenSSH does with a line it cannot read
        if entry is not None and entry.key is not None:
            for hostname in entry.hostnames:
                known.add(hostname, entry.key.get_name(), entry.key)
    found: dict[str, HostKey] = {}
    missing: list[str] = []
    for device in devices:
        entry = known.lookup(device.known_hosts_name)
        types = sorted(entry.keys(), key=lambda t: KEY_TYPE_PREFERENCE.index(t)
                       if t in KEY_TYPE_PREFERENCE else len(KEY_TYPE_PREFERENCE)) if entry else []
        if not types:
            missing.append(device.name)
            continue
        key = entry[types[0]]  # type: ignore[index]
        if key.get_base64() in revoked:
            raise InventoryError(f"{path}: the {key.get_name()} key for {device.name} ({device.known_hosts_name}) is "
                                 "listed @revoked; not pinning it: expected a key that is not revoked")
        found[device.name] = HostKey.parse(f"{device.known_hosts_name} {key.get_name()} {key.get_base64()}")
    return found, missing


def pin_host_keys(inventory_path: Path, pins: Mapping[str, Pin]) -> None:
    """Write each pin as its device's `host_key` in the inventory, changing nothing else.

    Raises InventoryError if a device is not in the file as a `name:` entry of `devices`, or
    the edited file would not load (the file is then left as it was)."""
    from .store import write_file_atomically

    text = inventory_path.read_text("utf-8")
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    edits: list[tuple[int, int, str]] = []  # (start, end, replacement) in character offsets
    seen: set[str] = set()
    entries = _mapping_value(root, "devices") if isinstance(root, yaml.MappingNode) else None
    for node in entries.value if isinstance(entries, yaml.SequenceNode) else ():
        if not isinstance(node, yaml.MappingNode):
            continue
        name_node = _mapping_value(node, "name")
        name = name_node.value if isinstance(name_node, yaml.ScalarNode) else None
        if name not in pins:
            continue
        seen.add(name)
        value = json.dumps(pins[name].line)  # a JSON string is a YAML double-quoted scalar
        existing = _mapping_value(node, "host_key")
        if existing is not None:
            edits.append((existing.start_mark.index, existing.end_mark.index, value))
        elif node.flow_style:
            edits.append((name_node.end_mark.index, name_node.end_mark.index, f", host_key: {value}"))
        else:
            key_node = next(k for k, v in node.value if v is name_node)
            end_of_line = text.find("\n", name_node.end_mark.index)
            end_of_line = len(text) if end_of_line < 0 else end_of_line
            indent = " " * key_node.start_mark.column
            edits.append((end_of_line, end_of_line, f"\n{indent}host_key: {value}"))
    unknown = sorted(set(pins) - seen)
    if unknown:
        raise InventoryError(f"{inventory_path}: expected `- name: ...` entries under `devices:` for "
                             f"{', '.join(unknown)}, found none to pin the host key in")
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    # Checked as the collector will read it, beside the original (relative paths resolve alike).
    check = inventory_path.with_name(f".{inventory_path.name}.hostkeys-check")
    try:
        check.write_text(text, "utf-8")
        loaded = {device.name: device for device in load_inventory(check).devices}
    finally:
        check.unlink(missing_ok=True)
    for name, pin in pins.items():
        if loaded[name].host_key is None or loaded[name].host_key.blob != pin.key.blob:  # type: ignore[union-attr]
            raise InventoryError(f"{inventory_path}: the edited inventory does not pin {name}'s key as expected; "
                                 "left unchanged")
    write_file_atomically(inventory_path, text.encode("utf-8"), replace=True,
                          mode=inventory_path.stat().st_mode & 0o7777)


def _mapping_value(node: yaml.MappingNode, key: str) -> yaml.Node | None:
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            return value_node
    return None
