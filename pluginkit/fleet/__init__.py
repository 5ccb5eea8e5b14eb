"""Fleet: one plugin on every node of a Docker Swarm, without experimental mode.

:class:`Fleet` applies a :class:`FleetSpec` (read from a TOML file by
:func:`load_spec`) to a Swarm through its manager's engine: the spec becomes
a Swarm config object and an agent runs on every node as a global service;
the agents install the plugins from their registry, supervise them, and
make each node's engine find them. See the "Fleet" guide.
"""

from __future__ import annotations

from .._public import publish
from ._agent import Agent
from ._fleet import AGENT_SERVICE, Fleet, NodeStatus
from ._spec import AgentSpec, FleetPlugin, FleetSpec, FleetSpecError, load_spec, parse_spec

__all__ = [
    "AGENT_SERVICE",
    "Agent",
    "AgentSpec",
    "Fleet",
    "FleetPlugin",
    "FleetSpec",
    "FleetSpecError",
    "NodeStatus",
    "load_spec",
    "parse_spec",
]

publish(globals())
