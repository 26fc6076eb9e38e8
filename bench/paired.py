"""`dossier verify` of the verify target's envelopes, this tree against another commit, timed in
alternating pairs of whole processes.

    python3 bench/paired.py [--base REF] [--jobs N] [--envelopes 5000] [--pairs 10]

For each pair, `dossier verify --json` of the same files (bench/targets.py's
`verify_target_envelopes`: 10 KB dossier, RSA-2048) runs once in REF's tree (exported with `git
archive`) and once in this one (uncommitted changes included), the order alternating from pair
to pair; each pair gives this tree's wall time and CPU time (the process and its children) over
REF's. On a shared machine the load moves between minutes, not between two runs a second
apart, so the ratios of pairs agree where single timings do not: the median and range of the
ratios is the answer. Start-up is included, as the target counts it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "verifier"))

from instructions import environment, export  # noqa: E402 - bench/instructions.py
from targets import run_measured, spread, verify_target_envelopes  # noqa: E402 - bench/targets.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD", help="the commit to compare with (default: HEAD)")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--envelopes", type=int, default=5000)
    parser.add_argument("--pairs", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dossier-bench-paired-"))
    try:
        trees = {"base": export(args.base, work / "base"), "this": ROOT}
        _, _, _, files, command = verify_target_envelopes(work, args.envelopes)
        command = [*command, "--jobs", str(args.jobs), *files]
        def timed(name: str, command: list[str]) -> tuple[float, float]:
            return run_measured(command, env=environment(trees[name]), cwd=trees[name])

        for name in trees:  # compile once, as an installation has its modules
            timed(name, command[: len(command) - len(files) + 2])
        walls, cpus, seconds = [], [], {"base": [], "this": []}
        for index in range(args.pairs):
            order = ("base", "this") if index % 2 == 0 else ("this", "base")
            got = {name: timed(name, command) for name in order}
            for name, (wall, _) in got.items():
                seconds[name].append(wall)
            walls.append(got["this"][0] / got["base"][0])
            cpus.append(got["this"][1] / got["base"][1])
        print(f"dossier verify --json --jobs {args.jobs} of {args.envelopes} envelopes, {args.pairs} pairs "
              f"(median, range)")
        print(f"  wall s: {args.base} {spread(seconds['base'])}, this tree {spread(seconds['this'])}")
        print(f"  this tree / {args.base}: wall {spread(walls)}, CPU {spread(cpus)}")
        print(f"  load average {os.getloadavg()[0]:.1f} (median wall {statistics.median(walls):.3f})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
