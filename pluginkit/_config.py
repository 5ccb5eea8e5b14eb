"""Docker's plugin ``config.json``, plugin settings and privileges as attrs models.

Python names are snake_case; the JSON is Docker's PascalCase. One cattrs
converter does every conversion: the Docker-JSON converter the SDK's models
use too (:mod:`pluginkit._dockerjson`: field names, objects, ``omitempty``),
with config.json's additions, so that it behaves like the Go decoder Docker uses:

- keys are matched case-insensitively (``"interface"``, ``"Interface"`` and
  ``"INTERFACE"`` are the same key), unknown keys are ignored;
- ``null`` stands for the zero value of any field (``""``, ``False``, ``0``,
  an empty list, an empty object), as in Go;
- a value of the wrong type is an error: :class:`~pluginkit.InvalidConfigError`
  names the file and the path to the field, e.g.
  ``invalid plugin config config.json: Interface.Types[0]: expected a string
  like "docker.volumedriver/1.0", got 3``.

On top of Docker, :func:`parse_config` insists on what a plugin cannot work
without: at least one ``Interface.Types`` entry, an ``Interface.Socket`` that
is a plain file name, a non-empty ``Entrypoint``, and env var names that can
be written as ``NAME=value``.

:func:`dump_config` produces the ``Config`` object exactly as
``docker plugin inspect`` shows it (every key, ``null`` for empty lists and
absent values, ``User`` as ``{}`` when unset, ``ProtocolScheme`` and
``DockerVersion`` omitted when empty). Like the engine, it tells an absent
list from an explicitly empty one: ``"Settable": []`` in a config.json is
shown as ``[]``, a missing or ``null`` ``Settable`` as ``null`` (Go keeps an
empty slice apart from a nil one). The models remember an explicit ``[]``
as a special empty tuple that compares equal to ``()``, so code reading
the models never sees the difference.

:func:`apply_set` implements ``docker plugin set`` with Docker's grammar, rules
and error texts, with two deliberate differences: it is pure (it returns new
values), and a batch applies entirely or not at all (Docker keeps the entries
before a failing one). Mounts and devices: Docker writes the new source/path
through pointers shared by ``Config`` and ``Settings``, so ``docker plugin
inspect`` shows the new value in both, until a daemon restart reloads them
apart. Here both are updated explicitly, so the result is what the engine
shows right after ``set`` - and it stays that way.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Final, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import (
    ClassValidationError,
    IterableValidationError,
    IterableValidationNote,
)

from ._dockerjson import METADATA_KEY, OMITEMPTY, make_converter, wire_name
from ._errors import InstallLimitError, InvalidConfigError
from ._files import FileKindError, FileTooLargeError, read_small_file

__all__ = [
    "Args",
    "CapabilityID",
    "Device",
    "EnvVar",
    "Interface",
    "Linux",
    "Mount",
    "Network",
    "PluginConfig",
    "Privilege",
    "Rootfs",
    "Settings",
    "User",
    "apply_set",
    "capabilities",
    "compute_privileges",
    "dump_config",
    "dump_privileges",
    "dump_settings",
    "initial_settings",
    "load_config",
    "merge_env",
    "parse_config",
    "parse_privileges",
    "parse_settings",
    "privileges_equal",
]

MAX_CONFIG_BYTES: Final = 1 << 20
"""The largest ``config.json`` :func:`load_config` reads by default (1 MiB)."""

PROTOCOL_SCHEME_HTTP_V1: Final = "moby.plugins.http/v1"
"""The only plugin protocol Docker (and pluginkit) speaks; ``""`` means it too."""

# Field metadata keys: the JSON name when it is not the PascalCase of the
# Python name and Go's ``omitempty`` (both shared with the SDK's models, see
# _dockerjson), and "an empty tuple is [] not null" (config.json only).
_EMPTY_LIST: Final = "pluginkit.empty_list"


def _meta(
    json_name: str | None = None, *, omitempty: bool = False, empty_list: bool = False
) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if json_name is not None:
        meta[METADATA_KEY] = json_name
    if omitempty:
        meta[OMITEMPTY] = True
    if empty_list:
        meta[_EMPTY_LIST] = True
    return meta


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------


def _check_capability(instance: CapabilityID, attribute: attrs.Attribute[str], value: str) -> None:
    if "." in value or "/" in value:
        raise ValueError(f'capability "{value}" must not contain "." or "/"')


def _check_prefix(instance: CapabilityID, attribute: attrs.Attribute[str], value: str) -> None:
    if "/" in value:
        raise ValueError(f'capability prefix "{value}" must not contain "/"')


@attrs.frozen
class CapabilityID:
    """One entry of ``Interface.Types``: ``<prefix>.<capability>/<version>``.

    ``docker.volumedriver/1.0`` is ``CapabilityID("docker", "volumedriver",
    "1.0")``. Only types with the prefix ``docker`` give a plugin a capability
    that lookups find (as in Docker). Like Docker's marshaller, construction
    refuses a capability containing ``.`` or ``/`` and a prefix containing
    ``/`` (``ValueError``), so that ``parse(str(c)) == c`` always holds.

    Attributes:
        prefix: ``docker`` for the engine's plugin kinds.
        capability: ``volumedriver``, ``networkdriver``, ``ipamdriver``,
            ``authz``, ``logdriver``, ``metricscollector``, ...
        version: the protocol version, ``1.0``.
    """

    prefix: str = attrs.field(validator=_check_prefix)
    capability: str = attrs.field(validator=_check_capability)
    version: str = ""

    @classmethod
    def parse(cls, text: str) -> CapabilityID:
        """Parse Docker's text form, exactly as Docker does.

        The version is everything after the first ``/``; the rest is split at
        its last ``.`` into prefix and capability (no ``.``: empty prefix).
        """
        head, _, version = text.partition("/")
        prefix, _, capability = head.rpartition(".")
        return cls(prefix=prefix, capability=capability, version=version)

    def __str__(self) -> str:
        return f"{self.prefix}.{self.capability}/{self.version}"


@attrs.frozen
class Interface:
    """How the engine talks to the plugin.

    Attributes:
        types: the capability types the plugin implements.
        socket: the file name of the socket the plugin listens on, in its
            socket directory (``/run/docker/plugins`` inside a container).
        protocol_scheme: ``""`` or ``moby.plugins.http/v1`` (the same thing).
    """

    types: tuple[CapabilityID, ...] = ()
    socket: str = ""
    protocol_scheme: str = attrs.field(default="", metadata=_meta(omitempty=True))


@attrs.frozen
class User:
    """The uid/gid the plugin asks to run as (Docker records it but does not apply it)."""

    uid: int = attrs.field(default=0, metadata=_meta("UID", omitempty=True))
    gid: int = attrs.field(default=0, metadata=_meta("GID", omitempty=True))


@attrs.frozen
class Network:
    """The network the plugin needs: ``""`` (none), ``host``, ``bridge``, ``null``..."""

    type: str = ""


@attrs.frozen
class Device:
    """A host device the plugin needs (``Linux.Devices[]``, ``Settings.Devices[]``).

    Attributes:
        name: what ``set`` calls it (``<name>.path=/dev/x``).
        description: free text.
        settable: the fields ``set`` may change (``path``).
        path: the device path, None when the config gives none.
    """

    name: str = ""
    description: str = ""
    settable: tuple[str, ...] = ()
    path: str | None = None


@attrs.frozen
class Linux:
    """Linux-specific needs.

    Attributes:
        capabilities: extra capabilities (``CAP_SYS_ADMIN``...).
        allow_all_devices: access to every device (``rwm``).
        devices: devices to make available.
    """

    capabilities: tuple[str, ...] = ()
    allow_all_devices: bool = False
    devices: tuple[Device, ...] = ()


@attrs.frozen
class Mount:
    """A mount into the plugin (``Mounts[]``, ``Settings.Mounts[]``).

    Attributes:
        name: what ``set`` calls it (``<name>.source=/x``).
        description: free text.
        settable: the fields ``set`` may change (``source``).
        source: the host path, None when the config gives none.
        destination: the path inside the plugin.
        type: ``bind``, ``tmpfs``, ...
        options: mount options (``rbind``, ``ro``...).
    """

    name: str = ""
    description: str = ""
    settable: tuple[str, ...] = ()
    source: str | None = None
    destination: str = ""
    type: str = ""
    options: tuple[str, ...] = ()


@attrs.frozen
class EnvVar:
    """An environment variable the plugin declares (``Env[]``).

    Attributes:
        name: the variable's name.
        description: free text.
        settable: the fields ``set`` may change (``value``).
        value: the default value; None means no default (and no entry in
            the initial settings).
    """

    name: str = ""
    description: str = ""
    settable: tuple[str, ...] = ()
    value: str | None = None


@attrs.frozen
class Args:
    """The plugin's extra command-line arguments, appended to the entrypoint.

    Attributes:
        name: what ``set`` calls them (``<name>=a b c``).
        description: free text.
        settable: the fields ``set`` may change (``value``).
        value: the default arguments.
    """

    name: str = ""
    description: str = ""
    settable: tuple[str, ...] = ()
    value: tuple[str, ...] = ()


@attrs.frozen
class Rootfs:
    """The ``rootfs`` object Docker adds on create/pull (lower-case JSON keys)."""

    type: str = attrs.field(default="", metadata=_meta("type", omitempty=True))
    diff_ids: tuple[str, ...] = attrs.field(default=(), metadata=_meta("diff_ids"))


@attrs.frozen
class PluginConfig:
    """A plugin's ``config.json`` (Docker's ``PluginConfig``).

    Build one with :func:`parse_config` / :func:`load_config`, which check
    what a plugin cannot work without; every field has Go's zero value as
    its default. See the config.json reference guide for each JSON key.

    Attributes:
        description: one line about the plugin.
        documentation: a URL.
        interface: capability types and socket name.
        entrypoint: the command; ``Settings.args`` are appended to it.
        workdir: the working directory (empty means ``/``).
        user: the uid/gid asked for; None when absent or both 0 (Docker
            shows ``"User": {}`` for both).
        network: the network the plugin needs (``host``...).
        linux: extra capabilities and devices.
        propagated_mount: a directory inside the plugin whose mounts are
            propagated to the host (volume plugins).
        ipc_host: run in the host's IPC namespace.
        pid_host: run in the host's PID namespace.
        mounts: mounts into the plugin.
        env: the environment variables it declares.
        args: its extra arguments.
        rootfs: the layers, as recorded by the engine (None when absent).
        docker_version: the engine version that created it (empty when
            written by hand).
    """

    description: str = ""
    documentation: str = ""
    interface: Interface = Interface()
    entrypoint: tuple[str, ...] = ()
    workdir: str = attrs.field(default="", metadata=_meta("WorkDir"))
    user: User | None = None
    network: Network = Network()
    linux: Linux = Linux()
    propagated_mount: str = ""
    ipc_host: bool = False
    pid_host: bool = False
    mounts: tuple[Mount, ...] = ()
    env: tuple[EnvVar, ...] = ()
    args: Args = Args()
    rootfs: Rootfs | None = attrs.field(default=None, metadata=_meta("rootfs", omitempty=True))
    docker_version: str = attrs.field(default="", metadata=_meta(omitempty=True))


@attrs.frozen
class Settings:
    """What users can change (Docker's ``PluginSettings``).

    ``env`` holds ``NAME=value`` lines and ``args`` the extra arguments.
    ``mounts`` and ``devices`` carry the effective source/path values (after
    ``set``), in the same shapes as the config's.
    """

    mounts: tuple[Mount, ...] = attrs.field(default=(), metadata=_meta(empty_list=True))
    env: tuple[str, ...] = attrs.field(default=(), metadata=_meta(empty_list=True))
    args: tuple[str, ...] = attrs.field(default=(), metadata=_meta(empty_list=True))
    devices: tuple[Device, ...] = attrs.field(default=(), metadata=_meta(empty_list=True))


@attrs.frozen
class Privilege:
    """One privilege a plugin needs, as Docker lists them before install.

    Attributes:
        name: ``network``, ``mount``, ``device``, ``capabilities``...
        description: Docker's text for it (ignored when comparing).
        value: what exactly (the network type, the host path...).
    """

    name: str = ""
    description: str = ""
    value: tuple[str, ...] = attrs.field(default=(), metadata=_meta(empty_list=True))


# --------------------------------------------------------------------------
# The converter
# --------------------------------------------------------------------------


class _Problem(ValueError):
    """A leaf conversion problem; the path to it is added from cattrs' notes."""


def _show(value: Any) -> str:
    """Render a bad value for a message: JSON, shortened."""
    try:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _EmptyList(tuple[Any, ...]):
    """An empty tuple standing for an explicit ``[]`` of the JSON (Go: an empty, non-nil slice).

    It equals, hashes and iterates like ``()``, so model comparisons are
    unchanged; only :func:`dump_config` looks at it, to print ``[]`` where
    an absent list prints ``null``, as the engine does.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "()"


_EMPTY_LIST_VALUE: Final = _EmptyList()


def _is_tuple(t: Any) -> bool:
    return get_origin(t) is tuple


def _tuple_element(t: Any) -> Any:
    args = get_args(t)
    return args[0]


def _structure_str(value: Any, _: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    raise _Problem(f"expected a string, got {_show(value)}")


def _structure_optional_str(value: Any, _: Any) -> str | None:
    if value is None:
        return None
    return _structure_str(value, str)


def _structure_bool(value: Any, _: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    raise _Problem(f"expected true or false, got {_show(value)}")


# The only integers in Docker's plugin JSON are User.UID/GID (Go uint32).
def _structure_uint32(value: Any, _: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32:
        return value
    raise _Problem(f"expected an integer from 0 to 4294967295, got {_show(value)}")


def _structure_capability(value: Any, _: Any) -> CapabilityID:
    if isinstance(value, str):
        try:
            return CapabilityID.parse(value)
        except ValueError as exc:
            raise _Problem(f"invalid type {_show(value)}: {exc}") from None
    raise _Problem(f'expected a string like "docker.volumedriver/1.0", got {_show(value)}')


def _not_object(cls: type[Any], value: Any) -> Exception:
    return _Problem(f"expected an object, got {_show(value)}")


def _is_model(t: Any) -> bool:
    return attrs.has(t) and t is not CapabilityID


def _make_converter() -> cattrs.Converter:
    # Docker's JSON rules shared with the SDK's models, plus Go's
    # case-insensitive keys and the engine's key order.
    conv = make_converter(
        case_insensitive=True,
        sort_keys=True,
        not_object=_not_object,
        is_model=_is_model,
        field_hooks=lambda conv, cl, a: field_hooks(cl, a),
    )
    # null stands for the zero value; every other value must have the right type.
    conv.register_structure_hook(str, _structure_str)
    conv.register_structure_hook(bool, _structure_bool)
    conv.register_structure_hook(int, _structure_uint32)
    conv.register_structure_hook(str | None, _structure_optional_str)
    conv.register_structure_hook(CapabilityID, _structure_capability)
    conv.register_unstructure_hook(CapabilityID, str)

    def structure_tuple(t: Any) -> Callable[[Any, Any], tuple[Any, ...]]:
        element = _tuple_element(t)
        # Looked up once, when the hook is built, not on every list (cattrs'
        # own list hooks do the same): all hooks exist before the first use.
        structure = conv.get_structure_hook(element)

        def hook(value: Any, _: Any) -> tuple[Any, ...]:
            if value is None:
                return ()
            if not isinstance(value, list):
                raise _Problem(f"expected a list, got {_show(value)}")
            if not value:
                return _EMPTY_LIST_VALUE  # [] and null print differently
            items: list[Any] = []
            errors: list[Exception] = []
            for index, item in enumerate(value):
                try:
                    items.append(structure(item, element))
                except Exception as exc:
                    exc.__notes__ = [  # type: ignore[attr-defined]
                        *getattr(exc, "__notes__", []),
                        IterableValidationNote(f"@ index {index}", index, element),
                    ]
                    errors.append(exc)
            if errors:
                raise IterableValidationError(f"While structuring {t!r}", errors, t)
            return tuple(items)

        return hook

    def structure_user(value: Any, _: Any) -> User | None:
        # uid 0 / gid 0 is what Docker shows as "User": {}; keep one spelling.
        if value is None:
            return None
        user: User = conv.structure(value, User)
        return None if user == User() else user

    def unstructure_tuple(t: Any, *, empty_list: bool) -> Callable[[Any], Any]:
        element = _tuple_element(t)

        def hook(value: tuple[Any, ...]) -> list[Any] | None:
            if not value and not empty_list and not isinstance(value, _EmptyList):
                return None
            return [conv.unstructure(item, element) for item in value]

        return hook

    def _unstructure_user(user: User | None) -> dict[str, Any]:
        if user is None:
            return {}
        result: dict[str, Any] = conv.unstructure(user, User)
        return result

    def field_hooks(
        cl: type[Any], a: attrs.Attribute[Any]
    ) -> tuple[Callable[[Any, Any], Any] | None, Callable[[Any], Any] | None]:
        if cl is PluginConfig and a.name == "user":
            return structure_user, _unstructure_user
        if _is_tuple(a.type):
            return None, unstructure_tuple(a.type, empty_list=bool(a.metadata.get(_EMPTY_LIST)))
        return None, None

    conv.register_structure_hook_factory(_is_tuple, structure_tuple)
    return conv


_converter = _make_converter()


def _problems(exc: BaseException, path: str) -> list[tuple[str, str]]:
    """Flatten cattrs' nested validation errors into (JSON path, message) pairs."""
    if isinstance(exc, ClassValidationError):
        names = {a.name: wire_name(a) for a in attrs.fields(exc.cl)}
        with_notes, without = exc.group_exceptions()
        found: list[tuple[str, str]] = []
        for sub, note in with_notes:
            key = names.get(note.name, note.name)
            found.extend(_problems(sub, f"{path}.{key}" if path else key))
        for sub in without:
            found.extend(_problems(sub, path))
        return found
    if isinstance(exc, IterableValidationError):
        found = []
        with_index, without = exc.group_exceptions()
        for sub, index_note in with_index:
            found.extend(_problems(sub, f"{path}[{index_note.index}]"))
        for sub in without:
            found.extend(_problems(sub, path))
        return found
    if isinstance(exc, _Problem):
        return [(path, str(exc))]
    return [(path, f"{type(exc).__name__}: {exc}")]


def _structure(data: Any, cl: type[Any], what: str, source: str) -> Any:
    """Structure ``data`` into ``cl``; any problem becomes an InvalidConfigError."""
    try:
        return _converter.structure(data, cl)
    except (ClassValidationError, IterableValidationError, _Problem) as exc:
        problems = _problems(exc, "")
    field = problems[0][0]
    text = "; ".join(f"{p}: {m}" if p else m for p, m in problems)
    raise InvalidConfigError(f"invalid {what} {source}: {text}", path=source, field=field or None)


def _type_text(cap: CapabilityID) -> str:
    """``cap`` about as it was written (``"nonsense"``, not ``".nonsense/"``)."""
    text = f"{cap.prefix}.{cap.capability}" if cap.prefix else cap.capability
    return f"{text}/{cap.version}" if cap.version else text


def _invalid(source: str, field: str, message: str) -> InvalidConfigError:
    return InvalidConfigError(
        f"invalid plugin config {source}: {field}: {message}", path=source, field=field
    )


def _check_config(cfg: PluginConfig, source: str) -> PluginConfig:
    """Check what pluginkit requires beyond Go's type checks (Docker checks nothing)."""
    if not cfg.interface.types:
        raise _invalid(
            source,
            "Interface.Types",
            'at least one type is required, e.g. ["docker.volumedriver/1.0"]',
        )
    for index, cap in enumerate(cfg.interface.types):
        if not cap.prefix or not cap.capability:
            # Docker's text for a type it cannot decode; Docker itself lets
            # "nonsense" through (prefix "", capability "nonsense"), and the
            # plugin is then never found by any lookup.
            raise _invalid(
                source,
                f"Interface.Types[{index}]",
                f"{_show(_type_text(cap))} is not a plugin interface"
                ' type (expected <prefix>.<capability>/<version>, e.g. "docker.volumedriver/1.0")',
            )
    socket = cfg.interface.socket
    if not socket:
        raise _invalid(source, "Interface.Socket", 'a socket file name is required, e.g. "p.sock"')
    if "/" in socket or "\0" in socket or socket in (".", ".."):
        raise _invalid(
            source, "Interface.Socket", f"must be a plain file name, got {_show(socket)}"
        )
    if cfg.interface.protocol_scheme not in ("", PROTOCOL_SCHEME_HTTP_V1):
        raise _invalid(
            source,
            "Interface.ProtocolScheme",
            f'unsupported protocol scheme {_show(cfg.interface.protocol_scheme)} (use "'
            f'{PROTOCOL_SCHEME_HTTP_V1}" or leave it empty)',
        )
    if not cfg.entrypoint:
        raise _invalid(source, "Entrypoint", 'an entrypoint is required, e.g. ["/bin/plugin"]')
    if not cfg.entrypoint[0]:
        # Docker's text for a container whose entrypoint is [""] and has no command.
        raise _invalid(source, "Entrypoint[0]", 'No command specified (the program to run is "")')
    for index, word in enumerate(cfg.entrypoint):
        if "\0" in word:
            raise _invalid(source, f"Entrypoint[{index}]", "must not contain a NUL character")
    for index, env in enumerate(cfg.env):
        # Settings hold env vars as NAME=value lines: a name must survive that.
        if not env.name or "=" in env.name or "\0" in env.name:
            raise _invalid(
                source,
                f"Env[{index}].Name",
                f'must be a non-empty name without "=", got {_show(env.name)}',
            )
    return cfg


# --------------------------------------------------------------------------
# config.json
# --------------------------------------------------------------------------


def parse_config(data: Any, *, source: str = "config.json") -> PluginConfig:
    """Build a :class:`PluginConfig` from decoded JSON.

    Args:
        data: the decoded ``config.json`` (a dict).
        source: what to call the input in error messages (a file name).

    Raises:
        InvalidConfigError: a value has the wrong type, or a required part
            (``Interface.Types``, ``Interface.Socket``, ``Entrypoint``) is
            missing; ``path`` is ``source``, ``field`` the path to the field.
    """
    if not isinstance(data, dict):
        raise InvalidConfigError(
            f"invalid plugin config {source}: expected a JSON object, got {_show(data)}",
            path=source,
        )
    cfg: PluginConfig = _structure(data, PluginConfig, "plugin config", source)
    return _check_config(cfg, source)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _load_json(path: Path, what: str, max_bytes: int = MAX_CONFIG_BYTES) -> Any:
    source = os.fspath(path)
    try:
        text = read_small_file(path, max_bytes).decode("utf-8")
    except FileNotFoundError:
        # Docker's text (plugin create answers "config not found"), with the path.
        raise InvalidConfigError(f"config not found: {source}", path=source) from None
    except FileKindError as exc:
        # A FIFO would block the reader, /dev/zero would never end.
        raise InvalidConfigError(f"invalid {what} {source}: {exc}", path=source) from None
    except FileTooLargeError as exc:
        raise InstallLimitError(
            f"invalid {what} {source}: {exc} (InstallLimits.max_config_bytes)",
            limit="max_config_bytes",
            value=exc.limit,
            path=source,
        ) from None
    except OSError as exc:
        raise InvalidConfigError(
            f"invalid {what} {source}: cannot read it: {exc.strerror}", path=source
        ) from None
    except UnicodeDecodeError as exc:
        raise InvalidConfigError(
            f"invalid {what} {source}: not UTF-8 text (byte {exc.start})", path=source
        ) from None
    try:
        # Go rejects NaN and Infinity; so do we.
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise InvalidConfigError(
            f"invalid {what} {source}: line {exc.lineno} column {exc.colno}: {exc.msg}",
            path=source,
        ) from None
    except ValueError as exc:
        raise InvalidConfigError(f"invalid {what} {source}: {exc}", path=source) from None
    except RecursionError:
        raise InvalidConfigError(
            f"invalid {what} {source}: JSON nested too deeply", path=source
        ) from None


def load_config(path: Path, *, max_bytes: int = MAX_CONFIG_BYTES) -> PluginConfig:
    """Read and parse a ``config.json`` file.

    Args:
        path: the file; it must be a regular file (links are followed).
        max_bytes: the largest file accepted (default 1 MiB).

    Raises:
        InvalidConfigError: ``config not found: PATH`` when there is no such
            file (Docker's text); it is not a regular file (a FIFO, a
            device...), cannot be read, is not JSON (the message gives line
            and column), or does not parse (see :func:`parse_config`).
        InstallLimitError: it is larger than ``max_bytes``.
    """
    path = Path(path)
    data = _load_json(path, "plugin config", max_bytes)
    return parse_config(data, source=os.fspath(path))


def dump_config(cfg: PluginConfig) -> dict[str, Any]:
    """Return the ``Config`` object of ``docker plugin inspect`` for ``cfg``.

    ``parse_config(dump_config(cfg)) == cfg`` for every valid config.
    """
    result: dict[str, Any] = _converter.unstructure(cfg, PluginConfig)
    return result


# --------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------


def initial_settings(cfg: PluginConfig) -> Settings:
    """Docker's ``InitEmptySettings``: the settings of a freshly installed plugin.

    Env entries with a default value become ``NAME=value``; args start as
    ``Args.Value``; mounts and devices are the config's.
    """
    return Settings(
        mounts=cfg.mounts,
        env=tuple(f"{e.name}={e.value}" for e in cfg.env if e.value is not None),
        args=cfg.args.value,
        devices=cfg.linux.devices,
    )


def dump_settings(settings: Settings) -> dict[str, Any]:
    """Docker's ``Settings`` JSON: ``{"Mounts", "Env", "Args", "Devices"}`` (lists, never null)."""
    result: dict[str, Any] = _converter.unstructure(settings, Settings)
    return result


def parse_settings(data: Any, *, source: str = "settings") -> Settings:
    """Build :class:`Settings` from Docker's ``Settings`` JSON.

    Raises:
        InvalidConfigError: a value has the wrong type (the message names
            ``source`` and the field).
    """
    if not isinstance(data, dict):
        raise InvalidConfigError(
            f"invalid plugin settings {source}: expected a JSON object, got {_show(data)}",
            path=source,
        )
    settings: Settings = _structure(data, Settings, "plugin settings", source)
    return settings


def merge_env(settings: Settings, env_lines: Iterable[str]) -> Settings:
    """Merge install-time ``KEY=VALUE`` lines into ``settings.env``.

    Like Docker's ``WithEnv`` the lines override the defaults without the
    ``Settable`` check; unlike it the order is kept (existing names in place,
    new names appended in the order given) and a line without ``=`` is an
    error instead of being dropped.

    Raises:
        InvalidConfigError: a line has no ``=`` or an empty name.
    """
    merged: dict[str, str] = {}
    for line in settings.env:
        name, _, value = line.partition("=")
        merged[name] = value
    for line in env_lines:
        name, sep, value = line.partition("=")
        if not sep or not name:
            raise InvalidConfigError(
                f"invalid environment variable {_show(line)}: expected NAME=VALUE", field=line
            )
        merged[name] = value
    return attrs.evolve(settings, env=tuple(f"{k}={v}" for k, v in merged.items()))


def capabilities(cfg: PluginConfig) -> tuple[str, ...]:
    """Return the capabilities ``cfg`` gives its plugin: lower-case, ``docker`` prefix only.

    ``docker.volumedriver/1.0`` gives ``volumedriver``; other prefixes count
    for nothing, as in Docker's ``FilterByCap``.
    """
    found: dict[str, None] = {}
    for t in cfg.interface.types:
        if t.prefix == "docker":
            found[t.capability.lower()] = None
    return tuple(found)


# --------------------------------------------------------------------------
# docker plugin set
# --------------------------------------------------------------------------

_ERR_INVALID_FORMAT: Final = "invalid format, must be <name>[.<field>][=<value>]"
_ERR_MULTIPLE_FIELDS: Final = "multiple fields are settable, one must be specified"
_ALLOWED_ENV: Final = ("value",)
_ALLOWED_ARGS: Final = ("value",)
_ALLOWED_MOUNTS: Final = ("source",)
_ALLOWED_DEVICES: Final = ("path",)


@attrs.frozen
class _Settable:
    """One parsed ``set`` argument: ``<name>[.<field>][=<value>]``."""

    name: str
    field: str
    value: str

    @classmethod
    def parse(cls, arg: str) -> _Settable:
        if not isinstance(arg, str):
            raise InvalidConfigError(_ERR_INVALID_FORMAT, field=repr(arg))
        name, sep, value = arg.partition("=")
        if sep and not name:
            raise InvalidConfigError(_ERR_INVALID_FORMAT, field=arg)
        field = ""
        dot = name.rfind(".")
        if dot > 0:
            name, field = name[:dot], name[dot + 1 :]
        return cls(name=name, field=field, value=value)

    def resolve_field(self, allowed: Sequence[str], settable: Sequence[str]) -> str | None:
        """Docker's ``isSettable``: the field to set, or None when it may not be set.

        With no field given, a single ``Settable`` entry is the default (and
        names the field in a "not settable" error, as in Docker).
        """
        field = self.field
        if not field:
            if len(settable) > 1:
                raise InvalidConfigError(_ERR_MULTIPLE_FIELDS, field=self.name)
            if len(settable) == 1:
                field = settable[0]
        if field in allowed and field in settable:
            return field
        pretty = f"{self.name}.{field}" if field else self.name
        raise InvalidConfigError(f'"{pretty}" is not settable', field=self.name)


def _set_env(env: tuple[str, ...], name: str, value: str) -> tuple[str, ...]:
    """Docker's ``updateSettingsEnv``: replace ``NAME=`` in place, else append."""
    line = f"{name}={value}"
    for i, existing in enumerate(env):
        if existing.partition("=")[0] == name:
            return (*env[:i], line, *env[i + 1 :])
    return (*env, line)


def _replace_first(items: tuple[Any, ...], name: str, **changes: Any) -> tuple[Any, ...]:
    for i, item in enumerate(items):
        if item.name == name:
            return (*items[:i], attrs.evolve(item, **changes), *items[i + 1 :])
    return items


def apply_set(
    cfg: PluginConfig, settings: Settings, args: Sequence[str]
) -> tuple[PluginConfig, Settings]:
    """Apply ``docker plugin set`` arguments; return the new config and settings.

    Each argument is ``<name>[.<field>][=<value>]`` and is resolved against,
    in order, the config's env vars, mounts, devices and args (by name).
    Env sets ``NAME=value`` in ``settings.env``; args split the value on
    single spaces into ``settings.args``; a mount's ``source`` and a device's
    ``path`` change in both the config and the settings (what the engine
    shows). Nothing is changed unless every argument is valid.

    Raises:
        InvalidConfigError: with Docker's text -
            ``invalid format, must be <name>[.<field>][=<value>]``,
            ``setting "X" not found in the plugin configuration``,
            ``"X.f" is not settable``,
            ``multiple fields are settable, one must be specified``,
            ``plugin config has no mount source``,
            ``plugin config has no device path``. ``field`` is the setting's name.
    """
    if isinstance(args, str):
        raise TypeError("args must be a sequence of strings, not a string")
    parsed = [_Settable.parse(arg) for arg in args]
    for s in parsed:
        cfg, settings = _apply_one(cfg, settings, s)
    return cfg, settings


def _apply_one(
    cfg: PluginConfig, settings: Settings, s: _Settable
) -> tuple[PluginConfig, Settings]:
    for env in cfg.env:
        if env.name == s.name:
            s.resolve_field(_ALLOWED_ENV, env.settable)
            return cfg, attrs.evolve(settings, env=_set_env(settings.env, s.name, s.value))
    for mount in cfg.mounts:
        if mount.name == s.name:
            s.resolve_field(_ALLOWED_MOUNTS, mount.settable)
            if mount.source is None:
                raise InvalidConfigError("plugin config has no mount source", field=s.name)
            cfg = attrs.evolve(cfg, mounts=_replace_first(cfg.mounts, s.name, source=s.value))
            mounts = _replace_first(settings.mounts, s.name, source=s.value)
            return cfg, attrs.evolve(settings, mounts=mounts)
    for device in cfg.linux.devices:
        if device.name == s.name:
            s.resolve_field(_ALLOWED_DEVICES, device.settable)
            if device.path is None:
                raise InvalidConfigError("plugin config has no device path", field=s.name)
            linux = attrs.evolve(
                cfg.linux, devices=_replace_first(cfg.linux.devices, s.name, path=s.value)
            )
            devices = _replace_first(settings.devices, s.name, path=s.value)
            return attrs.evolve(cfg, linux=linux), attrs.evolve(settings, devices=devices)
    if cfg.args.name == s.name:
        s.resolve_field(_ALLOWED_ARGS, cfg.args.settable)
        return cfg, attrs.evolve(settings, args=tuple(s.value.split(" ")))
    raise InvalidConfigError(
        f'setting "{s.name}" not found in the plugin configuration', field=s.name
    )


# --------------------------------------------------------------------------
# Privileges
# --------------------------------------------------------------------------


def compute_privileges(cfg: PluginConfig) -> list[Privilege]:
    """Return the privileges a plugin needs, in Docker's order and with Docker's texts.

    Network (unless ``""``, ``null`` or ``bridge``), host IPC namespace, host
    PID namespace, one per mount with a source, one per device with a path,
    allow-all-devices, and the extra Linux capabilities.
    """
    found: list[Privilege] = []
    if cfg.network.type not in ("", "null", "bridge"):
        found.append(Privilege("network", "permissions to access a network", (cfg.network.type,)))
    if cfg.ipc_host:
        found.append(
            Privilege("host ipc namespace", "allow access to host ipc namespace", ("true",))
        )
    if cfg.pid_host:
        found.append(
            Privilege("host pid namespace", "allow access to host pid namespace", ("true",))
        )
    for mount in cfg.mounts:
        if mount.source is not None:
            found.append(Privilege("mount", "host path to mount", (mount.source,)))
    for device in cfg.linux.devices:
        if device.path is not None:
            found.append(Privilege("device", "host device to access", (device.path,)))
    if cfg.linux.allow_all_devices:
        found.append(Privilege("allow-all-devices", "allow 'rwm' access to all devices", ("true",)))
    if cfg.linux.capabilities:
        found.append(
            Privilege(
                "capabilities",
                "list of additional capabilities required",
                cfg.linux.capabilities,
            )
        )
    return found


def _normalized(privileges: Iterable[Privilege]) -> list[tuple[str, tuple[str, ...]]]:
    return sorted((p.name, tuple(sorted(p.value))) for p in privileges)


def privileges_equal(required: Iterable[Privilege], granted: Iterable[Privilege]) -> bool:
    """Tell whether ``granted`` is exactly ``required``, ignoring order and descriptions.

    Every entry is compared (Docker skipped the first one until 2026,
    moby 99a095ecf0); values are compared as sorted lists.
    """
    return _normalized(required) == _normalized(granted)


def dump_privileges(privileges: Iterable[Privilege]) -> list[dict[str, Any]]:
    """Docker's JSON for a privilege list: ``[{"Name", "Description", "Value"}]``."""
    return [_converter.unstructure(p, Privilege) for p in privileges]


def parse_privileges(data: Any, *, source: str = "privileges") -> list[Privilege]:
    """Build a privilege list from Docker's JSON (as sent to ``/plugins/pull``).

    Raises:
        InvalidConfigError: ``data`` is not a list of privilege objects.
    """
    result: tuple[Privilege, ...] = _structure(data, tuple[Privilege, ...], "privileges", source)
    return list(result)
