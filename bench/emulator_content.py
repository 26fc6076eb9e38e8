"""How fast does an emulated device build its data dossier, against the floor of `json.dumps`?

For each file count, builds the full dossier (every selector, file-system inventory with a day
of 15-minute increments) and prints, side by side in one run:

- cold: the first build on a fresh device (generates the package file universe and digests),
- warm: the best of `--repeat` later builds (what each poll of a running device costs),
- floor: the best of `--repeat` `json.dumps` of the very same data as Python objects (what any
  JSON-emitting device must pay at least), and warm / floor.

    python3 bench/emulator_content.py [--sizes 3000,20000,50000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from emulator.dossier import ITEMS, build_dossier  # noqa: E402
from emulator.facts import make_facts  # noqa: E402
from emulator.fsinv import SNAPSHOT_UNIT_SECONDS, device_inventories  # noqa: E402

EPOCH = 1_790_000_000.0
BLOCKS = 96  # one day of snapshots at snapshot-interval 1


def _best(repeat: int, action) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = action()
        best = min(best, time.perf_counter() - started)
    return best, result


def measure(files: int, repeat: int) -> dict[str, float]:
    """Cold, warm and floor timings (seconds) and output size (bytes) for one file count."""
    facts = make_facts(f"bench-{files}", 1, files=files)
    fsinv = device_inventories(facts, now=EPOCH)
    now = EPOCH + BLOCKS * SNAPSHOT_UNIT_SECONDS

    def build() -> str:
        return build_dossier(facts, fsinv, ITEMS, nonce_text="1580", fs_options=None, now=now)

    cold, text = _best(1, build)
    warm, text = _best(repeat, build)
    data = json.loads(text)
    floor, _ = _best(repeat, lambda: json.dumps(data))
    return {"files": files, "bytes": len(text.encode()), "cold": cold, "warm": warm, "floor": floor}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="3000,20000,50000", help="file counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="runs per warm/floor measurement (best kept)")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"dossier with every selector, {BLOCKS} incremental blocks; best of {args.repeat}")
    print(f"{'files':>8} {'bytes':>12} {'cold s':>8} {'warm s':>8} {'floor s':>8} {'warm/floor':>10} {'MB/s warm':>10}")
    for files in sizes:
        row = measure(files, args.repeat)
        print(
            f"{row['files']:>8} {row['bytes']:>12} {row['cold']:>8.3f} {row['warm']:>8.3f} "
            f"{row['floor']:>8.3f} {row['warm'] / row['floor']:>10.2f} {row['bytes'] / row['warm'] / 1e6:>10.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
