"""Typed clients of logging plugins: :class:`LogDriverClient` and its async twin.

``start_logging``/``stop_logging`` tell the plugin which FIFO to follow (the
host writes :func:`~pluginkit.sdk.logdriver.encode_entry` frames to it);
``read_logs`` streams the entries ``docker logs`` would show, decoded into
:class:`~pluginkit.sdk.logdriver.LogEntry` values. As the engine does, a
plugin without ``Capabilities`` (404) can do nothing extra.

Times the host leaves empty (``container_created``, ``since``, ``until``)
are sent as Go's zero time, as the engine does: a Go plugin cannot decode
``""`` into a ``time.Time``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from ..sdk import logdriver as models
from ..sdk._logentry import LogStreamError, read_entries, split_entries
from ._base import AsyncBase, AsyncReader, Call, SyncBase, endpoint, field_reply, ignore_reply
from ._base import request as to_json

__all__ = ["AsyncLogDriverClient", "LogDriverClient"]

#: Go's zero ``time.Time`` as encoding/json writes it.
GO_ZERO_TIME = "0001-01-01T00:00:00Z"


def _info(info: models.LogInfo | None) -> dict[str, Any]:
    body: dict[str, Any] = to_json(info if info is not None else models.LogInfo())
    if not body.get("ContainerCreated"):
        body["ContainerCreated"] = GO_ZERO_TIME
    return body


def _read_logs_body(info: models.LogInfo, config: models.ReadConfig | None) -> dict[str, Any]:
    read: dict[str, Any] = to_json(config if config is not None else models.ReadConfig())
    for key in ("Since", "Until"):
        if not read.get(key):
            read[key] = GO_ZERO_TIME
    return {"Info": _info(info), "Config": read}


class _LogDriver:
    """The ``LogDriver`` protocol (but ``read_logs``, a stream), once for both clients."""

    capability = "LogDriver"

    @endpoint
    def start_logging(self, file: str, info: models.LogInfo | None = None) -> Call[None]:
        """Have the plugin follow the FIFO ``file`` of the container ``info``."""
        return Call("LogDriver.StartLogging", {"File": file, "Info": _info(info)}, ignore_reply)

    @endpoint
    def stop_logging(self, file: str) -> Call[None]:
        """Tell the plugin that the container writing to ``file`` is done."""
        body = to_json(models.StopLoggingRequest(file))
        return Call("LogDriver.StopLogging", body, ignore_reply)

    @endpoint
    def capabilities(self) -> Call[models.LogCapability]:
        """Ask what the driver can do besides receiving logs (``read_logs``)."""
        return Call(
            "LogDriver.Capabilities",
            None,
            field_reply(models.CapabilitiesResponse, lambda reply: reply.cap),
            reply_type=models.CapabilitiesResponse,
            missing=models.LogCapability,
        )


class LogDriverClient(_LogDriver, SyncBase):
    """Call a logging plugin with typed arguments and results, blocking.

    Takes a :class:`~pluginkit.Plugin`, a :class:`~pluginkit.Client` or an
    address; errors are the client's (:class:`~pluginkit.PluginCallError`
    also for a 200 reply with a non-empty ``Err``).
    """

    @contextmanager
    def read_logs(
        self, info: models.LogInfo, config: models.ReadConfig | None = None
    ) -> Iterator[Iterator[models.LogEntry]]:
        """Stream the logs of container ``info``: ``with c.read_logs(info) as entries: ...``.

        The iterator yields each entry as it arrives (with ``config.follow``
        it waits for new ones); leaving the block closes the stream.

        Raises:
            PluginCallError: the plugin refused (e.g. it cannot read logs: 404).
            LogStreamError: the stream is malformed or ends inside an entry.
        """
        body = _read_logs_body(info, config)
        with self.client.stream("LogDriver.ReadLogs", body) as stream:
            yield read_entries(stream)


class AsyncLogDriverClient(_LogDriver, AsyncBase):
    """:class:`LogDriverClient` for asyncio: the same methods, as coroutines."""

    @asynccontextmanager
    async def read_logs(
        self, info: models.LogInfo, config: models.ReadConfig | None = None
    ) -> AsyncIterator[AsyncIterator[models.LogEntry]]:
        """Stream the logs of ``info``: ``async with c.read_logs(info) as entries: async for ...``.

        Raises:
            PluginCallError: the plugin refused (e.g. it cannot read logs: 404).
            LogStreamError: the stream is malformed or ends inside an entry.
        """
        body = _read_logs_body(info, config)
        async with self.client.stream("LogDriver.ReadLogs", body) as stream:
            yield _entries(stream)


async def _entries(stream: AsyncReader) -> AsyncIterator[models.LogEntry]:
    buffer = bytearray()
    while True:
        data = await stream.read(65536)
        if not data:
            break
        buffer += data
        for entry in split_entries(buffer):
            yield entry
    if buffer:
        raise LogStreamError(f"the log stream ends in the middle of an entry ({len(buffer)} bytes)")
