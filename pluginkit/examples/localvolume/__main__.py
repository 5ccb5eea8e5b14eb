"""Run the localvolume plugin: ``python3 -m pluginkit.examples.localvolume [options]``."""

from __future__ import annotations

import argparse
import logging
import sys

import pluginkit._log  # noqa: F401 - the package logger's NullHandler, before any record
from pluginkit import PluginError
from pluginkit.examples.localvolume import LocalVolumeDriver, plugin_dir


def main(argv: list[str] | None = None) -> int:
    """Serve the localvolume driver until SIGTERM or Ctrl-C; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python3 -m pluginkit.examples.localvolume",
        description="A Docker volume plugin keeping each volume in a local directory.",
    )
    parser.add_argument("--root", help="directory holding the volumes (default: $LOCALVOLUME_ROOT)")
    parser.add_argument(
        "--address",
        help="where to listen: socket path, unix:///path or tcp://host:port "
        "(default: $PLUGINKIT_SOCKET_DIR/$PLUGINKIT_SOCKET, "
        "else /run/docker/plugins/<name>.sock)",
    )
    parser.add_argument("--name", default="localvolume", help="plugin name (default: localvolume)")
    parser.add_argument(
        "--plugin-dir",
        action="store_true",
        help="print the managed-plugin directory (config.json + rootfs/) and exit",
    )
    args = parser.parse_args(argv)
    if args.plugin_dir:
        print(plugin_dir())
        return 0
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    driver = LocalVolumeDriver(args.root)
    logging.getLogger("pluginkit.examples.localvolume").info("volumes live in %s", driver.root)
    server = driver.server(name=args.name)
    try:
        server.serve(args.address)
    except (PluginError, OSError, ValueError) as exc:
        print(f"localvolume: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
