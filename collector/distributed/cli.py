"""`dossier worker` and `dossier schedule`: distributed collection over Celery and PostgreSQL."""

from __future__ import annotations

import logging
import signal
import threading
from datetime import timedelta
from pathlib import Path

import click

from verifier.display import inert

from ..errors import CollectorError
from .config import CONFIG_ENV, DistributedConfigError, load_config

__all__ = ["schedule_command", "worker_command"]

log = logging.getLogger("collector.distributed")

_config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), envvar=CONFIG_ENV,
    show_envvar=True, required=True,
    help="Distributed configuration (schemas/distributed.schema.json): broker, PostgreSQL, shared store. "
    "Secrets come from files it names or the environment, never from the command line.")


def _exit_on_errors(function):  # type: ignore[no-untyped-def]
    """Configuration and store errors exit 2 with their message; other collector errors 1."""
    def wrapped(*args, **kwargs):  # type: ignore[no-untyped-def]
        from ..errors import StoreError

        try:
            return function(*args, **kwargs)
        except (DistributedConfigError, StoreError) as exc:
            raise click.exceptions.Exit(_fail(exc, 2)) from None
        except CollectorError as exc:
            raise click.exceptions.Exit(_fail(exc, 1)) from None
    wrapped.__name__, wrapped.__doc__ = function.__name__, function.__doc__
    return wrapped


def _fail(exc: Exception, code: int) -> int:
    click.echo(f"error: {inert(str(exc))}", err=True)
    return code


@click.command("worker")
@_config_option
@click.option("--queue", "-Q", "queues", multiple=True, metavar="NAME",
              help="Take chunks from this queue (repeatable; default: the configuration's default_queue).")
@click.option("--name", "worker_name", default=None, metavar="NAME",
              help="This writer's name: its record log records.d/NAME.jsonl, key and heartbeats "
              "(default: the configuration's worker_name, else host-pid).")
@click.option("--concurrency", "-c", type=click.IntRange(1, 1024), default=None,
              help="SSH sessions at once within a chunk (default: the configuration's, 16).")
@_exit_on_errors
def worker_command(config_path: Path, queues: tuple[str, ...], worker_name: str | None,
                   concurrency: int | None) -> None:
    """Collect chunks of devices sent by `dossier schedule`: poll, store, verify, sign, appraise.

    Runs until SIGTERM or Ctrl-C (the chunk in hand finishes first). One chunk at a time per
    process: run several processes (or machines) for more.
    """
    from .chunks import WorkerContext
    from .engine import make_app, set_worker_context

    config = load_config(config_path, worker_name=worker_name, concurrency=concurrency)
    queues = queues or (config.default_queue,)
    context = WorkerContext(config, tuple(queues))
    context.start_heartbeats()
    set_worker_context(context)
    app = make_app(config)
    try:
        worker = app.Worker(queues=list(queues), pool="solo", concurrency=1, hostname=f"{config.worker_name}@%h",
                            loglevel="WARNING", without_gossip=True, without_mingle=True, quiet=True)
        worker.start()
        raise click.exceptions.Exit(worker.exitcode or 0)
    finally:
        context.close()


@click.command("schedule")
@_config_option
@click.option("--once", is_flag=True, help="Start one run and exit (for cron, and tests).")
@click.option("--metrics-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write node_exporter textfile metrics (devices not attempted, silent workers) at each interval.")
@click.option("--syslog", "syslog_address", default=None, metavar="HOST:PORT|PATH",
              help="Send alerts (devices not attempted for two intervals, silent workers) to syslog.")
@_exit_on_errors
def schedule_command(config_path: Path, once: bool, metrics_file: Path | None, syslog_address: str | None) -> None:
    """Start a run every interval: its fleet split into chunks sent to the workers' queues.

    Each run has an id; each device of it is polled by exactly one worker. At each interval it
    also names devices not attempted for more than two intervals and workers that stopped
    heartbeating (alerts, metrics).
    """
    from celery.schedules import schedule

    from ..alerts import AlertSink
    from .coordination import Coordination
    from .engine import make_app, send_run
    from .watch import check_quiet

    config = load_config(config_path)
    app = make_app(config)
    coordination = Coordination(config.database_dsn)
    alerts = AlertSink(syslog_address)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    every = schedule(run_every=timedelta(seconds=config.interval_s), app=app)
    try:
        while True:
            check_quiet(config, coordination, alerts, metrics_file)
            run_id, chunks = send_run(app, config, coordination)
            click.echo(f"run {run_id}: {chunks} chunks sent")
            if once:
                break
            started = every.now()
            while not stop.is_set():
                due = every.is_due(started)
                if due.is_due:
                    break
                stop.wait(min(due.next, config.interval_s))
            if stop.is_set():
                break
    finally:
        alerts.close()
        coordination.close()
