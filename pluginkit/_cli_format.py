r"""``--format`` of ``pluginkit ls`` and ``pluginkit inspect``, as ``docker plugin`` has it.

``ls --format`` takes ``table`` (the default), ``json`` (one object per
line, as ``{{json .}}``), ``table TEMPLATE`` (a header row, cells aligned at
tabs) or a bare Go template, applied to each plugin's row, whose fields are
``.ID``, ``.Name``, ``.Description``, ``.Enabled`` and ``.PluginReference``.
As in Docker's CLI, ``\t`` and ``\n`` written in the format become a tab
and a newline. ``inspect -f/--format`` applies a Go template to each
plugin's inspect JSON (``{{.Name}}``, ``{{.Settings.Env}}``,
``{{json .Config}}``...), one output line per plugin. See
:mod:`pluginkit._gotemplate` for what templates may contain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from ._gotemplate import Template

__all__ = ["LS_DEFAULT", "align_table", "print_inspect", "print_ls", "split_table"]

LS_DEFAULT = "table {{.ID}}\t{{.Name}}\t{{.Description}}\t{{.Enabled}}"
# Docker's column titles for the fields of `docker plugin ls`.
LS_HEADERS = {
    "ID": "ID",
    "Name": "NAME",
    "Description": "DESCRIPTION",
    "Enabled": "ENABLED",
    "PluginReference": "IMAGE",
    "Health": "HEALTH",
}


_DEFAULT_COLUMNS = ("ID", "Name", "Description", "Enabled")


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _template(text: str) -> Template:
    # Imported here: the default table needs no template.
    from ._gotemplate import Template, TemplateError

    try:
        return Template(text)
    except TemplateError as exc:
        raise TemplateError(f"template parsing error: {exc}") from None


def _render(template: Template, data: Any) -> str:
    from ._gotemplate import TemplateError

    try:
        return template.render(data)
    except TemplateError as exc:
        raise TemplateError(f"template parsing error: {exc}") from None


def print_ls(rows: Sequence[Mapping[str, Any]], fmt: str, out: TextIO) -> None:
    """Print ``ls`` rows with ``fmt``; raise :class:`TemplateError` on a bad template."""
    if fmt == "json":
        fmt = "{{json .}}"
    elif fmt == "table":  # LS_DEFAULT, without a template
        # HEALTH only when a manager with health checks reports it.
        columns = _DEFAULT_COLUMNS + (("Health",) if rows and "Health" in rows[0] else ())
        lines = ["\t".join(LS_HEADERS[k] for k in columns)]
        lines += ["\t".join(_cell(row.get(k, "")) for k in columns) for row in rows]
        out.write(align_table(lines))
        return
    table, text = split_table(fmt.strip(" "))
    text = text.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    template = _template(text)
    lines = [_render(template, row) for row in rows]
    if table:
        lines.insert(0, _render(template, LS_HEADERS))
        out.write(align_table("\n".join(lines).split("\n")))
    else:
        out.write("".join(f"{line}\n" for line in lines))


def print_inspect(records: Sequence[Mapping[str, Any]], fmt: str, out: TextIO) -> None:
    """Print each inspect record with the Go template ``fmt``, one per line."""
    template = _template(fmt)
    for record in records:
        out.write(_render(template, record) + "\n")


# -- tables ---------------------------------------------------------------------


def split_table(text: str) -> tuple[bool, str]:
    """Tell whether ``text`` is a ``table ...`` format; return the template after it."""
    if text == "table" or text.startswith(("table ", "table\t", "table\n")):
        return True, text[len("table") :].lstrip(" \t\n")
    return False, text


def align_table(lines: Sequence[str], *, minwidth: int = 10, padding: int = 3) -> str:
    """Align tab-separated cells as Docker's CLI does (Go's tabwriter 10, 1, 3, ' ').

    A cell ended by a tab is padded to its column's width (at least
    ``minwidth``, the widest cell plus ``padding``); the text after the last
    tab of a line is not.
    """
    rows = [line.split("\t") for line in lines]
    columns = max((len(row) - 1 for row in rows), default=0)
    widths = [
        max([minwidth, *(len(row[i]) + padding for row in rows if len(row) > i + 1)])
        for i in range(columns)
    ]
    out = []
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        out.append("".join(cells) + row[-1])
    return "".join(f"{line}\n" for line in out)
