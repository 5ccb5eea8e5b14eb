import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pluginkit import InvalidReferenceError, PluginError, Reference
from pluginkit._reference import is_plugin_id, normalize_name, parse_reference

# Timing is not under test, and the machines running the suite are shared.
relaxed = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Docker's grammar, as hypothesis strategies: lower-case path components
# joined by separators, an optional registry host, an optional tag.
_alnum = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=6)
_separator = st.sampled_from([".", "_", "__", "-", "--"])
_component = st.builds(
    lambda first, rest: first + "".join(s + a for s, a in rest),
    _alnum,
    st.lists(st.tuples(_separator, _alnum), max_size=3),
)
_path = st.lists(_component, min_size=1, max_size=3).map("/".join)
_host = st.sampled_from(["localhost", "localhost:5000", "registry.example.com", "r.io:443"])
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("vieux/sshfs", "vieux/sshfs:latest"),
        ("vieux/sshfs:1.0", "vieux/sshfs:1.0"),
        ("foo", "foo:latest"),
        ("docker.io/library/foo", "foo:latest"),
        ("docker.io/foo", "foo:latest"),
        ("index.docker.io/foo:1", "foo:1"),
        ("library/foo", "foo:latest"),
        ("docker.io/x/y", "x/y:latest"),
        ("docker.io/library/a/b", "library/a/b:latest"),
        ("localhost:5000/p", "localhost:5000/p:latest"),
        ("localhost/p:v2", "localhost/p:v2"),
        (
            "registry.example.com/team/plugin:Tag_1.0-rc",
            "registry.example.com/team/plugin:Tag_1.0-rc",
        ),
        ("a__b.c-d---e", "a__b.c-d---e:latest"),
    ],
)
def test_normalize_name(ref, expected):
    """Names normalize to Docker's familiar form with a tag, as the engine stores them."""
    assert normalize_name(ref) == expected


def test_reference_value():
    """parse_reference returns name and tag separately; str() joins them."""
    ref = parse_reference("docker.io/vieux/sshfs:next")
    assert ref == Reference(name="vieux/sshfs", tag="next")
    assert str(ref) == "vieux/sshfs:next"


@pytest.mark.parametrize(
    ("ref", "reason"),
    [
        ("Foo", "invalid reference format: repository name must be lowercase"),
        ("vieux/SSHFS", "invalid reference format: repository name must be lowercase"),
        ("", "repository name must have at least one component"),
        ("foo:", "invalid reference format"),
        ("foo:-tag", "invalid reference format"),
        ("foo bar", "invalid reference format"),
        ("..", "invalid reference format"),
        ("a/../b", "invalid reference format"),
        ("/abs/path", "invalid reference format"),
        ("a//b", "invalid reference format"),
        ("a/", "invalid reference format"),
        ("-a", "invalid reference format"),
        ("a.", "invalid reference format"),
        ("a\x00b", "invalid reference format"),
        ("foo:" + "t" * 129, "invalid reference format"),
        ("é", "invalid reference format"),
        ("foo@sha256:" + "a" * 64, "canonical references are not permitted"),
        ("foo:1@sha256:" + "a" * 64, "canonical references are not permitted"),
        ("a" * 256, "repository name must not be more than 255 characters"),
    ],
)
def test_invalid_references(ref, reason):
    """Invalid names raise InvalidReferenceError naming the input and Docker's reason."""
    with pytest.raises(InvalidReferenceError) as info:
        parse_reference(ref)
    quoted = '"' + ref.replace("\x00", "\\u0000") + '"'
    assert str(info.value) == f"failed to parse reference {quoted}: {reason}"


def test_plugin_id_is_not_a_name():
    """A 64-hex string is refused as a name, with Docker's message."""
    hex_id = "0123456789abcdef" * 4
    with pytest.raises(InvalidReferenceError) as info:
        parse_reference(hex_id)
    assert str(info.value) == (
        f'failed to parse reference "{hex_id}": invalid repository name ({hex_id}),'
        " cannot specify 64-byte hexadecimal strings"
    )


def test_repeated_parses_agree():
    """Cached answers equal fresh ones, and a bad name fails every time."""
    assert parse_reference("vieux/sshfs") is parse_reference("vieux/sshfs")
    for _ in range(2):
        with pytest.raises(InvalidReferenceError):
            parse_reference("Bad")


def test_invalid_reference_error_bases():
    """InvalidReferenceError is both a PluginError and a ValueError."""
    with pytest.raises(ValueError, match="failed to parse reference"):
        parse_reference("UPPER")
    with pytest.raises(PluginError):
        parse_reference("UPPER")


def test_non_string_reference():
    """A reference that is not a string is refused with a clear error."""
    with pytest.raises(InvalidReferenceError, match="expected a string, got int"):
        parse_reference(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("s", "expected"),
    [
        ("0123456789abcdef" * 4, True),
        ("0123456789ABCDEF" * 4, False),
        ("0123456789abcdef" * 4 + "0", False),
        ("0123456789abcdef" * 4 + "\n", False),
        ("0123456789abcde", False),
        ("g" * 64, False),
        ("", False),
    ],
)
def test_is_plugin_id(s, expected):
    """A plugin id is exactly 64 lower-case hex digits."""
    assert is_plugin_id(s) is expected


@relaxed
@given(host=st.none() | _host, path=_path, tag=st.none() | _tag)
def test_valid_names_parse_and_are_idempotent(host, path, tag):
    """Every name of Docker's grammar parses, and normalizing twice changes nothing."""
    ref = (f"{host}/" if host else "") + path + (f":{tag}" if tag else "")
    normalized = normalize_name(ref)
    assert normalize_name(normalized) == normalized
    assert normalized.endswith(f":{tag or 'latest'}")


@relaxed
@given(st.text(max_size=40))
@example("..")
@example("../etc/passwd")
@example("a/./b")
@example("a\x00")
@example("/")
def test_no_name_escapes_a_directory(text):
    """Whatever the input, a parsed name never has an empty, '.' or '..' path component."""
    try:
        ref = parse_reference(text)
    except InvalidReferenceError:
        return
    assert "\x00" not in ref.name
    assert not ref.name.startswith("/")
    assert all(part not in ("", ".", "..") for part in ref.name.split("/"))
    assert "/" not in ref.tag
    assert ".." not in str(ref).split(":")[0]
    assert parse_reference(str(ref)) == ref
