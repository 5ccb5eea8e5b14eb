"""Fleet: one plugin on every node of a Docker Swarm, without experimental mode.

:class:`Fleet` applies a :class:`FleetSpec` (read from a TOML file by
:func:`load_spec`) to a Swarm through its manager's engine: the spec becomes
a Swarm config object and an agent runs on every node as a global service;
the agents install the plugins from their registry, supervise them, and
make each node's engine find them. See the "Fleet" guide.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from ._agent import Agent
    from ._fleet import AGENT_SERVICE, Fleet, NodeStatus
    from ._spec import (
        AgentSpec,
        FleetPlugin,
        FleetSpec,
        FleetSpecError,
        load_spec,
        parse_spec,
    )

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

# Loaded on first use (PEP 562): `pluginkit`'s command line imports
# pluginkit.fleet._cli to build its parser, and every command - those
# answered by a daemon included - must not pay for attrs and the Swarm code.
_LAZY = {
    "Agent": "._agent",
    "AGENT_SERVICE": "._fleet",
    "Fleet": "._fleet",
    "NodeStatus": "._fleet",
    "AgentSpec": "._spec",
    "FleetPlugin": "._spec",
    "FleetSpec": "._spec",
    "FleetSpecError": "._spec",
    "load_spec": "._spec",
    "parse_spec": "._spec",
}


__getattr__, __dir__ = lazy_exports(globals(), _LAZY)
