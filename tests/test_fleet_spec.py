"""The fleet file: what it accepts, and the exact error for what it does not."""
# ruff: noqa: E501  (a table of exact error texts reads best one case a line)

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pluginkit import PluginError
from pluginkit.fleet import AgentSpec, FleetPlugin, FleetSpec, FleetSpecError, load_spec, parse_spec

GOOD = """\
[agent]
image = "reg.example:5000/pluginkit-agent:1"
insecure_registries = ["reg.example:5000"]

[plugins.sshfs]
reference = "reg.example:5000/vieux/sshfs:1.2"
settings = ["DEBUG=1", "sshkey.source=/root/.ssh"]
grant_all_permissions = true

[plugins.other]
reference = "reg.example:5000/other"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fleet.toml"
    path.write_text(text)
    return path


def test_a_good_file_is_read(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, GOOD))
    assert spec == FleetSpec(
        AgentSpec("reg.example:5000/pluginkit-agent:1", ("reg.example:5000",)),
        {
            "sshfs": FleetPlugin(
                "sshfs",
                "reg.example:5000/vieux/sshfs:1.2",
                ("DEBUG=1", "sshkey.source=/root/.ssh"),
                True,
            ),
            "other": FleetPlugin("other", "reg.example:5000/other", (), False),
        },
    )


def test_encoding_is_canonical_and_round_trips(tmp_path: Path) -> None:
    """Equal specs give equal bytes and digests, whatever the order in the file."""
    spec = load_spec(write(tmp_path, GOOD))
    reordered = GOOD.replace("[plugins.sshfs]", "[plugins.zz]").replace(
        "[plugins.other]", "[plugins.sshfs]"
    )
    assert json.loads(spec.encode()) == spec.to_json()
    assert parse_spec(spec.to_json()) == spec
    assert parse_spec(json.loads(spec.encode())).digest == spec.digest
    assert load_spec(write(tmp_path, reordered)).digest != spec.digest
    assert len(spec.digest) == 16
    assert spec.without("sshfs").plugins.keys() == {"other"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "fleet.toml: agent: missing: the [agent] table with image = REFERENCE is required"),
        ("[agent]\n", "fleet.toml: agent.image: missing or not a string: the agent image reference"),
        ('[agent]\nimage = "a"\nport = 1\n', "fleet.toml: agent.port: unknown key (expected image, insecure_registries)"),
        ('[agent]\nimage = "a"\ninsecure_registries = "r:5000"\n', "fleet.toml: agent.insecure_registries: expected a list of HOST:PORT strings"),
        ('plugins = 3\n[agent]\nimage = "a"\n', "fleet.toml: plugins: expected a table of [plugins.NAME] tables"),
        ('[agent]\nimage = "a"\n[plugins.p]\n', "fleet.toml: plugins.p.reference: missing or not a string: the plugin's registry reference"),
        ('[agent]\nimage = "a"\n[plugins.p]\nreference = "r"\nsettings = "A=1"\n', "fleet.toml: plugins.p.settings: expected a list of KEY=VALUE strings"),
        ('[agent]\nimage = "a"\n[plugins.p]\nreference = "r"\nsettings = ["novalue"]\n', "fleet.toml: plugins.p.settings: 'novalue' is not KEY=VALUE"),
        ('[agent]\nimage = "a"\n[plugins.p]\nreference = "r"\ngrant_all_permissions = "yes"\n', "fleet.toml: plugins.p.grant_all_permissions: expected true or false"),
        ('[agent]\nimage = "a"\n[plugins.p]\nreference = "r"\ntag = "1"\n', "fleet.toml: plugins.p.tag: unknown key (expected reference, settings, grant_all_permissions)"),
        ('[agent]\nimage = "a"\n[plugins."p:1"]\nreference = "r"\n', "fleet.toml: plugins.p:1: a plugin name is lower-case letters, digits and ._- (the engine finds the plugin as /run/docker/plugins/NAME.sock), without a tag or a slash"),
        ('[nodes]\n', "fleet.toml: nodes: unknown key (expected agent, plugins)"),
    ],
)  # fmt: skip
def test_bad_files_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(FleetSpecError) as info:
        load_spec(path)
    assert str(info.value) == f"{tmp_path}/{message}"
    assert isinstance(info.value, PluginError)
    assert isinstance(info.value, ValueError)


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[agent\n")
    with pytest.raises(FleetSpecError, match=r"^fleet file .*fleet.toml is not valid TOML: "):
        load_spec(path)
    with pytest.raises(FleetSpecError) as info:
        load_spec(tmp_path / "nope.toml")
    assert (
        str(info.value) == f"cannot read fleet file {tmp_path}/nope.toml: No such file or directory"
    )
