"""Benchmark: envelopes verified per second, beside a floor measured in the same run.

    python3 bench/verify.py [--seconds 1.5] [--rounds 3]

For 10 KB and 2 MB dossiers, RSA-2048 and ECDSA P-256 devices:

- floor: the same envelope parsed (json.loads of the envelope and of its dossier), hashed
  (SHA-256), its signature checked and its leaf checked against the root
  (`verify_directly_issued_by`) with bare `cryptography` calls: what any verifier must do.
- verifier, 1 job: `verify_envelope` with the default (strict) policy, in this process.
- verifier, 2 jobs: the same in two worker processes (as `dossier verify --jobs 2`).
- no-schema: one job with Policy(validate_dossier=False), to show what the dossier schema
  check (step 6) costs on top of strict parsing, signature and chain.

Targets (issue 3): verifier at >= 0.8 of the floor on one job; 2 jobs >= 1.7x one job.
The one-job comparison calls floor and verifier in turn and counts CPU time, so both see the
same machine state; the two-job figure is wall-clock against one job's wall-clock, both in the
worker processes, alternating in short slices (`interleaved_scaling`), printed beside the floor's
own two-process scaling measured in the same slices (it shows how much of the second core other
processes left free). The machine is
shared and noisy: ratios, not absolute numbers, are the result, each the median over rounds of
the ratio measured within a round (the rates shown are each round's best).
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import hashlib
import json
import os
import statistics
import struct
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "verifier"))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa  # noqa: E402

from vbuilder import NOW, Device, dossier  # noqa: E402  (the test PKI/envelope builder)
from verifier import Policy, verify_envelope  # noqa: E402

SIZES = {"10 KB": 20, "2 MB": 5000}  # file-inventory entries giving those envelope sizes
KEYS = {"RSA-2048": ("rsa2048", "rsa2048"), "ECDSA P-256": ("p256", "p256")}


def floor_once(raw: bytes) -> None:
    """What any verifier must do, with bare library calls and no strictness."""
    body = json.loads(raw)["signed-envelope"]
    nonce = base64.b64decode(body["nonce"])
    signature = base64.b64decode(body["signature"])
    ders = [base64.b64decode(item["value"]) for item in body["certificates"]["certificate"]]
    root, leaf = x509.load_der_x509_certificate(ders[0]), x509.load_der_x509_certificate(ders[-1])
    message = nonce + struct.pack(">I", body["signature_version"]) + body["data"].encode() + b"".join(ders)
    hashlib.sha256(raw).digest()
    key = leaf.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    else:
        key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    leaf.verify_directly_issued_by(root)
    json.loads(body["data"])


_job: dict = {}


def _init(raw: bytes, root_der: bytes, nonce: bytes) -> None:
    _job.update(raw=raw, root=x509.load_der_x509_certificate(root_der), nonce=nonce)


_NO_SCHEMA = Policy(validate_dossier=False)


def ours_once(policy: Policy | None = None) -> None:
    verdict = verify_envelope(_job["raw"], roots=[_job["root"]], expected_nonce=_job["nonce"], at=NOW,
                              policy=policy)
    if not verdict.trusted:
        raise SystemExit(f"benchmark envelope not trusted: {verdict.ids()}")


def _count(count: int) -> int:
    for _ in range(count):
        ours_once()
    return count


def _count_floor(count: int) -> int:
    for _ in range(count):
        floor_once(_job["raw"])
    return count


def paired_cpu_rates(functions, seconds: float) -> list[float]:
    """Calls per CPU-second of each function, calling them in turn so that all see the same
    machine state: on a shared, loaded machine this keeps their ratio honest."""
    spent = [0.0] * len(functions)
    calls = 0
    deadline = time.perf_counter() + seconds * len(functions)
    while time.perf_counter() < deadline or calls == 0:
        for index, function in enumerate(functions):
            start = time.process_time()
            function()
            spent[index] += time.process_time() - start
        calls += 1
    return [calls / max(total, 1e-9) for total in spent]


def rate(function, seconds: float) -> float:
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        function()
        done += 1
    return done / elapsed


def pool_rate(pool: concurrent.futures.ProcessPoolExecutor, jobs: int, per_job: int, work=_count) -> float:
    start = time.perf_counter()
    total = sum(pool.map(work, [per_job] * jobs))
    return total / (time.perf_counter() - start)


def interleaved_scaling(pool: concurrent.futures.ProcessPoolExecutor, per_job: dict,
                        slices: int = 4) -> tuple[dict, dict, dict]:
    """2-job against 1-job throughput of each work function (`per_job`: function -> envelopes per
    job), measured in `slices` short alternations of 1 job and 2 jobs, every function in turn,
    the envelopes and wall time of each mode summed. The other tenants slow this machine's cores
    by up to ~40% for seconds at a time (per-call CPU time of the same verification ranges
    36-63 ms at 2 MB); alternating finely lets both modes, and the verifier and the floor, share
    the same slowdowns, where one long run of each would each catch a different one."""
    done = {work: [0, 0] for work in per_job}
    wall = {work: [0.0, 0.0] for work in per_job}
    for _ in range(slices):
        for work, count in per_job.items():
            for mode, jobs in enumerate((1, 2)):
                start = time.perf_counter()
                done[work][mode] += sum(pool.map(work, [count] * jobs))
                wall[work][mode] += time.perf_counter() - start
    one = {work: done[work][0] / wall[work][0] for work in per_job}
    two = {work: done[work][1] / wall[work][1] for work in per_job}
    return one, two, {work: two[work] / one[work] for work in per_job}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="time per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; best of each kept")
    args = parser.parse_args()
    from cryptography.hazmat.primitives.serialization import Encoding

    rows = []
    for key_name, (root_kind, leaf_kind) in KEYS.items():
        device = Device(root_kind, leaf_kind)
        for size_name, files in SIZES.items():
            raw = device.envelope(document=dossier(device.nonce.hex(), files=files))
            _init(raw, device.root.public_bytes(Encoding.DER), device.nonce)
            ours_once()  # warm caches, as a long-running verifier would be
            best = {"floor": 0.0, "one": 0.0, "noschema": 0.0, "wall1": 0.0, "two": 0.0, "scaling": 0.0,
                    "floor_scaling": 0.0}
            with concurrent.futures.ProcessPoolExecutor(
                2, initializer=_init, initargs=(raw, device.root.public_bytes(Encoding.DER), device.nonce)
            ) as pool:
                pool_rate(pool, 2, 1)  # start and warm both workers
                scalings: list[float] = []
                floor_scalings: list[float] = []
                one_ratios: list[float] = []
                noschema_ratios: list[float] = []
                for _ in range(args.rounds):
                    floor, one, noschema = paired_cpu_rates(
                        [lambda: floor_once(raw), ours_once, lambda: ours_once(_NO_SCHEMA)], args.seconds)
                    best["floor"], best["one"] = max(best["floor"], floor), max(best["one"], one)
                    best["noschema"] = max(best["noschema"], noschema)
                    one_ratios.append(one / floor)
                    noschema_ratios.append(noschema / floor)
                    # 1 and 2 jobs both in the worker processes, alternating in short slices:
                    # the same work per job, so 2 jobs take as long as 1 when the second core is
                    # free; the floor's own 2-process scaling, interleaved with ours, shows what
                    # the machine allowed meanwhile.
                    slices = 4
                    per_job = {_count: max(1, int(one * args.seconds / 2 / slices)),
                               _count_floor: max(1, int(floor * args.seconds / 2 / slices))}
                    wall1, two, scaling = interleaved_scaling(pool, per_job, slices)
                    best["wall1"], best["two"] = max(best["wall1"], wall1[_count]), max(best["two"], two[_count])
                    scalings.append(scaling[_count])
                    floor_scalings.append(scaling[_count_floor])
                best["scaling"] = statistics.median(scalings)
                best["vs_floor"] = statistics.median(one_ratios)
                best["noschema_vs_floor"] = statistics.median(noschema_ratios)
                best["floor_scaling"] = statistics.median(floor_scalings)
            rows.append((key_name, size_name, len(raw), best))
            print(f"  measured {key_name} {size_name}", file=sys.stderr)
    print("1 job: calls per CPU-second (best round), floor and verifier called in turn; 'vs floor' is the median")
    print("over rounds of the two measured together in each round (robust to load);")
    print("1 job wall / 2 jobs wall: envelopes per second in worker processes; 2j/1j: median over rounds of")
    print("2 jobs against 1 job, alternating in short slices; 'floor 2j/1j': the same for the bare floor,")
    print("interleaved with ours.")
    print(f"{'key':<12} {'dossier':<8} {'bytes':>9} {'floor/s':>9} {'1 job/s':>9} {'vs floor':>9} "
          f"{'no-schema':>9} {'vs floor':>9} {'1 job wall':>10} {'2 jobs wall':>11} {'2j/1j':>6} {'floor 2j/1j':>11}")
    for key_name, size_name, size, best in rows:
        print(f"{key_name:<12} {size_name:<8} {size:>9} {best['floor']:>9.1f} {best['one']:>9.1f} "
              f"{best['vs_floor']:>9.2f} {best['noschema']:>9.1f} {best['noschema_vs_floor']:>9.2f} "
              f"{best['wall1']:>10.1f} {best['two']:>11.1f} {best['scaling']:>6.2f} {best['floor_scaling']:>11.2f}")
    print("targets: 1 job >= 0.80 of floor; 2 jobs >= 1.70 x 1 job ('floor 2j/1j' shows what the machine's free")
    print("cores allowed in the same rounds)")
    print(f"cpus: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f} (other processes compete for the cores)")


if __name__ == "__main__":
    main()
