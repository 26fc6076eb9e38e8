"""Tolerant reading: a dossier shaped as a newer or older IOS XR release could shape it is still
trusted (authentic and fresh), with a warning that names the JSON path, the rule, what was
expected and what was found; `Policy(strict_dossier=True)` makes each an error. What makes the
content ambiguous stays an error."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest

import schemas
from vbuilder import NOW, Device, dossier
from verifier import FindingId, Policy, Severity, verify_envelope
from verifier.verify import Verdict

Edit = Callable[[dict[str, Any]], None]


def _first_file(document: dict[str, Any]) -> dict[str, Any]:
    return document["filesystem-inventory"]["filesystem-inventory"]["0/RP0/CPU0"]["snapshots"][0]["files"][0]


def _first_snapshot(document: dict[str, Any]) -> dict[str, Any]:
    return document["filesystem-inventory"]["filesystem-inventory"]["0/RP0/CPU0"]["snapshots"][0]


# name: (edit, JSON path, rule, expected fragment, found fragment)
DEPARTURES: dict[str, tuple[Edit, str, str, str, str]] = {
    "unknown member at top level": (
        lambda d: d.update({"collection-host": "r1"}),
        "/collection-host", "additionalProperties: false", "'model-name'", "'collection-host' = \"r1\""),
    "unknown item": (
        lambda d: d.update({"boot-log": {"result-code": "Success", "boot-log": []}}),
        "/boot-log", "additionalProperties: false", "'packages'", "'boot-log'"),
    "unknown member inside an item": (
        lambda d: d["version"].update({"build-host": "b1"}),
        "/version/build-host", "additionalProperties: false", "'version'", "'build-host' = \"b1\""),
    "unknown member inside a file entry": (
        lambda d: _first_file(d).update({"selinux-label": "system_u"}),
        "/filesystem-inventory/filesystem-inventory/0~1RP0~1CPU0/snapshots/0/files/0/selinux-label",
        "additionalProperties: false", "'digest'", "'selinux-label' = \"system_u\""),
    "missing snap-time": (
        lambda d: _first_snapshot(d).pop("snap-time"),
        "/filesystem-inventory/filesystem-inventory/0~1RP0~1CPU0/snapshots/0/snap-time",
        "required", "the member 'snap-time'", "none"),
    "missing payload member": (
        lambda d: d["version"].pop("version"),
        "/version/version", "required", "the member 'version'", "none"),
}


@pytest.fixture(scope="module")
def device() -> Device:
    return Device("p256", "p256")


def _verify(device: Device, edit: Edit, policy: Policy | None = None) -> Verdict:
    document = dossier(device.nonce.hex(), files=2)
    edit(document)
    kwargs: dict[str, Any] = {"roots": [device.root], "expected_nonce": device.nonce, "at": NOW}
    if policy is not None:
        kwargs["policy"] = policy
    return verify_envelope(device.envelope(document=document), **kwargs)


@pytest.mark.parametrize("name", sorted(DEPARTURES))
def test_a_departure_a_release_could_make_is_a_warning(device: Device, name: str) -> None:
    edit, path, rule, expected, found = DEPARTURES[name]
    verdict = _verify(device, edit)
    assert verdict.trusted, [f.message for f in verdict.findings]
    assert verdict.dossier is not None
    warnings = [f for f in verdict.findings if f.id == FindingId.DOSSIER_UNEXPECTED_CONTENT]
    assert len(warnings) == 1, verdict.ids()
    warning = warnings[0]
    assert warning.severity is Severity.WARNING
    assert f"at {path}: " in warning.message and f"rule {rule}" in warning.message, warning.message
    assert expected in warning.expected and found in warning.found, (warning.expected, warning.found)
    assert expected in warning.message and found in warning.message
    jsonschema.validate(verdict.to_json(), schemas.load("verdict"))


@pytest.mark.parametrize("name", sorted(DEPARTURES))
def test_strict_dossier_makes_each_departure_an_error(device: Device, name: str) -> None:
    edit, path, rule, _, _ = DEPARTURES[name]
    verdict = _verify(device, edit, Policy(strict_dossier=True))
    assert not verdict.trusted and verdict.dossier is None
    errors = [f for f in verdict.errors if f.id == FindingId.DOSSIER_SCHEMA]
    assert len(errors) == 1 and f"at {path}: " in errors[0].message, verdict.ids()
    assert FindingId.DOSSIER_UNEXPECTED_CONTENT not in verdict.ids()


def test_a_new_member_in_every_file_entry_is_one_warning(device: Device) -> None:
    def edit(document: dict[str, Any]) -> None:
        for entry in _first_snapshot(document)["files"]:
            entry["selinux-label"] = "system_u"
    verdict = _verify(device, edit)
    warnings = [f for f in verdict.findings if f.id == FindingId.DOSSIER_UNEXPECTED_CONTENT]
    assert verdict.trusted and len(warnings) == 1
    assert "/files/0/selinux-label" in warnings[0].message and "1 more place(s)" in warnings[0].message


@pytest.mark.parametrize(("name", "edit", "path"), [
    ("a payload of the wrong type", lambda d: d["version"].update({"version": 7}), "/version/version"),
    ("a value outside its enumeration", lambda d: _first_file(d).update({"change-kind": "renamed"}),
     "/filesystem-inventory/filesystem-inventory/0~1RP0~1CPU0/snapshots/0/files/0/change-kind"),
    ("an item without its result-code", lambda d: d["version"].pop("result-code"), "/version/result-code"),
])
def test_a_value_that_breaks_its_rule_stays_an_error(device: Device, name: str, edit: Edit, path: str) -> None:
    verdict = _verify(device, edit)
    assert not verdict.trusted, name
    errors = [f for f in verdict.errors if f.id == FindingId.DOSSIER_SCHEMA]
    assert errors and f"at {path}: " in errors[0].message, [f.message for f in verdict.findings]


def test_ambiguous_content_stays_an_error_beside_a_tolerated_departure(device: Device) -> None:
    """An unknown member does not make a duplicate key or a differing dossier nonce tolerable."""
    text = json.dumps(dossier(device.nonce.hex()) | {"collection-host": "r1"})
    duplicated = text.replace('"collection-host": "r1"', '"collection-host": "r1", "collection-host": "r2"')
    verdict = verify_envelope(device.envelope(data=duplicated), roots=[device.root],
                              expected_nonce=device.nonce, at=NOW)
    assert not verdict.trusted and "dossier.invalid_json" in verdict.ids(), verdict.ids()
    verdict = _verify(device, lambda d: d.update({"collection-host": "r1", "nonce": "ff"}))
    assert not verdict.trusted and "nonce.dossier_mismatch" in verdict.ids(), verdict.ids()
