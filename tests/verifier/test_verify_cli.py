"""`dossier verify` and `dossier trust ...` through click's CliRunner, plus one real subprocess."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.serialization import Encoding

import schemas
from dossier_cli.main import cli
from vbuilder import DAY, NOW, Device, dossier, make_leaf

PROJECT = Path(__file__).resolve().parents[2]
SAMPLES = PROJECT / "samples"


def _runner() -> CliRunner:
    """A runner with a wide terminal: rich folds table cells to fit the width (80 columns when
    there is no terminal), which would split a long temporary path the tests look for."""
    return CliRunner(env={"COLUMNS": "1000"})


@pytest.fixture
def files(tmp_path: Path, device: Device) -> dict[str, Path]:
    root = tmp_path / "root.pem"
    root.write_bytes(device.root.public_bytes(Encoding.PEM))
    good = tmp_path / "good.envelope"
    good.write_bytes(b"Sun Oct 20 13:07:24.136 UTC\n\n" + device.envelope())
    bad = tmp_path / "bad.envelope"
    bad.write_bytes(device.envelope().replace(b"FOC2104R15R", b"FOC2104R15X"))
    return {"root": root, "good": good, "bad": bad}


def _store(tmp_path: Path, root: Path, device: str = "r1") -> Path:
    store = tmp_path / "store"
    result = _runner().invoke(cli, ["trust", "add", device, str(root), "--trust-store", str(store)])
    assert result.exit_code == 0, result.output
    return store


def _collected(tmp_path: Path, device: Device, name: str, *, received: dt.datetime, nonce: bytes | None = None,
               raw: bytes | None = None) -> Path:
    """An envelope stored as the collector stores it, with its metadata sidecar."""
    raw = raw if raw is not None else device.envelope(nonce=nonce)
    path = tmp_path / f"{name}.envelope"
    path.write_bytes(raw)
    meta = {"format": "trust-dossier/envelope-metadata/1", "device": "r1", "host": "192.0.2.1",
            "nonce": (nonce or device.nonce).hex(), "started": (received - dt.timedelta(seconds=1)).isoformat(),
            "received": received.isoformat(), "bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    Path(str(path) + ".meta.json").write_text(json.dumps(meta))
    return path


def test_help_explains_exit_codes() -> None:
    result = _runner().invoke(cli, ["verify", "--help"])
    assert result.exit_code == 0
    assert "Exit codes" in result.output and "0  every envelope is trusted" in result.output
    assert _runner().invoke(cli, ["trust", "--help"]).exit_code == 0


def test_trusted_envelope_exits_0_with_a_table(files) -> None:
    result = _runner().invoke(cli, ["verify", str(files["good"]), "--root", str(files["root"]),
                                      "--nonce", "1580", "--at", NOW.isoformat()])
    assert result.exit_code == 0, result.output
    assert "TRUSTED" in result.output and "good.envelope" in result.output


def test_table_shows_a_long_path_whole(tmp_path: Path, files) -> None:
    """Table cells are asserted on by substring: the test terminal is wide enough that a long
    temporary path is never folded (it was at 80 columns, depending on --basetemp)."""
    folder = tmp_path / ("a-long-folder-name-" * 8)
    folder.mkdir()
    envelope = folder / "good.envelope"
    envelope.write_bytes(files["good"].read_bytes())
    result = _runner().invoke(cli, ["verify", str(envelope), "--root", str(files["root"]),
                                    "--nonce", "1580", "--at", NOW.isoformat()])
    assert result.exit_code == 0, result.output
    assert str(envelope) in result.output


def test_table_shows_a_key_rotation_of_a_trusted_envelope(tmp_path: Path) -> None:
    """A leaf re-keyed under the enrolled root verifies and is reported as a key rotation (an
    info finding): the table says so instead of '-'; the verdict and the JSON are unchanged."""
    store = tmp_path / "trust-store"
    shutil.copytree(SAMPLES / "trust-store", store)
    args = ["verify", str(SAMPLES / "envelopes/leaf-rekeyed.envelope"), "--trust-store", str(store),
            "--at", "received"]
    table = _runner().invoke(cli, args)
    assert table.exit_code == 0, table.output
    assert "TRUSTED" in table.output and "NOT TRUSTED" not in table.output
    assert "key rotation (chain.leaf_rotated)" in table.output
    as_json = _runner().invoke(cli, [*args, "--json"])
    assert as_json.exit_code == 0, as_json.output
    line = json.loads(as_json.output)
    assert line["trusted"] is True
    # (samples/ has no record log: record.not_checked says so, as an info finding)
    assert [(f["id"], f["severity"]) for f in line["findings"]] == [("chain.leaf_rotated", "info"),
                                                                   ("record.not_checked", "info")]
    plain = _runner().invoke(cli, ["verify", str(SAMPLES / "envelopes/valid.envelope"), "--trust-store",
                                   str(store), "--at", "received"])
    assert plain.exit_code == 0, plain.output
    assert "key rotation" not in plain.output and "chain.leaf_rotated" not in plain.output


def test_table_shows_signed_text_that_is_not_a_dossier(files, device: Device) -> None:
    text = files["good"].with_name("text.envelope")
    text.write_bytes(device.envelope(data="hello"))
    result = _runner().invoke(cli, ["verify", str(text), "--root", str(files["root"]), "--nonce", "1580",
                                    "--at", NOW.isoformat()])
    assert result.exit_code == 0, result.output
    assert "signed text, not a dossier (data.not_dossier)" in result.output


def test_untrusted_envelope_exits_1_and_json_lists_findings(files) -> None:
    result = _runner().invoke(cli, ["verify", str(files["good"]), str(files["bad"]), "--root", str(files["root"]),
                                      "--nonce", "1580", "--at", NOW.isoformat(), "--json"])
    assert result.exit_code == 1, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [line["trusted"] for line in lines] == [True, False]
    assert "signature.invalid" in [f["id"] for f in lines[1]["findings"]]
    for line in lines:
        jsonschema.validate(line, schemas.load("verdict"))


def test_missing_nonce_is_not_trusted_unless_insecure(files) -> None:
    args = ["verify", str(files["good"]), "--root", str(files["root"]), "--at", NOW.isoformat(), "--json"]
    result = _runner().invoke(cli, args)
    assert result.exit_code == 1
    assert "nonce.not_checked" in result.output
    result = _runner().invoke(cli, [*args, "--insecure-skip-nonce"])
    assert result.exit_code == 0
    assert "WARNING" in result.output  # the danger is said every time


def test_stored_envelope_uses_its_metadata_and_received_time(tmp_path: Path, files, device: Device) -> None:
    store = _store(tmp_path, files["root"])
    expired_leaf = make_leaf("p256", "p256", device.root, not_before=NOW - 20 * DAY, not_after=NOW - DAY)
    old = Device("p256", "p256", root=device.root, leaf=expired_leaf)
    stored = _collected(tmp_path, old, "old", received=NOW - 5 * DAY, nonce=bytes.fromhex("a1b2"))
    base = ["verify", str(stored), "--trust-store", str(store), "--json"]
    at_received = _runner().invoke(cli, [*base, "--at", "received"])
    assert at_received.exit_code == 0, at_received.output
    line = json.loads(at_received.output)
    assert line["device"] == "r1" and line["nonce"] == "a1b2"
    today = _runner().invoke(cli, [*base, "--at", NOW.isoformat()])
    assert today.exit_code == 1 and "chain.leaf_expired" in today.output


def test_metadata_that_disagrees_with_the_file_is_an_untrusted_verdict(tmp_path: Path, files, device: Device) -> None:
    """Issue 17: a stored envelope changed after it was stored is evidence, not a usage error."""
    store = _store(tmp_path, files["root"])
    stored = _collected(tmp_path, device, "x", received=NOW)
    stored.write_bytes(stored.read_bytes() + b" ")
    result = _runner().invoke(cli, ["verify", str(stored), "--trust-store", str(store), "--json"])
    assert result.exit_code == 1, result.output
    line = json.loads(result.output)
    jsonschema.validate(line, schemas.load("verdict"))
    assert line["trusted"] is False and line["findings"][0]["id"] == "stored.mismatch"
    assert "records" in line["findings"][0]["message"]


def test_conflicting_nonce_is_an_input_error(tmp_path: Path, files, device: Device) -> None:
    store = _store(tmp_path, files["root"])
    stored = _collected(tmp_path, device, "x", received=NOW)
    result = _runner().invoke(cli, ["verify", str(stored), "--trust-store", str(store), "--nonce", "ffff"])
    assert result.exit_code == 2 and "differs" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["verify", "nope.envelope", "--root", "{root}", "--nonce", "1580"], "cannot read"),
        (["verify", "{good}"], "no trust anchor"),
        (["verify", "{good}", "--trust-store", "{tmp}/absent"], "no trust store"),
        (["verify", "{good}", "--root", "{root}", "--nonce", "xyz"], "expected hex digits"),
        (["verify", "{good}", "--root", "{root}", "--at", "2026-01-01T00:00:00"], "no zone"),
        (["verify", "{good}", "--root", "{root}", "--at", "received", "--nonce", "1580"], "needs the collector's metadata"),
        (["verify", "{good}", "--root", "{good}"], "expected PEM certificates"),
    ],
)
def test_usage_and_input_errors_exit_2(tmp_path: Path, files, args: list[str], message: str) -> None:
    values = {"root": str(files["root"]), "good": str(files["good"]), "tmp": str(tmp_path)}
    result = _runner().invoke(cli, [arg.format(**values) for arg in args])
    assert result.exit_code == 2, result.output
    assert message in result.output


@pytest.mark.parametrize("jobs", ["1", "2", "3"])
def test_stdin(files, jobs: str) -> None:
    result = _runner().invoke(cli, ["verify", "-", str(files["good"]), "--root", str(files["root"]),
                                      "--nonce", "1580", "--at", NOW.isoformat(), "--json", "--jobs", jobs],
                                input=files["good"].read_bytes())
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["file"] for line in result.output.splitlines()] == ["-", str(files["good"])]


def _mixed(tmp_path: Path, files, count: int, kinds: tuple[str, ...] = ("good", "bad", "absent")) -> list[str]:
    """`count` files, each of its own name, in turn trusted, untrusted and (with "absent") not
    there: a line out of order, lost or twice shows."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    paths = []
    for index in range(count):
        kind = kinds[index % len(kinds)]
        path = folder / f"{index:03d}-{kind}.envelope"
        if kind != "absent":
            shutil.copyfile(files[kind], path)
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("as_json", [True, False])
@pytest.mark.parametrize(("kinds", "exit_code"), [(("good", "bad"), 1), (("good", "bad", "absent"), 2)])
def test_jobs_gives_the_same_answers_in_order(tmp_path: Path, files, as_json: bool, kinds, exit_code: int) -> None:
    """--jobs 2 and 3 (this process and forked workers, the files handed out in chunks) print
    what --jobs 1 prints, line for line, as JSON and as the table, with the same exit code."""
    paths = _mixed(tmp_path, files, 150, kinds)
    args = ["verify", *paths, "--root", str(files["root"]), "--nonce", "1580", "--at", NOW.isoformat(),
            *(["--json"] if as_json else [])]
    one = _runner().invoke(cli, [*args, "--jobs", "1"])
    assert one.exit_code == exit_code, one.output
    if as_json:
        assert [json.loads(line)["file"] for line in one.output.splitlines()] == paths
    for jobs in ("2", "3"):
        many = _runner().invoke(cli, [*args, "--jobs", jobs])
        assert many.exit_code == exit_code, many.output
        assert many.output == one.output, f"--jobs {jobs}"


def test_jobs_without_fork_uses_a_process_pool(tmp_path: Path, files, monkeypatch) -> None:
    """Where os.fork is missing, --jobs starts a process pool: the same lines and exit code."""
    from verifier import cli as verifier_cli

    paths = _mixed(tmp_path, files, 30)
    args = ["verify", *paths, "--root", str(files["root"]), "--nonce", "1580", "--at", NOW.isoformat(), "--json"]
    one = _runner().invoke(cli, [*args, "--jobs", "1"])
    monkeypatch.setattr(verifier_cli, "_FORK", False)
    pool = _runner().invoke(cli, [*args, "--jobs", "2"])
    assert one.exit_code == 2, one.output
    assert (pool.exit_code, pool.output) == (2, one.output)


@pytest.mark.parametrize("count", [1, 2, 3, 7, 150, 5000])
@pytest.mark.parametrize("jobs", [2, 3, 8])
def test_chunks_cover_every_file_once_in_order(count: int, jobs: int) -> None:
    from verifier.parallel import CHUNK_MAX, chunks

    parts = chunks(count, jobs)
    assert [item for part in parts for item in part] == list(range(count))
    assert all(1 <= len(part) <= CHUNK_MAX for part in parts)
    assert [len(part) for part in parts] == sorted((len(part) for part in parts), reverse=True)


@pytest.mark.parametrize(("how", "ended"), [("exit", "exited with code 3"), ("kill", "was killed by SIGKILL")])
# 150 files: a worker is handed two chunks at once (at least 18 + 16 files with 2 jobs, 10 + 9
# with 3), so it reaches its 15th file however fast the main process is: after it returned a chunk.
@pytest.mark.parametrize("dies_at", [1, 15])
@pytest.mark.parametrize("jobs", ["2", "3"])
def test_a_worker_that_dies_loses_no_file(tmp_path: Path, files, how: str, ended: str, dies_at: int,
                                          jobs: str) -> None:
    """Each forked worker dies (a crash, or SIGKILL) at its first file or mid-run with chunks
    in hand: the command does not hang, says so on stderr, and the main process verifies what
    the workers did not return: every file's line, in order, as with --jobs 1, same exit code."""
    paths = _mixed(tmp_path, files, 150)
    script = [sys.executable, str(PROJECT / "tests/verifier/run_with_dying_worker.py"), how, str(dies_at)]
    args = ["verify", *paths, "--root", str(files["root"]), "--nonce", "1580", "--at", NOW.isoformat(), "--json"]
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}  # this tree's verifier, not an installed one

    def run(jobs: str) -> subprocess.CompletedProcess:
        return subprocess.run([*script, *args, "--jobs", jobs], capture_output=True, text=True, cwd=PROJECT,
                              env=env, timeout=120)

    one, many = run("1"), run(jobs)
    assert one.returncode == 2 and one.stderr == "", one.stderr
    assert [json.loads(line)["file"] for line in one.stdout.splitlines()] == paths
    assert (many.returncode, many.stdout) == (one.returncode, one.stdout), many.stderr
    warnings = [line for line in many.stderr.splitlines() if line.startswith("Warning: ")]
    assert len(warnings) == int(jobs) - 1, many.stderr
    assert all(f"a verifier worker process {ended} before it returned" in line
               and line.endswith("the main process verifies them") for line in warnings), warnings


def test_trust_commands(tmp_path: Path, files, device: Device) -> None:
    store = _store(tmp_path, files["root"])
    runner = _runner()
    listed = runner.invoke(cli, ["trust", "list", "--trust-store", str(store), "--json"])
    assert listed.exit_code == 0
    assert json.loads(listed.output)["devices"][0]["device"] == "r1"
    assert "r1" in runner.invoke(cli, ["trust", "list", "--trust-store", str(store)]).output
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(device.root.public_bytes(Encoding.PEM))
    imported = runner.invoke(cli, ["trust", "import-bundle", str(bundle), "--trust-store", str(store)])
    assert imported.exit_code == 0 and "1 CA certificate(s) added" in imported.output
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(device.leaf.public_bytes(Encoding.PEM))
    refused = runner.invoke(cli, ["trust", "add", "r2", str(leaf), "--trust-store", str(store)])
    assert refused.exit_code == 2 and "not a CA" in refused.output
    assert runner.invoke(cli, ["trust", "remove", "r1", "--trust-store", str(store)]).exit_code == 0
    gone = runner.invoke(cli, ["trust", "remove", "r1", "--trust-store", str(store)])
    assert gone.exit_code == 2 and "not in the trust store" in gone.output


def test_damaged_store_exits_2(tmp_path: Path, files) -> None:
    store = _store(tmp_path, files["root"])
    (store / "devices/r1.json").write_text("{")
    result = _runner().invoke(cli, ["verify", str(files["good"]), "--trust-store", str(store), "--device", "r1",
                                      "--nonce", "1580", "--json"])
    assert result.exit_code == 2, result.output
    assert "damaged" in result.output


def _trust_store_with_leaf(tmp_path: Path, files, device: Device) -> Path:
    store = _store(tmp_path, files["root"])
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(device.leaf.public_bytes(Encoding.PEM))
    pinned = _runner().invoke(cli, ["trust", "add", "r1", str(files["root"]), "--pin-leaf", str(leaf),
                                    "--trust-store", str(store)])
    assert pinned.exit_code == 0, pinned.output
    return store


@pytest.mark.parametrize("which", ["root", "pinned leaf"])
@pytest.mark.parametrize("as_json", [False, True])
def test_trust_list_reports_a_certificate_that_does_not_match_its_sha256(
    tmp_path: Path, files, device: Device, which: str, as_json: bool
) -> None:
    """`trust list` loads every certificate as verification does: one hex digit changed in a
    recorded SHA-256 is a damaged store (exit 2, the file, found and recorded), never listed."""
    store = _trust_store_with_leaf(tmp_path, files, device)
    listed = _runner().invoke(cli, ["trust", "list", "--trust-store", str(store)])
    assert listed.exit_code == 0, listed.output
    device_file = store / "devices/r1.json"
    record = json.loads(device_file.read_text())
    item = record["roots"][0] if which == "root" else record["pinned_leaf"]
    actual = item["sha256"]
    edited = f"{(int(actual[0], 16) + 1) % 16:x}" + actual[1:]
    item["sha256"] = edited
    device_file.write_text(json.dumps(record))
    result = _runner().invoke(cli, ["trust", "list", "--trust-store", str(store), *(["--json"] if as_json else [])])
    assert result.exit_code == 2, result.output
    assert f"{device_file}: stored certificate's SHA-256 is {actual}, but the store records {edited}" in result.output
    assert "damaged" in result.output
    if as_json:
        assert "{" not in result.output  # no listing of a damaged store
    else:
        assert "pinned leaf" not in result.output  # no table
    verified = _runner().invoke(cli, ["verify", str(files["good"]), "--trust-store", str(store), "--device", "r1",
                                      "--nonce", "1580", "--at", NOW.isoformat(), "--json"])
    assert verified.exit_code == 2 and "the store records" in verified.output  # the same report


def test_end_to_end_subprocess(tmp_path: Path, files) -> None:
    store = _store(tmp_path, files["root"])
    command = [sys.executable, "-m", "dossier_cli", "verify", str(files["good"]), str(files["good"]),
               "--trust-store", str(store), "--nonce", "1580", "--at", NOW.isoformat(), "--json", "--jobs", "2"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["device"] for line in done.stdout.splitlines()] == ["r1", "r1"]


def test_metadata_that_contradicts_the_collector_file_name_is_an_untrusted_verdict(
        tmp_path: Path, files, device: Device) -> None:
    folder = tmp_path / "r1"
    folder.mkdir()
    good = _collected(folder, device, "20260601T120000.000000Z-1580", received=NOW)
    args = ["--root", str(files["root"]), "--at", NOW.isoformat(), "--json"]
    assert _runner().invoke(cli, ["verify", str(good), *args]).exit_code == 0

    def mismatch(path: Path) -> dict:
        result = _runner().invoke(cli, ["verify", str(path), *args])
        assert result.exit_code == 1, result.output
        line = json.loads(result.output)
        assert not line["trusted"] and line["findings"][0]["id"] == "stored.mismatch", line["findings"]
        return line["findings"][0]

    replayed = _collected(folder, device, "20260601T120000.000000Z-deadbeef", received=NOW)
    assert "file name says nonce deadbeef" in mismatch(replayed)["message"]
    moved_in_time = _collected(folder, device, "20260601T120000.000000Z-1580", received=NOW - DAY)
    assert "received at" in mismatch(moved_in_time)["message"]
    other = tmp_path / "r2"
    other.mkdir()
    moved = _collected(other, device, "20260601T120000.000000Z-1580", received=NOW)
    finding = mismatch(moved)
    assert "device folder 'r2'" in finding["message"] and "--device" in finding["message"]
    assert (finding["expected"], finding["found"]) == ("device r2 (the folder)", "device r1 (the metadata)")


def test_strict_dossier_fails_what_a_newer_release_could_print(files, device: Device) -> None:
    """By default an unknown member is a warning (the envelope is trusted, exit 0);
    --strict-dossier makes it an error (exit 1)."""
    newer = files["good"].with_name("newer.envelope")
    newer.write_bytes(device.envelope(document=dossier("1580") | {"collection-host": "r1"}))
    args = ["verify", str(newer), "--root", str(files["root"]), "--nonce", "1580", "--at", NOW.isoformat(), "--json"]
    tolerant = _runner().invoke(cli, args)
    assert tolerant.exit_code == 0, tolerant.output
    line = json.loads(tolerant.output)
    assert [(f["id"], f["severity"]) for f in line["findings"]] == [("dossier.unexpected_content", "warning")]
    assert "/collection-host" in line["findings"][0]["message"]
    strict = _runner().invoke(cli, [*args, "--strict-dossier"])
    assert strict.exit_code == 1, strict.output
    assert [(f["id"], f["severity"]) for f in json.loads(strict.output)["findings"]] == [("dossier.schema", "error")]
    table = _runner().invoke(cli, args[:-1])
    assert table.exit_code == 0 and "TRUSTED" in table.output, table.output


@pytest.mark.parametrize("text", ["plain", "bidi \u202e override", "C1 \x9b control", "not UTF-8 \udcff",
                                  "emoji \U0001f600", "escape \x1b[31m", "quote \" and \\"])
def test_a_json_line_is_ascii_and_reads_back_as_the_result(text: str) -> None:
    """The line is one line of ASCII (device text, a file name that is not UTF-8: inert on a
    terminal) that reads back as the result."""
    from verifier.cli import _json_line

    result = {"file": text, "trusted": False, "findings": [{"message": text, "found": None}], "days": {"leaf": 3}}
    line = _json_line(result)
    assert line.isascii() and "\n" not in line
    assert json.loads(line) == result
