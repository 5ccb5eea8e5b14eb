"""Logging plugins: :class:`LogDriver`, its models and Docker's log entry stream.

``docker run --log-driver NAME`` makes the engine create a FIFO per
container and call ``/LogDriver.StartLogging`` with its path and what it
knows of the container (:class:`LogInfo`). The engine then writes the
container's output to the FIFO as a stream of *log entries*: each a
protobuf ``LogEntry`` message behind its length (4 bytes, big-endian).
``/LogDriver.StopLogging`` says the container is done. A driver that
announces the ``ReadLogs`` capability also answers ``/LogDriver.ReadLogs``
(``docker logs``) with such a stream.

The base class does the FIFO work: subclass it and override :meth:`LogDriver.log`,
called for every entry from a thread per container::

    from pluginkit.sdk import logdriver

    class Printer(logdriver.LogDriver):
        def log(self, info: logdriver.LogInfo, entry: logdriver.LogEntry) -> None:
            print(info.container_name, entry.source, entry.line.decode(errors="replace"))

:func:`encode_entry` and :func:`read_entries` speak the stream format, for
``ReadLogs`` replies and for reading one on the other side (no protobuf
library is needed).
"""

from __future__ import annotations

import logging
import os
import select
import threading
from collections.abc import Awaitable, Iterable, Iterator
from typing import ClassVar, cast

import attrs

import pluginkit._log  # noqa: F401 - the package logger's NullHandler, before any record

from .._errors import PluginError
from ._driver import Driver, Endpoint, MaybeAwaitable, unimplemented
from ._logentry import (
    MAX_ENTRY_SIZE,
    LogEntry,
    LogStreamError,
    PartialLogMetadata,
    decode_entry,
    encode_entry,
    read_entries,
    split_entries,
)

__all__ = [
    "MAX_ENTRY_SIZE",
    "CapabilitiesResponse",
    "LogCapability",
    "LogDriver",
    "LogEntry",
    "LogInfo",
    "LogStreamError",
    "PartialLogMetadata",
    "ReadConfig",
    "ReadLogsRequest",
    "StartLoggingRequest",
    "StopLoggingRequest",
    "decode_entry",
    "encode_entry",
    "read_entries",
]

logger = logging.getLogger("pluginkit.sdk")

_SETUP_LOCK = threading.Lock()

# -- JSON models ---------------------------------------------------------------


@attrs.frozen
class LogInfo:
    """What the engine tells a driver about the container whose logs it gets.

    ``config`` holds the ``--log-opt`` options; ``container_created`` is the
    engine's RFC 3339 time text. Only ``container_id`` is always set.
    """

    config: dict[str, str] = attrs.field(factory=dict)
    container_id: str = ""
    container_name: str = ""
    container_entrypoint: str = ""
    container_args: list[str] = attrs.field(factory=list)
    container_image_id: str = ""
    container_image_name: str = ""
    container_created: str = ""
    container_env: list[str] = attrs.field(factory=list)
    container_labels: dict[str, str] = attrs.field(factory=dict)
    log_path: str = ""
    daemon_name: str = ""


@attrs.frozen
class StartLoggingRequest:
    """``LogDriver.StartLogging``: read the entries of the container ``info`` from FIFO ``file``."""

    file: str
    info: LogInfo = attrs.field(factory=LogInfo)


@attrs.frozen
class StopLoggingRequest:
    """``LogDriver.StopLogging``: the container writing to ``file`` is done."""

    file: str


@attrs.frozen
class LogCapability:
    """What the driver can do besides receiving logs: ``read_logs`` serves ``docker logs``."""

    read_logs: bool = False


@attrs.frozen
class CapabilitiesResponse:
    """Reply to ``LogDriver.Capabilities`` (``{"Cap": {"ReadLogs": ...}}``)."""

    cap: LogCapability = attrs.field(factory=LogCapability)


@attrs.frozen
class ReadConfig:
    """What ``docker logs`` asks for: ``since``/``until`` (RFC 3339 text), ``tail``, ``follow``.

    ``tail`` is the number of last entries wanted; -1 (or 0 from older
    engines) means all of them.
    """

    since: str = ""
    until: str = ""
    tail: int = 0
    follow: bool = False


@attrs.frozen
class ReadLogsRequest:
    """``LogDriver.ReadLogs``: the logs of container ``info``, as ``config`` says."""

    info: LogInfo = attrs.field(factory=LogInfo)
    config: ReadConfig = attrs.field(factory=ReadConfig)


# -- the driver ------------------------------------------------------------------


def _entry_frames(entries: Iterable[LogEntry]) -> Iterator[bytes]:
    return (encode_entry(entry) for entry in entries)


class _Follower:
    """Reads one container's FIFO in a thread and hands each entry to ``driver.log``."""

    def __init__(self, driver: LogDriver, request: StartLoggingRequest) -> None:
        self.file = request.file
        self.info = request.info
        self.driver = driver
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            # Non-blocking: opening a FIFO for reading must not wait for a
            # writer (the engine has it open already; if it died, reads say EOF).
            self.fd = os.open(request.file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            os.close(self.wake_r)
            os.close(self.wake_w)
            raise
        self.thread = threading.Thread(
            target=self.run, name=f"pluginkit-logdriver:{request.file}", daemon=True
        )

    def stop(self) -> None:
        os.write(self.wake_w, b"x")

    def run(self) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        poller.register(self.wake_r, select.POLLIN)
        buffer = bytearray()
        stopping = broken = False
        try:
            while True:
                # After StopLogging the engine has written everything: read
                # what the FIFO holds, then finish without waiting for it.
                ready = {fd for fd, _ in poller.poll(0 if stopping else None)}
                if self.wake_r in ready:
                    stopping = True
                    poller.unregister(self.wake_r)
                if self.fd not in ready:
                    if stopping:
                        break
                    continue
                try:
                    data = os.read(self.fd, 65536)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    logger.error("cannot read the log stream %s: %s", self.file, exc)
                    break
                if not data:
                    break  # every writer closed the FIFO
                if broken:
                    continue  # keep draining, so the container never blocks on a full pipe
                buffer += data
                try:
                    for entry in split_entries(buffer):
                        self._deliver(entry)
                except LogStreamError as exc:
                    logger.error(
                        "log stream %s is malformed, dropping the rest: %s", self.file, exc
                    )
                    broken = True
        finally:
            for fd in (self.fd, self.wake_r, self.wake_w):
                os.close(fd)
            self.driver._forget(self)

    def _deliver(self, entry: LogEntry) -> None:
        try:
            result = self.driver.log(self.info, entry)
            if hasattr(type(result), "__await__"):
                # An async log(): awaited on the server's event loop, one entry
                # at a time (order kept, and a slow log() slows the reader).
                self.driver._await(cast("Awaitable[None]", result))
        except Exception:
            logger.exception("LogDriver.log failed for %s", self.info.container_id or self.file)


class LogDriver(Driver):
    """Base class of logging plugins (capability ``LogDriver``).

    Override :meth:`log`: :meth:`start_logging` follows the container's FIFO
    in a thread of its own and calls ``log(info, entry)`` for every entry,
    and :meth:`stop_logging` lets it read what is left, then stop. A driver
    that wants the FIFO itself overrides those two instead. Override
    :meth:`read_logs` to serve ``docker logs``; :meth:`capabilities` then
    announces ``ReadLogs``.
    """

    implements: ClassVar[str] = "LogDriver"
    endpoints: ClassVar[tuple[Endpoint, ...]] = (
        Endpoint("LogDriver.StartLogging", "start_logging", StartLoggingRequest, required=False),
        Endpoint("LogDriver.StopLogging", "stop_logging", StopLoggingRequest, required=False),
        Endpoint("LogDriver.Capabilities", "capabilities", None, required=False),
        Endpoint("LogDriver.ReadLogs", "read_logs", ReadLogsRequest, reply=_entry_frames),
    )

    _followers: dict[str, _Follower]
    _followers_lock: threading.Lock

    def _state(self) -> tuple[dict[str, _Follower], threading.Lock]:
        # Set up lazily, so that subclasses need not call super().__init__();
        # under a lock, as pool threads may start two containers at once.
        try:
            return self._followers, self._followers_lock
        except AttributeError:
            with _SETUP_LOCK:
                if not hasattr(self, "_followers_lock"):
                    self._followers, self._followers_lock = {}, threading.Lock()
            return self._followers, self._followers_lock

    def log(self, info: LogInfo, entry: LogEntry) -> MaybeAwaitable[None]:
        """Handle one entry of container ``info``; runs in that container's reader thread.

        The default drops it: override this (or :meth:`start_logging`).
        """

    def start_logging(self, request: StartLoggingRequest) -> MaybeAwaitable[None]:
        """Start following ``request.file``; each entry goes to :meth:`log`."""
        followers, lock = self._state()
        with lock:
            if request.file in followers:
                raise PluginError(f"a logger for {request.file} already exists")
            try:
                follower = _Follower(self, request)
            except OSError as exc:
                raise PluginError(
                    f"cannot open the log stream {request.file}: {exc.strerror}"
                ) from None
            followers[request.file] = follower
        follower.thread.start()
        return None

    def stop_logging(self, request: StopLoggingRequest) -> MaybeAwaitable[None]:
        """Finish ``request.file``: what the FIFO still holds is read, then the thread ends."""
        followers, lock = self._state()
        with lock:
            follower = followers.get(request.file)
        if follower is not None:
            follower.stop()
        return None

    def following(self) -> list[str]:
        """Return the FIFO paths being read now."""
        followers, lock = self._state()
        with lock:
            return sorted(followers)

    def _forget(self, follower: _Follower) -> None:
        followers, lock = self._state()
        with lock:
            if followers.get(follower.file) is follower:
                del followers[follower.file]

    def capabilities(self) -> MaybeAwaitable[CapabilitiesResponse]:
        """Announce ``ReadLogs`` when the subclass implements :meth:`read_logs`."""
        return CapabilitiesResponse(LogCapability(read_logs=self._overrides("read_logs")))

    @unimplemented
    def read_logs(self, request: ReadLogsRequest) -> MaybeAwaitable[Iterable[LogEntry]]:
        r"""Return (or yield) the entries ``docker logs`` asked for; they are streamed.

        The engine prints each ``line`` as it is, and the lines :meth:`log`
        received lack their newline (the engine strips it): give a whole
        (not ``partial``) line its ``b"\n"`` back, as Docker's own json-file
        driver does. The engine drops entries outside ``since``/``until``;
        ``tail`` is the driver's to apply.

        With ``request.config.follow`` the iterator may wait for new entries:
        serve the driver with ``threads=N`` then, so that a waiting reader does
        not hold up the server's other requests.
        """
        raise NotImplementedError
