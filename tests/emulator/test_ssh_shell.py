"""The interactive CLI over a PTY: prompts, editing, configuration mode, the seed's examples."""

from __future__ import annotations

import re
import secrets

import pytest

from emu_proof import check_dossier, check_envelope
from emu_ssh import PROMPT_RE, Shell, run, strip_timestamp


def test_prompt_and_terminal_settings(fleet) -> None:
    with Shell(fleet.devices[0]) as shell:
        assert shell.cmd("terminal length 0").rstrip().endswith("RP/0/RP0/CPU0:xr-0001#")
        assert "RP/0/RP0/CPU0:xr-0001#" in shell.cmd("terminal width 200")


def test_invalid_input_caret_sits_under_the_word_after_the_prompt(fleet) -> None:
    with Shell(fleet.devices[0]) as shell:
        output = shell.cmd("show versoin")
    lines = output.split("\n")
    caret = next(line for line in lines if line.strip() == "^")
    assert caret.index("^") == len("RP/0/RP0/CPU0:xr-0001#show ")
    assert "% Invalid input detected at '^' marker." in output


def test_line_editing_backspace_arrows_and_ctrl_u(fleet) -> None:
    with Shell(fleet.devices[0]) as shell:
        # "show clokc" -> backspace twice -> "ck": show clock
        output = shell.cmd("show clokc\x7f\x7fck")
        assert re.search(r"\d\d:\d\d:\d\d\.\d{3} UTC", output)
        # Ctrl-U wipes the line; then a real command
        output = shell.cmd("garbage words\x15show clock")
        assert "Invalid" not in output
        # left arrow twice, insert a character in the middle: "show clck" -> "show clock"
        output = shell.cmd("show clck\x1b[D\x1b[Do")
        assert "Invalid" not in output and "UTC" in output
        # history: up arrow recalls the last command
        output = shell.cmd("\x1b[A")
        assert "UTC" in output


def test_echo_lets_screen_scrapers_see_what_they_typed(fleet) -> None:
    with Shell(fleet.devices[0]) as shell:
        shell.send("show clock")
        assert shell.read_until(r"show clock$").endswith("show clock")
        shell.cmd("")


def test_configuration_commit_end_and_prompts(blank_fleet) -> None:
    device = blank_fleet.devices[0]
    with Shell(device) as shell:
        assert "(config)#" in shell.cmd("configure")
        shell.cmd("hostname myhost")
        shell.cmd("domain name mydomain.com")
        output = shell.cmd("commit")
        assert "RP/0/RP0/CPU0:myhost(config)#" in output
        output = shell.cmd("end")
        assert output.rstrip().endswith("RP/0/RP0/CPU0:myhost#")
        running = shell.cmd("show running-config domain")
    assert "domain name mydomain.com" in running


@pytest.mark.parametrize(("answer", "kept", "prompt"), [("yes", True, "#"), ("no", False, "#"), ("cancel", False, "(config)#")])
def test_end_asks_about_uncommitted_changes(blank_fleet, answer: str, kept: bool, prompt: str) -> None:
    device = blank_fleet.devices[0]
    with Shell(device) as shell:
        shell.cmd("configure")
        shell.cmd("hostname changed")
        question = shell.cmd("end", expect=r"Uncommitted changes found, commit them\? \[yes\]: $")
        assert question.endswith("Uncommitted changes found, commit them? [yes]: ")
        output = shell.cmd(answer)
        last = output.rstrip().split("\n")[-1]
        assert last.endswith(prompt), last
        if answer == "cancel":
            shell.cmd("abort")
    hostname = strip_timestamp(run(device, "show running-config hostname")).strip()
    assert hostname == ("hostname changed" if kept else f"hostname {device.name}")


def test_abort_discards_and_no_removes(blank_fleet) -> None:
    device = blank_fleet.devices[0]
    with Shell(device) as shell:
        shell.cmd("configure")
        shell.cmd("snmp-server traps pki")
        shell.cmd("abort")
        assert strip_timestamp(run(device, "show running-config snmp-server")) == "% No such configuration item(s)\n"
        shell.cmd("configure")
        shell.cmd("snmp-server traps pki")
        shell.cmd("commit")
        assert "snmp-server traps pki" in strip_timestamp(run(device, "show running-config snmp-server"))
        shell.cmd("no snmp-server traps pki")
        shell.cmd("commit")
        shell.cmd("end")
    assert strip_timestamp(run(device, "show running-config snmp-server")) == "% No such configuration item(s)\n"


def test_commit_with_nothing_to_commit(blank_fleet) -> None:
    with Shell(blank_fleet.devices[0]) as shell:
        shell.cmd("configure")
        assert "% No configuration changes to commit." in shell.cmd("commit")


def test_commit_is_recorded_in_commit_list_and_dossier(blank_fleet) -> None:
    device = blank_fleet.devices[0]
    before = strip_timestamp(run(device, "show configuration commit list"))
    with Shell(device) as shell:
        shell.cmd("configure")
        shell.cmd("ssh server rate-limit 600")
        shell.cmd("commit")
        shell.cmd("end")
    after = strip_timestamp(run(device, "show configuration commit list"))
    assert after != before and device.username in after
    dossier = check_dossier(strip_timestamp(run(device, "show platform security integrity dossier include "
                                                        "rollback-history nonce 01")))
    newest = dossier["rollback-history"]["rollback-history"][0]
    assert newest["user-id"] == device.username and newest["client-name"] == "CLI"


SEED_TRUSTPOINT = [
    "config",
    "domain name domain1",
    "crypto ca trustpoint system-trustpoint",
    "keypair rsa system-enroll-key",
    "ca-keypair rsa system-root-key",
    "subject-name CN=lab1-ads,C=US,ST=CA,L=San Jose,O=cisco systems,OU=ASR",
    "subject-name ca-certificate CN=lab1-ca,C=US,ST=CA,L=San Jose,O=cisco systems,OU=ASR",
    "enrollment url self",
    "key-usage certificate digitalsignature keyagreement dataencipherment",
    "lifetime certificate 300",
    "message-digest sha256",
    "key-usage ca-certificate digitalsignature keycertsign crlsign",
    "lifetime ca-certificate 367",
    "commit",
]


def test_seed_how_to_integrate_end_to_end(blank_fleet) -> None:
    """Keys, system trustpoint, authenticate, enroll, show certificates, then a signed dossier."""
    device = blank_fleet.devices[0]
    with Shell(device) as shell:
        for label in ("system-root-key", "system-enroll-key"):
            output = shell.cmd(f"crypto key generate rsa {label}", expect=r"How many bits in the modulus \[2048\]: $")
            assert f"The name for the keys will be: {label}" in output
            assert "Done w/ crypto generate keypair" in shell.cmd("")
        for line in SEED_TRUSTPOINT:
            shell.cmd(line)
        assert "(config-trustp)#" in shell.cmd("message-digest sha256")
        shell.cmd("end")
        running = shell.cmd("show running-config crypto ca trustpoint system-trustpoint")
        assert " ca-keypair rsa system-root-key" in running
        assert " lifetime ca-certificate 367" in running
        output = shell.cmd("crypto ca authenticate system-trustpoint")
        assert "% The subject name in the certificate will include: CN=lab1-ca" in output
        assert re.search(r"Serial Number\s*: [0-9A-F]{2}:[0-9A-F]{2}", output)
        assert "SHA1 Fingerprint:" in output
        shell.cmd("crypto ca enroll system-trustpoint",
                  expect=r"Include the router serial number in the subject name\? \[yes/no\]: $")
        shell.cmd("yes", expect=r"Include an IP address in the subject name\? \[yes/no\]: $")
        output = shell.cmd("no")
        assert "Leaf cert key usage string:" in output
        shown = shell.cmd("show crypto ca certificates system-trustpoint")
        assert "Trustpoint : system-trustpoint" in shown and "Router certificate" in shown
        assert "Associated Trustpoint: system-trustpoint" in shown
    nonce = secrets.token_hex(8)
    output = run(device, f"show platform security integrity dossier include packages nonce {nonce} "
                         f"| utility sign nonce {nonce} include-certificate")
    proof = check_envelope(strip_timestamp(output), bytes.fromhex(nonce))
    assert "CN=lab1-ads" in proof["leaf"].subject.rfc4514_string()
    lifetime = proof["leaf"].not_valid_after_utc - proof["leaf"].not_valid_before_utc
    assert lifetime.days == 300


def test_key_replace_flow_and_zeroize(blank_fleet) -> None:
    device = blank_fleet.devices[0]
    with Shell(device) as shell:
        shell.cmd("crypto key generate ecdsa k1", expect=r"\[nistp256\]: $")
        shell.cmd("nistp384")
        shown = shell.cmd("show crypto key mypubkey ecdsa")
        assert "Key label: k1" in shown
        output = shell.cmd("crypto key generate ecdsa k1", expect=r"\[yes/no\]: $")
        assert "% You already have keys defined for k1" in output
        shell.cmd("no")
        shell.cmd("crypto key zeroize ecdsa k1", expect=r"\[yes/no\]: $")
        assert "[OK]" in shell.cmd("yes")
        assert "k1" not in shell.cmd("show crypto key mypubkey ecdsa")


def test_mypubkey_layout_is_grouped_der_hex(fleet) -> None:
    output = strip_timestamp(run(fleet.devices[0], "show crypto key mypubkey ecdsa"))
    assert "Key label: system-root-key" in output
    data_lines = [line for line in output.splitlines() if re.fullmatch(r"( ?[0-9A-F]{8})+( [0-9A-F]{2,6})?|[0-9A-F]{2,8}", line.strip())]
    assert data_lines, output


def test_exec_answers_questions_from_stdin(blank_fleet) -> None:
    device = blank_fleet.devices[0]
    output = run(device, "crypto key generate rsa viaexec", stdin="1024\n")
    assert "Done w/ crypto generate keypair" in output
    assert "Size      : 1024" in strip_timestamp(run(device, "show crypto key mypubkey rsa")) or \
        "1024" in strip_timestamp(run(device, "show crypto key mypubkey rsa"))


def test_reload_records_a_reboot(blank_fleet) -> None:
    device = blank_fleet.devices[0]
    before = strip_timestamp(run(device, "show reboot history"))
    with Shell(device) as shell:
        shell.send("reload\r")
        shell.read_until(r"\[confirm\]")
        shell.send("y\r")
        try:
            shell.read_until(r"NEVER-MATCHES", timeout=5)
        except (EOFError, TimeoutError, OSError):
            pass
    after = strip_timestamp(run(device, "show reboot history"))
    assert after != before and "User initiated reload" in after


def test_exit_closes_the_session(fleet) -> None:
    with Shell(fleet.devices[0]) as shell:
        shell.send("exit\r")
        with pytest.raises(EOFError):
            shell.read_until(PROMPT_RE, timeout=10)


def test_question_mark_lists_what_may_come_next(fleet) -> None:
    with Shell(fleet.devices[0]) as shell:
        shell.send("crypto key generate ?")
        output = shell.read_until(r"(?m)^  rsa$")  # the listing, after the echo of what was typed
        output += shell.read_until(r"crypto key generate $")  # then the line is drawn again
        assert "  rsa" in output and "  ecdsa" in output and "  dsa" in output
        shell.send("\x15")  # Ctrl-U: clear the line
        output = shell.cmd("")
        assert "Invalid" not in output


def test_tab_completes_a_unique_keyword(fleet) -> None:
    with Shell(fleet.devices[0]) as shell:
        shell.send("show cl\t")
        shell.read_until(r"show clock $")
        output = shell.cmd("")
        assert "UTC" in output and "Invalid" not in output
