"""Docker's retry rule for plugin calls, in one place (sync and async clients use it).

Docker's ``pkg/plugins`` client retries a call whose connection failed with a
backoff of 1 s, 2 s, 4 s ... (capped at 30 s) while the elapsed time plus the
next delay stays below the retry budget (``retry_timeout``; 0 disables).
HTTP errors and timeouts are never retried: the plugin got the request and
may have acted on it, and plugin calls are not idempotent.
"""

from __future__ import annotations

from typing import Final

__all__ = ["BACKOFF_CAP", "backoff", "check_retry_timeout", "check_timeout", "retry_delay"]

#: The longest delay between two attempts, in backoff units (Docker: 30 s).
BACKOFF_CAP: Final = 30


def backoff(retries: int) -> int:
    """Docker's backoff: 1 doubled ``retries`` times, capped at 30 (units)."""
    delay = 1
    while delay < BACKOFF_CAP and retries > 0:
        delay *= 2
        retries -= 1
    return min(delay, BACKOFF_CAP)


def retry_delay(retries: int, elapsed: float, retry_timeout: float, unit: float) -> float | None:
    """Docker's rule: the delay before attempt ``retries + 2``, or None to give up.

    ``retries``: how many retries were made so far; ``elapsed``: seconds since
    the first attempt started; ``unit``: the first delay in seconds.
    """
    delay = backoff(retries) * unit
    if elapsed + delay >= retry_timeout:
        return None
    return delay


def check_timeout(name: str, value: float | None) -> None:
    """Refuse a timeout that is not ``None`` or > 0 (ValueError naming ``name``)."""
    if value is not None and not value > 0:
        raise ValueError(f"{name} must be > 0 or None, not {value!r}")


def check_retry_timeout(value: float) -> None:
    """Refuse a retry budget that is not >= 0 (NaN too: it would retry forever)."""
    if not value >= 0:
        raise ValueError(f"retry_timeout must be >= 0, not {value!r}")
