"""Run the sync client's tests against :class:`pluginkit.AsyncClient` too.

:class:`AsyncAsSync` gives an ``AsyncClient`` the sync ``Client``'s face: each
call is a coroutine run on one event loop that lives in a helper thread of
the test process (the test harness's thread, not the client's: the client
itself runs on that loop alone). A test module opts in with::

    pytest_generate_tests = parametrize_clients(["test_that_needs_sync_internals"])

and its tests then run once with ``Client`` and once with ``AsyncClient``
behind the module's ``Client`` name (the ``client_kind`` parameter).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import threading
from collections.abc import Callable, Coroutine, Iterable, Iterator
from typing import Any, TypeVar

import pytest

from pluginkit import AsyncClient

_T = TypeVar("_T")
_loop: asyncio.AbstractEventLoop | None = None
_lock = threading.Lock()


def _the_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="async-tests", daemon=True)
            thread.start()
            _loop = loop
        return _loop


def run(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coroutine`` on the shared loop and return its result (or raise its error)."""
    return asyncio.run_coroutine_threadsafe(coroutine, _the_loop()).result()


class _SyncBody(io.RawIOBase):
    def __init__(self, reader: Any) -> None:
        super().__init__()
        self._reader = reader

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = run(self._reader.read(len(view)))
        view[: len(data)] = data
        return len(data)


class AsyncAsSync:
    """An :class:`AsyncClient` behind the sync client's methods."""

    def __init__(self, addr: str, **kwargs: Any) -> None:
        self._client = AsyncClient(addr, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def __repr__(self) -> str:
        return repr(self._client)

    def __enter__(self) -> AsyncAsSync:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        run(self._client.aclose())

    def call(self, method: str, args: Any = None, **kwargs: Any) -> Any:
        return run(self._client.call(method, args, **kwargs))

    def send_file(self, method: str, data: Any, **kwargs: Any) -> Any:
        return run(self._client.send_file(method, data, **kwargs))

    @contextlib.contextmanager
    def stream(self, method: str, args: Any = None, **kwargs: Any) -> Iterator[io.BufferedReader]:
        manager = self._client.stream(method, args, **kwargs)
        reader = run(manager.__aenter__())
        try:
            yield io.BufferedReader(_SyncBody(reader))
        except BaseException as exc:
            if not run(manager.__aexit__(type(exc), exc, exc.__traceback__)):
                raise
        else:
            run(manager.__aexit__(None, None, None))


def parametrize_clients(
    sync_only: Iterable[str] = (), *, both: Iterable[str] | None = None
) -> Callable[[pytest.Metafunc], None]:
    """Build a ``pytest_generate_tests`` that runs each test with both clients.

    Tests named in ``sync_only`` (they look inside the sync client, or hand it
    to code that takes only a sync client) run with ``Client`` alone; given
    ``both``, only the tests it names run twice.
    """
    sync = frozenset(sync_only)
    twice = None if both is None else frozenset(both)

    def generate(metafunc: pytest.Metafunc) -> None:
        if "client_kind" in metafunc.fixturenames:
            name = metafunc.function.__name__
            if name in sync or (twice is not None and name not in twice):
                kinds = ["sync"]
            else:
                kinds = ["sync", "async"]
            metafunc.parametrize("client_kind", kinds, indirect=True)

    return generate


@pytest.fixture(autouse=True)
def client_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Put the client of this run behind the test module's ``Client`` name."""
    kind: str = getattr(request, "param", "sync")
    if kind == "async":
        monkeypatch.setattr(request.module, "Client", AsyncAsSync)
    return kind


def sync_only_combination(item: pytest.Item) -> bool:
    """Tell whether ``item`` would hand the async client to ``call_concurrently``.

    ``call_concurrently`` (``LegacyRegistry.get_all``'s multiplexer) takes
    sync clients only, so the ``path="concurrent"`` runs exist for ``Client``
    alone: conftest deselects the async ones instead of running them.
    """
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return False
    params = callspec.params
    return bool(params.get("client_kind") == "async" and params.get("path") == "concurrent")
