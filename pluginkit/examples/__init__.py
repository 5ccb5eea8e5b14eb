"""Example plugins written with :mod:`pluginkit.sdk`.

- :mod:`pluginkit.examples.localvolume`: a volume driver keeping each volume
  in a local directory, with a managed-plugin directory (``config.json`` +
  ``rootfs/``) for ``pluginkit create``.
"""
