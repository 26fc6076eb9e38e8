"""The dashboard's pages as a client without JavaScript reads them (FastAPI's TestClient over
the real app and a collected store): every device with its state in words, filters and sorting
by query parameters, a past date, device text inert, and sign-in with a read token."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from collector.service.tokens import Tokens


class _Page(HTMLParser):
    """Fleet rows (device -> state), the text of every element with an id, and references."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, str] = {}
        self.references: list[tuple[str, str]] = []
        self.scripts: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "tr" and "data-device" in values and "data-state" in values:
            self.rows[str(values["data-device"])] = str(values["data-state"])
        if tag == "script":
            self.scripts.append(values)
        for name, value in attrs:
            if name in ("src", "href", "action"):
                self.references.append((name, value or ""))


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


def _app(fleet: Any, tokens: Path | None = None) -> Any:
    from collector.service.app import create_app
    from collector.service.settings import ServiceSettings

    return create_app(ServiceSettings(store=fleet.store, trust_store=fleet.trust, tokens_file=tokens),
                      start_collector=False)


@pytest.fixture(scope="module")
def client(collected_fleet: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    with TestClient(_app(collected_fleet)) as test_client:
        yield test_client


def test_fleet_page_lists_every_device_with_its_state_in_words_and_nothing_external(client: Any,
                                                                                     collected_fleet: Any) -> None:
    answer = client.get("/dashboard")
    assert answer.status_code == 200
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    page = _parse(answer.text)
    expected = dict.fromkeys(collected_fleet.devices, "trusted")
    expected[collected_fleet.untrusted_device] = "untrusted"
    expected[collected_fleet.unreachable_device] = "unreachable"
    assert page.rows == expected
    assert re.search(r'class="badge v-untrusted"[^>]*>\S+ untrusted<', answer.text)  # colour class and word
    # Only this service's pages, CSS and script; no inline script.
    assert all(value.startswith(("/dashboard", "/api/v1/", "?")) for _, value in page.references), page.references
    assert page.scripts == [{"src": "/dashboard/static/dashboard.js", "defer": None}]
    assert "consensus.file.differs" in answer.text and collected_fleet.odd_file in answer.text
    css = client.get("/dashboard/static/dashboard.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "url(" not in css.text and "@import" not in css.text


def test_filters_and_sorting_are_query_parameters(client: Any, collected_fleet: Any) -> None:
    untrusted = _parse(client.get("/dashboard", params={"state": "untrusted"}).text).rows
    assert untrusted == {collected_fleet.untrusted_device: "untrusted"}
    named = _parse(client.get("/dashboard", params={"q": collected_fleet.odd_device}).text).rows
    assert list(named) == [collected_fleet.odd_device]
    worst_first = list(_parse(client.get("/dashboard", params={"sort": "state"}).text).rows.values())
    assert worst_first[:2] == ["untrusted", "unreachable"] and set(worst_first[2:]) == {"trusted"}
    descending = list(_parse(client.get("/dashboard", params={"sort": "device", "order": "desc"}).text).rows)
    assert descending == sorted(collected_fleet.devices, reverse=True)
    odd_first = list(_parse(client.get("/dashboard", params={"sort": "consensus"}).text).rows)
    assert odd_first[0] == collected_fleet.odd_device
    bad = client.get("/dashboard", params={"state": "<b>fine</b>"})
    assert bad.status_code == 400 and "expected: one of trusted" in bad.text and "<b>fine" not in bad.text


def test_the_fleet_page_shows_a_page_of_rows_with_links_to_the_others(client: Any, collected_fleet: Any,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from collector.service import dashboard

    monkeypatch.setattr(dashboard, "ROWS_PER_PAGE", 7)
    everyone = sorted(collected_fleet.devices, reverse=True)
    pages = -(-len(everyone) // 7)
    second = client.get("/dashboard", params={"sort": "device", "order": "desc", "page": "2"})
    assert second.status_code == 200 and list(_parse(second.text).rows) == everyone[7:14]
    assert f"page 2 of {pages}" in second.text and f"{len(everyone)} devices" in second.text
    assert 'class="sortable"' not in second.text  # a click would sort only these rows: the server sorts
    # Previous and next keep the sort and filters; a new sort starts again at page 1.
    assert 'rel="prev" href="/dashboard?sort=device&amp;order=desc&amp;page=1"' in second.text
    assert 'rel="next" href="/dashboard?sort=device&amp;order=desc&amp;page=3"' in second.text
    assert "/dashboard?sort=state&amp;order=asc\"" in second.text
    last = client.get("/dashboard", params={"sort": "device", "order": "desc", "page": str(pages)})
    assert list(_parse(last.text).rows) == everyone[7 * (pages - 1):] and 'rel="next"' not in last.text
    for wrong in (str(pages + 1), "0", "two", "\u00b2"):
        answer = client.get("/dashboard", params={"page": wrong})
        assert answer.status_code == 400 and f"a page number from 1 to {pages}" in answer.text, wrong


def test_as_of_a_past_moment_shows_the_posture_then(client: Any, collected_fleet: Any) -> None:
    moment = collected_fleet.before_faults.strftime("%Y-%m-%dT%H:%M:%S")
    answer = client.get("/dashboard", params={"as_of": moment})
    page = _parse(answer.text)
    assert page.rows == dict.fromkeys(collected_fleet.devices, "trusted")
    assert f'value="{moment}"' in answer.text and "consensus-none" in answer.text
    wrong = client.get("/dashboard", params={"as_of": "yesterday"})
    assert wrong.status_code == 400 and "YYYY-MM-DD" in wrong.text and "found: yesterday" in wrong.text


def test_device_page_shows_findings_timeline_packages_files_and_raw_links(client: Any, collected_fleet: Any) -> None:
    odd = client.get(f"/dashboard/devices/{collected_fleet.odd_device}")
    assert odd.status_code == 200
    assert "consensus.file.differs" in odd.text and collected_fleet.odd_file in odd.text
    assert 'id="packages"' in odd.text and 'id="files"' in odd.text and "install fingerprint" in odd.text
    raw = re.findall(r'href="(/api/v1/devices/[^"]+/raw)"', odd.text)
    assert len(raw) == 2  # both collections
    envelope = client.get(raw[0])
    assert envelope.status_code == 200 and b"\"signed-envelope\"" in envelope.content
    untrusted = client.get(f"/dashboard/devices/{collected_fleet.untrusted_device}")
    assert "signature" in untrusted.text and 'data-state="untrusted"' in untrusted.text
    missing = client.get("/dashboard/devices/xr-9999")
    assert missing.status_code == 404 and "device.unknown" in missing.text


def test_device_text_is_inert_in_the_page(client: Any, collected_fleet: Any) -> None:
    text = client.get(f"/dashboard/devices/{collected_fleet.hostile_device}").text
    assert "drift.config.commit" in text
    assert "<script>alert" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "\u202e" not in text and "\x9b" not in text  # bidi override and C1 control shown as escapes
    assert "\\u202eevil\\x9b" in text


def test_a_read_token_from_the_address_becomes_a_cookie_that_also_opens_raw_evidence(
        collected_fleet: Any, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    tokens = Tokens.load(tmp_path / "tokens.json")
    secret = tokens.add("viewer", "read")
    with TestClient(_app(collected_fleet, tmp_path / "tokens.json")) as browser:
        refused = browser.get("/dashboard")
        assert refused.status_code == 401 and 'action="/dashboard/sign-in"' in refused.text
        wrong = browser.get("/dashboard", params={"token": "not-a-token"})
        assert wrong.status_code == 401 and "not one the service knows" in wrong.text
        exchanged = browser.get("/dashboard", params={"token": secret, "state": "trusted"}, follow_redirects=False)
        assert exchanged.status_code == 303 and exchanged.headers["location"] == "/dashboard?state=trusted"
        cookie = exchanged.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        assert browser.get("/dashboard").status_code == 200  # the cookie now
        device = browser.get(f"/dashboard/devices/{collected_fleet.odd_device}")
        raw = re.findall(r'href="(/api/v1/devices/[^"]+/raw)"', device.text)[0]
        assert browser.get(raw).status_code == 200
        # A cookie never carries an admin call.
        assert browser.post("/api/v1/verify", content=b"{}").status_code in (401, 403)
    with TestClient(_app(collected_fleet, tmp_path / "tokens.json")) as form_user:
        signed = form_user.post("/dashboard/sign-in", data={"token": secret, "next": "https://evil.example/"},
                                follow_redirects=False)
        assert signed.status_code == 303 and signed.headers["location"] == "/dashboard"


def test_an_admin_token_does_not_sign_in_to_the_pages(collected_fleet: Any, tmp_path: Path) -> None:
    """A page keeps its token in the browser's cookie: only a read token may go there."""
    from fastapi.testclient import TestClient

    admin = Tokens.load(tmp_path / "tokens.json").add("ops", "admin")
    with TestClient(_app(collected_fleet, tmp_path / "tokens.json")) as browser:
        for refused in (browser.get("/dashboard", params={"token": admin}, follow_redirects=False),
                        browser.post("/dashboard/sign-in", data={"token": admin, "next": "/dashboard"},
                                     follow_redirects=False)):
            assert refused.status_code == 401 and "set-cookie" not in refused.headers
            assert "expected a read token" in refused.text and "scope admin" in refused.text


def test_a_stored_output_that_cannot_be_read_hides_its_part_never_the_pages(collected_fleet: Any,
                                                                             tmp_path: Path) -> None:
    import dataclasses
    import shutil

    from fastapi.testclient import TestClient

    store = tmp_path / "store"
    shutil.copytree(collected_fleet.store, store)
    victim = collected_fleet.odd_device
    newest = sorted((store / victim).glob("*.envelope"))[-1]
    newest.unlink()  # the index still lists it
    damaged = dataclasses.replace(collected_fleet, store=store)
    with TestClient(_app(damaged)) as browser:
        fleet = browser.get("/dashboard")
        assert fleet.status_code == 200
        assert _parse(fleet.text).rows[victim] == "untrusted"
        assert victim in fleet.text and "consensus-findings" not in fleet.text  # not compared, says why
        device = browser.get(f"/dashboard/devices/{victim}")
        assert device.status_code == 200 and "cannot all be read" in device.text
        assert str(store) not in device.text  # where the store lives is not the reader's to know
