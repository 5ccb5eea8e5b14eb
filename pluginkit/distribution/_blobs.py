"""Blobs read with their digest and size checked while they stream, and progress reports."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, BinaryIO, Protocol

import attrs

from ._errors import BlobError

__all__ = ["Progress", "ProgressEvent", "VerifyingReader"]


@attrs.frozen
class ProgressEvent:
    """One progress report.

    Attributes:
        action: ``resolve``, ``config``, ``download``, ``downloaded``,
            ``upload``, ``uploaded``, ``exists``, ``manifest``, ``done``.
        id: the short blob id (12 hex digits) or the reference.
        current: bytes so far (transfers).
        total: bytes in all (transfers; 0 when unknown).
    """

    action: str
    id: str
    current: int = 0
    total: int = 0


class Progress(Protocol):
    """Receives :class:`ProgressEvent` s (the CLI draws them)."""

    def __call__(self, event: ProgressEvent) -> None: ...


def no_progress(event: ProgressEvent) -> None:
    """Ignore progress."""


def short(digest: str) -> str:
    """Docker's short blob id: 12 hex digits after ``sha256:``."""
    return digest.partition(":")[2][:12] or digest


class VerifyingReader:
    """A file-like reader that hashes and counts what passes, and checks it at :meth:`finish`.

    More bytes than ``size`` is an error as soon as they arrive, so a server
    cannot fill the disk.
    """

    def __init__(
        self,
        source: BinaryIO | Any,
        digest: str,
        size: int,
        what: str,
        *,
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        self._source = source
        self.digest = digest
        self.size = size
        self.what = what
        self._hash = hashlib.sha256()
        self.count = 0
        self._on_bytes = on_bytes
        self._step = max(size // 100, 1 << 16)
        self._next_report = self._step

    def read(self, n: int = -1) -> bytes:
        """Read up to ``n`` bytes (all when negative), hashing them."""
        data: bytes = self._source.read(n if n is not None and n >= 0 else -1)
        if data:
            self._hash.update(data)
            self.count += len(data)
            if self.count > self.size:
                raise BlobError(
                    f"{self.what} is larger than the {self.size} bytes its descriptor says"
                )
            if self._on_bytes is not None and self.count >= self._next_report:
                self._next_report = self.count + self._step
                self._on_bytes(self.count)
        return data

    def drain(self) -> None:
        """Read what is left (up to the declared size and one byte more)."""
        while self.read(1 << 20):
            pass

    def finish(self) -> None:
        """Drain the rest, then check size and digest.

        Raises:
            BlobError: ``… is truncated`` or ``digest mismatch for …``.
        """
        self.drain()
        if self._on_bytes is not None:
            self._on_bytes(self.count)
        if self.count < self.size:
            raise BlobError(f"{self.what} is truncated: got {self.count} of {self.size} bytes")
        actual = "sha256:" + self._hash.hexdigest()
        if actual != self.digest:
            raise BlobError(f"digest mismatch for {self.what}: got {actual}")
