"""`dossier verify` and `dossier trust ...`: a thin layer over the verifier library."""

from __future__ import annotations

import itertools
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import click
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .display import cell, inert, print_table
from .errors import VerifierError
from .findings import Severity
from .inputs import parse_time
from .policy import Policy
from .truststore import TrustStore

__all__ = ["register"]

EXIT_TRUSTED, EXIT_UNTRUSTED, EXIT_INPUT = 0, 1, 2
_PROGRESS_FROM = 20  # files: below this a progress bar only flickers
_PASSED = "passed_checks"  # a result's key for -v (never printed as JSON)
#: What --at accepts.
_AT_ACCEPTED = ("now, received (the time the metadata says the output was received) or an ISO-8601 time "
                "with a zone such as 2026-06-01T12:00:00Z")
_VERIFY_EPILOG = """\b
FILE is an envelope as the device printed it (an optional timestamp line such as
'Sun Oct 20 13:07:24.136 UTC' and blank lines may come first; CRLF line ends are accepted),
or as the collector stored it: then FILE.meta.json beside it gives the device, the expected
nonce and the time received. '-' reads standard input.

\b
Exit codes:
  0  every envelope is trusted
  1  at least one envelope is not trusted (a stored one that no longer matches its
     metadata is not trusted: finding stored.mismatch)
  2  usage or input error (missing file, unreadable trust store or metadata, bad option)

When standard output is not a terminal, each envelope is one line of column=value fields
(device, file, verdict, reasons, expiry_days_leaf/root; a value with spaces is quoted).
"""


class _Settings:
    """What every worker needs to verify (picklable: paths, DER bytes, a frozen policy)."""

    def __init__(self, store: str | None, roots: list[bytes], device: str | None, nonce: bytes | None,
                 at: str, policy: Policy, profiles: Any = None, collector_key: bytes | list[bytes] | None = None,
                 profile_given: bool = False, verbose: bool = False) -> None:
        self.store, self.roots, self.device, self.nonce, self.at, self.policy = store, roots, device, nonce, at, policy
        self.profiles = profiles  # verifier.profiles.clisupport.ProfileOptions, or None: the XR envelope
        self.collector_key = collector_key  # raw Ed25519 public key the record logs are checked with
        self.profile_given = profile_given  # --profile was given: it wins over the metadata's
        self.verbose = verbose  # -v without --json: each result also lists the checks it passed


_worker: dict[str, Any] = {}


def _init_worker(settings: _Settings) -> None:
    from .evidence import verify_stored

    _worker["settings"] = settings
    _worker["verify_stored"] = verify_stored
    # Frozen: one consistent trust store for the run, each of its files read once (not a stat
    # of every file it has per envelope verified).
    _worker["store"] = TrustStore.open(settings.store).frozen() if settings.store else None
    _worker["roots"] = [x509.load_der_x509_certificate(der) for der in settings.roots]


def _verify_one(path: str, stdin_bytes: bytes | None = None) -> dict[str, Any]:
    """Verify one file in this process; returns a JSON-ready result (never raises: a problem with
    the file, or a verifier bug it reached, is the result's "error")."""
    settings: _Settings = _worker["settings"]
    verify_stored = _worker["verify_stored"]
    options = settings.profiles
    given = (options.profile if options is not None else "xr-dossier") if settings.profile_given else None
    try:
        verdict = verify_stored(
            path, trust_store=_worker["store"], roots=_worker["roots"], device=settings.device, nonce=settings.nonce,
            at=settings.at, policy=settings.policy, profile=given,
            options=options, collector_key=settings.collector_key, record_logs=_worker.setdefault("logs", {}),
            raw=stdin_bytes)
        result = {"file": path, **verdict.to_json()}
        if settings.verbose:
            from .summary import passed_checks

            result[_PASSED] = passed_checks(verdict)  # for the human output only: not in the schema
        return result
    except VerifierError as exc:
        return {"file": path, "error": str(exc)}
    except Exception as exc:  # a verifier bug this file reached: its own error line; the others go on
        return {"file": path, "error": f"{path}: the verifier failed on this file ({type(exc).__name__}: "
                                      f"{str(exc)[:200]}); expected a verdict: please report this as a verifier bug"}


#: `json.dumps(result, sort_keys=True)`, the same text, without making an encoder per call.
_json_line = json.JSONEncoder(sort_keys=True).encode
#: What the exit code needs of a result printed as JSON (all the parent keeps of it).
_EXIT_KEYS = ("file", "trusted", "error")


def _verify_json(path: str, stdin_bytes: bytes | None = None) -> tuple[str, dict[str, Any]]:
    """`_verify_one`'s result as its JSON line, and the part of it the exit code needs: a worker
    sends back the line, not the whole result (the parent then only writes it)."""
    result = _verify_one(path, stdin_bytes)
    return _json_line(result), {key: result[key] for key in _EXIT_KEYS if key in result}


#: Whether `_run` forks its workers (`verifier.parallel`) rather than start a process pool.
_FORK = hasattr(os, "fork")


def _run(files: Sequence[str], settings: _Settings, jobs: int, stdin_bytes: bytes | None,
         verify: Callable[..., Any] = _verify_one) -> Iterator[Any]:
    """`verify` (`_verify_one` or `_verify_json`) of each file, in input order; with jobs > 1,
    by this process and jobs - 1 forked workers (`verifier.parallel`), or a process pool where
    there is no fork."""
    if jobs <= 1 or len(files) <= 1 or stdin_bytes is not None:  # stdin was read here
        _init_worker(settings)
        for path in files:
            yield verify(path, stdin_bytes if path == "-" else None)
        return
    # Verification is CPU-bound Python: processes, not threads (the GIL). Results come back in
    # input order so the output is stable.
    if _FORK:  # this process is one of the `jobs`; the others are forked once it is set up
        from .parallel import forked_map

        _init_worker(settings)
        yield from forked_map(verify, files, jobs, lambda message: click.echo(f"Warning: {message}", err=True))
        return
    import concurrent.futures  # where processes cannot fork

    with concurrent.futures.ProcessPoolExecutor(jobs, initializer=_init_worker, initargs=(settings,)) as pool:
        chunk = max(1, min(64, len(files) // (jobs * 4)))
        yield from pool.map(verify, files, chunksize=chunk)


# Info findings an operator acts on, by id -> what the table says: shown for trusted envelopes
# (an untrusted one is explained by its errors). Other info findings stay in --json only.
_OPERATOR_INFO = {
    "chain.leaf_rotated": "key rotation",
    "data.not_dossier": "signed text, not a dossier",
    "record.not_checked": "collector's record not checked",
}


def _reasons(result: dict[str, Any]) -> str:
    """The table's reasons column: error, alert and warning ids; for a trusted envelope also
    the info findings in `_OPERATOR_INFO`, e.g. "key rotation (chain.leaf_rotated)"."""
    if "error" in result:
        return result["error"]
    shown = [f"{f['id']}" for f in result["findings"] if f["severity"] in ("error", "alert", "warning")]
    if result["trusted"]:
        shown += [f"{_OPERATOR_INFO[f['id']]} ({f['id']})" for f in result["findings"]
                  if f["severity"] == "info" and f["id"] in _OPERATOR_INFO]
    return ", ".join(shown) or "-"


def _load_roots(paths: Sequence[Path]) -> list[bytes]:
    roots: list[bytes] = []
    for path in paths:
        try:
            certificates = x509.load_pem_x509_certificates(path.read_bytes())
        except OSError as exc:
            raise click.UsageError(f"--root {path}: cannot read ({exc.strerror or exc})") from None
        except ValueError as exc:
            raise click.UsageError(f"--root {path}: expected PEM certificates ({exc})") from None
        roots.extend(cert.public_bytes(serialization.Encoding.DER) for cert in certificates)
    return roots


class InputError(click.ClickException):
    """A usage or input problem: exit code 2, as documented."""

    exit_code = EXIT_INPUT


def _open_store(path: Path, *, create: bool = False) -> TrustStore:
    try:
        return TrustStore.open(path, create=create)
    except VerifierError as exc:
        raise InputError(str(exc)) from None


def _fail(message: str) -> None:
    raise InputError(message)


@click.command("verify", epilog=_VERIFY_EPILOG)
@click.argument("files", nargs=-1, required=True)
@click.option("--trust-store", "trust_store", type=click.Path(path_type=Path), envvar="DOSSIER_TRUST_STORE",
              help="Trust store directory (or $DOSSIER_TRUST_STORE).")
@click.option("--root", "roots", multiple=True, type=click.Path(path_type=Path),
              help="Trust this root (PEM) instead of a trust store. Repeatable.")
@click.option("--device", help="Device name in the trust store (default: from the metadata, "
              "or the device whose enrolled root the envelope carries).")
@click.option("--nonce", "nonce_hex", metavar="HEX", help="The nonce that was sent (default: from the metadata).")
@click.option("--at", "at", default="now", show_default=True, metavar="now|ISO-8601|received",
              help="Judge validity at this time; 'received' uses the metadata's time received.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per envelope, one per line "
              "(schemas/verdict.schema.json).")
@click.option("-v", "--verbose", is_flag=True, help="Also print each finding's message and, for a trusted "
              "envelope, the checks it passed.")
@click.option("--jobs", "-j", default=1, show_default=True, type=click.IntRange(1, 256),
              help="Verify in this many processes.")
@click.option("--allow-dsa", is_flag=True, help="Accept legacy DSA device keys (ENVELOPE.md allows DSA-2048).")
@click.option("--require-dossier", is_flag=True, help="Fail envelopes whose signed text is not a dossier.")
@click.option("--strict-dossier", is_flag=True,
              help="Fail dossiers with an unknown member or item, or a missing payload member (by default a "
              "warning: a newer or older IOS XR release may print them).")
@click.option("--insecure-skip-nonce", is_flag=True,
              help="DANGEROUS: accept envelopes without an expected nonce (replays are not detected).")
@click.option("--profile", default=None, metavar="NAME|auto",
              help="What FILE is: xr-dossier (the envelope), xe-sudi-sign, xe-sudi-certificate, "
              "xe-integrity-sign, xe-system-integrity, kgv, xr-attest-certificate; 'auto' picks it from "
              "the output's shape. Default: what the collector's metadata names, else xr-dossier. Cisco "
              "outputs need the Cisco root AND the SUDI sub-CA (--root twice, or a trust store).")
@click.option("--nonce-dec", "nonce_dec", metavar="N", type=click.IntRange(0, 2**64 - 1),
              help="IOS XE: the decimal nonce that was sent (the same as --nonce with its 8-byte hex).")
@click.option("--signer", "signers", multiple=True, type=click.Path(path_type=Path),
              help="XE integrity/compliance/measurement: the same device's SUDI output (or SUDI "
              "certificate PEM); kgv: the KGV signer's certificate and sub-CA (PEM). Repeatable.")
@click.option("--signature", "signature", type=click.Path(path_type=Path),
              help="kgv: the detached signature (default: FILE.signature).")
@click.option("--kgv", "kgv", type=click.Path(path_type=Path),
              help="Appraise XE integrity measurements against this Known Good Values file (FILE.signature beside it).")
@click.option("--kgv-signer", "kgv_signers", multiple=True, type=click.Path(path_type=Path),
              help="The --kgv file's signer certificate and sub-CA (PEM). Repeatable.")
@click.option("--kgv-root", "kgv_roots", multiple=True, type=click.Path(path_type=Path),
              help="The anchor for --kgv (Cisco Root CA M2, PEM). Repeatable.")
@click.option("--collector-key", "collector_key", type=click.Path(path_type=Path),
              envvar="DOSSIER_COLLECTOR_KEY", show_envvar=True,
              help="The collector's public key (PEM, `dossier store key`), or a folder of the keys of every "
              "writer of a distributed store: stored envelopes' signed records are checked with it (default: "
              "collector-key.pub.pem beside the trust store, if there).")
def verify_command(files: tuple[str, ...], trust_store: Path | None, roots: tuple[Path, ...],
                   device: str | None, nonce_hex: str | None, at: str, as_json: bool, jobs: int,
                   allow_dsa: bool, require_dossier: bool, insecure_skip_nonce: bool, profile: str | None = None,
                   nonce_dec: int | None = None, signers: tuple[Path, ...] = (), signature: Path | None = None,
                   kgv: Path | None = None, kgv_signers: tuple[Path, ...] = (),
                   kgv_roots: tuple[Path, ...] = (), collector_key: Path | None = None,
                   strict_dossier: bool = False, verbose: bool = False) -> None:
    """Verify signed dossier envelopes (signature, chain to the enrolled root, nonce, dossier), or with
    --profile the signed outputs Cisco devices print (IOS XE SUDI, integrity, system integrity; KGV files)."""
    if trust_store is not None and roots:
        raise click.UsageError("give --trust-store or --root, not both")
    if trust_store is None and not roots:
        raise click.UsageError("no trust anchor: give --trust-store DIR or --root ROOT.pem")
    if files.count("-") > 1:
        raise click.UsageError("'-' (standard input) can be given once")
    from .nonce import Nonce  # the one reader of a nonce's hex and IOS XE decimal forms

    nonce = None
    if nonce_hex is not None:
        try:
            nonce = Nonce.from_hex(nonce_hex)
        except VerifierError as exc:
            raise click.BadParameter(str(exc), param_hint="--nonce") from None
    if nonce_dec is not None:
        if nonce is not None:
            raise click.UsageError("give --nonce or --nonce-dec, not both")
        nonce = Nonce.from_decimal(nonce_dec)  # how IOS XE signs it: u64 big-endian
    profile_given = profile is not None
    profile = profile or "xr-dossier"
    profiles = None
    if profile != "xr-dossier" or signers or signature or kgv:
        from .profiles import PROFILES
        from .profiles.clisupport import profile_options

        if profile != "auto" and profile not in PROFILES:
            raise click.BadParameter(f"expected auto or one of {', '.join(PROFILES)}; found {profile!r}",
                                     param_hint="--profile")
        try:
            profiles = profile_options(profile, signers, signature, kgv, kgv_signers, kgv_roots)
        except VerifierError as exc:
            raise InputError(str(exc)) from None
    _check_at(at)
    if insecure_skip_nonce:
        click.echo("WARNING: --insecure-skip-nonce: freshness is not checked; replays will verify", err=True)
    store_path = None
    if trust_store is not None:
        store_path = str(_open_store(trust_store).path)
    policy = Policy(allow_dsa=allow_dsa, require_dossier=require_dossier, insecure_skip_nonce=insecure_skip_nonce,
                    strict_dossier=strict_dossier)
    settings = _Settings(store_path, _load_roots(roots), device, nonce, at, policy, profiles,
                         _collector_key(collector_key, trust_store), profile_given, verbose and not as_json)
    stdin_bytes = _stdin_bytes().read(policy.max_envelope_bytes + 1) if "-" in files else None
    results = []
    stream = _run(list(files), settings, jobs, stdin_bytes, _verify_json if as_json else _verify_one)
    if not as_json and len(files) > _PROGRESS_FROM and sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import track

        # The first result before the bar: `--jobs` forks its workers then, and a fork must not
        # copy the bar's refresh thread (a lock it held would stay held in the worker).
        stream = itertools.chain([next(stream)], stream)
        stream = track(stream, total=len(files), description="verifying", transient=True,
                       console=Console(stderr=True))
    for result in stream:
        if as_json:
            line, result = result
            click.echo(line)
        results.append(result)
    if not as_json:
        _print_results(results, verbose=verbose)
        for result in results:
            if "error" in result:
                click.echo(f"Error: {inert(result['error'])}", err=True)
    context = click.get_current_context()
    if any("error" in result for result in results):
        context.exit(EXIT_INPUT)
    context.exit(EXIT_TRUSTED if all(result["trusted"] for result in results) else EXIT_UNTRUSTED)


def _check_at(at: str) -> None:
    """Refuse an --at that is not now, received or an ISO-8601 time with a zone."""
    import datetime as dt

    if at in ("now", "received"):
        return
    try:
        parse_time(at, "--at")
    except VerifierError:
        try:
            zoneless = dt.datetime.fromisoformat(at).tzinfo is None
        except ValueError:
            zoneless = False
        hint = " (a time with no zone: add Z or an offset such as +00:00)" if zoneless else ""
        raise click.BadParameter(f"expected {_AT_ACCEPTED}; found {at!r}{hint}", param_hint="--at") from None


def _collector_key(given: Path | None, trust_store: Path | None) -> bytes | list[bytes] | None:
    """The raw public key record logs are checked with: --collector-key (a folder: every writer's
    key of a distributed store), else the collector's public key beside the trust store when it
    is there, else None (the log's own, warned)."""
    from .records import default_key_path, load_public_keys, public_key_path

    if given is None and trust_store is not None and public_key_path(default_key_path(trust_store)).is_file():
        given = public_key_path(default_key_path(trust_store))
    if given is None:
        return None
    try:
        keys = load_public_keys(given)
    except VerifierError as exc:
        raise InputError(f"--collector-key: {exc}") from None
    raw = [key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw) for key in keys]
    return raw if Path(given).is_dir() else raw[0]


def _verdict_word(result: dict[str, Any]) -> tuple[str, str]:
    """What the verdict column says, and its colour."""
    if "error" in result:
        return "INPUT ERROR", "bold yellow"
    if result["trusted"]:
        alerts = any(f["severity"] == Severity.ALERT for f in result["findings"])
        return ("TRUSTED (alert)", "bold yellow") if alerts else ("TRUSTED", "bold green")
    return "NOT TRUSTED", "bold red"


def _print_results(results: list[dict[str, Any]], *, verbose: bool) -> None:
    """The verdicts as a table on a terminal; elsewhere (a pipe, a CI log) one record per line
    (`verifier.display.print_table`), so that no id, path or fingerprint is split by wrapping.
    With `verbose`, then each envelope's passed checks and findings with their messages."""
    rows = []
    for result in results:
        days = result.get("days_to_expiry") or {}
        expiry = f"{days.get('leaf', '-')}/{days.get('root', '-')}" if days else "-"
        word, style = _verdict_word(result)
        # Device names and paths come from metadata and the command line: data, never markup.
        rows.append((cell(result.get("device") or "-"), cell(result["file"]), cell(word, style),
                     cell(_reasons(result)), cell(expiry)))
    print_table(None, _VERIFY_COLUMNS, rows, no_wrap=("device",))
    if verbose:
        for result in results:
            if "error" not in result:
                _print_details(result)


_VERIFY_COLUMNS = ("device", "file", "verdict", "reasons", "expiry days leaf/root")


def _print_details(result: dict[str, Any]) -> None:
    """-v: the checks a trusted envelope passed, then every finding with its message."""
    word, _ = _verdict_word(result)
    click.echo(f"{inert(result['file'])}: {word} (device {inert(result.get('device') or '-')})")
    for check in result.get(_PASSED, []):
        click.echo(f"  passed: {inert(check)}")
    for finding in result["findings"]:
        click.echo(f"  {finding['severity']} {finding['id']}: {inert(finding['message'])}")


# -- trust store commands ---------------------------------------------------------------------
#: The trust store every command uses by default (`dossier collect` and `enroll` import it).
DEFAULT_TRUST_STORE = "state/truststore"
_store_option = click.option("--trust-store", "trust_store", default=DEFAULT_TRUST_STORE, show_default=True,
                             type=click.Path(path_type=Path), envvar="DOSSIER_TRUST_STORE", show_envvar=True,
                             help="Trust store directory.")


@click.group("trust")
def trust_group() -> None:
    """Manage the trust store: which root(s) each device is enrolled with."""


def _read_pem(path: Path, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as exc:
        _fail(f"{what} {path}: cannot read ({exc.strerror or exc})")
    except ValueError as exc:
        _fail(f"{what} {path}: expected one PEM certificate ({exc})")
    raise AssertionError("unreachable")


@trust_group.command("add")
@click.argument("device")
@click.argument("root_pem", required=False, type=click.Path(path_type=Path))
@_store_option
@click.option("--valid-from", help="Trust this root for envelopes judged at or after this ISO-8601 time.")
@click.option("--valid-until", help="... and at or before this one (close the window after a root rotation).")
@click.option("--pin-leaf", type=click.Path(path_type=Path), help="Pin this leaf (PEM) for the device.")
@click.option("--intermediate", "intermediates", multiple=True, type=click.Path(path_type=Path),
              help="Enroll a sub-CA (PEM) for the device. Repeatable.")
@click.option("--trust-pool", is_flag=True, help="Also trust the trust pool's CAs for this device.")
def trust_add(device: str, root_pem: Path | None, trust_store: Path, valid_from: str | None,
              valid_until: str | None, pin_leaf: Path | None, intermediates: tuple[Path, ...],
              trust_pool: bool) -> None:
    """Enroll DEVICE with ROOT_PEM (creates the store if needed)."""
    if root_pem is None and not trust_pool:
        raise click.UsageError("give ROOT_PEM, or --trust-pool to trust the pool's CAs for DEVICE")
    try:
        window = {
            "valid_from": parse_time(valid_from, "--valid-from") if valid_from else None,
            "valid_until": parse_time(valid_until, "--valid-until") if valid_until else None,
        }
        store = _open_store(trust_store, create=True)
        if root_pem is not None:
            entry = store.add_root(device, _read_pem(root_pem, "root"), source=f"manual:{root_pem.name}", **window)
            from .chain import format_name

            subject = inert(format_name(entry.certificate.subject))
            click.echo(f"{inert(device)}: root {entry.sha256} ({subject})")
        if trust_pool:
            store.use_trust_pool(device)
            click.echo(f"{inert(device)}: trusts the trust pool")
        for path in intermediates:
            store.add_intermediate(device, _read_pem(path, "intermediate"))
        if pin_leaf is not None:
            store.pin_leaf(device, _read_pem(pin_leaf, "leaf"))
    except VerifierError as exc:
        _fail(str(exc))


@trust_group.command("list")
@_store_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def trust_list(trust_store: Path, as_json: bool) -> None:
    """List enrolled devices, their roots and pinned leaf, and how each was enrolled (source).
    When standard output is not a terminal, one line of column=value fields per root. A damaged
    store (a certificate that does not match its recorded SHA-256, ...) is an input error (exit
    2), as it is for `dossier verify`."""
    try:
        store = _open_store(trust_store)
        if as_json:
            click.echo(json.dumps(store.listing(), indent=2, sort_keys=True))
            return
        records = []
        for name in store.devices():
            store.check(name)  # what is listed is what verification would load
            records.append(store.describe(name))
        pool = [entry.to_json() for entry in store.pool_entries()]
    except VerifierError as exc:
        _fail(str(exc))
    rows = []
    for record in records:
        leaf = record["pinned_leaf"] or {}
        for item in record["roots"] or [{}]:
            window = f"{item.get('valid_from') or '-'} .. {item.get('valid_until') or '-'}" if item else "-"
            root = item.get("sha256", "(pool only)" if record["trust_pool"] else "-")
            rows.append((record["device"], root, _subject(item), item.get("source", "-"), item.get("enrolled_at", "-"),
                         window, leaf.get("sha256", "-"), leaf.get("source", "-")))
    print_table(None, _TRUST_COLUMNS, rows, no_wrap=("device",))
    if pool:
        click.echo(f"trust pool: {len(pool)} CA certificate(s)")


#: `dossier trust list`'s columns; "source" is how each was enrolled or pinned (fingerprint,
#: interactive, tofu, manual:<file>, bundle:<file>): what an auditor asks first.
_TRUST_COLUMNS = ("device", "root SHA-256", "subject", "source", "enrolled", "window", "pinned leaf",
                  "leaf source")


def _subject(item: dict[str, Any]) -> str:
    """A stored certificate's subject with the router's attribute names (the store records the
    RFC 4514 text with dotted OIDs; the certificate itself was checked by `store.check`)."""
    from .chain import format_name

    if "pem" not in item:
        return item.get("subject", "-")
    return format_name(x509.load_pem_x509_certificate(item["pem"].encode()).subject)


@trust_group.command("remove")
@click.argument("device")
@_store_option
def trust_remove(device: str, trust_store: Path) -> None:
    """Forget DEVICE (its roots, pinned leaf and intermediates)."""
    try:
        _open_store(trust_store).remove(device)
    except VerifierError as exc:
        _fail(str(exc))
    click.echo(f"{inert(device)}: removed")


@trust_group.command("import-bundle")
@click.argument("bundle", type=click.Path(path_type=Path))
@_store_option
def trust_import_bundle(bundle: Path, trust_store: Path) -> None:
    """Add the CA certificates of a PEM or PKCS#7 (DER or PEM) bundle to the trust pool.

    Pool CAs are trusted only for devices enrolled with `dossier trust add DEVICE --trust-pool`.
    """
    try:
        data = bundle.read_bytes()
    except OSError as exc:
        _fail(f"{bundle}: cannot read ({exc.strerror or exc})")
    try:
        added = _open_store(trust_store, create=True).import_bundle(data, source=f"bundle:{bundle.name}")
    except VerifierError as exc:
        _fail(str(exc))
    click.echo(f"{len(added)} CA certificate(s) added to the trust pool")


def register(group: click.Group) -> None:
    """Add this package's subcommands to the top-level `dossier` group."""
    group.add_command(verify_command)
    group.add_command(trust_group)


def _stdin_bytes() -> Any:
    """Standard input as bytes (click.get_binary_stream is deprecated in Click 8.2)."""
    stream = sys.stdin
    return getattr(stream, "buffer", stream)
