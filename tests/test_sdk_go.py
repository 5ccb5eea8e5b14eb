"""Docker's own Go plugin client (pkg/plugins) calling a pluginkit PluginServer."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pluginkit import PluginError
from pluginkit.sdk import PluginServer, volume
from tests.conftest import build_go_program

pytestmark = [pytest.mark.go, pytest.mark.slow]

GO_CLIENT = r"""
package main

import (
	"encoding/json"
	"io"
	"os"

	"github.com/docker/docker/pkg/plugins"
)

func main() {
	out := map[string]interface{}{}
	c, err := plugins.NewClient(os.Args[1], nil)
	if err != nil {
		panic(err)
	}

	var manifest plugins.Manifest
	if err := c.Call("Plugin.Activate", nil, &manifest); err != nil {
		out["activate_err"] = err.Error()
	} else {
		out["implements"] = manifest.Implements
	}

	var echo map[string]interface{}
	args := map[string]interface{}{"Name": "v1", "Opts": map[string]string{"size": "1G"}}
	if err := c.Call("Echo", args, &echo); err != nil {
		out["echo_err"] = err.Error()
	} else {
		out["echo"] = echo
	}

	err = c.Call("VolumeDriver.Create", map[string]interface{}{"Name": "exists"}, nil)
	if err != nil {
		out["create_err"] = err.Error()
		out["create_err_not_found"] = plugins.IsNotFound(err)
	}

	var mount struct {
		Mountpoint string
		Err        string
	}
	req := struct {
		Name string
		ID   string
	}{"v1", "c1"}
	if err := c.Call("VolumeDriver.Mount", req, &mount); err != nil {
		out["mount_err"] = err.Error()
	} else {
		out["mountpoint"] = mount.Mountpoint
	}

	err = c.Call("VolumeDriver.Nope", nil, nil)
	out["unknown_not_found"] = plugins.IsNotFound(err)

	rc, err := c.Stream("Logs", nil)
	if err != nil {
		out["stream_err"] = err.Error()
	} else {
		data, _ := io.ReadAll(rc)
		rc.Close()
		out["stream"] = string(data)
	}
	json.NewEncoder(os.Stdout).Encode(out)
}
"""


class Volumes(volume.VolumeDriver):
    def __init__(self) -> None:
        self.mounts: list[volume.MountRequest] = []

    def create(self, request: volume.CreateRequest) -> None:
        raise PluginError("volume exists")

    def mount(self, request: volume.MountRequest) -> volume.MountResponse:
        self.mounts.append(request)
        return volume.MountResponse(mountpoint=f"/mnt/{request.name}")


@pytest.fixture(scope="module")
def go_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_go_program(GO_CLIENT, tmp_path_factory.mktemp("goclient"), "goclient")


def _server() -> tuple[PluginServer, Volumes]:
    driver = Volumes()
    server = driver.server()
    server.add_handler("Echo", lambda request: request)
    server.add_handler("Logs", lambda request: iter([b"first\n", b"second\n"]))
    return server, driver


@pytest.fixture(params=["unix", "tcp"])
def results(request: pytest.FixtureRequest, go_client: Path, short_tmp: Path) -> Iterator[Any]:
    server, driver = _server()
    server.start(short_tmp / "go.sock" if request.param == "unix" else "tcp://127.0.0.1:0")
    try:
        assert server.address is not None
        out = subprocess.run(
            [str(go_client), server.address],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        yield json.loads(out), driver
    finally:
        server.stop()


def test_go_activate(results: Any) -> None:
    """Docker's client activates the plugin and reads Implements."""
    out, _ = results
    assert out["implements"] == ["VolumeDriver"]


def test_go_echo(results: Any) -> None:
    """A JSON call round-trips through Docker's client."""
    out, _ = results
    assert out["echo"] == {"Name": "v1", "Opts": {"size": "1G"}}


def test_go_err_becomes_status_error(results: Any) -> None:
    """A raising handler reaches Go as Docker's "<method>: <Err>" error, not a 404."""
    out, _ = results
    assert out["create_err"] == "VolumeDriver.Create: volume exists"
    assert out["create_err_not_found"] is False


def test_go_typed_mount(results: Any) -> None:
    """A typed driver method gets Docker's request and Go reads Mountpoint."""
    out, driver = results
    assert out["mountpoint"] == "/mnt/v1"
    assert driver.mounts == [volume.MountRequest(name="v1", id="c1")]


def test_go_unknown_method_is_not_found(results: Any) -> None:
    """An unknown method is a 404 for Docker's plugins.IsNotFound."""
    out, _ = results
    assert out["unknown_not_found"] is True


def test_go_stream(results: Any) -> None:
    """A streamed (chunked) reply reads whole through Client.Stream."""
    out, _ = results
    assert out["stream"] == "first\nsecond\n"
