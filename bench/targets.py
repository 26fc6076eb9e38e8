"""The speed targets of issue 16, as whole processes measured from outside, side by side in one run.

    python3 bench/targets.py collect [--sizes 200,1000] [--rounds 3]
    python3 bench/targets.py verify [--envelopes 5000] [--rounds 3]

collect: `dossier collect` (a subprocess: start-up, trust store, store, verification, all of
it) against a bare paramiko loop (a subprocess too: 16 threads, TCP_NODELAY, auto-added host
keys, one exec of the same dossier command with a fresh nonce, read to EOF), alternately on
the same fleet of emulated devices (in two emulator processes of their own). Prints each one's
CPU per poll (user + system of the whole process, from wait4) and wall time, and the ratios:
target CPU <= 1.5x the loop's, wall >= 0.8 of the loop's speed (loop wall / collect wall).
Then once per size, `Collector.run` in a process of its own that times its threads by role
with `time.thread_time`: storing and verifying (the store threads), bookkeeping (the run's own
loop), start-up (before the run), SSH (the rest: session and paramiko transport threads).

verify: `dossier verify --root R --nonce N --at T` over N envelope files (10 KB dossier,
RSA-2048, one device: its leaf recurs as a device's does) with 1 job and with `--jobs 2`,
against an in-process floor over the same files (read, `json.loads`, base64, signed bytes,
chain, signature, `json.loads` of the dossier with bare `cryptography`, `bench/verify.py`'s
`floor_once`). Target: floor wall / verify wall >= 0.8 with 1 job, >= 1.5 with 2 jobs.
Ratios are medians over rounds of the ratio within a round, with their range.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests" / "verifier"))

# As installed: modules compiled once (this machine's shell sets PYTHONDONTWRITEBYTECODE, which
# makes every start compile the whole tool again: ~0.8 s of CPU).
ENV = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}, "PYTHONPATH": str(ROOT),
       "PYTHONPYCACHEPREFIX": str(Path(tempfile.gettempdir()) / "dossier-bench-pycache")}


def run_measured(command: list[str], env: dict[str, str] = ENV, cwd: Path = ROOT) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and its children) of `command` run to its end
    (by default in this tree)."""
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: a full pipe would block it
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors, env=env, cwd=cwd)
        # wait4 reports the process's own CPU plus that of the children it waited for.
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            errors.seek(0)
            raise SystemExit(f"{command[:4]} exited {proc.returncode}: {errors.read()[-800:]!r}")
    return wall, usage.ru_utime + usage.ru_stime


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


# --- collect ----------------------------------------------------------------------------------


def floor_loop(inventory: Path, concurrency: int) -> None:
    """The bare paramiko loop over every device of `inventory` (run as its own process)."""
    import logging

    from collect import floor_poll  # bench/collect.py
    from collector.inventory import load_inventory

    logging.getLogger("paramiko").addHandler(logging.NullHandler())
    logging.getLogger("paramiko").propagate = False
    devices = load_inventory(inventory).devices
    with ThreadPoolExecutor(concurrency) as pool:
        sizes = list(pool.map(floor_poll, devices))
    if not all(sizes):
        raise SystemExit("a poll of the floor read nothing")


def profiled_collect(inventory: Path, store: Path, trust: Path, concurrency: int) -> None:
    """`Collector.run` with CPU per role timed per thread; prints one line of role=seconds."""
    import threading

    import collector.collect as collect_module
    from collector.inventory import load_inventory
    from collector.store import Store

    spent = {"store+verify": 0.0, "verify": 0.0}
    lock = threading.Lock()

    def timed(role: str, function):
        def wrapper(*args, **kwargs):
            start = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                with lock:
                    spent[role] += time.thread_time() - start
        return wrapper

    collect_module.Collector._finish_many = timed("store+verify", collect_module.Collector._finish_many)
    collect_module.verify_many = timed("verify", collect_module.verify_many)
    devices = load_inventory(inventory).devices
    opened = Store.open(store)
    collector = collect_module.Collector(opened, trust_store_path=trust,
                                         options=collect_module.CollectOptions(concurrency=concurrency))
    started, main_thread = time.process_time(), time.thread_time()
    summary = collector.run(devices)
    main_thread, during = time.thread_time() - main_thread, time.process_time() - started
    opened.close()
    if summary.counts["trusted"] != len(devices):
        raise SystemExit(f"profiled collect: {summary.counts}")
    # SSH: the session threads and paramiko's transport threads, i.e. what the run spent beyond
    # storing, verifying and the run's own loop (bookkeeping, in the calling thread).
    store_only = spent["store+verify"] - spent["verify"]
    print(f"start-up={time.process_time() - during} bookkeeping={main_thread} verify={spent['verify']} "
          f"store={store_only} ssh={during - main_thread - spent['store+verify']}")


def write_inventory(path: Path, inventories: list[Path], size: int) -> None:
    """One inventory of the first `size` devices, interleaved over the emulator processes, each
    device renamed after its process (every process names its devices xr-0001...)."""
    import yaml

    lists = [yaml.safe_load(p.read_text())["devices"] for p in inventories]
    merged = []
    for index, devices in enumerate(lists):
        for device in devices:
            merged.append({**device, "name": f"e{index}-{device['name']}"})
    merged.sort(key=lambda d: (d["name"].split("-", 1)[1], d["name"]))
    path.write_text(yaml.safe_dump({"devices": merged[:size]}))


def collect_target(args: argparse.Namespace) -> None:
    import logging

    from collect import start_emulators, stop_emulators  # bench/collect.py
    from collector.enroll import enroll_root, fetch_root
    from collector.inventory import load_inventory

    logging.getLogger("collector.enroll").setLevel(logging.ERROR)  # TOFU is the bench's premise
    sizes = sorted(int(s) for s in args.sizes.split(","))
    args.state_dir.mkdir(parents=True, exist_ok=True)
    procs, inventories = start_emulators(args.state_dir, max(sizes), 2, args.files)
    work = Path(tempfile.mkdtemp(prefix="dossier-bench-targets-"))
    try:
        base = None
        if args.base:
            from instructions import environment, export  # bench/instructions.py

            base = export(args.base, work / "base")
        trust = work / "truststore"
        write_inventory(work / "all.yaml", inventories, max(sizes))
        fleet = load_inventory(work / "all.yaml").devices
        with ThreadPoolExecutor(16) as pool:
            for candidate in pool.map(fetch_root, fleet):
                enroll_root(trust, candidate, source="tofu")
        print(f"{len(fleet)} devices in {len(procs)} emulator processes, enrolled; load {os.getloadavg()[0]:.1f}",
              flush=True)
        for size in sizes:
            inventory = work / f"inventory-{size}.yaml"
            write_inventory(inventory, inventories, size)
            store = work / f"store-{size}"
            floor_cmd = [sys.executable, str(ROOT / "bench" / "targets.py"), "floor-loop", str(inventory)]
            collect_cmd = [sys.executable, "-m", "dossier_cli", "collect", "--inventory", str(inventory),
                           "--store", str(store), "--trust-store", str(trust), "--retries", "0", "--no-progress"]
            arms = {"loop": (floor_cmd, ENV, ROOT), "collect": (collect_cmd, ENV, ROOT)}
            if base is not None:  # `dossier collect` of that commit's tree, on the same fleet and store
                arms[args.base] = (collect_cmd, environment(base), base)
            for extra in args.arm:  # e.g. "no-gc=--some-option"
                name, _, options = extra.partition("=")
                arms[name] = (collect_cmd + options.split(), ENV, ROOT)
            run_measured(collect_cmd)  # compile each tree's modules once, as an installation has them
            if base is not None:
                run_measured(*arms[args.base])
            cpu = {name: [] for name in arms}
            cpu_ratios = {name: [] for name in arms}
            wall_ratios = {name: [] for name in arms}
            rounds = args.rounds or max(3, min(5, 1000 // size))
            for round_index in range(rounds):
                names = list(arms)
                shift = round_index % len(names)
                measured = {name: run_measured(*arms[name]) for name in names[shift:] + names[:shift]}
                floor_wall, floor_s = measured["loop"]
                for name, (wall, spent) in measured.items():
                    cpu[name].append(1000 * spent / size)
                    cpu_ratios[name].append(spent / floor_s)
                    wall_ratios[name].append(floor_wall / wall)
            print(f"\n{size} devices, {rounds} rounds (median, range)")
            print(f"  {'':<10} {'CPU ms/poll':>18} {'CPU / loop CPU':>18} {'loop wall / wall':>18}")
            for name in arms:
                print(f"  {name:<10} {spread(cpu[name]):>18} {spread(cpu_ratios[name]):>18} "
                      f"{spread(wall_ratios[name]):>18}")
            print("  targets for collect: CPU / loop CPU <= 1.5, loop wall / wall >= 0.8")
            profile = subprocess.run([sys.executable, str(ROOT / "bench" / "targets.py"), "profiled-collect",
                                      str(inventory), str(store), str(trust)],
                                     capture_output=True, text=True, env=ENV, cwd=ROOT)
            if profile.returncode != 0:
                print(f"  profiled run failed: {profile.stderr[-1500:]}", flush=True)
                continue
            roles = {name: float(value) for name, value in (item.split("=") for item in profile.stdout.split())}
            print("  collect CPU ms per poll by role (one run of Collector.run in a process of its own, "
                  "threads timed):")
            for role in ("ssh", "store", "verify", "bookkeeping", "start-up"):
                print(f"    {role:<12} {1000 * roles[role] / size:6.2f}")
            print(f"  load average {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        stop_emulators(procs)
        shutil.rmtree(work, ignore_errors=True)


# --- verify -----------------------------------------------------------------------------------


def verify_target_envelopes(work: Path, count: int):
    """The verify target's input, written in `work`: an RSA-2048 device (tests/verifier/vbuilder),
    its root as `root.pem`, `count` copies of one envelope of a 10 KB dossier, and the
    `dossier verify --root --nonce --at --json` command for them (the files not included).
    Returns (device, envelope bytes, root path, file names, command); also bench/instructions.py's
    and bench/tricks.py's input."""
    from cryptography.hazmat.primitives.serialization import Encoding
    from vbuilder import NOW, Device, dossier

    device = Device("rsa2048", "rsa2048")
    raw = device.envelope(document=dossier(device.nonce.hex(), files=20))
    root = work / "root.pem"
    root.write_bytes(device.root.public_bytes(Encoding.PEM))
    files = []
    for index in range(count):
        path = work / f"envelope-{index:05d}.json"
        path.write_bytes(raw)
        files.append(str(path))
    command = [sys.executable, "-m", "dossier_cli", "verify", "--root", str(root), "--nonce", device.nonce.hex(),
               "--at", NOW.isoformat(), "--json"]
    return device, raw, root, files, command


def verify_target(args: argparse.Namespace) -> None:
    from vbuilder import NOW

    from verify import floor_once  # bench/verify.py

    work = Path(tempfile.mkdtemp(prefix="dossier-bench-verify-"))
    try:
        device, raw, root, files, base = verify_target_envelopes(work, args.envelopes)

        def floor() -> tuple[float, float]:
            start, cpu = time.perf_counter(), time.process_time()
            for name in files:
                with open(name, "rb") as handle:
                    floor_once(handle.read())
            return time.perf_counter() - start, time.process_time() - cpu

        run_measured(base + files[:2])  # compile the modules once, as an installation has them
        one, two, cpu_one = [], [], []
        floor_walls, one_walls, two_walls = [], [], []
        for _ in range(args.rounds):
            floor_wall, floor_cpu = floor()
            one_wall, one_cpu = run_measured(base + files)
            two_wall, _ = run_measured(base + ["--jobs", "2"] + files)
            cpu_one.append(floor_cpu / one_cpu)
            floor_walls.append(floor_wall)
            one_walls.append(one_wall)
            two_walls.append(two_wall)
            one.append(floor_wall / one_wall)
            two.append(floor_wall / two_wall)
        print(f"dossier verify of {args.envelopes} envelopes of {len(raw)} bytes (10 KB dossier, RSA-2048), "
              f"{args.rounds} rounds (median, range)")
        print(f"  wall s: floor (in-process) {spread(floor_walls)}, 1 job {spread(one_walls)}, "
              f"2 jobs {spread(two_walls)}")
        print(f"  floor / 1 job:  {spread(one)}   (target >= 0.8)")
        print(f"  floor / 2 jobs: {spread(two)}   (target >= 1.5)")
        print(f"  floor CPU / 1 job CPU: {spread(cpu_one)}   (the same without other tenants' wait)")
        gap(files, root, device, NOW, base)
        print(f"  load average {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def gap(files: list[str], root: Path, device, at, base: list[str]) -> None:
    """Where `dossier verify`'s CPU goes beyond the floor: start-up (the command on one file
    against Python importing only `cryptography.x509` and `json`), and per envelope in this
    process: the floor, `verify_envelope` on the bytes read, and the command's per-file work
    (`verifier.cli._verify_one`: read the file, look for metadata, verify, the verdict as JSON);
    and the dossier's schema check alone (in `verify_envelope`; the floor has no counterpart)."""
    import json

    from cryptography import x509

    from verifier import Policy, verify_envelope
    from verifier import cli as verifier_cli
    from verify import floor_once  # bench/verify.py

    sample = files[:1000]
    roots = [x509.load_pem_x509_certificate(root.read_bytes())]
    verifier_cli._init_worker(verifier_cli._Settings(None, [roots[0].public_bytes(
        __import__("cryptography.hazmat.primitives.serialization", fromlist=["Encoding"]).Encoding.DER)],
        None, device.nonce, at.isoformat(), Policy()))

    def floor() -> None:
        for name in sample:
            with open(name, "rb") as handle:
                floor_once(handle.read())

    def library() -> None:
        for name in sample:
            with open(name, "rb") as handle:
                verify_envelope(handle.read(), roots=roots, expected_nonce=device.nonce, at=at)

    from verifier.verify import _dossier_is_valid

    dossier = verify_envelope(Path(sample[0]).read_bytes(), roots=roots, expected_nonce=device.nonce, at=at).dossier
    is_valid = _dossier_is_valid()

    def schema_check() -> None:  # the part of verify_envelope the floor has no counterpart for
        for _ in sample:
            is_valid(dossier)

    def command_per_file() -> None:
        for name in sample:
            verifier_cli._verify_json(name)

    steps = {"floor": floor, "verify_envelope": library, "of which the dossier's schema check": schema_check,
             "per-file work": command_per_file}
    spent = {name: [] for name in steps}
    for _ in range(3):
        for name, function in steps.items():
            start = time.process_time()
            function()
            spent[name].append(1e6 * (time.process_time() - start) / len(sample))
    starts = {"dossier verify, 1 file": [], "python -c 'import cryptography.x509, json'": []}
    for _ in range(5):
        starts["dossier verify, 1 file"].append(run_measured(base + files[:1])[1])
        starts["python -c 'import cryptography.x509, json'"].append(
            run_measured([sys.executable, "-c", "import cryptography.x509, json"])[1])
    print("  where the CPU goes (median of rounds):")
    for name, values in spent.items():
        print(f"    {name:<44} {statistics.median(values):8.0f} µs per envelope")
    for name, values in starts.items():
        print(f"    start-up: {name:<34} {1000 * statistics.median(values):8.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    collect = commands.add_parser("collect")
    collect.add_argument("--sizes", default="200,1000")
    collect.add_argument("--rounds", type=int, default=None, help="default: 5 at 200 devices, 3 at 1,000")
    collect.add_argument("--arm", action="append", default=[], metavar="NAME=OPTIONS",
                         help="also run `dossier collect OPTIONS` as NAME (an A/B arm)")
    collect.add_argument("--base", metavar="REF", help="also run `dossier collect` of commit REF (exported with "
                         "git archive) as an arm named REF, side by side with this tree")
    collect.add_argument("--files", type=int, default=50, help="file-system inventory size per device")
    collect.add_argument("--state-dir", type=Path, default=Path(tempfile.gettempdir()) / "dossier-bench-collect")
    verify = commands.add_parser("verify")
    verify.add_argument("--envelopes", type=int, default=5000)
    verify.add_argument("--rounds", type=int, default=3)
    floor = commands.add_parser("floor-loop")
    floor.add_argument("inventory", type=Path)
    floor.add_argument("--concurrency", type=int, default=16)
    profiled = commands.add_parser("profiled-collect")
    for name in ("inventory", "store", "trust"):
        profiled.add_argument(name, type=Path)
    args = parser.parse_args()
    if args.command == "collect":
        collect_target(args)
    elif args.command == "verify":
        verify_target(args)
    elif args.command == "floor-loop":
        floor_loop(args.inventory, args.concurrency)
    else:
        profiled_collect(args.inventory, args.store, args.trust, 16)


if __name__ == "__main__":
    main()
