"""Verification in helper processes that live as long as the collector's process.

Why: polling runs dozens of threads under one GIL (SSH sessions and paramiko's transport
threads), so everything else the collector does per envelope slows the polling down; verifying
an envelope is the biggest such part. A helper process does it on another core.

How: each helper is a plain child process (`python -P -c`, no fork of this threaded process),
started at the first run that wants it and kept for every later run of this process (the
`--interval` loop, a long-lived caller), spoken to over a socket pair with pickled calls of the
functions in `collector.verifying` and nothing else, one call at a time. Each run gets a fresh
view of the trust store in the helper too (the run's number travels with each call).

- It imports the very verifier and collector this process runs: `-P` keeps the working
  directory off its import path, the folder holding this package goes first on PYTHONPATH, and
  its ready message names the files it imported, which must be this process's (else it is not
  used). Its environment is the few variables Python needs, not the collector's (which may hold
  device passwords).

- It says when it is ready; until then (the first ~0.3 s of a process) outputs are verified in
  the calling thread, so a small cron run never waits for it to start.
- It runs in its own session: Ctrl-C on the terminal stops the collector, which finishes what
  is in flight with the helper still there. It exits when the collector's end of the socket
  closes, including when the collector is killed.
- If it cannot start, dies, stops answering (no reply within REPLY_TIMEOUT_S: it is killed),
  or a call fails in it, the call runs in the calling thread instead (a warning is logged
  once): verification is never skipped, and a failure in the helper never turns into a verdict.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["VerifyWorkers", "auto_worker_count", "has_shared_workers", "serve", "shared_workers"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: The directory that holds the `collector` package, put first on the helper's PYTHONPATH so
#: that it imports this very copy (a source checkout or an installed package alike).
_PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)
_BOOT = "from collector.verify_worker import serve; serve()"
_READY = b"ready"
#: A helper that has not answered a call after this long is taken for hung and killed (verifying
#: the largest envelope the verifier accepts, 64 MiB, takes a few seconds).
REPLY_TIMEOUT_S = 120.0
#: The environment a helper gets: what Python and its libraries need, nothing of the collector's.
_ENVIRONMENT = ("PATH", "HOME", "TMPDIR", "LANG", "LANGUAGE", "SYSTEMROOT", "VIRTUAL_ENV",
                "LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH", "PYTHONHOME", "PYTHONPLATLIBDIR",
                "PYTHONUSERBASE", "PYTHONNOUSERSITE", "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE",
                "PYTHONPYCACHEPREFIX", "SSL_CERT_FILE", "SSL_CERT_DIR", "OPENSSL_CONF", "OPENSSL_MODULES")
#: What a helper may be asked to run.
_FUNCTIONS = ("verify_bytes", "verify_many", "verify_signed_output")


def auto_worker_count() -> int:
    """One helper when this process may use two cores or more, else none (verify in-thread).

    One is enough: verifying takes ~0.6-2 ms an envelope, while one collector process polls a
    few hundred devices a second at most (its GIL is the limit)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return 1 if cores >= 2 else 0


def _verifying() -> Any:
    from . import verifying

    return verifying


def _identity() -> bytes:
    """Which verifier and collector this process imports (compared with the helper's)."""
    import verifier

    return f"{_READY.decode()} {Path(verifier.__file__).resolve()} {Path(__file__).resolve()}".encode()


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _ENVIRONMENT or k.startswith("LC_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_PARENT, os.environ.get("PYTHONPATH")) if p)
    return env


class _WorkerGone(Exception):
    """The helper process cannot be talked to any more."""


class _Worker:
    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-P", "-c", _BOOT], stdin=theirs, stdout=subprocess.DEVNULL,
                env=_environment(), start_new_session=True)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.connection = Connection(ours.detach())
        self.ready = False
        self._closed = False
        self._close_lock = threading.Lock()

    def _status(self) -> str:
        code = self.process.poll()
        return "still running" if code is None else f"exit status {code}"

    def poll_ready(self) -> bool:
        """True once the helper has said it is ready; raises _WorkerGone if it died first or
        imported another verifier than this process."""
        if not self.ready:
            try:
                if self.connection.poll(0):
                    said = self.connection.recv_bytes()
                    if said != _identity():
                        raise _WorkerGone(f"expected it to say {_identity()!r}, found {said[:300]!r}")
                    self.ready = True
                elif self.process.poll() is not None:
                    raise _WorkerGone(f"it ended while starting ({self._status()})")
            except (EOFError, OSError) as exc:
                raise _WorkerGone(f"it closed its end while starting ({type(exc).__name__}: {exc}; "
                                  f"{self._status()})") from exc
        return self.ready

    def call(self, payload: bytes) -> tuple[bool, Any]:
        """Send one pickled call and read its reply; any failure after sending means this
        helper can no longer be trusted to answer in step: _WorkerGone (the caller kills it)."""
        try:
            self.connection.send_bytes(payload)
            if not self.connection.poll(REPLY_TIMEOUT_S):
                raise _WorkerGone(f"no answer within {REPLY_TIMEOUT_S:g} s ({self._status()})")
            return pickle.loads(self.connection.recv_bytes())  # type: ignore[no-any-return]
        except _WorkerGone:
            raise
        except BaseException as exc:
            raise _WorkerGone(f"{type(exc).__name__}: {exc} ({self._status()})") from exc

    def close(self, *, kill: bool = False) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            if kill:
                self.process.kill()
            self.connection.close()  # the helper reads end of file and exits
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class VerifyWorkers:
    """A few verification helpers shared by the threads of this process (`call`)."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._cond = threading.Condition()
        self._starting: list[_Worker] = []
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._run = 0
        self._warned = False
        self._start(count)

    def begin_run(self) -> None:
        """A new run: helpers take a fresh view of the trust store at their next call, and
        helpers lost in earlier runs are started again."""
        with self._cond:
            self._run += 1
            self._start(self.count - len(self._starting) - len(self._idle) - len(self._busy))

    def pids(self) -> list[int]:
        with self._cond:
            return [w.process.pid for w in (*self._starting, *self._idle, *self._busy)]

    def call(self, function: Callable[..., T], args: tuple[Any, ...], *, trust_store_path: str | None) -> T:
        """`function(*args)` in a helper (in this thread when none is ready or it fails)."""
        name = getattr(function, "__name__", None)
        if name not in _FUNCTIONS or function is not getattr(_verifying(), name):
            raise ValueError(f"expected collector.verifying's {' or '.join(_FUNCTIONS)}, found {function!r}")
        worker, run = self._take()
        if worker is None:
            return function(*args)
        try:
            payload = pickle.dumps((run, trust_store_path, name, args), pickle.HIGHEST_PROTOCOL)
        except BaseException:
            self._give_back(worker)  # arguments that do not pickle: nothing was sent
            raise
        try:
            ok, value = worker.call(payload)
        except _WorkerGone as exc:
            self._lost(worker, f"a verification helper process stopped answering ({exc})")
            if isinstance(exc.__cause__, (KeyboardInterrupt, SystemExit)):
                raise exc.__cause__ from None
            return function(*args)
        except BaseException:  # only between the reply and here (an interrupt): it is in step
            self._give_back(worker)
            raise
        self._give_back(worker)
        if not ok:
            # Never a verdict from a failed helper: run it here, where it raises (or not) as
            # it would without helpers.
            self._warn(f"verification failed in a helper process ({value}); verifying here")
            return function(*args)
        return value  # type: ignore[no-any-return]

    def close(self) -> None:
        with self._cond:
            workers = [*self._starting, *self._idle, *self._busy]
            self._starting, self._idle, self._busy = [], [], set()
            self._cond.notify_all()
        for worker in workers:
            worker.close()

    # --- internals ------------------------------------------------------------------------

    def _start(self, count: int) -> None:
        for _ in range(count):
            try:
                self._starting.append(_Worker())
            except OSError as exc:
                self._warn(f"cannot start a verification helper process ({exc}); verifying in the "
                           "collector's own threads")
                return

    def _take(self) -> tuple[_Worker | None, int]:
        with self._cond:
            while True:
                self._promote()
                if self._idle:
                    worker = self._idle.pop()
                    self._busy.add(worker)
                    return worker, self._run
                if not self._busy:
                    return None, self._run  # none ready yet (or none left): verify here
                # Every ready helper is busy: wait for one (a busy one answers, or is killed,
                # within REPLY_TIMEOUT_S).
                if not self._cond.wait(REPLY_TIMEOUT_S + 10):
                    return None, self._run

    def _promote(self) -> None:
        starting = []
        for worker in self._starting:
            try:
                if worker.poll_ready():
                    self._idle.append(worker)
                    continue
            except _WorkerGone as exc:
                self._warn(f"a verification helper process did not start ({exc}); verifying in "
                           "the collector's own threads")
                threading.Thread(target=worker.close, kwargs={"kill": True}, daemon=True).start()
                continue
            starting.append(worker)
        self._starting = starting

    def _give_back(self, worker: _Worker) -> None:
        with self._cond:
            if worker in self._busy:
                self._busy.discard(worker)
                self._idle.append(worker)
            self._cond.notify()

    def _lost(self, worker: _Worker, message: str) -> None:
        with self._cond:
            self._busy.discard(worker)
            self._cond.notify_all()
        self._warn(message + "; verifying in the collector's own threads")
        worker.close(kill=True)

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning("%s", message)


_SHARED: dict[int, VerifyWorkers] = {}
_SHARED_LOCK = threading.Lock()


def shared_workers(count: int) -> VerifyWorkers:
    """This process's `count` helpers (started on first use, kept until exit; a run asking
    for another count gets another set, never one closed under a run still using it)."""
    with _SHARED_LOCK:
        workers = _SHARED.get(count)
        if workers is None:
            if not _SHARED:
                import atexit

                atexit.register(_close_shared)
            workers = _SHARED[count] = VerifyWorkers(count)
        return workers


def has_shared_workers() -> bool:
    """Whether this process has started helpers already."""
    return bool(_SHARED)


def _close_shared() -> None:
    with _SHARED_LOCK:
        shared = list(_SHARED.values())
        _SHARED.clear()
    for workers in shared:
        workers.close()


# --- the helper's side -----------------------------------------------------------------------

def serve() -> None:
    """The helper process: answer calls on fd 0 (the socket) until the collector closes it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the collector decides when to stop
    connection = Connection(os.dup(0))
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    from . import verifying

    functions = {name: getattr(verifying, name) for name in _FUNCTIONS}
    try:
        connection.send_bytes(_identity())
    except OSError:
        return  # the collector ended before this helper was ready: nothing to do
    views: dict[str, int] = {}  # trust store -> the run whose view this process holds
    while True:
        try:
            request = connection.recv_bytes()
        except (EOFError, OSError):
            return
        run, trust_store_path, name, args = pickle.loads(request)
        try:
            if trust_store_path is not None and views.get(trust_store_path) != run:
                verifying.freeze_trust_store(trust_store_path)
                views[trust_store_path] = run
            reply: tuple[bool, Any] = (True, functions[name](*args))
        except Exception as exc:  # reported to the collector, which verifies itself then
            reply = (False, f"{type(exc).__name__}: {exc}")
        try:
            connection.send_bytes(pickle.dumps(reply, pickle.HIGHEST_PROTOCOL))
        except OSError:
            return
