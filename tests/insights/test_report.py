"""The fleet report for a 50-device store collected from the emulator: every device present
with the right status, no external references, JSON valid against its schema."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
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
from emulator import facts as device_facts
from emulator.faults import Fault
from emulator.fleet import Fleet

DEVICES = 50
POLICY = {
    "format": "trust-dossier/policy/1",
    "name": "report-test",
    "rules": {
        "secure-boot": {"level": "enforce"},
        "hardware-changes": {"level": "warn"},
        "package-integrity": {"level": "enforce"},
        "certificates": {"level": "enforce"},
    },
}


class _FleetPage(HTMLParser):
    """Rows of the fleet table and every attribute that could reach outside the file."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, str] = {}
        self.references: list[tuple[str, str, str]] = []
        self.tags: set[str] = set()
        self.svg = 0
        self.sections: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.tags.add(tag)
        if tag == "svg":
            self.svg += 1
        if tag == "tr" and "data-device" in values:
            self.rows[str(values["data-device"])] = str(values["data-status"])
        if tag == "details" and values.get("id"):
            self.sections.add(str(values["id"]))
        for name, value in attrs:
            if name in ("src", "href", "action", "srcset", "poster", "data", "xlink:href"):
                self.references.append((tag, name, value or ""))


@pytest.fixture(scope="module")
def fleet_store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("report")
    expected: dict[str, str] = {}
    with Fleet(state_dir=tmp / "fleet", devices=DEVICES, provisioned=True, key_type="ecdsa-p256",
               seed=11, files=10) as fleet:
        inventory = tmp / "inventory.yaml"
        fleet.write_inventory(inventory)
        trust = tmp / "trust"
        devices = enroll_all(inventory, trust)
        store = Store.open(tmp / "store")
        policy = AppraisalPolicy.from_document(POLICY)
        collector = Collector(store, trust_store_path=trust, options=CollectOptions(concurrency=8, policy=policy))
        collector.run(devices)
        for number, emulated in enumerate(fleet.devices):
            device = emulated.device
            with device.lock:
                if number < 3:
                    device_facts.set_secure_boot(device.facts, False)
                    expected[emulated.name] = "contraindicated"
                elif number < 6:
                    device_facts.swap_part(device.facts, device.facts.inventory[-1].name)
                    expected[emulated.name] = "warning"
                else:
                    expected[emulated.name] = "affirming"
                device.save()
        fleet.set_fault(fleet.devices[6].name, Fault.ROOT_REPLACED)
        expected[fleet.devices[6].name] = "contraindicated"
        collector.run(devices)
        store.close()
    return {"store": tmp / "store", "trust": trust, "expected": expected}


def test_report_html_has_every_device_with_its_status_and_nothing_external(fleet_store: dict[str, Any],
                                                                            tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = CliRunner().invoke(cli, ["report", "--store", str(fleet_store["store"]), "--trust-store", str(fleet_store["trust"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text("utf-8")
    page = _FleetPage()
    page.feed(text)
    assert page.rows == fleet_store["expected"]
    assert all(value.startswith("#") for _, name, value in page.references if name == "href"), page.references
    assert not [r for r in page.references if r[1] != "href"], page.references
    assert "link" not in page.tags and "iframe" not in page.tags and "img" not in page.tags
    lowered = text.lower()
    assert "http://" not in lowered and "https://" not in lowered and "@import" not in lowered
    assert "url(" not in lowered
    assert page.svg >= DEVICES + 1  # the fleet chart and one timeline per device
    assert len(page.sections) == DEVICES


def test_report_json_matches_schema_and_the_html(fleet_store: dict[str, Any]) -> None:
    result = CliRunner().invoke(cli, ["report", "--store", str(fleet_store["store"]), "--trust-store", str(fleet_store["trust"]), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    jsonschema.validate(report, schemas.load("report"))
    statuses = {d["device"]: d["status"] for d in report["devices"]}
    assert statuses == fleet_store["expected"]
    counts = report["summary"]["status_counts"]
    assert counts == {"affirming": DEVICES - 7, "warning": 3, "contraindicated": 4, "none": 0}
    swapped = next(d for d in report["devices"] if d["status"] == "warning")
    assert swapped["timeline"][-1]["changes"]["hardware"] == 1
    assert {f["id"] for f in swapped["open_findings"]} == {"appraisal.hardware.changed"}
    replaced = report["devices"][6]
    assert replaced["timeline"][-1]["trusted"] is False
    assert replaced["timeline"][-1]["changes"]["certificates"] == 1
    assert replaced["last_trusted"] == replaced["timeline"][0]["received"]
    assert all(d["days_to_expiry"]["leaf"] is not None for d in report["devices"])


def test_status_prints_the_appraisal(fleet_store: dict[str, Any]) -> None:
    result = CliRunner().invoke(cli, ["status", "--store", str(fleet_store["store"]), "--json"])
    rows = {row["device"]: row["appraisal"] for row in json.loads(result.stdout)["devices"]}
    assert rows == fleet_store["expected"]


def test_report_in_a_headless_browser(fleet_store: dict[str, Any], headless_browser: Any, tmp_path: Path) -> None:
    """Rendered by Chromium: every device row with its verification state in words, the device
    whose root was replaced untrusted with the verifier's message, dated timelines; the
    screenshot is kept with the test's files."""
    out = tmp_path / "report.html"
    result = CliRunner().invoke(cli, ["report", "--store", str(fleet_store["store"]), "--trust-store",
                                      str(fleet_store["trust"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    dom = headless_browser.dom(out)
    states = dict(re.findall(r'<tr data-device="([^"]+)"[^>]*data-verification="([^"]+)"', dom))
    replaced = sorted(fleet_store["expected"])[6]
    assert states == {name: "untrusted" if name == replaced else "trusted" for name in fleet_store["expected"]}
    row = re.search(rf'<tr data-device="{replaced}".*?</tr>', dom, re.S)
    assert row is not None and "\u2718 untrusted" in row.group(0) and "<b>chain." in row.group(0)
    assert len(re.findall(r"collection received \(UTC\)", dom)) == DEVICES
    shot = headless_browser.screenshot(out, tmp_path / "report.png")
    assert shot.stat().st_size > 10_000
