"""How the CLI draws registry progress: per layer on a terminal, one line per step otherwise."""

from __future__ import annotations

import io
import re

from pluginkit._cli_distribution import ProgressPrinter
from pluginkit.distribution import ProgressEvent

EVENTS = [
    ProgressEvent("resolve", "localhost:5000/team/p:1"),
    ProgressEvent("download", "ae94541c5e59", 0, 8_000_000),
    ProgressEvent("download", "ae94541c5e59", 4_000_000, 8_000_000),
    ProgressEvent("download", "ae94541c5e59", 8_000_000, 8_000_000),
    ProgressEvent("downloaded", "ae94541c5e59", 8_000_000, 8_000_000),
    ProgressEvent("exists", "b83fa851b38c", 612, 612),
    ProgressEvent("manifest", "sha256:" + "a" * 64),
]


def test_one_line_per_step_without_a_terminal() -> None:
    """Logs and CI get a start and an end line per layer, nothing per chunk."""
    out = io.StringIO()
    printer = ProgressPrinter(out, tty=False)
    for event in EVENTS:
        printer(event)
    assert out.getvalue() == (
        "localhost:5000/team/p:1: resolving\n"
        "ae94541c5e59: Downloading (8.0 MB)\n"
        "ae94541c5e59: Download complete\n"
        "b83fa851b38c: Layer already exists\n"
        f"Digest: sha256:{'a' * 64}\n"
    )


def test_a_terminal_line_is_rewritten_with_bytes_and_rate() -> None:
    """On a terminal the layer's line is redrawn in place with bytes and rate."""
    out = io.StringIO()
    printer = ProgressPrinter(out, tty=True)
    for event in EVENTS[:5]:
        printer(event)
    text = out.getvalue()
    assert text.startswith("localhost:5000/team/p:1: resolving\n")
    redraws = re.findall(
        r"\rae94541c5e59: Downloading (\d+\.\d) MB/8\.0 MB \d+\.\d MB/s\x1b\[K", text
    )
    assert redraws == ["0.0", "4.0", "8.0"]
    assert text.endswith("\rae94541c5e59: Download complete\x1b[K\n")
