"""Emulator fleet start-up time and memory per idle device, measured side by side in one run.

    python3 bench/emulator_fleet.py [--devices 1000] [--provisioned]

Prints, for N devices in one process: seconds to start (cold: new state; warm: the same state
again), resident memory per idle device, threads, and the cost of one SSH poll against the
fleet beside a single-device fleet measured in the same run (the ratio shows what fleet size
costs a poll). Numbers are for this machine; compare ratios, not absolute values.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "emulator"))

from emu_ssh import run  # noqa: E402

from emulator.fleet import Fleet  # noqa: E402


def rss_kib() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def poll_seconds(fleet: Fleet, polls: int) -> float:
    rng = random.Random(1)
    started = time.perf_counter()
    for _ in range(polls):
        device = rng.choice(fleet.devices)
        run(device, "show platform security integrity dossier include packages nonce 1580 | utility sign nonce 1580")
    return (time.perf_counter() - started) / polls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--provisioned", action="store_true", help="also generate keys and certificates (ECDSA P-256)")
    parser.add_argument("--polls", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        baseline_rss = rss_kib()
        baseline_threads = threading.active_count()
        started = time.perf_counter()
        fleet = Fleet(state_dir=Path(tmp) / "big", devices=args.devices, provisioned=args.provisioned, files=300)
        fleet.start()
        cold = time.perf_counter() - started
        idle_rss = rss_kib()
        threads = threading.active_count() - baseline_threads
        fleet.stop()
        started = time.perf_counter()
        fleet = Fleet(state_dir=Path(tmp) / "big", devices=args.devices, provisioned=args.provisioned, files=300)
        fleet.start()
        warm = time.perf_counter() - started
        with Fleet(state_dir=Path(tmp) / "one", devices=1, provisioned=True, files=300) as single:
            if not args.provisioned:  # poll the first 20 devices of the large fleet, provisioned now
                for entry in fleet.devices[:20]:
                    entry.device.provision("ecdsa-p256")
                fleet.devices[:] = fleet.devices[:20]
            run(single.devices[0], "show version")
            one = poll_seconds(single, args.polls)
            many = poll_seconds(fleet, args.polls)
        fleet.stop()
    per_device = (idle_rss - baseline_rss) / args.devices
    print(f"devices                      : {args.devices} ({'provisioned' if args.provisioned else 'not provisioned'})")
    print(f"start-up, cold (new state)   : {cold:.2f} s  ({cold / args.devices * 1000:.2f} ms/device)")
    print(f"start-up, warm (same state)  : {warm:.2f} s  ({warm / args.devices * 1000:.2f} ms/device)")
    print(f"memory per idle device       : {per_device:.1f} KiB RSS ({(idle_rss - baseline_rss) / 1024:.1f} MiB total)")
    print(f"threads while idle           : {threads} (one accept thread for the whole fleet)")
    print(f"signed poll, 1-device fleet  : {one * 1000:.1f} ms")
    print(f"signed poll, large fleet     : {many * 1000:.1f} ms  (ratio {many / one:.2f}; 1.0 = fleet size costs nothing)")


if __name__ == "__main__":
    main()
