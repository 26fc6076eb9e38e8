"""A poll's outputs are one unit (issue 15, item 2): an IOS XE poll stores a SUDI output and an
integrity output that verifies only with that SUDI output as signer. Reproduced first:
`dossier store prune --keep-last 1 --keep-days 0` kept the integrity output and deleted its
SUDI output, after which the kept evidence no longer verified (`chain.no_certificate`), and
`dossier verify` of a stored integrity output could not find its signer from the metadata.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from collector.collect import CollectOptions, Collector
from collector.inventory import load_inventory
from collector.store import ENVELOPE_SUFFIX, META_SUFFIX, Store
from dossier_cli.main import cli
from emulator.fleet import Fleet
from mixed_fleet import trust_mixed_fleet


def _meta(envelope: Path) -> Path:
    return envelope.with_name(envelope.name[: -len(ENVELOPE_SUFFIX)] + META_SUFFIX)


def _collected_twice(tmp_path: Path) -> tuple[Path, Path, str]:
    """An XE device polled twice into a store; (store, trust store, device name)."""
    with Fleet(state_dir=tmp_path / "fleet", devices=1, platform="iosxe", files=20) as fleet:
        inventory = tmp_path / "inventory.yaml"
        fleet.write_inventory(inventory)
        (device,) = load_inventory(inventory).devices
        trust = tmp_path / "truststore"
        trust_mixed_fleet(fleet, [device], trust)
        store = Store.open(tmp_path / "store")
        for _ in range(2):
            assert Collector(store, trust_store_path=trust, options=CollectOptions()).run([device]).exit_code == 0
        store.close()
    return tmp_path / "store", trust, device.name


def _prune_and_reverify(store: Path, trust: Path, device: str) -> None:
    pruned = CliRunner().invoke(cli, ["store", "prune", "--store", str(store), "--keep-last", "1",
                                      "--keep-days", "0", "--json"])
    assert pruned.exit_code == 0, pruned.output
    assert len(json.loads(pruned.output)["deleted"]) == 2  # the first poll, both outputs
    kept = sorted((store / device).glob("*" + ENVELOPE_SUFFIX))
    outputs = sorted(json.loads(_meta(p).read_text())["output"] for p in kept)
    assert outputs == ["integrity", "sudi"]
    return kept


def test_prune_keeps_the_signer_of_a_kept_output_and_it_still_verifies(tmp_path: Path) -> None:
    store, trust, device = _collected_twice(tmp_path)
    kept = _prune_and_reverify(store, trust, device)
    result = CliRunner().invoke(cli, ["verify", *map(str, kept), "--trust-store", str(trust), "--at", "received",
                                      "--json"])
    assert result.exit_code == 0, result.output
    assert all(json.loads(line)["trusted"] for line in result.output.splitlines())


def test_prune_keeps_poll_units_of_a_store_written_before_poll_ids(tmp_path: Path) -> None:
    """A store from an earlier collector (no poll_id, signer or kind in the metadata: kind came
    after poll ids): its XE polls are still pruned as units, SUDI output first, then what came
    after it, and the kept integrity output still finds its SUDI output as signer."""
    store, trust, device = _collected_twice(tmp_path)
    for meta_path in (store / device).glob("*" + META_SUFFIX):
        meta = json.loads(meta_path.read_text())
        meta.pop("poll_id"), meta.pop("signer", None), meta.pop("kind", None)
        meta_path.write_text(json.dumps(meta))
    kept = _prune_and_reverify(store, trust, device)
    result = CliRunner().invoke(cli, ["verify", *map(str, kept), "--trust-store", str(trust), "--at", "received",
                                      "--json"])
    assert result.exit_code == 0, result.output
    assert all(json.loads(line)["trusted"] for line in result.output.splitlines())


def test_a_missing_signer_is_named_with_what_to_do(tmp_path: Path) -> None:
    store, trust, device = _collected_twice(tmp_path)
    stored = sorted((store / device).glob("*" + ENVELOPE_SUFFIX))
    integrity = next(p for p in stored if json.loads(_meta(p).read_text())["output"] == "integrity")
    case = tmp_path / "copies" / device
    case.mkdir(parents=True)
    for path in (integrity, _meta(integrity)):  # copied without its SUDI output
        shutil.copy(path, case / path.name)
    result = CliRunner().invoke(cli, ["verify", str(case / integrity.name), "--trust-store", str(trust)])
    assert result.exit_code == 2
    assert "signs this one" in result.output and "--signer" in result.output
