"""Fleet consensus over a collected fleet of 20 routers on one release: the one planted odd file
is flagged, on its device only, with the consensus digest and how many devices agree."""

from __future__ import annotations

from collector.insights import ConsensusId, StoredVerdicts, fleet_consensus
from collector.store import Store


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
