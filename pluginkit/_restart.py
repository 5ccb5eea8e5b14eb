"""How long to wait before restarting a plugin that exited on its own.

Docker's manager restarts a crashed plugin at once, forever, with no backoff
(reference 3.8); its 2016 ancestor used containerd's restart manager: 100 ms
doubling, reset after 10 s of uptime. pluginkit uses the latter, configurable.
"""

from __future__ import annotations

import attrs

__all__ = ["RestartPolicy"]


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"RestartPolicy.{attribute.name} must be > 0, got {value!r}")


def _at_least_one(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value >= 1:
        raise ValueError(f"RestartPolicy.{attribute.name} must be >= 1, got {value!r}")


def _non_negative_or_none(
    instance: object, attribute: attrs.Attribute[int | None], value: int | None
) -> None:
    if value is not None and value < 0:
        raise ValueError(f"RestartPolicy.{attribute.name} must be >= 0 or None, got {value!r}")


@attrs.frozen
class RestartPolicy:
    """Exponential backoff for restarting crashed plugins.

    The n-th consecutive restart (n = 0, 1, 2, ...) waits
    ``min(initial_delay * multiplier**n, max_delay)`` seconds. A plugin that
    stayed up for ``reset_after`` seconds before exiting starts again from
    ``initial_delay``. After ``max_restarts`` consecutive restarts
    (``None`` = no limit) the plugin is left stopped (still enabled) and an
    error is logged.

    Attributes:
        initial_delay: seconds before the first restart.
        max_delay: upper bound of the delay, in seconds.
        multiplier: growth factor between consecutive delays.
        reset_after: seconds of uptime after which the backoff starts over.
        max_restarts: consecutive restarts allowed, or ``None`` for no limit.
    """

    initial_delay: float = attrs.field(default=0.1, validator=_positive)
    max_delay: float = attrs.field(default=30.0, validator=_positive)
    multiplier: float = attrs.field(default=2.0, validator=_at_least_one)
    reset_after: float = attrs.field(default=10.0, validator=_positive)
    max_restarts: int | None = attrs.field(default=None, validator=_non_negative_or_none)

    def delay(self, attempt: int) -> float:
        """Seconds to wait before restart number ``attempt`` (0-based) of a crash series."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt}")
        # Cap the exponent first: a long crash loop must not overflow the float.
        delay = self.initial_delay
        for _ in range(attempt):
            delay *= self.multiplier
            if delay >= self.max_delay:
                return self.max_delay
        return min(delay, self.max_delay)

    def gives_up(self, attempt: int) -> bool:
        """Tell whether restart number ``attempt`` (0-based) is beyond ``max_restarts``."""
        return self.max_restarts is not None and attempt >= self.max_restarts
