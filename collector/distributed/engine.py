"""Celery over Redis: the app, the one task (collect a chunk), and the scheduler's runs.

Chunks are acknowledged late (`task_acks_late`) and put back when their worker is lost
(`task_reject_on_worker_lost`); a worker SIGKILLed mid-chunk never acknowledges it, so Redis
hands it to another worker once the visibility timeout passes. The claims in PostgreSQL
(`coordination`) make that redelivery poll each device at most once per run.
Celery is imported here only: `dossier collect` never loads it.
"""

from __future__ import annotations

import logging
import secrets
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ..inventory import Device, load_inventory
from .config import DistributedConfig

__all__ = ["TASK_NAME", "make_app", "plan_run", "send_run"]

log = logging.getLogger("collector.distributed")

TASK_NAME = "dossier.collect_chunk"
#: How often (seconds) a worker looks for chunks whose visibility timeout passed, at most: a
#: fraction of the timeout, so a dead worker's chunk waits little longer than the timeout.
MAX_RESTORE_INTERVAL_S = 10.0

# The worker process's context (`chunks.WorkerContext`), set by `dossier worker` before the
# Celery worker starts: the task runs in that process (the solo pool).
_context: Any = None


def set_worker_context(context: Any) -> None:
    global _context
    _context = context


def make_app(config: DistributedConfig) -> Any:
    """The Celery app for `config`'s broker, with the collect-chunk task registered."""
    from celery import Celery

    app = Celery("dossier", broker=config.broker_url, set_as_current=False)
    restore_every = max(0.5, min(MAX_RESTORE_INTERVAL_S, config.visibility_timeout_s / 4))
    app.conf.update(
        task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
        task_ignore_result=True, result_backend=None, task_serializer="json", accept_content=["json"],
        task_default_queue=config.default_queue, task_create_missing_queues=True,
        broker_connection_retry_on_startup=True, worker_hijack_root_logger=False,
        worker_send_task_events=False, worker_enable_remote_control=False,
        broker_transport_options={"visibility_timeout": config.visibility_timeout_s,
                                  "unacked_restore_interval": restore_every, "unacked_restore_throttle": 1},
    )

    @app.task(name=TASK_NAME, acks_late=True, reject_on_worker_lost=True)
    def collect_chunk(run_id: str, devices: list[str]) -> dict[str, Any]:
        if _context is None:
            raise RuntimeError("expected the worker context set by `dossier worker`, found none")
        problem = task_problem([run_id, devices])
        if problem is not None:  # whoever can write to Redis can send tasks: refused, logged, not retried
            log.error("refused a %s task: %s", TASK_NAME, problem)
            return {"refused": problem}
        counts = _context.collect_chunk(run_id, devices)
        log.info("run %s: chunk of %d devices: %s", run_id, len(devices), counts)
        return counts

    return app


def task_problem(arguments: Any) -> str | None:
    """What is wrong with a task's arguments (schemas/distributed-task.schema.json), or None."""
    import jsonschema

    import schemas

    try:
        jsonschema.validate(arguments, schemas.load("distributed-task"))
    except jsonschema.ValidationError as exc:
        where = "/".join(str(part) for part in exc.absolute_path) or "the arguments"
        return f"{where}: {exc.message[:200]}"
    return None


def new_run_id(now: datetime | None = None) -> str:
    """A run's id: its start (UTC, sortable) and random digits (two schedulers never collide)."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


def plan_run(config: DistributedConfig, devices: Sequence[Device]) -> list[tuple[str, list[str]]]:
    """The run's chunks: (queue, device names), each queue's devices in chunks of `chunk_size`."""
    by_queue: dict[str, list[str]] = defaultdict(list)
    for device in devices:
        by_queue[config.queue_for(device.groups)].append(device.name)
    return [(queue, names[start:start + config.chunk_size])
            for queue, names in sorted(by_queue.items()) for start in range(0, len(names), config.chunk_size)]


def send_run(app: Any, config: DistributedConfig, coordination: Any, *, run_id: str | None = None) -> tuple[str, int]:
    """Start one run: record it, send its chunks; returns (run id, chunks sent)."""
    devices = load_inventory(config.inventory).devices
    run_id = run_id or new_run_id()
    chunks = plan_run(config, devices)
    coordination.start_run(run_id, interval_s=config.interval_s, devices=len(devices), chunks=len(chunks))
    for queue, names in chunks:
        app.send_task(TASK_NAME, args=[run_id, names], queue=queue)
    log.info("run %s: %d devices in %d chunks sent", run_id, len(devices), len(chunks))
    return run_id, len(chunks)
