"""A volume plugin for the fleet tests, pushed to the Swarm's registry by its manager's engine.

The plugin is a static Go program (standard library only): a volume driver
keeping volume NAME in ``$VOLROOT/NAME``. ``VOLROOT`` is under
``/var/lib/pluginkit``, which the plugin's container mounts at the same path
as on the node, so the paths it answers are the node's (the engine uses them
as they are: for the engine it is a plain, legacy plugin). ``Plugin.Activate``
answers ``VolumeDriver``; ``Test.Env`` answers the plugin's environment, so
a test can see which settings a node's plugin runs with.
"""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
from pathlib import Path

from conftest import build_go_program

GO_VOLUME_PLUGIN = r"""
package main

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
)

type req struct {
	Name string
	ID   string
}

func reply(w http.ResponseWriter, v interface{}) {
	w.Header().Set("Content-Type", "application/vnd.docker.plugins.v1.1+json")
	json.NewEncoder(w).Encode(v)
}

func main() {
	root := os.Getenv("VOLROOT")
	os.MkdirAll(root, 0755)
	path := "/run/docker/plugins/fleetvol.sock"
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		os.Exit(3)
	}
	mux := http.NewServeMux()
	read := func(r *http.Request) req {
		var q req
		json.NewDecoder(r.Body).Decode(&q)
		return q
	}
	dir := func(name string) string { return filepath.Join(root, filepath.Base(name)) }
	mux.HandleFunc("/Plugin.Activate", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]interface{}{"Implements": []string{"VolumeDriver"}})
	})
	mux.HandleFunc("/VolumeDriver.Capabilities", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]interface{}{"Capabilities": map[string]string{"Scope": "local"}})
	})
	mux.HandleFunc("/VolumeDriver.Create", func(w http.ResponseWriter, r *http.Request) {
		os.MkdirAll(dir(read(r).Name), 0755)
		reply(w, map[string]string{"Err": ""})
	})
	mux.HandleFunc("/VolumeDriver.Remove", func(w http.ResponseWriter, r *http.Request) {
		os.RemoveAll(dir(read(r).Name))
		reply(w, map[string]string{"Err": ""})
	})
	path_ := func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]string{"Mountpoint": dir(read(r).Name), "Err": ""})
	}
	mux.HandleFunc("/VolumeDriver.Mount", path_)
	mux.HandleFunc("/VolumeDriver.Path", path_)
	mux.HandleFunc("/VolumeDriver.Unmount", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]string{"Err": ""})
	})
	mux.HandleFunc("/VolumeDriver.Get", func(w http.ResponseWriter, r *http.Request) {
		name := read(r).Name
		if _, err := os.Stat(dir(name)); err != nil {
			reply(w, map[string]string{"Err": "no such volume"})
			return
		}
		vol := map[string]string{"Name": name, "Mountpoint": dir(name)}
		reply(w, map[string]interface{}{"Volume": vol, "Err": ""})
	})
	mux.HandleFunc("/VolumeDriver.List", func(w http.ResponseWriter, r *http.Request) {
		vols := []map[string]string{}
		entries, _ := os.ReadDir(root)
		for _, e := range entries {
			vols = append(vols, map[string]string{"Name": e.Name(), "Mountpoint": dir(e.Name())})
		}
		reply(w, map[string]interface{}{"Volumes": vols, "Err": ""})
	})
	mux.HandleFunc("/Test.Env", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]interface{}{"Env": os.Environ()})
	})
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		l.Close()
		os.Exit(0)
	}()
	http.Serve(l, mux)
}
"""

VOLROOT = "/var/lib/pluginkit/fleet-volumes"

CONFIG = {
    "Description": "pluginkit fleet test volume plugin",
    "Documentation": "https://example.invalid/fleetvol",
    "Interface": {"Types": ["docker.volumedriver/1.0"], "Socket": "fleetvol.sock"},
    "Entrypoint": ["/fleetvol"],
    "WorkDir": "/",
    "Network": {"Type": "none"},
    "Linux": {"Capabilities": [], "AllowAllDevices": False, "Devices": None},
    "PropagatedMount": "",
    "IpcHost": False,
    "PidHost": False,
    "Mounts": [
        {
            "Name": "volumes",
            "Description": "where volumes live, at the node's own path",
            "Settable": [],
            "Source": "/var/lib/pluginkit",
            "Destination": "/var/lib/pluginkit",
            "Type": "bind",
            "Options": ["rbind", "rw"],
        }
    ],
    "Env": [
        {"Name": "VOLROOT", "Description": "", "Settable": [], "Value": VOLROOT},
        {"Name": "FLAVOUR", "Description": "a setting", "Settable": ["value"], "Value": "plain"},
    ],
    "Args": {"Name": "args", "Description": "", "Settable": [], "Value": []},
}


@functools.cache
def plugin_binary() -> Path:
    """Build the Go volume plugin once per process; return the static binary."""
    workdir = Path(tempfile.mkdtemp(prefix="pk-fleetgo-"))
    return build_go_program(GO_VOLUME_PLUGIN, workdir, "fleetvol")


def plugin_context(where: Path) -> Path:
    """Write the plugin's directory (config.json + rootfs/fleetvol); return it."""
    (where / "rootfs").mkdir(parents=True, exist_ok=True)
    shutil.copy2(plugin_binary(), where / "rootfs" / "fleetvol")
    (where / "config.json").write_text(json.dumps(CONFIG))
    return where
