"""`dossier enroll --provision`: set a device up as the seed's "How to Integrate" section does.

Steps, each skipped when already done: (1) generate `system-root-key` and `system-enroll-key`;
(2) configure `crypto ca trustpoint system-trustpoint` (keypair, ca-keypair, subject names,
`enrollment url self`, key usage, lifetimes, digest) and commit; (3) `crypto ca authenticate
system-trustpoint` (the root); (4) `crypto ca enroll system-trustpoint` (the leaf). A device
that already has both certificates is left alone. Returns what was changed.
"""

from __future__ import annotations

import re

from .errors import EnrollError
from .inventory import Device
from .ssh import DeviceSession

__all__ = ["PROVISION_KEY_TYPES", "provision_device"]

TRUSTPOINT = "system-trustpoint"
ROOT_KEY, ENROLL_KEY = "system-root-key", "system-enroll-key"
#: key type -> (`crypto key generate` kind, answer to its size/curve question)
PROVISION_KEY_TYPES: dict[str, tuple[str, str]] = {
    "ecdsa-p256": ("ecdsa", "nistp256"),
    "ecdsa-p384": ("ecdsa", "nistp384"),
    "ecdsa-p521": ("ecdsa", "nistp521"),
    "rsa2048": ("rsa", "2048"),
    "rsa3072": ("rsa", "3072"),
    "rsa4096": ("rsa", "4096"),
}
#: IOS XR prompts: `RP/0/RP0/CPU0:router#`, `...(config)#`, `...(config-trustp)#`.
PROMPT = re.compile(r"RP/\d+/[^:\s]+:[\w.-]+(\([\w-]+\))?#\s*$")
#: Lines that mean a configuration line was refused (informational `% ` lines also exist).
CONFIG_ERROR = re.compile(r"^% (Invalid|Incomplete|Ambiguous|Failed|Error|This command)", re.MULTILINE)


def _certificates_present(text: str) -> tuple[bool, bool]:
    """(root present, leaf present) from `show crypto ca certificates <tp>` in the seed's layout."""
    return "CA certificate" in text, "Router certificate" in text


def provision_device(device: Device, *, key_type: str = "ecdsa-p256", domain: str = "example.com",
                     run_deadline: float | None = None) -> list[str]:
    """Provision the system trustpoint if needed; returns the changes made ([] if none).

    Raises EnrollError when a step is refused, and the SSH errors of `DeviceSession`.
    """
    if key_type not in PROVISION_KEY_TYPES:
        raise EnrollError(f"expected a key type among {', '.join(PROVISION_KEY_TYPES)}, found {key_type!r}")
    kind, size_answer = PROVISION_KEY_TYPES[key_type]
    changes: list[str] = []
    with DeviceSession(device, run_deadline=run_deadline) as session:

        def run(command: str, stdin: str = "") -> str:
            output, _ = session.exec(command, stdin=stdin.encode())
            return output.decode("utf-8", "replace")

        has_root, has_leaf = _certificates_present(run(f"show crypto ca certificates {TRUSTPOINT}"))
        if has_root and has_leaf:
            return changes
        if not has_root:
            existing = run(f"show crypto key mypubkey {kind}")
            for label in (ROOT_KEY, ENROLL_KEY):
                # The replace question only comes when the label exists; then the size/curve one.
                answers = ("yes\n" if f"Key label: {label}" in existing else "") + size_answer + "\n"
                output = run(f"crypto key generate {kind} {label}", answers)
                if "[OK]" not in output and "Done" not in output:
                    raise EnrollError(f"{device.name}: `crypto key generate {kind} {label}` failed: "
                                      f"{_problem(output)}")
                changes.append(f"generated {kind} key {label} ({size_answer})")
            lines = ["configure"]
            if "domain name" not in run("show running-config"):
                lines.append(f"domain name {domain}")  # the seed: needed for certificate enrollment
            lines += [
                f"crypto ca trustpoint {TRUSTPOINT}",
                f"keypair {kind} {ENROLL_KEY}",
                f"ca-keypair {kind} {ROOT_KEY}",
                f"subject-name CN={device.name}",
                f"subject-name ca-certificate CN={device.name}-ca",
                "enrollment url self",
                "key-usage certificate digitalsignature keyagreement dataencipherment",
                "key-usage ca-certificate digitalsignature keycertsign crlsign",
                "message-digest sha256",
                "commit",
                "end",
            ]
            outputs = session.shell(lines, PROMPT)
            for line, output in zip(lines, outputs):
                if CONFIG_ERROR.search(output):
                    raise EnrollError(f"{device.name}: the device refused `{line}`: {_problem(output)}")
            changes.append(f"configured crypto ca trustpoint {TRUSTPOINT} (committed)")
            output = run(f"crypto ca authenticate {TRUSTPOINT}")
            if "Fingerprint" not in output:
                raise EnrollError(f"{device.name}: `crypto ca authenticate {TRUSTPOINT}` failed: {_problem(output)}")
            changes.append(f"crypto ca authenticate {TRUSTPOINT}: root certificate created")
        # The seed's enroll questions: include the serial number (yes), an IP address (no).
        output = run(f"crypto ca enroll {TRUSTPOINT}", "yes\nno\n")
        if "Fingerprint" not in output:
            raise EnrollError(f"{device.name}: `crypto ca enroll {TRUSTPOINT}` failed: {_problem(output)}")
        changes.append(f"crypto ca enroll {TRUSTPOINT}: leaf certificate issued")
        has_root, has_leaf = _certificates_present(run(f"show crypto ca certificates {TRUSTPOINT}"))
        if not (has_root and has_leaf):
            raise EnrollError(f"{device.name}: provisioning ran, but `show crypto ca certificates "
                              f"{TRUSTPOINT}` still lacks the {'root' if not has_root else 'leaf'}")
    return changes


def _problem(output: str) -> str:
    errors = [line.strip() for line in output.splitlines() if line.startswith("% ")]
    return "; ".join(errors[-3:]) if errors else repr(output[-300:])
