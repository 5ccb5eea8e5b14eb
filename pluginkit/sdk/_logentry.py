"""Docker's log entry stream: protobuf ``LogEntry`` messages, each behind its length.

The engine writes a container's output to a logging plugin's FIFO, and a
plugin answers ``LogDriver.ReadLogs``, in this format: 4 bytes of message
size (big-endian), then the protobuf message (``api/types/plugins/logdriver/
entry.proto`` in Docker's sources). The two messages are small enough to be
coded here, so no protobuf library is needed. Public names are re-exported
by :mod:`pluginkit.sdk.logdriver`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

import attrs

from .._errors import PluginError

__all__ = [
    "MAX_ENTRY_SIZE",
    "LogEntry",
    "LogStreamError",
    "PartialLogMetadata",
    "decode_entry",
    "encode_entry",
    "read_entries",
    "split_entries",
]

#: The largest log entry accepted (the engine cuts lines at 16 KiB; this
#: leaves room and still stops a corrupt length from allocating gigabytes).
MAX_ENTRY_SIZE = 1024 * 1024


class LogStreamError(PluginError, ValueError):
    """A log entry stream is malformed: a bad length prefix or protobuf message."""


@attrs.frozen
class PartialLogMetadata:
    """Where a partial entry (a line longer than the engine's buffer) belongs.

    The pieces of one line share ``id`` and count up by ``ordinal``; ``last``
    marks the final piece.
    """

    last: bool = False
    id: str = ""
    ordinal: int = 0


@attrs.frozen
class LogEntry:
    """One log entry: ``line`` (bytes, without the newline) written to ``source``.

    ``source`` is ``"stdout"`` or ``"stderr"``; ``time_nano`` the time in
    nanoseconds since the epoch; ``partial`` says the line goes on in the
    next entry (see ``partial_log_metadata``).
    """

    source: str = ""
    time_nano: int = 0
    line: bytes = b""
    partial: bool = False
    partial_log_metadata: PartialLogMetadata | None = None


_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5
_U64 = (1 << 64) - 1


def _varint(value: int) -> bytes:
    value &= _U64  # negative numbers are ten bytes of two's complement, as in Go
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def _bytes_field(number: int, data: bytes) -> bytes:
    return _field(number, _BYTES) + _varint(len(data)) + data


def _encode_metadata(meta: PartialLogMetadata) -> bytes:
    out = b""
    if meta.last:
        out += _field(1, _VARINT) + b"\x01"
    if meta.id:
        out += _bytes_field(2, meta.id.encode())
    if meta.ordinal:
        out += _field(3, _VARINT) + _varint(meta.ordinal)
    return out


def encode_entry(entry: LogEntry) -> bytes:
    """Return ``entry`` as the engine writes it: its length (4 bytes, big-endian), then protobuf."""
    out = b""
    if entry.source:
        out += _bytes_field(1, entry.source.encode())
    if entry.time_nano:
        out += _field(2, _VARINT) + _varint(entry.time_nano)
    if entry.line:
        out += _bytes_field(3, entry.line)
    if entry.partial:
        out += _field(4, _VARINT) + b"\x01"
    if entry.partial_log_metadata is not None:
        out += _bytes_field(5, _encode_metadata(entry.partial_log_metadata))
    return len(out).to_bytes(4, "big") + out


class _Reader:
    """Reads protobuf fields from one message."""

    def __init__(self, data: bytes | memoryview, what: str) -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.what = what

    def varint(self) -> int:
        result = shift = 0
        data = self.data
        while True:
            if self.pos >= len(data):
                raise LogStreamError(f"{self.what}: a number runs past the end of the message")
            byte = data[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result & _U64
            shift += 7
            if shift >= 70:
                raise LogStreamError(f"{self.what}: a number is longer than ten bytes")

    def signed(self) -> int:
        value = self.varint()
        return value - (1 << 64) if value >= 1 << 63 else value

    def chunk(self) -> memoryview:
        size = self.varint()
        end = self.pos + size
        if end > len(self.data):
            raise LogStreamError(f"{self.what}: a field runs past the end of the message")
        piece = self.data[self.pos : end]
        self.pos = end
        return piece

    def fields(self) -> Iterator[tuple[int, int]]:
        """Yield (field number, wire type); the caller reads or :meth:`skip` s the value."""
        while self.pos < len(self.data):
            key = self.varint()
            yield key >> 3, key & 7

    def skip(self, wire_type: int) -> None:
        if wire_type == _VARINT:
            self.varint()
        elif wire_type == _BYTES:
            self.chunk()
        elif wire_type in (_FIXED64, _FIXED32):
            self.pos += 8 if wire_type == _FIXED64 else 4
            if self.pos > len(self.data):
                raise LogStreamError(f"{self.what}: a field runs past the end of the message")
        else:
            raise LogStreamError(f"{self.what}: unsupported protobuf wire type {wire_type}")

    def text(self) -> str:
        try:
            return str(self.chunk(), "utf-8")
        except UnicodeDecodeError as exc:
            raise LogStreamError(f"{self.what}: a text field is not UTF-8: {exc}") from None


def _expect(reader: _Reader, name: str, wire_type: int, expected: int) -> None:
    if wire_type != expected:
        raise LogStreamError(f"{reader.what}: field {name} has wire type {wire_type}")


def _decode_metadata(data: memoryview) -> PartialLogMetadata:
    reader = _Reader(data, "log entry metadata")
    last, id_, ordinal = False, "", 0
    for number, wire_type in reader.fields():
        if number == 1:
            _expect(reader, "last", wire_type, _VARINT)
            last = reader.varint() != 0
        elif number == 2:
            _expect(reader, "id", wire_type, _BYTES)
            id_ = reader.text()
        elif number == 3:
            _expect(reader, "ordinal", wire_type, _VARINT)
            ordinal = reader.signed()
            ordinal = (ordinal + (1 << 31)) % (1 << 32) - (1 << 31)  # an int32, as Go reads it
        else:
            reader.skip(wire_type)
    return PartialLogMetadata(last=last, id=id_, ordinal=ordinal)


def decode_entry(message: bytes | memoryview) -> LogEntry:
    """Parse one protobuf ``LogEntry`` message (without its length prefix).

    Unknown fields are skipped, as protobuf readers do.

    Raises:
        LogStreamError: the message is not a valid ``LogEntry``.
    """
    reader = _Reader(message, "log entry")
    source, time_nano, line, partial = "", 0, b"", False
    metadata: PartialLogMetadata | None = None
    for number, wire_type in reader.fields():
        if number == 1:
            _expect(reader, "source", wire_type, _BYTES)
            source = reader.text()
        elif number == 2:
            _expect(reader, "time_nano", wire_type, _VARINT)
            time_nano = reader.signed()
        elif number == 3:
            _expect(reader, "line", wire_type, _BYTES)
            line = bytes(reader.chunk())
        elif number == 4:
            _expect(reader, "partial", wire_type, _VARINT)
            partial = reader.varint() != 0
        elif number == 5:
            _expect(reader, "partial_log_metadata", wire_type, _BYTES)
            metadata = _decode_metadata(reader.chunk())
        else:
            reader.skip(wire_type)
    return LogEntry(
        source=source,
        time_nano=time_nano,
        line=line,
        partial=partial,
        partial_log_metadata=metadata,
    )


def split_entries(buffer: bytearray) -> Iterator[LogEntry]:
    """Yield the complete entries at the start of ``buffer`` and remove them from it."""
    pos = 0
    view = memoryview(buffer)
    try:
        while len(buffer) - pos >= 4:
            size = int.from_bytes(view[pos : pos + 4], "big")
            if size > MAX_ENTRY_SIZE:
                raise LogStreamError(
                    f"a log entry claims {size} bytes, more than the {MAX_ENTRY_SIZE} allowed"
                )
            if len(buffer) - pos - 4 < size:
                break
            entry = decode_entry(view[pos + 4 : pos + 4 + size])
            pos += 4 + size
            yield entry
    finally:
        view.release()
        del buffer[:pos]


def read_entries(stream: IO[bytes]) -> Iterator[LogEntry]:
    """Yield the log entries of a binary stream until it ends.

    Raises:
        LogStreamError: the stream is malformed, or ends in the middle of an entry.
    """
    buffer = bytearray()
    while True:
        data = stream.read(65536)
        if not data:
            break
        buffer += data
        yield from split_entries(buffer)
    if buffer:
        raise LogStreamError(f"the log stream ends in the middle of an entry ({len(buffer)} bytes)")
