"""The emulator's XE output and the real captures agree in shape: labels, order, line widths.

Each real sample and the emulator's output of the same command are reduced to a skeleton (see
`xe_check.skeleton`: labels kept, values replaced by their kind and length, PEM body widths,
runs of repeated lines collapsed) and compared whole.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from emu_ssh import run
from emulator.fleet import Fleet

import xe_check

# (sample, platform whose layout it shows, command for the emulator)
V1_CASES = [
    ("isr4k_show_plat_sudi_sign_nonce.txt", "ISR4321/K9", "show platform sudi certificate sign nonce 1"),
    ("isr1k_show_plat_sudi_sign_nonce.txt", "C1111-8P", "show platform sudi certificate sign nonce 79213556"),
    ("isr4k_show_plat_sudi_cert.txt", "ISR4451-X/K9", "show platform sudi certificate sign nonce 12345"),
    ("38_show_sudi_sign.txt", "WS-C3650-8X24UQ", "show platform sudi certificate sign"),
    ("show_plat_sudi_crlf_eol.txt", "WS-C3650-8X24UQ", "show platform sudi certificate sign nonce 123"),
    ("isr4k_show_plat_int_sign_nonce.txt", "ISR4321/K9", "show platform integrity sign nonce 1"),
    ("isr4k_show_plat_int_sign.txt", "ISR4321/K9", "show platform integrity sign"),
    ("isr4k_show_plat_int.txt", "ISR4321/K9", "show platform integrity"),
    ("isr4k_show_plat_int_multi_hashes.txt", "ISR4451-X/K9", "show platform integrity sign nonce 12345"),
    ("isr1k_show_plat_int_sign_nonce.txt", "C1111-8P", "show platform integrity sign nonce 1325"),
    ("show_plat_int_crlf_eol.txt", "WS-C3650-8X24UQ", "show platform integrity sign nonce 123"),
]
V2_CASES = [
    ("v2/cli_valid_trust_chain.txt", "show system integrity all trust_chain nonce 12345"),
    ("v2/cli_valid_compliance.txt", "show system integrity all compliance nonce 23456"),
    ("v2/cli_valid_multiple_measure.txt", "show system integrity all measurement nonce 34567"),
]


def _device_for(fleet: Fleet, pid: str):  # type: ignore[no-untyped-def]
    return next(d for d in fleet.devices if d.device.xe_identity().facts.pid == pid)


@pytest.mark.parametrize("sample, pid, command", V1_CASES, ids=[c[0] for c in V1_CASES])
def test_v1_output_has_the_real_shape(xe_fleet: Fleet, cisco_xe_dir: Path, sample: str, pid: str, command: str) -> None:
    real = (cisco_xe_dir / sample).read_bytes().decode("ascii")
    ours = run(_device_for(xe_fleet, pid), command)
    assert xe_check.skeleton(ours) == xe_check.skeleton(real)


@pytest.mark.parametrize("sample, command", V2_CASES, ids=[c[0] for c in V2_CASES])
def test_v2_output_has_the_real_shape(xe_fleet: Fleet, cisco_xe_dir: Path, sample: str, command: str) -> None:
    real = (cisco_xe_dir / sample).read_bytes().decode("ascii")
    ours = run(_device_for(xe_fleet, "ISR4451-X/K9"), command)
    assert xe_check.skeleton(ours) == xe_check.skeleton(real)


def test_skeleton_tells_layouts_apart(cisco_xe_dir: Path) -> None:
    """The comparison has teeth: different layouts give different skeletons."""
    forms = {name: xe_check.skeleton((cisco_xe_dir / name).read_text("ascii"))
             for name in ("isr4k_show_plat_int_sign_nonce.txt", "isr4k_show_plat_int_multi_hashes.txt",
                          "isr1k_show_plat_int_sign_nonce.txt", "show_plat_int_crlf_eol.txt",
                          "isr4k_show_plat_int.txt")}
    assert len({tuple(f) for f in forms.values()}) == len(forms)


@pytest.mark.parametrize("sample", ["isr4k_show_plat_sudi_sign_nonce.txt", "isr4k_show_plat_int_sign_nonce.txt",
                                    "v2/cli_valid_compliance.txt"])
def test_the_independent_check_accepts_the_real_samples(cisco_xe_dir: Path, sample: str) -> None:
    """The checker the emulator is held to is right about real devices too (ISR4321, nonce
    1 / 1 / 23456), so agreement with it means agreement with Cisco's layout."""
    sudi = (cisco_xe_dir / "isr4k_show_plat_sudi_sign_nonce.txt").read_text("ascii")
    ders = xe_check.pem_ders(sudi)
    from cryptography import x509

    device = x509.load_der_x509_certificate(ders[2])
    text = (cisco_xe_dir / sample).read_text("ascii")
    if "sudi" in sample:
        message = xe_check.header(1) + b"".join(ders)
        assert xe_check.rsa_ok(device.public_key(), xe_check.signature_hex(text), message)  # type: ignore[arg-type]
    elif sample.startswith("v2/"):
        v2_chain = xe_check.pem_ders((cisco_xe_dir / "v2/cli_valid_trust_chain.txt").read_text("ascii"))
        xe_check.verify_v2(text, "compliance", 23456, x509.load_der_x509_certificate(v2_chain[2]))
    else:
        xe_check.verify_integrity(text, 1, device)
