"""Benchmark: requests per second of `dossier serve` over a store of 1,000 devices with 10
collections each, beside a floor measured in the same run, and the service's memory.

    python3 bench/serve.py [--devices 1000] [--collections 10] [--rounds 5] [--seconds 1] [--store-dir DIR]
                           [--new-collection]

The store is built through the store interface (`Store.save_many`, each output verified as the
collector verifies it, a signed record for each in the record log): real envelopes of ECDSA P-256
devices (the verifier tests' builder, tests/verifier/vbuilder.py), each with its own nonce, one
in fifty newest ones tampered after signing. `--store-dir` keeps it for the next run.

Then `dossier serve` runs as its own process on loopback and one keep-alive client asks, in
`--rounds` rounds of `--seconds` each:

- fleet page: GET /api/v1/fleet (100 rows, the default page);
- fleet, all: GET /api/v1/fleet?limit=1000;
- device: GET /api/v1/devices/{name} for devices in turn;
- the dashboard: GET /dashboard (the fleet page) and GET /dashboard/devices/{name} in turn;
- floor: the same fleet page's bytes from a bare Starlette app on the same uvicorn: what any
  Python ASGI service pays per request to answer those bytes.

Printed side by side: requests/s of each and their ratio to the floor (medians over the rounds,
each ratio within its round), the time from start to the first fleet answer (every device's
newest output verified again, then kept per output), and the service's RSS after start, after
the first fleet answer and at the end. With `--new-collection` the service serves a copy of the
store, and after the rounds one device gets one more (trusted) collection: the time of the next
GET /dashboard is what fleet consensus costs when one device's outputs change.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "verifier"))

import httpx  # noqa: E402

from collector.store import parse_iso  # noqa: E402

from vbuilder import NOW, Device, dossier  # noqa: E402  (the test PKI/envelope builder)

#: File-inventory entries per dossier: a ~10 KB envelope, as a small router's increment is.
FILES = 20
#: One newest collection in this many is tampered after signing (an untrusted device).
TAMPER_EVERY = 50
BATCH = 200


def build_store(store_dir: Path, trust_dir: Path, key_path: Path, devices: int, collections: int) -> float:
    """Write the store through `Store.save_many`; returns the seconds it took."""
    import secrets

    from collector.records import RecordLog, load_or_create_key
    from collector.store import Store
    from collector.verifying import freeze_trust_store, stored_verdict, verify_polled
    from verifier import TrustStore

    started = time.perf_counter()
    pki = Device()
    trust = TrustStore.open(trust_dir, create=True)
    names = [f"r{index:05d}" for index in range(devices)]
    for name in names:
        trust.add_root(name, pki.root, source="bench")
    freeze_trust_store(str(trust_dir))
    store = Store.open(store_dir)
    records = RecordLog(store.root, load_or_create_key(key_path))
    records.start(store)
    entries = []

    def flush() -> None:
        def check(stored: list) -> list:
            return [stored_verdict(verify_polled(entry["output"], "xr-dossier", str(trust_dir), entry["device"],
                                                 bytes.fromhex(entry["nonce_hex"]), entry["received"]))
                    if record is not None else None for entry, record in zip(entries, stored, strict=True)]

        saved = store.save_many(entries, check=check)
        records.append([record for record in saved if not isinstance(record, Exception)])
        entries.clear()

    for collection in range(collections):
        received = NOW - dt.timedelta(hours=collections - collection)
        for position, name in enumerate(names):
            nonce = secrets.token_bytes(16)
            raw = pki.envelope(document=dossier(nonce.hex(), files=FILES), nonce=nonce)
            if collection == collections - 1 and position % TAMPER_EVERY == TAMPER_EVERY - 1:
                raw = raw.replace(b"Version 7.3.2", b"Version 7.3.3", 1)
            entries.append({"device": name, "host": "192.0.2.1", "nonce_hex": nonce.hex(), "output": raw,
                            "started": received, "received": received, "duration_s": 0.2,
                            "extra": {"kind": "xr-dossier", "platform": "iosxr"}})
            if len(entries) >= BATCH:
                flush()
    if entries:
        flush()
    store.sync()
    store.close()
    return time.perf_counter() - started


def add_collection(store_dir: Path, trust_dir: Path, key_path: Path, name: str) -> str:
    """Store one more collection of `name` (its newest output's bytes and nonce again, received
    a minute later: trusted, so it changes what fleet consensus compares); returns its time."""
    from collector.records import RecordLog, load_or_create_key
    from collector.store import Store
    from collector.verifying import stored_verdict, verify_polled

    store = Store.open(store_dir)
    records = RecordLog(store.root, load_or_create_key(key_path))
    records.start(store)
    newest = store.history(name, limit=1)[0]
    received = parse_iso(newest.received) + dt.timedelta(minutes=1)
    entry = {"device": name, "host": "192.0.2.1", "nonce_hex": newest.nonce, "output": store.envelope_bytes(newest),
             "started": received, "received": received, "duration_s": 0.2,
             "extra": {"kind": "xr-dossier", "platform": "iosxr"}}
    saved = store.save_many([entry], check=lambda stored: [stored_verdict(verify_polled(
        entry["output"], "xr-dossier", str(trust_dir), name, bytes.fromhex(entry["nonce_hex"]), received))])
    records.append([record for record in saved if not isinstance(record, Exception)])
    store.sync()
    store.close()
    return received.isoformat()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Until the server answers (it is a separate process: its log says when it is up, but a
    connection refused until then is the simple readiness test across processes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            httpx.get(url, timeout=5)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"no answer from {url} within {timeout} s")


def rate(client: httpx.Client, paths: list[str], seconds: float) -> float:
    """Requests per second answered 200 (or 304 for none: no If-None-Match is sent)."""
    count, position = 0, 0
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        response = client.get(paths[position % len(paths)])
        if response.status_code != 200:
            raise RuntimeError(f"{paths[position % len(paths)]}: {response.status_code} {response.text[:200]}")
        count += 1
        position += 1
    return count / (time.perf_counter() - started)


FLOOR_APP = textwrap.dedent("""
    import sys
    from pathlib import Path
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route
    body = Path(sys.argv[1]).read_bytes()
    async def fleet(request):
        return Response(body, media_type="application/json")
    app = Starlette(routes=[Route("/api/v1/fleet", fleet)])
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
""")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--collections", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=1.0, help="per measurement and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--store-dir", type=Path, default=None, help="build the store here once, reuse it after")
    parser.add_argument("--new-collection", action="store_true",
                        help="serve a copy of the store and, after the rounds, time the dashboard's fleet page "
                             "after one device's new collection")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    base = args.store_dir or work
    store_dir, trust_dir, key_path = base / "store", base / "trust", base / "collector-key.pem"
    if not (store_dir / "index.sqlite").exists():
        built = build_store(store_dir, trust_dir, key_path, args.devices, args.collections)
        print(f"store: {args.devices} devices x {args.collections} collections built in {built:.1f} s")
    if args.new_collection:  # the new collection goes into a copy: the kept store stays as built
        shutil.copytree(base, work / "copy", ignore=shutil.ignore_patterns("copy"))
        store_dir, trust_dir, key_path = work / "copy" / "store", work / "copy" / "trust", work / "copy" / key_path.name
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    port, floor_port = free_port(), free_port()
    started = time.perf_counter()
    service = subprocess.Popen([sys.executable, "-m", "dossier_cli", "serve", "--store", str(store_dir),
                                "--trust-store", str(trust_dir), "--tokens", str(work / "tokens.json"),
                                "--collector-key", str(key_path), "--listen", f"127.0.0.1:{port}"], env=env)
    floor = None
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url + "/openapi.json", service)
        rss_start = rss_kib(service.pid)
        with httpx.Client(base_url=url, timeout=600) as client:
            page = client.get("/api/v1/fleet")
            cold = time.perf_counter() - started
            page.raise_for_status()
            rss_cold = rss_kib(service.pid)
            body = page.json()
            (work / "fleet.json").write_bytes(page.content)
            floor = subprocess.Popen([sys.executable, "-c", FLOOR_APP, str(work / "fleet.json"), str(floor_port)],
                                     env=env)
            wait_ready(f"http://127.0.0.1:{floor_port}/api/v1/fleet", floor)
            names = [f"r{index:05d}" for index in range(0, args.devices, max(1, args.devices // 200))]
            started = time.perf_counter()
            first_page = client.get("/dashboard")
            cold_page = time.perf_counter() - started
            measures = {"fleet page": ["/api/v1/fleet"], "fleet all": ["/api/v1/fleet?limit=1000"],
                        "device api": [f"/api/v1/devices/{name}" for name in names],
                        "dashboard": ["/dashboard"],
                        "device page": [f"/dashboard/devices/{name}" for name in names]}
            rates: dict[str, list[float]] = {name: [] for name in ["floor", *measures]}
            ratios: dict[str, list[float]] = {name: [] for name in measures}
            with httpx.Client(base_url=f"http://127.0.0.1:{floor_port}", timeout=60) as floor_client:
                # Rounds of short slices, floor first in each: the machine is shared and noisy,
                # so each ratio is taken within a round and the median of the rounds is shown.
                for _ in range(args.rounds):
                    floor_rate = rate(floor_client, ["/api/v1/fleet"], args.seconds)
                    rates["floor"].append(floor_rate)
                    for name, paths in measures.items():
                        rates[name].append(rate(client, paths, args.seconds))
                        ratios[name].append(rates[name][-1] / floor_rate)
            after_new = None
            if args.new_collection:
                changed = "r00001"
                received = add_collection(store_dir, trust_dir, key_path, changed)
                deadline = time.monotonic() + 60
                while parse_iso(client.get(f"/api/v1/devices/{changed}").json()["device"]["last_collection"]) \
                        != parse_iso(received):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the service did not show {changed}'s new collection within 60 s")
                    time.sleep(0.1)  # until the service's rows show it (the index changed)
                started = time.perf_counter()
                client.get("/dashboard").raise_for_status()
                after_new = time.perf_counter() - started
        rss_end = rss_kib(service.pid)
    finally:
        for process in (service, floor):
            if process is not None:
                process.terminate()
                process.wait(30)
        if args.new_collection:
            shutil.rmtree(work / "copy")

    print(f"fleet: {body['total']} devices {json.dumps(body['counts'], sort_keys=True)}; from start to the first "
          f"fleet answer {cold:.1f} s (each device's newest output verified again, once)")
    labels = {"floor": "floor: fleet page bytes, bare Starlette", "fleet page": "GET /api/v1/fleet (100 rows)",
              "fleet all": "GET /api/v1/fleet?limit=1000", "device api": "GET /api/v1/devices/{name}",
              "dashboard": "GET /dashboard (fleet page, HTML)",
              "device page": "GET /dashboard/devices/{name} (HTML)"}
    print(f"first dashboard page: {cold_page:.1f} s (status {first_page.status_code}; fleet consensus computed "
          "once, then kept while the store is unchanged)")
    if after_new is not None:
        print(f"dashboard after one device's new collection: {after_new:.2f} s (fleet consensus compared again)")
    print(f"{'measure (median of ' + str(args.rounds) + ' rounds)':<46}{'req/s':>10}{'/ floor':>10}")
    for name, values in rates.items():
        ratio = statistics.median(ratios[name]) if name in ratios else 1.0
        print(f"{labels[name]:<46}{statistics.median(values):>10.1f}{ratio:>10.2f}")
    print(f"service RSS: {rss_start / 1024:.0f} MiB at start, {rss_cold / 1024:.0f} MiB after the first fleet "
          f"answer, {rss_end / 1024:.0f} MiB at the end")

if __name__ == "__main__":
    main()
