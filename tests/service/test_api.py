"""The API over a collected emulated fleet: each endpoint's JSON validates against its schema,
states and content come from verification, errors are JSON with expected and found."""

from __future__ import annotations

import hashlib
from typing import Any

import jsonschema
import pytest

from collector.service.schemas import response_schema

from service_rig import GOOD, TAMPERED, UNREACHABLE


def _valid(name: str, body: Any) -> Any:
    jsonschema.Draft202012Validator(response_schema(name)).validate(body)
    return body


def test_fleet_lists_every_device_with_its_state(client: Any) -> None:
    response = client.get("/api/v1/fleet")
    assert response.status_code == 200, response.text
    body = _valid("api-fleet", response.json())
    states = {row["device"]: row["verification"]["state"] for row in body["devices"]}
    assert states == {GOOD: "trusted", TAMPERED: "untrusted", UNREACHABLE: "unreachable"}
    tampered = next(row for row in body["devices"] if row["device"] == TAMPERED)
    assert tampered["verification"]["reason"] and tampered["verification"]["message"]
    assert body["counts"] == {"trusted": 1, "untrusted": 1, "unreachable": 1}
    assert all(row["platform"] == "iosxr" for row in body["devices"])


def test_fleet_filters_and_pages_with_a_cursor(client: Any) -> None:
    body = client.get("/api/v1/fleet", params={"state": "untrusted"}).json()
    assert [row["device"] for row in body["devices"]] == [TAMPERED]
    first = client.get("/api/v1/fleet", params={"limit": 2}).json()
    assert [row["device"] for row in first["devices"]] == [GOOD, TAMPERED] and first["next"] == TAMPERED
    second = client.get("/api/v1/fleet", params={"limit": 2, "after": first["next"]}).json()
    assert [row["device"] for row in second["devices"]] == [UNREACHABLE] and second["next"] is None
    bad = client.get("/api/v1/fleet", params={"state": "fine"})
    assert bad.status_code == 400
    error = _valid("api-error", bad.json())["error"]
    assert "trusted" in error["expected"] and error["found"] == "fine"


def test_fleet_etag_answers_304_when_unchanged(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same fleet asked for again answers 304, also when the second request is answered in
    a later second than the first (its `generated` time differs, its content does not): on a
    loaded machine two requests often straddle a second."""
    import datetime as dt
    import itertools

    from collector.service import api

    moments = itertools.chain([dt.datetime(2026, 12, 7, 2, 0, 0, 999_000, tzinfo=dt.UTC)],
                              itertools.repeat(dt.datetime(2026, 12, 7, 2, 0, 1, 1_000, tzinfo=dt.UTC)))
    monkeypatch.setattr(api, "_now", lambda: next(moments))
    first = client.get("/api/v1/fleet", params={"state": "trusted"})
    etag = first.headers["etag"]
    again = client.get("/api/v1/fleet", params={"state": "trusted"}, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.headers["etag"] == etag and not again.content
    other = client.get("/api/v1/fleet", params={"state": "untrusted"}, headers={"If-None-Match": etag})
    assert other.status_code == 200 and other.headers["etag"] != etag


def test_fleet_rows_stay_the_apis_after_a_dashboard_page(client: Any) -> None:
    """The dashboard adds columns to the rows it shows: to copies, never to the fleet's shared
    rows the API answers with (which must keep validating against their schema)."""
    assert client.get("/dashboard/").status_code == 200
    _valid("api-fleet", client.get("/api/v1/fleet").json())


def test_fleet_as_of_a_past_time_shows_the_first_collection(client: Any) -> None:
    history = client.get(f"/api/v1/devices/{TAMPERED}/history").json()["collections"]
    first = history[-1]["received"]
    body = _valid("api-fleet", client.get("/api/v1/fleet", params={"as_of": first.replace("Z", "+00:00")}).json())
    rows = {row["device"]: row for row in body["devices"]}
    assert rows[TAMPERED]["verification"]["state"] == "trusted"
    assert rows[TAMPERED]["last_envelope"] == history[-1]["envelope"]


def test_device_history_and_outputs(client: Any) -> None:
    device = _valid("api-device", client.get(f"/api/v1/devices/{TAMPERED}").json())
    assert device["device"]["verification"]["state"] == "untrusted"
    history = _valid("api-history", client.get(f"/api/v1/devices/{TAMPERED}/history", params={"limit": 1}).json())
    newest = history["collections"][0]
    assert history["next"] == newest["envelope"]
    older = client.get(f"/api/v1/devices/{TAMPERED}/history", params={"before": history["next"]}).json()
    assert len(older["collections"]) == 1 and older["next"] is None
    output = _valid("api-output", client.get(f"/api/v1/devices/{TAMPERED}/outputs/{newest['envelope']}").json())
    assert output["verdict"]["trusted"] is False
    raw = client.get(f"/api/v1/devices/{TAMPERED}/outputs/{newest['envelope']}/raw")
    assert raw.headers["content-type"] == "application/octet-stream"
    assert hashlib.sha256(raw.content).hexdigest() == newest["sha256"] == output["sha256"]


def test_drift_between_two_collections(client: Any) -> None:
    body = _valid("api-drift", client.get(f"/api/v1/devices/{GOOD}/drift").json())
    assert body["device"] == GOOD and body["before"] != body["after"]
    assert client.get(f"/api/v1/devices/{GOOD}/drift", params={"before": "99"}).status_code == 404


def test_search_finds_packages_and_files_from_trusted_content(client: Any, collected: Any) -> None:
    output = client.get(f"/api/v1/devices/{GOOD}").json()["device"]
    assert output["last_trusted"]
    some = client.get("/api/v1/search/packages", params={"name": "no-such-package"}).json()
    assert _valid("api-search", some)["matches"] == []
    facts = collected.fleet[GOOD].device.facts
    package = facts.packages[0]
    found = _valid("api-search", client.get("/api/v1/search/packages", params={"name": package.name,
                                                                                "version": package.version}).json())
    assert {match["device"] for match in found["matches"]} >= {GOOD}


@pytest.mark.parametrize("path", ["/api/v1/devices/nobody", "/api/v1/devices/xr-0001/outputs/nothing",
                                  "/api/v1/devices/..%2F..%2Fetc/history", "/api/v1/nowhere"])
def test_unknown_things_are_json_errors(client: Any, path: str) -> None:
    response = client.get(path)
    assert response.status_code in (400, 404)
    _valid("api-error", response.json())


def test_the_state_filter_names_the_report_states() -> None:
    from typing import get_args

    from collector.insights.report import VERIFICATION_STATES
    from collector.service.api import VerificationState

    assert get_args(VerificationState) == VERIFICATION_STATES


def test_a_misspelt_query_parameter_is_refused_not_ignored(client: Any) -> None:
    response = client.get("/api/v1/fleet", params={"stat": "trusted"})
    assert response.status_code == 400
    error = _valid("api-error", response.json())["error"]
    assert error["code"] == "query.unknown" and error["found"] == "stat" and "state" in error["expected"]


def test_search_finds_a_file_at_its_digest(client: Any, collected: Any) -> None:
    """The file and digest are read here from the verifier's own verdict of the first output (its
    full snapshot; an independent path); the service answers from its file state as of the
    newest trusted output, which the later increments leave that file in."""
    from verifier import TrustStore
    from verifier.evidence import verify_stored

    oldest = client.get(f"/api/v1/devices/{GOOD}/history").json()["collections"][-1]["envelope"]
    verdict = verify_stored(collected.store_dir / GOOD / oldest, trust_store=TrustStore.open(collected.trust))
    assert verdict.trusted
    nodes = verdict.dossier["filesystem-inventory"]["filesystem-inventory"]
    node, content = next(iter(nodes.items()))
    entry = content["snapshots"][0]["files"][0]
    path, digest = entry["name"], entry["digest"]["digest-value"]
    found = _valid("api-search", client.get("/api/v1/search/files", params={"path": path}).json())
    mine = [match for match in found["matches"] if match["device"] == GOOD]
    assert mine and mine[0]["node"] == node and mine[0]["file"] == path
    assert mine[0]["digest"] == digest
    import base64

    for spelling in (digest, base64.b64decode(digest).hex()):
        at = client.get("/api/v1/search/files", params={"path": path, "digest": spelling}).json()["matches"]
        assert GOOD in {match["device"] for match in at}
    elsewhere = client.get("/api/v1/search/files", params={"path": path, "digest": "00" * 32}).json()
    assert elsewhere["matches"] == []


def test_a_damaged_stored_output_is_an_error_of_its_own_never_a_500(collected: Any, tmp_path: Any) -> None:
    import shutil

    from fastapi.testclient import TestClient

    from service_rig import Collected, make_app

    store = tmp_path / "store"
    shutil.copytree(collected.store_dir, store)
    newest = sorted((store / GOOD).glob("*.envelope"))[-1]
    (newest.parent / (newest.name + ".meta.json")).write_text("{not json")
    client = TestClient(make_app(Collected(store, collected.trust, collected.inventory, collected.fleet),
                                 warm_on_start=False))
    fleet = client.get("/api/v1/fleet")
    rows = {row["device"]: row for row in _valid("api-fleet", client.get("/api/v1/fleet").json())["devices"]}
    assert len(rows) == 3, rows  # the other devices are shown as ever
    damaged = rows[GOOD]["verification"]
    assert damaged["state"] == "untrusted" and damaged["reason"] == "store.unreadable", (newest.name, rows[GOOD])
    assert newest.name in damaged["message"] and str(tmp_path) not in damaged["message"], damaged
    assert _valid("api-device", client.get(f"/api/v1/devices/{GOOD}").json())["device"]["verification"] == damaged
    for path in (f"/api/v1/devices/{GOOD}/outputs/{newest.name}", f"/api/v1/devices/{GOOD}/drift"):
        response = client.get(path)
        assert response.status_code == 409, (path, response.text)
        error = _valid("api-error", response.json())["error"]
        assert error["code"] == "store.unreadable" and str(tmp_path) not in error["message"]
    search = _valid("api-search", client.get("/api/v1/search/packages", params={"name": "x"}).json())
    assert search["unreadable"] == [GOOD]
    raw = client.get(f"/api/v1/devices/{GOOD}/outputs/{newest.name}/raw")
    assert raw.status_code == 200 and raw.content == newest.read_bytes()  # the bytes are still served


def test_error_codes_are_spelled_once_and_listed_in_the_schema() -> None:
    from collector.service.errors import ErrorCode

    listed = response_schema("api-error")["properties"]["error"]["properties"]["code"]["enum"]
    assert sorted(listed) == sorted(code.value for code in ErrorCode)


def test_refuses_to_start_without_a_trust_store(collected: Any, tmp_path: Any) -> None:
    from collector.service.app import create_app
    from collector.service.errors import ServiceError
    from collector.service.settings import ServiceSettings

    with pytest.raises(ServiceError, match="trust store"):
        create_app(ServiceSettings(store=collected.store_dir, trust_store=tmp_path / "none"))


def test_content_gives_release_packages_and_files_of_each_newest_trusted_output(app: Any, collected: Any) -> None:
    """What the dashboard's device page and fleet consensus read (`StoreQueries.fleet_content`)."""
    unreadable: list[str] = []
    fleet = app.state.queries.fleet_content(unreadable)
    assert set(fleet) == {GOOD, TAMPERED, UNREACHABLE} and unreadable == []  # each has a trusted output
    record, content = fleet[GOOD]
    facts = collected.fleet[GOOD].device.facts
    assert content.packages[facts.packages[0].name] == facts.packages[0].version
    assert content.release and content.files
