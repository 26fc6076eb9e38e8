"""collector.verify_worker: verification helper processes, against real envelopes collected
from the emulator over loopback SSH, a real trust store and real child processes.

Which path ran a call (helper or calling thread) is observed without timing races:
- a helper that is SIGSTOPped cannot answer, so a call that returns while it is stopped ran in
  the calling thread;
- the helper verifies against the trust store as frozen for its run (`begin_run`), while the
  calling thread of this test process opens the trust store live: a verdict that does not follow
  a change made mid-run came from the helper;
- a helper that fails or dies makes `call` log a warning; no warning means no fallback.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from collector import verifying
from collector.collect import CollectOptions, Collector
from collector.enroll import RootCandidate, enroll_root, fetch_root
from collector.inventory import Device, load_inventory
from collector.platforms import profile_for
from collector.ssh import run_command
from collector.store import Store
from collector.verify_worker import VerifyWorkers, auto_worker_count, shared_workers
from collector.verifying import Checked, verify_bytes
from emulator.faults import Fault
from emulator.fleet import Fleet
from mixed_fleet import trust_mixed_fleet
from verifier import TrustStore

SMALL_FILES = 20
DEADLINE_S = 30.0  # generous bound for polling loops; never a timing assertion
PROJECT_ROOT = Path(__file__).resolve().parents[2]
WORKER_LOG = "collector.verify_worker"


# --- helpers ---------------------------------------------------------------------------------

def wait_for(predicate: Callable[[], bool], what: str, timeout: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def wait_ready(workers: VerifyWorkers) -> None:
    """Until every helper has said it is ready (promoted to idle), deterministically."""

    def ready() -> bool:
        with workers._cond:
            workers._promote()
            return not workers._starting and len(workers._idle) == workers.count

    wait_for(ready, "the verification helper to be ready")


def proc_state(pid: int) -> str | None:
    """The process state letter from /proc (None when the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rsplit(")", 1)[1].split()[0]


def gone(pid: int) -> bool:
    """Exited: reaped, or a zombie waiting for a parent that may never reap it."""
    return proc_state(pid) in (None, "Z", "X")


def ignored_signals(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return int(line.split()[1], 16)
    raise AssertionError("no SigIgn line")


@dataclass(frozen=True)
class Collected:
    raw: bytes
    device: str
    nonce_hex: str
    received: datetime

    def args(self, trust_store: Path | None) -> tuple[object, ...]:
        return (self.raw, str(trust_store) if trust_store is not None else None, self.device,
                self.nonce_hex, self.received)


@dataclass(frozen=True)
class Material:
    good: Collected       # signed by its device, root enrolled
    tampered: Collected   # data changed after signing (emulator fault DATA_CHANGED)
    candidate: RootCandidate  # the good device's root, to enroll in fresh trust stores
    trust_store: Path     # both roots enrolled; never changed by the tests


def collect_once(device: Device) -> Collected:
    profile = profile_for(device.platform)
    nonce_hex = os.urandom(16).hex()
    result = run_command(device, profile.dossier_command(device.items, nonce_hex))
    profile.check_output(result.output)
    return Collected(result.output, device.name, nonce_hex, result.received)


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> Material:
    """Two envelopes collected over SSH from the emulator, and a trust store for them."""
    tmp = tmp_path_factory.mktemp("verify-worker")
    with Fleet(state_dir=tmp / "fleet", devices=2, provisioned=True, key_type="ecdsa-p256",
               seed=21, files=SMALL_FILES) as fleet:
        fleet.write_inventory(tmp / "inventory.yaml")
        devices = load_inventory(tmp / "inventory.yaml").devices
        trust = tmp / "truststore"
        candidates = [fetch_root(device) for device in devices]
        for candidate in candidates:
            enroll_root(trust, candidate, source="tofu")
        good = collect_once(devices[0])
        fleet.set_fault(devices[1].name, Fault.DATA_CHANGED)
        tampered = collect_once(devices[1])
    return Material(good, tampered, candidates[0], trust)


@pytest.fixture
def workers() -> Iterator[VerifyWorkers]:
    pool = VerifyWorkers(1)
    try:
        yield pool
    finally:
        for pid in pool.pids():  # a test may leave it stopped
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        pool.close()


def error_ids(checked: Checked) -> list[str]:
    return [finding["id"] for finding in checked.errors]


def worker_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == WORKER_LOG and r.levelno >= logging.WARNING]


# --- verdicts ----------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["good", "tampered"])
def test_a_helper_verdict_equals_the_in_thread_verdict(which: str, material: Material, workers: VerifyWorkers,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=WORKER_LOG)
    collected = getattr(material, which)
    args = collected.args(material.trust_store)
    wait_ready(workers)
    pid = workers.pids()[0]
    from_helper = workers.call(verify_bytes, args, trust_store_path=str(material.trust_store))
    in_thread = verify_bytes(*args)
    assert from_helper == in_thread
    if which == "good":
        assert from_helper.trusted and from_helper.refused is None and from_helper.errors == []
        assert from_helper.leaf_der and from_helper.root_der == material.candidate.root.public_bytes(Encoding.DER)
    else:
        assert not from_helper.trusted and error_ids(from_helper)[0] == "signature.invalid"
        assert from_helper.leaf_der is None and from_helper.root_der is None
    # It came from the helper: no fallback was logged and the helper is still there, idle.
    assert worker_warnings(caplog) == []
    assert workers.pids() == [pid] and not gone(pid)


def test_a_call_before_the_helper_is_ready_runs_in_the_calling_thread(material: Material) -> None:
    args = material.good.args(material.trust_store)
    # Right after construction: whichever path runs it, the verdict is right.
    pool = VerifyWorkers(1)
    try:
        assert pool.call(verify_bytes, args, trust_store_path=str(material.trust_store)).trusted
    finally:
        pool.close()
    # Deterministically before "ready": stop the helper before it can say so. A stopped helper
    # cannot answer, so a call that returns ran in this thread.
    for _ in range(5):
        pool = VerifyWorkers(1)
        pid = pool.pids()[0]
        try:
            os.kill(pid, signal.SIGSTOP)
            wait_for(lambda: proc_state(pid) == "T", "the helper to stop")
            with pool._cond:
                pool._promote()
                not_ready = len(pool._starting) == 1 and not pool._idle
            if not not_ready:
                continue  # it was ready within microseconds: try again
            checked = pool.call(verify_bytes, args, trust_store_path=str(material.trust_store))
            assert checked == verify_bytes(*args) and checked.trusted
            tampered = pool.call(verify_bytes, material.tampered.args(material.trust_store),
                                 trust_store_path=str(material.trust_store))
            assert not tampered.trusted and error_ids(tampered)[0] == "signature.invalid"
            # Let it go: it says it is ready, and the next calls go to it.
            os.kill(pid, signal.SIGCONT)
            wait_ready(pool)
            assert pool.call(verify_bytes, args, trust_store_path=str(material.trust_store)) == checked
            assert pool.pids() == [pid]
            return
        finally:
            os.kill(pid, signal.SIGCONT)
            pool.close()
    pytest.fail("the helper was always ready before it could be stopped")


def test_a_killed_helper_falls_back_to_the_calling_thread_with_one_warning(
        material: Material, workers: VerifyWorkers, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=WORKER_LOG)
    trust = str(material.trust_store)
    wait_ready(workers)
    assert workers.call(verify_bytes, material.good.args(material.trust_store), trust_store_path=trust).trusted
    assert worker_warnings(caplog) == []
    pid = workers.pids()[0]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: gone(pid), "the helper to die")
    checked = workers.call(verify_bytes, material.good.args(material.trust_store), trust_store_path=trust)
    assert checked.trusted and checked == verify_bytes(*material.good.args(material.trust_store))
    warnings = worker_warnings(caplog)
    assert len(warnings) == 1 and "stopped answering" in warnings[0], warnings
    assert workers.pids() == []  # the dead helper was dropped
    # Later calls run here too, with the right verdict, and without another warning.
    tampered = workers.call(verify_bytes, material.tampered.args(material.trust_store), trust_store_path=trust)
    assert not tampered.trusted and error_ids(tampered)[0] == "signature.invalid"
    assert len(worker_warnings(caplog)) == 1


def test_a_call_that_fails_in_the_helper_runs_again_here_and_raises_as_here(
        material: Material, workers: VerifyWorkers, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=WORKER_LOG)
    wait_ready(workers)
    pid = workers.pids()[0]
    good = material.good
    broken = (good.raw, str(material.trust_store), good.device, "not hex", good.received)
    with pytest.raises(ValueError, match="non-hexadecimal"):
        workers.call(verify_bytes, broken, trust_store_path=str(material.trust_store))
    warnings = worker_warnings(caplog)
    assert len(warnings) == 1 and "verification failed in a helper process" in warnings[0], warnings
    # The helper survives a failed call and keeps answering.
    assert workers.pids() == [pid] and not gone(pid)
    assert workers.call(verify_bytes, good.args(material.trust_store),
                        trust_store_path=str(material.trust_store)).trusted


# --- the helper's life ---------------------------------------------------------------------------

def test_a_helper_exits_after_close(workers: VerifyWorkers) -> None:
    wait_ready(workers)
    pid = workers.pids()[0]
    process = workers._idle[0].process
    workers.close()
    assert process.returncode == 0  # close() waited for it: it exited cleanly, not killed
    assert gone(pid)
    assert workers.pids() == []


def test_a_helper_exits_when_only_the_socket_is_closed(workers: VerifyWorkers) -> None:
    wait_ready(workers)
    worker = workers._idle[0]
    worker.connection.close()  # no close() of the pool: only the collector's end of the socket
    wait_for(lambda: worker.process.poll() is not None, "the helper to exit")
    assert worker.process.returncode == 0


KILLED_PARENT = textwrap.dedent("""
    import sys, time
    from collector.verify_worker import VerifyWorkers
    pool = VerifyWorkers(1)
    deadline = time.monotonic() + 30
    while True:
        with pool._cond:
            pool._promote()
            if pool._idle:
                break
        if time.monotonic() > deadline:
            sys.exit("not ready")
        time.sleep(0.005)
    print(pool.pids()[0], flush=True)
    time.sleep(60)
""")


def test_a_helper_exits_when_the_collector_process_is_killed(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, (str(PROJECT_ROOT), os.environ.get("PYTHONPATH")))))
    parent = subprocess.Popen([sys.executable, "-c", KILLED_PARENT], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        assert line.strip().isdigit(), line
        helper = int(line)
        assert not gone(helper)
        parent.kill()  # SIGKILL: no atexit, no close(); the kernel closes its socket
        parent.wait()
        wait_for(lambda: gone(helper), "the orphaned helper to exit")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_sigint_does_not_stop_a_helper(material: Material, workers: VerifyWorkers,
                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=WORKER_LOG)
    wait_ready(workers)
    pid = workers.pids()[0]
    assert os.getsid(pid) == pid  # its own session: Ctrl-C on the terminal does not reach it
    assert ignored_signals(pid) & (1 << (signal.SIGINT - 1))
    os.kill(pid, signal.SIGINT)
    os.kill(pid, signal.SIGINT)
    checked = workers.call(verify_bytes, material.good.args(material.trust_store),
                           trust_store_path=str(material.trust_store))
    assert checked.trusted
    assert worker_warnings(caplog) == []  # answered by the helper, not a fallback
    assert workers.pids() == [pid] and proc_state(pid) not in (None, "Z", "X")


def test_a_helper_closed_before_it_is_ready_exits_quietly(capfd: pytest.CaptureFixture[str]) -> None:
    for _ in range(5):
        pool = VerifyWorkers(1)
        pid = pool.pids()[0]
        process = pool._starting[0].process
        try:
            os.kill(pid, signal.SIGSTOP)
            wait_for(lambda: proc_state(pid) == "T", "the helper to stop")
            with pool._cond:
                pool._promote()
                not_ready = len(pool._starting) == 1
            if not not_ready:
                continue
            pool._starting[0].connection.close()  # the collector goes away before "ready"
            os.kill(pid, signal.SIGCONT)
            wait_for(lambda: process.poll() is not None, "the helper to exit")
            err = capfd.readouterr().err
            assert "Traceback" not in err and "BrokenPipeError" not in err, err
            assert process.returncode == 0
            return
        finally:
            if process.poll() is None:
                os.kill(pid, signal.SIGCONT)
            pool.close()
    pytest.fail("the helper was always ready before it could be stopped")


def test_only_the_verification_functions_may_be_called(material: Material, workers: VerifyWorkers) -> None:
    def not_allowed(*args: object) -> Checked:
        raise AssertionError("must not run")

    def impostor(*args: object) -> Checked:
        raise AssertionError("must not run")

    impostor.__name__ = "verify_bytes"  # the right name is not enough
    for function in (len, verifying.freeze_trust_store, verifying.trust_store_for, not_allowed, os.system,
                     impostor):
        with pytest.raises(ValueError, match="verify_bytes or verify_many or verify_signed_output"):
            workers.call(function, (b"",), trust_store_path=None)
    # Refused before anything was taken: the pool still works, in the helper or here.
    wait_ready(workers)
    assert workers.call(verify_bytes, material.good.args(material.trust_store),
                        trust_store_path=str(material.trust_store)).trusted


# --- the trust store view per run --------------------------------------------------------------

def test_the_helper_takes_the_trust_store_as_of_each_new_run(tmp_path: Path, material: Material,
                                                             workers: VerifyWorkers,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=WORKER_LOG)
    trust = tmp_path / "truststore"
    TrustStore.open(trust, create=True)  # empty: nothing enrolled yet
    args = material.good.args(trust)

    def verdict() -> Checked:
        return workers.call(verify_bytes, args, trust_store_path=str(trust))

    wait_ready(workers)
    workers.begin_run()
    first = verdict()
    assert not first.trusted and error_ids(first)[0] == "trust.device_unknown", error_ids(first)

    enroll_root(trust, material.candidate, source="tofu")
    # Same run: the helper keeps the run's view (this thread, reading the store live, would
    # now say trusted; so this verdict also shows the helper answered).
    assert not verdict().trusted
    assert verify_bytes(*args).trusted is True
    workers.begin_run()
    assert verdict().trusted

    TrustStore.open(trust).remove(material.good.device)
    assert verdict().trusted  # still the run's view
    workers.begin_run()
    removed = verdict()
    assert not removed.trusted and error_ids(removed)[0] == "trust.device_unknown"
    assert worker_warnings(caplog) == []


# --- end to end ----------------------------------------------------------------------------------

def test_collector_run_with_one_helper_against_the_emulator(tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=WORKER_LOG)
    with Fleet(state_dir=tmp_path / "fleet", devices=3, provisioned=True, key_type="ecdsa-p256",
               seed=22, files=SMALL_FILES) as fleet:
        fleet.write_inventory(tmp_path / "inventory.yaml")
        devices = load_inventory(tmp_path / "inventory.yaml").devices
        trust = tmp_path / "truststore"
        for device in devices:
            enroll_root(trust, fetch_root(device), source="tofu")
        # The run's helper is this process's shared one; have it ready so that it verifies.
        pool = shared_workers(1)
        wait_ready(pool)
        pids = pool.pids()
        store = Store.open(tmp_path / "store")
        collector = Collector(store, trust_store_path=trust,
                              options=CollectOptions(concurrency=3, verify_workers=1))
        first = collector.run(devices)
        assert {o.device: (o.status, o.reason) for o in first.outcomes} == {
            d.name: ("trusted", None) for d in devices}
        assert first.exit_code == 0

        fleet.set_fault(devices[1].name, Fault.DATA_CHANGED)
        second = collector.run(devices)
    outcomes = {o.device: o for o in second.outcomes}
    assert (outcomes[devices[1].name].status, outcomes[devices[1].name].reason) == ("untrusted", "signature.invalid")
    assert outcomes[devices[0].name].status == outcomes[devices[2].name].status == "trusted"
    assert second.exit_code == 1
    # The same helper verified both runs and is kept for later ones; nothing fell back.
    assert shared_workers(1) is pool and pool.pids() == pids and not gone(pids[0])
    assert worker_warnings(caplog) == []
    # What the store recorded agrees.
    assert [h.trusted for h in store.history(devices[1].name)] in ([True, False], [False, True])


def test_collector_run_verifies_xe_signed_outputs_in_a_helper(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=WORKER_LOG)
    with Fleet(state_dir=tmp_path / "fleet", devices=2, platform="mixed", provisioned=True,
               key_type="ecdsa-p256", files=SMALL_FILES) as fleet:
        fleet.write_inventory(tmp_path / "inventory.yaml")
        devices = load_inventory(tmp_path / "inventory.yaml").devices
        trust = tmp_path / "truststore"
        trust_mixed_fleet(fleet, devices, trust)
        wait_ready(shared_workers(1))
        summary = Collector(Store.open(tmp_path / "store"), trust_store_path=trust,
                            options=CollectOptions(concurrency=2, verify_workers=1)).run(devices)
    assert {o.device: o.status for o in summary.outcomes} == {"xr-0001": "trusted", "xe-0002": "trusted"}, \
        [(o.device, o.reason, o.message) for o in summary.outcomes]
    assert worker_warnings(caplog) == []


def test_shared_workers_is_one_set_per_count_and_never_closes_one_in_use(material: Material) -> None:
    cores = len(os.sched_getaffinity(0))
    assert auto_worker_count() == (1 if cores >= 2 else 0)
    pool = shared_workers(1)
    assert shared_workers(1) is pool and pool.count == 1
    wait_ready(pool)
    old = pool.pids()
    bigger = shared_workers(2)  # another run of this process asks for two
    try:
        assert bigger is not pool and bigger.count == 2 and len(bigger.pids()) == 2
        assert pool.pids() == old and not any(gone(pid) for pid in old)  # still serving its run
        args = material.good.args(material.trust_store)
        assert pool.call(verify_bytes, args, trust_store_path=str(material.trust_store)).trusted
    finally:
        bigger.close()
        from collector import verify_worker

        verify_worker._SHARED.pop(2, None)  # leave the process as the other tests expect it
    assert shared_workers(1) is pool


def test_arguments_that_do_not_pickle_fail_the_call_and_leave_the_helper_usable(
        material: Material, workers: VerifyWorkers) -> None:
    wait_ready(workers)
    args = material.good.args(material.trust_store)
    with pytest.raises(Exception):  # pickle's error for a lambda: raised here, not a verdict
        workers.call(verify_bytes, (*args[:-1], lambda: None), trust_store_path=str(material.trust_store))
    assert workers.call(verify_bytes, args, trust_store_path=str(material.trust_store)).trusted


def test_how_many_helpers_a_run_gets(monkeypatch: pytest.MonkeyPatch) -> None:
    from collector import collect as collect_module

    monkeypatch.setattr(collect_module, "auto_worker_count", lambda: 1)  # as on a 2-core machine
    monkeypatch.setattr(collect_module, "has_shared_workers", lambda: False)  # a fresh process
    count = collect_module.helper_count
    small, large = collect_module.HELPER_MIN_DEVICES - 1, collect_module.HELPER_MIN_DEVICES
    assert count(CollectOptions(), small) == 0  # a small cron run: starting one costs more than it saves
    assert count(CollectOptions(), large) == 1
    assert count(CollectOptions(verify_workers=0), large) == 0
    assert count(CollectOptions(verify_workers=2), 1) == 2
    assert count(CollectOptions(verify=False, verify_workers=2), large) == 0
    monkeypatch.setattr(collect_module, "has_shared_workers", lambda: True)  # started by an earlier run
    assert count(CollectOptions(), small) == 1
    monkeypatch.setattr(collect_module, "auto_worker_count", lambda: 0)  # one core
    assert count(CollectOptions(), large) == 0


def test_a_verifier_in_the_working_directory_is_not_what_the_helper_imports(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """`python -c` would import ./verifier before the real one: a planted stand-in that trusts
    everything must not be what verifies (the helper runs with -P, and says what it imported)."""
    planted = tmp_path / "verifier"
    planted.mkdir()
    (planted / "__init__.py").write_text(textwrap.dedent("""
        class VerifierError(Exception): ...
        class Verdict:
            trusted = True
    """))
    (planted / "chain.py").write_text("def per_certificate(f):\n    return f\n")
    (planted / "policy.py").write_text("class Policy:\n    def __init__(self, **k): ...\n")
    monkeypatch.chdir(tmp_path)
    args = (b"not an envelope at all", None, "r1", "00" * 16, datetime.now(UTC))
    pool = VerifyWorkers(1)
    try:
        wait_ready(pool)
        with caplog.at_level(logging.WARNING):
            checked = pool.call(verify_bytes, args, trust_store_path=None)
        assert not checked.trusted and checked.refused  # the real verifier: no trust anchors
        assert worker_warnings(caplog) == []  # and it answered from the helper
    finally:
        pool.close()


def test_a_helper_that_stops_answering_is_killed_and_the_call_runs_here(
        material: Material, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from collector import verify_worker

    monkeypatch.setattr(verify_worker, "REPLY_TIMEOUT_S", 0.5)
    pool = VerifyWorkers(1)
    try:
        wait_ready(pool)
        pid = pool.pids()[0]
        os.kill(pid, signal.SIGSTOP)  # hung: alive, never answering
        with caplog.at_level(logging.WARNING):
            checked = pool.call(verify_bytes, material.good.args(material.trust_store),
                                trust_store_path=str(material.trust_store))
        assert checked.trusted  # verified here instead
        assert any("no answer within 0.5 s" in message for message in worker_warnings(caplog))
        wait_for(lambda: gone(pid), "the hung helper to be killed")
        assert pool.pids() == []
    finally:
        pool.close()


def test_a_helper_lost_in_one_run_is_started_again_at_the_next(material: Material) -> None:
    pool = VerifyWorkers(1)
    try:
        wait_ready(pool)
        first = pool.pids()[0]
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: gone(first), "the helper to die")
        args = material.good.args(material.trust_store)
        assert pool.call(verify_bytes, args, trust_store_path=str(material.trust_store)).trusted  # here
        assert pool.pids() == []
        pool.begin_run()  # the next run (an --interval loop)
        wait_ready(pool)
        assert len(pool.pids()) == 1 and pool.pids()[0] != first
        assert pool.call(verify_bytes, args, trust_store_path=str(material.trust_store)).trusted
    finally:
        pool.close()
