"""FakeRuntime: fake plugins on real unix sockets, driven the way a Manager drives a runtime."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pluginkit import RuntimeStartError
from pluginkit.runtime import PluginExit, Runtime, RuntimeSpec
from pluginkit.testing import FakeCall, FakeRuntime
from tests._runtime_helpers import Exits
from tests._sdk_helpers import RawClient, wait_for


def make_spec(base: Path, name: str = "acme/vol:latest") -> RuntimeSpec:
    return RuntimeSpec(
        id=hashlib.sha256(name.encode()).hexdigest(),
        name=name,
        rootfs=base / "rootfs",
        entrypoint=("/plugin",),
        socket_dir=base / hashlib.sha256(name.encode()).hexdigest()[:8],
        socket="p.sock",
        state_dir=base / "state",
        env=("DEBUG=1",),
    )


def listening(spec: RuntimeSpec) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(spec.socket_path))
        except OSError:
            return False
    return True


def call(spec: RuntimeSpec, method: str, args: Any = None) -> tuple[int, Any]:
    with RawClient(spec.socket_path) as client:
        reply = client.call(method, args)
    return reply.status, reply.json()


@pytest.fixture
def fake() -> Iterator[FakeRuntime]:
    with FakeRuntime() as rt:
        yield rt


@pytest.fixture
def spec(short_tmp: Path) -> RuntimeSpec:
    return make_spec(short_tmp)


def get_volume(request: Any) -> Any:
    return {"Volume": {"Name": request["Name"], "Mountpoint": "/mnt"}}


def test_is_a_runtime(fake: FakeRuntime) -> None:
    """FakeRuntime satisfies the Runtime protocol."""
    assert isinstance(fake, Runtime)


def test_serves_handlers_on_the_spec_socket(fake: FakeRuntime, spec: RuntimeSpec) -> None:
    """A started fake plugin answers its handlers on spec.socket_path."""
    fake.set_handlers("acme/vol:latest", {"VolumeDriver.Get": get_volume})
    fake.start(spec, Exits(timeout=10.0))
    fake.wait_listening("acme/vol")
    assert call(spec, "VolumeDriver.Get", {"Name": "v1"}) == (
        200,
        {"Volume": {"Name": "v1", "Mountpoint": "/mnt"}},
    )
    assert fake.is_running(spec.id)
    assert fake.running() == ["acme/vol:latest"]


def test_activate_derives_implements(fake: FakeRuntime, spec: RuntimeSpec) -> None:
    """Plugin.Activate announces the handled methods' prefixes, in order, once each."""
    noop = lambda request: None  # noqa: E731
    fake.set_handlers(
        "acme/vol",
        {"VolumeDriver.Get": noop, "VolumeDriver.List": noop, "IpamDriver.RequestPool": noop},
    )
    fake.start(spec, Exits(timeout=10.0))
    fake.wait_listening("acme/vol")
    assert call(spec, "Plugin.Activate") == (200, {"Implements": ["VolumeDriver", "IpamDriver"]})


def test_explicit_implements(fake: FakeRuntime, spec: RuntimeSpec) -> None:
    """An explicit implements list replaces the derived one."""
    fake.set_handlers("acme/vol", {}, implements=["authz"])
    fake.start(spec, Exits(timeout=10.0))
    fake.wait_listening("acme/vol")
    assert call(spec, "Plugin.Activate") == (200, {"Implements": ["authz"]})


def test_bare_name_means_latest(fake: FakeRuntime, spec: RuntimeSpec) -> None:
    """Settings for a name without a tag apply to name:latest, and back."""
    fake.set_handlers("acme/vol", {"VolumeDriver.Get": get_volume})
    fake.start(spec, Exits(timeout=10.0))
    fake.wait_listening("acme/vol:latest")
    call(spec, "VolumeDriver.Get", {"Name": "v"})
    assert fake.calls("acme/vol") == fake.calls("acme/vol:latest")
    assert fake.started_count("acme/vol") == 1


def test_other_tags_are_other_plugins(fake: FakeRuntime, short_tmp: Path) -> None:
    """name:v2 is not name:latest; a registry port is not a tag."""
    fake.set_handlers("localhost:5000/acme/vol", {"VolumeDriver.Get": get_volume})
    v2 = make_spec(short_tmp, "localhost:5000/acme/vol:v2")
    latest = make_spec(short_tmp, "localhost:5000/acme/vol:latest")
    fake.start(v2, Exits(timeout=10.0))
    fake.start(latest, Exits(timeout=10.0))
    fake.wait_listening("localhost:5000/acme/vol:v2")
    fake.wait_listening("localhost:5000/acme/vol")
    assert call(v2, "VolumeDriver.Get", {"Name": "v"})[0] == 404
    assert call(latest, "VolumeDriver.Get", {"Name": "v"})[0] == 200


def test_records_calls(fake: FakeRuntime, spec: RuntimeSpec) -> None:
    """Every call a fake plugin receives is recorded with its decoded request."""
    fake.set_handlers("acme/vol", {"VolumeDriver.Get": get_volume, "VolumeDriver.List": dict})
    fake.start(spec, Exits(timeout=10.0))
    fake.wait_listening("acme/vol")
    call(spec, "VolumeDriver.Get", {"Name": "v1"})
    call(spec, "VolumeDriver.List")
    assert fake.calls("acme/vol") == [
        FakeCall("VolumeDriver.Get", {"Name": "v1"}),
        FakeCall("VolumeDriver.List", None),
    ]


def test_handler_errors_answer_500(fake: FakeRuntime, spec: RuntimeSpec) -> None:
    """A handler that raises answers 500 with Docker's {"Err": ...}."""

    def broken(request: Any) -> Any:
        raise ValueError("no such volume")

    fake.set_handlers("acme/vol", {"VolumeDriver.Get": broken})
    fake.start(spec, Exits(timeout=10.0))
    fake.wait_listening("acme/vol")
    assert call(spec, "VolumeDriver.Get", {"Name": "x"}) == (500, {"Err": "no such volume"})


def test_unknown_plugin_serves_activate_only(fake: FakeRuntime, spec: RuntimeSpec) -> None:
    """A plugin without handlers still listens and answers the handshake with nothing."""
    fake.start(spec, Exits(timeout=10.0))
    fake.wait_listening("acme/vol")
    assert call(spec, "Plugin.Activate") == (200, {"Implements": []})
    assert call(spec, "VolumeDriver.Get", {"Name": "v"})[0] == 404


def test_bad_method_name(fake: FakeRuntime) -> None:
    """Handler keys must look like Driver.Method."""
    with pytest.raises(
        ValueError, match=r"^handler method must look like 'Driver\.Method', not 'Get'$"
    ):
        fake.set_handlers("acme/vol", {"Get": get_volume})


def test_stop_removes_socket_and_reports_exit(fake: FakeRuntime, spec: RuntimeSpec) -> None:
    """stop() takes the socket away and reports exit code 0 once."""
    exits = Exits(timeout=10.0)
    fake.start(spec, exits)
    fake.wait_listening("acme/vol")
    fake.stop(spec.id)
    assert not spec.socket_path.exists()
    assert not fake.is_running(spec.id)
    assert exits.wait() == PluginExit(spec.id, 0, "")
    fake.stop(spec.id)
    assert fake.running() == []


def test_crash(fake: FakeRuntime, spec: RuntimeSpec) -> None:
    """crash() makes the plugin vanish and reports the exit code and stderr given."""
    exits = Exits(timeout=10.0)
    fake.start(spec, exits)
    fake.wait_listening("acme/vol")
    fake.crash("acme/vol", exit_code=2, stderr_tail="panic: oops")
    assert not listening(spec)
    assert exits.wait() == PluginExit(spec.id, 2, "panic: oops")
    assert not fake.is_running(spec.id)


def test_crash_returns_once_on_exit_has_returned(fake: FakeRuntime, spec: RuntimeSpec) -> None:
    """crash() returns only after the on_exit call it caused has returned, from another thread."""
    seen: list[tuple[PluginExit, str]] = []

    def slow_on_exit(exit_: PluginExit) -> None:
        time.sleep(0.1)
        seen.append((exit_, threading.current_thread().name))

    fake.start(spec, slow_on_exit)
    fake.wait_listening("acme/vol")
    fake.crash("acme/vol", exit_code=3)
    assert seen == [(PluginExit(spec.id, 3, ""), "pluginkit-fake-exits")]


def test_crash_without_wait_returns_while_on_exit_runs(
    fake: FakeRuntime, spec: RuntimeSpec
) -> None:
    """crash(wait=False) returns at once, while the on_exit it caused is still blocked."""
    release = threading.Event()
    exits = Exits(timeout=10.0)

    def blocked_on_exit(exit_: PluginExit) -> None:
        assert release.wait(10)
        exits(exit_)

    fake.start(spec, blocked_on_exit)
    fake.wait_listening("acme/vol")
    fake.crash("acme/vol", exit_code=4, wait=False)
    assert not listening(spec)
    assert exits.exits == []
    release.set()
    assert exits.wait() == PluginExit(spec.id, 4, "")


def test_crash_from_on_exit_does_not_wait_for_itself(fake: FakeRuntime, short_tmp: Path) -> None:
    """A crash() made inside on_exit returns at once; its exit is delivered after."""
    first, second = make_spec(short_tmp, "acme/a"), make_spec(short_tmp, "acme/b")
    exits = Exits(timeout=10.0)
    returned: list[float] = []

    def crash_the_other(exit_: PluginExit) -> None:
        started = time.monotonic()
        fake.crash("acme/b")
        returned.append(time.monotonic() - started)
        exits(exit_)

    fake.start(first, crash_the_other)
    fake.start(second, exits)
    fake.wait_listening("acme/a")
    fake.wait_listening("acme/b")
    fake.crash("acme/a")
    assert exits.wait(2) == PluginExit(second.id, 1, "")
    assert exits.exits == [PluginExit(first.id, 1, ""), PluginExit(second.id, 1, "")]
    assert returned[0] < 1.0


def test_crash_not_running(fake: FakeRuntime) -> None:
    """Crashing a plugin that does not run is a LookupError naming it."""
    with pytest.raises(LookupError, match=r"^fake plugin acme/vol:latest is not running$"):
        fake.crash("acme/vol")


def test_on_exit_may_restart(fake: FakeRuntime, spec: RuntimeSpec) -> None:
    """on_exit runs outside crash() and may start the plugin again."""
    exits = Exits(timeout=10.0)

    def restart(exit_: PluginExit) -> None:
        exits(exit_)
        fake.start(spec, restart)

    fake.start(spec, restart)
    fake.wait_listening("acme/vol")
    fake.crash("acme/vol")
    exits.wait()
    fake.wait_listening("acme/vol")
    assert fake.started_count("acme/vol") == 2


def test_start_delay(spec: RuntimeSpec) -> None:
    """With a start delay, start() returns at once and the socket listens later."""
    with FakeRuntime(start_delay=0.3) as fake:
        fake.start(spec, Exits(timeout=10.0))
        assert fake.is_running(spec.id)
        assert not listening(spec)
        fake.wait_listening("acme/vol")
        assert listening(spec)


def test_without_a_start_delay_the_socket_listens_when_start_returns(
    fake: FakeRuntime, spec: RuntimeSpec
) -> None:
    """No delay: start() returns with the socket listening (a connect is queued until the
    loop serves it), so a manager's first readiness check finds the plugin ready."""
    fake.start(spec, Exits(timeout=10.0))
    assert listening(spec)
    assert call(spec, "Plugin.Activate") == (200, {"Implements": []})


def test_stopped_right_after_start_leaves_no_socket(fake: FakeRuntime, short_tmp: Path) -> None:
    """Started and stopped at once, again and again: each stop returns with the socket
    gone and one exit reported, and the next start of the same plugin works."""
    spec = make_spec(short_tmp)
    for _ in range(50):
        exits = Exits(timeout=10.0)
        fake.start(spec, exits)
        fake.stop(spec.id)
        assert exits.wait() == PluginExit(spec.id, 0, "")
        assert not spec.socket_path.exists()
    fake.start(spec, Exits(timeout=10.0))
    assert call(spec, "Plugin.Activate") == (200, {"Implements": []})


def test_activate_is_answered_while_every_handler_thread_is_busy(short_tmp: Path) -> None:
    """Plugin.Activate (what health checks call) does not wait for the handler pool."""
    release = threading.Event()
    with FakeRuntime(workers=1) as fake:
        spec = make_spec(short_tmp)
        fake.set_handlers("acme/vol", {"VolumeDriver.Get": lambda request: release.wait(30)})
        fake.start(spec, Exits(timeout=10.0))
        busy = threading.Thread(target=call, args=(spec, "VolumeDriver.Get", {"Name": "v"}))
        busy.start()
        wait_for(lambda: len(fake.calls("acme/vol")) == 1)  # the one worker is taken
        try:
            assert call(spec, "Plugin.Activate") == (200, {"Implements": ["VolumeDriver"]})
        finally:
            release.set()
            busy.join()


def test_per_plugin_start_delay_and_stop_while_starting(
    fake: FakeRuntime, spec: RuntimeSpec
) -> None:
    """A plugin stopped during its start delay never listens and exits once."""
    fake.set_start_delay("acme/vol", 60)
    exits = Exits(timeout=10.0)
    fake.start(spec, exits)
    fake.stop(spec.id)
    assert exits.wait() == PluginExit(spec.id, 0, "")
    assert not spec.socket_path.exists()


def test_fail_start(fake: FakeRuntime, spec: RuntimeSpec) -> None:
    """fail_start makes the next start raise, once by default."""
    fake.fail_start("acme/vol")
    with pytest.raises(RuntimeStartError, match=r"^fake plugin acme/vol:latest failed to start$"):
        fake.start(spec, Exits(timeout=10.0))
    assert not fake.is_running(spec.id)
    fake.start(spec, Exits(timeout=10.0))
    assert fake.started_count("acme/vol") == 2


def test_fail_start_with_error_until_cleared(fake: FakeRuntime, spec: RuntimeSpec) -> None:
    """fail_start(times=None) fails every start with the error given, until cleared."""
    fake.fail_start("acme/vol", RuntimeStartError("no", exit_code=3), times=None)
    for _ in range(3):
        with pytest.raises(RuntimeStartError, match=r"^no$"):
            fake.start(spec, Exits(timeout=10.0))
    fake.fail_start("acme/vol", times=0)
    fake.start(spec, Exits(timeout=10.0))


def test_exit_on_start(fake: FakeRuntime, spec: RuntimeSpec) -> None:
    """exit_on_start: start succeeds, the socket never appears, on_exit gets code and stderr."""
    fake.exit_on_start("acme/vol", 127, "exec: not found")
    exits = Exits(timeout=10.0)
    fake.start(spec, exits)
    assert exits.wait() == PluginExit(spec.id, 127, "exec: not found")
    assert not listening(spec)
    assert not fake.is_running(spec.id)


def test_start_twice(fake: FakeRuntime, spec: RuntimeSpec) -> None:
    """Starting a running plugin is an error, as with real runtimes."""
    fake.start(spec, Exits(timeout=10.0))
    with pytest.raises(RuntimeStartError, match=r"^plugin acme/vol:latest is already running$"):
        fake.start(spec, Exits(timeout=10.0))


def test_last_spec(fake: FakeRuntime, spec: RuntimeSpec) -> None:
    """The spec of the latest start is kept for inspection."""
    assert fake.last_spec("acme/vol") is None
    fake.start(spec, Exits(timeout=10.0))
    assert fake.last_spec("acme/vol") == spec


def test_survives_close_and_restores(fake: FakeRuntime, spec: RuntimeSpec) -> None:
    """After close() plugins keep serving; restore() re-attaches and reports to the new callback."""
    fake.set_handlers("acme/vol", {"VolumeDriver.Get": get_volume})
    old, new = Exits(timeout=10.0), Exits(timeout=10.0)
    fake.start(spec, old)
    fake.wait_listening("acme/vol")
    fake.close()
    assert call(spec, "VolumeDriver.Get", {"Name": "v"})[0] == 200
    assert fake.restore(spec, new)
    fake.crash("acme/vol", exit_code=9)
    assert new.wait() == PluginExit(spec.id, 9, "")
    assert old.exits == []


def test_exit_while_closed_is_not_reported(fake: FakeRuntime, spec: RuntimeSpec) -> None:
    """An exit while no manager supervises goes unreported, and restore then says False."""
    exits = Exits(timeout=10.0)
    fake.start(spec, exits)
    fake.close()
    fake.crash("acme/vol")
    assert not fake.restore(spec, exits)
    fake.start(spec, exits)
    fake.stop(spec.id)
    assert exits.wait() == PluginExit(spec.id, 0, "")
    assert len(exits.exits) == 1


def test_discard_stops(fake: FakeRuntime, spec: RuntimeSpec) -> None:
    """discard() stops a running plugin."""
    fake.start(spec, Exits(timeout=10.0))
    fake.discard(spec.id)
    assert not fake.is_running(spec.id)


def test_shutdown_stops_everything_silently(spec: RuntimeSpec) -> None:
    """shutdown() stops every plugin without calling on_exit."""
    exits = Exits(timeout=10.0)
    fake = FakeRuntime()
    fake.start(spec, exits)
    fake.wait_listening("acme/vol")
    fake.shutdown()
    assert fake.running() == []
    wait_for(lambda: not spec.socket_path.exists())
    assert exits.exits == []


def test_bad_delays() -> None:
    """Negative delays are refused by name."""
    with pytest.raises(ValueError, match=r"^start_delay must be >= 0, not -1$"):
        FakeRuntime(start_delay=-1)
    with pytest.raises(ValueError, match=r"^start delay must be >= 0, not -2$"):
        FakeRuntime().set_start_delay("x", -2)
