"""Plugin output is re-logged at the level the plugin used, once, without its prefix."""

from __future__ import annotations

import hashlib
import logging
import sys
from pathlib import Path

import pytest

from pluginkit.runtime import RuntimeSpec
from pluginkit.runtime._plugin_log import LineForwarder, parse_level
from pluginkit.runtime.process import ProcessRuntime
from tests._runtime_helpers import Exits

D, I, W, E, C = logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL  # noqa: E741


@pytest.mark.parametrize(
    ("line", "level", "message"),
    [
        ("INFO:root:listening on /run/p.sock", I, "root:listening on /run/p.sock"),
        ("WARNING:pluginkit.sdk:slow", W, "pluginkit.sdk:slow"),
        ("WARNING slow disk", W, "slow disk"),
        ("WARN slow disk", W, "slow disk"),
        ("[ERROR] cannot mount", E, "cannot mount"),
        ("DEBUG - details", D, "details"),
        ("CRITICAL: out of space", C, "out of space"),
        ("2024-05-01 12:00:00,123 INFO ready", I, "ready"),
        ("2024-05-01T12:00:00.5+02:00 ERROR failed", E, "failed"),
        (
            'time="2024-05-01T12:00:00Z" level=info msg="listening on \\"p.sock\\"" id=7',
            I,
            'listening on "p.sock" id=7',
        ),
        ("time=2024 level=warning msg=slow", W, "slow"),
        ('level=fatal msg="giving up"', C, "giving up"),
        ('level=debug msg="x"', D, "x"),
        ('{"level":"error","msg":"disk full","time":"2024-05-01T12:00:00Z"}', E, "disk full"),
        ('{"level":"warning","message":"slow"}', W, "slow"),
    ],
)
def test_level_is_recognised(line: str, level: int, message: str) -> None:
    """Python logging, bracketed, timestamped, logrus text and JSON lines give their level."""
    assert parse_level(line) == (level, message)


@pytest.mark.parametrize(
    "line",
    [
        "hello",
        "",
        "info about the volume",  # lower case: plain text
        "error: x",
        "INFORMATION x",
        "ERROR",
        "ERRORS: 3",
        "level=info",  # no msg
        'level=loud msg="x"',
        "{not json",
        '{"level":"info"}',
        "[1, 2]",
        "2024/05/01 12:00:00 started",  # Go's log package: no level
    ],
)
def test_line_without_a_level(line: str) -> None:
    """A line that says no level is left as it is."""
    assert parse_level(line) == (None, line)


def test_forwarder_logs_once_at_the_lines_level(caplog: pytest.LogCaptureFixture) -> None:
    """Each line becomes one record with its level, the default level else, and the extras."""
    caplog.set_level(logging.DEBUG, logger="pluginkit.plugin")
    logger = logging.getLogger("pluginkit.plugin")
    forward = LineForwarder(logger, logging.INFO, {"plugin": "abc", "stream": "stderr"})
    for line in ["WARNING:x:careful", "plain", "level=error msg=bad"]:
        forward(line)
    got = [(r.levelno, r.getMessage(), r.__dict__["plugin"]) for r in caplog.records]
    assert got == [(W, "x:careful", "abc"), (I, "plain", "abc"), (E, "bad", "abc")]


def test_forwarder_skips_disabled_levels(caplog: pytest.LogCaptureFixture) -> None:
    """With the logger at WARNING, a plugin's INFO lines produce no record."""
    caplog.set_level(logging.WARNING, logger="pluginkit.plugin")
    forward = LineForwarder(logging.getLogger("pluginkit.plugin"), logging.INFO, {})
    for line in ["INFO:x:chatter", "plain chatter", "ERROR:x:bad"]:
        forward(line)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(E, "x:bad")]


def test_traceback_keeps_the_level_of_its_line() -> None:
    """A traceback after a logged error, and a bare one, are ERROR to the exception line."""
    forward = LineForwarder(logging.getLogger("pluginkit.plugin"), logging.INFO, {})
    lines = [
        "WARNING:x:retrying",
        "Traceback (most recent call last):",
        '  File "p.py", line 1, in <module>',
        "    go()",
        "OSError: busy",
        "after",
        "Traceback (most recent call last):",
        '  File "p.py", line 2, in <module>',
        "KeyError: 'a'",
        "",
        "During handling of the above exception, another exception occurred:",
        "",
        "Traceback (most recent call last):",
        "    f()",
        "ValueError: b",
        "INFO:x:recovered",
        "  indented detail",
    ]
    levels = [forward.level_of(line)[0] for line in lines]
    assert levels == [W, W, W, W, W, I, E, E, E, E, E, E, E, E, E, I, I]


PLUGIN = """#!{python}
import logging, sys
logging.basicConfig(level=logging.DEBUG)
log = logging.getLogger("myplugin")
log.debug("details")
log.info("listening on p.sock")
log.warning("disk 90% full")
try:
    {{}}["missing"]
except KeyError:
    log.exception("cannot serve")
print('time="2024-05-01T12:00:00Z" level=info msg="from go" id=7', flush=True)
print("plain stdout", flush=True)
"""


def test_process_runtime_relogs_python_logging(
    short_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A Python plugin's logging reaches the host at its own levels, once, without prefixes."""
    caplog.set_level(logging.DEBUG, logger="pluginkit.plugin")
    rootfs = short_tmp / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "bin" / "plugin").write_text(PLUGIN.format(python=sys.executable))
    (rootfs / "bin" / "plugin").chmod(0o755)
    spec = RuntimeSpec(
        id=hashlib.sha256(b"talker").hexdigest(),
        name="talker:latest",
        rootfs=rootfs,
        entrypoint=("/bin/plugin",),
        args=(),
        env=(),
        workdir="/",
        socket_dir=short_tmp / "run",
        socket="p.sock",
        state_dir=short_tmp / "state",
    )
    runtime = ProcessRuntime()
    try:
        exits = Exits()
        runtime.start(spec, exits)
        assert exits.wait().exit_code == 0
    finally:
        runtime.close()
    got = [
        (r.__dict__["stream"], r.levelno, r.getMessage())
        for r in caplog.records
        if r.name == "pluginkit.plugin"
    ]
    stderr = [g[1:] for g in got if g[0] == "stderr"]
    stdout = [g[1:] for g in got if g[0] == "stdout"]
    assert stderr[:5] == [
        (D, "myplugin:details"),
        (I, "myplugin:listening on p.sock"),
        (W, "myplugin:disk 90% full"),
        (E, "myplugin:cannot serve"),
        (E, "Traceback (most recent call last):"),
    ]
    assert stderr[-1] == (E, "KeyError: 'missing'")
    assert {level for level, _ in stderr[4:]} == {E}
    assert stdout == [(I, "from go id=7"), (I, "plain stdout")]
