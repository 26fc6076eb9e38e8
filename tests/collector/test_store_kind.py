"""The store writes each output's `kind` (verifier/stored.py) into its metadata."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from collector.store import Store
from verifier.stored import read_sidecar

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("extra", "kind"), [
    ({"command": "show platform security integrity dossier include packages nonce 0011", "verifier_profile": "xr-dossier"},
     "xr-dossier"),
    ({"command": "show platform sudi certificate sign nonce 17", "platform": "iosxe", "output": "sudi",
      "verifier_profile": "xe-sudi-sign"}, "xe-sudi"),
    ({"kind": "xe-integrity", "verifier_profile": "xe-integrity-sign"}, "xe-integrity"),
])
def test_the_metadata_says_what_the_output_is(tmp_path: Path, extra: dict, kind: str) -> None:
    with Store.open(tmp_path / "s") as store:
        record = store.save(device="r1", host="h", nonce_hex="0011", output=b"x", started=T0, received=T0,
                            duration_s=0.1, extra=extra)
    meta = read_sidecar(tmp_path / "s" / (record.path + ".meta.json"))
    assert meta["kind"] == kind


def test_the_store_is_the_written_down_interface(tmp_path: Path) -> None:
    """Every method of `EnvelopeStore` is `Store`'s, with the same parameters."""
    import inspect

    from collector.storage import EnvelopeStore

    members = [name for name, value in vars(EnvelopeStore).items()
               if callable(value) and not name.startswith("_")]
    assert len(members) >= 20
    for name in members:
        wanted = inspect.signature(getattr(EnvelopeStore, name))
        found = inspect.signature(getattr(Store, name))
        assert list(found.parameters) == list(wanted.parameters), name
    with Store.open(tmp_path / "s") as store:
        assert isinstance(store, EnvelopeStore)
