"""`dossier verify --jobs N` where processes fork: this process and N-1 forked workers verify
the files, handed out in chunks as each process asks for more, and the results come back in
input order.

The workers are forked after the caller's set-up (`verifier.cli._init_worker`), so they import
and load nothing again. This process hands out chunk numbers over a connection (a socket pair)
per worker; a worker holds the chunk it verifies and the next, so it does not wait for this
process to hand one out. Between its own files this process takes in what the workers sent back
and hands out more, so a slower process (other tenants on the machine) gets fewer chunks. A
worker that dies (crashed, killed) ends its connection: this process then warns and verifies
the chunks that worker held, so no file is dropped and nothing waits for a dead process.
"""

from __future__ import annotations

import os
import selectors
import signal
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection, Pipe
from typing import Any

__all__ = ["chunks", "forked_map"]

#: Files per chunk at most: one message back per chunk.
CHUNK_MAX = 64


def chunks(count: int, jobs: int) -> list[range]:
    """Ranges of item numbers: up to CHUNK_MAX each, shrinking toward the end (a quarter of an
    even share of what is left) so that the processes finish close together."""
    parts, start = [], 0
    while start < count:
        size = max(1, min(CHUNK_MAX, (count - start) // (jobs * 4)))
        parts.append(range(start, start + size))
        start += size
    return parts


def forked_map(function: Callable[[Any], Any], items: Sequence[Any], jobs: int,
               warn: Callable[[str], None]) -> Iterator[Any]:
    """`function(item)` of each item, in input order, computed by this process and `jobs - 1`
    forked ones. `function` must not raise (its problems are its results); `warn` is told when
    a worker died and this process verifies what it held."""
    parts = chunks(len(items), jobs)
    unhanded = deque(range(len(parts)))  # chunk numbers no process has yet
    mine: deque[int] = deque()  # chunks a dead worker held: this process verifies them
    held: dict[Connection, list[int]] = {}  # a live worker's pipe -> its chunks not returned yet
    pids: dict[Connection, int] = {}
    done: dict[int, list[Any]] = {}  # results not yielded yet, by chunk number
    selector = selectors.DefaultSelector()

    def hand_out(conn: Connection) -> None:
        # A second chunk ahead, but never the last unhanded one (whoever is free takes it).
        while unhanded and (not held[conn] or (len(held[conn]) < 2 and len(unhanded) > 1)):
            index = unhanded.popleft()
            held[conn].append(index)
            try:
                conn.send(index)
            except OSError:  # it died: collect() reads its end of file
                return

    def lost(conn: Connection) -> None:
        selector.unregister(conn)
        conn.close()
        missing = held.pop(conn)
        mine.extend(missing)
        how = _ended(pids.pop(conn))
        count = sum(len(parts[index]) for index in missing)
        warn(f"a verifier worker process {how} before it returned {count} file(s); "
             "the main process verifies them")

    def collect(timeout: float | None) -> None:
        for key, _ in selector.select(timeout):
            conn = key.fileobj
            try:
                index, results = conn.recv()  # type: ignore[union-attr]
            except (EOFError, OSError):
                lost(conn)  # type: ignore[arg-type]
                continue
            held[conn].remove(index)  # type: ignore[index]
            done[index] = results
            hand_out(conn)  # type: ignore[arg-type]

    try:
        for _ in range(min(jobs - 1, len(parts) - 1)):
            ours, theirs = Pipe()
            pid = os.fork()
            if pid == 0:
                _worker(function, items, parts, theirs, [ours, *held])
            theirs.close()
            held[ours], pids[ours] = [], pid
            selector.register(ours, selectors.EVENT_READ)
        for conn in list(held):
            hand_out(conn)
        following = 0  # the next chunk to yield
        while following < len(parts):
            if following in done:
                yield from done.pop(following)
                following += 1
            elif mine or unhanded:
                index = (mine or unhanded).popleft()
                results = []
                for item in parts[index]:
                    results.append(function(items[item]))
                    if held:
                        collect(0)
                done[index] = results
            elif held:
                collect(None)  # the rest is with the workers: wait for one to answer or die
            else:  # cannot happen: every chunk is unhanded, mine, held by a live worker or done
                raise RuntimeError(f"parallel verification lost chunk {following} of {len(parts)}")
    finally:
        for conn in held:
            conn.close()  # a worker waiting for a chunk reads end of file and exits
        for pid in pids.values():
            _ended(pid)
        selector.close()


def _ended(pid: int) -> str:
    """Wait for a worker that closed its pipe; how it ended."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:  # reaped elsewhere
        return "ended"
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        return f"exited with code {code}"
    try:
        return f"was killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"was killed by signal {-code}"


def _worker(function: Callable[[Any], Any], items: Sequence[Any], parts: list[range], conn: Connection,
            inherited: list[Connection]) -> None:
    """A forked worker: verify each chunk it is sent and send back (its number, the results),
    until its pipe ends. Never returns into the caller's code."""
    code = 1
    try:
        for other in inherited:
            other.close()  # the parent's ends: a worker must not keep another's pipe open
        while True:
            try:
                index = conn.recv()
            except EOFError:
                break
            conn.send((index, [function(items[item]) for item in parts[index]]))
        code = 0
    except (KeyboardInterrupt, BrokenPipeError, ConnectionResetError):
        pass  # interrupted, or the parent stopped early (it closed its end)
    except BaseException:  # noqa: BLE001 - the parent verifies its chunks; say why
        traceback.print_exc()
    finally:
        os._exit(code)
