"""Subcommands of `dossier` that belong to the collector package.

Thin over the library: parse options, build library objects, call them, and map the one
exception root to an exit code (0 ok, 1 failed or untrusted, 2 usage or configuration).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import random
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from verifier.cli import DEFAULT_TRUST_STORE  # one default for every command
from verifier.display import cell, inert, inert_lines, print_table  # device text is shown inert, never as markup
from verifier.findings import FindingId, Severity

from .alerts import AlertSink, write_metrics
from .collect import TRUSTED, CollectOptions, Collector, DeviceOutcome, RunSummary, check_trust_store
from .errors import CollectorError, InventoryError, LockError, StoreError
from .inventory import load_inventory
from .lock import RunLock
from .records import RecordLog, StoreRecords, check_key_outside, flag_untrusted, load_or_create_key, public_key_of
from .status import fleet_status
from .store import DamagedFile, Store

__all__ = ["register"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: A second SIGINT aborts the run: the shell's code for a command ended by SIGINT (128 + 2).
EXIT_INTERRUPTED = 128 + signal.SIGINT
DEFAULT_STORE = "state/store"
#: `--interval` sleeps interval x (1 +/- this), so a fleet of collectors does not poll in step.
INTERVAL_JITTER = 0.1
#: `collect --fail-on`: the appraisal statuses an operator may fail a run on.
FAIL_ON_CHOICES = ("warning", "contraindicated")

log = logging.getLogger("collector")

_inventory_option = click.option(
    "--inventory", "-i", "inventory_path", type=click.Path(dir_okay=False, path_type=Path),
    required=True, envvar="DOSSIER_INVENTORY", show_envvar=True,
    help="Fleet inventory YAML (schemas/inventory.schema.json).")
_store_option = click.option(
    "--store", "store_path", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_STORE,
    envvar="DOSSIER_STORE", show_envvar=True, show_default=True,
    help="Directory where envelopes, metadata, verdicts and the index live.")
_trust_option = click.option(
    "--trust-store", "trust_store_path", type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_TRUST_STORE, envvar="DOSSIER_TRUST_STORE", show_envvar=True, show_default=True,
    help="Trust store with each device's enrolled root (see `dossier enroll`).")
_select_options = [
    click.option("--device", "-d", "devices", multiple=True, help="Only this device (repeatable)."),
    click.option("--group", "-g", "groups", multiple=True, help="Only devices in this group (repeatable)."),
]
_json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document for machines.")
_key_trust_option = click.option(
    "--trust-store", "trust_store_path", type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_TRUST_STORE, envvar="DOSSIER_TRUST_STORE", show_envvar=True, show_default=True,
    help="The trust store `dossier collect` used: the collector key (collector-key.pem or its .pub.pem) "
    "beside it checks the store's record log.")
_key_option = click.option(
    "--collector-key", "collector_key", type=click.Path(path_type=Path), default=None,
    envvar="DOSSIER_COLLECTOR_KEY", show_envvar=True,
    help="The collector's Ed25519 key that signs the store's record log (default: collector-key.pem "
    "beside the trust store; made on first use, mode 0600; never inside the store). Reading a store "
    "written by distributed workers: a folder of their public keys (default: collector-keys/ beside "
    "the trust store).")


def _key_path(collector_key: Path | None, trust_store_path: Path | None = None) -> Path:
    """--collector-key, else the key beside the trust store (--trust-store, $DOSSIER_TRUST_STORE
    or the default), as `dossier collect` finds it."""
    from verifier.records import default_key_path

    trust_store = trust_store_path or Path(os.environ.get("DOSSIER_TRUST_STORE") or DEFAULT_TRUST_STORE)
    return collector_key or default_key_path(trust_store)


def _store_records(store: Store, collector_key: Path | None, trust_store_path: Path | None = None) -> StoreRecords:
    """The store's record log read with the collector's public key. Without a key file, the
    log's own key is used and that is an error (`record.key_not_pinned`), its message saying
    how to give the key."""
    from verifier.records import public_key_path

    from verifier.records import store_log

    if store_log(store.root).is_dir():  # several writers (distributed workers): a folder of their keys
        from .distributed.chunks import writer_keys_folder

        folder = collector_key or writer_keys_folder(trust_store_path or Path(
            os.environ.get("DOSSIER_TRUST_STORE") or DEFAULT_TRUST_STORE))
        how = None if folder.is_dir() else (
            f"looked for the writers' keys in {folder}: give --collector-key with a folder of every worker's "
            "public key (*.pub.pem)")
        return StoreRecords.read(store, folder if how is None else None, how_to_give_key=how)
    key = _key_path(collector_key, trust_store_path)
    public = public_key_path(key)
    found = public if public.is_file() else key if key.is_file() else None
    how = None if found is not None else (
        f"looked for {public} and {key}: give --collector-key PUB.pem (`dossier store key` prints it) or "
        "--trust-store with the trust store the collector key was made beside")
    return StoreRecords.read(store, found, how_to_give_key=how)


def _apply(options: list[Callable[[Any], Any]]) -> Callable[[Any], Any]:
    def decorate(function: Any) -> Any:
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


class _Exit(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


@contextmanager
def _errors_to_exit_codes() -> Iterator[None]:
    """The one place library errors become messages and exit codes."""
    from verifier import VerifierError

    _quiet_paramiko()
    try:
        yield
    except _Exit as done:
        sys.exit(done.code)
    except (InventoryError, StoreError, VerifierError) as exc:
        click.echo(f"error: {inert_lines(exc)}", err=True)
        sys.exit(EXIT_USAGE)
    except CollectorError as exc:
        click.echo(f"error: {inert_lines(exc)}", err=True)
        sys.exit(EXIT_FAILED)


def _quiet_paramiko() -> None:
    """paramiko logs each failed handshake with a traceback from its own thread; the collector
    reports every failure once, with its cause, so keep those out of the operator's terminal."""
    logger = logging.getLogger("paramiko")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
        logger.propagate = False


def _stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def _stderr_console() -> Console:
    return Console(stderr=True)


# --- dossier collect --------------------------------------------------------------------------


@click.command("collect")
@_inventory_option
@_store_option
@_trust_option
@_apply(_select_options)
@click.option("--concurrency", "-c", type=click.IntRange(1, 1024), default=16, show_default=True,
              help="Devices polled at the same time.")
@click.option("--deadline", "run_deadline", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds the whole run may take; devices not started by then are skipped.")
@click.option("--retries", type=click.IntRange(0, 10), default=2, show_default=True,
              help="Extra attempts per device on transient failures (refused, reset, timeout, "
                   "rate-limited); never on authentication or host-key failures.")
@click.option("--once", "mode", flag_value="once", default=True, help="Poll once and exit (default; for cron).")
@click.option("--interval", type=click.FloatRange(min=1), default=None,
              help="Poll every SECONDS (with jitter) until SIGTERM/SIGINT, which lets in-flight "
                   "devices finish and then exits cleanly.")
@click.option("--metrics-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write Prometheus metrics here after each run (node_exporter textfile "
                   "collector: name it *.prom in its directory).")
@click.option("--syslog", "syslog_address", default=None, metavar="HOST:PORT|PATH",
              help="Send alerts (untrusted envelope, failing device, certificate expiry) to this "
                   "syslog (UDP HOST:PORT or a socket path such as /dev/log).")
@click.option("--policy", "policy_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Appraise each envelope against this policy YAML as it is collected (stored "
                   "beside it; a device going from affirming to worse raises an alert).")
@click.option("--fail-on", "fail_on", type=click.Choice(FAIL_ON_CHOICES), default=None,
              help="With --policy: exit 1 when a device's appraisal is this or worse (for cron and CI).")
@_json_option
@click.option("--progress/--no-progress", default=None,
              help="Progress bar and table (default: when stderr is a terminal; plain log lines otherwise).")
@click.option("--quiet", "-q", is_flag=True,
              help="Print only failures (devices not trusted, appraisals at --fail-on): nothing on success.")
@click.option("--verbose", "-v", is_flag=True, help="Print each finding's message under its device.")
@_key_option
@click.option("--webhooks", "webhooks_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              envvar="DOSSIER_WEBHOOKS", show_envvar=True,
              help="POST each alert as a signed JSON event (with its EAR) to the URLs of this file "
                   "(schemas/webhooks.schema.json; without it: $DOSSIER_WEBHOOK_URLS). The secret: in the file "
                   "(mode 0600) or $DOSSIER_WEBHOOK_SECRET, never on the command line. See docs/webhooks.md.")
@click.option("--ear-key", "ear_key", type=click.Path(dir_okay=False, path_type=Path), default=None,
              envvar="DOSSIER_EAR_KEY", show_envvar=True,
              help="The key that signs the EARs in webhook events (default: ear-signing-key.pem beside the "
                   "trust store; made on first use, mode 0600).")
def collect_command(inventory_path: Path, store_path: Path, trust_store_path: Path,
                    devices: tuple[str, ...], groups: tuple[str, ...], concurrency: int,
                    run_deadline: float | None, retries: int, mode: str, interval: float | None,
                    metrics_file: Path | None, syslog_address: str | None, policy_path: Path | None,
                    as_json: bool, progress: bool | None, collector_key: Path | None = None,
                    fail_on: str | None = None, quiet: bool = False, verbose: bool = False,
                    webhooks_path: Path | None = None, ear_key: Path | None = None) -> None:
    """Poll devices for fresh signed dossiers, store them byte for byte, and verify each at once.

    Each device gets a new 16-byte nonce from the OS CSPRNG on both the dossier and `utility
    sign`. Envelopes go to STORE/<device>/ with a .meta.json beside each (nonce, times, and the
    verdict). A lock in the store refuses an overlapping run.

    \b
    Exit codes:
      0  every device collected and trusted
      1  a device failed or its envelope is not trusted (or another run holds the lock), or
         with --fail-on, an appraisal is at that status or worse
      2  configuration error (inventory, store, trust store, options); nothing is polled,
         except for a device credential that cannot be read: the other devices are polled
    """
    with _errors_to_exit_codes():
        if fail_on is not None and policy_path is None:
            raise click.UsageError("--fail-on needs --policy: it judges the appraisal made with that policy")
        if quiet and (verbose or as_json):
            raise click.UsageError(f"--quiet contradicts --{'verbose' if verbose else 'json'}")
        inventory = load_inventory(inventory_path)
        selected = inventory.select(devices, groups)
        if metrics_file is not None:
            _check_writable_folder(metrics_file, "--metrics-file")
        # Before any device is polled: a damaged trust store (or none at all) is a
        # configuration error, not a fleet of untrusted devices.
        check_trust_store(trust_store_path, [device.name for device in selected])
        try:
            alerts = AlertSink(syslog_address)
        except (ValueError, OSError) as exc:
            raise click.BadParameter(str(exc), param_hint="--syslog") from exc
        from .webhooks import WebhookConfigError, load_webhook_config, start_sender

        try:
            webhooks = load_webhook_config(webhooks_path)
        except WebhookConfigError as exc:
            raise click.BadParameter(str(exc), param_hint="--webhooks") from exc
        policy = None
        if policy_path is not None:
            from .insights import PolicyError, load_policy

            try:
                policy = load_policy(policy_path)
            except PolicyError as exc:
                raise click.BadParameter(str(exc), param_hint="--policy") from exc
        store = Store.open(store_path)
        key_path = _key_path(collector_key, trust_store_path)
        check_key_outside(key_path, store.root)
        records = RecordLog(store.root, load_or_create_key(key_path))
        records.check_key()
        if webhooks is not None:
            alerts.webhooks = start_sender(webhooks, store, trust_store_path, policy, ear_key)
        options = CollectOptions(concurrency=concurrency, run_deadline_s=run_deadline, retries=retries,
                                 policy=policy)
        show_progress = (_stderr_console().is_terminal and not quiet) if progress is None else progress
        stop = threading.Event()
        previous = _install_stop_handlers(stop)
        # What start-up made (modules, inventory, trust store) stays for the whole process: the
        # cyclic collector stops walking it at every full collection (measured: BENCHMARKS.md).
        # Before the first run, so no run's garbage is kept; undone at the end, so a caller that
        # runs the command in its own process (tests) does not keep what it froze.
        gc.freeze()
        try:
            code = EXIT_OK
            while True:
                summary = _one_run(store, trust_store_path, selected, options, alerts, stop,
                                   show_progress=show_progress and not as_json, looping=interval is not None,
                                   records=records, quiet=quiet)
                if summary is not None:
                    if metrics_file is not None:
                        write_metrics(metrics_file, store.readable_states())
                    at_fail_on = _at_fail_on(summary, fail_on)
                    if quiet:
                        for outcome in at_fail_on:
                            click.echo(f"{inert(outcome.device)}: appraisal "
                                       f"{(outcome.appraisal or {}).get('status')} (--fail-on {fail_on})", err=True)
                    else:
                        _print_summary(summary, as_json=as_json, verbose=verbose)
                    code = EXIT_FAILED if at_fail_on else summary.exit_code
                    if any((o.reason or "").startswith("inventory.") for o in summary.outcomes):
                        # A device's credential could not be read: the others were polled, but
                        # the inventory needs fixing (its message says what to do).
                        code = EXIT_USAGE
                else:
                    code = EXIT_FAILED
                if interval is None or stop.is_set():
                    break
                if stop.wait(interval * random.uniform(1 - INTERVAL_JITTER, 1 + INTERVAL_JITTER)):
                    break
        finally:
            gc.unfreeze()
            _restore_stop_handlers(previous)
            alerts.close()
            store.close()
        raise _Exit(code)


def _check_writable_folder(path: Path, option: str) -> None:
    """Refuse before polling a file that could not be written afterwards."""
    folder = path.parent
    if not folder.is_dir():
        raise click.BadParameter(f"expected an existing folder for {path}, found no folder {folder}",
                                 param_hint=option)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise click.BadParameter(f"expected a folder this user can write for {path}, found {folder} "
                                 "not writable", param_hint=option)


def _install_stop_handlers(stop: threading.Event) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum: int, frame: object) -> None:
        if signum == signal.SIGINT and stop.is_set():
            # A device may take up to its timeouts.device (300 s by default) to finish: the
            # operator asking twice means now. Exiting at once is what a crash does, and the
            # store is made for that: what is stored stays, the index stays marked dirty and the
            # next run rebuilds it. Threads blocked in sockets would hold up a normal exit.
            sys.stdout.flush()
            sys.stderr.write("received SIGINT again: aborting now; envelopes stored so far are kept and "
                             "the next run rebuilds the index\n")
            sys.stderr.flush()
            os._exit(EXIT_INTERRUPTED)
        log.warning("received %s: finishing in-flight devices, then exiting%s", signal.Signals(signum).name,
                    " (Ctrl-C again aborts at once)" if signum == signal.SIGINT else "")
        stop.set()

    return {signum: signal.signal(signum, handler) for signum in (signal.SIGTERM, signal.SIGINT)}


def _restore_stop_handlers(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def _at_fail_on(summary: RunSummary, fail_on: str | None) -> list[DeviceOutcome]:
    """The outcomes whose appraisal is `fail_on` or worse (none without --fail-on)."""
    if fail_on is None:
        return []
    from .insights.findings import Status

    threshold = Status(fail_on).rank
    return [outcome for outcome in summary.outcomes
            if (outcome.appraisal or {}).get("status") in set(Status)
            and Status(outcome.appraisal["status"]).rank >= threshold]  # type: ignore[index]


def _one_run(store: Store, trust_store_path: Path, devices: list[Any], options: CollectOptions,
             alerts: AlertSink, stop: threading.Event, *, show_progress: bool,
             looping: bool, records: RecordLog | None = None, quiet: bool = False) -> RunSummary | None:
    lock = RunLock(store.root / "collect.lock")
    try:
        lock.acquire()
    except LockError as exc:
        if not looping:
            raise
        click.echo(f"warning: skipping this interval: {inert(exc)}", err=True)
        return None
    try:
        if show_progress:
            with Progress(TextColumn("[bold]collect"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("{task.fields[last]}", markup=False), TimeElapsedColumn(),
                          console=_stderr_console(), transient=True) as bar:
                task = bar.add_task("collect", total=len(devices), last="")

                def advance(outcome: DeviceOutcome) -> None:
                    bar.update(task, advance=1, last=f"{inert(outcome.device)}: {outcome.status}")

                collector = Collector(store, trust_store_path=trust_store_path, options=options,
                                      alerts=alerts, on_outcome=advance, records=records)
                return collector.run(devices, stop=stop)

        def log_line(outcome: DeviceOutcome) -> None:
            if not (quiet and outcome.status == TRUSTED):
                click.echo(_log_line(outcome), err=True)

        collector = Collector(store, trust_store_path=trust_store_path, options=options,
                              alerts=alerts, on_outcome=log_line, records=records)
        return collector.run(devices, stop=stop)
    finally:
        lock.release()


def _log_line(outcome: DeviceOutcome) -> str:
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    parts = [stamp, f"device={inert(outcome.device)}", f"status={outcome.status}",
             f"attempts={outcome.attempts}", f"duration_s={outcome.duration_s:.3f}"]
    if outcome.bytes is not None:
        parts.append(f"bytes={outcome.bytes}")
    if outcome.reason:
        parts.append(f"reason={inert(outcome.reason)}")
    if outcome.path:
        parts.append(f"file={inert(outcome.path)}")
    if outcome.message and outcome.status != TRUSTED:
        parts.append(f"detail={json.dumps(outcome.message)}")
    return " ".join(parts)


_STATUS_STYLE = {"trusted": "green", "untrusted": "bold red", "failed": "red", "skipped": "yellow",
                 "failed (unverified state file)": "red", "unrecorded": "yellow", "not verified": "yellow"}


def _print_summary(summary: RunSummary, *, as_json: bool, verbose: bool = False) -> None:
    if as_json:
        click.echo(json.dumps(summary.to_json(), indent=2))
        return

    appraised = any(outcome.appraisal for outcome in summary.outcomes)  # run with --policy
    columns = ["device", "status", "reason", "warnings", "tries", "secs", "bytes", "expiry days leaf/root"]
    rows, details = [], []
    for outcome in summary.outcomes:
        expiry = outcome.days_to_expiry
        warnings = sorted({str(f.get("id")) for f in outcome.findings if f.get("severity") == "warning"})
        row = [cell(outcome.device), cell(outcome.status, _STATUS_STYLE[outcome.status]),
               cell(outcome.reason), cell(f"{len(warnings)}: {', '.join(warnings)}" if warnings else ""),
               str(outcome.attempts), f"{outcome.duration_s:.2f}", "" if outcome.bytes is None else str(outcome.bytes),
               f"{expiry['leaf']}/{expiry['root']}" if {"leaf", "root"} <= set(expiry) else ""]
        if appraised:
            status = (outcome.appraisal or {}).get("status") or ""
            row.append(cell(status, _APPRAISAL_STYLE.get(status, "")))
        rows.append(row)
        details.append(_finding_lines(outcome) if verbose else [])
    print_table(f"Collection {summary.started} -> {summary.finished}", columns + ["appraisal"] * appraised,
                rows, details)
    counts = summary.counts
    click.echo(inert(f"{counts['trusted']} trusted, {counts['untrusted']} untrusted, {counts['failed']} "
                     f"failed, {counts['skipped']} skipped; envelopes under {summary.store}"))


def _finding_lines(outcome: DeviceOutcome) -> list[str]:
    """--verbose: the failure's message, then each finding's `severity id: message`."""
    lines = [f"{outcome.reason or outcome.status}: {outcome.message}"] if outcome.message else []
    for finding in outcome.findings:
        output = f" ({finding['output']})" if finding.get("output") else ""
        lines.append(f"{finding.get('severity')} {finding.get('id')}{output}: {finding.get('message')}")
    return lines


# --- dossier enroll ---------------------------------------------------------------------------


@click.command("status")
@_store_option
@_json_option
@_key_option
@_key_trust_option
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              envvar="DOSSIER_DISTRIBUTED_CONFIG", show_envvar=True,
              help="Distributed collection's configuration: read the shared PostgreSQL index (its store unless "
              "--store is given), and name devices not attempted for two intervals and silent workers.")
@click.pass_context
def status_command(ctx: click.Context, store_path: Path, as_json: bool, collector_key: Path | None = None,
                   trust_store_path: Path | None = None, config_path: Path | None = None) -> None:
    """Show the fleet: last collection, verdict and certificate expiry per device.

    \b
    Exit codes:
      0  every device's last poll was trusted
      1  some device's last poll failed or was untrusted (or the store is empty), or with
         distributed collection a device was not attempted for two intervals or a worker went silent
      2  the store cannot be read
    """
    from .storage.opening import open_store

    with _errors_to_exit_codes():
        quiet = None
        if config_path is not None:
            config, store_path, trust_store_path = _distributed_paths(ctx, config_path, store_path, trust_store_path)
            quiet = _quiet(config)
        with open_store(store_path, create=False, config=config_path) as store:
            checks = _store_records(store, collector_key, trust_store_path)
            rows = fleet_status(store, checks)
        record_errors = [f for f in checks.log.problems if f.severity is Severity.ERROR]
        if quiet is not None:
            for row in rows:
                attempted = quiet.attempts.get(row["device"])
                row["last_attempt"] = attempted.isoformat() if attempted is not None else None
        if as_json:
            document: dict[str, Any] = {"store": str(store_path), "devices": rows, "records": checks.summary()}
            if quiet is not None:
                document["not_attempted"] = {device: None if last is None else last.isoformat()
                                             for device, last in sorted(quiet.not_attempted.items())}
                document["silent_workers"] = {worker: beat.isoformat()
                                              for worker, beat in sorted(quiet.silent_workers.items())}
            click.echo(json.dumps(document, indent=2))
        else:
            if quiet is not None:
                for device, last in sorted(quiet.not_attempted.items()):
                    click.echo(f"not attempted for more than two intervals: {inert(device)} (last attempt "
                               f"{'never' if last is None else last.isoformat(timespec='seconds')})", err=True)
                for worker, beat in sorted(quiet.silent_workers.items()):
                    click.echo(f"worker stopped heartbeating: {inert(worker)} (last heartbeat "
                               f"{beat.isoformat(timespec='seconds')})", err=True)
            for finding in checks.log.problems:
                click.echo(f"record log {finding.severity}: {finding.id}: {inert(finding.message)}", err=True)
            from .status import reason_text

            table = []
            for row in rows:
                status = row["last_status"] or ""
                expiry = ("" if row["days_leaf"] is None and row["days_root"] is None
                          else f"{_days(row['days_leaf'])}/{_days(row['days_root'])}")  # never 364/None
                kinds = row.get("evidence") or {}
                shown = status + (f" ({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))})"
                                  if len(kinds) > 1 else "")  # a poll of several kinds: each one's
                table.append((cell(row["device"]), cell((row["last_poll"] or "")[:19]),
                              cell(shown, _STATUS_STYLE.get(status, "white")),
                              cell(reason_text(row)), cell((row["last_trusted"] or "")[:19]), cell(expiry),
                              cell(row["appraisal"], _APPRAISAL_STYLE.get(row["appraisal"] or "", ""))))
            print_table(f"Fleet status ({store_path})", ("device", "last poll (UTC)", "status", "reason",
                        "last trusted (UTC)", "expiry days leaf/root", "appraisal"), table, no_wrap=("device",))
        bad = any(row["last_status"] != TRUSTED or row["record_findings"] for row in rows) or record_errors
        quiet_found = quiet is not None and bool(quiet.not_attempted or quiet.silent_workers)
        raise _Exit(EXIT_FAILED if bad or quiet_found or not rows else EXIT_OK)


def _distributed_paths(ctx: click.Context, config_path: Path, store_path: Path,
                       trust_store_path: Path) -> tuple[Any, Path, Path]:
    """Distributed collection's configuration at `config_path`, and the store and trust store:
    the configuration's unless given on the command line. Raises StoreError for a bad one."""
    from .distributed.config import DistributedConfigError, load_config

    try:
        config = load_config(config_path)
    except DistributedConfigError as exc:
        raise StoreError(str(exc)) from None
    default = click.core.ParameterSource.DEFAULT
    if ctx.get_parameter_source("store_path") == default:
        store_path = config.store
    if ctx.get_parameter_source("trust_store_path") == default:
        trust_store_path = config.trust_store
    return config, store_path, trust_store_path


def _quiet(config: Any) -> Any:
    """What went quiet in distributed collection (`collector.distributed.watch.Quiet`)."""
    from .distributed.coordination import Coordination
    from .distributed.watch import find_quiet

    coordination = Coordination(config.database_dsn)
    try:
        return find_quiet(config, coordination)
    finally:
        coordination.close()


_APPRAISAL_STYLE = {"affirming": "green", "warning": "yellow", "contraindicated": "bold red"}


def _days(days: int | None) -> str:
    return "-" if days is None else str(days)


def _key_missing(checks: StoreRecords) -> bool:
    """A record log was there but no collector key to check it with (an error: key_not_pinned)."""
    return any(f.id == FindingId.RECORD_KEY_NOT_PINNED and f.severity is Severity.ERROR for f in checks.log.problems)


# --- dossier store ... ------------------------------------------------------------------------


@click.group("store")
def store_group() -> None:
    """Maintain the envelope store (index rebuild, pruning)."""


@store_group.command("reindex")
@_store_option
@_json_option
@_key_option
@_key_trust_option
def reindex_command(store_path: Path, as_json: bool, collector_key: Path | None = None,
                    trust_store_path: Path | None = None) -> None:
    """Rebuild the SQLite index from the envelope files (after a crash or a damaged index), and
    check each envelope's signed record: one that fails is indexed as untrusted, with the
    record finding ids as its reasons.

    A stored file that cannot be used as it is (metadata, verdict or appraisal file that is
    not JSON or has a field of the wrong kind; an envelope that cannot be read) is listed with
    what was expected and what was found. Its envelope is indexed as far as its files tell
    (an unreadable envelope is left out); nothing stored is changed or deleted.

    \b
    Exit codes:
      0  every envelope indexed, no damaged file, every record holds
      1  indexed, but damaged files were found (listed; --json: "damaged") or a record failed
      2  the index could not be rebuilt (no store there, the disk is full, no permission);
         the old index is kept and the next collection run tries again
    """
    damaged: list[DamagedFile] = []
    with _errors_to_exit_codes():
        with RunLock(Path(store_path) / "collect.lock") if Path(store_path).is_dir() else _no_lock():
            from .storage.opening import open_store  # the shared PostgreSQL index when configured

            with open_store(store_path, create=False) as store:
                count = store.reindex(on_damage=damaged.append)
                checks = _store_records(store, collector_key, trust_store_path)
                every = [record for device in store.latest() for record in store.history(device)]
                if not _key_missing(checks):  # without the key nothing is known: the verdicts stay as read
                    for record in flag_untrusted(every, checks):
                        store.index(record)
                store.mark_clean()
        flagged = checks.summary()
        if as_json:
            click.echo(json.dumps({"store": str(store_path), "envelopes": count, "records": flagged,
                                   "damaged": [damage.to_json() for damage in damaged]}))
        else:
            for damage in damaged:
                click.echo(f"damaged: {damage}")
            more = f"; {len(damaged)} damaged files (listed above, left as they are)" if damaged else ""
            click.echo(f"indexed {count} envelopes in {inert(store_path)}{more}")
            for finding in checks.log.problems:
                click.echo(f"record log {finding.severity}: {finding.id}: {inert(finding.message)}", err=True)
            for path, findings in flagged["envelopes"].items():
                for finding in findings:
                    click.echo(f"{inert(path)}: {finding['severity']}: {finding['id']}: {inert(finding['message'])}",
                               err=True)
        if damaged or _key_missing(checks) or any(f.severity is Severity.ERROR for findings in checks.checked.values()
                                                  for f in findings):
            raise _Exit(EXIT_FAILED)


@store_group.command("key")
@_key_option
@click.option("--trust-store", "trust_store_path", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Where the key is by default: collector-key.pem beside this trust store.")
def key_command(collector_key: Path | None, trust_store_path: Path | None) -> None:
    """Print the collector's public key (PEM) and its SHA-256 fingerprint, for auditors
    (`dossier verify --collector-key`). Makes the key if there is none yet."""
    with _errors_to_exit_codes():
        key = _key_path(collector_key, trust_store_path)
        if not key.exists():
            load_or_create_key(key)
        pem, fingerprint = public_key_of(key)
        click.echo(pem.decode("ascii"), nl=False)
        click.echo(f"SHA-256 fingerprint: {fingerprint}")


@contextmanager
def _no_lock() -> Iterator[None]:
    yield


@store_group.command("history")
@_store_option
@click.argument("device")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True,
              help="Newest N envelopes.")
@_json_option
def history_command(store_path: Path, device: str, limit: int, as_json: bool) -> None:
    """List a device's stored envelopes, newest first, with their verdicts (from the index)."""
    with _errors_to_exit_codes():
        with Store.open(store_path, create=False) as store:
            records = store.history(device, limit=limit)
        if not records:
            raise click.UsageError(f"no envelopes for device {device!r} in {store_path}")
        if as_json:
            click.echo(json.dumps({"device": device, "envelopes": [r.to_json() for r in records]}, indent=2))
            return
        grid = Table(title=cell(f"History of {device} ({store_path})"))
        for column in ("received (UTC)", "verdict", "reasons", "bytes", "file"):
            grid.add_column(column, overflow="fold")
        for record in records:
            verdict = {True: cell("trusted", "green"), False: cell("untrusted", "bold red"),
                       None: cell("not verified")}[record.trusted]
            grid.add_row(cell(record.received[:19]), verdict, cell(", ".join(record.reasons)), str(record.bytes),
                         cell(record.path))
        Console().print(grid)


@store_group.command("prune")
@_store_option
@click.option("--keep-days", type=click.FloatRange(min=0), default=None,
              help="Keep every envelope received in the last DAYS days.")
@click.option("--keep-last", type=click.IntRange(min=0), default=None,
              help="Keep each device's newest N envelopes.")
@click.option("--dry-run", is_flag=True, help="Only list what would be deleted.")
@_json_option
def prune_command(store_path: Path, keep_days: float | None, keep_last: int | None, dry_run: bool,
                  as_json: bool) -> None:
    """Delete old envelopes (with their metadata and verdicts).

    An envelope goes only if it is outside both limits given. The newest trusted envelope of
    each device is never deleted, and the outputs of one poll go together: an IOS XE poll's
    SUDI output stays as long as its integrity output (its signer) does.
    """
    with _errors_to_exit_codes():
        if keep_days is None and keep_last is None:
            raise click.UsageError("give --keep-days and/or --keep-last; pruning needs a limit")
        with RunLock(Path(store_path) / "collect.lock"):
            with Store.open(store_path, create=False) as store:
                doomed = store.prune(keep_days=keep_days, keep_last=keep_last, dry_run=dry_run)
        if as_json:
            click.echo(json.dumps({"dry_run": dry_run, "deleted": [r.path for r in doomed]}, indent=2))
        else:
            verb = "would delete" if dry_run else "deleted"
            for record in doomed:
                click.echo(f"{verb} {inert(record.path)}")
            click.echo(f"{verb} {len(doomed)} envelopes")


def register(group: click.Group) -> None:
    """Add this package's subcommands to the top-level `dossier` group."""
    from .distributed.cli import schedule_command, worker_command
    from .enroll_cli import enroll_command
    from .hostkeys_cli import hostkeys_command
    from .insights.cli import appraise_command, diff_command, report_command
    from .service.cli import serve_group

    for command in (collect_command, enroll_command, status_command, store_group, diff_command,
                    report_command, appraise_command, hostkeys_command, serve_group, worker_command,
                    schedule_command):
        group.add_command(command)
