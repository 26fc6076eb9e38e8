"""`dossier collect --webhooks --policy` over an emulated fleet with faults: each alert reaches a
real receiver once (after a 500), signed, with an EAR that PyJWT verifies against `dossier ear jwks`."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import jwt as pyjwt
from click.testing import CliRunner

import schemas
from fleet_setup import enroll_all
from dossier_cli.main import cli
from emulator import facts as device_facts
from emulator.faults import Fault
from emulator.fleet import Fleet
from webhook_receiver import Receiver

from .conftest import SMALL_FILES

SECRET = "webhook-secret-for-the-e2e-test"
POLICY_YAML = "format: trust-dossier/policy/1\nname: hooks\nrules:\n  secure-boot: {level: enforce}\n"


def test_collect_posts_each_alert_once_with_its_ear(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY_YAML)
    trust, store, inventory = tmp_path / "state" / "trust", tmp_path / "store", tmp_path / "inventory.yaml"
    with Fleet(state_dir=tmp_path / "fleet", devices=3, provisioned=True, key_type="ecdsa-p256", seed=7,
               files=SMALL_FILES) as fleet, Receiver(SECRET.encode(), fail_first=1) as receiver:
        fleet.write_inventory(inventory)
        enroll_all(inventory, trust)
        hooks = tmp_path / "hooks.yaml"
        hooks.write_text(f"format: trust-dossier/webhooks/1\nurls: ['{receiver.url}']\nretry_base_s: 0.05\n")
        args = ["collect", "-i", str(inventory), "--store", str(store), "--trust-store", str(trust),
                "--policy", str(policy), "--webhooks", str(hooks), "--json"]
        env = {"DOSSIER_WEBHOOK_SECRET": SECRET}
        runner = CliRunner()
        first = runner.invoke(cli, args, env=env)
        assert first.exit_code == 0, first.output
        assert receiver.requests == 0  # all affirming: nothing to say
        booted, tampered, locked = (emulated.name for emulated in fleet.devices)
        device = fleet[booted].device
        with device.lock:
            device_facts.set_secure_boot(device.facts, False)
            device.save()
        fleet.set_fault(tampered, Fault.DATA_CHANGED)
        fleet.set_fault(locked, Fault.AUTH_FAILURE)
        second = runner.invoke(cli, args, env=env)
        assert second.exit_code == 1, second.output
    assert SECRET not in second.output
    jwks = json.loads(runner.invoke(cli, ["ear", "jwks", "--trust-store", str(trust)]).stdout)

    # One 500, then each event once (the untrusted device's appraisal degrades too).
    assert receiver.rejected == 0 and receiver.duplicates == 0 and receiver.requests == 5
    events = {(event["device"], event["type"]): event for event in receiver.accepted.values()}
    assert sorted(events) == sorted([(booted, "appraisal.degraded"), (tampered, "envelope.untrusted"),
                                     (tampered, "appraisal.degraded"), (locked, "poll.failed")])
    for event in events.values():
        jsonschema.validate(event, schemas.load("webhook-event"))
    assert "ear" not in events[locked, "poll.failed"]  # nothing was stored: no result to sign

    def claims(event: dict[str, object]) -> dict[str, object]:
        token = str(event["ear"])
        [key] = [k for k in jwks["keys"] if k["kid"] == pyjwt.get_unverified_header(token)["kid"]]
        return pyjwt.decode(token, pyjwt.PyJWK(key).key, algorithms=["ES256"])

    degraded = claims(events[booted, "appraisal.degraded"])["submods"][booted]
    assert degraded["ear_status"] == "contraindicated" and degraded["ear_trustworthiness_vector"]["executables"] == 96
    for kind in ("envelope.untrusted", "appraisal.degraded"):
        untrusted = claims(events[tampered, kind])["submods"][tampered]
        assert untrusted["ear_trustworthiness_vector"] == {"instance-identity": 99}
    log = [json.loads(line) for line in (store / "state" / "webhook-deliveries.jsonl").read_text().splitlines()]
    assert sorted(line["outcome"] for line in log) == ["delivered"] * 4 + ["retry"]
    assert all("token=" not in line["url"] for line in log)
