"""Fleet consensus over a collected fleet of 20 routers on one release: the one planted odd file
is flagged, on its device only, with the consensus digest and how many devices agree."""

from __future__ import annotations

from collector.insights import ConsensusId, StoredVerdicts, fleet_consensus
from collector.insights.consensus import MIN_AGREEING, _odd_ones, _tally
from collector.store import Store


def _flagged(digests: dict[str, str]) -> list[tuple[str, str]]:
    """(device, digest) flagged for one file held with `digests` (device -> digest)."""
    votes: dict = {}
    for device, digest in digests.items():
        _tally(votes, device, [("path", digest)])
    return [(device, digest) for _, device, digest, *_ in _odd_ones(votes, MIN_AGREEING)]


def test_the_rule_flags_only_a_digest_of_its_own_against_a_majority_of_at_least_n() -> None:
    agreeing = {f"d{i}": "good" for i in range(MIN_AGREEING)}
    assert _flagged({**agreeing, "odd": "bad"}) == [("odd", "bad")]
    assert _flagged({**dict(list(agreeing.items())[:-1]), "odd": "bad"}) == []  # fewer than N agree
    assert _flagged({**agreeing, "odd": "bad", "twin": "bad"}) == []  # shared by two: not "its own"
    assert _flagged({f"d{i}": f"log{i}" for i in range(10)}) == []  # differs everywhere: no consensus
    # N agree, but most devices with the file each have their own digest: no majority, no flag
    assert _flagged({**agreeing, **{f"x{i}": f"own{i}" for i in range(MIN_AGREEING + 1)}}) == []


def test_one_planted_odd_file_is_flagged_and_only_it(collected_fleet) -> None:
    fleet = collected_fleet
    store = Store.open(fleet.store)
    consensus = fleet_consensus(store, StoredVerdicts(store, fleet.trust))

    flagged = {device: [(str(f.id), f.subject) for f in found] for device, found in consensus.findings.items() if found}
    assert flagged == {fleet.odd_device: [(ConsensusId.FILE_DIFFERS, fleet.odd_file)]}
    finding = consensus.of(fleet.odd_device)[0]
    # 18 others compared (the untrusted device's newest trusted output is its first round too):
    # every other device with the file agrees on one digest.
    assert finding.expected["agreeing"] == finding.expected["devices"] >= 17
    assert finding.found != finding.expected["digest"]
    assert finding.expected["digest"] in finding.message and finding.found in finding.message
    assert f"{finding.expected['agreeing']} of the" in finding.message
    assert [len(group.devices) for group in consensus.groups] == [len(fleet.devices)]


def test_before_the_plant_no_device_is_flagged(collected_fleet) -> None:
    fleet = collected_fleet
    store = Store.open(fleet.store)
    consensus = fleet_consensus(store, StoredVerdicts(store, fleet.trust), as_of=fleet.before_faults)
    assert not any(consensus.findings.values())
    assert consensus.not_compared == {}
    assert consensus.to_json()["as_of"] == fleet.before_faults.isoformat()


def test_the_service_compares_what_its_queries_hold_and_agrees_with_the_library(collected_fleet) -> None:
    from collector.service.queries import StoreQueries, fleet_consensus_of

    fleet = collected_fleet
    store = Store.open(fleet.store)
    queries = StoreQueries(store, fleet.trust)
    for as_of in (None, fleet.before_faults):
        served = fleet_consensus_of(queries, as_of=as_of)
        assert served.to_json() == fleet_consensus(store, StoredVerdicts(store, fleet.trust), as_of=as_of).to_json()
    # Each output compared is read once, into the queries' content kept for search and pages.
    odd = queries.latest_trusted()[fleet.odd_device]
    assert queries._content[(odd.path, odd.sha256)].files
    kept = fleet_consensus_of(queries)
    assert fleet_consensus_of(queries) is kept  # kept while the outputs compared are the same
    queries.forget_verdicts()  # the trust store changed: verified again, compared again
    assert fleet_consensus_of(queries) is not kept
