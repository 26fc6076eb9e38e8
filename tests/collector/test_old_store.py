"""A store written by an earlier collector (commit 92f7d24, data/store-92f7d24/README.md) reads
with today's code: its outputs' kinds derived from their metadata, verified as stored, listed,
pruned."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509

from collector.store import META_SUFFIX, Store
from dossier_cli.main import cli
from verifier import TrustStore
from verifier.evidence import verify_stored
from verifier.stored import KINDS, kind_of, read_sidecar

FIXTURE = Path(__file__).parent / "data" / "store-92f7d24"


@pytest.fixture
def old(tmp_path: Path) -> Path:
    """A copy of the old store and trust store, the XE device's SUDI certificate pinned."""
    shutil.copytree(FIXTURE, tmp_path / "old", ignore=shutil.ignore_patterns("*.py", "*.md"))
    sudi = next(path for path in sorted((tmp_path / "old" / "store" / "xe-0002").glob("*.envelope"))
                if read_sidecar(path.with_name(path.name + ".meta.json"))["output"] == "sudi")
    leaf = next(cert for cert in x509.load_pem_x509_certificates(sudi.read_bytes())
                if not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    TrustStore.open(tmp_path / "old" / "truststore").pin_leaf("xe-0002", leaf)
    return tmp_path / "old"


def test_the_old_metadata_has_no_kind_and_each_kind_is_derived() -> None:
    metas = {path.name: read_sidecar(path) for path in sorted(FIXTURE.glob("store/*/*" + META_SUFFIX))}
    assert metas and not any("kind" in meta or "poll_id" in meta for meta in metas.values())
    kinds = sorted(kind_of(meta).name for meta in metas.values())
    assert kinds == ["xe-integrity", "xe-integrity", "xe-sudi", "xe-sudi", "xr-dossier", "xr-dossier"]
    assert KINDS["xr-dossier"].require_dossier and not KINDS["xr-signed-output"].require_dossier


def test_dossier_verify_at_received_trusts_every_old_output(old: Path) -> None:
    files = sorted(str(path) for path in old.glob("store/*/*.envelope"))
    result = CliRunner().invoke(cli, ["verify", "--json", "--at", "received", "--trust-store",
                                      str(old / "truststore"), *files])
    verdicts = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.exit_code == 0, verdicts
    assert [verdict["trusted"] for verdict in verdicts] == [True] * len(files)
    profiles = sorted(verdict["profile"] for verdict in verdicts)
    assert profiles == ["xe-integrity-sign"] * 2 + ["xe-sudi-sign"] * 2 + ["xr-dossier"] * 2
    # Stored before the record log: said so, not an error.
    assert all("record.not_checked" in [f["id"] for f in verdict["findings"]] for verdict in verdicts)


def test_an_old_xr_output_must_hold_a_dossier(old: Path) -> None:
    """The old metadata's command asked for a dossier: its signed text must be one."""
    envelope = sorted(old.glob("store/xr-0001/*.envelope"))[0]
    verdict = verify_stored(envelope, trust_store=TrustStore.open(old / "truststore"))
    assert verdict.trusted and verdict.dossier is not None
    meta_path = envelope.with_name(envelope.name + ".meta.json")
    meta = read_sidecar(meta_path)
    assert kind_of(meta).name == "xr-dossier"
    meta["command"] = "show version | utility sign nonce " + meta["nonce"]
    assert kind_of(meta).name == "xr-signed-output"


def test_status_and_prune_read_the_old_store(old: Path) -> None:
    store_path = str(old / "store")
    status = CliRunner().invoke(cli, ["status", "--store", store_path, "--json"])
    assert status.exit_code == 0, status.output
    rows = {row["device"]: row for row in json.loads(status.stdout)["devices"]}
    assert set(rows) == {"xr-0001", "xe-0002"}
    assert {row["last_status"] for row in rows.values()} == {"trusted"}
    with Store.open(old / "store") as store:
        assert {device: record.trusted for device, record in store.latest_trusted().items()} == \
            {"xr-0001": True, "xe-0002": True}
        before = {device: len(store.history(device)) for device in ("xr-0001", "xe-0002")}
    assert before == {"xr-0001": 2, "xe-0002": 4}
    pruned = CliRunner().invoke(cli, ["store", "prune", "--store", store_path, "--keep-last", "0",
                                      "--keep-days", "0", "--json"])
    assert pruned.exit_code == 0, pruned.output
    with Store.open(old / "store") as store:
        left = {device: [Path(record.path).name for record in store.history(device)]
                for device in ("xr-0001", "xe-0002")}
    # The newest trusted output of each device stays; an XE poll's SUDI and integrity go together.
    assert len(left["xr-0001"]) == 1 and len(left["xe-0002"]) == 2
    outputs = sorted(read_sidecar(old / "store" / "xe-0002" / (name + ".meta.json"))["output"]
                     for name in left["xe-0002"])
    assert outputs == ["integrity", "sudi"]
