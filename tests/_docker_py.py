"""Working around docker-py in the tests."""

from __future__ import annotations

import contextlib
import gc
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def leaks_dropped() -> Iterator[None]:
    """Run the block, then collect the sockets docker-py left open, their ResourceWarning silenced.

    When a connect fails (no engine behind the socket file, a daemon just
    killed), docker-py's ``UnixHTTPConnection.connect`` drops its new socket
    without closing it; the failure's traceback keeps it in a reference
    cycle, and whichever code runs when the collector finds it fails under
    ``-W error``. Wrap the requests that may fail so, or the wait for the
    thread that made them.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        yield
        gc.collect()
