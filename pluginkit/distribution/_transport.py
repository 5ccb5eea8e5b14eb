"""HTTP to one registry: scheme, TLS, auth and errors, the way Docker talks to registries.

* TLS by default, verified against the system CAs plus every ``*.crt`` in
  Docker's ``/etc/docker/certs.d/HOST:PORT/`` (``$PLUGINKIT_CERTS_D``
  overrides the directory); a ``NAME.cert``/``NAME.key`` pair there is the
  client certificate.
* Plain HTTP only for loopback registries (``localhost``, ``127.0.0.0/8``,
  ``::1``) and for the ``host:port`` entries of
  ``$PLUGINKIT_INSECURE_REGISTRIES`` (comma-separated). A loopback registry
  is asked over HTTP first (no TLS set-up for the usual local registry), and
  over verified HTTPS when its answer is not a registry's 200/401; a listed
  one over HTTPS without verification first, then HTTP, as Docker does.
* ``HTTP(S)_PROXY``/``NO_PROXY`` apply; ``$REQUESTS_CA_BUNDLE`` does not
  (Docker's trust is the system's CAs plus ``certs.d``).
* Connection failures become ``cannot reach registry HOST: connection refused``
  (or the reason), a 401 says where credentials are read from.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import threading
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import requests
import requests.adapters
import urllib3

from ._auth import Challenge, Credentials, config_path, find_credentials, parse_challenge
from ._errors import RegistryAuthError, RegistryError, RegistryUnreachableError

__all__ = ["RegistrySession", "insecure_registries", "is_loopback"]

DEFAULT_CERTS_D = "/etc/docker/certs.d"
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 120.0
USER_AGENT = "pluginkit"


def insecure_registries() -> frozenset[str]:
    """Return the ``host:port`` names listed in ``$PLUGINKIT_INSECURE_REGISTRIES``."""
    raw = os.environ.get("PLUGINKIT_INSECURE_REGISTRIES", "")
    return frozenset(p.strip() for p in raw.split(",") if p.strip())


def is_loopback(host: str) -> bool:
    """Tell whether ``host[:port]`` names this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    name = _hostname(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


class _TLSAdapter(requests.adapters.HTTPAdapter):
    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        super().__init__(pool_connections=4, pool_maxsize=8)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)


def _certs_dir(host: str) -> Path:
    return Path(os.environ.get("PLUGINKIT_CERTS_D", DEFAULT_CERTS_D)) / host


def _client_cert(host: str) -> tuple[str, str] | None:
    """Return the first ``NAME.cert``/``NAME.key`` pair of the registry's certs.d, if any."""
    try:
        certs = sorted(_certs_dir(host).glob("*.cert"))
    except OSError:
        return None
    for cert in certs:
        if cert.with_suffix(".key").exists():
            return str(cert), str(cert.with_suffix(".key"))
    return None


_CONTEXTS: dict[tuple[str, tuple[tuple[str, float], ...]], ssl.SSLContext] = {}
_CONTEXTS_LOCK = threading.Lock()


def _tls_context(host: str) -> ssl.SSLContext:
    """Return the verifying TLS context of a registry (cached while its certs.d is unchanged)."""
    certs_dir = _certs_dir(host)
    try:
        state = tuple(sorted((e.name, e.stat().st_mtime) for e in certs_dir.iterdir()))
    except OSError:
        state = ()
    key = (os.fspath(certs_dir), state)
    with _CONTEXTS_LOCK:
        context = _CONTEXTS.get(key)
        if context is None:
            context = _CONTEXTS[key] = _new_tls_context(certs_dir)
    return context


def _new_tls_context(certs_dir: Path) -> ssl.SSLContext:
    context = ssl.create_default_context()
    try:
        entries = sorted(certs_dir.iterdir()) if certs_dir.is_dir() else []
    except OSError:
        entries = []
    for entry in entries:
        try:
            if entry.suffix == ".crt":
                context.load_verify_locations(cafile=str(entry))
            elif entry.suffix == ".cert":
                key = entry.with_suffix(".key")
                if not key.exists():
                    raise RegistryError(f"missing key {key.name} for client certificate {entry}")
                context.load_cert_chain(str(entry), str(key))
        except (ssl.SSLError, OSError) as exc:
            raise RegistryError(f"cannot use TLS material {entry}: {exc}") from None
    return context


class RegistrySession:
    """Requests to one registry for one repository, with auth handled on the way.

    Args:
        host: ``host[:port]`` to connect to.
        domain: the registry as named in references (``docker.io`` for Docker
            Hub); credentials are looked up under it.
        repository: the repository path the token scope names.
        push: ask for ``pull,push`` instead of ``pull``.
    """

    def __init__(self, host: str, domain: str, repository: str, *, push: bool = False) -> None:
        self.host = host
        self.domain = domain
        self.repository = repository
        self._actions = "pull,push" if push else "pull"
        self._http = requests.Session()
        self._http.headers["User-Agent"] = USER_AGENT
        self._http.trust_env = False
        self._base = ""
        self._verify = True
        self._auth_header = ""
        self._challenge: Challenge | None = None
        self._credentials: Credentials | None = None
        self._credentials_read = False
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def __enter__(self) -> RegistrySession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connection ----------------------------------------------------------

    def _connect(self) -> None:
        """Pick the scheme (see the module docstring) and read the auth challenge."""
        insecure = self.host in insecure_registries()
        if insecure:
            # requests' own unverified mode (a custom context would be verified anyway).
            self._verify = False
            self._http.cert = _client_cert(self.host)
        else:
            self._http.mount(f"https://{self.host}/", _TLSAdapter(_tls_context(self.host)))
        response = None
        if is_loopback(self.host) and not insecure:
            # Plain HTTP is allowed here: ask it first (no TLS set-up for the
            # common local registry). Anything but a registry's 200/401 - such
            # as a TLS server's "HTTP request to an HTTPS server" - means TLS.
            response = self._send("GET", f"http://{self.host}/v2/")
            if response.status_code in (200, 401):
                self._base = f"http://{self.host}"
            else:
                response.close()
                response = None
        if response is None:
            try:
                response = self._send("GET", f"https://{self.host}/v2/")
                self._base = f"https://{self.host}"
            except requests.exceptions.SSLError as exc:
                if not insecure:
                    raise self._tls_error(exc) from None
                response = self._send("GET", f"http://{self.host}/v2/")
                self._base = f"http://{self.host}"
        if response.status_code == 401:
            self._challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        response.close()

    def _tls_error(self, exc: Exception) -> RegistryError:
        where = _certs_dir(self.host)
        reason = _reason(exc)
        if "alert" in reason and "verify failed" not in reason:
            # The server refused us: most often it wants a client certificate.
            hint = f"if it wants a client certificate, put NAME.cert and NAME.key in {where}/"
        else:
            hint = (
                f"a private CA's certificate goes in {where}/ca.crt, and a registry "
                "without TLS must be listed in PLUGINKIT_INSECURE_REGISTRIES"
            )
        return RegistryUnreachableError(
            f"cannot reach registry {self.host}: TLS handshake failed ({reason}); {hint}"
        )

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", (CONNECT_TIMEOUT, READ_TIMEOUT))
        # Per request: a session-wide verify=False loses to $REQUESTS_CA_BUNDLE.
        kwargs.setdefault("verify", self._verify)
        # trust_env is off (it would load $REQUESTS_CA_BUNDLE on every
        # connection, and override verify=False): proxies are looked up here.
        kwargs.setdefault("proxies", requests.utils.get_environ_proxies(url))
        try:
            if not self._verify:
                # The caller listed this registry as insecure: no warning per request.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
                    return self._http.request(method, url, **kwargs)
            return self._http.request(method, url, **kwargs)
        except requests.exceptions.SSLError:
            raise
        except requests.exceptions.ConnectionError as exc:
            raise RegistryUnreachableError(
                f"cannot reach registry {self.host}: {_reason(exc)}"
            ) from None
        except requests.exceptions.Timeout:
            raise RegistryUnreachableError(
                f"cannot reach registry {self.host}: timed out"
            ) from None
        except requests.exceptions.RequestException as exc:
            raise RegistryError(f"registry {self.host}: {_reason(exc)}") from None

    # -- requests ------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        data: Any = None,
        stream: bool = False,
        params: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Send ``method path`` (a path under ``/v2/`` or an absolute upload URL), authenticated.

        A 401 answer is met once with fresh credentials or a fresh token; a
        second 401 raises :class:`RegistryAuthError`.
        """
        with self._lock:
            if not self._base:
                self._connect()
            if self._challenge is not None and not self._auth_header:
                self._authenticate(self._challenge)
        url = path if "://" in path else self._base + path
        for attempt in (1, 2):
            sent = dict(headers or {})
            if self._auth_header:
                sent["Authorization"] = self._auth_header
            response = self._send(
                method, url, headers=sent, data=data, stream=stream, params=params
            )
            if response.status_code != 401:
                return response
            challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
            response.close()
            if attempt == 2 or challenge is None or hasattr(data, "read"):
                break
            with self._lock:
                self._authenticate(challenge)
        raise self._auth_failure(response)

    def _creds(self) -> Credentials | None:
        if not self._credentials_read:
            self._credentials = find_credentials(self.domain)
            self._credentials_read = True
        return self._credentials

    def _auth_failure(
        self, response: requests.Response | None, detail: str = ""
    ) -> RegistryAuthError:
        where = config_path()
        if self._creds() is None:
            return RegistryAuthError(
                f"registry {self.host} requires authentication for {self.repository} (or it "
                f"does not exist): no credentials for {self.domain} in {where} (run `docker "
                f"login {self.domain}`){detail}"
            )
        return RegistryAuthError(
            f"registry {self.host} refused the credentials for {self.domain} from {where} "
            f"for {self.repository} ({self._actions}){detail}"
        )

    def _authenticate(self, challenge: Challenge) -> None:
        creds = self._creds()
        if challenge.scheme == "basic":
            if creds is None or not creds.username:
                raise self._auth_failure(None)
            self._auth_header = _basic(creds.username, creds.password)
            return
        if challenge.scheme != "bearer" or "realm" not in challenge.params:
            raise RegistryAuthError(
                f"registry {self.host} asks for unsupported authentication {challenge.scheme!r}"
            )
        self._auth_header = "Bearer " + self._fetch_token(challenge, creds)

    def _fetch_token(self, challenge: Challenge, creds: Credentials | None) -> str:
        realm = challenge.params["realm"]
        service = challenge.params.get("service", "")
        scope = f"repository:{self.repository}:{self._actions}"
        extra = challenge.params.get("scope", "")
        scopes = [scope] if not extra or extra == scope else [scope, extra]
        response: requests.Response | None = None
        if creds is not None:
            form = {"client_id": USER_AGENT, "service": service, "scope": " ".join(scopes)}
            if creds.identity_token:
                form.update(grant_type="refresh_token", refresh_token=creds.identity_token)
            else:
                form.update(grant_type="password", username=creds.username, password=creds.password)
            response = self._token_call("POST", realm, data=form)
            if response.status_code in (404, 405) and creds.username:
                response.close()
                response = None
        if response is None:
            headers = {}
            if creds is not None and creds.username:
                headers["Authorization"] = _basic(creds.username, creds.password)
            response = self._token_call(
                "GET",
                realm,
                params=[("service", service), *(("scope", s) for s in scopes)],
                headers=headers,
            )
        with response:
            if response.status_code in (401, 403):
                raise self._auth_failure(None, f": the token server said {_snippet(response)}")
            if response.status_code != 200:
                raise RegistryAuthError(
                    f"token server {realm} for registry {self.host} answered "
                    f"{response.status_code}: {_snippet(response)}"
                )
            try:
                body = response.json()
                token = body.get("token") or body.get("access_token")
            except (ValueError, AttributeError):
                token = None
        if not isinstance(token, str) or not token:
            raise RegistryAuthError(f"token server {realm} for registry {self.host} sent no token")
        return token

    def _token_call(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            return self._send(method, url, **kwargs)
        except requests.exceptions.SSLError as exc:
            raise RegistryUnreachableError(
                f"cannot reach token server {url} of registry {self.host}: {_reason(exc)}"
            ) from None


def _basic(username: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def _snippet(response: requests.Response) -> str:
    text = response.text[:300].strip()
    return text or response.reason or str(response.status_code)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        for nxt in (
            e.__cause__,
            e.__context__,
            *(a for a in e.args if isinstance(a, BaseException)),
        ):
            if nxt is not None:
                stack.append(nxt)
        reason = getattr(e, "reason", None)
        if isinstance(reason, BaseException):
            stack.append(reason)


def _reason(exc: BaseException) -> str:
    """Return a short reason for a transport failure (``connection refused``, ...)."""
    for e in _causes(exc):
        if isinstance(e, ConnectionRefusedError):
            return "connection refused"
        if isinstance(e, ConnectionResetError):
            return "connection reset by peer"
        if isinstance(e, TimeoutError):
            return "timed out"
        if isinstance(e, ssl.SSLError):
            reason = getattr(e, "reason", None)
            return str(reason).lower().replace("_", " ") if reason else str(e)
    text = str(exc)
    if (
        "Name or service not known" in text
        or "nodename nor servname" in text
        or ("Temporary failure in name resolution" in text)
    ):
        return "no such host"
    if "Connection refused" in text:
        return "connection refused"
    return text
