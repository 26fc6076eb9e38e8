"""RFC 6242 framing: what is framed reads back the same, however the stream is cut; a broken or
oversized stream is refused."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from emulator.netconf.framing import FramingError, MessageReader, frame

messages = st.lists(st.binary(min_size=1, max_size=300).filter(lambda m: b"]]>]]>" not in m), min_size=1, max_size=5)


def _reader(stream: bytes, cuts: list[int], **kwargs) -> MessageReader:
    pieces, last = [], 0
    for cut in sorted({c % (len(stream) + 1) for c in cuts}) + [len(stream)]:
        pieces.append(stream[last:cut])
        last = cut
    pieces = [p for p in pieces if p]

    def receive(_: int) -> bytes:
        return pieces.pop(0) if pieces else b""

    return MessageReader(receive, **kwargs)


@given(messages, st.lists(st.integers(0, 10_000), max_size=8), st.booleans())
def test_framed_messages_read_back_whatever_the_cuts(sent: list[bytes], cuts: list[int], chunked: bool) -> None:
    reader = _reader(b"".join(frame(m, chunked) for m in sent), cuts)
    reader.chunked = chunked
    assert [reader.read() for _ in sent] == sent
    assert reader.read() is None


@pytest.mark.parametrize(("stream", "chunked", "expected"), [
    (b"\n#0\nx\n##\n", True, "chunk size"),
    (b"\n#12345678901\n", True, "1 to 10 digits"),
    (b"\n##\n", True, "at least one chunk"),
    (b"junk", True, "chunk header"),
    (b"\n#5\nab", True, "inside a chunk"),
    (b"<rpc/>", False, "ended inside a message"),
    (b"\n#2000\n" + b"x" * 2000 + b"\n##\n", True, "larger than 1000"),
    (b"x" * 2000, False, "larger than 1000"),
])
def test_broken_or_oversized_streams_are_refused(stream: bytes, chunked: bool, expected: str) -> None:
    reader = _reader(stream, [], max_message=1000)
    reader.chunked = chunked
    with pytest.raises(FramingError, match=expected):
        reader.read()
