"""Re-log a plugin's output lines at the level the plugin logged them at.

Runtimes hand each line a plugin printed to a :class:`LineForwarder` (one per
plugin and stream). When the line says its level, the record gets that level
and the message loses the level prefix, so a host formatter showing
``%(levelname)s`` does not print it twice:

- Python's logging: ``INFO:name:message`` (``basicConfig``'s format),
  ``WARNING message``, ``[ERROR] message``, ``DEBUG - message``, also after
  an ISO-like timestamp (``2024-05-01 12:00:00,123 INFO message``);
- Docker's and logrus's text format: ``time="..." level=info msg="message"
  key=value`` (the message keeps the other fields, not ``time``/``level``);
- logrus's JSON format: ``{"level":"info","msg":"message",...}``.

A line that says no level is logged at the stream's default level. A Python
traceback (``Traceback (most recent call last):``, its indented lines and
the exception line closing it) keeps the level of the line before it, or
``ERROR`` when it stands alone.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any

import pluginkit._log  # noqa: F401 - the package logger's NullHandler, before any record

__all__ = ["LineForwarder", "parse_level"]

LEVELS: dict[str, int] = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
    "panic": logging.CRITICAL,
}

_TIMESTAMP = r"(?:\d{4}[-/]\d\d[-/]\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?\s+)?"
# Upper case only: "error: ..." or "info about x" may be plain text.
_PYTHON = re.compile(
    _TIMESTAMP
    + r"(?:\[(?P<bracketed>DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL)\]"
    + r"|(?P<bare>DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL)(?=[:\s]))"
    + r"(?::\s*|\s+-\s+|\s*)"
)
_LOGFMT_FIELD = re.compile(r'(?P<key>[\w.-]+)=(?P<value>"(?:[^"\\]|\\.)*"|\S*)')
_TRACEBACK = "Traceback (most recent call last):"
_CHAINED = (
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
)


def _unquote(value: str) -> str:
    if value.startswith('"'):
        try:
            return str(json.loads(value))
        except ValueError:
            return value[1:-1]
    return value


def _logfmt(line: str) -> tuple[int | None, str]:
    fields = [(m.group("key"), m.group("value")) for m in _LOGFMT_FIELD.finditer(line)]
    values = dict(fields)
    level = LEVELS.get(values.get("level", "").lower())
    if level is None or "msg" not in values:
        return None, line
    rest = [f"{key}={value}" for key, value in fields if key not in ("time", "level", "msg")]
    return level, " ".join([_unquote(values["msg"]), *rest])


def _json(line: str) -> tuple[int | None, str]:
    try:
        record = json.loads(line)
    except ValueError:
        return None, line
    if not isinstance(record, dict):
        return None, line
    level = LEVELS.get(str(record.get("level", "")).lower())
    message = record.get("msg", record.get("message"))
    if level is None or not isinstance(message, str):
        return None, line
    return level, message


def parse_level(line: str) -> tuple[int | None, str]:
    """Return the level ``line`` says it was logged at (or None) and the message without it."""
    if line.startswith("{"):
        return _json(line)
    if "level=" in line:
        level, message = _logfmt(line)
        if level is not None:
            return level, message
    match = _PYTHON.match(line)
    if match is None:
        return None, line
    word = match.group("bracketed") or match.group("bare")
    return LEVELS[word.lower()], line[match.end() :]


class LineForwarder:
    """Log one stream's lines of one plugin to ``logger`` at their own level.

    Args:
        logger: Where the records go (``pluginkit.plugin``).
        default_level: The level of a line that says none.
        extra: The records' extra fields (plugin id and name, stream).
    """

    __slots__ = ("_default", "_extra", "_in_traceback", "_last", "_logger")

    def __init__(
        self, logger: logging.Logger, default_level: int, extra: Mapping[str, Any]
    ) -> None:
        self._logger = logger
        self._default = default_level
        self._extra = extra
        self._last: int | None = None  # the level of the last line that said one
        self._in_traceback = False

    def __call__(self, line: str) -> None:
        """Log ``line``."""
        level, message = self.level_of(line)
        if self._logger.isEnabledFor(level):
            self._logger.log(level, message, extra=self._extra)

    def level_of(self, line: str) -> tuple[int, str]:
        """Return the level ``line`` is logged at and its message; keep the traceback state."""
        last = self._last
        if line.startswith(_TRACEBACK):
            if last is None:
                last = self._last = logging.ERROR
            self._in_traceback = True
            return last, line
        if last is not None:
            continued = line[:1].isspace() or line == "" or line in _CHAINED
            if continued or self._in_traceback:
                if not continued:
                    self._in_traceback = False  # the exception line closes the traceback
                return last, line
        self._in_traceback = False
        level, message = parse_level(line)
        self._last = level
        return (self._default if level is None else level), message
