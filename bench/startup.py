"""Start-up of the `dossier` command, measured from outside against bare Python, side by side.

    python3 bench/startup.py [--rounds 15]

Each round runs, in a rotating order, as whole processes with compiled bytecode (as an
installed tool has it):

- reference: `python -c "import cryptography.x509, json"` (the least a verifier must import);
- `dossier --help`, `dossier verify --help`;
- `dossier verify --root R --nonce N --at T FILE` of one 10 KB RSA-2048 envelope.

Prints each one's wall time and CPU (user + system, from wait4), and the ratio of its wall time
to the reference's within the round. Targets (issue 17): verify of one envelope <= 2.5x,
`dossier --help` <= 1.5x. Ratios are medians over rounds, with their range.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from targets import ROOT, ENV, run_measured, spread  # bench/targets.py: one way to run a measured process

TARGETS = {"dossier --help": 1.5, "dossier verify FILE": 2.5}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    from cryptography.hazmat.primitives.serialization import Encoding
    from vbuilder import NOW, Device, dossier

    work = Path(tempfile.mkdtemp(prefix="dossier-bench-startup-"))
    try:
        device = Device("rsa2048", "rsa2048")
        envelope = work / "envelope.json"
        envelope.write_bytes(device.envelope(document=dossier(device.nonce.hex(), files=20)))
        root = work / "root.pem"
        root.write_bytes(device.root.public_bytes(Encoding.PEM))
        dossier_cmd = [sys.executable, "-m", "dossier_cli"]
        arms = {
            "python -c 'import cryptography.x509, json'": [sys.executable, "-c", "import cryptography.x509, json"],
            "dossier --help": dossier_cmd + ["--help"],
            "dossier verify --help": dossier_cmd + ["verify", "--help"],
            "dossier verify FILE": dossier_cmd + ["verify", "--root", str(root), "--nonce", device.nonce.hex(),
                                                  "--at", NOW.isoformat(), str(envelope)],
        }
        # Compile every module once, as an installation has them (and check each arm succeeds).
        subprocess.run([sys.executable, "-m", "compileall", "-q", "dossier_cli", "verifier", "collector",
                        "emulator", "schemas"], env=ENV, cwd=ROOT, check=True)
        for command in arms.values():
            run_measured(command)
        reference = next(iter(arms))
        walls = {name: [] for name in arms}
        cpus = {name: [] for name in arms}
        ratios = {name: [] for name in arms}
        names = list(arms)
        for round_index in range(args.rounds):
            shift = round_index % len(names)
            measured = {name: run_measured(arms[name]) for name in names[shift:] + names[:shift]}
            for name, (wall, cpu) in measured.items():
                walls[name].append(1000 * wall)
                cpus[name].append(1000 * cpu)
                ratios[name].append(wall / measured[reference][0])
        print(f"start-up, {args.rounds} rounds (median, range); load average {os.getloadavg()[0]:.1f}")
        print(f"  {'':<44} {'wall ms':>20} {'CPU ms':>20} {'wall / reference':>18}  target")
        for name in arms:
            target = f"<= {TARGETS[name]}" if name in TARGETS else ""
            print(f"  {name:<44} {spread(walls[name]):>20} {spread(cpus[name]):>20} {spread(ratios[name]):>18}  "
                  f"{target}")
        verdict = {name: statistics.median(ratios[name]) <= limit for name, limit in TARGETS.items()}
        print("  " + ", ".join(f"{name}: {'met' if ok else 'NOT met'}" for name, ok in verdict.items()))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
