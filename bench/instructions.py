"""Instruction counts of `dossier verify`, this tree against another commit, with callgrind.

    python3 bench/instructions.py [--base REF] [--jobs N] [--small 20] [--large 320]

On a machine shared with other tenants, CPU and wall time of the same run move by a third from
one minute to the next; the instructions a process executes do not. For each tree (this one,
and REF exported with `git archive`), `dossier verify --json` of the verify target's envelope
(10 KB dossier, RSA-2048) runs under `valgrind --tool=callgrind` on `--small` and on `--large`
files; the difference gives the instructions per envelope, the rest is start-up. With `--jobs
N` only the parent is counted (its workers are forked, and each reports its own count).

Instruction counts rank two versions of the same work; they do not compare unlike work:
valgrind's CPU model sends OpenSSL down slower generic code (no SHA or AVX extensions), so the
crypto weighs more here than in a timed run, and the kernel's part (system calls) is not
counted. A change that counts fewer instructions is then confirmed by `bench/targets.py verify`.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "verifier"))


def environment(tree: Path) -> dict[str, str]:
    """`tree` on the path, its modules compiled once (as an installation has them)."""
    cache = Path(tempfile.gettempdir()) / f"dossier-bench-instructions-{abs(hash(str(tree)))}"
    return {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
            "PYTHONPATH": str(tree), "PYTHONPYCACHEPREFIX": str(cache)}


def export(ref: str, into: Path) -> Path:
    """The tree of commit `ref` written into the new folder `into` (git archive)."""
    into.mkdir()
    archive = subprocess.run(["git", "archive", ref], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def instructions(tree: Path, command: list[str]) -> int:
    """Instructions the process running `command` in `tree` executed (its forked children not)."""
    run = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *command],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=environment(tree),
                         cwd=tree)
    first = re.search(r"==(\d+)==", run.stderr)
    counted = first and re.search(rf"=={first.group(1)}== Collected : (\d+)", run.stderr)
    if run.returncode not in (0, 1) or not counted:
        raise SystemExit(f"{command[:4]} in {tree}: exit {run.returncode}: {run.stderr[-800:]}")
    return int(counted.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD", help="the commit to compare with (default: HEAD)")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--small", type=int, default=20)
    parser.add_argument("--large", type=int, default=320)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    from targets import verify_target_envelopes  # bench/targets.py: the verify target's input

    work = Path(tempfile.mkdtemp(prefix="dossier-bench-instructions-"))
    try:
        base = export(args.base, work / "base")
        _, raw, _, files, command = verify_target_envelopes(work, args.large)
        command += ["--jobs", str(args.jobs)]
        trees = {f"{args.base}": base, "this tree": ROOT}
        for tree in trees.values():  # compile once
            subprocess.run(command + files[:2], stdout=subprocess.DEVNULL, env=environment(tree), cwd=tree, check=True)
        runs = [(name, size) for name in trees for size in (args.small, args.large)]
        with ThreadPoolExecutor(2) as pool:
            counted = dict(zip(runs, pool.map(lambda run: instructions(trees[run[0]], command + files[:run[1]]), runs)))
        who = "the parent of " if args.jobs > 1 else ""
        print(f"instructions of {who}`dossier verify --json --jobs {args.jobs}` ({len(raw)}-byte envelopes)")
        per = {}
        for name in trees:
            per[name] = (counted[(name, args.large)] - counted[(name, args.small)]) / (args.large - args.small)
            start = counted[(name, args.small)] - args.small * per[name]
            print(f"  {name:<12} start-up {start / 1e6:8.1f} M   per envelope {per[name] / 1e3:8.1f} k")
        print(f"  this tree / {args.base} per envelope: {per['this tree'] / per[args.base]:.3f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
