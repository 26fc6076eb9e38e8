"""The fleet report: one data model (`build_report`, also `dossier report --json`) and one
self-contained HTML rendering of it (`render_html`): inline CSS, inline SVG charts, a small
inline script for sorting; no network, no external scripts, fonts or images."""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..status import failed_poll, poll_outputs
from ..store import EnvelopeRecord, Store
from .findings import Category, DriftId, Finding
from .history import StoredVerdicts, replay

__all__ = ["CHANGE_KINDS", "REPORT_FORMAT", "VERIFICATION_STATES", "PollVerification", "build_report",
           "certificate_expiry", "expiry_days", "poll_verification", "render_html", "verification_state"]

REPORT_FORMAT = "trust-dossier/report/1"
#: Findings shown per device in the table; the device's section lists them all.
MAX_OPEN_FINDINGS_SHOWN = 3
#: Timeline points drawn per device (the newest); older ones stay in the JSON.
MAX_TIMELINE_POINTS = 60

#: Change kinds counted on timelines, from the drift finding ids.
CHANGE_KINDS = ("files", "packages", "reboots", "commits", "hardware", "boot", "certificates")
_KIND_OF = {
    DriftId.FILE_CREATED: "files", DriftId.FILE_MODIFIED: "files", DriftId.FILE_DELETED: "files",
    DriftId.FILE_METADATA_CHANGED: "files",
    DriftId.PACKAGE_ADDED: "packages", DriftId.PACKAGE_REMOVED: "packages",
    DriftId.PACKAGE_VERSION_CHANGED: "packages", DriftId.PACKAGE_RUNTIME_MISMATCH: "packages",
    DriftId.SOFTWARE_VERSION_CHANGED: "packages",
    DriftId.REBOOT_NEW: "reboots", DriftId.COMMIT_NEW: "commits", DriftId.COMMIT_ROLLBACK: "commits",
    DriftId.HARDWARE_PART_SWAPPED: "hardware", DriftId.HARDWARE_PART_ADDED: "hardware",
    DriftId.HARDWARE_PART_REMOVED: "hardware",
    DriftId.SECURE_BOOT_CHANGED: "boot", DriftId.PCR_CHANGED: "boot",
    DriftId.LEAF_REKEYED: "certificates", DriftId.ROOT_CHANGED: "certificates",
}
STATUSES = ("affirming", "warning", "contraindicated", "none")
#: A device's verification state: its newest stored output verified again (trusted or not), or
#: its last poll failed and stored nothing (unreachable), or nothing of it is stored (unknown).
TRUSTED, UNTRUSTED, UNREACHABLE, UNKNOWN = "trusted", "untrusted", "unreachable", "unknown"
VERIFICATION_STATES = (TRUSTED, UNTRUSTED, UNREACHABLE, UNKNOWN)
_COLOR = {"affirming": "#2e7d32", "warning": "#ef8f00", "contraindicated": "#c62828", "none": "#9e9e9e"}
_KIND_COLOR = {"files": "#5c6bc0", "packages": "#26a69a", "reboots": "#8d6e63", "commits": "#ab47bc",
               "hardware": "#78909c", "boot": "#ec407a", "certificates": "#ffa726"}


def _counts(drift: Sequence[Finding]) -> dict[str, int]:
    counts = dict.fromkeys(CHANGE_KINDS, 0)
    for finding in drift:
        kind = _KIND_OF.get(finding.id)  # type: ignore[call-overload]
        if kind is not None:
            counts[kind] += 1
    return counts


def certificate_expiry(store: Store, record: EnvelopeRecord) -> dict[str, str | None] | None:
    """The leaf's and root's `not_after` in `record`'s stored verdict; None when it has none."""
    verdict = store.verdict(record)
    if verdict is None:
        return None
    ends: dict[str, str | None] = {"leaf": None, "root": None}
    for role in ends:
        cert = verdict.get(role) if isinstance(verdict, dict) else None
        if isinstance(cert, dict) and isinstance(cert.get("not_after"), str):
            ends[role] = cert["not_after"]
    return ends


def expiry_days(store: Store, record: EnvelopeRecord | None, now: dt.datetime, *,
                ends: dict[str, str | None] | None = None) -> dict[str, int | None]:
    """Days from `now` until leaf and root expire, from the newest trusted verdict (its
    `certificate_expiry`, read here unless given as `ends`)."""
    days: dict[str, int | None] = {"leaf": None, "root": None}
    if record is None:
        return days
    if ends is None:
        ends = certificate_expiry(store, record)
    if ends is None:
        return {"leaf": record.days_leaf, "root": record.days_root}
    for role, not_after in ends.items():
        if not_after is not None:
            try:
                days[role] = (dt.datetime.fromisoformat(not_after) - now) // dt.timedelta(days=1)
            except ValueError:
                days[role] = None
    return days


def verification_state(record: EnvelopeRecord | None, verdict: Any, state: Mapping[str, Any]) -> dict[str, Any]:
    """The device's verification state: a failed last poll (the device state says so; nothing
    was stored) is `unreachable` with the state's reason and message; otherwise the verdict of
    the newest stored output, with its first error's id and message when not trusted."""
    last_reached = record.received if record is not None else None
    failed = failed_poll(state)
    if failed is not None:
        reason, message, polled = failed
        return {"state": UNREACHABLE, "reason": reason, "message": message, "checked": polled,
                "last_reached": last_reached}
    if record is None or verdict is None:
        return {"state": UNKNOWN, "reason": None, "message": "no collection of this device is stored",
                "checked": None, "last_reached": None}
    if verdict.trusted:
        return {"state": TRUSTED, "reason": None, "message": None, "checked": record.received,
                "last_reached": last_reached}
    error = verdict.errors[0]
    return {"state": UNTRUSTED, "reason": str(error.id), "message": error.message, "checked": record.received,
            "last_reached": last_reached}


@dataclass(frozen=True)
class PollVerification:
    """A device's verification state from its newest poll (`poll_verification`): `record` is the
    output its timeline and appraisal follow (the dossier's), `verdict` that output's verdict,
    `verification` the device's state (trusted only when each kind of its evidence is) and `tpm`
    the state of the poll's TPM outputs (None when the poll stored none)."""

    record: EnvelopeRecord | None
    verdict: Any
    verification: dict[str, Any]
    tpm: dict[str, Any] | None


def poll_verification(store: Store, newest: EnvelopeRecord | None, state: Mapping[str, Any],
                      verdict_of: Callable[[EnvelopeRecord], Any], *,
                      history: Sequence[EnvelopeRecord] | None = None) -> PollVerification:
    """The verification state of a device whose newest stored output is `newest`, judged on every
    output of its poll (`collector.status.poll_outputs`; `history` as it takes it) with
    `verdict_of` (a record's verdict or anything with its `trusted` and `errors`)."""
    outputs = poll_outputs(store, newest, history=history) if newest is not None else []
    dossier_outputs = [one for one, evidence in outputs if evidence == "dossier"]
    tpm_outputs = [one for one, evidence in outputs if evidence == "tpm"]
    # The timeline and the appraisal follow the platform's evidence (the dossier), as before
    # TPM evidence was stored beside it; TPM outputs are judged on their own line.
    record = dossier_outputs[0] if dossier_outputs else newest
    verdict = verdict_of(record) if record is not None else None
    verification = verification_state(record, verdict, state)
    tpm = None
    if tpm_outputs:
        judged = [(one, verdict if one is record else verdict_of(one)) for one in tpm_outputs]
        worst = next(((one, judgement) for one, judgement in judged if not judgement.trusted), judged[0])
        tpm = verification_state(worst[0], worst[1], state)
        if verification["state"] == TRUSTED and tpm["state"] != TRUSTED:
            verification = tpm  # the device is trusted only when each kind of its evidence is
    return PollVerification(record, verdict, verification, tpm)


def build_report(store: Store, verdicts: StoredVerdicts, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """The report's data: one entry per device with its verification state, its table row and
    its timeline (its drift from what verifying each stored output returns: `verdicts`)."""
    now = now or dt.datetime.now(dt.UTC)
    latest, latest_trusted, states = store.latest(), store.latest_trusted(), store.readable_states()
    statuses = {path: status for _, _, path, status in store.appraisal_statuses()}
    devices = []
    for name in sorted(set(latest) | set(states)):
        state = states.get(name, {})
        judged = poll_verification(store, latest.get(name), state, verdicts)
        record, verdict = judged.record, judged.verdict
        timeline = []
        for step in replay(store, verdicts, name, until=record):
            timeline.append({
                "received": step.record.received,
                "envelope": step.record.path,
                "trusted": step.record.trusted,
                "status": statuses.get(step.record.path, "none"),
                "changes": _counts(step.drift),
            })
        appraisal = store.appraisal(record) if record is not None else None
        open_findings = []
        if appraisal is not None:
            open_findings = [{"id": f["id"], "severity": f["severity"], "category": f["category"],
                              "message": f["message"]}
                             for f in appraisal.get("findings", []) if f.get("severity") != "info"]
        elif verdict is not None and not verdict.trusted:
            open_findings = [{"id": str(f.id), "severity": str(f.severity), "category": str(Category.IDENTITY),
                              "message": f.message} for f in verdict.errors]
        devices.append({
            "device": name,
            "verification": judged.verification,
            "tpm": judged.tpm,
            "appraised": appraisal is not None,
            "last_collection": record.received if record else None,
            "last_poll_status": state.get("last_status"),
            "last_trusted": latest_trusted[name].received if name in latest_trusted else None,
            "status": appraisal["status"] if appraisal else "none",
            "trust_vector": (appraisal or {}).get("trust_vector", {}),
            "days_to_expiry": expiry_days(store, latest_trusted.get(name), now),
            "open_findings": open_findings,
            "timeline": timeline,
        })
    counts = dict.fromkeys(STATUSES, 0)
    verification = dict.fromkeys(VERIFICATION_STATES, 0)
    for device in devices:
        counts[device["status"] if device["status"] in counts else "none"] += 1
        verification[device["verification"]["state"]] += 1
    return {"format": REPORT_FORMAT, "generated": now.isoformat(timespec="seconds"), "store": str(store.root),
            "summary": {"devices": len(devices), "status_counts": counts, "verification_counts": verification,
                        "appraised": sum(1 for device in devices if device["appraised"])},
            "devices": devices}


# --- HTML ------------------------------------------------------------------------------------

_STATE_COLOR = {TRUSTED: "#2e7d32", UNTRUSTED: "#c62828", UNREACHABLE: "#5e35b1", UNKNOWN: "#757575"}
#: A symbol beside each word: a state reads without colour (colour-blind readers, print, grey scale).
_STATE_SYMBOL = {TRUSTED: "\u2714", UNTRUSTED: "\u2718", UNREACHABLE: "\u2298", UNKNOWN: "?"}
_STATUS_SYMBOL = {"affirming": "\u2714", "warning": "\u25b2", "contraindicated": "\u2718", "none": "\u2013"}
_STATUS_WORD = {"none": "not appraised"}
#: Horizontal room one date label of a timeline needs (two lines: date, then time).
_LABEL_SPACING_PX = 72

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;margin:1.5rem auto;
max-width:1300px;padding:0 1rem;color:#212121;background:#fafafa}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem}h3{font-size:1rem;margin:.8rem 0 .3rem}
.meta{color:#616161;font-size:.9rem}.asof{font-size:1rem;font-weight:600;margin:.2rem 0}
table{border-collapse:collapse;width:100%;font-size:.9rem;background:#fff}
th,td{border-bottom:1px solid #e0e0e0;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{cursor:pointer;user-select:none;background:#eeeeee;position:sticky;top:0}
th[aria-sort=ascending]::after{content:' \\25B2'}th[aria-sort=descending]::after{content:' \\25BC'}
.name,.when{white-space:nowrap}
.status{display:inline-block;padding:.05rem .45rem;border-radius:.6rem;color:#fff;font-weight:600;font-size:.8rem;
white-space:nowrap}
.why{font-size:.85rem}.why b{font-family:ui-monospace,'DejaVu Sans Mono',monospace;font-weight:600}
details{background:#fff;border:1px solid #e0e0e0;border-radius:.3rem;margin:.5rem 0;padding:.4rem .8rem}
summary{cursor:pointer;font-weight:600}summary .name{margin-right:.4rem}
.cards{display:flex;gap:1rem;flex-wrap:wrap;align-items:center}
.legend span{margin-right:.8rem;font-size:.8rem;white-space:nowrap}
.legend i{display:inline-block;width:.7rem;height:.7rem;margin-right:.25rem;vertical-align:middle}
ul.findings{margin:.3rem 0;padding-left:1.2rem;font-size:.85rem}
figure{margin:.6rem 0}figcaption{font-size:.85rem;color:#424242;margin-bottom:.2rem}
""" + "".join(f".{status}{{background:{color}}}" for status, color in _COLOR.items()) \
    + "".join(f".v-{state}{{background:{color}}}" for state, color in _STATE_COLOR.items())

_SCRIPT = """
document.querySelectorAll('table.sortable th').forEach(function(th,col){
 th.addEventListener('click',function(){
  var table=th.closest('table'),body=table.tBodies[0],rows=Array.from(body.rows);
  var asc=th.getAttribute('aria-sort')!=='ascending';
  table.querySelectorAll('th').forEach(function(h){h.removeAttribute('aria-sort')});
  th.setAttribute('aria-sort',asc?'ascending':'descending');
  rows.sort(function(a,b){
   var x=a.cells[col].dataset.sort,y=b.cells[col].dataset.sort,nx=parseFloat(x),ny=parseFloat(y);
   var c=(!isNaN(nx)&&!isNaN(ny))?nx-ny:x.localeCompare(y);return asc?c:-c});
  rows.forEach(function(r){body.appendChild(r)});
 });
});
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _when(iso: str | None, *, seconds: bool = True) -> str:
    """An ISO time as `YYYY-MM-DD HH:MM[:SS] UTC`; text that is no time is shown as it is."""
    if not iso:
        return "never"
    try:
        moment = dt.datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")


def _status_badge(status: str, *, device: bool = True) -> str:
    """An appraisal status; a device's `none` reads "not appraised", a trust vector's "none"."""
    word = _STATUS_WORD.get(status, status) if device else status
    return f'<span class="status {_e(status)}">{_STATUS_SYMBOL.get(status, "")} {_e(word)}</span>'


def _state_badge(state: str) -> str:
    return f'<span class="status v-{_e(state)}">{_STATE_SYMBOL.get(state, "")} {_e(state)}</span>'


def _why(verification: Mapping[str, Any]) -> str:
    """The state explained: the reason id with its message, and the time it is about."""
    state = verification["state"]
    reason = f'<b>{_e(verification["reason"])}</b>: ' if verification["reason"] else ""
    message = f'{reason}{_e(verification["message"] or "")}'
    checked = f'<span class="when">{_e(_when(verification["checked"]))}</span>'
    if state == TRUSTED:
        return f"collection of {checked}"
    if state == UNTRUSTED:
        return f'{message}<br><span class="meta">collection of {checked}</span>'
    if state == UNREACHABLE:
        reached = verification["last_reached"]
        since = (f'not reached since <span class="when">{_e(_when(reached))}</span>' if reached
                 else "never reached")
        return f'{message}<br><span class="meta">last poll {checked} failed; {since}</span>'
    return message


def _share_chart(counts: Mapping[str, int], order: Sequence[str], colors: Mapping[str, str],
                 symbols: Mapping[str, str], label: str) -> str:
    total = max(1, sum(counts.values()))
    width, x, parts = 600, 0.0, []
    for key in order:
        share = counts.get(key, 0) / total * width
        if share:
            parts.append(f'<rect x="{x:.1f}" y="0" width="{share:.1f}" height="28" fill="{colors[key]}">'
                         f'<title>{_e(key)}: {counts[key]}</title></rect>')
            if share > 40:
                parts.append(f'<text x="{x + 6:.1f}" y="19" fill="#fff" font-size="13">'
                             f'{symbols.get(key, "")} {counts[key]}</text>')
        x += share
    return (f'<svg role="img" aria-label="{_e(label)}" width="{width}" height="28" '
            f'viewBox="0 0 {width} 28">{"".join(parts)}</svg>')


def _timeline_chart(timeline: Sequence[Mapping[str, Any]], failed_poll: str | None = None) -> str:
    """Per collection: its verification mark, its appraisal dot (when appraised) and its changes
    as stacked bars; then the failed last poll (`failed_poll`, its time) when there was one; a y
    axis of change counts and an x axis dated by time (UTC)."""
    points: list[Mapping[str, Any] | None] = list(timeline)[-MAX_TIMELINE_POINTS:]
    if failed_poll is not None:
        points.append(None)  # the failed poll: a slot with no collection
    if not points:
        return "<p>no stored collections</p>"
    step, left, top, bottom = 18, 70, 44, 140
    width = max(260, left + step * len(points) + 50)
    height = bottom + 44
    biggest = max([1] + [sum(p["changes"].values()) for p in points if p is not None])
    appraised = any(p["status"] != "none" for p in points if p is not None)
    grey = 'font-size="10" fill="#616161"'
    parts = [f'<text x="{left - 8}" y="18" text-anchor="end" {grey}>verified</text>',
             f'<line x1="{left - 4}" y1="{bottom}" x2="{width - 10}" y2="{bottom}" stroke="#9e9e9e"/>',
             f'<line x1="{left - 4}" y1="{top}" x2="{left - 4}" y2="{bottom}" stroke="#9e9e9e"/>',
             f'<text x="{left - 8}" y="{top + 4}" text-anchor="end" {grey}>{biggest}</text>',
             f'<text x="{left - 8}" y="{bottom}" text-anchor="end" {grey}>0</text>',
             f'<text x="{left - 8}" y="{(top + bottom) // 2 + 4}" text-anchor="end" {grey}>changes</text>',
             f'<text x="{left}" y="{height - 2}" {grey}>collection received (UTC)</text>']
    if appraised:
        parts.append(f'<text x="{left - 8}" y="34" text-anchor="end" {grey}>appraisal</text>')
    every = max(1, -(-_LABEL_SPACING_PX // step))
    labelled = -every
    for number, point in enumerate(points):
        cx = left + number * step + step // 2
        when = point["received"] if point is not None else failed_poll
        received = _when(when)
        state = UNREACHABLE if point is None else TRUSTED if point["trusted"] else UNTRUSTED
        what = "poll failed, nothing stored" if point is None else state
        parts.append(f'<text x="{cx}" y="19" text-anchor="middle" font-size="13" fill="{_STATE_COLOR[state]}">'
                     f'{_STATE_SYMBOL[state]}<title>{_e(received)}: {what}</title></text>')
        if point is not None and appraised:
            parts.append(f'<circle cx="{cx}" cy="30" r="5" fill="{_COLOR.get(point["status"], "#9e9e9e")}">'
                         f'<title>{_e(received)}: {_e(point["status"])}</title></circle>')
        y = float(bottom)
        for kind in CHANGE_KINDS if point is not None else ():
            count = point["changes"].get(kind, 0)
            if not count:
                continue
            bar = (bottom - top) * count / biggest
            y -= bar
            parts.append(f'<rect x="{cx - 6}" y="{y:.1f}" width="12" height="{bar:.1f}" fill="{_KIND_COLOR[kind]}">'
                         f'<title>{_e(received)}: {count} {kind}</title></rect>')
        last = number == len(points) - 1
        if number - labelled >= every or (last and number - labelled >= every // 2 + 1):
            labelled = number
            day, _, clock = _when(when, seconds=False).partition(" ")
            parts.append(f'<line x1="{cx}" y1="{bottom}" x2="{cx}" y2="{bottom + 4}" stroke="#9e9e9e"/>'
                         f'<text x="{cx}" y="{bottom + 15}" text-anchor="middle" font-size="10">{_e(day)}</text>'
                         f'<text x="{cx}" y="{bottom + 27}" text-anchor="middle" {grey}>'
                         f'{_e(clock.removesuffix(" UTC"))}</text>')
    return (f'<svg role="img" aria-label="verification, appraisal and changes per collection, by date" '
            f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">{"".join(parts)}</svg>')


def _legend(appraised: bool) -> str:
    states = "".join(f'<span><i style="background:{_STATE_COLOR[s]}"></i>{_STATE_SYMBOL[s]} {s}</span>'
                     for s in VERIFICATION_STATES)
    statuses = "".join(f'<span><i style="background:{_COLOR[s]}"></i>{_STATUS_SYMBOL[s]} '
                       f'{_STATUS_WORD.get(s, s)}</span>' for s in STATUSES) if appraised else ""
    kinds = "".join(f'<span><i style="background:{_KIND_COLOR[k]}"></i>{k}</span>' for k in CHANGE_KINDS)
    return "".join(f'<div class="legend">{part}</div>' for part in (states, statuses, kinds) if part)


def _expiry(days: Mapping[str, int | None]) -> str:
    return " / ".join("-" if days.get(role) is None else str(days[role]) for role in ("leaf", "root"))


def render_html(report: Mapping[str, Any]) -> str:
    """The report as one self-contained HTML page."""
    appraised = report["summary"]["appraised"] > 0
    rows, sections = [], []
    for device in report["devices"]:
        name, verification = device["device"], device["verification"]
        state = verification["state"]
        anchor = "dev-" + "".join(c if c.isalnum() else "-" for c in name)
        leaf = device["days_to_expiry"].get("leaf")
        findings = device["open_findings"]
        shown = ", ".join(_e(f["id"]) for f in findings[:MAX_OPEN_FINDINGS_SHOWN])
        more = len(findings) - MAX_OPEN_FINDINGS_SHOWN
        rank = STATUSES.index(device["status"]) if device["status"] in STATUSES else len(STATUSES)
        # an unreachable device's appraisal is its last stored collection's: say so beside it
        of_when = (f'<br><span class="meta">of the collection of {_e(_when(device["last_collection"]))}</span>'
                   if state == UNREACHABLE and device["appraised"] else "")
        appraisal_cell = (f'<td data-sort="{rank}">{_status_badge(device["status"])}{of_when}</td>'
                          if appraised else "")
        rows.append(
            f'<tr data-device="{_e(name)}" data-status="{_e(device["status"])}" data-verification="{_e(state)}">'
            f'<td class="name" data-sort="{_e(name)}"><a href="#{anchor}">{_e(name)}</a></td>'
            f'<td data-sort="{VERIFICATION_STATES.index(state)}">{_state_badge(state)}</td>'
            f'<td class="why" data-sort="{_e(verification["reason"] or "")}">{_why(verification)}</td>'
            f'{appraisal_cell}'
            f'<td class="when" data-sort="{_e(device["last_trusted"] or "")}">{_e(_when(device["last_trusted"]))}</td>'
            f'<td data-sort="{leaf if leaf is not None else 99999}">{_e(_expiry(device["days_to_expiry"]))}</td>'
            f'<td data-sort="{len(findings)}">{len(findings)}{": " + shown if shown else ""}'
            f'{f" (+{more})" if more > 0 else ""}</td></tr>')
        vector = "".join(f"<span>{_e(category)} {_status_badge(status, device=False)}</span> "
                         for category, status in device["trust_vector"].items())
        items = "".join(f'<li><b>{_e(f["id"])}</b> ({_e(f["severity"])}, {_e(f["category"])}): {_e(f["message"])}</li>'
                        for f in findings)
        changes = dict.fromkeys(CHANGE_KINDS, 0)
        for point in device["timeline"]:
            for kind, count in point["changes"].items():
                changes[kind] += count
        change_text = ", ".join(f"{count} {kind}" for kind, count in changes.items() if count) or "none"
        # a device that needs looking at is open: its state and findings are never hidden
        is_open = " open" if state != TRUSTED or device["status"] in ("warning", "contraindicated") else ""
        sections.append(
            f'<details id="{anchor}"{is_open}><summary><span class="name">{_e(name)}</span> {_state_badge(state)}'
            f'{" " + _status_badge(device["status"]) if device["appraised"] else ""}</summary>'
            f'<p class="why">{_why(verification)}</p>'
            + (f'<p class="why">TPM attestation: {_state_badge(device["tpm"]["state"])} {_why(device["tpm"])}</p>'
               if device.get("tpm") else "") +
            f'<p class="meta">last collection {_e(_when(device["last_collection"]))}; last trusted '
            f'{_e(_when(device["last_trusted"]))}; {len(device["timeline"])} collections; changes: '
            f'{_e(change_text)}</p><div class="cards">{vector}</div>'
            f'{_timeline_chart(device["timeline"], verification["checked"] if state == UNREACHABLE else None)}'
            f'{"<ul class=findings>" + items + "</ul>" if items else "<p>no open findings</p>"}</details>')
    summary = report["summary"]
    counts, states = summary["status_counts"], summary["verification_counts"]
    asof = _when(report["generated"])
    state_text = ", ".join(f"{states.get(s, 0)} {s}" for s in VERIFICATION_STATES if states.get(s, 0))
    status_text = ", ".join(f"{counts.get(s, 0)} {_STATUS_WORD.get(s, s)}" for s in STATUSES)
    charts = [f'<figure><figcaption>Verification of each device\'s newest collection, as of {_e(asof)}: '
              f'{_e(state_text or "no devices")}</figcaption>'
              f'{_share_chart(states, VERIFICATION_STATES, _STATE_COLOR, _STATE_SYMBOL, "devices by verification")}'
              f'</figure>']
    if appraised:
        charts.append(f'<figure><figcaption>Appraisal against the policy, as of {_e(asof)}: {_e(status_text)}'
                      f'</figcaption>{_share_chart(counts, STATUSES, _COLOR, _STATUS_SYMBOL, "devices by appraisal")}'
                      f'</figure>')
    appraisal_head = "<th>appraisal</th>" if appraised else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Fleet trust posture as of {_e(asof)}</title><style>{_CSS}</style></head>
<body>
<h1>Fleet trust posture</h1>
<p class="asof" id="as-of">as of {_e(asof)}</p>
<p class="meta">{summary["devices"]} devices; store {_e(report["store"])}{
"" if appraised else "; no appraisal stored (collect with --policy, or dossier appraise, to add one)"}</p>
{"".join(charts)}
{_legend(appraised)}
<h2>Devices</h2>
<table class="sortable" id="fleet"><thead><tr><th>device</th><th>verification</th><th>why / since when</th>
{appraisal_head}<th>last trusted collection</th><th>certificate expiry in days (leaf / root)</th><th>open findings</th>
</tr></thead>
<tbody>
{"".join(rows)}
</tbody></table>
<h2>Timelines</h2>
{"".join(sections)}
<script>{_SCRIPT}</script>
</body></html>
"""
