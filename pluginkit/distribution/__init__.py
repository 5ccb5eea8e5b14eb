"""Install, push, save and load plugins through Docker registries and OCI bundles.

:class:`~pluginkit.Manager` delegates ``install`` (of a reference),
``privileges`` (of a reference), ``push``, ``upgrade``, ``save`` and ``load``
here. The modules:

* ``_ref`` - references and Docker Hub's normalisation;
* ``_auth`` - Docker's credentials (through the docker SDK's ``docker.auth``)
  and the basic/bearer challenge;
* ``_transport`` - TLS with ``/etc/docker/certs.d``, plain HTTP only for
  loopback and ``$PLUGINKIT_INSECURE_REGISTRIES``, errors;
* ``_blobs`` - digest and size verification while streaming, progress events;
* ``_manifest`` - schema 2, manifest lists, OCI manifests and indexes;
* ``_layer`` - safe layer unpacking; ``_pull``/``_push`` - the two directions;
* ``_oci`` - offline bundles (``save``/``load``); ``_upgrade`` - in-place upgrade;
* ``_build`` - ``pluginkit build`` for SDK authors;
* ``_ops`` - what the manager calls.

Why an own client on ``requests`` (already installed through the docker SDK)
rather than a library, measured on this project's CI machine:

============  ==============  ================  ======================================
package       import (ms)     pip install (s)   closed port error
============  ==============  ================  ======================================
requests      73 (already     0 (already a      (own text)
              imported by     dependency)       ``cannot reach registry HOST:
              docker)                           connection refused``
oras 0.2      139             3.3 (+5 deps)     ``HTTPConnectionPool(host=..., port=1):
                                                Max retries exceeded ... [Errno 111]
                                                Connection refused``
python-dxf    85              3.5 (+3 deps)     the same requests text
============  ==============  ================  ======================================

Neither library knows Docker's plugin config media type, ``certs.d``, the
moby ``diff_ids`` quirk or credential helpers, and both surface requests'
raw errors; verifying while streaming and unpacking in one pass needs the
raw stream anyway. The own client is about 1,200 lines.
"""

from __future__ import annotations

from .._public import publish
from ._blobs import Progress, ProgressEvent
from ._build import build_plugin
from ._errors import (
    BlobError,
    LayerError,
    NotAPluginError,
    RegistryAuthError,
    RegistryError,
    RegistryNotFoundError,
    RegistryUnreachableError,
)
from ._ref import RegistryReference, parse_registry_reference

__all__ = [
    "BlobError",
    "LayerError",
    "NotAPluginError",
    "Progress",
    "ProgressEvent",
    "RegistryAuthError",
    "RegistryError",
    "RegistryNotFoundError",
    "RegistryReference",
    "RegistryUnreachableError",
    "build_plugin",
    "parse_registry_reference",
]

publish(globals())
