"""The wire layer: Docker's plugin protocol as bytes in and bytes out, without I/O.

One implementation for every end of a plugin connection - the sync
:class:`~pluginkit.Client`, the :class:`~pluginkit.AsyncClient` and the SDK's
plugin server - so they cannot drift apart. Nothing here touches a socket:
callers feed received bytes in and send the bytes they get back.

* :mod:`._clientside` - the host's half: request heads out, reply heads and
  bodies (Content-Length, chunked, until-close) in, Docker's mapping of an
  error reply.
* :mod:`._serverside` - the plugin's half: request heads and bodies in
  (pipelining-safe, strict framing), response heads and chunks out.
* :mod:`._json` - the JSON codec of both halves, and the wording of its errors.
* :mod:`._address` - plugin address URLs, and the unix socket path limit.
* :mod:`._listen` - where a plugin server listens (the SDK's listen addresses).
* :mod:`._retry` - Docker's retry rule (backoff and budget), in one named place.

Own parser or a library? Measured by ``benchmarks/bench_parsers.py`` in one
run on a quiet moment of the project's shared 2-core machine (CPython 3.11,
median of 5 x 20,000 parses of a typical call, microseconds; busier runs give
larger figures, in the same proportions):

==========================  =====================  ==========  ====  =========
what                        pluginkit (cached)     pluginkit   h11   httptools
==========================  =====================  ==========  ====  =========
request (server side)       1.3                    1.6         6.9   0.7
reply (client side)         0.4 (fast path)        3.8         46    0.9
==========================  =====================  ==========  ====  =========

h11 (pure Python, one state machine object per connection) costs 5-100 times
more; httptools (C, llhttp) parses a fresh head faster, but a plugin sends the
same heads again and again and the cached paths here beat it, as its Python
callbacks cost more than a dict lookup. Both libraries are also more lenient
than Go's ``net/http`` where leniency misreads framing (obsolete line folding,
bare LF, whitespace before a colon), which Docker's own peers never send. So
the parser is our own, strict, fuzzed with Hypothesis, and a dependency is
saved. A call's round trip is about 40 microseconds: parsing is a few percent
of it either way.
"""

from __future__ import annotations
