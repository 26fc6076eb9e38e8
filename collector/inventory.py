"""Load the fleet inventory (YAML, Nornir/Ansible style) into resolved `Device` objects.

Settings resolve device > its groups (in the order listed, first wins) > `defaults`; the
`timeouts` mapping merges key by key. The file is checked against
`schemas/inventory.schema.json`; every mistake is reported with file, line and field.
Credentials are references (environment variable, password file, key file, agent) and are
read only when a connection needs them; a relative file path is relative to the inventory
file's folder.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jsonschema
import paramiko
import yaml

import schemas

from .errors import InventoryError

__all__ = [
    "DEFAULT_EVIDENCE",
    "DEFAULT_ITEMS",
    "Credential",
    "Device",
    "HostKey",
    "Inventory",
    "JumpHost",
    "Timeouts",
    "load_inventory",
]

#: The seed's example command collects these; `filesystem-inventory` is opt-in because a
#: full snapshot can be several MB.
DEFAULT_ITEMS: tuple[str, ...] = (
    "packages",
    "reboot-history",
    "rollback-history",
    "system-integrity-snapshot",
    "system-inventory",
)
#: What a poll collects when the inventory does not say: the dossier (or IOS XE's signed commands).
DEFAULT_EVIDENCE: tuple[str, ...] = ("dossier",)
#: Inventories are hand-written; anything bigger is a mistake (or not an inventory).
MAX_INVENTORY_BYTES = 32 * 1024 * 1024
#: How many problems one error message lists before it stops.
MAX_REPORTED_PROBLEMS = 20


@dataclass(frozen=True)
class Timeouts:
    """Deadlines in seconds: each phase has its own, `device` bounds all attempts together."""

    connect: float = 10.0
    auth: float = 15.0
    command: float = 120.0
    device: float = 300.0


@dataclass(frozen=True)
class HostKey:
    """A pinned SSH host key, given as a known_hosts line."""

    key_type: str
    key_base64: str
    line: str

    @classmethod
    def parse(cls, line: str) -> HostKey:
        """Parse `[host]:port TYPE BASE64` or `TYPE BASE64`; raises ValueError."""
        tokens = line.split()
        if len(tokens) >= 3 and not _looks_like_key_type(tokens[0]):
            tokens = tokens[1:]
        if len(tokens) < 2 or not _looks_like_key_type(tokens[0]):
            raise ValueError(f"expected '[host]:port <key-type> <base64>', found {line!r}")
        key_type, blob = tokens[0], tokens[1]
        try:
            paramiko.PKey.from_type_string(key_type, base64.b64decode(blob, validate=True))
        except Exception as exc:  # paramiko raises several unrelated types for bad key blobs
            raise ValueError(f"the {key_type} key in {line!r} does not decode: {exc}") from exc
        return cls(key_type=key_type, key_base64=blob, line=line)

    def to_pkey(self) -> paramiko.PKey:
        return paramiko.PKey.from_type_string(self.key_type, base64.b64decode(self.key_base64))

    @property
    def blob(self) -> bytes:
        """The public key blob, as the device sends it in the SSH handshake."""
        return base64.b64decode(self.key_base64)

    @property
    def fingerprint(self) -> str:
        """OpenSSH-style `SHA256:...` fingerprint."""
        return ssh_fingerprint(base64.b64decode(self.key_base64))


def ssh_fingerprint(key_blob: bytes) -> str:
    """OpenSSH's `SHA256:<base64 without padding>` of a public key blob."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key_blob).digest()).decode().rstrip("=")


def _read_password_file(path: Path, where: str) -> bytes:
    """The bytes of a password file that only its owner may read. Few system calls (open,
    fstat, read to the end, close; the mode checked on the file opened): a collector reads
    one per device per poll among many busy threads, where each call costs a GIL round."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise InventoryError(
                f"{where}: credential: password file {path} must be readable by "
                f"its owner only (mode 0600), found mode {stat.S_IMODE(mode):04o}; "
                f"run `chmod 600 {path}`"
            )
        chunks = [os.read(fd, 4096)]
        while chunks[-1]:
            chunks.append(os.read(fd, 65536))
        return b"".join(chunks)
    finally:
        os.close(fd)


def _looks_like_key_type(token: str) -> bool:
    return token.startswith(("ssh-", "ecdsa-sha2-", "sk-"))


@dataclass(frozen=True)
class Credential:
    """A reference to a secret; `repr` never shows the secret itself."""

    kind: str  # "password_env" | "password_file" | "key_file" | "agent"
    reference: str | None = None
    passphrase_env: str | None = None
    where: str = ""
    #: Why the reference cannot be used (e.g. a ~user this machine does not know): reported when
    #: the credential is needed, so that only its device fails.
    problem: str | None = None
    #: The password as read for one poll (`loaded`): never shown, never compared.
    value: str | None = field(default=None, repr=False, compare=False)

    def _usable(self) -> None:
        if self.problem is not None:
            raise InventoryError(f"{self.where}: credential: {self.problem}")

    def loaded(self) -> Credential:
        """This credential ready for one poll, or InventoryError now if it cannot be used (before
        connecting with it): an unknown ~user, an unset variable, a password file that cannot be
        read, a key file that does not exist or cannot be read, an unset passphrase variable.
        A password is read now, once: the poll's attempts and authentication use that value
        instead of reading the file again (a changed file applies from the next poll); keep it
        no longer than the poll. Keys are not decrypted here (that is the connection's work)."""
        self._usable()
        if self.kind in ("password_env", "password_file"):
            return replace(self, value=self.password()) if self.value is None else self
        if self.kind == "key_file":
            path = Path(self.reference or "")
            if not os.access(path, os.R_OK):
                raise InventoryError(f"{self.where}: credential: expected a readable key file at {path}, "
                                     f"found {'one this user cannot read' if path.exists() else 'none'}")
            if self.passphrase_env and self.passphrase_env not in os.environ:
                raise InventoryError(
                    f"{self.where}: credential: expected environment variable "
                    f"{self.passphrase_env} to hold the key passphrase, found it unset")
        return self

    def password(self) -> str:
        """Read the password now (or the value `loaded` read); raises InventoryError naming
        the reference when it is missing."""
        if self.value is not None:
            return self.value
        self._usable()
        if self.kind == "password_env":
            value = os.environ.get(self.reference or "")
            if value is None:
                raise InventoryError(
                    f"{self.where}: credential: expected environment variable "
                    f"{self.reference} to hold the password, found it unset; export it "
                    "before running the collector"
                )
            return value
        if self.kind == "password_file":
            path = Path(self.reference or "")
            try:
                return _read_password_file(path, self.where).decode("utf-8").rstrip("\r\n")
            except OSError as exc:
                raise InventoryError(
                    f"{self.where}: credential: cannot read password file {path}: "
                    f"{exc.strerror}"
                ) from exc
            except UnicodeDecodeError:
                # Neither the byte nor its offset: both are part of the secret.
                raise InventoryError(
                    f"{self.where}: credential: expected password file {path} to hold UTF-8 "
                    "text, found bytes that are not UTF-8"
                ) from None
        raise InventoryError(f"{self.where}: credential of kind {self.kind} has no password")

    def private_key(self) -> paramiko.PKey:
        """Load the key file (passphrase from its environment variable, if named)."""
        self._usable()
        passphrase = None
        if self.passphrase_env:
            passphrase = os.environ.get(self.passphrase_env)
            if passphrase is None:
                raise InventoryError(
                    f"{self.where}: credential: expected environment variable "
                    f"{self.passphrase_env} to hold the key passphrase, found it unset"
                )
        path = Path(self.reference or "").expanduser()
        try:
            password = passphrase.encode() if passphrase is not None else None
            return paramiko.PKey.from_path(path, password=password)
        except FileNotFoundError as exc:
            raise InventoryError(
                f"{self.where}: credential: key file {path} does not exist"
            ) from exc
        except (paramiko.SSHException, ValueError, OSError, TypeError) as exc:
            # TypeError: paramiko's "password (not) given but private key is (not) encrypted".
            hint = ""
            if isinstance(exc, TypeError):
                hint = ("; name the variable holding its passphrase with passphrase_env"
                        if passphrase is None else "; remove passphrase_env, the key is not encrypted")
            raise InventoryError(
                f"{self.where}: credential: cannot load key file {path}: {exc}{hint}"
            ) from exc


@dataclass(frozen=True)
class JumpHost:
    """An SSH bastion the device is reached through (a `direct-tcpip` channel)."""

    host: str
    port: int
    username: str
    credential: Credential
    host_key: HostKey


@dataclass(frozen=True)
class Device:
    """One device with every setting resolved."""

    name: str
    host: str
    port: int
    username: str
    credential: Credential
    host_key: HostKey | None
    platform: str = "iosxr"
    items: tuple[str, ...] = DEFAULT_ITEMS
    timeouts: Timeouts = field(default_factory=Timeouts)
    jump_host: JumpHost | None = None
    groups: tuple[str, ...] = ()
    where: str = ""
    #: What a poll collects (`collector.polling.strategy_for`): "dossier" (the platform's signed
    #: evidence over SSH) and/or "tpm" (TPM attestation over NETCONF).
    evidence: tuple[str, ...] = DEFAULT_EVIDENCE
    #: The NETCONF port (`netconf-yang agent ssh`); None: the `netconf` subsystem on `port`.
    netconf_port: int | None = None

    def with_credentials_loaded(self) -> Device:
        """This device with its credentials (and its jump host's) `loaded` for one poll:
        raises InventoryError if one cannot be used. Keep it no longer than the poll (it holds
        the passwords read)."""
        jump = self.jump_host
        if jump is not None:
            jump = replace(jump, credential=jump.credential.loaded())
        return replace(self, credential=self.credential.loaded(), jump_host=jump)

    @property
    def known_hosts_name(self) -> str:
        """The host part of a known_hosts line, as OpenSSH writes it."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


@dataclass(frozen=True)
class Inventory:
    """The resolved fleet."""

    path: Path
    devices: tuple[Device, ...]

    def select(self, names: Iterable[str] = (), groups: Iterable[str] = ()) -> list[Device]:
        """Devices named in `names` or member of any of `groups` (all when both are empty)."""
        names, groups = set(names), set(groups)
        if not names and not groups:
            return list(self.devices)
        known = {d.name for d in self.devices}
        known_groups = {group for d in self.devices for group in d.groups}
        unknown_groups = sorted(groups - known_groups)
        if unknown_groups:
            raise InventoryError(
                f"{self.path}: expected group names the inventory's devices belong to, found unknown "
                f"{', '.join(unknown_groups)}; groups in use: {', '.join(sorted(known_groups)) or 'none'}"
            )
        unknown = sorted(names - known)
        if unknown:
            raise InventoryError(
                f"{self.path}: expected device names from the inventory, found unknown "
                f"{', '.join(unknown)}; known devices: {', '.join(sorted(known)[:10])}"
                + (" ..." if len(known) > 10 else "")
            )
        return [d for d in self.devices if d.name in names or groups & set(d.groups)]


# --- YAML with marks -------------------------------------------------------------------------


class _Marked:
    """Python values built from YAML nodes, with the line of every path kept aside."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: dict[tuple[Any, ...], int] = {}
        self.problems: list[str] = []
        # A loader per file: its constructor caches every node it has built.
        self.loader = yaml.SafeLoader("")

    def build(self, node: yaml.Node, path: tuple[Any, ...] = ()) -> Any:
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = (self.loader.construct_object(key_node)
                       if isinstance(key_node, yaml.ScalarNode) else None)
                if not isinstance(key, str):
                    self.problems.append(
                        f"{self.source}:{key_node.start_mark.line + 1}: {_dotted(path)}: "
                        "expected a plain string key, found a complex key"
                    )
                    continue
                if key in result:
                    self.problems.append(
                        f"{self.source}:{key_node.start_mark.line + 1}: "
                        f"{_dotted(path + (key,))}: expected each key once, found it again "
                        f"(first on line {self.lines[path + (key,)]}); remove one"
                    )
                    continue
                result[key] = self.build(value_node, path + (key,))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (index,)) for index, item in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)


def _dotted(path: Iterable[Any]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _load_yaml(path: Path) -> tuple[Any, _Marked]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise InventoryError(
            f"{path}: inventory file not found; pass --inventory with an existing file"
        ) from exc
    except OSError as exc:
        raise InventoryError(f"{path}: cannot read inventory: {exc.strerror}") from exc
    if len(raw) > MAX_INVENTORY_BYTES:
        raise InventoryError(
            f"{path}: expected an inventory under {MAX_INVENTORY_BYTES} bytes, found {len(raw)}"
        )
    marked = _Marked(str(path))
    try:
        node = yaml.compose(raw.decode("utf-8"), Loader=yaml.SafeLoader)
    except UnicodeDecodeError as exc:
        raise InventoryError(f"{path}: expected UTF-8 text, found invalid byte at {exc.start}") from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise InventoryError(f"{where}: not valid YAML: {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise InventoryError(f"{path}: not valid YAML: {exc}") from exc
    if node is None:
        raise InventoryError(f"{path}: expected a mapping with a `devices:` list, found an empty file")
    try:
        document = marked.build(node)
    except yaml.YAMLError as exc:
        raise InventoryError(f"{path}: not valid YAML: {exc}") from exc
    return document, marked


# --- validation and resolution -------------------------------------------------------------


def _schema_problems(document: Any, marked: _Marked) -> list[str]:
    validator = jsonschema.Draft202012Validator(schemas.load("inventory"))
    problems = []
    for error in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.path))):
        if error.context:  # oneOf: report the branch that came closest, not the whole union
            error = _closest_branch(error)
        path = tuple(error.absolute_path)
        line = _nearest_line(marked, path)
        problems.append(f"{marked.source}:{line}: {_dotted(path)}: {_explain(error)}")
    return problems


def _closest_branch(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """The error to report from a failed oneOf/anyOf: the one branch whose required fields the
    value has (a credential `{password_file: ''}` is a password_file with a bad value, and
    `{key_file: k, passphrase: x}` a key_file with an unexpected field, not an unexpected field
    of another form), else jsonschema's best match."""
    by_branch: dict[Any, list[jsonschema.ValidationError]] = {}
    for sub in error.context or ():
        by_branch.setdefault(sub.relative_schema_path[0] if sub.relative_schema_path else None, []).append(sub)
    shaped = [errors for errors in by_branch.values()
              if not any(e.validator == "required" and not e.relative_path for e in errors)]
    if len(shaped) == 1:
        return jsonschema.exceptions.best_match(shaped[0]) or shaped[0][0]
    return jsonschema.exceptions.best_match(error.context) or error


def _nearest_line(marked: _Marked, path: tuple[Any, ...]) -> int:
    while path not in marked.lines and path:
        path = path[:-1]
    return marked.lines.get(path, 1)


#: The forms a credential takes (schemas/inventory.schema.json), as error messages list them.
CREDENTIAL_FORMS = ("{password_env: VAR}", "{password_file: PATH}", "{key_file: PATH[, passphrase_env: VAR]}",
                    "{agent: true}")
#: The field that names each form.
CREDENTIAL_KINDS = ("password_env", "password_file", "key_file", "agent")
#: Every field a credential form has: a misspelt one is matched against these.
CREDENTIAL_FIELDS = ("password_env", "password_file", "key_file", "passphrase_env", "agent")


def _explain(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        forms = f"{', '.join(CREDENTIAL_FORMS[:-1])} or {CREDENTIAL_FORMS[-1]}"
        if "password" in extra:
            return f"inline passwords are not accepted; use {forms}"
        if error.absolute_path and error.absolute_path[-1] == "credential" and not set(error.instance) & set(
                CREDENTIAL_KINDS):
            # No form's own field is there, so the closest branch is a guess: list every form.
            return f"unexpected field(s) {_with_suggestions(extra, CREDENTIAL_FIELDS)}; a credential is {forms}"
        known = sorted(error.schema.get("properties", {}))
        return f"unexpected field(s) {_with_suggestions(extra, known)}; expected one of: {', '.join(known)}"
    if error.validator == "pattern" and str(error.schema.get("pattern", "")).startswith("^(\\S+ )?"):
        return f"expected a known_hosts line '[host]:port ssh-ed25519 AAAA...', found {error.instance!r}"
    return f"expected {_expected(error)}, found {error.instance!r}"


def _with_suggestions(unexpected: Iterable[str], known: Iterable[str]) -> str:
    """`pasword_file (did you mean password_file?)` for each field close to a known one."""
    import difflib

    known = list(known)
    shown = []
    for field_name in unexpected:
        close = difflib.get_close_matches(field_name, known, n=1)
        shown.append(f"{field_name} (did you mean {close[0]}?)" if close else field_name)
    return ", ".join(shown)


def _expected(error: jsonschema.ValidationError) -> str:
    schema = error.schema
    if error.validator == "enum":
        return "one of " + ", ".join(map(str, schema["enum"]))
    if error.validator == "required":
        return error.message.split(" is a required")[0] + " to be present"
    if error.validator == "type":
        return f"a value of type {schema['type']}"
    if error.validator == "pattern":
        return f"text matching {schema['pattern']}"
    bounds = {"minimum": "a number >= {}", "maximum": "a number <= {}",
              "exclusiveMinimum": "a number > {}", "exclusiveMaximum": "a number < {}",
              "minLength": "text of at least {} character(s)", "maxLength": "text of at most {} characters",
              "minItems": "at least {} item(s)", "maxItems": "at most {} items",
              "minProperties": "at least {} field(s)", "const": "{!r}"}
    if error.validator in bounds:
        return bounds[error.validator].format(error.validator_value)
    if error.validator == "uniqueItems":
        return "no repeated items"
    if error.validator == "not" and isinstance(error.validator_value, dict) and "const" in error.validator_value:
        return f"a value other than {error.validator_value['const']!r} (reserved)"
    if error.validator in ("oneOf", "anyOf"):
        return "one of the forms the schema allows for this field"
    return error.message


def _credential(raw: Mapping[str, Any], where: str, base: Path) -> Credential:
    """The credential reference; a relative file path is relative to the inventory file's folder
    (`base`), not to wherever the collector happens to run (cron starts in $HOME)."""
    if "password_env" in raw:
        return Credential("password_env", raw["password_env"], where=where)
    for kind in ("password_file", "key_file"):
        if kind in raw:
            try:
                path = _beside(raw[kind], base)
            except RuntimeError:  # ~user of a user this machine does not know
                return Credential(kind, raw[kind], raw.get("passphrase_env"), where=where,
                                  problem=f"expected a path whose ~user exists on this machine, "
                                          f"found {raw[kind]!r}")
            return Credential(kind, path, raw.get("passphrase_env"), where=where)
    return Credential("agent", where=where)


def _beside(reference: str, base: Path) -> str:
    """`reference` (~ expanded) if absolute, else joined to `base`."""
    return str(base / Path(reference).expanduser())


def load_inventory(path: str | os.PathLike[str]) -> Inventory:
    """Read, validate and resolve an inventory file; raises InventoryError listing every problem."""
    path = Path(path)
    document, marked = _load_yaml(path)
    problems = list(marked.problems)
    if not problems:
        problems += _schema_problems(document, marked)
    devices: list[Device] = []
    if not problems:
        devices, resolve_problems = _resolve(document, marked, path)
        problems += resolve_problems
    if problems:
        shown = problems[:MAX_REPORTED_PROBLEMS]
        more = len(problems) - len(shown)
        raise InventoryError(
            "invalid inventory:\n  " + "\n  ".join(shown) + (f"\n  ... and {more} more" if more else "")
        )
    return Inventory(path=path, devices=tuple(devices))


def _resolve(document: dict[str, Any], marked: _Marked, path: Path) -> tuple[list[Device], list[str]]:
    defaults = document.get("defaults", {})
    groups = document.get("groups", {})
    problems: list[str] = []
    devices: list[Device] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(document["devices"]):
        line = marked.lines[("devices", index)]
        where = f"{path}:{line}"
        name = raw["name"]
        if name in seen:
            problems.append(
                f"{where}: devices[{index}].name: expected unique device names, found {name!r} "
                f"again (first on line {seen[name]})"
            )
            continue
        seen[name] = line
        layers = [raw]
        for group in raw.get("groups", []):
            if group not in groups:
                problems.append(
                    f"{where}: devices[{index}].groups: expected a group defined under "
                    f"`groups:`, found {group!r}"
                )
            else:
                layers.append(groups[group])
        layers.append(defaults)

        def pick(key: str, default: Any = None, *, layers: list[dict[str, Any]] = layers) -> Any:
            for layer in layers:
                if key in layer:
                    return layer[key]
            return default

        missing = [key for key in ("host", "username", "credential") if pick(key) is None]
        if missing:
            problems.append(
                f"{where}: devices[{index}] ({name}): expected {', '.join(missing)} on the "
                "device, one of its groups or `defaults`, found none"
            )
            continue
        timeouts: dict[str, float] = {}
        for layer in reversed(layers):
            timeouts.update(layer.get("timeouts", {}))
        host_key = None
        if raw.get("host_key") is not None:
            try:
                host_key = HostKey.parse(raw["host_key"])
            except ValueError as exc:
                problems.append(f"{path}:{marked.lines[('devices', index, 'host_key')]}: "
                                f"devices[{index}].host_key: {exc}")
                continue
        if "tpm" in pick("evidence", DEFAULT_EVIDENCE) and pick("platform", "iosxr") != "iosxr":
            problems.append(f"{where}: devices[{index}] ({name}).evidence: expected `tpm` only on IOS XR devices "
                            f"(the remote-attestation model is IOS XR's), found it on platform {pick('platform')}")
            continue
        jump = pick("jump_host")
        jump_host = None
        if jump is not None:
            try:
                jump_host = JumpHost(
                    host=jump["host"], port=jump.get("port", 22), username=jump["username"],
                    credential=_credential(jump["credential"], where, path.parent),
                    host_key=HostKey.parse(jump["host_key"]),
                )
            except ValueError as exc:
                problems.append(f"{where}: devices[{index}] ({name}).jump_host.host_key: {exc}")
                continue
        devices.append(
            Device(
                name=name,
                host=pick("host"),
                port=pick("port", 22),
                username=pick("username"),
                credential=_credential(pick("credential"), where, path.parent),
                host_key=host_key,
                platform=pick("platform", "iosxr"),
                items=tuple(pick("items", DEFAULT_ITEMS)),
                timeouts=Timeouts(**timeouts),
                jump_host=jump_host,
                groups=tuple(raw.get("groups", [])),
                where=where,
                evidence=tuple(pick("evidence", DEFAULT_EVIDENCE)),
                netconf_port=pick("netconf_port"),
            )
        )
    return devices, problems
