"""The fleet report: one data model (`build_report`, also `dossier report --json`) and one
self-contained HTML rendering of it (`render_html`): inline CSS, inline SVG charts, a small
inline script for sorting; no network, no external scripts, fonts or images."""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Mapping, Sequence
from typing import Any

from ..store import EnvelopeRecord, Store
from .findings import Category, DriftId, Finding
from .history import StoredVerdicts, replay

__all__ = ["CHANGE_KINDS", "REPORT_FORMAT", "build_report", "render_html"]

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


def _expiry_days(store: Store, record: EnvelopeRecord | None, now: dt.datetime) -> dict[str, int | None]:
    """Days from `now` until leaf and root expire, from the newest trusted verdict."""
    days: dict[str, int | None] = {"leaf": None, "root": None}
    if record is None:
        return days
    verdict = store.verdict(record)
    if verdict is None:
        return {"leaf": record.days_leaf, "root": record.days_root}
    for role in ("leaf", "root"):
        cert = verdict.get(role) if isinstance(verdict, dict) else None
        if isinstance(cert, dict) and isinstance(cert.get("not_after"), str):
            try:
                days[role] = (dt.datetime.fromisoformat(cert["not_after"]) - now) // dt.timedelta(days=1)
            except ValueError:
                days[role] = None
    return days


def build_report(store: Store, verdicts: StoredVerdicts, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """The report's data: one entry per device with its table row and its timeline (its drift
    from what verifying each stored output returns: `verdicts`)."""
    now = now or dt.datetime.now(dt.UTC)
    latest, latest_trusted, states = store.latest(), store.latest_trusted(), store.readable_states()
    statuses = {path: status for _, _, path, status in store.appraisal_statuses()}
    devices = []
    for name in sorted(set(latest) | set(states)):
        timeline = []
        for step in replay(store, verdicts, name):
            timeline.append({
                "received": step.record.received,
                "envelope": step.record.path,
                "trusted": step.record.trusted,
                "status": statuses.get(step.record.path, "none"),
                "changes": _counts(step.drift),
            })
        record = latest.get(name)
        appraisal = store.appraisal(record) if record is not None else None
        open_findings = []
        if appraisal is not None:
            open_findings = [{"id": f["id"], "severity": f["severity"], "category": f["category"],
                              "message": f["message"]}
                             for f in appraisal.get("findings", []) if f.get("severity") != "info"]
        elif record is not None and record.trusted is False:
            open_findings = [{"id": reason, "severity": "error", "category": str(Category.IDENTITY),
                              "message": "the verifier did not trust the newest envelope"}
                             for reason in record.reasons]
        state = states.get(name, {})
        devices.append({
            "device": name,
            "last_collection": record.received if record else None,
            "last_poll_status": state.get("last_status"),
            "last_trusted": latest_trusted[name].received if name in latest_trusted else None,
            "status": appraisal["status"] if appraisal else "none",
            "trust_vector": (appraisal or {}).get("trust_vector", {}),
            "days_to_expiry": _expiry_days(store, latest_trusted.get(name), now),
            "open_findings": open_findings,
            "timeline": timeline,
        })
    counts = dict.fromkeys(STATUSES, 0)
    for device in devices:
        counts[device["status"] if device["status"] in counts else "none"] += 1
    return {"format": REPORT_FORMAT, "generated": now.isoformat(timespec="seconds"), "store": str(store.root),
            "summary": {"devices": len(devices), "status_counts": counts}, "devices": devices}


# --- HTML ------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:1.5rem auto;max-width:1200px;
padding:0 1rem;color:#212121;background:#fafafa}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem}
.meta{color:#616161;font-size:.9rem}
table{border-collapse:collapse;width:100%;font-size:.9rem;background:#fff}
th,td{border-bottom:1px solid #e0e0e0;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{cursor:pointer;user-select:none;background:#eeeeee;position:sticky;top:0}
th[aria-sort=ascending]::after{content:' \\25B2'}th[aria-sort=descending]::after{content:' \\25BC'}
.status{display:inline-block;padding:.05rem .45rem;border-radius:.6rem;color:#fff;font-weight:600;font-size:.8rem}
.affirming{background:#2e7d32}.warning{background:#ef8f00}.contraindicated{background:#c62828}.none{background:#9e9e9e}
details{background:#fff;border:1px solid #e0e0e0;border-radius:.3rem;margin:.5rem 0;padding:.4rem .8rem}
summary{cursor:pointer;font-weight:600}
.cards{display:flex;gap:1rem;flex-wrap:wrap;align-items:center}
.legend span{margin-right:.8rem;font-size:.8rem}
.legend i{display:inline-block;width:.7rem;height:.7rem;margin-right:.25rem;vertical-align:middle}
ul.findings{margin:.3rem 0;padding-left:1.2rem;font-size:.85rem}
"""

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


def _status_badge(status: str) -> str:
    return f'<span class="status {_e(status)}">{_e(status)}</span>'


def _status_chart(counts: Mapping[str, int]) -> str:
    total = max(1, sum(counts.values()))
    width, x, parts = 600, 0.0, []
    for status in STATUSES:
        share = counts.get(status, 0) / total * width
        if share:
            parts.append(f'<rect x="{x:.1f}" y="0" width="{share:.1f}" height="28" fill="{_COLOR[status]}">'
                         f'<title>{_e(status)}: {counts[status]}</title></rect>')
            if share > 40:
                parts.append(f'<text x="{x + 6:.1f}" y="19" fill="#fff" font-size="13">{counts[status]}</text>')
        x += share
    return (f'<svg role="img" aria-label="devices by status" width="{width}" height="28" '
            f'viewBox="0 0 {width} 28">{"".join(parts)}</svg>')


def _timeline_chart(timeline: Sequence[Mapping[str, Any]]) -> str:
    points = list(timeline)[-MAX_TIMELINE_POINTS:]
    if not points:
        return "<p>no collections</p>"
    step, height, top = 18, 120, 24
    width = max(200, 40 + step * len(points))
    biggest = max([1] + [sum(p["changes"].values()) for p in points])
    parts = [f'<line x1="30" y1="{height}" x2="{width}" y2="{height}" stroke="#bdbdbd"/>']
    for number, point in enumerate(points):
        cx = 40 + number * step
        parts.append(f'<circle cx="{cx}" cy="12" r="6" fill="{_COLOR.get(point["status"], "#9e9e9e")}">'
                     f'<title>{_e(point["received"])}: {_e(point["status"])}'
                     f'{"" if point["trusted"] else " (untrusted)"}</title></circle>')
        y = float(height)
        for kind in CHANGE_KINDS:
            count = point["changes"].get(kind, 0)
            if not count:
                continue
            bar = (height - top) * count / biggest
            y -= bar
            parts.append(f'<rect x="{cx - 6}" y="{y:.1f}" width="12" height="{bar:.1f}" fill="{_KIND_COLOR[kind]}">'
                         f'<title>{_e(point["received"])}: {count} {kind}</title></rect>')
    return (f'<svg role="img" aria-label="status and changes over time" width="{width}" height="{height + 4}" '
            f'viewBox="0 0 {width} {height + 4}">{"".join(parts)}</svg>')


def _legend() -> str:
    statuses = "".join(f'<span><i style="background:{_COLOR[s]}"></i>{s}</span>' for s in STATUSES)
    kinds = "".join(f'<span><i style="background:{_KIND_COLOR[k]}"></i>{k}</span>' for k in CHANGE_KINDS)
    return f'<div class="legend">{statuses}</div><div class="legend">{kinds}</div>'


def render_html(report: Mapping[str, Any]) -> str:
    """The report as one self-contained HTML page."""
    rows, sections = [], []
    for device in report["devices"]:
        name = device["device"]
        anchor = "dev-" + "".join(c if c.isalnum() else "-" for c in name)
        expiry = device["days_to_expiry"]
        leaf = expiry.get("leaf")
        findings = device["open_findings"]
        shown = ", ".join(_e(f["id"]) for f in findings[:MAX_OPEN_FINDINGS_SHOWN])
        more = len(findings) - MAX_OPEN_FINDINGS_SHOWN
        rank = STATUSES.index(device["status"]) if device["status"] in STATUSES else len(STATUSES)
        rows.append(
            f'<tr data-device="{_e(name)}" data-status="{_e(device["status"])}">'
            f'<td data-sort="{_e(name)}"><a href="#{anchor}">{_e(name)}</a></td>'
            f'<td data-sort="{_e(device["last_trusted"] or "")}">{_e((device["last_trusted"] or "never")[:19])}</td>'
            f'<td data-sort="{rank}">{_status_badge(device["status"])}</td>'
            f'<td data-sort="{leaf if leaf is not None else 99999}">{_e("" if leaf is None else leaf)}'
            f'{"" if expiry.get("root") is None else " / " + _e(expiry["root"])}</td>'
            f'<td data-sort="{len(findings)}">{len(findings)}{": " + shown if shown else ""}'
            f'{f" (+{more})" if more > 0 else ""}</td></tr>')
        vector = "".join(f"<span>{_e(c)} {_status_badge(s)}</span> " for c, s in device["trust_vector"].items())
        items = "".join(f'<li><b>{_e(f["id"])}</b> ({_e(f["severity"])}, {_e(f["category"])}): {_e(f["message"])}</li>'
                        for f in findings)
        changes = dict.fromkeys(CHANGE_KINDS, 0)
        for point in device["timeline"]:
            for kind, count in point["changes"].items():
                changes[kind] += count
        change_text = ", ".join(f"{count} {kind}" for kind, count in changes.items() if count) or "none"
        sections.append(
            f'<details id="{anchor}"><summary>{_e(name)} {_status_badge(device["status"])}</summary>'
            f'<p class="meta">last collection {_e(device["last_collection"])}; last trusted '
            f'{_e(device["last_trusted"] or "never")}; {len(device["timeline"])} collections; changes: '
            f'{_e(change_text)}</p><div class="cards">{vector}</div>'
            f'{_timeline_chart(device["timeline"])}'
            f'{"<ul class=findings>" + items + "</ul>" if items else "<p>no open findings</p>"}</details>')
    counts = report["summary"]["status_counts"]
    summary = ", ".join(f"{counts.get(s, 0)} {s}" for s in STATUSES)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Fleet trust posture</title><style>{_CSS}</style></head>
<body>
<h1>Fleet trust posture</h1>
<p class="meta">{report["summary"]["devices"]} devices ({_e(summary)}); store {_e(report["store"])};
generated {_e(report["generated"])}</p>
{_status_chart(counts)}
{_legend()}
<h2>Devices</h2>
<table class="sortable" id="fleet"><thead><tr><th>device</th><th>last trusted collection (UTC)</th>
<th>status</th><th>days to certificate expiry (leaf / root)</th><th>open findings</th></tr></thead>
<tbody>
{"".join(rows)}
</tbody></table>
<h2>Timelines</h2>
{"".join(sections)}
<script>{_SCRIPT}</script>
</body></html>
"""
