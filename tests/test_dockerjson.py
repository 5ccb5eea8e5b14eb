"""The shared base of the Docker-JSON converters (config.json models and SDK models)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import attrs
import cattrs
import pytest

from pluginkit import _config
from pluginkit._dockerjson import OMITEMPTY, json_name, make_converter, wire_name
from pluginkit.sdk import _convert

ROOT = Path(__file__).resolve().parent.parent


@attrs.frozen
class Inner:
    network_id: str = ""
    ipv4_data: str = ""
    created_at: str = ""


@attrs.frozen
class Outer:
    inner: Inner = Inner()
    odd: str = attrs.field(default="", metadata=json_name("odd_one"))
    empty: str = attrs.field(default="", metadata={OMITEMPTY: True})
    maybe: str | None = None


def test_wire_names_follow_dockers_rule_and_metadata() -> None:
    assert [wire_name(a) for a in attrs.fields(Inner)] == ["NetworkID", "IPv4Data", "CreatedAt"]
    assert [wire_name(a) for a in attrs.fields(Outer)] == ["Inner", "odd_one", "Empty", "Maybe"]


def test_both_formats_name_fields_with_the_shared_rule() -> None:
    assert _convert.wire_name is wire_name
    assert _convert.json_name is json_name
    cfg = _config.parse_config(
        {
            "Interface": {"Types": ["docker.volumedriver/1.0"], "Socket": "p.sock"},
            "Entrypoint": ["/p"],
            "WorkDir": "/w",
        }
    )
    dumped = _config.dump_config(cfg)
    assert list(dumped) == sorted(dumped)
    assert dumped["WorkDir"] == "/w"
    assert "ProtocolScheme" not in dumped["Interface"]  # omitempty


def test_plain_converter_null_object_unknown_keys_and_omitempty() -> None:
    conv = make_converter()
    assert conv.structure(None, Outer) == Outer()
    assert conv.structure({"Inner": None, "Other": 1, "odd_one": "x"}, Outer) == Outer(odd="x")
    assert conv.unstructure(Outer(inner=Inner(network_id="n"))) == {
        "Inner": {"NetworkID": "n", "IPv4Data": "", "CreatedAt": ""},
        "odd_one": "",
        "Maybe": None,
    }
    assert conv.unstructure(Outer(empty="e"))["Empty"] == "e"


def test_not_an_object_is_worded_by_the_format() -> None:
    with pytest.raises(cattrs.ClassValidationError) as default:
        make_converter().structure({"Inner": [1]}, Outer)
    assert [str(e) for e in default.value.exceptions] == ["Inner expects a JSON object, got list"]

    conv = make_converter(not_object=lambda cls, value: ValueError(f"no {cls.__name__}: {value}"))
    with pytest.raises(ValueError, match=r"^no Outer: 3$"):
        conv.structure(3, Outer)


def test_case_insensitive_keys_merge_repeated_objects() -> None:
    conv = make_converter(case_insensitive=True)
    value = {"INNER": {"networkid": "a", "ipv4data": "b"}, "inner": {"NetworkID": "c"}}
    assert conv.structure(value, Outer) == Outer(inner=Inner(network_id="c", ipv4_data="b"))
    assert conv.structure({"inNER": None, "ODD_one": "o"}, Outer) == Outer(odd="o")


def test_drop_none_both_ways_and_sorted_keys() -> None:
    dropping = make_converter(drop_none=True)
    assert dropping.structure({"odd_one": None, "Maybe": None}, Outer) == Outer()
    assert "Maybe" not in dropping.unstructure(Outer())
    assert make_converter().structure({"Maybe": None}, Outer) == Outer()
    sorted_ = make_converter(sort_keys=True, drop_none=True)
    assert list(sorted_.unstructure(Outer())) == ["Inner", "odd_one"]
    assert list(make_converter(sort_keys=True).unstructure(Inner())) == [
        "CreatedAt",
        "IPv4Data",
        "NetworkID",
    ]


def test_the_base_loads_neither_format() -> None:
    probe = (
        "import sys, json, pluginkit._dockerjson\n"
        "print(json.dumps([m for m in ('pluginkit._config', 'pluginkit.sdk') if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(done.stdout) == []
