"""Query's key condition, checked the way DynamoDB checks it and refused in its words.

A ``KeyConditionExpression`` is parsed with the condition parser (as DynamoDB does), so
``OR``, ``IN``, ``size()`` and the like parse and are then refused for what they are;
the legacy ``KeyConditions`` are checked member by member. Both then become one
key attribute -> (legacy operator, values) map, checked against the key schema of the
table or index queried. The storage engine compiles the expression afterwards; a
request that passed these checks never meets its own (differently worded) ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streamkit.records._values import type_of
from streamkit.server._convert import from_dynamodb_json, item_from_dynamodb_json
from streamkit.server._errors import INVALID, validation
from streamkit.server._ops_common import Body, _Legacy, _no_mixing, _opt
from streamkit.storage._conditions import (
    And,
    BeginsWith,
    Between,
    Binder,
    Compare,
    Condition,
    Const,
    PathRef,
)
from streamkit.storage._evaluate import NOT_FOR_KEYS, KeyCondition
from streamkit.storage._expressions import (
    ExpressionContext,
    compile_condition,
    compile_projection,
    parse_condition,
)
from streamkit.storage._indexes import IndexSpec
from streamkit.storage._keys import KeySchema

__all__ = ("check_query_filter", "query_key_condition")

_Conditions = dict[str, tuple[str, list[Any]]]
_KIND = "KeyConditionExpression"
_OPERATORS = {"=": "EQ", "<": "LT", "<=": "LE", ">": "GT", ">=": "GE"}
_FLIPPED = {"EQ": "EQ", "LT": "GT", "LE": "GE", "GT": "LT", "GE": "LE"}
_SORT_OPS = {
    "EQ": "=",
    "LT": "<",
    "LE": "<=",
    "GT": ">",
    "GE": ">=",
    "BETWEEN": "between",
    "BEGINS_WITH": "begins_with",
}
_NOT_INDEXABLE = {"NULL", "NOT_NULL", "NE", "CONTAINS", "NOT_CONTAINS", "IN"}


def query_key_condition(
    body: Body, key: KeySchema, legacy: _Legacy, index: IndexSpec | None = None
) -> str:
    """The request's key condition as expression text (``KeyConditions`` rewritten),
    once it passed DynamoDB's checks against ``key`` (the key of ``index``, when it
    is queried; one with a multi-attribute key is checked further as it is compiled)."""
    _no_mixing(body)
    text = _opt(body, _KIND, str)
    old = _opt(body, "KeyConditions", dict)
    if old is not None:  # (never with an expression: _no_mixing refused that)
        conditions = _legacy_conditions(old)
        text = legacy.conditions(old, "AND", "keyConditions")
    elif text is not None:
        conditions = _expression_conditions(body, text, legacy.names, legacy.values)
    else:
        raise validation(
            "Either the KeyConditions or KeyConditionExpression parameter must be specified "
            "in the request."
        )
    if index is not None and index.composite:
        _check_composite(conditions, index)
        return str(text)
    _check_schema(conditions, key)
    start = _opt(body, "ExclusiveStartKey", dict)
    if start is not None:
        _check_start(item_from_dynamodb_json(start), conditions, key)
    return str(text)


def check_query_filter(body: Body, key_names: tuple[str, ...]) -> None:
    """A ``QueryFilter`` may not name a key attribute (of the table or index queried)."""
    spec = body.get("QueryFilter")
    for attr in spec if isinstance(spec, dict) else ():
        if attr in key_names:
            raise validation(
                "QueryFilter can only contain non-primary key attributes: "
                f"Primary key attribute: {attr}"
            )


def _legacy_conditions(spec: Mapping[str, Any]) -> _Conditions:
    out: _Conditions = {}
    for attr, cond in spec.items():
        op = cond.get("ComparisonOperator") if isinstance(cond, dict) else None
        if op is None:
            raise validation(
                f"1 validation error detected: Value null at 'keyConditions.{attr}.member."
                "comparisonOperator' failed to satisfy constraint: Member must not be null"
            )
        args = cond.get("AttributeValueList", [])
        values = [from_dynamodb_json(a, attr) for a in args] if isinstance(args, list) else []
        out[attr] = (op, values)
    return out


def _expression_conditions(
    body: Body, text: str, names: Mapping[str, str], values: Mapping[str, Any]
) -> _Conditions:
    """DynamoDB parses every expression of the request and refuses unused placeholders
    before it looks at the key condition's form."""
    ctx = ExpressionContext(names, values)
    binder = Binder(ctx, _KIND, text)
    tree = binder.condition(parse_condition(text, _KIND))
    compile_condition(_opt(body, "FilterExpression", str), ctx, kind="FilterExpression")
    compile_projection(_opt(body, "ProjectionExpression", str), ctx)
    ctx.check_all_used()
    out: _Conditions = {}
    _shape(tree, out)
    return out


def _shape(node: Condition, out: _Conditions) -> None:
    """DynamoDB's rules for the form of a key condition, checked left to right."""
    if isinstance(node, And):
        _shape(node.left, out)
        _shape(node.right, out)
        return
    if type(node) in NOT_FOR_KEYS or (isinstance(node, Compare) and node.op == "<>"):
        label = NOT_FOR_KEYS.get(type(node), "<>")
        raise validation(f"Invalid operator used in KeyConditionExpression: {label}")
    args: tuple[Any, ...]
    if isinstance(node, Compare):
        op, args = _OPERATORS[node.op], (node.left, node.right)
    elif isinstance(node, Between):
        op, args = "BETWEEN", (node.operand, node.low, node.high)
    else:
        assert isinstance(node, BeginsWith)
        op, args = "BEGINS_WITH", (node.operand, node.prefix)
    if op in ("BETWEEN", "BEGINS_WITH") and not isinstance(args[0], PathRef):
        word = "BETWEEN" if op == "BETWEEN" else "begins_with"
        raise validation(
            f"Invalid condition in KeyConditionExpression: {word} operator must have the key "
            "attribute as its first operand"
        )
    name: str | None = None
    for i, arg in enumerate(args):
        if isinstance(arg, PathRef):
            if name is not None:
                raise validation(
                    "Invalid condition in KeyConditionExpression: Multiple attribute names "
                    "used in one condition"
                )
            if len(arg.elements) > 1:
                raise validation(
                    "KeyConditionExpressions cannot have conditions on nested attributes"
                )
            name = str(arg.elements[0])
            if i:
                op = _FLIPPED[op]  # `:v < sk` is `sk > :v`
        elif not isinstance(arg, Const):  # size()
            raise validation("KeyConditionExpressions cannot contain nested operations")
    if name is None:
        raise validation("Invalid condition in KeyConditionExpression: No key attribute specified")
    if name in out:
        raise validation("KeyConditionExpressions must only contain one condition per key")
    out[name] = (op, [a.value for a in args if isinstance(a, Const)])


def _check_schema(conditions: _Conditions, key: KeySchema) -> None:
    if len(conditions) not in (1, 2):
        raise validation("Conditions can be of length 1 or 2 only")
    partition = key.partition.name
    sort = None if key.sort is None else key.sort.name
    if sort is None and len(conditions) == 2:
        raise validation("Query key condition not supported")
    for name in (partition, sort):
        if (
            name is not None
            and name not in conditions
            and (name == partition or len(conditions) == 2)
        ):
            raise validation(f"Query condition missed key schema element: {name}")
    if any(op in _NOT_INDEXABLE for op, _ in conditions.values()):
        raise validation("Attempted conditional constraint is not an indexable operation")
    if conditions[partition][0] != "EQ":
        raise validation("Query key condition not supported")
    types = {partition: key.partition.type}
    if key.sort is not None:
        types[key.sort.name] = key.sort.type
    for name, (_, values) in conditions.items():
        if any(type_of(v) != types[name] for v in values):
            raise validation(f"{INVALID}Condition parameter type does not match schema type")


def _check_composite(conditions: _Conditions, index: IndexSpec) -> None:
    """What DynamoDB checks of a condition on a multi-attribute key before its form
    (every HASH attribute ``=``, RANGE attributes left to right: the compiler's rules)."""
    if any(op in _NOT_INDEXABLE for op, _ in conditions.values()):
        raise validation("Attempted conditional constraint is not an indexable operation")
    types = {a.name: a.type for a in (*index.hash_attrs, *index.range_attrs)}
    for name, (_, values) in conditions.items():
        if name in types and any(type_of(v) != types[name] for v in values):
            raise validation(f"{INVALID}Condition parameter type does not match schema type")


def _check_start(start: Mapping[str, Any], conditions: _Conditions, key: KeySchema) -> None:
    """An ``ExclusiveStartKey`` must lie in the range the key condition reads (one of
    the wrong shape is refused by the storage engine, in DynamoDB's words too). With a
    sort key condition DynamoDB checks the sort key first, and words a partition key
    that differs as it does."""
    attrs = [key.partition] if key.sort is None else [key.partition, key.sort]
    if any(a.name not in start or type_of(start[a.name]) != a.type for a in attrs):
        return
    sort = None if key.sort is None else conditions.get(key.sort.name)
    if sort is not None and key.sort is not None:
        kc = KeyCondition(None, _SORT_OPS[sort[0]], tuple(sort[1]))
        if not kc.sort_matches(start[key.sort.name]):
            raise validation("The provided starting key does not match the range key predicate")
    if start[key.partition.name] != conditions[key.partition.name][1][0]:
        raise validation(
            "The query can return at most one row and cannot be restarted"
            if sort is not None
            else "The provided starting key is outside query boundaries based on provided "
            "conditions"
        )
