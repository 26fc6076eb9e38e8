"""`dossier ear`: issue a signed attestation result (EAR) from the store, check one offline.

`ear verify` imports only the verifier (auditors need nothing of the collector); `ear issue`
and `ear jwks` the collector's appraisal and the service's signing key.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from verifier.cli import DEFAULT_TRUST_STORE  # one default for every command

__all__ = ["ear_group", "register"]

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2

_trust_option = click.option(
    "--trust-store", "trust_store_path", type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_TRUST_STORE, envvar="DOSSIER_TRUST_STORE", show_envvar=True, show_default=True,
    help="Trust store with each device's enrolled root; the EAR signing key lives beside it.")
_key_option = click.option(
    "--ear-key", "ear_key", type=click.Path(dir_okay=False, path_type=Path), default=None,
    envvar="DOSSIER_EAR_KEY", show_envvar=True,
    help="The P-256 key that signs EARs (default: ear-signing-key.pem beside the trust store; made on "
         "first use, mode 0600; never inside the store).")


@click.group("ear")
def ear_group() -> None:
    """Signed attestation results (IETF RATS EAR, as a JWT): issue one for a device, check one offline."""


@ear_group.command("verify")
@click.argument("ear_file", metavar="FILE", type=click.Path(dir_okay=False, allow_dash=False))
@click.option("--jwks", "jwks_source", required=True, metavar="FILE|URL",
              help="The issuer's public keys: a JWKS file, or its URL (e.g. https://HOST/.well-known/jwks.json).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document for machines.")
def verify_command(ear_file: str, jwks_source: str, as_json: bool) -> None:
    """Check an EAR's signature against the issuer's JWKS and its claims against schemas/ear.schema.json.

    \b
    Exit codes:
      0  the EAR is valid (its signature, key, claims and status all check)
      1  the EAR is not valid (the message and --json say which check failed)
      2  usage or input error (unreadable file, JWKS that cannot be read or fetched)
    """
    from verifier.display import inert
    from verifier.ear import EarInputError, EarInvalid, load_jwks, read_ear_file, verify_ear

    try:
        result = verify_ear(read_ear_file(ear_file), load_jwks(jwks_source))
    except EarInputError as exc:
        _say(as_json, {"valid": False, "error": str(exc)}, f"error: {inert(exc)}")
        sys.exit(EXIT_USAGE)
    except EarInvalid as exc:
        _say(as_json, {"valid": False, "problem": str(exc.problem), "message": str(exc)},
             f"invalid: {inert(exc)} [{exc.problem}]")
        sys.exit(EXIT_INVALID)
    if as_json:
        click.echo(json.dumps({"valid": True, "kid": result.key_id, "alg": result.algorithm,
                               "claims": result.claims}, indent=1, sort_keys=True))
    else:
        issued = result.claims["iat"]
        click.echo(f"valid: signed by key {inert(result.key_id)} ({result.algorithm}), issued at {issued}")
        for device, status in sorted(result.statuses.items()):
            vector = result.claims["submods"][device]["ear_trustworthiness_vector"]
            claims = ", ".join(f"{name}={value}" for name, value in vector.items()) or "no claims"
            click.echo(f"  {inert(device)}: {status} ({claims})")
    sys.exit(EXIT_OK)


def _say(as_json: bool, document: dict[str, object], line: str) -> None:
    if as_json:
        click.echo(json.dumps(document, indent=1, sort_keys=True))
    else:
        click.echo(line, err=True)


@ear_group.command("issue")
@click.option("--store", "store_path", type=click.Path(file_okay=False, path_type=Path), required=True,
              envvar="DOSSIER_STORE", show_envvar=True, help="The envelope store.")
@_trust_option
@click.option("--device", "-d", "device", required=True, help="The device whose stored output is appraised.")
@click.option("--envelope", "reference", default="-1", show_default=True,
              help="Which output: a position (-1 newest), a file name, or the start of its received time.")
@click.option("--policy", "policy_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Appraise against this policy YAML (default: identity only, from the verification).")
@_key_option
@click.option("--output", "-o", "output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the EAR (compact JWS) to this file instead of standard output.")
def issue_command(store_path: Path, trust_store_path: Path, device: str, reference: str, policy_path: Path | None,
                  ear_key: Path | None, output: Path | None) -> None:
    """Appraise a device's stored output now and print its signed EAR (a JWT: compact JWS).

    \b
    Exit codes:
      0  the EAR was issued (whatever its status: read ear_status)
      2  usage, configuration or input error (no such device or output, bad policy, key problems)
    """
    from collector.ear import EarSigner, ear_key_path, issue_ear
    from collector.errors import CollectorError
    from collector.insights.history import StoredVerdicts, comparable_history, pick_record
    from collector.insights.policy import load_policy
    from collector.store import Store
    from verifier import VerifierError
    from verifier.display import inert

    try:
        policy = load_policy(policy_path) if policy_path is not None else None
        with Store.open(store_path, create=False) as store:
            signer = EarSigner.load_or_create(ear_key or ear_key_path(trust_store_path), store_root=store.root)
            newest = next(iter(store.history(device, limit=1)), None)
            records = comparable_history(store, newest) if newest is not None else []
            record = pick_record(records, reference, device)
            token = issue_ear(store, StoredVerdicts(store, trust_store_path), record, policy, signer)
    except (CollectorError, VerifierError) as exc:
        click.echo(f"error: {inert(exc)}", err=True)
        sys.exit(EXIT_USAGE)
    if output is not None:
        output.write_text(token + "\n", "ascii")
    else:
        click.echo(token)


@ear_group.command("jwks")
@_trust_option
@_key_option
def jwks_command(trust_store_path: Path, ear_key: Path | None) -> None:
    """Print the EAR signing key's public half as a JWK Set (what /.well-known/jwks.json serves).

    Makes the key if there is none yet. Give the output to auditors for `dossier ear verify --jwks`.
    """
    from collector.ear import EarSigner, ear_key_path
    from collector.errors import CollectorError
    from verifier.display import inert

    try:
        signer = EarSigner.load_or_create(ear_key or ear_key_path(trust_store_path))
    except CollectorError as exc:
        click.echo(f"error: {inert(exc)}", err=True)
        sys.exit(EXIT_USAGE)
    click.echo(json.dumps(signer.jwks(), indent=1, sort_keys=True))


def register(group: click.Group) -> None:
    """Add `dossier ear` to the top-level `dossier` group."""
    group.add_command(ear_group)
