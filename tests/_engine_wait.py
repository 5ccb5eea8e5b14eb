"""Waiting for an engine the tests started (a Swarm node's dockerd, a Podman service)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def pings(make_client: Callable[[], Any]) -> bool:
    """Tell whether a docker-py client from ``make_client`` gets an answer to ``ping``."""
    try:
        client = make_client()
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def wait_serving(
    what: str,
    process: subprocess.Popen[Any],
    socket: Path,
    answers: Callable[[], bool],
    log_tail: Callable[[], str],
    *,
    timeout: float,
    interval: float,
) -> None:
    """Wait until ``process`` answers on ``socket``.

    Raises RuntimeError naming ``what``, with the end of its log, if it exits
    or does not answer within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited: {log_tail()}")
        if socket.exists() and answers():
            return
        time.sleep(interval)
    raise RuntimeError(f"{what} did not answer in {timeout:g} s: {log_tail()}")
