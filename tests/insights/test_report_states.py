"""A fleet with one device of each verification state: trusted, untrusted (its data changed
after signing: signature.invalid) and unreachable (every SSH login refused). `dossier status`,
`report --json` and the HTML page as a real browser renders it each tell the three states in
words with their messages, with and without an appraisal policy."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner

import schemas
from collector.collect import CollectOptions, Collector
from collector.insights import AppraisalPolicy
from collector.store import Store
from fleet_setup import enroll_all
from dossier_cli.main import cli
from emulator.faults import Fault
from emulator.fleet import Fleet


TRUSTED, UNTRUSTED, UNREACHABLE = "xr-0001", "xr-0002", "xr-0003"
#: The verifier's words for a signature over changed data, and the collector's for a refused login.
UNTRUSTED_REASON, UNREACHABLE_REASON = "signature.invalid", "ssh.auth_failed"
POLICY = {"format": "trust-dossier/policy/1", "name": "states", "rules": {"secure-boot": {"level": "enforce"}}}


@pytest.fixture(scope="module")
def three_states(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two stores of the same fleet, one collected without a policy and one with it: each
    device collected trusted once, then the second and third devices made to fail."""
    tmp = tmp_path_factory.mktemp("states")
    with Fleet(state_dir=tmp / "fleet", devices=3, provisioned=True, key_type="ecdsa-p256", seed=3,
               files=10) as fleet:
        assert [d.name for d in fleet.devices] == [TRUSTED, UNTRUSTED, UNREACHABLE]
        inventory = tmp / "inventory.yaml"
        fleet.write_inventory(inventory)
        trust = tmp / "trust"
        devices = enroll_all(inventory, trust)
        policy = AppraisalPolicy.from_document(POLICY)
        stores = {"plain": Store.open(tmp / "plain"), "policy": Store.open(tmp / "policy")}
        collectors = [Collector(stores["plain"], trust_store_path=trust, options=CollectOptions(concurrency=3)),
                      Collector(stores["policy"], trust_store_path=trust,
                                options=CollectOptions(concurrency=3, policy=policy))]
        for collector in collectors:
            collector.run(devices)
        fleet.set_fault(UNTRUSTED, Fault.DATA_CHANGED)
        fleet.set_fault(UNREACHABLE, Fault.AUTH_FAILURE)
        for collector in collectors:
            collector.run(devices)
        for store in stores.values():
            store.close()
    return {"plain": tmp / "plain", "policy": tmp / "policy", "trust": trust}


def _report_json(store: Path, trust: Path) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["report", "--store", str(store), "--trust-store", str(trust), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    jsonschema.validate(report, schemas.load("report"))
    return report


@pytest.mark.parametrize("kind", ["plain", "policy"])
def test_report_json_tells_each_verification_state_with_its_message(three_states: dict[str, Any],
                                                                     kind: str) -> None:
    report = _report_json(three_states[kind], three_states["trust"])
    devices = {d["device"]: d for d in report["devices"]}
    states = {name: d["verification"]["state"] for name, d in devices.items()}
    assert states == {TRUSTED: "trusted", UNTRUSTED: "untrusted", UNREACHABLE: "unreachable"}
    assert report["summary"]["verification_counts"] == {"trusted": 1, "untrusted": 1, "unreachable": 1,
                                                        "unknown": 0}
    untrusted = devices[UNTRUSTED]["verification"]
    assert untrusted["reason"] == UNTRUSTED_REASON and "signature" in untrusted["message"]
    unreachable = devices[UNREACHABLE]["verification"]
    assert unreachable["reason"] == UNREACHABLE_REASON and unreachable["message"]
    # since when: the failed poll's time, and the newest collection it was last reached by
    assert unreachable["last_reached"] == devices[UNREACHABLE]["last_collection"]
    assert _moment(unreachable["checked"]) >= _moment(unreachable["last_reached"]).replace(microsecond=0)
    assert devices[UNTRUSTED]["open_findings"][0]["message"] == untrusted["message"] or kind == "policy"
    appraised = {name: d["appraised"] for name, d in devices.items()}
    assert appraised == dict.fromkeys(devices, kind == "policy")
    assert report["summary"]["appraised"] == (3 if kind == "policy" else 0)


@pytest.mark.parametrize("kind", ["plain", "policy"])
def test_status_tells_each_state_with_its_message_and_no_none(three_states: dict[str, Any], kind: str) -> None:
    store, trust = str(three_states[kind]), str(three_states["trust"])
    result = CliRunner().invoke(cli, ["status", "--store", store, "--trust-store", trust, "--json"])
    assert result.exit_code == 1, result.output
    rows = {row["device"]: row for row in json.loads(result.stdout)["devices"]}
    assert rows[TRUSTED]["last_status"] == "trusted" and rows[TRUSTED]["last_message"] is None
    assert (rows[UNTRUSTED]["last_status"], rows[UNTRUSTED]["last_reason"]) == ("untrusted", UNTRUSTED_REASON)
    assert "signature" in rows[UNTRUSTED]["last_message"]
    assert rows[UNREACHABLE]["last_status"].startswith("failed")
    assert rows[UNREACHABLE]["last_reason"] == UNREACHABLE_REASON and rows[UNREACHABLE]["last_message"]
    assert rows[UNREACHABLE]["last_reached"] is not None
    if kind == "policy":
        assert rows[TRUSTED]["appraisal"] == "affirming"

    wide = CliRunner().invoke(cli, ["status", "--store", store, "--trust-store", trust],
                              env={"COLUMNS": "1000"})
    table = wide.output
    assert "None" not in table
    for name, words in ((TRUSTED, ["trusted"]),
                        (UNTRUSTED, ["untrusted", UNTRUSTED_REASON, rows[UNTRUSTED]["last_message"][:30]]),
                        (UNREACHABLE, ["failed", UNREACHABLE_REASON, "not reached since"])):
        line = next(line for line in table.splitlines() if name in line)
        assert all(word in line for word in words), (words, line)
    if kind == "policy":
        assert "affirming" in table

    narrow = CliRunner().invoke(cli, ["status", "--store", store, "--trust-store", trust], env={"COLUMNS": "60"})
    assert all(name in narrow.output for name in (TRUSTED, UNTRUSTED, UNREACHABLE))  # never wrapped
    assert "None" not in narrow.output


def test_status_shows_an_unknown_expiry_as_a_dash(three_states: dict[str, Any], tmp_path: Path) -> None:
    """One side of the expiry unknown (an index row without the root's days) reads `-`, never `None`."""
    import shutil
    import sqlite3

    store = tmp_path / "store"
    shutil.copytree(three_states["plain"], store)
    with sqlite3.connect(store / "index.sqlite") as db:
        db.execute("UPDATE envelopes SET days_root=NULL")
    result = CliRunner().invoke(cli, ["status", "--store", str(store), "--trust-store", str(three_states["trust"])],
                                env={"COLUMNS": "1000"})
    assert "None" not in result.output
    assert re.search(r"\d+/-", result.output), result.output


@pytest.mark.parametrize("kind", ["plain", "policy"])
def test_the_browser_renders_each_state_with_its_message_and_dates(three_states: dict[str, Any], kind: str,
                                                                    headless_browser: Any, tmp_path: Path) -> None:
    """Through headless Chromium: the rendered DOM has the three states in words, the untrusted
    device's message, the unreachable device's message and since when, an "as of" time and
    dated timeline axes; the screenshot is kept beside the test's files."""
    report = _report_json(three_states[kind], three_states["trust"])
    page = tmp_path / "report.html"
    result = CliRunner().invoke(cli, ["report", "--store", str(three_states[kind]), "--trust-store",
                                      str(three_states["trust"]), "--out", str(page)])
    assert result.exit_code == 0, result.output
    dom = headless_browser.dom(page)
    rows = dict(re.findall(r'<tr data-device="([^"]+)"[^>]*>(.*?)</tr>', dom, re.S))
    text = {name: re.sub(r"<[^>]+>", " ", row) for name, row in rows.items()}
    devices = {d["device"]: d["verification"] for d in report["devices"]}
    assert "trusted" in text[TRUSTED] and "untrusted" not in text[TRUSTED]
    assert "untrusted" in text[UNTRUSTED] and UNTRUSTED_REASON in text[UNTRUSTED]
    assert _html_text(devices[UNTRUSTED]["message"]) in text[UNTRUSTED]
    assert "unreachable" in text[UNREACHABLE] and UNREACHABLE_REASON in text[UNREACHABLE]
    assert _html_text(devices[UNREACHABLE]["message"]) in text[UNREACHABLE]
    assert "not reached since" in text[UNREACHABLE]
    assert ("<th>appraisal</th>" in dom) == (kind == "policy")  # the column, only with a policy
    if kind == "policy":
        assert "affirming" in text[TRUSTED]
    as_of = re.search(r'id="as-of">as of (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC)<', dom)
    assert as_of is not None
    day = as_of.group(1)[:10]
    timelines = re.findall(r'<svg[^>]*aria-label="verification, appraisal and changes[^"]*".*?</svg>', dom, re.S)
    assert len(timelines) == 3 and all(f">{day}<" in svg and "collection received (UTC)" in svg for svg in timelines)
    shot = headless_browser.screenshot(page, tmp_path / f"report-{kind}.png")
    assert shot.stat().st_size > 10_000


def _moment(iso: str) -> dt.datetime:
    return dt.datetime.fromisoformat(iso)


def _html_text(message: str) -> str:
    import html

    return html.escape(message, quote=False)
