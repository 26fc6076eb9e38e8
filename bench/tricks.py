"""Paired A/B rounds for the verifier's speed tricks: each variant against the current code.

    python3 bench/tricks.py [--rounds 15] [--seconds 0.4]

On the `dossier verify` target's envelope (10 KB dossier, RSA-2048), `verify_envelope` with:
  * current: the code as it is;
  * hooked-json: no colon count (the dossier read by `json` with the duplicate-key hook on
    every object, no orjson), the schema check (jsonschema-rs) after reading;
  * fastjsonschema: the schema check by `fastjsonschema` (if installed) instead of
    jsonschema-rs, the colon count kept;
  * jsonschema: the same with `jsonschema`'s `is_valid`;
  * no-cert-caches: the per-certificate memos (`chain.per_certificate`) and the verified-chain
    cache off (emptied before every call).
Each round calls every variant in turn for `--seconds` of CPU each, in a rotated order; the
result is each variant's CPU per envelope over the current code's, median and quartiles of the
per-round ratios (the machine is shared and noisy). A trick earns its place when removing it
costs at least 5% on the target.

It also times the store's writes (`Store.save_many` of batches of 16 envelopes, as the
collector stores them) as they are, without O_TMPFILE (named temporary files), and without
syncfs (a fsync per file), and the store's dirty marker (`Store.mark_dirty` + `mark_clean`), per run, beside
a plain file written in its place; and `dossier verify --json`'s per-file work with the
verdict's line written by `json`'s encoder (current) and by orjson.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "verifier"))

from vbuilder import NOW, Device, dossier  # noqa: E402

import schemas  # noqa: E402
import verifier.chain as chain_module  # noqa: E402
import verifier.verify as verify_module  # noqa: E402
from verifier import verify_envelope  # noqa: E402


def variants() -> dict[str, dict]:
    """Name -> the verify module attributes to patch in for it."""
    verify_module._dossier_is_valid()  # built before fastjsonschema sees the schema
    loads_strict = verify_module.loads_strict
    current = {"_dossier_is_valid": verify_module._dossier_is_valid, "loads_strict": loads_strict}

    def hooked(text: str, **options: object) -> object:
        return loads_strict(text, **{**options, "vouch": None})

    found = {"current": current,
             "hooked-json": {**current, "loads_strict": hooked}}
    try:
        import fastjsonschema

        check = fastjsonschema.compile(copy.deepcopy(schemas.load("dossier")))  # it edits what it is given

        def fast_valid(value: object) -> bool:
            try:
                check(value)
            except fastjsonschema.JsonSchemaException:
                return False
            return True

        found["fastjsonschema"] = {**current, "_dossier_is_valid": lambda: fast_valid}
    except ImportError:
        print("fastjsonschema not installed: its variant is left out", file=sys.stderr)
    plain = verify_module._dossier_validator().is_valid
    found["jsonschema"] = {**current, "_dossier_is_valid": lambda: plain}
    found["no-cert-caches"] = {**current, "_uncached": True}
    return found


_MEMOS = {(verify_module, "_certificate_json"), (verify_module, "_not_after"), (verify_module, "fingerprint"),
          (chain_module, "fingerprint"), (verify_module, "is_weak_hash"), (chain_module, "is_weak_hash")}
_CACHED = {(module, name): getattr(module, name) for module, name in _MEMOS}


def set_certificate_caches(on: bool) -> None:
    """The per-certificate memos as they are, or their undecorated functions; the chain cache
    emptied when off."""
    for (module, name), memoized in _CACHED.items():
        setattr(module, name, memoized if on else memoized.__wrapped__)
    if not on:
        chain_module._cache.clear()


def cpu_per_call(function, seconds: float) -> float:
    calls, start = 0, time.process_time()
    while (spent := time.process_time() - start) < seconds or calls == 0:
        function()
        calls += 1
    return spent / calls


def json_lines(rounds: int) -> None:
    """`dossier verify --json`'s per-file work (`verifier.cli._verify_json`: read, verify, the
    verdict's line) on 500 files, with the line written by `json`'s encoder (current) and by
    orjson (a candidate: it measured under the 5% bar), alternated in slices, CPU per file."""
    import json

    import shutil

    from cryptography.hazmat.primitives.serialization import Encoding

    from targets import verify_target_envelopes  # bench/targets.py: the verify target's input
    from verifier import Policy
    from verifier import cli as verifier_cli

    work = Path(tempfile.mkdtemp(prefix="dossier-bench-lines-"))
    device, _, _, files, _ = verify_target_envelopes(work, 500)
    verifier_cli._init_worker(verifier_cli._Settings(None, [device.root.public_bytes(Encoding.DER)], None,
                                                     device.nonce, NOW.isoformat(), Policy()))
    import orjson

    def orjson_line(result: dict) -> str:  # the candidate: orjson, json for what it would write unescaped
        line = orjson.dumps(result, option=orjson.OPT_SORT_KEYS)
        return line.decode() if line.isascii() and b"\x7f" not in line else escaped(result)

    escaped = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode
    writers = {"json encoder": verifier_cli._json_line, "orjson line": orjson_line}
    spent = {name: [] for name in writers}
    for round_index in range(rounds):
        names = list(writers)[round_index % 2:] + list(writers)[:round_index % 2]
        for name in names:
            verifier_cli._json_line = writers[name]
            start = time.process_time()
            for path in files:
                verifier_cli._verify_json(path)
            spent[name].append((time.process_time() - start) / len(files))
    verifier_cli._json_line = writers["json encoder"]
    ratios = [b / a for a, b in zip(spent["orjson line"], spent["json encoder"])]
    low, _, high = statistics.quantiles(ratios, n=4)
    print(f"dossier verify --json per file, {rounds} rounds: orjson line "
          f"{1e6 * statistics.median(spent['orjson line']):.0f} µs, json encoder "
          f"{1e6 * statistics.median(spent['json encoder']):.0f} µs; json encoder (current) / orjson line "
          f"{statistics.median(ratios):.3f} ({low:.3f}-{high:.3f})")
    shutil.rmtree(work)


def dirty_marker(rounds: int) -> None:
    from collector.store import DIRTY_MARKER, Store, write_file_atomically

    with tempfile.TemporaryDirectory(prefix="dossier-bench-marker-") as folder:
        store = Store.open(Path(folder) / "store")

        def current() -> None:
            store.mark_dirty()
            store.mark_clean()

        def plain() -> None:
            write_file_atomically(store.root / DIRTY_MARKER, b"a collection run is writing\n", replace=True)
            (store.root / DIRTY_MARKER).unlink()

        times = {"current": [], "plain file": []}
        for _ in range(rounds):
            for name, function in (("current", current), ("plain file", plain)):
                times[name].append(cpu_per_call(function, 0.05))
        store.close()
    for name, values in times.items():
        print(f"dirty marker, {name:<10}: {1000 * statistics.median(values):.3f} ms CPU per run (median)")


def store_writes(rounds: int, envelope: bytes) -> None:
    import collector.storage.durable as store_module  # where the write path lives
    from collector.store import Store

    from datetime import UTC, datetime

    def entries(count: int) -> list[dict]:
        now = datetime.now(UTC)
        return [{"device": f"xr-{n % 50:04d}", "host": "127.0.0.1", "nonce_hex": os.urandom(16).hex(),
                 "output": envelope, "started": now, "received": now, "duration_s": 0.01,
                 "extra": {"command": "show ..."}} for n in range(count)]

    tmpfile, syncfs = store_module._O_TMPFILE, store_module._syncfs
    variants = {"current": (tmpfile, syncfs), "no O_TMPFILE": (None, syncfs),
                "no syncfs": (tmpfile, lambda: None)}
    spent = {name: [] for name in variants}
    with tempfile.TemporaryDirectory(prefix="dossier-bench-store-") as folder:
        stores = {name: Store.open(Path(folder) / name.replace(" ", "-")) for name in variants}
        for _ in range(rounds):
            for name, (flag, sync) in variants.items():
                store_module._O_TMPFILE, store_module._syncfs = flag, sync
                batch = entries(16)
                start = time.process_time()
                for _ in range(4):
                    stores[name].save_many(batch[:], index=False)
                    batch = entries(16)
                spent[name].append((time.process_time() - start) / 64)
        store_module._O_TMPFILE, store_module._syncfs = tmpfile, syncfs
        for opened in stores.values():
            opened.close()
    for name, values in spent.items():
        ratios = [value / base for value, base in zip(values, spent["current"])]
        print(f"store writes, {name:<13}: {1000 * statistics.median(values):.3f} ms CPU per envelope "
              f"(median), {statistics.median(ratios):.2f} x current")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--seconds", type=float, default=0.4)
    args = parser.parse_args()
    device = Device("rsa2048", "rsa2048")
    raw = device.envelope(document=dossier(device.nonce.hex(), files=20))
    chosen = variants()

    def run(patch: dict) -> None:
        set_certificate_caches(not patch.get("_uncached"))
        for name, value in patch.items():
            if not name.startswith("_uncached"):
                setattr(verify_module, name, value)
        verdict = verify_envelope(raw, roots=[device.root], expected_nonce=device.nonce, at=NOW)
        if not verdict.trusted:
            raise SystemExit(f"not trusted: {verdict.ids()}")

    for patch in chosen.values():
        run(patch)  # warm every variant's caches
    names = list(chosen)
    ratios = {name: [] for name in names}
    costs = {name: [] for name in names}
    for round_index in range(args.rounds):
        shift = round_index % len(names)
        spent = {name: cpu_per_call(lambda: run(chosen[name]), args.seconds)
                 for name in names[shift:] + names[:shift]}
        for name in names:
            ratios[name].append(spent[name] / spent["current"])
            costs[name].append(spent[name])
    run(chosen["current"])
    print(f"verify_envelope, {len(raw)}-byte envelope (10 KB dossier, RSA-2048), {args.rounds} rounds")
    print(f"{'variant':<16} {'µs CPU/envelope':>16} {'vs current':>11} {'quartiles':>12}")
    for name in names:
        low, _, high = statistics.quantiles(ratios[name], n=4)
        print(f"{name:<16} {1e6 * statistics.median(costs[name]):>16.0f} {statistics.median(ratios[name]):>11.3f} "
              f"{low:>5.3f}-{high:.3f}")
    json_lines(max(5, args.rounds))
    store_writes(max(5, args.rounds // 3), raw)
    dirty_marker(max(5, args.rounds // 3))
    print(f"cpus: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
