"""The verifier's TPM path on hostile bytes near valid ones: a real quote (swtpm) with bytes of
its marshalled TPMS_ATTEST or TPMT_SIGNATURE changed, or its reply's XML cut or altered, is a
verdict (never an exception), and never trusted unless the quote is the one signed."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verifier.policy import Policy
from verifier.profiles._common import Anchors
from verifier.tpm.attestation import TPMInputs, verify_tpm_output

from tpm_swtpm import Quote, SoftTPM, VendorCA, certificate_reply, missing_tools, quote_reply

pytestmark = pytest.mark.skipif(bool(missing_tools()) and not os.environ.get("DOSSIER_REQUIRE_TPM_TOOLS"),
                                reason=f"software TPM tools missing: {', '.join(missing_tools())}")

NODE = "0/RP0/CPU0"
PCRS = (0, 7, 10)
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
NONCE = hashlib.sha256(b"adversarial nonce").digest()[:20]


@dataclasses.dataclass
class Signed:
    quote: Quote
    certificate_xml: bytes
    root: object


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Signed]:
    tpm = SoftTPM(tmp_path_factory.mktemp("swtpm-adv"))
    try:
        ca = VendorCA()
        ak = ca.attestation_certificate(tpm.ak_pem, "xr-1")
        yield Signed(tpm.quote(NONCE, PCRS), certificate_reply({NODE: [ca.root, ca.sub, ak]}), ca.root)
    finally:
        tpm.close()


def _verdict(signed: Signed, raw: bytes) -> object:
    return verify_tpm_output("xr-tpm-quote", raw, TPMInputs(certificate=signed.certificate_xml, requested_pcrs=PCRS),
                             anchors=Anchors((signed.root,)), nonce=NONCE, when=NOW, policy=Policy())


def _mutated(data: bytes, changes: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for index, value in changes:
        out[index % len(out)] = value
    return bytes(out)


_CHANGES = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4)


def test_the_unmutated_quote_is_trusted(signed: Signed) -> None:
    assert _verdict(signed, quote_reply({NODE: (signed.quote, 5)})).trusted


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=_CHANGES, field=st.sampled_from(["message", "signature"]))
def test_a_changed_quote_or_signature_is_an_untrusted_verdict(signed: Signed, changes: list[tuple[int, int]],
                                                                field: str) -> None:
    changed = _mutated(getattr(signed.quote, field), changes)
    quote = dataclasses.replace(signed.quote, **{field: changed})
    verdict = _verdict(signed, quote_reply({NODE: (quote, 5)}))
    if changed != getattr(signed.quote, field):
        assert not verdict.trusted


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=_CHANGES, cut=st.integers(0, 10_000))
def test_a_changed_or_cut_reply_is_a_verdict(signed: Signed, changes: list[tuple[int, int]], cut: int) -> None:
    raw = quote_reply({NODE: (signed.quote, 5)})
    _verdict(signed, _mutated(raw, changes))
    _verdict(signed, raw[:cut % len(raw)])
