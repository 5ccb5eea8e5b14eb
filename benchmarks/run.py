"""Run every benchmark: ``python3 benchmarks/run.py [NAME ...]``.

Each ``benchmarks/bench_<name>.py`` is a script that measures pluginkit and
a baseline in the same run and prints its figures as ratios (pluginkit's
time divided by the baseline's; below 1.0 means pluginkit is faster). This
runner runs them one after another, in separate processes so that one cannot
warm or pollute another, and exits non-zero if any of them failed to run.
Ratios are reported, never asserted: machines are shared and noisy.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    """Run the named benchmarks (default: all) and return an exit status."""
    scripts = sorted(HERE.glob("bench_*.py"))
    if argv:
        wanted = {name.removeprefix("bench_").removesuffix(".py") for name in argv}
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in wanted]
    failed = []
    for script in scripts:
        print(f"== {script.stem}", flush=True)
        result = subprocess.run([sys.executable, str(script)], cwd=HERE.parent, check=False)
        if result.returncode != 0:
            failed.append(script.stem)
    if failed:
        print(f"failed to run: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
