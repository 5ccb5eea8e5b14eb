"""Registries behind token auth over TLS (a CA made here), and Docker's credential sources."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pluginkit.distribution import RegistryAuthError, RegistryUnreachableError
from tests._manager_helpers import Env
from tests._registry import TokenServer, make_ca_and_cert, make_client_cert, run_registry

pytestmark = pytest.mark.registry

USERS = {"alice": "s3cret"}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, TokenServer, Path]]:
    """A TLS registry with token auth: (host:port, token server, CA certificate)."""
    pytest.importorskip("cryptography")
    work = tmp_path_factory.mktemp("secured")
    ca, cert, key = make_ca_and_cert(work)
    tokens = TokenServer(work, USERS)
    try:
        with run_registry(work, tls=(cert, key), extra=tokens.registry_config()) as host:
            yield host, tokens, ca
    finally:
        tokens.close()


@pytest.fixture
def env(short_tmp: Path) -> Iterator[Env]:
    e = Env(short_tmp)
    try:
        yield e
    finally:
        e.close()


def _trust(monkeypatch: pytest.MonkeyPatch, tmp: Path, host: str, ca: Path) -> None:
    certs = tmp / "certs.d" / host
    certs.mkdir(parents=True)
    (certs / "ca.crt").write_bytes(ca.read_bytes())
    monkeypatch.setenv("PLUGINKIT_CERTS_D", str(tmp / "certs.d"))


def _docker_config(monkeypatch: pytest.MonkeyPatch, tmp: Path, config: dict[str, object]) -> Path:
    where = tmp / "docker-config"
    where.mkdir(exist_ok=True)
    (where / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv("DOCKER_CONFIG", str(where))
    return where / "config.json"


def _auths(host: str, user: str, password: str) -> dict[str, object]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"auths": {host: {"auth": token}}}


def test_push_and_install_with_token_auth_over_tls(
    secured: tuple[str, TokenServer, Path], env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Credentials from config.json get a token by the POST oauth2 form; TLS verifies the CA."""
    host, tokens, ca = secured
    _trust(monkeypatch, env.tmp, host, ca)
    _docker_config(monkeypatch, env.tmp, _auths(host, "alice", "s3cret"))
    tokens.calls.clear()
    m = env.manager()
    m.create(f"{host}/team/secure:1", env.plugin_dir())
    digest = m.push(f"{host}/team/secure:1")
    plugin = env.manager(root=env.tmp / "r2").install(f"{host}/team/secure:1", name="copy")
    assert plugin.name == "copy:latest"
    assert ("POST", "password", "alice") in tokens.calls
    assert all(call[0] == "POST" for call in tokens.calls)
    assert digest.startswith("sha256:")


def test_no_credentials_says_where_they_are_read_from(
    secured: tuple[str, TokenServer, Path], env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 401 without credentials says authentication is required and names config.json."""
    host, tokens, ca = secured
    _trust(monkeypatch, env.tmp, host, ca)
    path = _docker_config(monkeypatch, env.tmp, {"auths": {}})
    tokens.calls.clear()
    with pytest.raises(RegistryAuthError) as info:
        env.manager().install(f"{host}/team/secure:1")
    assert str(info.value) == (
        f"registry {host} requires authentication for team/secure (or it does not exist): "
        f"no credentials for {host} in {path} (run `docker login {host}`)"
    )
    assert tokens.calls
    assert all(c == ("GET", "", "") for c in tokens.calls)
    assert sorted(os.listdir(env.root / "tmp")) == []


def test_wrong_password_is_refused(
    secured: tuple[str, TokenServer, Path], env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Credentials the token server refuses: the error names them and their file."""
    host, _, ca = secured
    _trust(monkeypatch, env.tmp, host, ca)
    path = _docker_config(monkeypatch, env.tmp, _auths(host, "alice", "wrong"))
    with pytest.raises(RegistryAuthError) as info:
        env.manager().install(f"{host}/team/secure:1")
    assert str(info.value) == (
        f"registry {host} refused the credentials for {host} from {path} for team/secure "
        '(pull): the token server said {"details": "incorrect username or password"}'
    )


def test_credential_helper_from_creds_store(
    secured: tuple[str, TokenServer, Path], env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """credsStore runs docker-credential-NAME, through the docker SDK's own code."""
    host, tokens, ca = secured
    _trust(monkeypatch, env.tmp, host, ca)
    bindir = env.tmp / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-pktest"
    helper.write_text(
        "#!/bin/sh\nread server\n"
        'printf \'{"ServerURL":"%s","Username":"alice","Secret":"s3cret"}\' "$server"\n'
    )
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    _docker_config(monkeypatch, env.tmp, {"auths": {}, "credsStore": "pktest"})
    m = env.manager()
    m.create(f"{host}/team/helper:1", env.plugin_dir())
    tokens.calls.clear()
    m.push(f"{host}/team/helper:1")
    assert ("POST", "password", "alice") in tokens.calls


def test_untrusted_certificate(
    secured: tuple[str, TokenServer, Path], env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the CA in certs.d, TLS fails and the error says where the CA goes."""
    host, _, _ = secured
    monkeypatch.setenv("PLUGINKIT_CERTS_D", str(env.tmp / "empty-certs.d"))
    with pytest.raises(RegistryUnreachableError) as info:
        env.manager().install(f"{host}/team/secure:1")
    assert str(info.value).startswith(f"cannot reach registry {host}: TLS handshake failed (")
    assert str(info.value).endswith(
        f"a private CA's certificate goes in {env.tmp}/empty-certs.d/{host}/ca.crt, and a "
        "registry without TLS must be listed in PLUGINKIT_INSECURE_REGISTRIES"
    )


def test_insecure_registry_skips_verification(
    secured: tuple[str, TokenServer, Path], env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registry in PLUGINKIT_INSECURE_REGISTRIES is used without verifying its certificate."""
    host, _, _ = secured
    monkeypatch.setenv("PLUGINKIT_CERTS_D", str(env.tmp / "empty-certs.d"))
    monkeypatch.setenv("PLUGINKIT_INSECURE_REGISTRIES", f"other:1, {host}")
    _docker_config(monkeypatch, env.tmp, _auths(host, "alice", "s3cret"))
    m = env.manager()
    m.create(f"{host}/team/insecure:1", env.plugin_dir())
    assert m.push(f"{host}/team/insecure:1").startswith("sha256:")


def test_token_get_fallback_when_post_is_not_served(
    secured: tuple[str, TokenServer, Path], env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token server without the POST form (405) is asked by GET with basic auth."""
    host, tokens, ca = secured
    _trust(monkeypatch, env.tmp, host, ca)
    _docker_config(monkeypatch, env.tmp, _auths(host, "alice", "s3cret"))
    monkeypatch.setattr(tokens, "post", False)
    tokens.calls.clear()
    m = env.manager()
    m.create(f"{host}/team/getonly:1", env.plugin_dir())
    m.push(f"{host}/team/getonly:1")
    assert ("POST", "refused", "") in tokens.calls
    assert ("GET", "", "alice") in tokens.calls


def test_anonymous_pull_with_a_token(
    secured: tuple[str, TokenServer, Path], env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A public repository: an anonymous GET token is enough to install."""
    host, tokens, ca = secured
    _trust(monkeypatch, env.tmp, host, ca)
    _docker_config(monkeypatch, env.tmp, _auths(host, "alice", "s3cret"))
    m = env.manager()
    m.create(f"{host}/team/public:1", env.plugin_dir())
    m.push(f"{host}/team/public:1")
    _docker_config(monkeypatch, env.tmp, {"auths": {}})
    monkeypatch.setattr(tokens, "anonymous", ("pull",))
    tokens.calls.clear()
    plugin = env.manager(root=env.tmp / "r2").install(f"{host}/team/public:1", name="pub")
    assert plugin.name == "pub:latest"
    assert tokens.calls == [("GET", "", "")]


@pytest.fixture(scope="module")
def basic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A TLS registry with htpasswd (basic) auth: (host:port, CA certificate)."""
    pytest.importorskip("cryptography")
    crypt = _crypt()
    work = tmp_path_factory.mktemp("basic")
    ca, cert, key = make_ca_and_cert(work)
    htpasswd = work / "htpasswd"
    htpasswd.write_text(f"alice:{crypt('s3cret')}\n")
    extra = f"auth:\n  htpasswd:\n    realm: basic-realm\n    path: {htpasswd}\n"
    with run_registry(work, tls=(cert, key), extra=extra) as host:
        yield host, ca


def _crypt() -> Any:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt
        except ImportError:
            pytest.skip("no crypt module to make a bcrypt htpasswd entry (Python >= 3.13)")
    return lambda password: crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))


def test_basic_auth(basic: tuple[str, Path], env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Basic auth: the credentials of config.json go with every request."""
    host, ca = basic
    _trust(monkeypatch, env.tmp, host, ca)
    _docker_config(monkeypatch, env.tmp, _auths(host, "alice", "s3cret"))
    m = env.manager()
    m.create(f"{host}/team/basic:1", env.plugin_dir())
    digest = m.push(f"{host}/team/basic:1")
    other = env.manager(root=env.tmp / "r2")
    assert other.install(f"{host}/team/basic:1", name="b").name == "b:latest"
    assert other.inspect("b")["ManifestDigest"] == digest


def test_basic_auth_without_credentials(
    basic: tuple[str, Path], env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Basic auth without credentials says where they are read from."""
    host, ca = basic
    _trust(monkeypatch, env.tmp, host, ca)
    path = _docker_config(monkeypatch, env.tmp, {})
    with pytest.raises(RegistryAuthError) as info:
        env.manager().install(f"{host}/team/basic:1")
    assert str(info.value) == (
        f"registry {host} requires authentication for team/basic (or it does not exist): "
        f"no credentials for {host} in {path} (run `docker login {host}`)"
    )


def test_client_certificate_from_certs_d(
    env: Env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A registry that wants a client certificate gets certs.d's NAME.cert/NAME.key."""
    pytest.importorskip("cryptography")
    ca, cert, key = make_ca_and_cert(tmp_path)
    with run_registry(tmp_path, tls=(cert, key), client_ca=ca) as host:
        _trust(monkeypatch, env.tmp, host, ca)
        m = env.manager()
        m.create(f"{host}/team/mtls:1", env.plugin_dir())
        with pytest.raises(RegistryUnreachableError) as info:
            m.push(f"{host}/team/mtls:1")  # no client certificate yet
        assert str(info.value).startswith(f"cannot reach registry {host}: TLS handshake failed (")
        assert str(info.value).endswith(
            f"if it wants a client certificate, put NAME.cert and NAME.key in "
            f"{env.tmp}/certs.d/{host}/"
        )
        client_cert, client_key = make_client_cert(tmp_path, ca, tmp_path / "ca.key")
        shutil.copy(client_cert, env.tmp / "certs.d" / host / "client.cert")
        shutil.copy(client_key, env.tmp / "certs.d" / host / "client.key")
        assert m.push(f"{host}/team/mtls:1").startswith("sha256:")


def _outside_address() -> str | None:
    """A local IPv4 address that is not loopback, or None."""
    done = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        fields = line.split()
        if "inet" in fields:
            address = fields[fields.index("inet") + 1].partition("/")[0]
            if not address.startswith("127."):
                return address
    return None


def test_plain_http_only_for_loopback_or_listed_registries(
    env: Env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A plain-HTTP registry at a non-loopback address is refused until it is listed."""
    address = _outside_address()
    if address is None or shutil.which("ip") is None:
        pytest.skip("no non-loopback IPv4 address on this machine")
    monkeypatch.setenv("PLUGINKIT_CERTS_D", str(env.tmp / "no-certs.d"))
    with run_registry(tmp_path, bind=address) as local:
        host = f"{address}:{local.rpartition(':')[2]}"
        m = env.manager()
        m.create(f"{host}/team/plain:1", env.plugin_dir())
        with pytest.raises(RegistryUnreachableError) as info:
            m.push(f"{host}/team/plain:1")
        assert str(info.value).startswith(f"cannot reach registry {host}: TLS handshake failed (")
        assert str(info.value).endswith("must be listed in PLUGINKIT_INSECURE_REGISTRIES")
        monkeypatch.setenv("PLUGINKIT_INSECURE_REGISTRIES", host)
        assert m.push(f"{host}/team/plain:1").startswith("sha256:")
