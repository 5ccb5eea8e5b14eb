"""The Go-template evaluator behind ``--format``: Go's output, Docker's functions, clear errors."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pluginkit._cli_format import align_table, split_table
from pluginkit._gotemplate import Template, TemplateError, format_value

PLUGIN = {
    "Id": "a4734b146100b7e8",
    "Name": "nkfmt:latest",
    "Enabled": False,
    "PluginReference": "nkfmt:latest",
    "Settings": {"Args": ["--a", "b"], "Devices": [], "Env": ["DEBUG=0", "MODE=x y"], "Mounts": []},
    "Config": {
        "Description": "A test plugin",
        "Interface": {"Types": ["docker.volumedriver/1.0"], "Socket": "fmt.sock"},
        "Linux": {"Capabilities": ["CAP_SYS_ADMIN"], "Devices": None},
    },
}


@pytest.mark.parametrize(
    ("template", "output"),
    [
        ("{{.Name}}", "nkfmt:latest"),
        ("{{.ID}}", "a4734b146100b7e8"),  # Docker's typed field name finds "Id"
        ("{{.Id}}", "a4734b146100b7e8"),
        ("{{.Enabled}}", "false"),
        ("{{.Settings.Env}}", "[DEBUG=0 MODE=x y]"),
        ("{{.Settings.Mounts}}", "[]"),
        ("{{.Config.Description}}", "A test plugin"),
        ("{{.Config.Linux.Devices}}", "<nil>"),
        ("{{.Config.Interface}}", "{fmt.sock [docker.volumedriver/1.0]}"),
        (
            "{{json .Settings}}",
            '{"Args":["--a","b"],"Devices":[],"Env":["DEBUG=0","MODE=x y"],"Mounts":[]}',
        ),
        ("{{json .Config.Interface}}", '{"Socket":"fmt.sock","Types":["docker.volumedriver/1.0"]}'),
        ("{{json .Name}}", '"nkfmt:latest"'),
        ("{{len .Settings.Env}}", "2"),
        ("{{index .Settings.Env 1}}", "MODE=x y"),
        ('{{index .Settings "Args"}}', "[--a b]"),
        ('{{join .Settings.Args ","}}', "--a,b"),
        ("{{range .Settings.Env}}<{{.}}>{{end}}", "<DEBUG=0><MODE=x y>"),
        ("{{range .Settings.Mounts}}x{{else}}none{{end}}", "none"),
        ("{{range .Settings.Env}}{{$.Name}} {{end}}", "nkfmt:latest nkfmt:latest "),
        ("{{if .Enabled}}on{{else}}off{{end}}", "off"),
        ("{{if not .Enabled}}off{{end}}", "off"),
        ('{{if eq .Name "x"}}a{{else if eq .Name "nkfmt:latest"}}b{{else}}c{{end}}', "b"),
        ("{{with .Config}}{{.Description}}{{end}}", "A test plugin"),
        ("{{with .Config.Linux.Devices}}x{{else}}empty{{end}}", "empty"),
        ("{{.Name | upper}}", "NKFMT:LATEST"),
        ('{{lower "ABC"}}|{{title "abc def"}}', "abc|Abc Def"),
        ('{{split .Name ":"}}', "[nkfmt latest]"),
        ('{{printf "%s=%v %d%%" .Name .Enabled 3}}', "nkfmt:latest=false 3%"),
        ("{{pad .Name 1 2}}|", " nkfmt:latest  |"),
        ("{{truncate .Name 5}}", "nkfmt"),
        ("{{(index .Settings.Env 0) | lower}}", "debug=0"),
        ("{{and .Name .Enabled}} {{or .Enabled .Name}}", "false nkfmt:latest"),
        ("a {{- .Name -}} b", "ankfmt:latestb"),
        ("{{/* a comment */}}x", "x"),
        ("{{`raw\\n`}}", "raw\\n"),
        ("no actions at all", "no actions at all"),
    ],
)
def test_template_renders_as_go_does(template: str, output: str) -> None:
    """Each supported form prints what Go's text/template with Docker's functions prints."""
    assert Template(template).render(PLUGIN) == output


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{.Name", "template: :1: unclosed action"),
        ("{{if .Enabled}}x", "template: :1: unexpected EOF"),
        ("x{{end}}", "template: :1: unexpected {{end}}"),
        ("{{bogus .}}", 'template: :1: function "bogus" not defined'),
        ("{{$x := 1}}", "template: :1: variables are not supported"),
        ('{{template "x"}}', "template: :1: {{template}} is not supported"),
        ("{{.Name .Enabled}}", "template: :1: can't give argument to non-function"),
        ("{{}}", "template: :1: missing value for command"),
    ],
)
def test_parse_errors(template: str, message: str) -> None:
    """A template that does not parse is refused with Go's wording and the line."""
    with pytest.raises(TemplateError) as caught:
        Template(template)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{.Foo}}", 'template: :1:2: executing "" at <.Foo>: map has no entry for key "Foo"'),
        (
            "x\n {{.Name.X}}",
            'template: :2:3: executing "" at <.Name.X>: can\'t evaluate field X in type string',
        ),
        (
            "{{index .Settings.Env 5}}",
            'template: :1:2: executing "" at <index>: error calling index: index out of range: 5',
        ),
        (
            "{{len .Enabled}}",
            'template: :1:2: executing "" at <len>: error calling len: len of type bool',
        ),
        (
            "{{range .Name}}{{end}}",
            'template: :1:2: executing "" at <.Name>: range can\'t iterate over nkfmt:latest',
        ),
    ],
)
def test_execution_errors(template: str, message: str) -> None:
    """A template that fails on the data says where and why, never a Python traceback."""
    with pytest.raises(TemplateError) as caught:
        Template(template).render(PLUGIN)
    assert str(caught.value) == message


_PIECES = [
    "{{",
    "}}",
    "{{-",
    "-}}",
    " ",
    ".",
    "Name",
    "Settings",
    "Env",
    "$",
    "|",
    "(",
    ")",
    '"',
    "`",
    "if",
    "else",
    "end",
    "range",
    "with",
    "json",
    "index",
    "len",
    "eq",
    "1",
    "-",
    ":=",
    "/*",
    "*/",
    "\n",
    "printf",
    "%v",
    "x",
]


@given(st.lists(st.sampled_from(_PIECES), max_size=14).map("".join))
def test_any_text_parses_or_fails_cleanly(text: str) -> None:
    """Arbitrary template-like input gives output or a TemplateError, nothing else."""
    with contextlib.suppress(TemplateError):
        Template(text).render(PLUGIN)


def test_templates_cannot_reach_python() -> None:
    """Fields are dict keys only: no attributes, no dunder access, no calls."""
    with pytest.raises(TemplateError):
        Template("{{.__class__}}").render(PLUGIN)
    with pytest.raises(TemplateError):
        Template("{{.Name.__class__}}").render(PLUGIN)
    with pytest.raises(TemplateError):
        Template("{{eval 1}}")


def test_format_value_is_go_percent_v() -> None:
    """%v: bools in lower case, lists in brackets, objects in braces, nil, integral floats."""
    assert format_value(True) == "true"
    assert format_value([1, [2, "a b"]]) == "[1 [2 a b]]"
    assert format_value({"b": 2, "a": 1}) == "{1 2}"
    assert format_value(None) == "<nil>"
    assert format_value(3.0) == "3"
    assert format_value(2.5) == "2.5"


def test_table_helpers() -> None:
    """'table' is recognised at the start only; cells align as Go's tabwriter(10, 1, 3)."""
    assert split_table("table {{.Name}}") == (True, "{{.Name}}")
    assert split_table("table") == (True, "")
    assert split_table("{{.Name}} table") == (False, "{{.Name}} table")
    assert split_table("tables") == (False, "tables")
    assert align_table(["ID\tNAME\tX", "0123456789abc\tn\tlast"]) == (
        "ID              NAME      X\n0123456789abc   n         last\n"
    )
