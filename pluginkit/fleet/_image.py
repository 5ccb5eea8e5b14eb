"""The agent image, built from this installation: no base image, nothing downloaded.

The image's only layer is a root filesystem holding the Python that runs
this code, its standard library and shared libraries, and pluginkit with
what it imports (the builder of ``pluginkit build``). It is imported into an
engine (``docker import``) and pushed from there to the registry the fleet
file names, so registry access (insecure registries, credentials) is the
engine's, as for any image a Swarm service uses.
"""

from __future__ import annotations

import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._errors import PluginError

__all__ = ["build_agent_image"]


def build_agent_image(
    client: Any, reference: str, *, progress: Callable[[str], None] | None = None
) -> str:
    """Build the agent image as ``reference`` in ``client``'s engine and push it.

    Returns:
        The digest the registry gave the pushed image (``sha256:...``).

    Raises:
        PluginError: The engine refused the import, or the push failed
            (the registry's or the engine's message is included).
    """
    import docker.errors

    from ..distribution._build import MANAGER_PACKAGES, SITE, build_python_rootfs

    say = progress or (lambda _message: None)
    repository, tag = _split(reference)
    with tempfile.TemporaryDirectory(prefix="pk-agent-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        say("copying this Python and pluginkit into a root filesystem")
        build_python_rootfs(rootfs, MANAGER_PACKAGES)
        (rootfs / "tmp").mkdir(exist_ok=True)
        archive = Path(tmp) / "rootfs.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(rootfs, arcname=".")
        say(f"importing {archive.stat().st_size} bytes as {reference}")
        try:
            client.api.import_image(
                src=str(archive),
                repository=repository,
                tag=tag,
                changes=[
                    f"ENV PYTHONPATH={SITE}",
                    'ENTRYPOINT ["/usr/bin/python3", "-m", "pluginkit"]',
                    "LABEL io.pluginkit.fleet=agent-image",
                ],
            )
        except docker.errors.APIError as exc:
            raise PluginError(f"the engine refused the agent image: {exc}") from exc
    say(f"pushing {reference}")
    digest = ""
    try:
        for line in client.api.push(repository, tag=tag, stream=True, decode=True):
            if "error" in line:
                raise PluginError(f"cannot push the agent image {reference}: {line['error']}")
            aux = line.get("aux") or {}
            digest = aux.get("Digest", digest)
    except docker.errors.APIError as exc:
        raise PluginError(f"cannot push the agent image {reference}: {exc}") from exc
    if not digest:
        raise PluginError(f"cannot push the agent image {reference}: no digest in the answer")
    say(f"pushed {reference}@{digest}")
    return str(digest)


def _split(reference: str) -> tuple[str, str]:
    """``host:5000/a/b:1`` -> (``host:5000/a/b``, ``1``); no tag -> ``latest``."""
    name, _, tag = reference.rpartition(":")
    if not name or "/" in tag:
        return reference, "latest"
    return name, tag
