"""``pluginkit fleet ...``: the fleet's commands (registered by :mod:`pluginkit.cli`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, TextIO

__all__ = ["add_parser", "run"]


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Add the fleet's subcommands to ``parser`` (the ``fleet`` command's)."""
    parser.add_argument(
        "--docker-host",
        metavar="URL",
        default=None,
        help="the Swarm manager's engine (default: DOCKER_HOST, else the local socket)",
    )
    sub = parser.add_subparsers(dest="fleet_command", metavar="SUBCOMMAND", required=True)
    apply = sub.add_parser("apply", help="make every node run the plugins of a fleet file")
    apply.add_argument("file", metavar="FILE")
    apply.add_argument(
        "--wait", action="store_true", help="return once every node runs them (or fails)"
    )
    apply.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS")
    status = sub.add_parser("status", help="what each node runs, as its agent reported it")
    status.add_argument("name", nargs="?", metavar="NAME")
    status.add_argument("--format", choices=("table", "json"), default="table")
    rm = sub.add_parser("rm", help="remove a plugin from every node (the last one: the agents)")
    rm.add_argument("name", metavar="NAME")
    rm.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS")
    image = sub.add_parser(
        "agent-image", help="build the agent image from this installation and push it"
    )
    image.add_argument("reference", metavar="REF")
    agent = sub.add_parser("agent", help="run a node's agent (what the agent service runs)")
    agent.add_argument("spec", metavar="SPEC_JSON")
    agent.add_argument("--ready-file", default=None, metavar="PATH")
    agent.add_argument("--interval", type=float, default=5.0, metavar="SECONDS")


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run the fleet subcommand ``args`` asks for."""
    if args.fleet_command == "agent":
        return _agent(args)
    from ._fleet import Fleet
    from ._spec import load_spec

    client = _client(args.docker_host)
    try:
        fleet = Fleet(client)
        if args.fleet_command == "apply":
            insecure = tuple(
                r for r in os.environ.get("PLUGINKIT_INSECURE_REGISTRIES", "").split(",") if r
            )
            spec = load_spec(args.file)
            if not spec.agent.insecure_registries and insecure:
                import attrs

                spec = attrs.evolve(
                    spec, agent=attrs.evolve(spec.agent, insecure_registries=insecure)
                )
            changed = fleet.apply(spec)
            out.write(f"{'updated' if changed else 'unchanged'}: {len(spec.plugins)} plugins\n")
            if args.wait:
                fleet.wait(spec, timeout=args.timeout)
                out.write("converged\n")
        elif args.fleet_command == "status":
            rows = fleet.status(args.name)
            if args.format == "json":
                out.write(json.dumps([r.to_json() for r in rows], indent=2) + "\n")
            else:
                _table(out, rows)
        elif args.fleet_command == "rm":
            fleet.remove(args.name, timeout=args.timeout)
            out.write(f"{args.name}\n")
        else:
            from ._image import build_agent_image

            digest = build_agent_image(client, args.reference, progress=_say)
            out.write(f"{args.reference}@{digest}\n")
    finally:
        client.close()
    return 0


def _table(out: TextIO, rows: list[Any]) -> None:
    header = ("NODE", "PLUGIN", "REFERENCE", "DIGEST", "ENABLED", "HEALTH", "AGENT", "ERROR")
    table = [header]
    for r in rows:
        table.append(
            (
                r.node,
                r.plugin,
                r.reference,
                r.digest[:19],
                str(r.enabled).lower(),
                r.health or "-",
                r.agent_state + ("" if r.spec_current else " (old spec)"),
                r.error,
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        out.write("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def _say(message: str) -> None:
    sys.stderr.write(message + "\n")


def _client(url: str | None) -> Any:
    import docker

    if url:
        return docker.DockerClient(base_url=url, timeout=120)
    return docker.from_env(timeout=120)


def _agent(args: argparse.Namespace) -> int:
    import logging
    import signal  # here: every pluginkit command builds this module's parser

    from ._agent import Agent

    logging.getLogger("pluginkit").setLevel(logging.INFO)
    agent = Agent(args.spec, ready_file=args.ready_file, interval=args.interval)
    signal.signal(signal.SIGTERM, lambda *_: agent.stopping.set())
    agent.run()
    return 0
