"""An SDK plugin process loads only what serving needs (issue: light imports)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

HEAVY = [
    "ssl",
    "asyncio",
    "email",
    "pluginkit._manager",
    "pluginkit._config",
    "pluginkit._client",
    "pluginkit._legacy",
    "pluginkit.runtime",
]


def _loaded_after(code: str) -> dict[str, bool]:
    """Run ``code`` in a fresh interpreter; say which HEAVY modules it loaded."""
    probe = (
        f"{code}\nimport json, sys\nprint(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    loaded: dict[str, bool] = json.loads(done.stdout.splitlines()[-1])
    return loaded


def test_import_sdk_loads_no_host_side() -> None:
    """import pluginkit.sdk loads no manager, config models, host client, ssl or asyncio."""
    assert _loaded_after("import pluginkit.sdk") == dict.fromkeys(HEAVY, False)


def test_serving_a_driver_loads_no_host_side(short_tmp: Path) -> None:
    """A VolumeDriver served without TLS answers a call and still has none of them."""
    code = f"""
from pluginkit.sdk import VolumeDriver, volume
import socket

class V(VolumeDriver):
    def list(self):
        return volume.ListResponse()

server = V().server()
server.start({str(short_tmp / "v.sock")!r})
c = socket.socket(socket.AF_UNIX)
c.connect({str(short_tmp / "v.sock")!r})
c.sendall(b"POST /VolumeDriver.List HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 0\\r\\n\\r\\n")
assert b"Volumes" in c.recv(4096)
server.stop()
"""
    assert _loaded_after(code) == dict.fromkeys(HEAVY, False)


def test_tls_and_async_load_what_they_need() -> None:
    """ssl comes with TLS use, asyncio with the first async handler - not before."""
    code = """
from pluginkit.sdk import PluginServer
server = PluginServer([])
async def handler(request):
    return request
server.add_handler("Echo", handler)
"""
    loaded = _loaded_after(code)
    assert (loaded["ssl"], loaded["asyncio"]) == (False, False)
