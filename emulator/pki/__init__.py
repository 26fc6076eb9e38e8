"""The emulated router's PKI, one module per job; every failure a user can cause raises PkiError.

- `keys`: key pairs (`crypto key generate|zeroize|import`), their files in the state directory;
- `trustpoints`: `crypto ca trustpoint` settings and their `(config-trustp)#` grammar;
- `certificates`: the system root and leaf, certificate requests, pasted certificates;
- `screens`: the text the shell prints (questions, `show crypto ...` layouts, fingerprints).

Pure code (no SSH, no shell): the emulator's command handlers call these functions and print
the strings they return. Layouts follow the IOS XR documentation
(`../shared/seed/000_3516cfa80f137662.txt`) and `../shared/spec/ENVELOPE.md` section 4. Where
the seed is silent, the choice is documented at the constant or function that makes it.

Typical flow of the shell (system trustpoint, ENVELOPE.md section 4)::

    root_kp = keys.generate_keypair("rsa", "system-root-key", modulus=2048, now=now)
    leaf_kp = keys.generate_keypair("rsa", "system-enroll-key", modulus=2048, now=now)
    keys.save_keypair(root_kp, keys_dir); keys.save_keypair(leaf_kp, keys_dir)
    tp = TrustpointConfig(name="system-trustpoint", keypair=("rsa", "system-enroll-key"),
                          ca_keypair=("rsa", "system-root-key"), enrollment="self")
    fqdn = certificates.fqdn_for(hostname, domain)
    root_key, leaf_key = trustpoints.resolve_trustpoint_keys(tp, keys.load_keypairs(keys_dir))
    root = certificates.make_root_certificate(tp, root_key, chassis_serial=sn, fqdn=fqdn,
                                              serial_number=0x0B62, now=now)
    print(screens.format_authenticate_output(tp, root, fqdn))
    leaf = certificates.make_leaf_certificate(tp, leaf_key, root_cert=root, root_key=root_key,
                                              chassis_serial=sn, fqdn=fqdn, ip_address=None,
                                              serial_number=0x0B63, now=now)
    print(screens.format_enroll_output(tp, leaf, leaf_key))
"""

from __future__ import annotations

__all__ = ["PkiError"]


class PkiError(Exception):
    """A PKI command failed; `message` is the IOS XR-style text to print (starts with `% `)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
