"""Benchmark TPM attestation collection beside the SSH dossier poll, in one run.

    python3 bench/tpm.py                      # a fleet of 100, 3 rounds
    python3 bench/tpm.py --devices 100 --rounds 5 --concurrency 16

One emulator process serves the fleet with its NETCONF agents on (`dossier emulator serve
--netconf`); each round polls every device with each variant, side by side, through
`Collector.run` as `dossier collect` runs it (strict host keys, deadlines, byte-exact store,
metadata, index, record log, verification against the trust store):
  * dossier: the signed IOS XR dossier over SSH (`evidence: [dossier]`);
  * tpm: TPM attestation over NETCONF with ncclient (`evidence: [tpm]`: certificate, quote,
    boot log, IMA log; four stored outputs, each verified);
  * both: the two in one poll (`evidence: [dossier, tpm]`).
It prints devices per second (each variant's best round), this process's CPU milliseconds per
device, the emulator's, and the ratio to the dossier poll (the median over rounds of the
per-round ratios, with their range: the spread this shared machine gives).
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from collector.collect import CollectOptions, Collector  # noqa: E402
from collector.enroll import enroll_attestation_key, enroll_root, fetch_attestation_keys, fetch_root  # noqa: E402
from collector.inventory import Device, load_inventory  # noqa: E402
from collector.store import Store  # noqa: E402
from emulator.tpm.authority import load_authority  # noqa: E402
from verifier import TrustStore  # noqa: E402

VARIANTS = {"dossier": ("dossier",), "tpm": ("tpm",), "both": ("dossier", "tpm")}


def start_emulator(state: Path, devices: int, files: int) -> tuple[subprocess.Popen[str], Path]:
    inventory = state / "inventory.yaml"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dossier_cli", "emulator", "serve", "--devices", str(devices), "--netconf",
         "--state-dir", str(state / "emulator"), "--inventory-out", str(inventory), "--provisioned",
         "--files", str(files), "--seed", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == "ready":
            return proc, inventory
    raise SystemExit("the emulator exited before it was ready")


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def emulator_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, clock ticks (100 Hz)


def main() -> None:
    import logging

    logging.getLogger("collector.enroll").setLevel(logging.ERROR)  # one TOFU warning per device otherwise
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--files", type=int, default=50, help="file-system inventory size per device")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-tpm-"))
    proc, inventory_path = start_emulator(work, args.devices, args.files)
    try:
        devices = list(load_inventory(inventory_path).devices)
        trust_path = work / "trust"
        trust = TrustStore.open(trust_path, create=True)
        tpm_root = load_authority(work / "emulator").root
        for device in devices:
            enroll_root(trust_path, fetch_root(device), source="tofu")
            trust.add_root(device.name, tpm_root, source="bench")
            for candidate in fetch_attestation_keys(device, trust_store_path=trust_path):
                enroll_attestation_key(trust_path, candidate, source="tofu")
        rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
        cpu: dict[str, list[float]] = {name: [] for name in VARIANTS}
        device_cpu: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for round_number in range(args.rounds):
            for name, evidence in VARIANTS.items():
                fleet = [dataclasses.replace(d, evidence=evidence) for d in devices]
                collector = Collector(Store.open(work / f"store-{name}"), trust_store_path=trust_path,
                                      options=CollectOptions(concurrency=args.concurrency, retries=0))
                before, emulator_before, begin = cpu_seconds(resource.RUSAGE_SELF), emulator_cpu(proc.pid), time.perf_counter()
                summary = collector.run(fleet)
                elapsed = time.perf_counter() - begin
                trusted = sum(1 for o in summary.outcomes if o.status == "trusted")
                if trusted != len(fleet):
                    bad = next(o for o in summary.outcomes if o.status != "trusted")
                    raise SystemExit(f"{name}: {len(fleet) - trusted} devices not trusted, e.g. {bad.device}: {bad.message}")
                rates[name].append(len(fleet) / elapsed)
                cpu[name].append((cpu_seconds(resource.RUSAGE_SELF) - before) * 1000 / len(fleet))
                device_cpu[name].append((emulator_cpu(proc.pid) - emulator_before) * 1000 / len(fleet))
            print(f"round {round_number + 1}: " + ", ".join(f"{n} {rates[n][-1]:.1f}/s" for n in VARIANTS), flush=True)
        print(f"\n{args.devices} devices, concurrency {args.concurrency}, {args.rounds} rounds, one emulator process")
        print(f"{'variant':<8} {'devices/s':>10} {'collector ms/dev':>17} {'emulator ms/dev':>16} {'vs dossier':>11} {'range':>12}")
        for name in VARIANTS:
            ratios = [mine / base for mine, base in zip(rates[name], rates["dossier"], strict=True)]
            print(f"{name:<8} {max(rates[name]):>10.1f} {statistics.median(cpu[name]):>17.1f} "
                  f"{statistics.median(device_cpu[name]):>16.1f} {statistics.median(ratios):>11.2f} "
                  f"{min(ratios):>5.2f}-{max(ratios):.2f}")
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
