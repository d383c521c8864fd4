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
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from streamkit.exceptions import ValidationError
from streamkit.records import ChangeRecord

__all__ = ("FilterError", "RecordFilter", "compile_filter")

_MISSING: Any = object()
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
_COMPARATORS = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "=": lambda a, b: a == b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
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
        if op not in _COMPARATORS:
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
        raise FilterError(f"{where}: an operator object has exactly one key, got {sorted(spec)}")
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

    one = present[0] if len(present) == 1 else None
    collections = (list, tuple, set, frozenset)

    def match(value: Any) -> bool:
        if value is _MISSING:
            return missing_ok
        if any_present:
            return True
        if isinstance(value, collections):
            return any(m(v) for v in value for m in present)
        if one is not None:
            return one(value)
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

    def match(obj: Any) -> bool:
        get = getattr(obj, "get", None)  # dicts, mapping proxies, the record view
        for name, test in fields:
            if not test(_MISSING if get is None else get(name, _MISSING)):
                return False
        return not alternatives or any(alt(obj) for alt in alternatives)

    return match


def _nested(node: Node) -> Callable[[Any], bool]:
    def match(value: Any) -> bool:
        if isinstance(value, (list, tuple)):
            return any(node(v) for v in value if hasattr(v, "get")) or node(_MISSING)
        return node(value if hasattr(value, "get") and not isinstance(value, str) else _MISSING)

    return match


def _top_keys(pattern: Any) -> set[str]:
    keys: set[str] = set()
    if isinstance(pattern, dict):
        for k, v in pattern.items():
            if k == "$or" and isinstance(v, list):
                for alt in v:
                    keys |= _top_keys(alt)
            else:
                keys.add(k)
    return keys


class _RecordView:
    """The record's fields under streamkit's names, computed on demand."""

    __slots__ = ("_r",)

    def __init__(self, record: ChangeRecord) -> None:
        self._r = record

    def get(self, name: str, default: Any = None) -> Any:
        value = getattr(self._r, name, None) if name in OURS else None
        if value is None:
            return default
        if name == "user_identity":
            return {"type": value.type, "principal": value.principal}
        if name == "view_type":
            return str(value.value)
        return value


class RecordFilter:
    """Compiled patterns; :meth:`matches` says whether a record passes.

    Attributes:
        patterns: the patterns as given (a tuple).
    """

    __slots__ = ("_lambda", "_ours", "patterns")

    def __init__(self, patterns: tuple[dict[str, Any], ...]) -> None:
        self.patterns = patterns
        self._ours: list[Node] = []
        self._lambda: list[Node] = []
        for i, p in enumerate(patterns):
            where = f"filter[{i}]" if len(patterns) > 1 else ""
            keys = _top_keys(p)
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
                self._ours.append(_object(p, where, 0, strings=False))

    def matches(self, record: ChangeRecord) -> bool:
        """True when the record matches at least one pattern."""
        if self._ours:
            view = _RecordView(record)
            for node in self._ours:
                if node(view):
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
