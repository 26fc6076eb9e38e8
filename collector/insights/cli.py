"""`dossier diff`, `dossier report` and `dossier appraise` (registered by collector.cli)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import click

from verifier.cli import DEFAULT_TRUST_STORE  # one default for every command
from verifier.display import cell, inert, print_table  # device text is shown inert, never as markup

from ..errors import StoreError
from ..storage.opening import open_store  # SQLite here, or the shared PostgreSQL index when configured
from ..store import write_file_atomically
from .diff import Evidence, diff_evidence
from .errors import InsightsError
from .findings import Finding, Severity, Status
from .history import StoredVerdicts, appraise_record, comparable_history, diff_history, pick_record
from .policy import load_policy
from .report import build_report, render_html

__all__ = ["appraise_command", "diff_command", "report_command"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
_STATUS_STYLE = {"affirming": "green", "warning": "yellow", "contraindicated": "bold red", "none": "dim"}


@contextmanager
def _insights_errors() -> Iterator[None]:
    """Policy and history problems are the caller's input: exit 2 with the message."""
    from ..cli import _Exit

    try:
        yield
    except InsightsError as exc:
        click.echo(f"error: {inert(exc)}", err=True)
        raise _Exit(EXIT_USAGE) from None


def _envelope_evidence(path: Path, trust_store: Path) -> Evidence:
    """The evidence of an output file (and its .meta.json): what verifying it returns."""
    from verifier import TrustStore, VerifierError
    from verifier.evidence import verify_stored

    try:
        verdict = verify_stored(path, trust_store=TrustStore.open(trust_store), at="received")
    except VerifierError as exc:
        raise InsightsError(str(exc)) from None
    received = verdict.verified_at.isoformat() if verdict.verified_at is not None else None
    return Evidence.from_verdict(verdict, label=str(path), received=received)


#: --trust-store as every command has it: content is compared only once verified against it.
_trust_store_option = click.option(
    "--trust-store", "trust_store_path", type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_TRUST_STORE, envvar="DOSSIER_TRUST_STORE", show_envvar=True, show_default=True,
    help="Trust store the stored outputs are verified against (at the time each was received) "
         "before their content is compared or appraised.")


def _print_findings(findings: Sequence[Finding], title: str) -> None:
    """Each change with its readable message, then what was there before and after (whole)."""

    def show(value: object) -> str:
        return "" if value is None else value if isinstance(value, str) else json.dumps(value)

    rows = [[cell(finding.id), cell(finding.severity, _SEVERITY_STYLE.get(str(finding.severity), "white")),
             cell(finding.subject), cell(finding.message), cell(show(finding.before)), cell(show(finding.after))]
            for finding in findings]
    print_table(title, ("id", "severity", "subject", "message", "before", "after"), rows)


@click.command("diff")
@click.argument("envelopes", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--store", "store_path", type=click.Path(file_okay=False, path_type=Path), default=None,
              envvar="DOSSIER_STORE", help="Compare two points of a device's history in this store.")
@click.option("--device", "-d", default=None, help="The device whose history to compare (with --store).")
@click.option("--from", "from_ref", default="-2", show_default=True,
              help="Earlier point: a position (-2 = the one before the newest), a file name or a time prefix.")
@click.option("--to", "to_ref", default="-1", show_default=True, help="Later point (same forms as --from).")
@_trust_store_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document for machines.")
def diff_command(envelopes: tuple[Path, ...], store_path: Path | None, device: str | None, from_ref: str,
                 to_ref: str, trust_store_path: Path, as_json: bool) -> None:
    """Show what changed on a device between two dossiers: packages, files, reboots, commits,
    hardware, boot measurements, certificates. Each change is a finding with a stable id.

    Give two envelope files (BEFORE AFTER), or --store DIR --device NAME [--from REF --to REF].
    Each output is verified first (at the time it was received, against --trust-store) and only
    what a trusted verification returns is compared; file-system blocks are applied in order and
    a missing block is reported, never guessed.

    \b
    Exit codes:
      0  compared; no change of severity error
      1  a change of severity error (root replaced, package files changed, secure boot off),
         or a side could not be compared (untrusted)
      2  usage or input error
    """
    from ..cli import _errors_to_exit_codes, _Exit

    with _errors_to_exit_codes(), _insights_errors():
        if envelopes and store_path is not None:
            raise click.UsageError("give two envelope files or --store with --device, not both")
        if envelopes:
            if len(envelopes) != 2:
                raise click.UsageError(f"expected two envelope files (BEFORE AFTER), found {len(envelopes)}")
            before = _envelope_evidence(envelopes[0], trust_store_path)
            after = _envelope_evidence(envelopes[1], trust_store_path)
            findings = diff_evidence(before, after)
            labels = (str(envelopes[0]), str(envelopes[1]))
        else:
            if store_path is None or device is None:
                raise click.UsageError("give two envelope files, or --store DIR and --device NAME")
            with open_store(store_path, create=False) as store:
                newest = store.history(device, limit=1)
                records = comparable_history(store, newest[0]) if newest else []
                first = pick_record(records, from_ref, device)
                second = pick_record(records, to_ref, device)
                findings = diff_history(store, StoredVerdicts(store, trust_store_path), device, first, second)
            labels = (first.path, second.path)
        bad = any(f.severity is Severity.ERROR or str(f.id) == "drift.content.not_compared" for f in findings)
        if as_json:
            click.echo(json.dumps({"before": labels[0], "after": labels[1], "count": len(findings),
                                   "findings": [f.to_json() for f in findings]}, indent=2, default=str))
        else:
            _print_findings(findings, f"Drift {labels[0]} -> {labels[1]}")
            click.echo(f"{len(findings)} change(s)")
        raise _Exit(EXIT_FAILED if bad else EXIT_OK)


@click.command("report")
@click.option("--store", "store_path", type=click.Path(file_okay=False, path_type=Path), default="state/store",
              envvar="DOSSIER_STORE", show_envvar=True, show_default=True, help="The envelope store to report on.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the self-contained HTML report here (replacing an older report).")
@_trust_store_option
@click.option("--json", "as_json", is_flag=True, help="Print the report's data as JSON (schemas/report.schema.json).")
def report_command(store_path: Path, out_path: Path | None, trust_store_path: Path, as_json: bool) -> None:
    """The fleet's trust posture: a table of devices (verification state: trusted, untrusted with
    the verifier's message, or unreachable since when; last trusted collection; days to
    certificate expiry; open findings; the appraisal status when one is stored) and per-device
    timelines of status and changes, as of the time it is made.

    The verification state is verified again against --trust-store, with or without a policy;
    appraisal statuses come from stored appraisals (`dossier collect --policy`, `dossier
    appraise`). The HTML file needs no network: styles, SVG charts and the table sorting are inline.
    """
    from ..cli import _errors_to_exit_codes, _Exit

    with _errors_to_exit_codes(), _insights_errors():
        if out_path is None and not as_json:
            raise click.UsageError("nothing to do: give --out FILE.html and/or --json")
        with open_store(store_path, create=False) as store:
            report = build_report(store, StoredVerdicts(store, trust_store_path))
        if out_path is not None:
            try:
                write_file_atomically(out_path, render_html(report).encode("utf-8"), replace=True)
            except OSError as exc:
                raise StoreError(f"cannot write the report to {out_path}: {exc.strerror or exc}") from exc
        if as_json:
            click.echo(json.dumps(report, indent=2))
        else:
            counts = report["summary"]["status_counts"]
            click.echo(inert(f"wrote {out_path}: {report['summary']['devices']} devices, "
                             + ", ".join(f"{n} {s}" for s, n in counts.items())))
        raise _Exit(EXIT_OK)


@click.command("appraise")
@click.option("--store", "store_path", type=click.Path(file_okay=False, path_type=Path), default="state/store",
              envvar="DOSSIER_STORE", show_envvar=True, show_default=True, help="The envelope store.")
@click.option("--policy", "policy_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Policy YAML (schemas/policy.schema.json).")
@click.option("--device", "-d", "devices", multiple=True, help="Only this device (repeatable).")
@click.option("--history", is_flag=True, help="Appraise every stored envelope, not only each device's newest.")
@_trust_store_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document for machines.")
@click.option("--verbose", "-v", is_flag=True, help="Print each finding's message under its device.")
def appraise_command(store_path: Path, policy_path: Path, devices: tuple[str, ...], history: bool,
                     trust_store_path: Path, as_json: bool, verbose: bool = False) -> None:
    """Appraise stored envelopes against a policy and store the results (replacing older ones).

    \b
    Exit codes:
      0  every appraised device is affirming
      1  some device is warning or contraindicated
      2  usage error, unreadable policy or store
    """
    from ..cli import _errors_to_exit_codes, _Exit

    with _errors_to_exit_codes(), _insights_errors():
        policy = load_policy(policy_path)
        results = []
        with open_store(store_path, create=False) as store:
            verdicts = StoredVerdicts(store, trust_store_path)
            latest = store.latest()
            names = list(devices) or sorted(latest)
            for name in names:
                if name not in latest:
                    raise InsightsError(f"expected device {name!r} in the store, found no envelope of it")
                records = comparable_history(store, latest[name]) if history else [latest[name]]
                for record in records:
                    result = appraise_record(store, verdicts, record, policy)
                    results.append(result)
        newest = {r.device: r for r in results}
        if as_json:
            click.echo(json.dumps({"policy": policy.to_json(), "appraisals": [r.to_json(max_drift=0) for r in results]},
                                  indent=2, default=str))
        else:
        
            rows, details = [], []
            for result in results:
                worse = ", ".join(f"{c}={s}" for c, s in result.vector.items() if s.rank > Status.AFFIRMING.rank)
                rows.append([cell(result.device), cell(result.envelope.split("/")[-1]),
                             cell(result.status, _STATUS_STYLE[str(result.status)]), cell(worse),
                             cell(", ".join(sorted({str(f.id) for f in result.findings if f.severity != "info"})))])
                details.append([f"{f.severity} {f.id}: {f.message}" for f in result.findings] if verbose else [])
            print_table(f"Appraisal against {policy.name} ({policy_path})",
                        ("device", "envelope", "status", "not affirming", "findings"), rows, details)
        ok = bool(newest) and all(r.status is Status.AFFIRMING for r in newest.values())
        raise _Exit(EXIT_OK if ok else EXIT_FAILED)
