"""The fleet file: which plugins every node of a Swarm runs, and the agent that runs them.

A TOML file::

    [agent]
    image = "registry.example.com:5000/pluginkit-agent:1"
    insecure_registries = ["registry.example.com:5000"]   # optional

    [plugins.sshfs]
    reference = "registry.example.com:5000/vieux/sshfs:1.2"
    settings = ["DEBUG=1"]                                 # optional
    grant_all_permissions = true                           # optional, default false

The table name of a plugin (``sshfs``) is the name every node's engine finds
it under (``docker volume create -d sshfs``): a socket
``/run/docker/plugins/sshfs.sock``. It is a plain name (lower-case letters,
digits and ``._-``), without a tag or a slash, since the engine looks up
legacy plugins by file name.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import attrs

from .._errors import PluginError

__all__ = ["AgentSpec", "FleetPlugin", "FleetSpec", "FleetSpecError", "load_spec", "parse_spec"]

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
_SETTING_RE = re.compile(r"[^=\s]+=.*", re.DOTALL)


class FleetSpecError(PluginError, ValueError):
    """A fleet file (or its data) is not valid; the message names the file and the key."""


@attrs.frozen
class AgentSpec:
    """How the agent runs: its image, and the registries it may reach over plain HTTP."""

    image: str
    insecure_registries: tuple[str, ...] = ()


@attrs.frozen
class FleetPlugin:
    """One plugin every node runs."""

    name: str
    reference: str
    settings: tuple[str, ...] = ()
    grant_all_permissions: bool = False


@attrs.frozen
class FleetSpec:
    """The desired state of a fleet: the agent and the plugins, by name."""

    agent: AgentSpec
    plugins: dict[str, FleetPlugin] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return the spec as plain JSON data (what the agents receive)."""
        return {
            "agent": {
                "image": self.agent.image,
                "insecure_registries": list(self.agent.insecure_registries),
            },
            "plugins": {
                name: {
                    "reference": p.reference,
                    "settings": list(p.settings),
                    "grant_all_permissions": p.grant_all_permissions,
                }
                for name, p in sorted(self.plugins.items())
            },
        }

    def encode(self) -> bytes:
        """Canonical bytes of :meth:`to_json`: equal specs give equal bytes."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()

    @property
    def digest(self) -> str:
        """A short digest of :meth:`encode` (names the Swarm config object)."""
        return hashlib.sha256(self.encode()).hexdigest()[:16]

    def without(self, name: str) -> FleetSpec:
        """Return the same spec without the plugin ``name``."""
        return attrs.evolve(self, plugins={k: v for k, v in self.plugins.items() if k != name})


def load_spec(path: str | os.PathLike[str]) -> FleetSpec:
    """Read and check a fleet TOML file.

    Raises:
        FleetSpecError: The file cannot be read, is not TOML, or a key is
            missing or wrong (the message names the file and the key).
    """
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
    source = os.fspath(path)
    try:
        data = tomllib.loads(Path(source).read_text(encoding="utf-8"))
    except OSError as exc:
        raise FleetSpecError(f"cannot read fleet file {source}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise FleetSpecError(f"fleet file {source} is not UTF-8 text: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise FleetSpecError(f"fleet file {source} is not valid TOML: {exc}") from exc
    return parse_spec(data, source=source)


def parse_spec(
    data: object, *, source: str = "fleet spec", default_insecure: tuple[str, ...] = ()
) -> FleetSpec:
    """Check fleet data (as TOML or :meth:`FleetSpec.to_json` gives it) and build the spec.

    Args:
        data: The decoded file.
        source: Named in error messages.
        default_insecure: ``agent.insecure_registries`` when the file has none.

    Raises:
        FleetSpecError: A key is missing, unknown or of the wrong type.
    """

    def fail(key: str, problem: str) -> FleetSpecError:
        return FleetSpecError(f"{source}: {key}: {problem}")

    if not isinstance(data, dict):
        raise fail("(top level)", "expected a table")
    unknown = sorted(set(data) - {"agent", "plugins"})
    if unknown:
        raise fail(unknown[0], "unknown key (expected agent, plugins)")
    agent = data.get("agent")
    if not isinstance(agent, dict):
        raise fail("agent", "missing: the [agent] table with image = REFERENCE is required")
    unknown = sorted(set(agent) - {"image", "insecure_registries"})
    if unknown:
        raise fail(f"agent.{unknown[0]}", "unknown key (expected image, insecure_registries)")
    image = agent.get("image")
    if not isinstance(image, str) or not image.strip():
        raise fail("agent.image", "missing or not a string: the agent image reference")
    insecure = agent.get("insecure_registries", list(default_insecure))
    if not isinstance(insecure, list) or not all(isinstance(i, str) and i for i in insecure):
        raise fail("agent.insecure_registries", "expected a list of HOST:PORT strings")
    plugins_data = data.get("plugins", {})
    if not isinstance(plugins_data, dict):
        raise fail("plugins", "expected a table of [plugins.NAME] tables")
    plugins: dict[str, FleetPlugin] = {}
    for name, entry in plugins_data.items():
        key = f"plugins.{name}"
        if not _NAME_RE.fullmatch(name):
            raise fail(
                key,
                "a plugin name is lower-case letters, digits and ._- (the engine finds the "
                "plugin as /run/docker/plugins/NAME.sock), without a tag or a slash",
            )
        plugins[name] = _plugin(name, entry, key, fail)
    return FleetSpec(AgentSpec(image.strip(), tuple(insecure)), plugins)


def _plugin(name: str, entry: object, key: str, fail: Any) -> FleetPlugin:
    if not isinstance(entry, dict):
        raise fail(key, "expected a table")
    unknown = sorted(set(entry) - {"reference", "settings", "grant_all_permissions"})
    if unknown:
        raise fail(
            f"{key}.{unknown[0]}",
            "unknown key (expected reference, settings, grant_all_permissions)",
        )
    reference = entry.get("reference")
    if not isinstance(reference, str) or not reference.strip():
        raise fail(f"{key}.reference", "missing or not a string: the plugin's registry reference")
    settings = entry.get("settings", [])
    if not isinstance(settings, list) or not all(isinstance(s, str) for s in settings):
        raise fail(f"{key}.settings", "expected a list of KEY=VALUE strings")
    for setting in settings:
        if not _SETTING_RE.fullmatch(setting):
            raise fail(f"{key}.settings", f"{setting!r} is not KEY=VALUE")
    grant = entry.get("grant_all_permissions", False)
    if not isinstance(grant, bool):
        raise fail(f"{key}.grant_all_permissions", "expected true or false")
    return FleetPlugin(name, reference.strip(), tuple(settings), grant)
