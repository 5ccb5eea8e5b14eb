"""Run the typed clients' tests once per kind: blocking, and asyncio over an async caller."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from pluginkit import AsyncClient, Client

# sync: the blocking clients; async-client: the twins on pluginkit.AsyncClient;
# async-adapter: the twins on the smallest async caller (the protocol, not the class).
KINDS = ["sync", "async-client", "async-adapter"]


class _Reader:
    def __init__(self, body: Any) -> None:
        self.body = body

    async def read(self, n: int = -1) -> bytes:
        return await asyncio.to_thread(self.body.read, n)  # type: ignore[no-any-return]


class ThreadAdapter:
    """The smallest async caller: a blocking Client driven from worker threads."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.addr = client.addr
        self.closed = False

    async def call(self, method: str, args: Any = None) -> Any:
        return await asyncio.to_thread(self.client.call, method, args)

    @asynccontextmanager
    async def stream(self, method: str, args: Any = None) -> AsyncIterator[_Reader]:
        context = self.client.stream(method, args)
        body = await asyncio.to_thread(context.__enter__)
        try:
            yield _Reader(body)
        finally:
            await asyncio.to_thread(context.__exit__, None, None, None)

    async def aclose(self) -> None:
        self.closed = True


class Awaitable:
    """A blocking typed client whose methods are awaited like the async one's."""

    def __init__(self, typed: Any) -> None:
        self.typed = typed

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.typed, name)

        async def run(*args: Any, **kwargs: Any) -> Any:
            return method(*args, **kwargs)

        return run


class OnAsyncClient:
    """An async typed client on a fresh pluginkit.AsyncClient per call (each run has its loop)."""

    def __init__(self, async_cls: type, addr: str) -> None:
        self.async_cls = async_cls
        self.addr = addr

    def __getattr__(self, name: str) -> Callable[..., Any]:
        async def run(*args: Any, **kwargs: Any) -> Any:
            async with AsyncClient(self.addr, retry_timeout=0) as client:
                return await getattr(self.async_cls(client), name)(*args, **kwargs)

        return run


def typed(kind: str, sync_cls: type, async_cls: type, client: Client) -> Any:
    """The typed client of ``kind`` over ``client``; its methods are awaited either way."""
    if kind == "sync":
        return Awaitable(sync_cls(client))
    if kind == "async-client":
        return OnAsyncClient(async_cls, client.addr)
    return async_cls(ThreadAdapter(client))


def run(coro: Any) -> Any:
    return asyncio.run(coro)
