"""A small, safe evaluator of Go's ``text/template``, for ``--format`` options.

Docker users script ``docker plugin ls --format '{{.Name}}'`` and
``docker plugin inspect -f '{{json .Settings}}'``. This module renders those
templates on plain JSON-like data (dicts, lists, strings, numbers, bools,
None) with no access to Python objects: a field is a dict key, nothing is
called but the functions listed below, so a template cannot do harm.

Supported: text and ``{{ }}`` actions with ``{{-``/``-}}`` trimming and
``{{/* comments */}}``; ``.``, ``$``, field chains (``.Config.Description``,
``$.Name``; a key is matched exactly, else case-insensitively, so ``.ID``
finds ``Id`` as in Docker's typed structs), string/number/bool/nil literals,
parenthesised pipelines and ``|`` pipes; ``if``/``else if``/``else``,
``range`` (with ``else``), ``with``, ``end``. Functions: Go's ``and or not
len index print printf println eq ne lt le gt ge`` and Docker's ``json join
split lower upper title pad truncate``. Values print as Go's ``%v`` does:
``true``, ``[a b]`` for lists, ``{v1 v2}`` for objects (Go prints structs
that way; values in key order, the order of the fields of Docker's API
types), ``<nil>`` for null; ``json`` sorts keys for the same reason.
Variables (``$x :=``), ``define``, ``template`` and ``block`` are not
supported.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

__all__ = ["Template", "TemplateError", "format_value"]


class TemplateError(ValueError):
    """The template does not parse, or fails on the data (Docker's wording)."""


# -- lexing ---------------------------------------------------------------------

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\\n]|\\.)*"|`[^`]*`)
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<field>(?:\$[A-Za-z_]\w*|\$)?(?:\.[A-Za-z_]\w*)+|\.|\$)
      | (?P<word>[A-Za-z_]\w*)
      | (?P<punct>[()|])
      | (?P<bad>\S)
    )""",
    re.VERBOSE,
)


class _Token:
    __slots__ = ("kind", "text")

    def __init__(self, kind: str, text: str) -> None:
        self.kind = kind
        self.text = text


def _tokens(source: str, line: int) -> list[_Token]:
    tokens = []
    for match in _TOKEN.finditer(source):
        kind = match.lastgroup
        if kind is None:
            continue
        text = match.group(kind)
        if kind == "bad":
            if text == ":" or text == "=":
                raise TemplateError(f"template: :{line}: variables are not supported")
            raise TemplateError(f"template: :{line}: unexpected {text!r} in command")
        tokens.append(_Token(kind, text))
    return tokens


# -- the tree -------------------------------------------------------------------


class _Field:
    __slots__ = ("names", "root", "text")

    def __init__(self, root: str, names: tuple[str, ...], text: str) -> None:
        self.root = root
        self.names = names
        self.text = text


class _Literal:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class _Call:
    __slots__ = ("args", "name")

    def __init__(self, name: str, args: tuple[Any, ...]) -> None:
        self.name = name
        self.args = args


class _Pipeline:
    __slots__ = ("commands", "text")

    def __init__(self, commands: tuple[Any, ...], text: str) -> None:
        self.commands = commands
        self.text = text


class _Action:
    __slots__ = ("pipeline", "position")

    def __init__(self, pipeline: _Pipeline, position: str) -> None:
        self.pipeline = pipeline
        self.position = position


class _Branch:
    __slots__ = ("body", "kind", "otherwise", "pipeline", "position")

    def __init__(
        self, kind: str, pipeline: _Pipeline, body: list[Any], otherwise: list[Any], position: str
    ) -> None:
        self.kind = kind
        self.pipeline = pipeline
        self.body = body
        self.otherwise = otherwise
        self.position = position


# -- parsing --------------------------------------------------------------------


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.items = list(self._split(source))
        self.index = 0

    def _split(self, source: str) -> Iterator[tuple[str, str, str]]:
        """Yield ("text", text, pos) and ("action", inner, pos) pieces."""
        pos = 0
        trim_next = False
        for match in _ACTION.finditer(source):
            text = source[pos : match.start()]
            if trim_next:
                text = text.lstrip()
            if match.group(1):
                text = text.rstrip()
            if text:
                yield ("text", text, "")
            line = source.count("\n", 0, match.start()) + 1
            column = match.start() - (source.rfind("\n", 0, match.start()) + 1) + 2
            yield ("action", match.group(2), f"{line}:{column}")
            trim_next = bool(match.group(3))
            pos = match.end()
        rest = source[pos:]
        if "{{" in rest:
            line = source.count("\n", 0, pos + rest.index("{{")) + 1
            raise TemplateError(f"template: :{line}: unclosed action")
        if trim_next:
            rest = rest.lstrip()
        if rest:
            yield ("text", rest, "")

    def parse(self) -> list[Any]:
        nodes, stop = self._list()
        if stop is not None:
            raise TemplateError(f"template: :{stop[1].split(':')[0]}: unexpected {{{{{stop[0]}}}}}")
        return nodes

    def _list(self) -> tuple[list[Any], tuple[str, str] | None]:
        """Parse nodes up to an {{else}}/{{end}} (returned) or the end (None)."""
        nodes: list[Any] = []
        while self.index < len(self.items):
            kind, text, position = self.items[self.index]
            self.index += 1
            if kind == "text":
                nodes.append(text)
                continue
            inner = text.strip()
            if inner.startswith("/*"):
                if not inner.endswith("*/"):
                    raise TemplateError(f"template: :{position.split(':')[0]}: unclosed comment")
                continue
            keyword, _, rest = inner.partition(" ")
            if keyword in ("end", "else"):
                return nodes, (inner, position)
            if keyword in ("if", "range", "with"):
                nodes.append(self._branch(keyword, rest, position))
            elif keyword in ("define", "template", "block", "break", "continue"):
                line = position.split(":")[0]
                raise TemplateError(f"template: :{line}: {{{{{keyword}}}}} is not supported")
            else:
                nodes.append(_Action(self._pipeline(inner, position), position))
        return nodes, None

    def _branch(self, kind: str, rest: str, position: str) -> _Branch:
        line = position.split(":")[0]
        pipeline = self._pipeline(rest, position)
        body, stop = self._list()
        otherwise: list[Any] = []
        if stop is None:
            raise TemplateError(f"template: :{line}: unexpected EOF")
        if stop[0] != "end":
            after = stop[0][len("else") :].strip()
            if after:  # {{else if ...}}: a nested branch that shares our {{end}}
                keyword, _, cond = after.partition(" ")
                if keyword != kind or kind == "range":
                    raise TemplateError(f"template: :{line}: unexpected {{{{{stop[0]}}}}}")
                otherwise = [self._branch(kind, cond, stop[1])]
                return _Branch(kind, pipeline, body, otherwise, position)
            otherwise, stop = self._list()
            if stop is None or stop[0] != "end":
                raise TemplateError(f"template: :{line}: expected end; found {stop or 'EOF'}")
        return _Branch(kind, pipeline, body, otherwise, position)

    def _pipeline(self, text: str, position: str) -> _Pipeline:
        line = position.split(":")[0]
        tokens = _tokens(text, int(line))
        if not tokens:
            raise TemplateError(f"template: :{line}: missing value for command")
        commands, rest = self._commands(tokens, line)
        if rest:
            raise TemplateError(f"template: :{line}: unexpected {rest[0].text!r} in operand")
        return _Pipeline(tuple(commands), text.strip())

    def _commands(self, tokens: list[_Token], line: str) -> tuple[list[Any], list[_Token]]:
        commands: list[Any] = []
        while True:
            operands: list[Any] = []
            while tokens and tokens[0].text not in ("|", ")"):
                operand, tokens = self._operand(tokens, line)
                operands.append(operand)
            if not operands:
                raise TemplateError(f"template: :{line}: missing value for command")
            first = operands[0]
            if isinstance(first, _Call):
                commands.append(_Call(first.name, tuple(operands[1:])))
            elif len(operands) > 1:
                raise TemplateError(f"template: :{line}: can't give argument to non-function")
            else:
                commands.append(first)
            if not tokens or tokens[0].text == ")":
                return commands, tokens
            tokens = tokens[1:]  # "|"

    def _operand(self, tokens: list[_Token], line: str) -> tuple[Any, list[_Token]]:
        token, rest = tokens[0], tokens[1:]
        if token.kind == "string":
            if token.text.startswith("`"):
                return _Literal(token.text[1:-1]), rest
            return _Literal(json.loads(token.text)), rest
        if token.kind == "number":
            number = float(token.text) if "." in token.text else int(token.text)
            return _Literal(number), rest
        if token.kind == "field":
            text = token.text
            root = "$" if text.startswith("$") else "."
            if text.startswith("$") and text not in ("$",) and not text.startswith("$."):
                raise TemplateError(f"template: :{line}: variables are not supported")
            names = tuple(n for n in text.lstrip("$").split(".") if n)
            return _Field(root, names, text), rest
        if token.kind == "word":
            if token.text in ("true", "false"):
                return _Literal(token.text == "true"), rest
            if token.text == "nil":
                return _Literal(None), rest
            if token.text not in _FUNCTIONS:
                raise TemplateError(f'template: :{line}: function "{token.text}" not defined')
            return _Call(token.text, ()), rest
        if token.text == "(":
            commands, rest = self._commands(rest, line)
            if not rest or rest[0].text != ")":
                raise TemplateError(f"template: :{line}: unclosed left paren")
            return _Pipeline(tuple(commands), "(...)"), rest[1:]
        raise TemplateError(f"template: :{line}: unexpected {token.text!r} in operand")


# -- values ---------------------------------------------------------------------


def format_value(value: Any) -> str:
    """Print ``value`` as Go's ``%v`` prints the matching Go value."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e21 else repr(value)
    if isinstance(value, Mapping):
        return "{" + " ".join(format_value(value[k]) for k in sorted(value)) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(format_value(v) for v in value) + "]"
    return str(value)


def _truth(value: Any) -> bool:
    if value is None or value is False:
        return False
    if isinstance(value, (int, float, str, list, tuple, Mapping)) and not isinstance(value, bool):
        return bool(value)
    return True


def _json(value: Any) -> str:
    # Docker's template "json": compact, no HTML escaping; keys sorted as Go
    # sorts map keys (and as Docker's API structs order their fields).
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def _index(value: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(value, Mapping):
            value = value.get(key)
        elif isinstance(value, (list, tuple, str)) and isinstance(key, int):
            if not 0 <= key < len(value):
                raise TemplateError(f"error calling index: index out of range: {key}")
            value = value[key]
        else:
            raise TemplateError(f"error calling index: can't index item of type {_kind(value)}")
    return value


def _len(value: Any) -> int:
    if isinstance(value, (str, list, tuple, Mapping)):
        return len(value)
    raise TemplateError(f"error calling len: len of type {_kind(value)}")


def _kind(value: Any) -> str:
    return {bool: "bool", int: "int", float: "float64", str: "string", type(None): "nil"}.get(
        type(value), "map" if isinstance(value, Mapping) else "slice"
    )


_VERB = re.compile(r"%([-+# 0]*\d*(?:\.\d+)?)([vsdqtfx%])")


def _printf(fmt: str, *args: Any) -> str:
    values = list(args)

    def one(match: re.Match[str]) -> str:
        flags, verb = match.groups()
        if verb == "%":
            return "%"
        if not values:
            return f"%!{verb}(MISSING)"
        value = values.pop(0)
        if verb == "q":
            return json.dumps(value if isinstance(value, str) else format_value(value))
        if verb == "d" and isinstance(value, int):
            return f"%{flags}d" % value
        if verb == "f" and isinstance(value, (int, float)):
            return f"%{flags}f" % value
        if verb == "x" and isinstance(value, int):
            return f"%{flags}x" % value
        return f"%{flags}s" % format_value(value)

    return _VERB.sub(one, fmt)


def _compare(name: str, op: Callable[[Any, Any], bool]) -> Callable[..., bool]:
    def compare(a: Any, b: Any) -> bool:
        if isinstance(a, bool) != isinstance(b, bool) or (isinstance(a, str) != isinstance(b, str)):
            raise TemplateError(f"error calling {name}: incompatible types for comparison")
        return op(a, b)

    return compare


def _eq(a: Any, *others: Any) -> bool:
    if not others:
        raise TemplateError("error calling eq: missing argument for comparison")
    return any(a == b and isinstance(a, bool) == isinstance(b, bool) for b in others)


def _pad(value: Any, before: int, after: int) -> str:
    return " " * before + format_value(value) + " " * after


def _truncate(value: Any, length: int) -> str:
    text = format_value(value)
    return text[:length]


def _and(first: Any, *rest: Any) -> Any:
    for value in (first, *rest):
        if not _truth(value):
            return value
    return value


def _or(first: Any, *rest: Any) -> Any:
    for value in (first, *rest):
        if _truth(value):
            return value
    return value


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "and": _and,
    "or": _or,
    "json": _json,
    "join": lambda items, sep: sep.join(format_value(i) for i in items),
    "split": lambda text, sep: text.split(sep),
    "lower": lambda text: format_value(text).lower(),
    "upper": lambda text: format_value(text).upper(),
    "title": lambda text: format_value(text).title(),
    "pad": _pad,
    "truncate": _truncate,
    "len": _len,
    "index": _index,
    "print": lambda *a: " ".join(format_value(v) for v in a),
    "println": lambda *a: " ".join(format_value(v) for v in a) + "\n",
    "printf": _printf,
    "not": lambda a: not _truth(a),
    "eq": _eq,
    "ne": lambda a, b: not _eq(a, b),
    "lt": _compare("lt", lambda a, b: a < b),
    "le": _compare("le", lambda a, b: a <= b),
    "gt": _compare("gt", lambda a, b: a > b),
    "ge": _compare("ge", lambda a, b: a >= b),
}


# -- evaluation -----------------------------------------------------------------


class Template:
    """A parsed template; :meth:`render` applies it to data.

    Raises:
        TemplateError: the text does not parse (``template: :LINE: ...``).
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self._nodes = _Parser(text).parse()

    def render(self, data: Any) -> str:
        """Render the template with ``data`` as ``.`` and ``$``.

        Raises:
            TemplateError: a field is missing or a function fails
                (``template: :LINE:COL: executing "" at <.Foo>: ...``).
        """
        out: list[str] = []
        self._run(self._nodes, data, data, out)
        return "".join(out)

    def _run(self, nodes: Sequence[Any], dot: Any, root: Any, out: list[str]) -> None:
        for node in nodes:
            if isinstance(node, str):
                out.append(node)
            elif isinstance(node, _Action):
                value = self._pipe(node.pipeline, dot, root, node.position)
                out.append(format_value(value) if not isinstance(value, str) else value)
            else:
                self._branch(node, dot, root, out)

    def _branch(self, node: _Branch, dot: Any, root: Any, out: list[str]) -> None:
        value = self._pipe(node.pipeline, dot, root, node.position)
        if node.kind == "range":
            items: list[Any]
            if value is None:
                items = []
            elif isinstance(value, Mapping):
                items = [value[k] for k in sorted(value)]
            elif isinstance(value, (list, tuple)):
                items = list(value)
            else:
                raise self._error(
                    node.position,
                    node.pipeline.text,
                    f"range can't iterate over {format_value(value)}",
                )
            for item in items:
                self._run(node.body, item, root, out)
            if not items:
                self._run(node.otherwise, dot, root, out)
            return
        if _truth(value):
            self._run(node.body, value if node.kind == "with" else dot, root, out)
        else:
            self._run(node.otherwise, dot, root, out)

    def _error(self, position: str, at: str, why: str) -> TemplateError:
        return TemplateError(f'template: :{position}: executing "" at <{at}>: {why}')

    def _pipe(self, pipeline: _Pipeline, dot: Any, root: Any, position: str) -> Any:
        value: Any = _NOTHING
        for command in pipeline.commands:
            if isinstance(command, _Call):
                args = [self._operand(a, dot, root, position) for a in command.args]
                if value is not _NOTHING:
                    args.append(value)
                try:
                    value = _FUNCTIONS[command.name](*args)
                except TemplateError as exc:
                    raise self._error(position, command.name, str(exc)) from None
                except (TypeError, AttributeError, ValueError):
                    raise self._error(
                        position,
                        command.name,
                        f"error calling {command.name}: wrong number or type of arguments",
                    ) from None
            else:
                if value is not _NOTHING:
                    raise self._error(
                        position, pipeline.text, "can't give argument to non-function"
                    )
                value = self._operand(command, dot, root, position)
        return value

    def _operand(self, operand: Any, dot: Any, root: Any, position: str) -> Any:
        if isinstance(operand, _Literal):
            return operand.value
        if isinstance(operand, _Pipeline):
            return self._pipe(operand, dot, root, position)
        if isinstance(operand, _Call):  # a function used as an argument: call it bare
            return self._pipe(_Pipeline((operand,), operand.name), dot, root, position)
        value = root if operand.root == "$" else dot
        for name in operand.names:
            value = self._field(value, name, operand.text, position)
        return value

    def _field(self, value: Any, name: str, text: str, position: str) -> Any:
        if isinstance(value, Mapping):
            if name in value:
                return value[name]
            lower = name.lower()
            for key in value:
                if isinstance(key, str) and key.lower() == lower:
                    return value[key]
            raise self._error(position, text, f'map has no entry for key "{name}"')
        if value is None:
            raise self._error(position, text, f"nil pointer evaluating {text}")
        raise self._error(position, text, f"can't evaluate field {name} in type {_kind(value)}")


_NOTHING = object()
