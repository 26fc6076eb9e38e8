"""A TPM reply's XML is UTF-8 (RFC 6241): one in another encoding must not slip a DOCTYPE or
entity declarations past the check for them (UTF-16 hid `<!DOCTYPE` from it, and the entity was
expanded), nor end a verification with an exception (an `encoding="utf-7"` declaration raised a
bare ValueError from the XML parser)."""

from __future__ import annotations

import pytest

from verifier.tpm.replies import ReplyError, parse_boot_log, parse_certificates, parse_ima_log, parse_quote

_DOC = ('<!DOCTYPE r [<!ENTITY e "EXPANDED">]><rpc-reply xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">'
        '<data>&e;</data></rpc-reply>')

HOSTILE = {
    "utf-16 with a BOM": ('<?xml version="1.0" encoding="UTF-16"?>' + _DOC).encode("utf-16"),
    "utf-16le without one": ('<?xml version="1.0" encoding="UTF-16LE"?>' + _DOC).encode("utf-16-le"),
    "utf-32": ('<?xml version="1.0" encoding="UTF-32"?>' + _DOC).encode("utf-32"),
    "a multi-byte encoding declared": b'<?xml version="1.0" encoding="utf-7"?><rpc-reply/>',
    "a single-byte encoding declared": b'<?xml version="1.0" encoding="cp037"?>' + "<rpc-reply/>".encode("cp037"),
    "latin-1 bytes": b'<?xml version="1.0" encoding="ISO-8859-1"?><rpc-reply><data>\xe9</data></rpc-reply>',
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_reply_not_in_utf8_is_a_reply_error(name: str) -> None:
    for parse in (parse_quote, parse_certificates, parse_boot_log, parse_ima_log):
        with pytest.raises(ReplyError) as caught:
            parse(HOSTILE[name])
        assert "EXPANDED" not in str(caught.value)
        assert "UTF-8" in caught.value.expected or "DTD" in caught.value.expected, caught.value
