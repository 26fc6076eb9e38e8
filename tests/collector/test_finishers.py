"""The collector's store+verify threads take outputs a batch at a time (`collect._Finishers`)."""

from __future__ import annotations

import queue
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from collector import collect
from collector.errors import StoreError


def fetched(name: str, size: int = 10) -> Any:
    """What a finisher needs of a `_Fetched`: a name to follow it by and its outputs' size."""
    return SimpleNamespace(name=name, size=size)


class Recorder:
    """A `finish_many` that records its batches; the first call waits until `release`."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        self.fail_on = fail_on

    def __call__(self, batch: list[Any]) -> list[Any]:
        if not self.started.is_set():
            self.started.set()
            self.release.wait(10)
        names = [item.name for item in batch]
        self.batches.append(names)
        if self.fail_on in names:
            raise RuntimeError("a bug in verification")
        return [f"outcome of {name}" if name != "full" else StoreError("disk full") for name in names]


def finish(recorder: Recorder, items: list[Any], threads: int = 1) -> tuple[list[Any], list[Any]]:
    completed: queue.SimpleQueue = queue.SimpleQueue()
    with collect._Finishers(recorder, threads, completed) as finishers:
        futures = [finishers.submit(items[0])]
        assert recorder.started.wait(10)  # the first output is taken alone...
        futures += [finishers.submit(item) for item in items[1:]]  # ...the rest wait meanwhile
        recorder.release.set()
    done = [completed.get(timeout=10) for _ in items]
    assert set(done) == set(futures)  # every future reported itself once
    return futures, done


def test_outputs_that_wait_together_are_finished_together_in_order() -> None:
    recorder = Recorder()
    futures, _ = finish(recorder, [fetched(f"d{i}") for i in range(6)])
    assert recorder.batches[0] == ["d0"]
    assert [name for batch in recorder.batches for name in batch] == [f"d{i}" for i in range(6)]
    assert len(recorder.batches) == 2  # the five that came in while the first was finished
    assert [f.result() for f in futures] == [f"outcome of d{i}" for i in range(6)]


def test_a_batch_holds_at_most_max_batch_outputs_and_about_max_batch_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(collect, "MAX_BATCH", 3)
    recorder = Recorder()
    finish(recorder, [fetched(f"d{i}") for i in range(8)])
    assert [len(batch) for batch in recorder.batches] == [1, 3, 3, 1]

    monkeypatch.setattr(collect, "MAX_BATCH", 16)
    monkeypatch.setattr(collect, "MAX_BATCH_BYTES", 100)
    recorder = Recorder()
    finish(recorder, [fetched("first")] + [fetched(f"big{i}", 60) for i in range(4)])
    assert recorder.batches[1:] == [["big0", "big1"], ["big2", "big3"]]  # stops once over 100 bytes


def test_a_store_error_stays_with_its_output_and_a_bug_fails_its_batch_only() -> None:
    recorder = Recorder(fail_on="bad")
    futures, _ = finish(recorder, [fetched("d0"), fetched("full"), fetched("d2")])
    assert futures[0].result() == "outcome of d0"
    with pytest.raises(StoreError, match="disk full"):
        futures[1].result()
    assert futures[2].result() == "outcome of d2"

    recorder = Recorder(fail_on="bad")
    futures, _ = finish(recorder, [fetched("d0"), fetched("bad"), fetched("d2")])
    assert futures[0].result() == "outcome of d0"
    for future in futures[1:]:  # the batch the bug was in: raised to the run for each output
        with pytest.raises(RuntimeError, match="a bug in verification"):
            future.result()


def test_several_threads_share_the_outputs_and_all_end() -> None:
    recorder = Recorder()
    recorder.release.set()
    futures, _ = finish(recorder, [fetched(f"d{i}") for i in range(40)], threads=3)
    assert sorted(name for batch in recorder.batches for name in batch) == sorted(f"d{i}" for i in range(40))
    assert all(f.done() for f in futures)
    assert not [t for t in threading.enumerate() if t.name.startswith("store-") and t.name[6:].isdigit()]


def test_a_finish_that_returns_too_few_outcomes_fails_its_batch_instead_of_hanging_the_run() -> None:
    completed: queue.SimpleQueue = queue.SimpleQueue()
    with collect._Finishers(lambda batch: ["one short"] * (len(batch) - 1), 1, completed) as finishers:
        futures = [finishers.submit(fetched(f"d{i}")) for i in range(3)]
    assert {completed.get(timeout=10) for _ in futures} == set(futures)
    for future in futures:
        with pytest.raises(RuntimeError, match=r"expected \d outcomes, found \d"):
            future.result()
