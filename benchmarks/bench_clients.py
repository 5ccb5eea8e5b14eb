"""What the typed clients cost over a raw ``Client.call`` on the same socket.

An SDK volume plugin (inline handlers) serves both; each pair of batches
runs the typed call (``VolumeDriverClient.mount``/``.get``: request model,
converter, reply model) and the raw call (``client.call`` with a dict, the
mountpoint or volume dict picked out by hand), in alternating order; the
reported figure is the median of the per-pair ratios (typed / raw; 1.0 means
no cost). Run alone: ``python3 benchmarks/bench_clients.py``.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

import asyncio  # noqa: E402

from pluginkit import AsyncClient  # noqa: E402
from pluginkit.clients import AsyncVolumeDriverClient, VolumeDriverClient  # noqa: E402
from pluginkit.sdk import volume  # noqa: E402
from pluginkit.testing import serve_plugin  # noqa: E402

CALLS = 2000
PAIRS = 15


class Volumes(volume.VolumeDriver):
    def mount(self, request: volume.MountRequest) -> volume.MountResponse:
        return volume.MountResponse(mountpoint=f"/mnt/{request.name}")

    def get(self, request: volume.GetRequest) -> volume.GetResponse:
        return volume.GetResponse(volume.Volume(request.name, "/mnt/x", None, {"size": 1}))


def batch(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    for _ in range(CALLS):
        fn()
    return (time.perf_counter() - start) / CALLS


def median_ratio(typed: Callable[[], object], raw: Callable[[], object]) -> tuple[float, float]:
    ratios, raw_times = [], []
    for i in range(PAIRS):
        if i % 2:
            r, t = batch(raw), batch(typed)
        else:
            t, r = batch(typed), batch(raw)
        ratios.append(t / r)
        raw_times.append(r)
    return statistics.median(ratios), statistics.median(raw_times)


def async_median_ratio(addr: str) -> tuple[float, float]:
    """The same pairs for the asyncio twin on one AsyncClient, one loop."""

    async def pairs() -> tuple[float, float]:
        async with AsyncClient(addr) as client:
            typed = AsyncVolumeDriverClient(client)
            args = {"Name": "v1", "ID": "c1"}

            async def batch_typed() -> float:
                start = time.perf_counter()
                for _ in range(CALLS):
                    await typed.mount("v1", "c1")
                return (time.perf_counter() - start) / CALLS

            async def batch_raw() -> float:
                start = time.perf_counter()
                for _ in range(CALLS):
                    (await client.call("VolumeDriver.Mount", args))["Mountpoint"]
                return (time.perf_counter() - start) / CALLS

            await batch_typed()
            await batch_raw()
            ratios, raw_times = [], []
            for i in range(PAIRS):
                if i % 2:
                    r, t = await batch_raw(), await batch_typed()
                else:
                    t, r = await batch_typed(), await batch_raw()
                ratios.append(t / r)
                raw_times.append(r)
            return statistics.median(ratios), statistics.median(raw_times)

    return asyncio.run(pairs())


def main() -> int:
    with serve_plugin(Volumes()) as client:
        typed = VolumeDriverClient(client)
        call = client.call
        mount_args = {"Name": "v1", "ID": "c1"}
        get_args = {"Name": "v1"}
        for fn in (lambda: typed.mount("v1", "c1"), lambda: call("VolumeDriver.Mount", mount_args)):
            batch(fn)  # warm-up
        mount = median_ratio(
            lambda: typed.mount("v1", "c1"),
            lambda: call("VolumeDriver.Mount", mount_args)["Mountpoint"],
        )
        get = median_ratio(
            lambda: typed.get("v1"), lambda: call("VolumeDriver.Get", get_args)["Volume"]
        )
        amount = async_median_ratio(client.addr)
    print(f"{'measure':<46}{'raw call (us)':>14}{'ratio':>8}")
    print(f"{'VolumeDriverClient.mount vs Client.call':<46}{mount[1] * 1e6:>14.1f}{mount[0]:>8.3f}")
    print(f"{'VolumeDriverClient.get vs Client.call':<46}{get[1] * 1e6:>14.1f}{get[0]:>8.3f}")
    label = "AsyncVolumeDriverClient.mount vs AsyncClient"
    print(f"{label:<46}{amount[1] * 1e6:>14.1f}{amount[0]:>8.3f}")
    print("ratio = typed / raw, median of interleaved pairs (1.0: the typing costs nothing)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
