"""Models: cost of reading/writing config.json and names, against plain baselines.

- parse: ``parse_config(json.loads(text))`` against ``json.loads(text)`` alone
  (what any reader must pay) - the ratio is the price of typed, validated,
  case-insensitive models. A Manager loads one config per installed plugin
  at start, so 1000 plugins cost 1000 parses.
- dump: ``json.dumps(dump_config(cfg))`` against ``json.dumps`` of the same,
  already built dict.
- names: parsing a name (uncached, and ``normalize_name`` with its cache)
  against one anchored ``re.fullmatch`` of a simplified name pattern.
- set: ``apply_set`` of two arguments against ``attrs.evolve`` of the settings
  (the least any immutable update costs).

Run alone: ``python3 benchmarks/bench_models.py``.
"""

from __future__ import annotations

import json
import re
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import attrs

from pluginkit._config import (
    apply_set,
    dump_config,
    initial_settings,
    parse_config,
)
from pluginkit._reference import _parse, normalize_name

CONFIG = {
    "description": "sshFS plugin for Docker",
    "documentation": "https://docs.docker.com/engine/extend/plugins/",
    "entrypoint": ["/docker-volume-sshfs"],
    "network": {"type": "host"},
    "interface": {"types": ["docker.volumedriver/1.0"], "socket": "sshfs.sock"},
    "linux": {"capabilities": ["CAP_SYS_ADMIN"], "devices": [{"path": "/dev/fuse"}]},
    "mounts": [
        {
            "destination": "/mnt/state",
            "options": ["rbind"],
            "name": "state",
            "source": "/var/lib/docker/plugins/",
            "settable": ["source"],
            "type": "bind",
        }
    ],
    "env": [{"name": "DEBUG", "settable": ["value"], "value": "0"}],
    "args": {"name": "args", "settable": ["value"], "value": []},
    "propagatedMount": "/mnt/volumes",
}
SIMPLE_NAME = re.compile(
    r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*(?::[\w.-]+)?"
)


def best(fn: object, number: int) -> float:
    """Best per-call time in microseconds over 5 repeats."""
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6  # type: ignore[arg-type]


def row(label: str, ours: float, base: float) -> None:
    print(f"{label:<44} {ours:9.1f} us  baseline {base:8.1f} us  ratio {ours / base:6.2f}")


def main() -> None:
    lower_text = json.dumps(CONFIG)
    cfg = parse_config(CONFIG)
    docker_text = json.dumps(dump_config(cfg))  # as persisted: Docker's spelling
    settings = initial_settings(cfg)
    dumped = dump_config(cfg)

    row(
        "parse config.json (docs spelling, lower-case)",
        best(lambda: parse_config(json.loads(lower_text)), 2000),
        best(lambda: json.loads(lower_text), 2000),
    )
    row(
        "parse config (engine spelling, PascalCase)",
        best(lambda: parse_config(json.loads(docker_text)), 2000),
        best(lambda: json.loads(docker_text), 2000),
    )
    row(
        "dump config to JSON text",
        best(lambda: json.dumps(dump_config(cfg)), 2000),
        best(lambda: json.dumps(dumped), 2000),
    )
    row(
        "parse a new name (no cache)",
        best(lambda: _parse.__wrapped__("vieux/sshfs"), 20000),
        best(lambda: SIMPLE_NAME.fullmatch("vieux/sshfs"), 20000),
    )
    row(
        "normalize_name('vieux/sshfs') (cached)",
        best(lambda: normalize_name("vieux/sshfs"), 20000),
        best(lambda: SIMPLE_NAME.fullmatch("vieux/sshfs"), 20000),
    )
    row(
        "apply_set(['DEBUG=1', 'state=/srv'])",
        best(lambda: apply_set(cfg, settings, ["DEBUG=1", "state=/srv"]), 5000),
        best(lambda: attrs.evolve(settings, env=("DEBUG=1",)), 5000),
    )
    thousand = best(lambda: parse_config(json.loads(docker_text)), 200) * 1000 / 1e6
    print(f"{'=> 1000 persisted configs parse in':<44} {thousand:9.3f} s")


if __name__ == "__main__":
    main()
