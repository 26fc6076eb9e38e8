"""One hostile device never kills a collection run (issue 15, item 3).

A mixed emulated fleet over real SSH where one IOS XE device prints a SUDI certificate whose
subjectAltName is not DER (the emulator's `malformed-san` fault) and another alters a printed
value after signing (`data-changed`): before the fix the first made `cert.extensions` raise
ValueError out of `Collector.run` (traceback; no summary, no --json, no metrics). Now each
hostile device is that device's untrusted outcome and the others are trusted. A verifier bug
(any exception but VerifierError) is contained the same way: `verify.error` for its device.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import verifier
import verifier.profiles
import verifier.evidence
from collector.collect import CollectOptions, Collector
from collector.inventory import Device, load_inventory
from collector.store import Store
from dossier_cli.main import cli
from emulator.faults import Fault
from emulator.fleet import Fleet
from mixed_fleet import trust_mixed_fleet

HOSTILE = {"xe-0002": Fault.MALFORMED_SAN, "xe-0004": Fault.DATA_CHANGED}
GOOD = ("xr-0001", "xr-0003", "xr-0005", "xe-0006")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fleet, list[Device], Path]]:
    """xr-0001, xe-0002, xr-0003, xe-0004, xr-0005, xe-0006, enrolled as an operator would."""
    folder = tmp_path_factory.mktemp("hostile")
    with Fleet(state_dir=folder / "fleet", devices=6, platform="mixed", provisioned=True,
               key_type="ecdsa-p256", files=20) as running:
        inventory = folder / "inventory.yaml"
        running.write_inventory(inventory)
        devices = list(load_inventory(inventory).devices)
        trust_mixed_fleet(running, devices, folder / "trust")
        for name, fault in HOSTILE.items():
            running.set_fault(name, fault)
        yield running, devices, folder


def test_a_malformed_san_fails_its_device_and_the_run_finishes(fleet: tuple[Fleet, list[Device], Path],
                                                               tmp_path: Path) -> None:
    _running, _devices, folder = fleet
    metrics = tmp_path / "metrics.prom"
    result = CliRunner().invoke(cli, ["collect", "-i", str(folder / "inventory.yaml"), "--store",
                                      str(tmp_path / "store"), "--trust-store", str(folder / "trust"),
                                      "--json", "--metrics-file", str(metrics)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code == 1, result.output  # untrusted devices, not a crash
    document = json.loads(result.stdout)  # the per-device lines go to stderr
    outcomes = {o["device"]: o for o in document["devices"]}
    assert set(outcomes) == set(HOSTILE) | set(GOOD)
    assert {name: outcomes[name]["status"] for name in GOOD} == dict.fromkeys(GOOD, "trusted")
    malformed = outcomes["xe-0002"]
    assert (malformed["status"], malformed["reason"]) == ("untrusted", "output.bad_certificate"), malformed
    assert "subject_alternative_name" in malformed["message"]
    assert outcomes["xe-0004"]["status"] == "untrusted"
    assert metrics.is_file() and "xe-0002" in metrics.read_text()
    status = CliRunner().invoke(cli, ["status", "--store", str(tmp_path / "store"), "--json"])
    assert status.exit_code in (0, 1), status.output
    assert set(HOSTILE) | set(GOOD) <= set(status.output.split('"')), status.output  # every device indexed


def test_a_verifier_bug_on_one_output_is_that_devices_failure(fleet: tuple[Fleet, list[Device], Path],
                                                               tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception the verifier should never raise (here injected for one XR and one XE device,
    in this process) is `verify.error` naming it; every other device is judged."""
    _running, devices, folder = fleet
    real_envelope, real_output = verifier.verify_envelope, verifier.profiles.verify_output

    def envelope(raw: bytes, **kwargs: Any) -> Any:
        if kwargs.get("device") == "xr-0003":
            raise RecursionError("maximum recursion depth exceeded")
        return real_envelope(raw, **kwargs)

    def output(raw: bytes, **kwargs: Any) -> Any:
        if kwargs.get("device") == "xe-0006":
            raise AttributeError("'str' object has no attribute 'get'")
        return real_output(raw, **kwargs)

    monkeypatch.setattr(verifier.evidence, "verify_envelope", envelope)  # the collector's way in
    monkeypatch.setattr(verifier.profiles, "verify_output", output)
    summary = Collector(Store.open(tmp_path / "store"), trust_store_path=folder / "trust",
                        options=CollectOptions(concurrency=6)).run(devices)
    outcomes = {o.device: o for o in summary.outcomes}
    assert len(outcomes) == len(devices)
    for name, kind in (("xr-0003", "RecursionError"), ("xe-0006", "AttributeError")):
        assert (outcomes[name].status, outcomes[name].reason) == ("untrusted", "verify.error")
        assert kind in outcomes[name].message and "verifier bug" in outcomes[name].message
    assert outcomes["xr-0001"].status == outcomes["xr-0005"].status == "trusted"
    assert json.loads(json.dumps(summary.to_json()))["devices"]
