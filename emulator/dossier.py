"""The data dossier: what `show platform security integrity dossier include ...` prints.

`build_dossier(...)` returns the command's JSON text per ENVELOPE.md section 2: members in the
spec's order, one `{"result-code": ..., "<item>": payload}` object per item, ending in "\\n".

Layout follows the seed's capture: the top level is compact (`{"collection-start-time":...`)
and each item object is printed with `", "` / `": "` separators
(`{"result-code": "Success", "license-udi": ...}`); no indentation (outputs can be MBs).

Field names inside payloads are inferred (ENVELOPE.md): they are spelled here once, in the
`_payload_*` functions, so a real capture can correct them in one place.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from emulator.facts import (
    ALWAYS_PRESENT_ITEMS,
    SELECTOR_NAMES,
    ContentError,
    DeviceFacts,
    checked_failing_items,
    node_integrity,
    xr_time,
)
from emulator.fsinv import FilesystemInventory, FsInventoryError
from emulator.nonce import parse_hex_nonce
from emulator.showtext import license_udi, show_platform, show_version

__all__ = [
    "DossierError",
    "FS_NOT_CONFIGURED",
    "FS_OPTION_KEYS",
    "ITEMS",
    "MAX_FS_OPTIONS_CHARS",
    "MODEL_NAME",
    "MODEL_REVISION",
    "build_dossier",
    "fs_selection",
    "parse_fs_options",
    "payload",
]

ITEMS: tuple[str, ...] = SELECTOR_NAMES
MODEL_NAME = "http://cisco.com/ns/yang/Cisco-IOS-XR-ama"
MODEL_REVISION = "2019-08-05"
FS_OPTION_KEYS = ("block_start", "count")
# What the device reports for `include filesystem-inventory` when the feature is not configured.
FS_NOT_CONFIGURED = "Failed: filesystem-inventory is not configured"
# The options argument is typed on a command line; bound it before parsing.
MAX_FS_OPTIONS_CHARS = 4096

_ITEM_SEPARATORS = (", ", ": ")  # the seed's item layout


class DossierError(ContentError):
    """The dossier command's arguments are malformed; `message` is the `% Invalid ...` line."""


# --- payloads (the inferred field names live here, once) -----------------------------------------


def _payload_license_udi(facts: DeviceFacts, now: float) -> str:
    return license_udi(facts)


def _payload_version(facts: DeviceFacts, now: float) -> str:
    return show_version(facts, now=now)


def _payload_platform(facts: DeviceFacts, now: float) -> str:
    return show_platform(facts)


def _payload_packages(facts: DeviceFacts, now: float) -> list[dict[str, str]]:
    return [
        {
            "name": p.name,
            "version": p.version,
            "arch": p.arch,
            "install-fingerprint": p.install_fingerprint,
            "runtime-fingerprint": p.runtime_fingerprint,
        }
        for p in facts.packages
    ]


def _payload_reboot_history(facts: DeviceFacts, now: float) -> dict[str, list[dict[str, Any]]]:
    return {
        node: [
            {"no": r.no, "time": xr_time(r.time), "cause-code": r.cause_code, "reason": r.reason}
            for r in facts.reboots[node]
        ]
        for node in facts.nodes
    }


def _payload_rollback_history(facts: DeviceFacts, now: float) -> list[dict[str, str]]:
    return [
        {
            "commit-id": c.commit_id,
            "user-id": c.user_id,
            "line": c.line,
            "client-name": c.client_name,
            "time": xr_time(c.time),
            "label": c.label,
            "comment": c.comment,
        }
        for c in reversed(facts.commits)  # newest first
    ]


def _payload_system_integrity_snapshot(facts: DeviceFacts, now: float) -> dict[str, Any]:
    return {node: node_integrity(facts, node) for node in facts.nodes}


def _payload_system_inventory(facts: DeviceFacts, now: float) -> list[dict[str, str]]:
    return [
        {"name": e.name, "descr": e.descr, "pid": e.pid, "vid": e.vid, "sn": e.sn}
        for e in facts.inventory
    ]


_PAYLOADS: dict[str, Callable[[DeviceFacts, float], Any]] = {
    "license-udi": _payload_license_udi,
    "version": _payload_version,
    "platform": _payload_platform,
    "packages": _payload_packages,
    "reboot-history": _payload_reboot_history,
    "rollback-history": _payload_rollback_history,
    "system-integrity-snapshot": _payload_system_integrity_snapshot,
    "system-inventory": _payload_system_inventory,
}


def payload(facts: DeviceFacts, item: str, *, now: float) -> Any:
    """The payload of one item (not filesystem-inventory) as Python data; for tests and tools."""
    if item not in _PAYLOADS:
        raise DossierError(f"% Invalid item {item!r}: expected one of {', '.join(_PAYLOADS)}")
    return _PAYLOADS[item](facts, now)


# --- arguments ------------------------------------------------------------------------------------


def parse_fs_options(text: str) -> dict[str, Any]:
    """Parse the `filesystem-inventory-options '<json>'` argument; raises DossierError."""
    if len(text) > MAX_FS_OPTIONS_CHARS:
        raise DossierError(
            f"% Invalid filesystem-inventory-options: {len(text)} characters, expected at most "
            f"{MAX_FS_OPTIONS_CHARS}"
        )
    try:
        options = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DossierError(
            f"% Invalid filesystem-inventory-options: not JSON ({exc.msg} at character {exc.pos}); "
            """expected e.g. '{"0/RP0/CPU0": {"block_start": 0, "count": 1}}'"""
        ) from None
    if not isinstance(options, dict):
        raise DossierError(
            f"% Invalid filesystem-inventory-options: expected a JSON object keyed by node, "
            f"found {type(options).__name__}"
        )
    return options


def fs_selection(
    fs_options: Mapping[str, Any] | None, nodes: Sequence[str], local_node: str
) -> dict[str, tuple[int, int | None]]:
    """Which blocks of which nodes `include filesystem-inventory` returns: node -> (start, count).

    From the seed: without options the command reports the local node (the active RP, where the
    command runs), every block; options name each node wanted ("To collect data from a remote
    node ... '{"0/RP1/CPU0": {"block_start": 0}}'"), `block_start` defaults to 0 and a missing
    `count` means every block from `block_start` on. Raises DossierError for anything else.
    """
    if fs_options is None:
        return {local_node: (0, None)}
    if not isinstance(fs_options, Mapping) or not fs_options:
        raise DossierError(
            "% Invalid filesystem-inventory-options: expected a JSON object naming at least one "
            f"node (one of {', '.join(nodes)}), found {fs_options!r}"
        )
    selection: dict[str, tuple[int, int | None]] = {}
    for node, spec in fs_options.items():
        if node not in nodes:
            raise DossierError(
                f"% Invalid node {node!r} in filesystem-inventory-options: expected one of "
                f"{', '.join(nodes)}"
            )
        if not isinstance(spec, Mapping):
            raise DossierError(
                f"% Invalid filesystem-inventory-options for {node}: expected an object like "
                f'{{"block_start": 0, "count": 1}}, found {spec!r}'
            )
        unknown = sorted(set(spec) - set(FS_OPTION_KEYS))
        if unknown:
            raise DossierError(
                f"% Invalid filesystem-inventory-options for {node}: unknown key "
                f"{unknown[0]!r}, expected only {' and '.join(FS_OPTION_KEYS)}"
            )
        start = spec.get("block_start", 0)
        count = spec.get("count")
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise DossierError(
                f"% Invalid block_start {start!r} for {node}: expected an integer 0 or more"
            )
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
            raise DossierError(f"% Invalid count {count!r} for {node}: expected an integer 1 or more")
        selection[node] = (start, count)
    return selection


# --- the dossier ---------------------------------------------------------------------------------


def _item_text(name: str, result_code: str | None, payload_text: str | None) -> str:
    if result_code is not None:
        return json.dumps({"result-code": result_code}, separators=_ITEM_SEPARATORS)
    return f'{{"result-code": "Success", {json.dumps(name)}: {payload_text}}}'


def _fs_payload_text(
    fsinv: Mapping[str, FilesystemInventory],
    selection: Mapping[str, tuple[int, int | None]],
    now: float,
) -> str:
    parts = []
    for node, (start, count) in selection.items():
        inventory = fsinv[node]
        inventory.advance_to(now)  # every snapshot due by now is taken before it is reported
        parts.append(f'{json.dumps(node)}: {{"snapshots": {inventory.render_blocks(start, count)}}}')
    return "{" + ", ".join(parts) + "}"


def build_dossier(
    facts: DeviceFacts,
    fsinv: Mapping[str, FilesystemInventory] | None,
    items: Sequence[str],
    *,
    nonce_text: str | None,
    fs_options: Mapping[str, Any] | None,
    now: float,
    failing_items: Mapping[str, str] = {},  # noqa: B006 -- read only
    elapsed: float | None = None,
) -> str:
    """The dossier command's output text (JSON, ending in "\\n").

    `items` are selectors from ITEMS (any order; printed in ITEMS order, each once).
    `nonce_text` is `<N>` as typed (None: the command had no nonce, the member is left out).
    `fsinv` maps RP nodes to their inventories (None or empty: filesystem-inventory is not configured,
    and the item reports FS_NOT_CONFIGURED). `fs_options` is the parsed options object (see
    `fs_selection`). `failing_items` (merged over `facts.failing_items`) makes items report a
    result code other than "Success". `collection-end-time` is `now` plus the time taken
    (`elapsed` fixes it, for reproducible output).

    Raises DossierError (`message` starts with `% Invalid`) for an unknown item or malformed
    filesystem-inventory options, NonceError for a malformed nonce; nothing is built then.
    """
    started = time.perf_counter()
    unknown = [item for item in items if item not in ITEMS]
    if unknown:
        raise DossierError(f"% Invalid item {unknown[0]!r}: expected one of {', '.join(ITEMS)}")
    if nonce_text is not None:
        parse_hex_nonce(nonce_text)
    try:
        failing = {**facts.failing_items, **checked_failing_items(failing_items)}
    except ContentError as exc:
        raise DossierError(exc.message) from exc
    selected = [item for item in ITEMS if item in items]
    selection: dict[str, tuple[int, int | None]] = {}
    if "filesystem-inventory" in selected:
        # Options are checked even when the feature is off, so a typo is reported either way.
        fs_nodes = list(fsinv) if fsinv else facts.rp_nodes
        local = facts.active_node if facts.active_node in fs_nodes else fs_nodes[0]
        selection = fs_selection(fs_options, fs_nodes, local)

    members = [
        f'"collection-start-time":{round(now, 6)!r}',
        f'"model-name":{json.dumps(MODEL_NAME)}',
        f'"model-revision":{json.dumps(MODEL_REVISION)}',
    ]
    if nonce_text is not None:
        members.append(f'"nonce":{json.dumps(nonce_text)}')
    for item in ALWAYS_PRESENT_ITEMS + tuple(selected):
        if item in failing:
            text = _item_text(item, failing[item], None)
        elif item == "filesystem-inventory":
            if not fsinv:
                text = _item_text(item, FS_NOT_CONFIGURED, None)
            else:
                try:
                    text = _item_text(item, None, _fs_payload_text(fsinv, selection, now))
                except FsInventoryError as exc:
                    raise DossierError(exc.message) from exc
        else:
            payload_text = json.dumps(_PAYLOADS[item](facts, now), separators=_ITEM_SEPARATORS)
            text = _item_text(item, None, payload_text)
        members.append(f"{json.dumps(item)}:{text}")
    took = time.perf_counter() - started if elapsed is None else elapsed
    members.append(f'"collection-end-time":{round(now + took, 6)!r}')
    return "{" + ",".join(members) + "}\n"
