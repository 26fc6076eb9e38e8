"""Every IOS XE command that takes `nonce N` reads it as the one decimal form (uint64): the same
bad nonces are refused with the same `% Invalid nonce` line, the same good ones accepted."""

from __future__ import annotations

import pytest

from emu_ssh import run
from emulator.fleet import Fleet
from emulator.nonce import NonceError, parse_decimal_nonce

XE_NONCE_COMMANDS = [
    "show platform sudi certificate sign nonce {nonce}",
    "show platform integrity sign nonce {nonce}",
    "show system integrity all trust_chain nonce {nonce}",
]


@pytest.mark.parametrize("bad", ["12ab", "-1", "0x10", str(2**64)])
def test_every_xe_command_refuses_the_same_bad_nonce(xe_fleet: Fleet, bad: str) -> None:
    with pytest.raises(NonceError) as caught:
        parse_decimal_nonce(bad)
    for command in XE_NONCE_COMMANDS:
        assert run(xe_fleet.devices[0], command.format(nonce=bad)) == caught.value.message + "\n", command


@pytest.mark.parametrize("good", ["0", "1325", str(2**64 - 1)])
def test_every_xe_command_accepts_the_same_good_nonce(xe_fleet: Fleet, good: str) -> None:
    for command in XE_NONCE_COMMANDS:
        output = run(xe_fleet.devices[0], command.format(nonce=good))
        assert "% Invalid" not in output and "ignature" in output, (command, output[:200])
