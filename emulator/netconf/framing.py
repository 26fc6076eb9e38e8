"""NETCONF over SSH message framing (RFC 6242): end-of-message (1.0) and chunked (1.1), bounded.

A message, and each chunk header, has a size limit, so a client that never ends a message or
announces a huge chunk cannot make the device hold more than MAX_MESSAGE_BYTES for it.
"""

from __future__ import annotations

from typing import Callable

__all__ = ["END_OF_MESSAGE", "FramingError", "MAX_MESSAGE_BYTES", "MessageReader", "frame"]

END_OF_MESSAGE = b"]]>]]>"
# DoS bound: the largest hello or rpc a client may send (the attestation RPCs need well under 1 KiB).
MAX_MESSAGE_BYTES = 1 << 20
# RFC 6242: chunk-size is 1..4294967295, so at most 10 digits.
MAX_CHUNK_DIGITS = 10
MAX_CHUNK_SIZE = 4_294_967_295
READ_BYTES = 65_536


class FramingError(Exception):
    """The client broke the framing (or a bound): the session cannot continue."""


def frame(message: bytes, chunked: bool) -> bytes:
    """`message` as one framed unit: one chunk and the end-of-chunks marker, or `]]>]]>`."""
    if chunked:
        return b"\n#%d\n%s\n##\n" % (len(message), message)
    return message + END_OF_MESSAGE


class MessageReader:
    """Reads framed messages from `receive` (returns b"" at end of stream)."""

    def __init__(self, receive: Callable[[int], bytes], max_message: int = MAX_MESSAGE_BYTES) -> None:
        self._receive = receive
        self.max_message = max_message
        self._buffer = bytearray()
        self.chunked = False  # switched on after the hellos when both sides speak base:1.1

    def _fill(self) -> bool:
        data = self._receive(READ_BYTES)
        if not data:
            return False
        self._buffer += data
        return True

    def read(self) -> bytes | None:
        """The next message; None at a clean end of stream; FramingError on broken framing."""
        return self._read_chunked() if self.chunked else self._read_end_of_message()

    def _read_end_of_message(self) -> bytes | None:
        searched = 0
        while True:
            found = self._buffer.find(END_OF_MESSAGE, searched)
            if found >= 0:
                message = bytes(self._buffer[:found])
                del self._buffer[: found + len(END_OF_MESSAGE)]
                return message
            if len(self._buffer) > self.max_message + len(END_OF_MESSAGE):
                raise FramingError(f"message larger than {self.max_message} bytes without ]]>]]>")
            searched = max(0, len(self._buffer) - len(END_OF_MESSAGE) + 1)
            if not self._fill():
                if self._buffer.strip():
                    raise FramingError("the stream ended inside a message (expected ]]>]]>)")
                return None

    def _need(self, count: int) -> bool:
        while len(self._buffer) < count:
            if not self._fill():
                return False
        return True

    def _read_chunked(self) -> bytes | None:
        message = bytearray()
        while True:
            if not self._need(2):
                if not message and not self._buffer:
                    return None
                raise FramingError("the stream ended inside a chunked message")
            if self._buffer[:2] != b"\n#":
                raise FramingError(f"expected a chunk header '\\n#', found {bytes(self._buffer[:8])!r}")
            # "\n##\n" ends the message; "\n#<digits>\n" starts a chunk.
            end = -1
            while end < 0:
                end = self._buffer.find(b"\n", 2, 2 + MAX_CHUNK_DIGITS + 1)
                if end < 0:
                    if len(self._buffer) > 2 + MAX_CHUNK_DIGITS or not self._fill():
                        raise FramingError(f"expected a chunk size of 1 to {MAX_CHUNK_DIGITS} digits")
            size_text = bytes(self._buffer[2:end])
            if size_text == b"#":
                del self._buffer[: end + 1]
                if not message:
                    raise FramingError("expected at least one chunk before the end of chunks")
                return bytes(message)
            if not size_text.isdigit() or size_text.startswith(b"0") or int(size_text) > MAX_CHUNK_SIZE:
                raise FramingError(f"expected a chunk size 1-{MAX_CHUNK_SIZE}, found {size_text[:12]!r}")
            size = int(size_text)
            if len(message) + size > self.max_message:
                raise FramingError(f"message larger than {self.max_message} bytes")
            del self._buffer[: end + 1]
            if not self._need(size):
                raise FramingError("the stream ended inside a chunk")
            message += self._buffer[:size]
            del self._buffer[:size]
