"""Handler ``filter=``: EventBridge-style event patterns, matched against change records.

A pattern is a dict that mirrors the record's structure, with lists of matchers at
the leaves. A record matches when every field of the pattern matches (and, with
``"$or": [...]``, at least one alternative does); a list of patterns matches when any
one does. Leaf matchers (EventBridge content filtering):

- exact values: ``["INSERT", "MODIFY"]``, ``[10]``, ``[True]``, ``[None]``
- ``{"prefix": "ab"}``, ``{"suffix": ".com"}``, ``{"equals-ignore-case": "x"}``,
  ``{"wildcard": "a*b"}``
- ``{"anything-but": value | [values] | {"prefix": ...} | {"suffix": ...}
  | {"equals-ignore-case": ...}}``
- ``{"numeric": [">", 0, "<=", 5]}`` (one or two comparisons)
- ``{"exists": True | False}``

When the record holds a list or set at a leaf, the leaf matches if any element does
(EventBridge's array rule). A field the record does not have matches only
``{"exists": False}``.

Two shapes are accepted:

- streamkit's, on the record's attribute names: ``{"event_name": ["INSERT"],
  "new_image": {"Quantity": [{"numeric": [">", 10]}]}}``;
- Lambda's DynamoDB shape, so FilterCriteria port unchanged: ``{"eventName":
  ["INSERT"], "dynamodb": {"NewImage": {"Quantity": {"N": [{"numeric": [">", 10]}]}}}}``
  — matched against ``record.to_dynamodb_json()``. Numbers there are strings, as in
  DynamoDB JSON; ``numeric`` parses them (Lambda is stricter) and an exact number
  matches its string form.

Where an object pattern meets a list of maps, one element must match all of it
(EventBridge's array consistency); the field counts as absent only when the list
holds no map at all. Other differences from EventBridge and Lambda, on purpose:
``exists`` also applies to maps and lists (EventBridge: leaves only); numbers compare
as exact decimals with no range limit; ``anything-but`` lists may mix types; Lambda's
own DynamoDB mappings filter only on ``dynamodb``, streamkit also on ``eventName`` and
the other top-level fields; no ``cidr``, no ``$or`` inside a leaf list, no
``anything-but`` with ``wildcard``, no ``prefix`` / ``suffix`` with ``equals-ignore-case``.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any

from streamkit.exceptions import ValidationError
from streamkit.records import ChangeRecord

__all__ = ("FilterError", "RecordFilter", "compile_filter")

_MISSING: Any = object()
_MAPPINGS = frozenset({dict, MappingProxyType})
_MAX_DEPTH = 12
OURS = frozenset(
    {
        "event_id",
        "event_name",
        "table",
        "keys",
        "new_image",
        "old_image",
        "changed",
        "sequence_number",
        "size_bytes",
        "view_type",
        "user_identity",
        "origin",
        "origin_region",
    }
)
LAMBDA = frozenset(
    {
        "eventID",
        "eventName",
        "eventVersion",
        "eventSource",
        "eventSourceARN",
        "awsRegion",
        "dynamodb",
        "userIdentity",
    }
)
_COMPARATORS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    "=": operator.eq,
    ">": operator.gt,
    ">=": operator.ge,
}

Leaf = Callable[[Any], bool]  # one matcher, on one present scalar value
Node = Callable[[Any], bool]  # an object pattern, on a mapping (or _MISSING)


class FilterError(ValidationError):
    """A malformed ``filter=`` pattern; the message says where and what is wrong."""


def _number(value: Any, *, strings: bool) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, (int, float)):
        return Decimal(str(value))
    if strings and isinstance(value, str):
        try:
            d = Decimal(value)
        except InvalidOperation:
            return None
        return d if d.is_finite() else None
    return None


def _literal(pattern: Any, where: str, *, strings: bool) -> Leaf:
    if pattern is None:
        return lambda v: v is None
    if isinstance(pattern, bool):
        return lambda v: isinstance(v, bool) and v is pattern
    if isinstance(pattern, (int, float, Decimal)):
        want = Decimal(str(pattern))
        if not want.is_finite():
            raise FilterError(f"{where}: {pattern!r} is not a finite number")
        return lambda v: _number(v, strings=strings) == want
    if isinstance(pattern, (str, bytes)):
        return lambda v: v == pattern and type(v) is type(pattern)
    raise FilterError(
        f"{where}: {pattern!r} is not a value to match (str, number, bool, None) "
        "or an operator object"
    )


def _text_op(name: str, arg: Any, where: str) -> Callable[[str], bool]:
    if not isinstance(arg, str):
        raise FilterError(f"{where}: {name} takes a string, got {arg!r}")
    if name == "prefix":
        return lambda s: s.startswith(arg)
    if name == "suffix":
        return lambda s: s.endswith(arg)
    if name == "equals-ignore-case":
        folded = arg.casefold()
        return lambda s: s.casefold() == folded
    if name == "wildcard":
        if "**" in arg:
            raise FilterError(f"{where}: wildcard {arg!r} has consecutive '*'")
        rx = re.compile("".join(".*" if c == "*" else re.escape(c) for c in arg), re.DOTALL)
        return lambda s: rx.fullmatch(s) is not None
    raise AssertionError(name)


def _numeric(arg: Any, where: str, *, strings: bool) -> Leaf:
    if not isinstance(arg, list) or len(arg) not in (2, 4):
        raise FilterError(
            f'{where}: numeric takes one or two comparisons, e.g. [">", 0] or [">", 0, "<=", 5]'
        )
    checks: list[tuple[Callable[[Decimal, Decimal], bool], Decimal]] = []
    for i in range(0, len(arg), 2):
        op, bound = arg[i], arg[i + 1]
        if not isinstance(op, str) or op not in _COMPARATORS:
            raise FilterError(
                f"{where}: numeric operator {op!r} is not one of {sorted(_COMPARATORS)}"
            )
        num = _number(bound, strings=False)
        if num is None or not num.is_finite():
            raise FilterError(f"{where}: numeric bound {bound!r} is not a number")
        checks.append((_COMPARATORS[op], num))
    if len(checks) == 2:
        ops = (arg[0], arg[2])
        if "=" in ops or (ops[0][0] == ops[1][0]):
            raise FilterError(
                f"{where}: a numeric range needs one lower and one upper bound, got {arg!r}"
            )

    if len(checks) == 1:
        cmp0, bound0 = checks[0]

        def match_one(v: Any) -> bool:
            n = v if type(v) is Decimal else _number(v, strings=strings)
            return n is not None and cmp0(n, bound0)

        return match_one

    def match(v: Any) -> bool:
        n = v if type(v) is Decimal else _number(v, strings=strings)
        return n is not None and all(cmp(n, bound) for cmp, bound in checks)

    return match


def _anything_but(arg: Any, where: str, *, strings: bool) -> Leaf:
    if isinstance(arg, dict):
        if len(arg) != 1:
            raise FilterError(
                f"{where}: anything-but takes one of prefix, suffix, equals-ignore-case"
            )
        ((name, inner),) = arg.items()
        if name not in ("prefix", "suffix", "equals-ignore-case"):
            raise FilterError(
                f"{where}: anything-but takes a value, a list of values, or prefix / suffix / "
                f"equals-ignore-case, not {name!r}"
            )
        test = _text_op(name, inner, f"{where}.anything-but")
        return lambda v: isinstance(v, str) and not test(v)
    values = arg if isinstance(arg, list) else [arg]
    if not values:
        raise FilterError(f"{where}: anything-but needs at least one value")
    literals = []
    for i, value in enumerate(values):
        if isinstance(value, (dict, list)):
            raise FilterError(f"{where}.anything-but[{i}]: {value!r} is not a value")
        literals.append(_literal(value, f"{where}.anything-but[{i}]", strings=strings))
    return lambda v: not any(m(v) for m in literals)


def _matcher(spec: Any, where: str, *, strings: bool) -> tuple[Leaf | None, bool | None]:
    """(a matcher of present values, or None) and the ``exists`` flag if it is one."""
    if not isinstance(spec, dict):
        return _literal(spec, where, strings=strings), None
    if len(spec) != 1:
        raise FilterError(
            f"{where}: an operator object has exactly one key, got {sorted(map(str, spec))}"
        )
    ((name, arg),) = spec.items()
    if name == "exists":
        if not isinstance(arg, bool):
            raise FilterError(f"{where}: exists takes true or false, got {arg!r}")
        return None, arg
    if name in ("prefix", "suffix", "equals-ignore-case", "wildcard"):
        test = _text_op(name, arg, where)
        return (lambda v: isinstance(v, str) and test(v)), None
    if name == "numeric":
        return _numeric(arg, where, strings=strings), None
    if name == "anything-but":
        return _anything_but(arg, where, strings=strings), None
    raise FilterError(
        f"{where}: unknown operator {name!r} (known: prefix, suffix, equals-ignore-case, "
        "wildcard, anything-but, numeric, exists)"
    )


def _leaf(specs: Any, where: str, *, strings: bool) -> Callable[[Any], bool]:
    if not isinstance(specs, list):
        raise FilterError(f"{where}: a leaf must be a list of values or operators, got {specs!r}")
    if not specs:
        raise FilterError(f"{where}: an empty list matches nothing; give at least one value")
    present: list[Leaf] = []
    exists: list[bool] = []
    for i, spec in enumerate(specs):
        m, flag = _matcher(spec, f"{where}[{i}]", strings=strings)
        if m is not None:
            present.append(m)
        if flag is not None:
            exists.append(flag)
    any_present = any(exists)
    missing_ok = any(not e for e in exists)
    collections = (list, tuple, set, frozenset)

    if not exists and all(type(spec) is str for spec in specs):
        # the commonest leaf, e.g. "event_name": ["INSERT", "MODIFY"]: one set lookup
        strs = frozenset(specs)

        def match_strings(value: Any) -> bool:
            if type(value) is str:
                return value in strs
            if isinstance(value, collections):
                return any(type(v) is str and v in strs for v in value)
            return False

        return match_strings

    if not exists and len(present) == 1:
        one = present[0]

        def match_one(value: Any) -> bool:
            if value is _MISSING:
                return False
            if isinstance(value, collections):
                return any(one(v) for v in value)
            return one(value)

        return match_one

    def match(value: Any) -> bool:
        if value is _MISSING:
            return missing_ok
        if any_present:
            return True
        if isinstance(value, collections):
            return any(m(v) for v in value for m in present)
        return any(m(value) for m in present)

    return match


def _object(pattern: Any, where: str, depth: int, *, strings: bool) -> Node:
    if not isinstance(pattern, dict):
        raise FilterError(f"{where or 'filter'}: a pattern must be an object, got {pattern!r}")
    if not pattern:
        raise FilterError(f"{where or 'filter'}: an empty pattern")
    if depth > _MAX_DEPTH:
        raise FilterError(f"{where}: patterns nest at most {_MAX_DEPTH} levels")
    fields: list[tuple[str, Callable[[Any], bool]]] = []
    alternatives: list[Node] = []
    for name, sub in pattern.items():
        if not isinstance(name, str):
            raise FilterError(f"{where}: field names are strings, got {name!r}")
        path = f"{where}.{name}" if where else name
        if name == "$or":
            if not isinstance(sub, list) or len(sub) < 2:
                raise FilterError(f"{path}: $or takes a list of at least two patterns")
            alternatives.extend(
                _object(alt, f"{path}[{i}]", depth + 1, strings=strings)
                for i, alt in enumerate(sub)
            )
        elif isinstance(sub, dict):
            fields.append((name, _nested(_object(sub, path, depth + 1, strings=strings))))
        else:
            fields.append((name, _leaf(sub, path, strings=strings)))

    # obj is a mapping (dict, mapping proxy) or _MISSING: _nested and the caller see to it
    if len(fields) == 1 and not alternatives:
        ((name0, test0),) = fields

        def match_one(obj: Any) -> bool:
            return test0(_MISSING if obj is _MISSING else obj.get(name0, _MISSING))

        return match_one

    def match(obj: Any) -> bool:
        for name, test in fields:
            if not test(_MISSING if obj is _MISSING else obj.get(name, _MISSING)):
                return False
        return not alternatives or any(alt(obj) for alt in alternatives)

    return match


def _nested(node: Node) -> Callable[[Any], bool]:
    def match(value: Any) -> bool:
        if type(value) in _MAPPINGS:
            return node(value)
        if isinstance(value, (list, tuple)):
            maps = [v for v in value if hasattr(v, "get")]
            # EventBridge flattens arrays: the path exists as soon as one element is a map
            return any(node(v) for v in maps) if maps else node(_MISSING)
        return node(value if hasattr(value, "get") and not isinstance(value, str) else _MISSING)

    return match


def _top_keys(pattern: Any, where: str) -> set[str]:
    keys: set[str] = set()
    if isinstance(pattern, dict):
        for k, v in pattern.items():
            if not isinstance(k, str):
                raise FilterError(f"{where}: field names are strings, got {k!r}")
            if k == "$or" and isinstance(v, list):
                for alt in v:
                    keys |= _top_keys(alt, where)
            else:
                keys.add(k)
    return keys


def _user_identity(record: ChangeRecord) -> Any:
    ident = record.user_identity
    return _MISSING if ident is None else {"type": ident.type, "principal": ident.principal}


def _view_type(record: ChangeRecord) -> Any:
    return str(record.view_type.value)


def _attribute(name: str) -> Callable[[ChangeRecord], Any]:
    if name == "user_identity":
        return _user_identity
    if name == "view_type":
        return _view_type
    get = operator.attrgetter(name)

    def value(record: ChangeRecord) -> Any:
        v = get(record)
        return _MISSING if v is None else v

    return value


def _record_node(pattern: dict[str, Any], where: str) -> Callable[[ChangeRecord], bool]:
    """Streamkit's shape at the top level: fields read straight off the record."""
    fields: list[tuple[Callable[[ChangeRecord], Any], Callable[[Any], bool]]] = []
    alternatives: list[Callable[[ChangeRecord], bool]] = []
    for name, sub in pattern.items():
        path = f"{where}.{name}" if where else name
        if name == "$or":
            if not isinstance(sub, list) or len(sub) < 2:
                raise FilterError(f"{path}: $or takes a list of at least two patterns")
            alternatives.extend(_record_node(alt, f"{path}[{i}]") for i, alt in enumerate(sub))
        elif isinstance(sub, dict):
            fields.append((_attribute(name), _nested(_object(sub, path, 1, strings=False))))
        else:
            fields.append((_attribute(name), _leaf(sub, path, strings=False)))

    def match(record: ChangeRecord) -> bool:
        for get, test in fields:
            if not test(get(record)):
                return False
        return not alternatives or any(alt(record) for alt in alternatives)

    return match


class RecordFilter:
    """Compiled patterns; :meth:`matches` says whether a record passes.

    Attributes:
        patterns: the patterns as given (a tuple).
    """

    __slots__ = ("_lambda", "_ours", "patterns")

    def __init__(self, patterns: tuple[dict[str, Any], ...]) -> None:
        self.patterns = patterns
        self._ours: list[Callable[[ChangeRecord], bool]] = []
        self._lambda: list[Node] = []
        for i, p in enumerate(patterns):
            where = f"filter[{i}]" if len(patterns) > 1 else ""
            keys = _top_keys(p, where or "filter")
            if not isinstance(p, dict):
                raise FilterError(f"{where or 'filter'}: a pattern must be an object, got {p!r}")
            if keys & LAMBDA and keys - LAMBDA:
                raise FilterError(
                    f"{where or 'filter'}: mixes Lambda's record shape ({sorted(keys & LAMBDA)}) "
                    f"with other fields ({sorted(keys - LAMBDA)}); use one shape per pattern"
                )
            if keys & LAMBDA:
                self._lambda.append(_object(p, where, 0, strings=True))
            else:
                unknown = keys - OURS
                if unknown:
                    raise FilterError(
                        f"{where or 'filter'}: unknown record field(s) {sorted(unknown)}; "
                        f"a pattern names fields of the record ({', '.join(sorted(OURS))}) or "
                        "uses Lambda's shape (eventName, dynamodb, ...)"
                    )
                _object(p, where, 0, strings=False)  # validates every level, naming where
                self._ours.append(_record_node(p, where))

    def matches(self, record: ChangeRecord) -> bool:
        """True when the record matches at least one pattern."""
        for node in self._ours:
            if node(record):
                return True
        if self._lambda:
            shape = record.to_dynamodb_json()
            for node in self._lambda:
                if node(shape):
                    return True
        return False

    def __repr__(self) -> str:
        return f"RecordFilter({list(self.patterns)!r})"


def compile_filter(spec: Any) -> RecordFilter | None:
    """Compile ``filter=``: None, one pattern (a dict) or a list of patterns (OR-ed).

    Raises:
        FilterError: a malformed pattern, naming where.
    """
    if spec is None:
        return None
    if isinstance(spec, dict):
        patterns: Sequence[Any] = [spec]
    elif isinstance(spec, (list, tuple)):
        patterns = spec
        if not patterns:
            return None
    else:
        raise FilterError(f"filter must be a pattern (dict) or a list of patterns, got {spec!r}")
    return RecordFilter(tuple(patterns))
