"""A user's code on the typed clients passes ``mypy --strict``, and mistakes are caught."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent

USER_CODE = """
from __future__ import annotations

import asyncio

from pluginkit import Client, Plugin
from pluginkit.clients import (
    AsyncLogDriverClient,
    AsyncVolumeDriverClient,
    AuthzClient,
    IpamDriverClient,
    LogDriverClient,
    NetworkDriverClient,
    SecretProviderClient,
    VolumeDriverClient,
)
from pluginkit.sdk import authz, secrets, volume
from pluginkit.sdk.logdriver import LogEntry, LogInfo


def sync_user(plugin: Plugin, client: Client) -> None:
    vols = VolumeDriverClient(plugin)
    vols.create("v1", {"size": "1G"})
    mountpoint: str = vols.mount("v1", "c1")
    found: list[volume.Volume] = vols.list()
    reveal_type(vols.get("v1"))
    reveal_type(vols.capabilities())
    with VolumeDriverClient("unix:///run/docker/plugins/v.sock") as owned:
        owned.remove("v1")
    verdict = AuthzClient(client).authz_request(authz.AuthzRequest(user="u"))
    allowed: bool = verdict.allow
    value: bytes = SecretProviderClient(client).get_secret(
        secrets.SecretRequest(secret_name="s")
    ).value
    reveal_type(NetworkDriverClient(client).join("n", "e"))
    reveal_type(IpamDriverClient(client).request_pool(pool="10.0.0.0/24"))
    with LogDriverClient(client).read_logs(LogInfo(container_id="c")) as entries:
        lines: list[bytes] = [entry.line for entry in entries]
    print(mountpoint, found, allowed, value, lines)


async def async_user(plugin: Plugin) -> None:
    async with AsyncVolumeDriverClient(plugin) as vols:
        await vols.create("v1")
        reveal_type(vols.mount)
        found: list[volume.Volume] = await vols.list()
        logs = AsyncLogDriverClient("unix:///x.sock")
        async with logs.read_logs(LogInfo()) as entries:
            got: list[LogEntry] = [entry async for entry in entries]
        print(found, got)


def mistakes(client: Client) -> None:
    vols = VolumeDriverClient(client)
    vols.create(1)
    name: int = vols.path("v")
    vols.mount("v")


async def async_mistakes(vols: AsyncVolumeDriverClient) -> None:
    mountpoint: str = vols.mount("v", "c")
    vols.remove("v")


asyncio.run(async_user(Plugin("p", "unix:///x")))


async def manager_user() -> None:
    from pluginkit import AsyncManager, afind_with_capability

    async with await AsyncManager.open("/var/lib/x", live_restore=True) as manager:
        await manager.enable("p", timeout=5)
        plugin: Plugin = await manager.install("./dir", grant=True)
        found: list[Plugin] = await afind_with_capability("volumedriver", manager=manager)
        print(plugin, found, manager.get("p").name)
    AsyncManager(live_restore="yes")
    manager.enable("p")
    await AsyncManager.open(root=3)


async def real_async_client() -> None:
    from pluginkit import AsyncClient
    from pluginkit.clients import AsyncNetworkDriverClient

    async with AsyncClient("unix:///x.sock") as client:
        join = await AsyncNetworkDriverClient(client).join("n", "e")
        print(join.gateway, await AsyncVolumeDriverClient(client).path("v"))
"""


def test_user_code_type_checks_strictly(tmp_path: Path) -> None:
    """Results are the SDK's models, async methods are coroutines, wrong calls are errors."""
    script = tmp_path / "user.py"
    script.write_text(USER_CODE)
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\n")
    env = {**os.environ, "MYPYPATH": str(ROOT)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--hide-error-context",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--config-file",
            str(config),
            str(script),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    # Only the user's file: pluginkit itself is checked with its own settings elsewhere.
    assert [line for line in result.stdout.splitlines() if line.startswith("user.py:")] == [
        'user.py:26: note: Revealed type is "pluginkit.sdk.volume.Volume"',
        'user.py:27: note: Revealed type is "pluginkit.sdk.volume.Capability"',
        'user.py:35: note: Revealed type is "pluginkit.sdk.network.JoinResponse"',
        'user.py:36: note: Revealed type is "pluginkit.sdk.ipam.RequestPoolResponse"',
        'user.py:45: note: Revealed type is "def (name: str, id: str) -> '
        'typing.Coroutine[Any, Any, str]"',
        'user.py:55: error: Argument 1 has incompatible type "int"; expected "str"  [arg-type]',
        'user.py:56: error: Incompatible types in assignment (expression has type "str", '
        'variable has type "int")  [assignment]',
        "user.py:57: error: Too few arguments  [call-arg]",
        "user.py:61: error: Incompatible types in assignment (expression has type "
        '"Coroutine[Any, Any, str]", variable has type "str")  [assignment]',
        'user.py:61: note: Maybe you forgot to use "await"?',
        'user.py:62: error: Value of type "Coroutine[Any, Any, None]" must be used  '
        "[unused-coroutine]",
        "user.py:62: note: Are you missing an await?",
        'user.py:76: error: Argument "live_restore" to "AsyncManager" has incompatible type '
        '"str"; expected "bool"  [arg-type]',
        'user.py:77: error: Value of type "Coroutine[Any, Any, None]" must be used  '
        "[unused-coroutine]",
        "user.py:77: note: Are you missing an await?",
        'user.py:78: error: Argument "root" to "open" of "AsyncManager" has incompatible type '
        '"int"; expected "str | PathLike[str] | None"  [arg-type]',
    ], result.stderr
