"""Label and field selectors, parsed and matched exactly as the real API server does.

``kubectl get -l``, ``--field-selector``, watch filters, Service and Deployment selectors all
go through these.  The label selector grammar and its error messages are a port of
``k8s.io/apimachinery/pkg/labels`` (lexer, recursive-descent parser, requirement validation);
field selectors follow ``k8s.io/apimachinery/pkg/fields`` plus the per-kind field labels the
server supports.  The selectors expose the equality requirements they contain so the object
store can answer ``app=web`` or ``metadata.name=x`` from an index instead of a scan.

The label-syntax validators (qualified names, label values, DNS-1123 subdomains) live here
because the selector parser needs them; :mod:`kubesim.validation` re-exports them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any

__all__ = [
    "FieldRequirement",
    "FieldSelector",
    "LabelSelector",
    "Operator",
    "Requirement",
    "SelectorError",
    "go_quote",
    "go_repr",
    "is_dns1123_subdomain",
    "is_qualified_name",
    "is_valid_label_value",
    "parse_field_selector",
    "parse_label_selector",
    "selector_from_label_selector_object",
    "selector_from_set",
    "supported_field_labels",
]


class SelectorError(ValueError):
    """A selector that the real server would refuse with 400 BadRequest; str() is its message."""


# --------------------------------------------------------------------------- Go formatting


_GO_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def go_quote(value: str) -> str:
    """Go's ``strconv.Quote`` / ``%q`` for a string."""
    out = ['"']
    for ch in value:
        esc = _GO_ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        elif not ch.isprintable() and ch != " ":
            out.append(f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def go_repr(value: Any) -> str:
    """Approximate how a Go field error prints a bad value (``%q``, ``%v`` or ``%#v``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return go_quote(str(value.value))
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        if all(isinstance(v, str) for v in value):
            return "[]string{" + ", ".join(go_quote(v) for v in value) + "}"
        return "[]interface {}{" + ", ".join(go_repr(v) for v in value) + "}"
    if isinstance(value, Mapping):
        if all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            items = ", ".join(f"{go_quote(k)}:{go_quote(value[k])}" for k in sorted(value))
            return "map[string]string{" + items + "}"
        items = ", ".join(f"{go_quote(str(k))}:{go_repr(value[k])}" for k in sorted(value))
        return "map[string]interface {}{" + items + "}"
    return go_quote(str(value))


# --------------------------------------------------------------------------- name grammar

_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
    "'-' or '.', and must start and end with an alphanumeric character"
)
_DNS1123_SUBDOMAIN_RE = re.compile(f"^{_DNS1123_SUBDOMAIN_FMT}$")
DNS1123_SUBDOMAIN_MAX_LENGTH = 253

_QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QUALIFIED_NAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with "
    "an alphanumeric character"
)
_QUALIFIED_NAME_RE = re.compile(f"^{_QUALIFIED_NAME_FMT}$")
QUALIFIED_NAME_MAX_LENGTH = 63

_LABEL_VALUE_FMT = f"({_QUALIFIED_NAME_FMT})?"
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
    "or '.', and must start and end with an alphanumeric character"
)
_LABEL_VALUE_RE = re.compile(f"^{_LABEL_VALUE_FMT}$")
LABEL_VALUE_MAX_LENGTH = 63


def empty_error() -> str:
    return "must be non-empty"


def max_len_error(length: int) -> str:
    return f"must be no more than {length} characters"


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    """apimachinery's ``RegexError``, double spaces included."""
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    msg += " (e.g. "
    for i, example in enumerate(examples):
        if i > 0:
            msg += " or "
        msg += f"'{example}', "
    return msg + f"regex used for validation is '{fmt}')"


def _full(regex: re.Pattern[str], value: str) -> bool:
    # Go's regexp anchored with ^...$ does not accept a trailing newline; fullmatch agrees.
    return regex.fullmatch(value) is not None


def is_dns1123_subdomain(value: str) -> list[str]:
    """Error messages for a value that is not a DNS-1123 subdomain; [] when valid."""
    errs: list[str] = []
    if len(value) > DNS1123_SUBDOMAIN_MAX_LENGTH:
        errs.append(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH))
    if not _full(_DNS1123_SUBDOMAIN_RE, value):
        errs.append(regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_qualified_name(value: str) -> list[str]:
    """Error messages for a value that is not a qualified name (label/annotation key)."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part " + empty_error())
        else:
            errs.extend("prefix part " + m for m in is_dns1123_subdomain(prefix))
    else:
        return [
            "a qualified name "
            + regex_error(_QUALIFIED_NAME_MSG, _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part " + empty_error())
    elif len(name) > QUALIFIED_NAME_MAX_LENGTH:
        errs.append("name part " + max_len_error(QUALIFIED_NAME_MAX_LENGTH))
    if not _full(_QUALIFIED_NAME_RE, name):
        errs.append(
            "name part "
            + regex_error(_QUALIFIED_NAME_MSG, _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
        )
    return errs


def is_valid_label_value(value: str) -> list[str]:
    """Error messages for an invalid label value; [] when valid (the empty string is valid)."""
    errs: list[str] = []
    if len(value) > LABEL_VALUE_MAX_LENGTH:
        errs.append(max_len_error(LABEL_VALUE_MAX_LENGTH))
    if not _full(_LABEL_VALUE_RE, value):
        errs.append(regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def _invalid(path: str, value: Any, detail: str) -> str:
    return f"{path}: Invalid value: {go_repr(value)}: {detail}"


def _aggregate(errors: list[str]) -> str:
    unique: list[str] = []
    for err in errors:
        if err not in unique:
            unique.append(err)
    if len(unique) == 1:
        return unique[0]
    return "[" + ", ".join(unique) + "]"


# --------------------------------------------------------------------------- label selectors


class Operator(StrEnum):
    """Selector operators, valued as in ``k8s.io/apimachinery/pkg/selection``."""

    DOES_NOT_EXIST = "!"
    EQUALS = "="
    DOUBLE_EQUALS = "=="
    IN = "in"
    NOT_EQUALS = "!="
    NOT_IN = "notin"
    EXISTS = "exists"
    GREATER_THAN = "gt"
    LESS_THAN = "lt"


_BINARY_OPERATORS = (
    Operator.IN,
    Operator.NOT_IN,
    Operator.EQUALS,
    Operator.DOUBLE_EQUALS,
    Operator.NOT_EQUALS,
    Operator.GREATER_THAN,
    Operator.LESS_THAN,
)
_EQUALITY = (Operator.EQUALS, Operator.DOUBLE_EQUALS)


def _parse_int64(text: str) -> int | None:
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        return None
    number = int(text)
    if not -(2**63) <= number < 2**63:
        return None
    return number


@dataclass(frozen=True)
class Requirement:
    """One ANDed term of a label selector: key, operator and (sorted, unique) values."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    @classmethod
    def new(cls, key: str, operator: Operator, values: list[str] | tuple[str, ...]) -> Requirement:
        """Validate like ``labels.NewRequirement``; raise SelectorError on failure."""
        errs: list[str] = []
        for msg in is_qualified_name(key):
            errs.append(_invalid("key", key, msg))
        vals = list(values)
        if operator in (Operator.IN, Operator.NOT_IN):
            if not vals:
                detail = "for 'in', 'notin' operators, values set can't be empty"
                errs.append(_invalid("values", vals, detail))
        elif operator in (Operator.EQUALS, Operator.DOUBLE_EQUALS, Operator.NOT_EQUALS):
            if len(vals) != 1:
                errs.append(
                    _invalid("values", vals, "exact-match compatibility requires one single value")
                )
        elif operator in (Operator.EXISTS, Operator.DOES_NOT_EXIST):
            if vals:
                errs.append(
                    _invalid(
                        "values", vals, "values set must be empty for exists and does not exist"
                    )
                )
        else:  # GREATER_THAN, LESS_THAN
            if len(vals) != 1:
                errs.append(
                    _invalid(
                        "values", vals, "for 'Gt', 'Lt' operators, exactly one value is required"
                    )
                )
            for i, v in enumerate(vals):
                if _parse_int64(v) is None:
                    detail = "for 'Gt', 'Lt' operators, the value must be an integer"
                    errs.append(_invalid(f"values[{i}]", v, detail))
        for i, v in enumerate(vals):
            for msg in is_valid_label_value(v):
                errs.append(_invalid(f"values[{i}][{key}]", v, msg))
        if errs:
            raise SelectorError(_aggregate(errs))
        if operator in (Operator.IN, Operator.NOT_IN):
            vals = sorted(set(vals))
        return cls(key, operator, tuple(vals))

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        if op in (Operator.IN, Operator.EQUALS, Operator.DOUBLE_EQUALS):
            value = labels.get(self.key)
            return value is not None and value in self.values
        if op in (Operator.NOT_IN, Operator.NOT_EQUALS):
            value = labels.get(self.key)
            return value is None or value not in self.values
        if op is Operator.EXISTS:
            return self.key in labels
        if op is Operator.DOES_NOT_EXIST:
            return self.key not in labels
        value = labels.get(self.key)
        if value is None or len(self.values) != 1:
            return False
        have = _parse_int64(value)
        want = _parse_int64(self.values[0])
        if have is None or want is None:
            return False
        return have > want if op is Operator.GREATER_THAN else have < want

    def __str__(self) -> str:
        op = self.operator
        if op is Operator.DOES_NOT_EXIST:
            return f"!{self.key}"
        if op is Operator.EXISTS:
            return self.key
        symbol = {
            Operator.EQUALS: "=",
            Operator.DOUBLE_EQUALS: "==",
            Operator.NOT_EQUALS: "!=",
            Operator.IN: " in ",
            Operator.NOT_IN: " notin ",
            Operator.GREATER_THAN: ">",
            Operator.LESS_THAN: "<",
        }[op]
        values = ",".join(sorted(self.values))
        if op in (Operator.IN, Operator.NOT_IN):
            values = f"({values})"
        return f"{self.key}{symbol}{values}"


@dataclass(frozen=True)
class LabelSelector:
    """ANDed requirements, sorted by key.  ``nothing`` marks the match-nothing selector."""

    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False

    @classmethod
    def everything(cls) -> LabelSelector:
        return cls()

    @classmethod
    def match_nothing(cls) -> LabelSelector:
        return cls(nothing=True)

    @property
    def empty(self) -> bool:
        """True when the selector does not restrict anything (matches every object)."""
        return not self.nothing and not self.requirements

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def requires_exact_match(self, key: str) -> str | None:
        """The single value ``key`` must have (``k=v``, ``k==v``, ``k in (v)``), else None."""
        for r in self.requirements:
            if r.key == key:
                if r.operator in (*_EQUALITY, Operator.IN) and len(r.values) == 1:
                    return r.values[0]
                return None
        return None

    def equality_requirements(self) -> dict[str, str]:
        """Every key the selector pins to one value; a label index can serve these."""
        out: dict[str, str] = {}
        for r in self.requirements:
            if r.operator in (*_EQUALITY, Operator.IN) and len(r.values) == 1:
                out.setdefault(r.key, r.values[0])
        return out

    def equalities(self) -> dict[str, str]:
        """Alias of :meth:`equality_requirements`."""
        return self.equality_requirements()

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


class _Tok(Enum):
    ERROR = 0
    END = 1
    CLOSED_PAR = 2
    COMMA = 3
    DOES_NOT_EXIST = 4
    DOUBLE_EQUALS = 5
    EQUALS = 6
    GREATER_THAN = 7
    IDENTIFIER = 8
    IN = 9
    LESS_THAN = 10
    NOT_EQUALS = 11
    NOT_IN = 12
    OPEN_PAR = 13


_STRING_TO_TOKEN: dict[str, _Tok] = {
    ")": _Tok.CLOSED_PAR,
    ",": _Tok.COMMA,
    "!": _Tok.DOES_NOT_EXIST,
    "==": _Tok.DOUBLE_EQUALS,
    "=": _Tok.EQUALS,
    ">": _Tok.GREATER_THAN,
    "in": _Tok.IN,
    "<": _Tok.LESS_THAN,
    "!=": _Tok.NOT_EQUALS,
    "notin": _Tok.NOT_IN,
    "(": _Tok.OPEN_PAR,
}
_SPECIAL = frozenset("=!(),><")
_WHITESPACE = frozenset(" \t\r\n")


def _lex(text: str) -> list[tuple[_Tok, str]]:
    """The apimachinery lexer: identifiers, keywords and operator symbols."""
    items: list[tuple[_Tok, str]] = []
    pos = 0
    n = len(text)
    while True:
        while pos < n and text[pos] in _WHITESPACE:
            pos += 1
        if pos >= n:
            items.append((_Tok.END, ""))
            return items
        ch = text[pos]
        if ch in _SPECIAL:
            buffer = ""
            last: tuple[_Tok, str] | None = None
            while pos < n and text[pos] in _SPECIAL:
                buffer += text[pos]
                pos += 1
                tok = _STRING_TO_TOKEN.get(buffer)
                if tok is not None:
                    last = (tok, buffer)
                elif last is not None:
                    pos -= 1
                    break
            if last is None:
                items.append((_Tok.ERROR, f"error expected: keyword found '{buffer}'"))
            else:
                items.append(last)
        else:
            start = pos
            while pos < n and text[pos] not in _SPECIAL and text[pos] not in _WHITESPACE:
                pos += 1
            word = text[start:pos]
            items.append((_STRING_TO_TOKEN.get(word, _Tok.IDENTIFIER), word))


class _Parser:
    def __init__(self, text: str) -> None:
        self.items = _lex(text)
        self.pos = 0

    def _adjust(self, tok: _Tok, values: bool) -> _Tok:
        if values and tok in (_Tok.IN, _Tok.NOT_IN):
            return _Tok.IDENTIFIER
        return tok

    def lookahead(self, values: bool = True) -> tuple[_Tok, str]:
        tok, lit = self.items[self.pos]
        return self._adjust(tok, values), lit

    def consume(self, values: bool = True) -> tuple[_Tok, str]:
        tok, lit = self.items[self.pos]
        self.pos += 1
        return self._adjust(tok, values), lit

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            tok, lit = self.lookahead()
            if tok in (_Tok.IDENTIFIER, _Tok.DOES_NOT_EXIST):
                try:
                    requirements.append(self.parse_requirement())
                except SelectorError as exc:
                    raise SelectorError(f"unable to parse requirement: {exc}") from None
                t, lit2 = self.consume()
                if t is _Tok.END:
                    return requirements
                if t is _Tok.COMMA:
                    t2, l2 = self.lookahead()
                    if t2 not in (_Tok.IDENTIFIER, _Tok.DOES_NOT_EXIST):
                        raise SelectorError(f"found '{l2}', expected: identifier after ','")
                else:
                    raise SelectorError(f"found '{lit2}', expected: ',' or 'end of string'")
            elif tok is _Tok.END:
                return requirements
            else:
                raise SelectorError(f"found '{lit}', expected: !, identifier, or 'end of string'")

    def parse_requirement(self) -> Requirement:
        key, operator = self.parse_key_and_infer_operator()
        if operator in (Operator.EXISTS, Operator.DOES_NOT_EXIST):
            return Requirement.new(key, operator, [])
        operator = self.parse_operator()
        if operator in (Operator.IN, Operator.NOT_IN):
            values = self.parse_values()
        else:
            values = self.parse_exact_value()
        return Requirement.new(key, operator, sorted(values))

    def parse_key_and_infer_operator(self) -> tuple[str, Operator | None]:
        operator: Operator | None = None
        tok, literal = self.consume()
        if tok is _Tok.DOES_NOT_EXIST:
            operator = Operator.DOES_NOT_EXIST
            tok, literal = self.consume()
        if tok is not _Tok.IDENTIFIER:
            raise SelectorError(f"found '{literal}', expected: identifier")
        errs = is_qualified_name(literal)
        if errs:
            raise SelectorError(_invalid("<nil>", literal, "; ".join(errs)))
        t, _ = self.lookahead()
        if t in (_Tok.END, _Tok.COMMA) and operator is not Operator.DOES_NOT_EXIST:
            operator = Operator.EXISTS
        return literal, operator

    def parse_operator(self) -> Operator:
        tok, lit = self.consume(values=False)
        mapping = {
            _Tok.IN: Operator.IN,
            _Tok.EQUALS: Operator.EQUALS,
            _Tok.DOUBLE_EQUALS: Operator.DOUBLE_EQUALS,
            _Tok.GREATER_THAN: Operator.GREATER_THAN,
            _Tok.LESS_THAN: Operator.LESS_THAN,
            _Tok.NOT_IN: Operator.NOT_IN,
            _Tok.NOT_EQUALS: Operator.NOT_EQUALS,
        }
        op = mapping.get(tok)
        if op is None:
            expected = ", ".join(o.value for o in _BINARY_OPERATORS)
            raise SelectorError(f"found '{lit}', expected: {expected}")
        return op

    def parse_values(self) -> set[str]:
        tok, lit = self.consume()
        if tok is not _Tok.OPEN_PAR:
            raise SelectorError(f"found '{lit}' expected: '('")
        tok, lit = self.lookahead()
        if tok in (_Tok.IDENTIFIER, _Tok.COMMA):
            values = self.parse_identifiers_list()
            tok2, _ = self.consume()
            if tok2 is not _Tok.CLOSED_PAR:
                raise SelectorError(f"found '{lit}', expected: ')'")
            return values
        if tok is _Tok.CLOSED_PAR:
            self.consume()
            return {""}
        raise SelectorError(f"found '{lit}', expected: ',', ')' or identifier")

    def parse_identifiers_list(self) -> set[str]:
        values: set[str] = set()
        while True:
            tok, lit = self.consume()
            if tok is _Tok.IDENTIFIER:
                values.add(lit)
                tok2, lit2 = self.lookahead()
                if tok2 is _Tok.COMMA:
                    continue
                if tok2 is _Tok.CLOSED_PAR:
                    return values
                raise SelectorError(f"found '{lit2}', expected: ',' or ')'")
            if tok is _Tok.COMMA:
                if not values:
                    values.add("")
                tok2, _ = self.lookahead()
                if tok2 is _Tok.CLOSED_PAR:
                    values.add("")
                    return values
                if tok2 is _Tok.COMMA:
                    values.add("")
            else:
                raise SelectorError(f"found '{lit}', expected: ',', or identifier")

    def parse_exact_value(self) -> set[str]:
        tok, _ = self.lookahead()
        if tok in (_Tok.END, _Tok.COMMA):
            return {""}
        tok, lit = self.consume()
        if tok is _Tok.IDENTIFIER:
            return {lit}
        raise SelectorError(f"found '{lit}', expected: identifier")


def parse_label_selector(text: str) -> LabelSelector:
    """Parse the ``labelSelector`` query parameter; raise SelectorError like the server.

    The empty string selects everything.
    """
    requirements = _Parser(text).parse()
    requirements.sort(key=lambda r: r.key)
    return LabelSelector(tuple(requirements))


def selector_from_set(labels: Mapping[str, str]) -> LabelSelector:
    """A selector matching exactly the given labels (``matchLabels`` alone), unvalidated."""
    return LabelSelector(
        tuple(Requirement(k, Operator.EQUALS, (labels[k],)) for k in sorted(labels))
    )


_EXPRESSION_OPERATORS = {
    "In": Operator.IN,
    "NotIn": Operator.NOT_IN,
    "Exists": Operator.EXISTS,
    "DoesNotExist": Operator.DOES_NOT_EXIST,
}


def selector_from_label_selector_object(obj: Mapping[str, Any] | None) -> LabelSelector:
    """``metav1.LabelSelectorAsSelector``: None matches nothing, ``{}`` matches everything."""
    if obj is None:
        return LabelSelector.match_nothing()
    match_labels = obj.get("matchLabels") or {}
    expressions = obj.get("matchExpressions") or []
    if not isinstance(match_labels, Mapping) or not isinstance(expressions, list):
        raise SelectorError("invalid label selector")
    if not match_labels and not expressions:
        return LabelSelector.everything()
    requirements: list[Requirement] = []
    for key, value in match_labels.items():
        requirements.append(Requirement.new(str(key), Operator.EQUALS, [str(value)]))
    for expr in expressions:
        if not isinstance(expr, Mapping):
            raise SelectorError("invalid label selector")
        raw_op = expr.get("operator")
        op = _EXPRESSION_OPERATORS.get(str(raw_op))
        if op is None:
            quoted = go_quote(str(raw_op or ""))
            raise SelectorError(f"{quoted} is not a valid label selector operator")
        values = [str(v) for v in (expr.get("values") or [])]
        requirements.append(Requirement.new(str(expr.get("key", "")), op, values))
    requirements.sort(key=lambda r: r.key)
    return LabelSelector(tuple(requirements))


# --------------------------------------------------------------------------- field selectors


def _path_getter(*path: str) -> Callable[[Mapping[str, Any]], str]:
    def get(obj: Mapping[str, Any]) -> str:
        cur: Any = obj
        for key in path:
            if not isinstance(cur, Mapping):
                return ""
            cur = cur.get(key)
        if cur is None:
            return ""
        if isinstance(cur, bool):
            return "true" if cur else "false"
        return str(cur)

    return get


def _bool_getter(*path: str) -> Callable[[Mapping[str, Any]], str]:
    inner = _path_getter(*path)

    def get(obj: Mapping[str, Any]) -> str:
        return inner(obj) or "false"

    return get


def _int_getter(*path: str) -> Callable[[Mapping[str, Any]], str]:
    inner = _path_getter(*path)

    def get(obj: Mapping[str, Any]) -> str:
        return inner(obj) or "0"

    return get


def _pod_ip(obj: Mapping[str, Any]) -> str:
    status = obj.get("status")
    ips = status.get("podIPs") if isinstance(status, Mapping) else None
    if isinstance(ips, list) and ips and isinstance(ips[0], Mapping):
        return str(ips[0].get("ip", ""))
    return _path_getter("status", "podIP")(obj)


_META_FIELDS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "metadata.name": _path_getter("metadata", "name"),
    "metadata.namespace": _path_getter("metadata", "namespace"),
}

_KIND_FIELDS: dict[tuple[str, str], dict[str, Callable[[Mapping[str, Any]], str]]] = {
    ("", "Pod"): {
        "spec.nodeName": _path_getter("spec", "nodeName"),
        "spec.restartPolicy": _path_getter("spec", "restartPolicy"),
        "spec.schedulerName": _path_getter("spec", "schedulerName"),
        "spec.serviceAccountName": _path_getter("spec", "serviceAccountName"),
        "spec.hostNetwork": _bool_getter("spec", "hostNetwork"),
        "status.phase": _path_getter("status", "phase"),
        "status.podIP": _pod_ip,
        "status.nominatedNodeName": _path_getter("status", "nominatedNodeName"),
    },
    ("", "Event"): {
        "involvedObject.kind": _path_getter("involvedObject", "kind"),
        "involvedObject.namespace": _path_getter("involvedObject", "namespace"),
        "involvedObject.name": _path_getter("involvedObject", "name"),
        "involvedObject.uid": _path_getter("involvedObject", "uid"),
        "involvedObject.apiVersion": _path_getter("involvedObject", "apiVersion"),
        "involvedObject.resourceVersion": _path_getter("involvedObject", "resourceVersion"),
        "involvedObject.fieldPath": _path_getter("involvedObject", "fieldPath"),
        "reason": _path_getter("reason"),
        "reportingComponent": _path_getter("reportingComponent"),
        "source": _path_getter("source", "component"),
        "type": _path_getter("type"),
    },
    ("", "Secret"): {"type": _path_getter("type")},
    ("", "Namespace"): {"status.phase": _path_getter("status", "phase")},
    ("", "Node"): {"spec.unschedulable": _bool_getter("spec", "unschedulable")},
    ("batch", "Job"): {"status.successful": _int_getter("status", "succeeded")},
    ("apps", "ReplicaSet"): {"status.replicas": _int_getter("status", "replicas")},
}


_ANY_KIND_FIELDS: dict[str, Callable[[Mapping[str, Any]], str]] = {}
for _fields in _KIND_FIELDS.values():
    for _name, _getter in _fields.items():
        _ANY_KIND_FIELDS.setdefault(_name, _getter)


def _kind_fields(group: str, kind: str) -> dict[str, Callable[[Mapping[str, Any]], str]]:
    if not kind:
        return _ANY_KIND_FIELDS
    return _KIND_FIELDS.get((group, kind), {})


def supported_field_labels(group: str = "", kind: str = "") -> list[str]:
    """Field labels the server accepts in ``fieldSelector`` for a kind.

    Without a kind, the union over every kind (the lenient answer for callers that do not
    know what they are selecting).
    """
    return sorted({*_META_FIELDS, *_kind_fields(group, kind)})


@dataclass(frozen=True)
class FieldRequirement:
    """``field=value``, ``field==value`` or ``field!=value``."""

    field: str
    operator: Operator
    value: str

    def __str__(self) -> str:
        return f"{self.field}{self.operator.value}{_escape_field_value(self.value)}"


@dataclass(frozen=True)
class FieldSelector:
    """ANDed field requirements, sorted; matches plain JSON objects."""

    requirements: tuple[FieldRequirement, ...] = ()
    group: str = ""
    kind: str = ""

    @property
    def empty(self) -> bool:
        return not self.requirements

    def _getter(self, name: str) -> Callable[[Mapping[str, Any]], str]:
        getter = _META_FIELDS.get(name) or _kind_fields(self.group, self.kind).get(name)
        return getter or _path_getter(*name.split("."))

    def matches(self, obj: Mapping[str, Any]) -> bool:
        for r in self.requirements:
            value = self._getter(r.field)(obj)
            if (value == r.value) != (r.operator is not Operator.NOT_EQUALS):
                return False
        return True

    def requires_exact_match(self, name: str) -> str | None:
        """The value ``name`` must equal (``=`` or ``==``), else None."""
        for r in self.requirements:
            if r.field == name and r.operator is not Operator.NOT_EQUALS:
                return r.value
        return None

    @property
    def name(self) -> str | None:
        """The ``metadata.name`` the selector pins, for a direct store lookup."""
        return self.requires_exact_match("metadata.name")

    @property
    def namespace(self) -> str | None:
        """The ``metadata.namespace`` the selector pins."""
        return self.requires_exact_match("metadata.namespace")

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def _escape_field_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _split_terms(text: str) -> list[str]:
    terms: list[str] = []
    current: list[str] = []
    escaped = False
    for ch in text:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            current.append(ch)
            escaped = True
        elif ch == ",":
            terms.append("".join(current))
            current = []
        else:
            current.append(ch)
    terms.append("".join(current))
    return terms


_TERM_OPERATORS = (
    ("!=", Operator.NOT_EQUALS),
    ("==", Operator.DOUBLE_EQUALS),
    ("=", Operator.EQUALS),
)


def _split_term(term: str) -> tuple[str, Operator, str] | None:
    for i in range(len(term)):
        for symbol, op in _TERM_OPERATORS:
            if term.startswith(symbol, i):
                return term[:i], op, term[i + len(symbol) :]
    return None


def _unescape_value(value: str) -> str:
    if "\\" not in value and "=" not in value and "," not in value:
        return value
    out: list[str] = []
    escaped = False
    for ch in value:
        if escaped:
            if ch not in "\\,=":
                raise SelectorError(f"invalid field selector: invalid escape sequence: \\{ch}")
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in ",=":
            raise SelectorError(f"invalid field selector: unescaped character in value: {ch}")
        else:
            out.append(ch)
    if escaped:
        raise SelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def parse_field_selector(text: str, *, group: str = "", kind: str = "") -> FieldSelector:
    """Parse the ``fieldSelector`` query parameter for objects of ``group``/``kind``.

    ``metadata.name`` and ``metadata.namespace`` are accepted for every kind; Pods, Events,
    Secrets, Namespaces, Nodes, Jobs and ReplicaSets accept their extra field labels.  An
    unknown field raises ``SelectorError("field label not supported: FIELD")``.  Pass the
    kind: without it every kind's field labels are accepted.
    """
    terms = sorted(_split_terms(text))
    supported = _kind_fields(group, kind)
    requirements: list[FieldRequirement] = []
    for term in terms:
        if term == "":
            continue
        split = _split_term(term)
        if split is None:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{term}'")
        lhs, op, rhs = split
        value = _unescape_value(rhs)
        if lhs not in _META_FIELDS and lhs not in supported:
            raise SelectorError(f"field label not supported: {lhs}")
        requirements.append(FieldRequirement(lhs, op, value))
    return FieldSelector(tuple(requirements), group=group, kind=kind)
