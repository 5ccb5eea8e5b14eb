"""AsyncClient beyond the shared client suite: concurrency, loops, cancellation, handout."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from _client_helpers import HTTPPluginServer, RawServer, activate, echo, read_request, reply

from pluginkit import (
    AsyncClient,
    Client,
    LegacyRegistry,
    PluginConnectionError,
    PluginProtocolError,
    PluginTimeoutError,
)

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"


@pytest.fixture
def echo_server(short_tmp: Path) -> Iterator[HTTPPluginServer]:
    with HTTPPluginServer(
        short_tmp / "echo.sock", {"Test.Echo": echo, "Plugin.Activate": activate("VolumeDriver")}
    ) as server:
        yield server


def test_many_calls_run_at_once_on_one_loop(echo_server: HTTPPluginServer) -> None:
    """Calls gathered on one loop all get their own replies."""

    async def main() -> list[object]:
        async with AsyncClient(echo_server.addr) as client:
            return list(
                await asyncio.gather(*(client.call("Test.Echo", {"n": n}) for n in range(50)))
            )

    assert asyncio.run(main()) == [{"n": n} for n in range(50)]


def test_a_client_outlives_its_loop(echo_server: HTTPPluginServer) -> None:
    """A client used from a second asyncio.run opens fresh connections and works."""
    client = AsyncClient(echo_server.addr)
    assert asyncio.run(client.call("Test.Echo", {"a": 1})) == {"a": 1}
    assert asyncio.run(client.call("Test.Echo", {"a": 2})) == {"a": 2}
    client.close()


def test_connections_are_kept_alive(short_tmp: Path) -> None:
    """Sequential calls reuse one connection."""

    def behaviour(conn: socket.socket) -> None:
        while read_request(conn):
            conn.sendall(OK)

    async def main(addr: str) -> None:
        async with AsyncClient(addr) as client:
            for _ in range(5):
                assert await client.call("X") == {}

    with RawServer(short_tmp / "k.sock", behaviour) as server:
        asyncio.run(main(server.addr))
    assert server.accepted == 1


def test_cancelled_call_does_not_pool_its_connection(short_tmp: Path) -> None:
    """A call cancelled while waiting leaves nothing half-read in the pool."""
    release = threading.Event()
    replies = []

    def behaviour(conn: socket.socket) -> None:
        first = True
        while read_request(conn):
            if first:
                first = False
                release.wait(10)
                replies.append(conn.getpeername())
            conn.sendall(OK)

    async def main(addr: str) -> None:
        async with AsyncClient(addr) as client:
            task = asyncio.ensure_future(client.call("Slow"))
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            release.set()
            assert await client.call("Next") == {}

    with RawServer(short_tmp / "c.sock", behaviour) as server:
        asyncio.run(main(server.addr))
    assert server.accepted == 2


def test_timeout_names_the_method(short_tmp: Path) -> None:
    """A reply later than the timeout is a PluginTimeoutError with the sync client's text."""
    release = threading.Event()

    def behaviour(conn: socket.socket) -> None:
        read_request(conn)
        release.wait(10)
        reply(conn, OK)

    async def main(addr: str) -> None:
        async with AsyncClient(addr, timeout=0.1) as client:
            await client.call("Test.Slow")

    with RawServer(short_tmp / "t.sock", behaviour) as server:
        try:
            with pytest.raises(PluginTimeoutError) as info:
                asyncio.run(main(server.addr))
        finally:
            release.set()
    assert str(info.value) == f"Test.Slow: plugin at {server.addr} did not answer within 0.1 s"


def test_plugin_hands_out_an_async_client(echo_server: HTTPPluginServer, short_tmp: Path) -> None:
    """plugin.async_client is an AsyncClient with the settings of plugin.client."""
    with LegacyRegistry([short_tmp], [short_tmp / "none"], backoff_unit=0.01) as registry:
        plugin = registry.get("echo", "VolumeDriver")
        client = plugin.async_client
        assert isinstance(client, AsyncClient)
        assert plugin.async_client is client
        assert isinstance(plugin.client, Client)
        assert (client.addr, client.timeout, client.backoff_unit) == (
            plugin.client.addr,
            plugin.client.timeout,
            plugin.client.backoff_unit,
        )
        assert asyncio.run(client.call("Test.Echo", {"x": 1})) == {"x": 1}
    # Closing the registry closed it (a pooled connection would leak a ResourceWarning).
    with pytest.raises(PluginConnectionError, match="client is closed"):
        asyncio.run(client.call("Test.Echo"))


def test_close_from_another_thread_leaves_it_to_the_loop(echo_server: HTTPPluginServer) -> None:
    """close() from a thread other than the loop's closes the connections on the loop."""

    async def main() -> None:
        client = AsyncClient(echo_server.addr)
        assert await client.call("Test.Echo", {"a": 1}) == {"a": 1}
        await asyncio.to_thread(client.close)  # a manager's thread, say
        await asyncio.sleep(0.05)  # the loop runs the close
        with pytest.raises(PluginConnectionError, match="client is closed"):
            await client.call("Test.Echo")

    asyncio.run(main())


def test_the_sync_client_does_not_load_ssl_or_asyncio() -> None:
    """Importing pluginkit and calling over a unix socket loads neither ssl nor asyncio."""
    code = (
        "import sys, pluginkit\n"
        "pluginkit.Client('unix:///nothing.sock', retry_timeout=0)\n"
        "print('ssl' in sys.modules, 'asyncio' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_stream_body_cut_short_or_stalled(short_tmp: Path) -> None:
    """A streamed body ending early, or stalling past the timeout: the sync client's errors."""
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"
    release = threading.Event()

    def stall(conn: socket.socket) -> None:
        reply(conn, cut)
        release.wait(10)

    async def read_all(addr: str, timeout: float | None) -> bytes:
        async with AsyncClient(addr) as client, client.stream("Logs", timeout=timeout) as body:
            return await body.read()

    with (
        RawServer(short_tmp / "c.sock", lambda conn: reply(conn, cut)) as server,
        pytest.raises(PluginProtocolError) as cut_short,
    ):
        asyncio.run(read_all(server.addr, None))
    assert str(cut_short.value) == (
        f"Logs: invalid reply from plugin at {server.addr}: reply truncated"
    )
    with RawServer(short_tmp / "s.sock", stall) as server:
        try:
            with pytest.raises(PluginTimeoutError) as stalled:
                asyncio.run(read_all(server.addr, 0.05))
        finally:
            release.set()
    assert str(stalled.value) == f"Logs: plugin at {server.addr} did not answer within 0.05 s"
