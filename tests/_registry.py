"""A real Docker registry (Debian's ``docker-registry``, distribution 2.8) for tests.

:func:`run_registry` starts one on a free loopback port with its storage in
the test's directory: plain HTTP, or TLS with a CA made in the test and token
auth from :class:`TokenServer`, a tiny token server that signs JWTs the way
Docker Hub's does (RS256, ``x5c`` header). :func:`push_image` uploads raw
blobs and a manifest, for images no well-behaved tool would write.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import http.server
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

REGISTRY = shutil.which("docker-registry") or "/usr/bin/docker-registry"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(
    port: int, proc: subprocess.Popen[bytes], log: Path, address: str = "127.0.0.1"
) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"docker-registry exited: {log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex((address, port)) == 0:
                return
        time.sleep(0.02)
    raise AssertionError("docker-registry did not listen in time")


@contextlib.contextmanager
def run_registry(
    workdir: Path,
    *,
    tls: tuple[Path, Path] | None = None,
    extra: str = "",
    client_ca: Path | None = None,
    bind: str = "127.0.0.1",
) -> Iterator[str]:
    """Run a registry; yield ``localhost:PORT``.

    ``tls`` is (certificate, key) to serve HTTPS, ``client_ca`` makes it
    require client certificates signed by that CA; ``bind`` is the address
    to listen on; ``extra`` is YAML added to its config.
    """
    if not Path(REGISTRY).exists():
        pytest.skip("docker-registry is not installed")
    port = free_port()
    storage = workdir / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    config = workdir / "registry.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: {bind}:{port}\n"
        + (f"  tls:\n    certificate: {tls[0]}\n    key: {tls[1]}\n" if tls else "")
        + (f"    clientcas:\n      - {client_ca}\n" if client_ca else "")
        + extra
    )
    log = workdir / "registry.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([REGISTRY, "serve", str(config)], stdout=out, stderr=out)
    try:
        _wait_port(port, proc, log, bind if bind != "0.0.0.0" else "127.0.0.1")
        yield f"localhost:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def blob_path(storage: Path, digest: str) -> Path:
    """Where the registry keeps a blob's bytes (to tamper with them)."""
    hexd = digest.partition(":")[2]
    return storage / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"


def push_blob(host: str, repo: str, data: bytes, session: requests.Session | None = None) -> str:
    """Upload one blob over plain HTTP; return its digest."""
    http = session or requests.Session()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = http.post(f"http://{host}/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, r.text
    loc = urllib.parse.urljoin(f"http://{host}/", r.headers["Location"])
    r = http.put(loc, params={"digest": digest}, data=data)
    assert r.status_code == 201, r.text
    return digest


def push_image(
    host: str,
    repo: str,
    tag: str,
    config: bytes,
    layers: list[bytes],
    *,
    config_type: str = "application/vnd.docker.plugin.v1+json",
    layer_type: str = "application/vnd.docker.image.rootfs.diff.tar.gzip",
    manifest_type: str = "application/vnd.docker.distribution.manifest.v2+json",
) -> str:
    """Upload an image made of raw bytes; return the manifest digest."""
    http = requests.Session()
    cdig = push_blob(host, repo, config, http)
    ldescs = [
        {"mediaType": layer_type, "digest": push_blob(host, repo, x, http), "size": len(x)}
        for x in layers
    ]
    manifest = {
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {"mediaType": config_type, "digest": cdig, "size": len(config)},
        "layers": ldescs,
    }
    body = json.dumps(manifest).encode()
    r = http.put(
        f"http://{host}/v2/{repo}/manifests/{tag}",
        data=body,
        headers={"Content-Type": manifest_type},
    )
    assert r.status_code == 201, r.text
    return "sha256:" + hashlib.sha256(body).hexdigest()


# -- TLS and tokens ----------------------------------------------------------------


def make_ca_and_cert(workdir: Path) -> tuple[Path, Path, Path]:
    """Write a CA and a server certificate for localhost/127.0.0.1; return (ca, cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pluginkit test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (workdir / "ca.key").write_bytes(
        ca_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    paths = workdir / "ca.crt", workdir / "server.crt", workdir / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return paths


def make_client_cert(workdir: Path, ca_cert: Path, ca_key: Path) -> tuple[Path, Path]:
    """Write a client certificate signed by the CA; return (NAME.cert, NAME.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    signer = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pluginkit client")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(signer, hashes.SHA256())  # type: ignore[arg-type]
    )
    paths = workdir / "client.cert", workdir / "client.key"
    paths[0].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return paths


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """Docker's token protocol: GET (basic auth or anonymous) and the POST oauth2 form.

    ``users`` maps user names to passwords; a user gets every action asked
    for, anonymous callers get a token with no access. ``calls`` records
    ``(method, grant_type or "", user or "")`` per request.
    """

    #: Answer the POST oauth2 form (False: 405, so clients fall back to GET).
    post = True
    #: Actions an anonymous caller gets on every repository (e.g. ("pull",)).
    anonymous: tuple[str, ...] = ()

    def __init__(self, workdir: Path, users: dict[str, str]) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.users = users
        self.calls: list[tuple[str, str, str]] = []
        self.issuer = "pluginkit-test-issuer"
        self.service = "pluginkit-test-registry"
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.datetime.now(datetime.timezone.utc)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "token signer")])
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(self._key, hashes.SHA256())
        )
        self.bundle = workdir / "token-signer.crt"
        self.bundle.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.realm = f"http://127.0.0.1:{self._server.server_address[1]}/token"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def registry_config(self) -> str:
        return (
            f"auth:\n  token:\n    realm: {self.realm}\n    service: {self.service}\n"
            f"    issuer: {self.issuer}\n    rootcertbundle: {self.bundle}\n"
        )

    def token(self, user: str, scopes: list[str]) -> str:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding

        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            allowed = (
                actions.split(",")
                if user
                else [a for a in actions.split(",") if a in self.anonymous]
            )
            if allowed:
                access.append({"type": kind, "name": name, "actions": allowed})
        now = int(time.time())
        der = self._cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
        claims = {
            "iss": self.issuer,
            "sub": user,
            "aud": self.service,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": hashlib.sha256(str(time.time_ns()).encode()).hexdigest()[:16],
            "access": access,
        }
        signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        sig = self._key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing}.{_b64(sig)}"

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                user = ""
                auth = self.headers.get("Authorization", "")
                if auth.startswith("Basic "):
                    user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                    if server.users.get(user) != password:
                        server.calls.append(("GET", "", user))
                        self._reply(401, {"details": "incorrect username or password"})
                        return
                server.calls.append(("GET", "", user))
                self._reply(200, {"token": server.token(user, query.get("scope", []))})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                if not server.post:
                    server.calls.append(("POST", "refused", ""))
                    self._reply(405, {"details": "method not allowed"})
                    return
                grant = form.get("grant_type", [""])[0]
                user = form.get("username", [""])[0]
                server.calls.append(("POST", grant, user))
                if grant != "password" or server.users.get(user) != form.get("password", [""])[0]:
                    self._reply(401, {"details": "incorrect username or password"})
                    return
                scopes = " ".join(form.get("scope", [])).split()
                self._reply(200, {"access_token": server.token(user, scopes)})

        return Handler
