"""What `dossier verify --profile ...` needs beyond the envelope path (kept here so the shared
CLI module only gains a few lines): the profile options, read once, picklable for `--jobs`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..errors import VerifierError
from ..policy import Policy
from ..truststore import TrustStore
from ..verify import Verdict
from ._common import ProfileError
from .kgv import SIGNATURE_SUFFIX, KnownGoodValues, load_kgv

__all__ = ["ProfileOptions", "profile_options", "verify_file"]

MAX_SIDE_FILE_BYTES = 64 * 1024 * 1024  # signer, signature and KGV files are kB to a few MB


@dataclass(frozen=True)
class ProfileOptions:
    """The profile and its side inputs, as bytes (picklable for worker processes)."""

    profile: str
    signer: bytes | None = None
    signature: bytes | None = None
    kgv_path: str | None = None
    kgv_signer: bytes | None = None
    kgv_roots: tuple[bytes, ...] = ()


def _read(path: Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        if path.stat().st_size > MAX_SIDE_FILE_BYTES:
            raise ProfileError(f"{what} {path}: over {MAX_SIDE_FILE_BYTES} bytes")
        return path.read_bytes()
    except OSError as exc:
        raise ProfileError(f"{what} {path}: cannot read ({exc.strerror or exc})") from None


def profile_options(
    profile: str, signers: Sequence[Path], signature: Path | None, kgv: Path | None,
    kgv_signers: Sequence[Path], kgv_roots: Sequence[Path],
) -> ProfileOptions:
    """Read the side files once. Raises ProfileError for an unreadable file or a bad combination."""
    if kgv is not None and not kgv_roots:
        raise ProfileError("--kgv needs --kgv-root (Cisco Root CA M2): the KGV signer is checked against "
                           "its own anchor, never against the device roots")
    roots: list[bytes] = []
    for path in kgv_roots:
        try:
            certs = x509.load_pem_x509_certificates(_read(path, "--kgv-root") or b"")
        except ValueError as exc:
            raise ProfileError(f"--kgv-root {path}: expected PEM certificates ({exc})") from None
        roots.extend(c.public_bytes(serialization.Encoding.DER) for c in certs)
    signer = b"\n".join(_read(p, "--signer") or b"" for p in signers) if signers else None
    kgv_signer = b"\n".join(_read(p, "--kgv-signer") or b"" for p in kgv_signers) if kgv_signers else None
    return ProfileOptions(profile, signer, _read(signature, "--signature"), str(kgv) if kgv else None,
                          kgv_signer, tuple(roots))


_kgv_cache: dict[tuple[str, dt.datetime | None], KnownGoodValues] = {}


def verify_file(
    options: ProfileOptions, raw: bytes, *, path: str, trust_store: TrustStore | None,
    roots: Sequence[x509.Certificate], device: str | None, nonce: bytes | None, at: dt.datetime | None,
    policy: Policy,
) -> Verdict:
    """Verify one file under the profile options (raises VerifierError for input errors)."""
    from . import verify_output

    signature = options.signature
    if options.profile in ("kgv", "auto") and signature is None and path != "-":
        candidate = Path(path + SIGNATURE_SUFFIX)
        if candidate.is_file():  # Cisco publishes `<file>.signature` beside the KGV file
            signature = _read(candidate, "signature")
    kgv = None
    if options.kgv_path is not None:
        key = (options.kgv_path, at)
        if key not in _kgv_cache:
            anchors = [x509.load_der_x509_certificate(der) for der in options.kgv_roots]
            _kgv_cache[key] = load_kgv(options.kgv_path, anchors, signer=options.kgv_signer, at=at)
        kgv = _kgv_cache[key]
    try:
        return verify_output(raw, profile=options.profile, roots=roots, trust_store=trust_store, device=device,
                             expected_nonce=nonce, signer=options.signer, signature=signature, kgv=kgv,
                             at=at, policy=policy)
    except ProfileError as exc:
        raise VerifierError(f"{path}: {exc}") from None
