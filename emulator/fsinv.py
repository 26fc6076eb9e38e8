"""File-system inventory of one node: a full snapshot (block 0), then incremental snapshots.

A node's files are a pure function of its device (hostname, seed), its node name and its
package set, so nothing per file is kept in memory between dossiers:

- *base files* (block 0): a few hundred device-owned files that change over time (logs,
  configuration, `/harddisk:`), then the files of every installed package
  (`/opt/cisco/XR/packages/<pkg>/...`, `/pkg/bin/...`) and of the base OS (`/etc/...`). The
  package part is shared between devices with the same packages (an LRU cache), and identical
  package files have identical digests on every device, as on real routers.
- *incremental blocks* n >= 1: what changed since block n-1 -- a few logs rewritten, a file
  created or rotated away, a permission change, and every `tamper_file` due in that block --
  generated from (device, node, n) and kept as a short list of records per block.

Block n is taken at `epoch + n * snapshot_interval * 15 min` of the device clock (the caller
passes `now`; interval changes start a new segment). Persistence (`to_dict`) stores only the
parameters, the interval segments, the tamper log and the block count; `from_dict` replays the
blocks and gives byte-identical output.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from json.encoder import encode_basestring_ascii  # what json.dumps uses: identical escaping
from typing import TYPE_CHECKING, Any

from emulator.facts import ContentError

if TYPE_CHECKING:
    from emulator.facts import DeviceFacts

__all__ = [
    "DIGEST_ALGORITHMS",
    "FilesystemInventory",
    "FsInventoryError",
    "MAX_BLOCKS",
    "MAX_SNAPSHOT_INTERVAL",
    "MIN_SNAPSHOT_INTERVAL",
    "SNAPSHOT_UNIT_SECONDS",
    "device_inventories",
]

# The seed: "snapshot-interval is the time interval in 15-minute blocks. The interval ranges 1-96."
SNAPSHOT_UNIT_SECONDS = 900
MIN_SNAPSHOT_INTERVAL = 1
MAX_SNAPSHOT_INTERVAL = 96
# Device-owned files that churn between snapshots; bounded so churn stays a small working set.
MUTABLE_FILES_MAX = 256
# Share of the base snapshot that is base-OS files not owned by any package.
BASE_OS_SHARE = 0.06
# Per-block churn (chances per block): what a quiet production router does in 15 minutes.
CHURN_MODIFIED = (1, 3)  # contents-modified logs/configs per block (min, max)
CHURN_CREATE_P = 0.35
CHURN_DELETE_P = 0.25
CHURN_META_P = 0.2
# Blocks one node may hold: bounds memory (a few records per block) and the time an advance
# can take when a test clock runs far ahead (100,000 blocks = 2.8 years at 15 minutes).
MAX_BLOCKS = 100_000
# Package universes kept built at once (each is ~100 bytes per file); devices with the same
# packages and file count share one.
UNIVERSE_CACHE_SIZE = 16
FSINV_FORMAT = 1

DIGEST_ALGORITHMS: dict[str, Callable[[bytes], Any]] = {
    "SHA256": hashlib.sha256,
    "SHA512": hashlib.sha512,
}

MODE_FILE = 0o100644
MODE_EXEC = 0o100755
MODE_PRIVATE = 0o100600

_WORDS = (
    "mgr", "agent", "ea", "ma", "client", "server", "util", "ctrl", "db", "cfg", "oper", "stats",
    "proxy", "helper", "show", "debug", "api", "evm", "edm", "sysdb", "bag", "trace", "policy",
    "lib", "infra", "proc", "notify", "sync", "ha", "checkpoint", "nsr", "fib", "adj", "intf",
    "ifmgr", "platform", "driver", "hal", "sdk", "pd", "pi", "ipc", "lwm", "gsp", "xos", "yang",
)
# (directory under the package, name pattern, mode)
_PACKAGE_LAYOUT = (
    ("rp/bin", "{stem}", MODE_EXEC),
    ("rp/lib", "lib{stem}.so", MODE_EXEC),
    ("rp/lib", "lib{stem}.so", MODE_EXEC),
    ("rp/etc", "{stem}.cfg", MODE_FILE),
    ("rp/schema", "{stem}.schema", MODE_FILE),
    ("rp/startup", "{stem}.startup", MODE_FILE),
    ("rp/etc/compat", "{stem}.bag", MODE_FILE),
    ("lc/bin", "{stem}", MODE_EXEC),
)
# The boot image also populates /pkg (the active-software view).
_BOOT_LAYOUT = (
    ("/pkg/bin", "{stem}", MODE_EXEC),
    ("/pkg/lib", "lib{stem}.so", MODE_EXEC),
    ("/pkg/etc", "{stem}.cfg", MODE_FILE),
)
_BASE_OS_LAYOUT = (
    ("/etc", "{stem}.conf", MODE_FILE),
    ("/etc/init.d", "{stem}", MODE_EXEC),
    ("/usr/bin", "{stem}", MODE_EXEC),
    ("/usr/lib64", "lib{stem}.so", MODE_EXEC),
    ("/lib/modules/4.8.28-WR9.0.0.26_cgl/kernel/drivers", "{stem}.ko", MODE_FILE),
)
# Device-owned files that churn: index j gives one path, no list kept.
_MUTABLE_LAYOUT = (
    "/var/log/iosxr/{word}_{j}.log",
    "/harddisk:/config_backup_{j}.cfg",
    "/misc/config/{word}_{j}.cfg",
    "/harddisk:/tracelogs/{word}_{j}.trace",
    "/misc/scratch/{word}_{j}.txt",
    "/etc/{word}_{j}.db",
)
# Files a router creates between snapshots (unique per block number).
_CREATED_LAYOUT = (
    "/harddisk:/showtech/showtech-{word}-{n:06d}.tgz",
    "/var/log/iosxr/filesysinv/fsinv.{n:06d}.log",
    "/misc/scratch/core/{word}.{n:06d}.core.gz",
    "/harddisk:/{word}_archive_{n:06d}.cfg",
)

# A file record, in the order the dossier prints its members:
# (name, uid, gid, inode, size, mode, atime, mtime, ctime, digest-value, change-kind,
#  package-kind, package-name)
Record = tuple[str, int, int, int, int, int, float, float, float, str, str, str, str]
_NAME, _UID, _GID, _INODE, _SIZE, _MODE, _ATIME, _MTIME, _CTIME, _DIGEST, _KIND, _PKIND, _PNAME = range(13)

_FILE_JSON = (
    '{"name": %s, "meta": {"uid": %d, "gid": %d, "inode": %d, "size": %d, "mode": %d, '
    '"atime": %r, "mtime": %r, "ctime": %r}, "digest": {"algorithm": %s, "digest-value": "%s"}, '
    '"change-kind": "%s", "package-kind": "%s", "package-name": %s}'
)


class FsInventoryError(ContentError):
    """A file-system inventory request the node cannot serve (bad block range, unknown file)."""


# --- the package universe: shared between devices -----------------------------------------------


@dataclass
class _Universe:
    """Package and base-OS files for one package set: paths plus compact per-file columns."""

    paths: list[str]
    owner: array  # index into `packages`, or -1 for base-OS files
    modes: array
    sizes: array
    packages: tuple[str, ...]
    _index: dict[str, int] | None = None
    _digests: dict[str, list[str]] | None = None

    def digests(self, algorithm: str) -> list[str]:
        """Digest of every file (package files hash the same on every device): built once.

        Same input text as `FilesystemInventory._digest("rpm", package, path)`.
        """
        if self._digests is None:
            self._digests = {}
        if algorithm not in self._digests:
            hash_function = DIGEST_ALGORITHMS[algorithm]
            b64encode = base64.b64encode
            owners = ["base-os"] + [f"rpm|{p}" for p in self.packages]  # owner -1 -> base-os
            self._digests[algorithm] = [
                b64encode(hash_function(f"{owners[pkg + 1]}|{path}".encode()).digest()).decode("ascii")
                for path, pkg in zip(self.paths, self.owner)
            ]
        return self._digests[algorithm]

    def index_of(self, path: str) -> int | None:
        if self._index is None:
            self._index = {p: i for i, p in enumerate(self.paths)}
        return self._index.get(path)


@lru_cache(maxsize=UNIVERSE_CACHE_SIZE)
def _universe(packages: tuple[str, ...], count: int) -> _Universe:
    rng = random.Random("fsinv-universe|" + "|".join(packages) + f"|{count}")
    uniform = rng.random  # indexing by uniform() is cheaper than rng.choice in this loop
    lognormal = rng.lognormvariate
    words, n_words = _WORDS, len(_WORDS)
    paths: list[str] = []
    owner = array("i")
    modes = array("I")
    sizes = array("I")
    used: set[str] = set()

    def add(directory: str, pattern: str, prefix: str, pkg: int, mode: int) -> None:
        stem = f"{prefix}_{words[int(uniform() * n_words)]}_{words[int(uniform() * n_words)]}"
        path = f"{directory}/{pattern.format(stem=stem)}"
        if path in used:
            suffix = 2
            while f"{path}.{suffix}" in used:
                suffix += 1
            path = f"{path}.{suffix}"
        used.add(path)
        paths.append(path)
        owner.append(pkg)
        modes.append(mode)
        sizes.append(int(lognormal(9.5, 1.6)) % 50_000_000)

    base_os = int(count * BASE_OS_SHARE) if packages else count
    for _ in range(base_os):
        directory, pattern, mode = _BASE_OS_LAYOUT[int(uniform() * len(_BASE_OS_LAYOUT))]
        add(directory, pattern, "wr", -1, mode)

    remaining = count - base_os
    if packages and remaining > 0:
        # The boot image carries most of the system; optional packages a handful of files each.
        weights = [12.0] + [rng.uniform(0.3, 3.0) for _ in packages[1:]]
        total = sum(weights)
        shares = [int(remaining * w / total) for w in weights]
        shares[0] += remaining - sum(shares)
        for pkg_index, (full_name, share) in enumerate(zip(packages, shares)):
            pkg_dir = full_name.rsplit(".", 1)[0]  # drop ".x86_64"
            component = pkg_dir.split("-", 1)[-1].rsplit("-", 2)[0].replace("-", "_")
            package_root = f"/opt/cisco/XR/packages/{pkg_dir}"
            for _ in range(share):
                if pkg_index == 0 and uniform() < 0.3:
                    directory, pattern, mode = _BOOT_LAYOUT[int(uniform() * len(_BOOT_LAYOUT))]
                else:
                    sub, pattern, mode = _PACKAGE_LAYOUT[int(uniform() * len(_PACKAGE_LAYOUT))]
                    directory = f"{package_root}/{sub}"
                add(directory, pattern, component, pkg_index, mode)
    return _Universe(paths, owner, modes, sizes, packages)


def _mutable_path(j: int) -> str:
    return _MUTABLE_LAYOUT[j % len(_MUTABLE_LAYOUT)].format(word=_WORDS[j % len(_WORDS)], j=j)


# --- one node's inventory ---------------------------------------------------------------------------


class FilesystemInventory:
    """File-system inventory snapshots of one node of one device.

    Block 0 (the full snapshot) is taken at `epoch`; block n at the n-th interval after it.
    Call `advance_to(now)` with the device clock to take every snapshot that is due.
    """

    def __init__(
        self,
        *,
        device_key: str,
        node: str,
        packages: Sequence[str],
        files: int,
        epoch: float,
        snapshot_interval: int = 1,
        digest_algorithm: str = "SHA256",
    ) -> None:
        _check_interval(snapshot_interval)
        if digest_algorithm not in DIGEST_ALGORITHMS:
            raise FsInventoryError(
                f"% Invalid digest algorithm {digest_algorithm!r}: expected one of "
                f"{', '.join(DIGEST_ALGORITHMS)}"
            )
        if files < 1:
            raise FsInventoryError(f"% File count must be at least 1: found {files}")
        self.device_key = device_key
        self.node = node
        self.packages = tuple(packages)
        self.files = files
        self.epoch = float(epoch)
        self.digest_algorithm = digest_algorithm
        self._hash = DIGEST_ALGORITHMS[digest_algorithm]
        self._algorithm_json = encode_basestring_ascii(digest_algorithm)
        self._node_key = f"{device_key}|{node}".encode()
        self._mutable = min(MUTABLE_FILES_MAX, max(1, files // 10))
        # Per-device constants: where inode numbers start, when packages were installed.
        seed_hash = hashlib.sha256(b"device|" + self._node_key).digest()
        self._inode_base = 10_000 + int.from_bytes(seed_hash[:3], "big")
        self._install_time = round(self.epoch - 86_400 * (30 + seed_hash[3] % 300), 6)
        # (first block number, its snap time, interval) -- a new one per interval change.
        self._segments: list[tuple[int, float, int]] = [(0, self.epoch, snapshot_interval)]
        self._tampers: list[tuple[str, int]] = []  # (path, block it shows up in), in order
        self._tampers_due: dict[int, list[str]] = {}  # the same log by block number
        self._changes: list[list[Record]] = []  # _changes[n - 1] = block n
        self._overlay: dict[str, Record] = {}  # current record of every file changed since block 0
        self._created: list[str] = []  # files created since block 0 and still present
        self._block_count = 1  # block 0 exists from the start

    @classmethod
    def for_facts(
        cls,
        facts: DeviceFacts,
        node: str,
        *,
        now: float,
        snapshot_interval: int = 1,
        digest_algorithm: str = "SHA256",
    ) -> FilesystemInventory:
        """The inventory of `node` of the device `facts`, started (block 0) at `now`."""
        if node not in facts.nodes:
            raise FsInventoryError(f"% Node {node} not found: expected one of {', '.join(facts.nodes)}")
        return cls(
            device_key=f"{facts.hostname}|{facts.seed}",
            node=node,
            packages=[p.full_name for p in facts.packages],
            files=facts.files,
            epoch=now,
            snapshot_interval=snapshot_interval,
            digest_algorithm=digest_algorithm,
        )

    # -- clock ---------------------------------------------------------------------------------

    @property
    def snapshot_interval(self) -> int:
        """Current interval in 15-minute units (1-96)."""
        return self._segments[-1][2]

    @property
    def block_count(self) -> int:
        """Blocks taken so far (block numbers 0 .. block_count - 1)."""
        return self._block_count

    def block_time(self, block_no: int) -> float:
        """The device time at which block `block_no` is (or will be) taken."""
        for first, start, interval in reversed(self._segments):
            if block_no >= first:
                return round(start + (block_no - first) * interval * SNAPSHOT_UNIT_SECONDS, 6)
        raise FsInventoryError(f"% Invalid block number {block_no}: expected 0 or more")

    def advance_to(self, now: float) -> int:
        """Take every snapshot whose time is <= `now`; returns how many were taken.

        Raises FsInventoryError when `now` is not a finite number or lies so far ahead that more
        than MAX_BLOCKS blocks would exist (an accelerated clock run away).
        """
        if not math.isfinite(now):
            raise FsInventoryError(f"% Invalid device time {now!r}: expected a finite Unix time")
        due = self._block_count
        while self.block_time(due) <= now:
            due += 1
            if due > MAX_BLOCKS:
                raise FsInventoryError(
                    f"% File-system inventory of {self.node} would exceed {MAX_BLOCKS} snapshot "
                    f"blocks at device time {now}: expected a clock closer to the inventory's "
                    f"start ({self.epoch}) or a longer snapshot-interval"
                )
        taken = 0
        while self._block_count < due:
            self._take_block()
            taken += 1
        return taken

    def set_snapshot_interval(self, interval: int, now: float) -> None:
        """Change the interval at `now`: the next block comes `interval` x 15 min after the last."""
        _check_interval(interval)
        self.advance_to(now)
        if interval == self.snapshot_interval:
            return
        last = self._block_count - 1
        next_time = self.block_time(last) + interval * SNAPSHOT_UNIT_SECONDS
        self._segments.append((self._block_count, round(next_time, 6), interval))

    def tamper_file(self, path: str, now: float) -> int:
        """Change `path`'s contents at `now` behind the installer's back.

        Returns the block number whose snapshot will report it (`contents-modified`, new digest).
        Raises FsInventoryError when the node has no such file.
        """
        self.advance_to(now)
        if self._current_record(path) is None:
            raise FsInventoryError(f"% File {path} not found on node {self.node}")
        self._tampers.append((path, self._block_count))
        self._tampers_due.setdefault(self._block_count, []).append(path)
        return self._block_count

    # -- reading -------------------------------------------------------------------------------

    def blocks(self, block_start: int = 0, count: int | None = None) -> list[dict[str, Any]]:
        """Snapshots `block_start` .. `block_start + count - 1` (all remaining when count is None)
        as dicts in the dossier's shape. An empty list when block_start is past the last block."""
        return [
            {
                "snapshot-block-no": block_no,
                "snap-time": self.block_time(block_no),
                "snapshot-type": "full" if block_no == 0 else "incremental",
                "files": [_record_dict(r, self.digest_algorithm) for r in self._records(block_no)],
            }
            for block_no in self._block_range(block_start, count)
        ]

    def render_blocks(self, block_start: int = 0, count: int | None = None) -> str:
        """The same snapshots as `blocks()` as JSON text, byte-identical to
        `json.dumps(blocks(...))`, built without intermediate dicts (outputs can be MBs)."""
        parts = []
        algorithm = self._algorithm_json
        for block_no in self._block_range(block_start, count):
            kind = "full" if block_no == 0 else "incremental"
            files = ", ".join(
                _FILE_JSON
                % (
                    encode_basestring_ascii(r[_NAME]),
                    r[_UID], r[_GID], r[_INODE], r[_SIZE], r[_MODE],
                    r[_ATIME], r[_MTIME], r[_CTIME], algorithm,
                    r[_DIGEST], r[_KIND], r[_PKIND],
                    encode_basestring_ascii(r[_PNAME]),
                )
                for r in self._records(block_no)
            )
            parts.append(
                f'{{"snapshot-block-no": {block_no}, "snap-time": {self.block_time(block_no)!r}, '
                f'"snapshot-type": "{kind}", "files": [{files}]}}'
            )
        return "[" + ", ".join(parts) + "]"

    def files_of_package(self, full_name: str) -> list[str]:
        """Paths of the files package `full_name` (`ncs5500-bgp-5.2.1.1-r742.x86_64`) installed
        on this node, e.g. to `tamper_file` one of them; raises FsInventoryError if none."""
        if full_name not in self.packages:
            raise FsInventoryError(
                f"% Package {full_name} is not in the file-system inventory of node {self.node}"
            )
        universe = self._universe()
        owner = self.packages.index(full_name)
        return [path for path, pkg in zip(universe.paths, universe.owner) if pkg == owner]

    def current_files(self) -> dict[str, Record]:
        """Every file on the node now (after the last block), by name. O(files): for tests."""
        state = {record[_NAME]: record for record in self._base_records()}
        state.update(self._overlay)
        return state

    # -- persistence ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """What is needed to regenerate this inventory exactly (no per-file data)."""
        return {
            "format": FSINV_FORMAT,
            "device_key": self.device_key,
            "node": self.node,
            "packages": list(self.packages),
            "files": self.files,
            "epoch": self.epoch,
            "digest_algorithm": self.digest_algorithm,
            "segments": [list(s) for s in self._segments],
            "tampers": [list(t) for t in self._tampers],
            "block_count": self._block_count,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FilesystemInventory:
        """Rebuild an inventory saved by `to_dict`, replaying its blocks; raises FsInventoryError."""
        try:
            if data.get("format") != FSINV_FORMAT:
                raise FsInventoryError(
                    f"% File-system inventory state format {data.get('format')!r} is not "
                    f"supported: expected {FSINV_FORMAT}"
                )
            segments = [(int(f), float(t), int(i)) for f, t, i in data["segments"]]
            inventory = cls(
                device_key=data["device_key"],
                node=data["node"],
                packages=data["packages"],
                files=int(data["files"]),
                epoch=float(data["epoch"]),
                snapshot_interval=segments[0][2],
                digest_algorithm=data["digest_algorithm"],
            )
            inventory._segments = segments
            inventory._tampers = [(str(p), int(b)) for p, b in data["tampers"]]
            for path, block_no in inventory._tampers:
                inventory._tampers_due.setdefault(block_no, []).append(path)
            target = int(data["block_count"])
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise FsInventoryError(
                f"% Saved file-system inventory is malformed ({type(exc).__name__}: {exc}): "
                "expected the output of FilesystemInventory.to_dict()"
            ) from exc
        while inventory._block_count < target:
            inventory._take_block()
        return inventory

    # -- internals -----------------------------------------------------------------------------

    def _block_range(self, block_start: int, count: int | None) -> range:
        if isinstance(block_start, bool) or not isinstance(block_start, int) or block_start < 0:
            raise FsInventoryError(f"% Invalid block_start {block_start!r}: expected an integer >= 0")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
            raise FsInventoryError(f"% Invalid count {count!r}: expected an integer >= 1")
        stop = self._block_count if count is None else min(self._block_count, block_start + count)
        return range(block_start, max(block_start, stop))

    def _records(self, block_no: int) -> Iterator[Record] | list[Record]:
        return self._base_records() if block_no == 0 else self._changes[block_no - 1]

    def _digest(self, *parts: object) -> str:
        data = "|".join(str(p) for p in parts).encode()
        return base64.b64encode(self._hash(data).digest()).decode("ascii")

    def _meta_hash(self, index: int) -> bytes:
        return hashlib.blake2b(self._node_key + index.to_bytes(4, "big"), digest_size=12).digest()

    def _mutable_record(self, j: int) -> Record:
        path = _mutable_path(j)
        h = self._meta_hash(j)
        mtime = round(self.epoch - int.from_bytes(h[3:6], "big") % (30 * 86_400) - h[6] / 256, 6)
        return (
            path, 0, 0, self._inode_base + 4 * j, 200 + int.from_bytes(h[7:10], "big") % 2_000_000,
            MODE_FILE, mtime, mtime, mtime, self._digest("dev", self.device_key, path, 0),
            "created", "anonymous", "",
        )

    def _universe_record(self, universe: _Universe, i: int) -> Record:
        return next(self._universe_records(universe, i, i + 1))

    def _universe_records(self, universe: _Universe, start: int, stop: int) -> Iterator[Record]:
        # The hot loop of a full snapshot (tens of thousands of files): locals bound once, times
        # computed in integer microseconds (an exact int / 10**6 prints with <= 6 decimals).
        digests = universe.digests(self.digest_algorithm)
        node_key = self._node_key
        blake2b = hashlib.blake2b
        from_bytes = int.from_bytes
        install_us = round(self._install_time * 1_000_000)
        inode_base = self._inode_base
        first = self._mutable
        paths, owner, sizes, modes, packages = (
            universe.paths, universe.owner, universe.sizes, universe.modes, universe.packages
        )
        for i in range(start, stop):
            index = first + i
            h = blake2b(node_key + index.to_bytes(4, "big"), digest_size=8).digest()
            mtime_us = install_us + from_bytes(h[3:5], "big") * 1000
            mtime = mtime_us / 1_000_000
            atime = (mtime_us + (from_bytes(h[5:8], "big") % 1_728_000) * 1_000_000) / 1_000_000
            pkg = owner[i]
            yield (
                paths[i], 0, 0, inode_base + 4 * index + (h[0] & 3), sizes[i], modes[i],
                atime, mtime, mtime, digests[i], "created",
                "rpm" if pkg >= 0 else "anonymous", packages[pkg] if pkg >= 0 else "",
            )

    def _universe(self) -> _Universe:
        return _universe(self.packages, max(0, self.files - self._mutable))

    def _base_records(self) -> Iterator[Record]:
        for j in range(self._mutable):
            yield self._mutable_record(j)
        universe = self._universe()
        yield from self._universe_records(universe, 0, len(universe.paths))

    def _current_record(self, path: str) -> Record | None:
        if path in self._overlay:
            return self._overlay[path]
        for j in range(self._mutable):  # <= MUTABLE_FILES_MAX string compares
            if _mutable_path(j) == path:
                return self._mutable_record(j)
        universe = self._universe()
        i = universe.index_of(path)
        return None if i is None else self._universe_record(universe, i)

    def _take_block(self) -> None:
        # Each block is generated from (device, node, block number) and the state before it, so a
        # replay after restart produces the same records.
        n = self._block_count
        now = self.block_time(n)
        before = self.block_time(n - 1)
        rng = random.Random(f"fsinv-block|{self.device_key}|{self.node}|{n}")
        touched: set[str] = set()
        records: list[Record] = []

        def when() -> float:
            return round(before + rng.uniform(0, now - before), 6)

        def emit(record: Record) -> None:
            touched.add(record[_NAME])
            records.append(record)
            if record[_KIND] == "deleted":
                self._overlay.pop(record[_NAME], None)
            else:
                self._overlay[record[_NAME]] = record

        # (1) tampering due in this block: contents change, size and mode kept (a careful attacker)
        for path in self._tampers_due.get(n, ()):
            if path in touched:
                continue
            current = self._current_record(path)
            if current is None:  # deleted before the tamper came due: nothing left to report
                continue
            t = when()
            emit(current[:_ATIME] + (t, t, t, self._digest("tamper", self.device_key, path, n),
                                     "contents-modified") + current[_PKIND:])
        # (2) logs and configuration rewritten
        for _ in range(rng.randint(*CHURN_MODIFIED)):
            j = rng.randrange(self._mutable)
            path = _mutable_path(j)
            t = when()
            size = rng.randint(200, 2_000_000)
            if path in touched:
                continue
            current = self._overlay.get(path) or self._mutable_record(j)
            emit(current[:_SIZE] + (size, current[_MODE], t, t, t,
                                    self._digest("dev", self.device_key, path, n),
                                    "contents-modified") + current[_PKIND:])
        # (3) a new file (show tech, core, archive)
        if rng.random() < CHURN_CREATE_P:
            pattern = rng.choice(_CREATED_LAYOUT)
            path = pattern.format(word=rng.choice(_WORDS), n=n)
            t = when()
            inode = self._inode_base + 4 * (self.files + n)
            size = rng.randint(1_000, 20_000_000)
            emit((path, 0, 0, inode, size, MODE_FILE, t, t, t,
                  self._digest("dev", self.device_key, path, n), "created", "anonymous", ""))
            self._created.append(path)
        # (4) the oldest created file rotated away
        if len(self._created) > 1 and rng.random() < CHURN_DELETE_P and self._created[0] not in touched:
            path = self._created.pop(0)
            emit(self._overlay[path][:_KIND] + ("deleted",) + self._overlay[path][_PKIND:])
        # (5) a permission change
        if rng.random() < CHURN_META_P:
            j = rng.randrange(self._mutable)
            path = _mutable_path(j)
            t = when()
            if path not in touched:
                current = self._overlay.get(path) or self._mutable_record(j)
                mode = MODE_PRIVATE if current[_MODE] != MODE_PRIVATE else MODE_FILE
                emit(current[:_MODE] + (mode, current[_ATIME], current[_MTIME], t, current[_DIGEST],
                                        "meta-data-modified") + current[_PKIND:])
        self._changes.append(records)
        self._block_count += 1


def _record_dict(record: Record, algorithm: str) -> dict[str, Any]:
    return {
        "name": record[_NAME],
        "meta": {
            "uid": record[_UID],
            "gid": record[_GID],
            "inode": record[_INODE],
            "size": record[_SIZE],
            "mode": record[_MODE],
            "atime": record[_ATIME],
            "mtime": record[_MTIME],
            "ctime": record[_CTIME],
        },
        "digest": {"algorithm": algorithm, "digest-value": record[_DIGEST]},
        "change-kind": record[_KIND],
        "package-kind": record[_PKIND],
        "package-name": record[_PNAME],
    }


def _check_interval(interval: int) -> None:
    if (
        isinstance(interval, bool)
        or not isinstance(interval, int)
        or not MIN_SNAPSHOT_INTERVAL <= interval <= MAX_SNAPSHOT_INTERVAL
    ):
        raise FsInventoryError(
            f"% Invalid snapshot-interval {interval!r}: expected an integer "
            f"{MIN_SNAPSHOT_INTERVAL}-{MAX_SNAPSHOT_INTERVAL} (units of 15 minutes)"
        )


def device_inventories(
    facts: DeviceFacts,
    *,
    now: float,
    snapshot_interval: int = 1,
    digest_algorithm: str = "SHA256",
) -> dict[str, FilesystemInventory]:
    """One inventory per route-processor node of the device, all started at `now`.

    Line cards keep no file-system inventory of their own here: the seed only shows RP nodes.
    """
    return {
        node: FilesystemInventory.for_facts(
            facts, node, now=now, snapshot_interval=snapshot_interval, digest_algorithm=digest_algorithm
        )
        for node in facts.rp_nodes
    }
