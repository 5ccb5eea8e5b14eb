"""Restore benchmark: a Manager bringing back N enabled plugins, vs reading their records.

Run alone with ``python3 benchmarks/bench_restore.py [N ...]`` (default N =
100, 1000, 5000). A root with N enabled plugins is made once per N; then, in
interleaved pairs (A/B, B/A, ...), the median of:

- ``Manager(root, runtime=free)`` start, restoring all N, and its shutdown
  (the "ours" figure, start only: shutdown is timed apart and reported);
- the baseline: ``json.load`` of the same N ``plugin.json`` records plus the
  runtime's own start cost, N ``start()`` calls made directly (into socket
  directories made beforehand);
- the floor: only what a restore cannot do without, per plugin, with no
  bookkeeping (read and validate the record, build the runtime's spec, make
  the socket directory, start, check the socket listens, link the stable
  name), as a ratio to the same baseline: how far below it the manager's
  own overhead could ever go;

and prints ``ratio = ours / baseline`` per N (target <= 2, flat in N), and
the median time of one ``enable`` while the other N - 1 plugins run, and of
one ``get`` in a sweep over all N names, as ratios to the smallest N
(target: flat; a sweep over 5,000 names misses the CPU caches more).

The run roots (plugin socket directories, stable links) go on a tmpfs
(``/dev/shm``), as ``/run`` is one on production hosts. On a disk they
measured the filesystem, not the manager: on this project's CI machine (ext4
without a journal) every new inode skips the inodes freed in the last 30
seconds (ext4's ``recently_deleted``), so each ``mkdir``/``bind``/``symlink``
after a previous round's clean-up cost ~0.9 ms and grew from round to round.

The runtime is "free": its ``start()`` binds and listens on the plugin's
socket in the calling thread, so the plugin is ready at once and the time
measured is the manager's own work (reading, parsing, records, index,
readiness check) plus that floor.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import attrs

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The manager benchmark's plugin config, and its way of cloning a plugin many times.
from bench_manager import CONFIG, clone_plugins  # noqa: E402

from pluginkit import Manager  # noqa: E402
from pluginkit._config import parse_config, parse_settings  # noqa: E402
from pluginkit._files import read_small_file  # noqa: E402
from pluginkit._manager import _accepts as accepts  # noqa: E402
from pluginkit._reference import _parse, normalize_name  # noqa: E402
from pluginkit._store import MAX_RECORD_BYTES  # noqa: E402
from pluginkit.runtime import RuntimeSpec  # noqa: E402
from pluginkit.runtime._base import ExitCallback  # noqa: E402


class FreeRuntime:
    """A runtime whose start costs only a listening socket, made in the calling thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socks: dict[str, socket.socket] = {}

    def start(self, spec: RuntimeSpec, on_exit: ExitCallback) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(os.fspath(spec.socket_path))
        sock.listen(1)
        with self._lock:
            self._socks[spec.id] = sock

    def stop(self, plugin_id: str, *, grace: float = 10.0) -> None:
        with self._lock:
            sock = self._socks.pop(plugin_id, None)
        if sock is not None:
            sock.close()

    def is_running(self, plugin_id: str) -> bool:
        with self._lock:
            return plugin_id in self._socks

    def restore(self, spec: RuntimeSpec, on_exit: ExitCallback) -> bool:
        return False

    def discard(self, plugin_id: str) -> None:
        self.stop(plugin_id)

    def close(self) -> None:
        pass


def make_root(base: Path, count: int, run_base: Path | None = None) -> tuple[Path, Path]:
    """A root with ``count`` enabled plugins (cloned records), and its run root."""
    root, run_root = base / f"root{count}", (run_base or base) / f"run{count}"
    ctx = base / "ctx"
    if not ctx.exists():
        (ctx / "rootfs").mkdir(parents=True)
        (ctx / "config.json").write_text(json.dumps(CONFIG))
    with Manager(root, runtime=FreeRuntime(), run_root=run_root, legacy=None) as m:
        template = m.create("p0", ctx)
    clone_plugins(root, str(template.id), count, enabled=True)
    return root, run_root


def clear_caches() -> None:
    """Forget parsed names, as a manager starting in a new process has none."""
    _parse.cache_clear()


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(base: Path, run_base: Path, count: int, pairs: int) -> tuple[float, tuple[float, float]]:
    root, run_root = make_root(base, count, run_base)
    records = [
        os.path.join(root, "plugins", e.name, "plugin.json") for e in os.scandir(root / "plugins")
    ]
    specs_runtime = FreeRuntime()
    spec_root = run_base / f"s{count}"
    spec_root.mkdir()
    specs = []
    for i in range(count):
        plugin_id = f"{i:064x}"
        specs.append(
            RuntimeSpec(
                id=plugin_id,
                name=f"p{i}",
                rootfs=spec_root,
                entrypoint=("/bin/plugin",),
                socket_dir=spec_root / plugin_id,
                socket="p.sock",
                state_dir=spec_root,
            )
        )

    links = run_base / f"l{count}"
    links.mkdir()

    def ours() -> tuple[float, float]:
        runtime = FreeRuntime()
        clear_caches()
        start = time.perf_counter()
        m = Manager(root, runtime=runtime, run_root=run_root, legacy=None)
        restored = time.perf_counter() - start
        assert sum(1 for p in m.list() if p.enabled) == count
        stop = timed(m.shutdown)
        return restored, stop

    def clean_up(*, linked: bool) -> None:
        """Stop the plugins started directly; remove their sockets, directories (and links)."""
        for spec in specs:
            specs_runtime.stop(spec.id)
            os.unlink(spec.socket_path)
            os.rmdir(spec.socket_dir)
            if linked:
                os.unlink(links / spec.name)

    def baseline() -> float:
        """json.load of every record and a start of each (the socket dirs made before)."""
        for spec in specs:
            os.mkdir(spec.socket_dir, 0o700)

        def load_and_start() -> None:
            for path, spec in zip(records, specs, strict=True):
                with open(path, "rb") as f:
                    json.load(f)
                specs_runtime.start(spec, lambda _exit: None)

        elapsed = timed(load_and_start)
        clean_up(linked=False)
        return elapsed

    def floor() -> float:
        """What a restore cannot do without, per plugin, with no bookkeeping at all.

        Read and validate the record (name, config, settings), build the
        runtime's spec, make the socket directory, start, check that the
        socket listens (Docker's readiness rule), link the stable name.
        """
        clear_caches()

        def required() -> None:
            for path, spec in zip(records, specs, strict=True):
                record = json.loads(read_small_file(path, MAX_RECORD_BYTES))
                normalize_name(record["Name"])
                config = parse_config(record["Config"], source=path)
                settings = parse_settings(record["Settings"], source=path)
                spec = attrs.evolve(
                    spec,
                    rootfs=Path(path).parent / "rootfs",
                    socket_dir=spec_root / spec.id,
                    state_dir=Path(path).parent / "runtime",
                    entrypoint=tuple(config.entrypoint),
                    env=tuple(settings.env),
                )
                os.mkdir(spec.socket_dir, 0o700)
                specs_runtime.start(spec, lambda _exit: None)
                socket_path = os.fspath(spec.socket_path)
                if not accepts(socket_path):
                    raise AssertionError(f"{socket_path} does not listen")
                os.symlink(socket_path, links / spec.name)

        elapsed = timed(required)
        clean_up(linked=True)
        return elapsed

    ours()  # warm-up (also checks every plugin came back)
    baseline()
    floor()
    ratios, floor_ratios, our_times, base_times, floor_times, stops = [], [], [], [], [], []
    over_floor: list[float] = []
    for i in range(pairs):
        order = ["ours", "base", "floor"]
        order = order[i % 3 :] + order[: i % 3]
        got: dict[str, float] = {}
        for kind in order:
            if kind == "ours":
                got["ours"], stop = ours()
                stops.append(stop)
            elif kind == "base":
                got["base"] = baseline()
            else:
                got["floor"] = floor()
        ratios.append(got["ours"] / got["base"])
        floor_ratios.append(got["floor"] / got["base"])
        over_floor.append(got["ours"] / got["floor"])
        our_times.append(got["ours"])
        base_times.append(got["base"])
        floor_times.append(got["floor"])
    enable = enable_time(root, run_root)
    ratio = statistics.median(ratios)
    ours_ms = statistics.median(our_times) * 1e3
    print(
        f"restore of {count:5d} enabled plugins   pluginkit {ours_ms:9.1f}"
        f" ms   baseline {statistics.median(base_times) * 1e3:9.1f} ms   ratio {ratio:6.2f}"
        f"   (shutdown {statistics.median(stops) * 1e3:.1f} ms)"
    )
    print(
        f"    the required operations alone (validate, spec, mkdir, start, readiness check,"
        f" stable link): {statistics.median(floor_times) * 1e3:.1f} ms,"
        f" ratio to the baseline {statistics.median(floor_ratios):.2f};"
        f" pluginkit / this floor {statistics.median(over_floor):.2f}"
    )
    return ratio, enable


def enable_time(root: Path, run_root: Path, rounds: int = 41) -> tuple[float, float]:
    """Median seconds of one enable of a plugin while all the others run, and of one
    ``get`` in a sweep over every plugin's name."""
    with Manager(root, runtime=FreeRuntime(), run_root=run_root, legacy=None) as m:
        m.disable("p0")
        samples = []
        for _ in range(rounds):
            samples.append(timed(lambda: m.enable("p0")))
            m.disable("p0")
        names = [p.name for p in m.list()]
        sweeps = [timed(lambda: [m.get(name) for name in names]) / len(names) for _ in range(5)]
    return statistics.median(samples), statistics.median(sweeps)


def run_tmp() -> str | None:
    """A tmpfs for the run roots, as ``/run`` is in production (``None``: the default temp)."""
    for candidate in ("/dev/shm", os.environ.get("XDG_RUNTIME_DIR", "")):
        if candidate and os.path.isdir(candidate) and os.access(candidate, os.W_OK):
            return candidate
    return None


def main(argv: list[str]) -> None:
    counts = [int(a) for a in argv] or [100, 1000, 5000]
    base = Path(tempfile.mkdtemp(prefix="pk-br-"))
    run_base = Path(tempfile.mkdtemp(prefix="pk-br-run-", dir=run_tmp()))
    try:
        results = {n: bench(base, run_base, n, pairs=5 if n <= 1000 else 3) for n in counts}
    finally:
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(run_base, ignore_errors=True)
    print("    target: ratio <= 2 for every N, flat in N")
    smallest, largest = min(results), max(results)
    if len(results) > 1:
        print(
            f"    flatness: ratio at N={largest} / ratio at N={smallest} ="
            f" {results[largest][0] / results[smallest][0]:.2f}"
        )
    for n, (_, (enable, _)) in results.items():
        print(
            f"enable of one plugin, {n:5d} running     pluginkit {enable * 1e3:9.2f} ms"
            f"   vs N={smallest}: ratio {enable / results[smallest][1][0]:6.2f}"
            "   (target: flat, ~1)"
        )
    for n, (_, (_, get)) in results.items():
        print(
            f"get() in a sweep over all {n:5d} names  pluginkit {get * 1e6:9.2f} us"
            f"   vs N={smallest}: ratio {get / results[smallest][1][1]:6.2f}"
            "   (flat but for memory caches)"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
